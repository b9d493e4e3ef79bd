'use strict'

// memoryTracking() in a real Express app and a plain http server on 127.0.0.1, hit with real
// HTTP requests: headers, per-route analytics, sampling, handlers that throw, streamed and
// aborted responses, and bad options.

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const express = require('express')

const { memoryTracking } = require('..')

const HEADERS = ['x-memory-usage', 'x-memory-peak', 'x-memory-limit', 'x-memory-efficiency']

/** Polls `pred` every 5 ms until it holds (or fails after `ms`). */
async function waitFor (pred, what, ms = 10000) {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

async function listen (handler) {
  const server = http.createServer(handler)
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  server.url = `http://127.0.0.1:${server.address().port}`
  return server
}

function close (server) {
  server.closeAllConnections()
  return new Promise((resolve) => server.close(resolve))
}

/** GET `url`: `{ status, headers, body }`. */
function get (url) {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }))
      res.on('error', reject)
    }).on('error', reject)
  })
}

function tmpLog () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memwarden-mw-'))
  return path.join(dir, 'memory.log')
}

function assertMemoryHeaders (headers) {
  for (const h of HEADERS) {
    assert.ok(h in headers, `missing ${h} in ${JSON.stringify(headers)}`)
    assert.match(headers[h], /^\d+\.\d$/, `${h}: ${headers[h]}`)
  }
  const usage = Number(headers['x-memory-usage'])
  const peak = Number(headers['x-memory-peak'])
  const limit = Number(headers['x-memory-limit'])
  const eff = Number(headers['x-memory-efficiency'])
  assert.ok(usage > 1, `usage ${usage} MiB`)
  assert.ok(peak >= usage - 0.1, `peak ${peak} < usage ${usage}`)
  assert.ok(limit >= peak, `limit ${limit} < peak ${peak}`)
  assert.ok(eff > 0 && eff <= 100, `efficiency ${eff}`)
}

function expressApp (mw) {
  const app = express()
  app.use(mw)
  app.get('/users/:id', (req, res) => res.json({ id: req.params.id }))
  const router = express.Router()
  router.get('/items/:n', (req, res) => res.send(`item ${req.params.n}`))
  app.use('/api', router)
  return app
}

test('Express: headers present and numeric, analytics per route template', async () => {
  const mw = memoryTracking({ enabled: true, trackPeak: true, thresholdMb: 50, includeHeaders: true, sampleRate: 1.0 })
  const seen = []
  mw.setAnalyticsHandler((a, req) => seen.push([a, req.originalUrl]))
  const server = await listen(expressApp(mw))
  try {
    for (const id of [1, 2, 3]) {
      const r = await get(`${server.url}/users/${id}`)
      assert.equal(r.status, 200)
      assert.deepEqual(JSON.parse(r.body), { id: String(id) })
      assertMemoryHeaders(r.headers)
    }
    const r = await get(`${server.url}/api/items/7`)
    assert.equal(r.body, 'item 7')
    assertMemoryHeaders(r.headers)
    const nf = await get(`${server.url}/nowhere/42`)
    assert.equal(nf.status, 404)
    assertMemoryHeaders(nf.headers)
    await waitFor(() => seen.length === 5, 'five analytics calls')
    const routes = mw.analytics().routes
    assert.deepEqual(Object.keys(routes).sort(), ['GET /api/items/:n', 'GET /users/:id', 'unmatched'])
    assert.equal(routes['GET /users/:id'].count, 3)
    assert.equal(routes['GET /api/items/:n'].count, 1)
    assert.equal(routes.unmatched.count, 1)
    for (const k of ['p50', 'p95', 'max']) assert.equal(typeof routes['GET /users/:id'].peak_bytes[k], 'number')
    const [a, url] = seen[0]
    assert.equal(url, '/users/1')
    assert.equal(a.route, 'GET /users/:id')
    assert.equal(a.method, 'GET')
    assert.equal(a.statusCode, 200)
    assert.equal(a.aborted, false)
    assert.ok(a.usageMb > 1 && a.peakMb >= a.usageMb && a.durationMs >= 0, JSON.stringify(a))
    assert.equal(typeof a.report.overlapped, 'number')
    assert.equal(mw.inFlight, 0)
  } finally {
    await close(server)
  }
})

