'use strict'

// MemoryAlertingService against real endpoints on loopback: an HTTP server standing in for
// Slack's incoming webhook, the generic webhook and Alertmanager's /api/v2/alerts (answering,
// hanging, failing, refusing), and a minimal SMTP server written with `net`. Usage is pushed
// through a MemoryManager with source 'host', so every level is reached on demand.
// Escalation timing needs the core's injectable clock and is tested in the core.

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const net = require('node:net')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const fs = require('node:fs')
const os = require('node:os')

const { MemoryAlertingService, MemoryManager, MemwardenError } = require('..')

const LIMIT = 1000

/** A manager whose usage percent is whatever `set(pct)` says. */
function hostManager () {
  const m = new MemoryManager({ source: 'host', memory_limit: LIMIT })
  m.set = (pct) => m.updateHostReading(Math.round(LIMIT * pct / 100))
  m.set(10)
  return m
}

/** Polls `pred` every 5 ms until it holds (or fails after `ms`). */
async function waitFor (pred, what, ms = 10000) {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** An HTTP server on 127.0.0.1:0. `mode`: 'ok', 'hang' or a status code. */
async function httpServer (mode = 'ok') {
  const s = { mode, reqs: [], pending: [], hits: 0 }
  const server = http.createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (d) => { body += d })
    req.on('end', () => {
      s.hits++
      const r = { method: req.method, path: req.url, headers: req.headers, body: body ? JSON.parse(body) : null }
      if (s.mode === 'hang') {
        s.pending.push({ r, res })
        return
      }
      if (s.mode === 'ok') {
        s.reqs.push(r)
        res.end('ok')
      } else {
        res.statusCode = s.mode
        res.end('nope')
      }
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  s.port = server.address().port
  s.url = (p) => `http://127.0.0.1:${s.port}${p}`
  s.close = () => new Promise((resolve) => {
    server.closeAllConnections()
    server.close(resolve)
  })
  return s
}

/** A port nothing listens on. */
async function closedPort () {
  const srv = net.createServer()
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = srv.address().port
  await new Promise((resolve) => srv.close(resolve))
  return port
}

/** A minimal SMTP server: records { from, to, data } per mail. */
async function smtpServer () {
  const s = { mails: [] }
  const server = net.createServer((sock) => {
    sock.setEncoding('utf8')
    let buf = ''
    let mail = { from: null, to: [], data: '' }
    let inData = false
    sock.write('220 localhost test SMTP\r\n')
    sock.on('data', (chunk) => {
      buf += chunk
      let i
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 2)
        if (inData) {
          if (line === '.') {
            inData = false
            s.mails.push(mail)
            mail = { from: null, to: [], data: '' }
            sock.write('250 OK queued\r\n')
          } else {
            mail.data += (line.startsWith('..') ? line.slice(1) : line) + '\n'
          }
          continue
        }
        const verb = line.slice(0, 4).toUpperCase()
        if (verb === 'EHLO' || verb === 'HELO') sock.write('250 localhost\r\n')
        else if (verb === 'MAIL') {
          mail.from = /<(.*)>/.exec(line)[1]
          sock.write('250 OK\r\n')
        } else if (verb === 'RCPT') {
          mail.to.push(/<(.*)>/.exec(line)[1])
          sock.write('250 OK\r\n')
        } else if (verb === 'DATA') {
          inData = true
          sock.write('354 End data with <CR><LF>.<CR><LF>\r\n')
        } else if (verb === 'QUIT') {
          sock.end('221 Bye\r\n')
        } else if (verb === 'RSET' || verb === 'NOOP') sock.write('250 OK\r\n')
        else sock.write('502 Command not implemented\r\n')
      }
    })
    sock.on('error', () => {})
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  s.port = server.address().port
  s.close = () => new Promise((resolve) => server.close(resolve))
  return s
}

/** Collects every emitted event by name. */
function record (svc) {
  const seen = { all: [] }
  for (const name of ['alert', 'resolved', 'deliveryOk', 'deliveryFailed', 'dropped', 'suppressed']) {
    seen[name] = []
    svc.on(name, (e) => seen[name].push(e))
  }
  svc.on('event', (e) => seen.all.push(e))
  return seen
}

function expectConfigError (config, ...fragments) {
  assert.throws(() => new MemoryAlertingService(config), (e) => {
    assert.ok(e instanceof MemwardenError, `not a MemwardenError: ${e}`)
    assert.equal(e.code, 'MW_INVALID_CONFIG')
    for (const f of fragments) assert.ok(e.message.includes(f), `'${e.message}' does not name '${f}'`)
    return true
  })
}

test('the seed\'s Basic Setup, on loopback: e-mail at warning, Slack at critical', async (t) => {
  const smtp = await smtpServer()
  const slack = await httpServer()
  t.after(() => Promise.all([smtp.close(), slack.close()]))
  const m = hostManager()
  const alertService = new MemoryAlertingService({
    channels: {
      email: {
        enabled: true,
        recipients: ['admin@example.com', 'ops@example.com'],
        threshold: 'warning',
        smtp: { host: '127.0.0.1', port: smtp.port, tls: 'none', from: 'memwarden@example.com' }
      },
      slack: {
        enabled: true,
        webhook_url: slack.url('/services/T000/B000/XXXX'),
        channel: '#alerts',
        threshold: 'critical'
      }
    },
    thresholds: { warning: 75, critical: 90, emergency: 95 }
  }, m)
  const seen = record(alertService)
  t.after(() => alertService.close())

  m.set(80)
  assert.equal(alertService.checkAndAlert(), 'warning')
  assert.equal(alertService.level, 'warning')
  assert.equal(await alertService.flush(10), true)
  // flush() resolves after the events of the deliveries it waited for.
  assert.equal(seen.alert.length, 1)
  assert.equal(seen.deliveryOk.length, 1)
  assert.equal(seen.deliveryOk[0].channel, 'email')
  assert.equal(slack.reqs.length, 0, 'warning is below Slack\'s threshold')

  assert.equal(smtp.mails.length, 1)
  const mail = smtp.mails[0]
  assert.deepEqual(mail.to.sort(), ['admin@example.com', 'ops@example.com'])
  assert.equal(mail.from, 'memwarden@example.com')
  assert.match(mail.data, /^Subject: \[memwarden\] WARNING: memory at 80(\.0)?% on /m)
  assert.match(mail.data, /memory usage 80\.0% reached the warning threshold \(75%\)/)

  m.set(92)
  assert.equal(alertService.checkAndAlert(), 'critical')
  assert.equal(await alertService.flush(10), true)
  assert.equal(slack.reqs.length, 1)
  const body = slack.reqs[0].body
  assert.equal(slack.reqs[0].path, '/services/T000/B000/XXXX')
  assert.equal(body.channel, '#alerts')
  assert.match(body.text, /CRITICAL/)
  assert.match(body.text, /92\.0%/)
  assert.equal(smtp.mails.length, 2, 'critical reaches e-mail too')

  const history = alertService.getAlertHistory()
  assert.equal(history.length, 2)
  assert.equal(history[0].level, 'critical', 'newest first')
  assert.deepEqual(history[0].deliveries.map((d) => [d.channel, d.outcome]).sort(), [['email', 'ok'], ['slack', 'ok']])
  assert.deepEqual(alertService.getAlertHistory({ level: 'warning' }).map((h) => h.level), ['warning'])
  assert.equal(alertService.getAlertHistory({ channel: 'slack' }).length, 1)
})

test('webhook and Alertmanager get their JSON; a resolve notice follows when memory is back to normal', async (t) => {
  const srv = await httpServer()
  t.after(() => srv.close())
  const m = hostManager()
  const svc = new MemoryAlertingService({
    channels: {
      webhook: { url: srv.url('/hook'), threshold: 'warning', retry_attempts: 0 },
      alertmanager: { url: srv.url('/am'), labels: { team: 'ops' } }
    }
  }, m)
  t.after(() => svc.close())
  const seen = record(svc)

  m.set(80)
  svc.checkAndAlert()
  assert.equal(await svc.flush(10), true)
  const hook = srv.reqs.find((r) => r.path === '/hook')
  assert.equal(hook.method, 'POST')
  assert.match(hook.headers['content-type'], /application\/json/)
  assert.equal(hook.body.source, 'memwarden')
  assert.equal(hook.body.alerts.length, 1)
  assert.equal(hook.body.alerts[0].level, 'warning')
  assert.equal(hook.body.alerts[0].kind, 'alert')
  assert.equal(hook.body.alerts[0].threshold, 75)
  const am = srv.reqs.find((r) => r.path === '/am/api/v2/alerts')
  assert.ok(Array.isArray(am.body))
  assert.equal(am.body[0].labels.alertname, 'MemwardenMemoryHigh')
  assert.equal(am.body[0].labels.severity, 'warning')
  assert.equal(am.body[0].labels.team, 'ops')
  assert.ok(am.body[0].startsAt)

  m.set(10)
  assert.equal(svc.checkAndAlert(), 'normal')
  assert.equal(await svc.flush(10), true)
  assert.equal(seen.resolved.length, 1)
  assert.equal(seen.resolved[0].kind, 'alert_resolved')
  const amResolved = srv.reqs.filter((r) => r.path === '/am/api/v2/alerts')[1]
  assert.ok(amResolved, 'Alertmanager got the resolve notice')
  assert.ok(amResolved.body[0].endsAt, 'the resolve notice sets endsAt')
  const hookResolved = srv.reqs.filter((r) => r.path === '/hook')[1]
  assert.equal(hookResolved.body.alerts[0].kind, 'resolved')
  assert.deepEqual(svc.getAlertHistory({ kind: 'resolved' }).length, 1)

  // Every event was emitted as 'event' too, and is in the poll queue.
  const kinds = svc.pollEvents().map((e) => e.kind)
  assert.deepEqual(seen.all.map((e) => e.kind).sort(), kinds.slice().sort())
  assert.ok(kinds.includes('alert_raised') && kinds.includes('delivery_ok') && kinds.includes('alert_resolved'))
  assert.deepEqual(svc.pollEvents(), [])
})

test('a hanging endpoint: checkAndAlert returns while the request is pending; the timeout is recorded, no token shown', async (t) => {
  const srv = await httpServer('hang')
  t.after(() => srv.close())
  const m = hostManager()
  const token = 'T0KEN-s3cr3t-9f8e7d'
  const svc = new MemoryAlertingService({
    channels: { webhook: { url: srv.url(`/hooks/${token}`), timeout: 1, retry_attempts: 0 } }
  }, m)
  t.after(() => svc.close())
  const seen = record(svc)

  m.set(96)
  const level = svc.checkAndAlert()
  // checkAndAlert has returned; the server now holds the request without answering.
  assert.equal(level, 'emergency')
  await waitFor(() => srv.pending.length === 1, 'the request to reach the server')
  assert.equal(seen.deliveryFailed.length, 0, 'the delivery is still pending')
  assert.equal(svc.flushSync(0), false, 'still in flight')

  await svc.flush(30)
  assert.equal(seen.deliveryFailed.length, 1)
  const ev = seen.deliveryFailed[0]
  assert.equal(ev.channel, 'webhook')
  assert.equal(ev.level, 'emergency')
  assert.ok(ev.error && ev.error.length > 0)
  assert.ok(!ev.error.includes(token), ev.error)

  const [h] = svc.getAlertHistory()
  assert.equal(h.deliveries.length, 1)
  assert.equal(h.deliveries[0].outcome, 'failed')
  assert.ok(h.deliveries[0].error.length > 0)
  assert.ok(!JSON.stringify(svc.getAlertHistory()).includes(token))
  for (const p of srv.pending) p.res.end()
})

test('a refused connection and an HTTP 500: failed attempts with their error, retries, deliveryFailed', async (t) => {
  const port = await closedPort()
  const srv = await httpServer(500)
  t.after(() => srv.close())
  const m = hostManager()
  const svc = new MemoryAlertingService({
    channels: {
      slack: { webhook_url: `http://127.0.0.1:${port}/services/SECRETPATH`, threshold: 'warning', retry_attempts: 0 },
      webhook: { url: srv.url('/hook/abc-secret'), retry_attempts: 1 }
    }
  }, m)
  t.after(() => svc.close())
  const seen = record(svc)

  m.set(80)
  svc.checkAndAlert()
  assert.equal(await svc.flush(30), true)
  assert.deepEqual(seen.deliveryFailed.map((e) => e.channel).sort(), ['slack', 'webhook'])
  assert.equal(srv.hits, 2, 'one retry after the 500')

  const [h] = svc.getAlertHistory()
  const slack = h.deliveries.filter((d) => d.channel === 'slack')
  const hook = h.deliveries.filter((d) => d.channel === 'webhook')
  assert.equal(slack.length, 1)
  assert.equal(slack[0].outcome, 'failed')
  assert.ok(slack[0].error.length > 0)
  assert.deepEqual(hook.map((d) => [d.attempt, d.outcome, d.error]), [[1, 'failed', 'HTTP 500'], [2, 'failed', 'HTTP 500']])
  const text = JSON.stringify(svc.getAlertHistory()) + JSON.stringify(seen.all)
  assert.ok(!text.includes('SECRETPATH') && !text.includes('abc-secret'), text)
})

test('throttling per channel and level, hysteresis at a threshold, sendAlert', async (t) => {
  const srv = await httpServer()
  t.after(() => srv.close())
  const m = hostManager()
  const svc = new MemoryAlertingService({
    channels: { webhook: { url: srv.url('/hook'), throttle_minutes: 5, retry_attempts: 0 } },
    alert_cooldown_minutes: 0
  }, m)
  t.after(() => svc.close())

  // Wobbling around 75%: one alert, not one per crossing.
  for (const pct of [75.5, 74.5, 75.2, 74.8, 75.1]) {
    m.set(pct)
    svc.checkAndAlert()
  }
  assert.equal(svc.getAlertHistory().length, 1)

  // Resolved, then warning again within throttle_minutes: recorded, not sent.
  m.set(10)
  svc.checkAndAlert()
  m.set(80)
  svc.checkAndAlert()
  assert.equal(await svc.flush(10), true)
  const alerts = svc.getAlertHistory({ kind: 'alert' })
  assert.equal(alerts.length, 2)
  assert.deepEqual(alerts[0].deliveries.map((d) => d.outcome), ['throttled'])
  assert.equal(srv.reqs.filter((r) => r.body.alerts[0].kind === 'alert').length, 1)

  // The user's own messages: the same text at the same level is throttled too.
  const id = svc.sendAlert('deploy finished with high memory')
  assert.equal(typeof id, 'number')
  const id2 = svc.sendAlert('deploy finished with high memory')
  const id3 = svc.sendAlert('disk is full', 'critical')
  assert.ok(id2 > id && id3 > id2)
  assert.equal(await svc.flush(10), true)
  const custom = srv.reqs.filter((r) => r.body.alerts[0].kind === 'custom')
  assert.deepEqual(custom.map((r) => [r.body.alerts[0].message, r.body.alerts[0].level]),
    [['deploy finished with high memory', 'warning'], ['disk is full', 'critical']])
  const byId = Object.fromEntries(svc.getAlertHistory({ kind: 'custom' }).map((h) => [h.id, h]))
  assert.deepEqual(byId[id2].deliveries.map((d) => d.outcome), ['throttled'])

  assert.throws(() => svc.sendAlert('x', 'normal'), { code: 'MW_INVALID_ARGUMENT', message: /normal/ })
  assert.throws(() => svc.sendAlert('x', 'severe'), { code: 'MW_INVALID_ARGUMENT', message: /severe/ })
  assert.throws(() => svc.sendAlert(42), TypeError)
})

test('a full delivery queue emits dropped; the cooldown after a resolve emits suppressed', async (t) => {
  const srv = await httpServer('hang')
  t.after(() => srv.close())
  const m = hostManager()
  const svc = new MemoryAlertingService({
    channels: { webhook: { url: srv.url('/slow'), timeout: 0.5, retry_attempts: 0, throttle_minutes: 0 } },
    queue_capacity: 1,
    alert_cooldown_minutes: 10
  }, m)
  t.after(() => svc.close())
  const seen = record(svc)

  for (let i = 0; i < 5; i++) svc.sendAlert(`message ${i}`)
  await waitFor(() => seen.dropped.length > 0, "a 'dropped' event")
  assert.equal(seen.dropped[0].kind, 'alert_dropped')
  assert.match(seen.dropped[0].error, /queue full/)
  const dropped = svc.getAlertHistory({ kind: 'custom' }).filter((h) => h.status === 'dropped')
  assert.ok(dropped.length > 0)
  assert.equal(dropped[0].deliveries.at(-1).outcome, 'dropped')
  srv.mode = 'ok'
  for (const p of srv.pending) p.res.end()
  await svc.flush(30)

  m.set(80)
  svc.checkAndAlert()
  m.set(10)
  svc.checkAndAlert()
  m.set(80)
  svc.checkAndAlert()
  await waitFor(() => seen.suppressed.length === 1, "a 'suppressed' event")
  assert.equal(seen.suppressed[0].level, 'warning')
  assert.equal(svc.getAlertHistory({ kind: 'alert' })[0].status, 'suppressed')
})

test("a listener that throws: the error is the process's uncaughtException, delivery goes on", () => {
  const script = `
    const { MemoryAlertingService } = require(${JSON.stringify(path.join(__dirname, '..'))})
    process.on('uncaughtException', (e) => { console.log('uncaught ' + e.message) })
    const svc = new MemoryAlertingService({})
    svc.on('alert', () => { throw new Error('boom') })
    svc.on('event', (e) => console.log('event ' + e.kind))
    svc.sendAlert('hello', 'critical')
    svc.flush(10).then((ok) => { console.log('flushed ' + ok); svc.close() })
  `
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 })
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(r.stdout.trim().split('\n'), ['event alert_raised', 'uncaught boom', 'flushed true'])
})

