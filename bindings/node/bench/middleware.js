'use strict'

// memoryTracking() overhead per request, in one run: a hello-world Express app and a plain
// http server, each with and without the middleware, served by child processes on 127.0.0.1
// and loaded by autocannon (a devDependency) from this process. Each server measures its own
// CPU time (process.cpuUsage) and counts the requests it answered between 'start' and 'stop';
// the variants are interleaved over several rounds and the median per variant is reported:
// server CPU µs per request, requests/s, the difference per request and the ratios.
// Also the native begin + headers + end round trip alone, in this process.
// Usage: node bench/middleware.js [seconds per run] [rounds] [connections]

const { fork } = require('node:child_process')
const path = require('node:path')

const seconds = Number(process.argv[2] || 3)
const rounds = Number(process.argv[3] || 3)
const connections = Number(process.argv[4] || 10)

const VARIANTS = {
  'express bare': { app: 'express', mw: null },
  'express + memoryTracking': { app: 'express', mw: {} },
  'http bare': { app: 'http', mw: null },
  'http + memoryTracking': { app: 'http', mw: {} },
  'http + memoryTracking (samplerIntervalMs 10)': { app: 'http', mw: { samplerIntervalMs: 10 } }
}

// ---- the server child -------------------------------------------------------------------

function serve (variant) {
  const http = require('node:http')
  const { memoryTracking } = require('..')
  const { app, mw } = VARIANTS[variant]
  let served = 0
  let handler
  if (app === 'express') {
    const express = require('express')
    const a = express()
    a.set('etag', false)
    a.set('x-powered-by', false)
    if (mw) a.use(memoryTracking(mw))
    a.get('/users/:id', (req, res) => {
      served++
      res.send('hello world')
    })
    handler = a
  } else {
    const plain = (req, res) => {
      served++
      res.setHeader('Content-Type', 'text/plain')
      res.end('hello world')
    }
    handler = mw ? memoryTracking.wrap(plain, { ...mw, routeTemplate: () => 'GET /users/:id' }) : plain
  }
  const server = http.createServer(handler)
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
  let cpu0, n0
  process.on('message', (m) => {
    if (m === 'start') {
      cpu0 = process.cpuUsage()
      n0 = served
      process.send({ started: true })
    } else if (m === 'stop') {
      const c = process.cpuUsage(cpu0)
      process.send({ cpuUs: c.user + c.system, requests: served - n0 })
    } else if (m === 'exit') {
      process.exit(0)
    }
  })
}

// ---- the driver ---------------------------------------------------------------------------

function once (child, pred) {
  return new Promise((resolve, reject) => {
    const on = (m) => {
      if (pred(m)) {
        child.off('message', on)
        resolve(m)
      }
    }
    child.on('message', on)
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)))
  })
}

async function measure (autocannon, variant) {
  const child = fork(__filename, ['--serve', variant], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  try {
    const { port } = await once(child, (m) => m.port !== undefined)
    const url = `http://127.0.0.1:${port}/users/42`
    await autocannon({ url, connections, duration: 1 }) // warm-up
    child.send('start')
    await once(child, (m) => m.started)
    const r = await autocannon({ url, connections, duration: seconds })
    child.send('stop')
    const { cpuUs, requests } = await once(child, (m) => m.cpuUs !== undefined)
    if (r.errors || r.non2xx) throw new Error(`${variant}: ${r.errors} errors, ${r.non2xx} non-2xx`)
    return { cpuPerReq: cpuUs / requests, rps: requests / seconds }
  } finally {
    child.send('exit')
  }
}

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

function nativeRoundTrip () {
  const { memoryTracking } = require('..')
  const results = {}
  for (const [label, opts] of [['process readings', { samplerIntervalMs: 0 }], ['samplerIntervalMs 10', { samplerIntervalMs: 10 }]]) {
    const mw = memoryTracking(opts)
    // The middleware's own calls, without an HTTP server: begin, headers, end.
    const res = {
      headers: {},
      setHeader (k, v) { this.headers[k] = v },
      writeHead () {},
      on (ev, fn) { this[ev] = fn },
      writableFinished: true,
      headersSent: false
    }
    const req = { method: 'GET', route: { path: '/users/:id' }, baseUrl: '' }
    const n = 100000
    const run = () => {
      mw(req, res, () => {})
      res.writeHead(200)
      res.close()
    }
    for (let i = 0; i < 10000; i++) run()
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) run()
    results[label] = Number(process.hrtime.bigint() - t0) / n / 1000
  }
  return results
}

async function main () {
  const autocannon = require('autocannon')
  console.log(`loopback, autocannon ${connections} connections, ${seconds} s per run, ${rounds} rounds interleaved; medians`)
  const samples = Object.fromEntries(Object.keys(VARIANTS).map((v) => [v, []]))
  for (let round = 0; round < rounds; round++) {
    for (const v of Object.keys(VARIANTS)) samples[v].push(await measure(autocannon, v))
  }
  const med = {}
  for (const [v, xs] of Object.entries(samples)) {
    med[v] = { cpuPerReq: median(xs.map((x) => x.cpuPerReq)), rps: median(xs.map((x) => x.rps)) }
    console.log(`  ${v.padEnd(46)} ${med[v].rps.toFixed(0).padStart(7)} req/s  ${med[v].cpuPerReq.toFixed(1).padStart(6)} µs server CPU/req`)
  }
  for (const [withMw, bare] of [
    ['express + memoryTracking', 'express bare'],
    ['http + memoryTracking', 'http bare'],
    ['http + memoryTracking (samplerIntervalMs 10)', 'http bare']
  ]) {
    const a = med[withMw]
    const b = med[bare]
    console.log(`  ${withMw} vs ${bare}: +${(a.cpuPerReq - b.cpuPerReq).toFixed(1)} µs CPU/req, ` +
      `CPU ratio ${(a.cpuPerReq / b.cpuPerReq).toFixed(3)}, throughput ratio ${(a.rps / b.rps).toFixed(3)} ` +
      `(${((1 - a.rps / b.rps) * 100).toFixed(1)}% fewer req/s; goal <= 5%)`)
  }
  const rt = nativeRoundTrip()
  for (const [label, us] of Object.entries(rt)) {
    console.log(`  middleware begin + headers + end without HTTP (${label}): ${us.toFixed(2)} µs per request`)
  }
}

if (process.argv[2] === '--serve') {
  serve(process.argv[3])
} else {
  main().catch((e) => {
    console.error(e)
    process.exit(1)
  })
}