test('Express responses keep their shape: memwarden adds no property to them', async () => {
  // V8 caches no map transition for a property added to an object whose prototype was
  // replaced (Express does that to every response): each response would get a map of its
  // own, which cost Express ~94,000 instructions per request. Node's own responses may carry
  // the state as properties; Express's must not.
  const mw = memoryTracking()
  const own = []
  const app = express()
  app.use(mw)
  app.get('/shape', (req, res) => {
    res.on('finish', () => own.push(Reflect.ownKeys(res).filter((k) => typeof k === 'symbol' && /memwarden/.test(String(k)))))
    res.send('ok')
  })
  const server = await listen(app)
  try {
    for (let i = 0; i < 3; i++) {
      const r = await get(`${server.url}/shape`)
      assert.equal(r.body, 'ok')
      assertMemoryHeaders(r.headers)
    }
    await waitFor(() => mw.analytics().routes['GET /shape']?.count === 3, 'three requests ended')
    assert.deepEqual(own, [[], [], []])
    assert.equal(mw.inFlight, 0)
  } finally {
    await close(server)
  }
})

test('Express: one route object under two methods and two mount paths gives four templates; a writeHead wrapper set before memoryTracking() keeps the headers', async () => {
  const mw = memoryTracking()
  const app = express()
  // What on-headers and compression do: an own writeHead on the response, set before ours runs.
  app.use((req, res, next) => {
    const writeHead = res.writeHead
    res.writeHead = function wrapped () {
      res.setHeader('X-Wrapped', 'yes')
      return writeHead.apply(this, arguments)
    }
    next()
  })
  app.use(mw)
  const router = express.Router()
  router.all('/any', (req, res) => res.send(req.method))
  app.use('/api', router)
  app.use('/v2', router)
  const server = await listen(app)
  const request = (method, p) => new Promise((resolve, reject) => {
    http.request(`${server.url}${p}`, { method, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { body += c })
      res.on('end', () => resolve({ headers: res.headers, body }))
    }).on('error', reject).end()
  })
  try {
    const hits = [['GET', '/api/any'], ['POST', '/api/any'], ['GET', '/v2/any'], ['GET', '/v2/any'], ['POST', '/v2/any'], ['GET', '/api/any']]
    for (const [method, p] of hits) {
      const r = await request(method, p)
      assert.equal(r.body, method)
      assert.equal(r.headers['x-wrapped'], 'yes')
      assertMemoryHeaders(r.headers)
    }
    await waitFor(() => mw.inFlight === 0 && Object.values(mw.analytics().routes).reduce((n, r) => n + r.count, 0) === 6, 'six requests ended')
    const counts = Object.fromEntries(Object.entries(mw.analytics().routes).map(([k, v]) => [k, v.count]))
    assert.deepEqual(counts, { 'GET /api/any': 2, 'POST /api/any': 1, 'GET /v2/any': 2, 'POST /v2/any': 1 })
  } finally {
    await close(server)
  }
})

test('sampleRate 0 measures nothing: no headers, no analytics', async () => {
  const mw = memoryTracking({ sampleRate: 0 })
  let calls = 0
  mw.setAnalyticsHandler(() => { calls++ })
  const server = await listen(expressApp(mw))
  try {
    for (let i = 0; i < 5; i++) {
      const r = await get(`${server.url}/users/${i}`)
      assert.equal(r.status, 200)
      for (const h of HEADERS) assert.ok(!(h in r.headers), `${h} present`)
    }
    const an = mw.analytics()
    assert.deepEqual(an.routes, {})
    assert.equal(an.sampled_out, 5)
    assert.equal(calls, 0)
  } finally {
    await close(server)
  }
})

test('enabled false and includeHeaders false', async () => {
  const off = memoryTracking({ enabled: false })
  const noHeaders = memoryTracking({ include_headers: false })
  const app = express()
  app.get('/off', off, (req, res) => res.send('off'))
  app.get('/quiet', noHeaders, (req, res) => res.send('quiet'))
  const server = await listen(app)
  try {
    for (const p of ['/off', '/quiet']) {
      const r = await get(server.url + p)
      assert.equal(r.status, 200)
      for (const h of HEADERS) assert.ok(!(h in r.headers), `${p}: ${h} present`)
    }
    assert.deepEqual(off.analytics().routes, {})
    await waitFor(() => noHeaders.analytics().routes['GET /quiet']?.count === 1, 'the quiet route counted')
  } finally {
    await close(server)
  }
})