test('history_path keeps the history across instances; include_system_info and custom_metrics reach the webhook', async (t) => {
  const srv = await httpServer()
  t.after(() => srv.close())
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memwarden-alert-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const config = {
    channels: { webhook: { url: srv.url('/hook'), retry_attempts: 0 } },
    history_path: path.join(dir, 'alerts.db'),
    history_retention_days: 30,
    batch_alerts: false,
    include_system_info: true,
    custom_metrics: { cpu_usage: true, disk_usage: true, active_connections: true }
  }
  const a = new MemoryAlertingService(config, hostManager())
  const id = a.sendAlert('kept on disk', 'critical')
  assert.equal(await a.flush(10), true)
  a.close()
  assert.ok(srv.reqs[0].body.system && typeof srv.reqs[0].body.system === 'object', JSON.stringify(srv.reqs[0].body))

  const b = new MemoryAlertingService(config, hostManager())
  t.after(() => b.close())
  const [h] = b.getAlertHistory({ kind: 'custom' })
  assert.equal(h.id, id)
  assert.equal(h.message, 'kept on disk')
  assert.deepEqual(h.deliveries.map((d) => [d.channel, d.outcome]), [['webhook', 'ok']])
  assert.equal(b.getAlertHistory({ limit: 0 }).length, 0)
  assert.throws(() => b.getAlertHistory({ colour: 'red' }), { code: 'MW_INVALID_CONFIG', message: /colour/ })
})

