import { once } from 'node:events'
import { createInterface } from 'node:readline'

/** The lab's prompt, shown only when a person is typing. */
export const PROMPT = 'Input lowercase sentence: '

/** Where a client program reads messages and writes answers (process streams, or test doubles). */
export interface ClientIo {
  input: NodeJS.ReadableStream
  output: NodeJS.WritableStream
  errors: NodeJS.WritableStream
  /** Input is a terminal: prompt before each line, as the lab's client does. */
  interactive: boolean
}

/**
 * The messages to send: the one given on the command line, or else every line of the input
 * (the last one may lack its newline; '\r\n' counts as one line break), prompting first when a
 * person is typing. Ends at end of input (Ctrl-D on a terminal).
 */
export async function* readMessages(io: ClientIo, message: string | undefined): AsyncGenerator<string> {
  if (message !== undefined) {
    yield message
    return
  }
  const rl = createInterface({ input: io.input, output: io.interactive ? io.output : undefined, terminal: io.interactive, crlfDelay: Infinity })
  try {
    if (io.interactive) {
      rl.setPrompt(PROMPT)
      rl.prompt()
    }
    for await (const line of rl) {
      yield line
      if (io.interactive) rl.prompt()
    }
    if (io.interactive) io.output.write('\n') // after Ctrl-D, leave the shell's prompt on a line of its own
  } finally {
    rl.close()
  }
}

/**
 * One answer, one output line. Always `From Server: <answer>` as the lab prints it, whether the
 * message came from a prompt, an argument or a pipe, so scripts see the same thing people do;
 * --raw prints the bare answer for scripts that want only the data.
 */
export function formatAnswer(answer: string, raw: boolean): string {
  return raw ? `${answer}\n` : `From Server: ${answer}\n`
}

/** Writes and waits when the stream is full, so a slow reader of our output bounds our memory. */
export async function print(out: NodeJS.WritableStream, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain')
}