test('a throwing high-usage or analytics handler is logged and the request still succeeds', async () => {
  const log = tmpLog()
  const mw = memoryTracking({ threshold_mb: 1, log_file: log })
  let highUsage = null
  mw.setHighUsageHandler((usageMb, req, report) => {
    highUsage = { usageMb, url: req.url, report }
    throw new Error('pager is down')
  })
  mw.setAnalyticsHandler(() => { throw new TypeError('metrics backend exploded') })
  const app = express()
  app.use(mw)
  app.get('/big/:n', (req, res) => {
    const b = Buffer.alloc(96 << 20, 1) // resident: touched on allocation
    res.send(`sum ${b[0] + b[b.length - 1]}`)
  })
  const server = await listen(app)
  try {
    const r = await get(`${server.url}/big/1`)
    assert.equal(r.status, 200)
    assert.equal(r.body, 'sum 2')
    assertMemoryHeaders(r.headers)
    await waitFor(() => mw.analytics().handler_errors === 2, 'two handler errors counted')
    assert.ok(highUsage, 'the high-usage handler ran')
    assert.equal(highUsage.url, '/big/1')
    assert.ok(highUsage.usageMb > 1, `growth ${highUsage.usageMb} MiB`)
    assert.equal(highUsage.report.highUsage, true)
    assert.equal(mw.analytics().routes['GET /big/:n'].high_usage, 1)
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    assert.ok(lines.some((l) => l.event === 'high_memory_usage' && l.route === 'GET /big/:n'), JSON.stringify(lines))
    assert.ok(lines.some((l) => l.event === 'handler_error' && /pager is down/.test(l.error)), JSON.stringify(lines))
    assert.ok(lines.some((l) => l.event === 'handler_error' && /metrics backend exploded/.test(l.error)))
    // The server still answers.
    assert.equal((await get(`${server.url}/big/2`)).status, 200)
  } finally {
    await close(server)
  }
})

test('an async handler that rejects is logged too', async () => {
  const log = tmpLog()
  const mw = memoryTracking({ logFile: log })
  mw.setAnalyticsHandler(async () => { throw new Error('async failure') })
  const server = await listen(expressApp(mw))
  try {
    assert.equal((await get(`${server.url}/users/9`)).status, 200)
    await waitFor(() => mw.analytics().handler_errors === 1, 'the rejection counted')
    assert.match(fs.readFileSync(log, 'utf8'), /analytics handler rejected: Error: async failure/)
  } finally {
    await close(server)
  }
})

test('streamed response: headers arrive before the body ends, figures final on finish', async () => {
  const mw = memoryTracking({})
  const reports = []
  mw.setAnalyticsHandler((a) => reports.push(a))
  let release
  const gate = new Promise((resolve) => { release = resolve })
  const app = express()
  app.use(mw)
  app.get('/stream/:name', async (req, res) => {
    res.write('first chunk\n')
    await gate
    res.end('last chunk\n')
  })
  const server = await listen(app)
  try {
    const res = await new Promise((resolve, reject) => {
      http.get(`${server.url}/stream/report`, { agent: false }, resolve).on('error', reject)
    })
    // The body is not finished (the server waits on the gate), yet the headers are here.
    assertMemoryHeaders(res.headers)
    assert.equal(res.headers['transfer-encoding'], 'chunked')
    assert.equal(reports.length, 0, 'no final figures before the end')
    await new Promise((resolve) => setTimeout(resolve, 30))
    release()
    let body = ''
    res.setEncoding('utf8')
    for await (const c of res) body += c
    assert.equal(body, 'first chunk\nlast chunk\n')
    await waitFor(() => reports.length === 1, 'the final figures')
    assert.equal(reports[0].route, 'GET /stream/:name')
    assert.equal(reports[0].aborted, false)
    assert.ok(reports[0].durationMs >= 25, `duration ${reports[0].durationMs}`)
  } finally {
    await close(server)
  }
})

test('an aborted response is ended on close and marked aborted', async () => {
  const mw = memoryTracking({})
  const reports = []
  mw.setAnalyticsHandler((a) => reports.push(a))
  const app = express()
  app.use(mw)
  app.get('/hang', (req, res) => { res.write('partial') }) // never ends
  const server = await listen(app)
  try {
    await new Promise((resolve, reject) => {
      const req = http.get(`${server.url}/hang`, { agent: false }, (res) => {
        res.once('data', () => { req.destroy(); resolve() })
      })
      req.on('error', () => {})
    })
    await waitFor(() => reports.length === 1, 'the aborted request to be ended')
    assert.equal(reports[0].aborted, true)
    assert.equal(reports[0].route, 'GET /hang')
    assert.equal(mw.inFlight, 0)
  } finally {
    await close(server)
  }
})

