'use strict'

// memoryTracking()'s cost per request counted in instructions (valgrind's callgrind), which
// the load of a shared machine does not change, unlike CPU time: a hello-world `http` server
// runs under callgrind and answers n1, then n2 keep-alive requests; (I(n2) - I(n1)) / (n2 - n1)
// is its work per request, start-up cancelled out. The server runs with V8's
// --single-threaded (the collector's and the compilers' work runs on the main thread, counted
// in full and in the same order every run, instead of on helper threads whose share varies by
// tens of thousands of instructions per request), with --predictable-gc-schedule (V8's heap
// growing, idle and memory-reducing collections otherwise follow the wall clock, which
// callgrind and the machine's load stretch: the same Express variant moved by 15,000
// instructions per request between runs without it, by 1,000 with it) and fixed hash and random
// seeds (a random hash seed changes start-up by millions of instructions); warm-up: n1
// requests, 9000 by default: V8 still optimizes functions of Node's and Express's request path
// until about 8,000 (plain http) and 10,000 (Express) requests (counted with --trace-opt), and
// a warm-up of 2000 charged that compiler work, a few thousand instructions per request, to
// every variant unevenly. Variants: bare; a pass-through wrapper; four constant headers set
// by the app (what Node charges for any four headers: the anchor for the headers' share);
// xbare, xpass, xmw and xmwnohdr, the same hello world as an Express route alone, behind an
// app.use() middleware that only calls next() (what Express charges for any middleware), and
// behind app.use(memoryTracking()), with and without headers;
// memoryTracking() by default (at callgrind's pace, a fresh reading for each figure), with a
// 5 ms sampler (what the default switches to above 1,000 requests/s), and without headers.
// The sampler thread's own work is counted too, though callgrind slows the server ~50x and so
// charges each request ~50x its real share of it.
// Usage: node bench/middleware_instructions.js [n1] [n2] [variants]   (needs valgrind)
const { spawn } = require('node:child_process')
const http = require('node:http')
const path = require('node:path')
const NODE_DIR = path.join(__dirname, '..')
const os = require('node:os')
function serve (variant, maxn) {
  const { memoryTracking } = require(NODE_DIR)
  let served = 0
  const plain = (req, res) => {
    if (++served === maxn) res.on('close', () => setImmediate(() => process.exit(0)))
    res.setHeader('Content-Type', 'text/plain'); res.end('hello world')
  }
  let handler
  if (variant === 'bare') handler = plain
  else if (variant === 'static4') handler = (req, res) => { res.setHeader('X-Memory-Usage', '45.7'); res.setHeader('X-Memory-Peak', '52.3'); res.setHeader('X-Memory-Limit', '128.0'); res.setHeader('X-Memory-Efficiency', '89.2'); plain(req, res) }
  else if (variant === 'passthru') handler = function (req, res) { return plain.apply(this, arguments) }
  else if (variant === 'mw') handler = memoryTracking.wrap(plain, { routeTemplate: () => 'GET /users/:id' })
  else if (variant === 'mwsampler') handler = memoryTracking.wrap(plain, { samplerIntervalMs: 5, routeTemplate: () => 'GET /users/:id' })
  else if (variant === 'mwnohdr') handler = memoryTracking.wrap(plain, { includeHeaders: false, samplerIntervalMs: 5, routeTemplate: () => 'GET /users/:id' })
  else if (variant === 'xbare' || variant === 'xpass' || variant === 'xmw' || variant === 'xmwnohdr') {
    // Express (a devDependency here): the same hello world as a route, with memoryTracking()
    // as app middleware in xmw
    const express = require('express')
    const a = express()
    a.set('etag', false)
    a.set('x-powered-by', false)
    if (variant === 'xmw') a.use(memoryTracking())
    if (variant === 'xmwnohdr') a.use(memoryTracking({ includeHeaders: false }))
    if (variant === 'xpass') a.use(function pass (req, res, next) { next() })
    a.get('/users/:id', plain)
    handler = a
  } else throw new Error(variant)
  const server = http.createServer(handler)
  server.listen(0, '127.0.0.1', () => console.log(server.address().port))
}
function run (variant, n) {
  return new Promise((resolve, reject) => {
    const p = spawn('valgrind', ['--tool=callgrind', '--smc-check=all', `--callgrind-out-file=${path.join(os.tmpdir(), `mw-cg-node.${process.pid}.${variant}.${n}`)}`, process.execPath, '--single-threaded', '--predictable-gc-schedule', '--hash-seed=7', '--random-seed=7', __filename, '--serve', variant, String(n)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    p.stderr.on('data', (d) => { err += d })
    p.stdout.once('data', async (d) => {
      const port = Number(String(d).trim())
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      for (let i = 0; i < n; i++) {
        await new Promise((res, rej) => http.get({ host: '127.0.0.1', port, path: '/users/42', agent }, (r) => { r.resume(); r.on('end', res) }).on('error', rej))
      }
      agent.destroy()
    })
    p.on('exit', () => {
      try { require('node:fs').unlinkSync(path.join(os.tmpdir(), `mw-cg-node.${process.pid}.${variant}.${n}`)) } catch {}
      const m = /Collected : (\d+)/.exec(err)
      m ? resolve(Number(m[1])) : reject(new Error(err.slice(-2000)))
    })
  })
}
async function main () {
  const [n1, n2] = [Number(process.argv[2] || 9000), Number(process.argv[3] || 15000)]
  const variants = (process.argv[4] || 'bare,passthru,static4,mw,mwsampler,mwnohdr').split(',')
  console.log(`instructions per request under callgrind (${n1} then ${n2} keep-alive requests; bare = the anchor)`)
  let base = null
  for (const v of variants) {
    const a = await run(v, n1); const b = await run(v, n2)
    const per = (b - a) / (n2 - n1)
    if (base === null) base = per
    console.log(`${v.padEnd(10)} ${per.toFixed(0).padStart(10)} instructions/request  +${(per - base).toFixed(0).padStart(8)} (${((per - base) / per * 100).toFixed(1)}% of the server's work)`)
  }
}
if (process.argv[2] === '--serve') serve(process.argv[3], Number(process.argv[4])); else main()
