// Bare node:http + undici Pool.dispatch proxy for bench/ab.sh: the platform floor (no routing, no metrics, no cache, no header rules).
import process from 'node:process'
import { createServer } from 'node:http'
import { Pool } from 'undici'
const ups = process.env.UPSTREAMS.split(',').map((u) => new Pool(u, { connections: 128, pipelining: 1, keepAliveTimeout: 4000 }))
let rr = 0
createServer((req, res) => {
  const pool = ups[rr++ % ups.length]
  const headers = { ...req.headers }
  delete headers.connection
  pool.dispatch({ path: req.url, method: req.method, headers }, {
    onRequestStart () {},
    onResponseStart (c, status, h) { delete h.connection; delete h['keep-alive']; res.writeHead(status, h) ; this.c = c },
    onResponseData (c, chunk) { if (!res.write(chunk)) { c.pause(); res.once('drain', () => c.resume()) } },
    onResponseEnd () { res.end() },
    onResponseError (c, err) { res.destroy(err) }
  })
}).listen(Number(process.env.PORT), '127.0.0.1')