test('concurrent requests are reported as overlapped', async () => {
  const mw = memoryTracking({})
  const reports = []
  mw.setAnalyticsHandler((a) => reports.push(a))
  let arrived = 0
  let release
  const gate = new Promise((resolve) => { release = resolve })
  const app = express()
  app.use(mw)
  app.get('/slow', async (req, res) => {
    arrived++
    await gate
    res.send('ok')
  })
  const server = await listen(app)
  try {
    const both = Promise.all([get(`${server.url}/slow`), get(`${server.url}/slow`)])
    await waitFor(() => arrived === 2, 'both requests inside the handler')
    release()
    const rs = await both
    for (const r of rs) assertMemoryHeaders(r.headers)
    await waitFor(() => reports.length === 2, 'two reports')
    for (const a of reports) assert.equal(a.overlapped, 1)
    assert.equal(mw.analytics().routes['GET /slow'].overlapped_share, 1)
  } finally {
    await close(server)
  }
})

test('plain http server: wrap(handler) with a routeTemplate', async () => {
  const handler = memoryTracking.wrap((req, res) => {
    if (req.url.startsWith('/raw')) {
      // Raw header arrays keep working: ours are appended.
      res.writeHead(201, ['Content-Type', 'text/plain'])
      res.end('raw')
      return
    }
    res.setHeader('Content-Type', 'text/plain')
    res.end('hello')
  }, { routeTemplate: (req) => `${req.method} /${req.url.split('/')[1]}/:id` })
  const seen = []
  handler.setAnalyticsHandler((a) => seen.push(a.route))
  const server = await listen(handler)
  try {
    for (const p of ['/orders/1', '/orders/2', '/raw/3']) {
      const r = await get(server.url + p)
      assertMemoryHeaders(r.headers)
    }
    const raw = await get(`${server.url}/raw/4`)
    assert.equal(raw.status, 201)
    assert.equal(raw.headers['content-type'], 'text/plain')
    await waitFor(() => seen.length === 4, 'four analytics calls')
    const routes = handler.analytics().routes
    assert.equal(routes['GET /orders/:id'].count, 2)
    assert.equal(routes['GET /raw/:id'].count, 2)
    assert.equal(Object.keys(routes).length, 2)
  } finally {
    await close(server)
  }
})

test('the middleware wraps a plain handler too, sharing its analytics; a throwing routeTemplate falls back', async () => {
  const log = tmpLog()
  const mw = memoryTracking({ log_file: log, routeTemplate: () => { throw new Error('no route') } })
  const server = await listen(mw.wrap((req, res) => res.end('x')))
  try {
    const r = await get(`${server.url}/a/b`)
    assert.equal(r.status, 200)
    assertMemoryHeaders(r.headers)
    await waitFor(() => mw.analytics().routes.unmatched?.count === 1, 'the request under unmatched')
    assert.equal(mw.analytics().handler_errors, 1)
    assert.match(fs.readFileSync(log, 'utf8'), /routeTemplate threw: Error: no route/)
  } finally {
    await close(server)
  }
})

test('two middlewares on one response each measure it; an untracked server in the same process gets no headers', async () => {
  const outer = memoryTracking({ routeTemplate: () => 'GET /outer' })
  const inner = memoryTracking({ includeHeaders: false, routeTemplate: () => 'GET /inner' })
  const tracked = await listen(outer.wrap(inner.wrap((req, res) => res.end('both'))))
  const untracked = await listen((req, res) => res.end('plain'))
  try {
    for (let i = 0; i < 3; i++) {
      const r = await get(`${tracked.url}/x`)
      assert.equal(r.body, 'both')
      assertMemoryHeaders(r.headers)
      const u = await get(`${untracked.url}/x`)
      assert.equal(u.body, 'plain')
      for (const h of HEADERS) assert.ok(!(h in u.headers), `${h} on an untracked response`)
    }
    await waitFor(() => outer.analytics().routes['GET /outer']?.count === 3 && inner.analytics().routes['GET /inner']?.count === 3, 'three requests in each')
    assert.equal(outer.inFlight, 0)
    assert.equal(inner.inFlight, 0)
  } finally {
    await close(tracked)
    await close(untracked)
  }
})

test('without handlers each request is counted under its own route (the route is handed over only when it changes)', async () => {
  const handler = memoryTracking.wrap((req, res) => res.end('ok'), { includeHeaders: false, routeTemplate: (req) => `GET ${req.url}` })
  const server = await listen(handler)
  try {
    for (const p of ['/a', '/a', '/b', '/a', '/b', '/b', '/c']) await get(server.url + p)
    await waitFor(() => handler.inFlight === 0, 'every request ended')
    const routes = handler.analytics().routes
    assert.deepEqual(Object.fromEntries(Object.entries(routes).map(([k, v]) => [k, v.count])), { 'GET /a': 3, 'GET /b': 3, 'GET /c': 1 })
  } finally {
    await close(server)
  }
  // The native functions themselves: finish(handle) ends under the last route given.
  const { NativeRequestTracker } = require('../index.js')
  const ft = new NativeRequestTracker({ include_headers: false })
  const f = ft.fastPaths()
  const t = new NativeRequestTracker({ include_headers: false })
  const g = t.fastPaths()
  assert.equal(g.finish(g.begin(), 'GET /x'), false)
  assert.equal(g.finish(g.begin()), false)
  assert.equal(g.finish(999999), null)
  assert.equal(g.finish(g.begin()), false)
  assert.equal(t.analytics().routes['GET /x'].count, 3)
  assert.equal(f.finish(f.begin()), false) // nothing given yet: unmatched
  assert.deepEqual(Object.keys(ft.analytics().routes), ['unmatched'])
})