test('bad input at construction names what is wrong', () => {
  const url = 'http://127.0.0.1:9/x'
  expectConfigError({ channels: { pagerduty: { url } } }, "'pagerduty'")
  expectConfigError({ channels: { webhook: { url: 'not a url' } } }, 'channels.webhook.url')
  expectConfigError({ channels: { webhook: { url: 'ftp://127.0.0.1/x' } } }, 'ftp')
  expectConfigError({ channels: { email: { recipients: ['nobody'] } } }, "'nobody'")
  expectConfigError({ channels: { webhook: { url, threshold: 'severe' } } }, "'severe'")
  expectConfigError({ thresholds: { severe: 80 } }, 'severe')
  expectConfigError({ escalation: { enabled: true, levels: { 1: { email: ['a@example.com'] } }, escalation_intervals: [-5] } },
    'escalation_intervals')
  expectConfigError({ channels: { webhook: { url, throttle_minutes: -1 } } }, 'throttle_minutes')
  expectConfigError({ alert_cooldown_minutes: -1 }, 'alert_cooldown_minutes')
  expectConfigError({ escalation: { enabled: true, levels: { 1: { slack: true } } } }, 'slack')
  expectConfigError({ no_such_key: 1 }, 'no_such_key')
  expectConfigError({ alert_cooldown_minutes: NaN }, 'alert_cooldown_minutes')
  assert.throws(() => new MemoryAlertingService('yes'), TypeError)
  assert.throws(() => new MemoryAlertingService({}, {}), TypeError)
})

