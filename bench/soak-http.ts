import { request } from 'node:http'

/** One GET without keep-alive; the body as text. */
export function httpGetText(url: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve(body))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)))
    req.on('error', reject)
    req.end()
  })
}
