import { stat } from 'node:fs/promises'

/**
 * One string that changes whenever any of the files changes: inode (a rename over the file, as
 * cert-manager and certbot do), size and nanosecond mtime/ctime (two writes within one
 * millisecond). A missing file stamps as missing, so its return is a change too.
 */
export async function stampFiles(files: readonly string[]): Promise<string> {
  const parts = await Promise.all(files.map(async (file) => {
    try {
      const s = await stat(file, { bigint: true })
      return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`
    } catch (err) {
      return `missing:${(err as NodeJS.ErrnoException).code ?? 'error'}`
    }
  }))
  return parts.join('|')
}