test('close(): later calls fail with MW_CLOSED; close is idempotent', async () => {
  const svc = new MemoryAlertingService({}, hostManager())
  assert.equal(svc.checkAndAlert(), 'normal')
  assert.equal(svc.closed, false)
  svc.close()
  svc.close()
  assert.equal(svc.closed, true)
  assert.throws(() => svc.checkAndAlert(), { code: 'MW_CLOSED' })
  await assert.rejects(svc.flush(), { code: 'MW_CLOSED' })
})

test('without a manager, a default one is used', () => {
  const svc = new MemoryAlertingService()
  try {
    assert.ok(['normal', 'warning', 'critical', 'emergency'].includes(svc.checkAndAlert()))
  } finally {
    svc.close()
  }
})

test('a collected service with a delivery in flight does not crash; events never keep the process alive', async (t) => {
  const srv = await httpServer('hang')
  t.after(() => srv.close())
  // In a child: an alert whose delivery hangs for 30 s, no flush; the child exits at once.
  const script = `
    const { MemoryAlertingService, MemoryManager } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const m = new MemoryManager({ source: 'host', memory_limit: 1000 })
    m.updateHostReading(990)
    const svc = new MemoryAlertingService({ channels: { webhook: { url: 'http://127.0.0.1:${srv.port}/h', timeout: 30, retry_attempts: 0 } } }, m)
    svc.on('deliveryFailed', () => {})
    console.log(svc.checkAndAlert())
  `
  const started = Date.now()
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'emergency')
  assert.ok(Date.now() - started < 20000)

  assert.equal(typeof global.gc, 'function', 'run the tests with node --expose-gc, as run-tests.sh and npm test do')
  // In-process: collect the service while its delivery hangs; the failure arrives later.
  const m = hostManager()
  let collected = false
  const registry = new FinalizationRegistry(() => { collected = true });
  (() => {
    const svc = new MemoryAlertingService({ channels: { webhook: { url: srv.url('/gc'), timeout: 0.3, retry_attempts: 0 } } }, m)
    svc.on('deliveryFailed', () => {})
    registry.register(svc, 'svc')
    m.set(99)
    svc.checkAndAlert()
  })()
  await waitFor(() => srv.pending.some((p) => p.r.path === '/gc'), 'the request to reach the server')
  for (let i = 0; i < 50 && !collected; i++) {
    global.gc()
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  assert.ok(collected, 'the service was collected')
  // Past the delivery's timeout: its event finds no listener and is dropped quietly.
  await new Promise((resolve) => setTimeout(resolve, 600))
  for (const p of srv.pending) p.res.end()
})