test('a response that is not an http.ServerResponse still gets its headers and its end', async () => {
  const { EventEmitter } = require('node:events')
  const handler = memoryTracking.wrap((req, res) => res.end(), { routeTemplate: () => 'GET /fake' })
  const set = {}
  const res = new EventEmitter()
  Object.assign(res, {
    headersSent: false,
    writableFinished: false,
    setHeader (k, v) { set[k] = v },
    writeHead () { this.headersSent = true; return this },
    end () { if (!this.headersSent) this.writeHead(200); this.writableFinished = true; this.emit('close') }
  })
  handler({ method: 'GET', url: '/fake' }, res)
  assert.deepEqual(Object.keys(set).sort(), ['X-Memory-Efficiency', 'X-Memory-Limit', 'X-Memory-Peak', 'X-Memory-Usage'])
  assert.equal(handler.analytics().routes['GET /fake'].count, 1)
  assert.equal(handler.inFlight, 0)
  // Without headers and without a routeTemplate: counted as unmatched, nothing read off a
  // request the response does not know.
  const quiet = memoryTracking.wrap((req, res) => res.end(), { includeHeaders: false })
  const res2 = new EventEmitter()
  res2.end = function () { this.emit('close') }
  quiet({ method: 'GET', url: '/fake' }, res2)
  assert.deepEqual(Object.keys(quiet.analytics().routes), ['unmatched'])
  assert.equal(quiet.inFlight, 0)
})

test('bad options throw RangeError / TypeError naming the key as written', () => {
  const cases = [
    [{ sampleRate: 2 }, RangeError, /'sampleRate'.*from 0 to 1.*2/],
    [{ sample_rate: -0.5 }, RangeError, /'sample_rate'/],
    [{ thresholdMb: -1 }, RangeError, /'thresholdMb'.*>= 0/],
    [{ threshold_mb: -1 }, RangeError, /'threshold_mb'/],
    [{ sampleRate: NaN }, RangeError, /'sampleRate'/],
    [{ sampleRate: 'all' }, TypeError, /'sampleRate'/],
    [{ enabled: 'yes' }, TypeError, /'enabled'/],
    [{ sampleRat: 1 }, TypeError, /did you mean 'sampleRate'/],
    [{ sampleRate: 1, sample_rate: 1 }, TypeError, /same option/],
    [{ routeTemplate: 'GET /x' }, TypeError, /'routeTemplate' must be a function/],
    [{ detailedTracking: 3 }, TypeError, /'detailedTracking'/],
    ['fast', TypeError, /'options' must be an object/]
  ]
  for (const [opts, Ctor, re] of cases) {
    assert.throws(() => memoryTracking(opts), (e) => {
      assert.ok(e instanceof Ctor, `${JSON.stringify(opts)}: ${e.constructor.name}: ${e.message}`)
      assert.match(e.message, re)
      return true
    })
  }
  const e = (() => { try { memoryTracking({ sampleRate: 2 }) } catch (err) { return err } })()
  assert.equal(e.code, 'MW_INVALID_CONFIG')
  assert.throws(() => memoryTracking.wrap('nope'), TypeError)
  assert.throws(() => memoryTracking().setAnalyticsHandler(5), TypeError)
})

test("the seed's options are all accepted, detailed tracking included (no effect in Node)", async () => {
  const mw = memoryTracking({
    enabled: true,
    track_peak: true,
    log_high_usage: true,
    threshold_mb: 50,
    detailed_tracking: true,
    track_allocations: true,
    track_deallocations: true,
    include_stack_traces: false,
    include_headers: true,
    log_file: tmpLog(),
    sample_rate: 1.0
  })
  const nested = memoryTracking({ detailedTracking: { trackAllocations: true, includeStackTraces: true } })
  const server = await listen(expressApp(nested))
  try {
    assertMemoryHeaders((await get(`${server.url}/users/1`)).headers)
  } finally {
    await close(server)
  }
  assert.equal(typeof mw, 'function')
})
