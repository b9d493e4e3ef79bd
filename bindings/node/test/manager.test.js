'use strict'

// Behaviour of the Node binding's MemoryManager. Run with `node --expose-gc --test test/`
// (run-tests.sh also runs it without --expose-gc; the tests that need one mode or the
// other spawn a child process or skip themselves).

const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const path = require('node:path')
const v8 = require('node:v8')

const memwarden = require('..')
const { MemoryManager, MemwardenError, parseSize, formatSize } = memwarden

const MIB = 1024 * 1024

/** A manager fed by updateHostReading, with repeatable automatic GC decisions. */
function hostManager (config = {}) {
  return new MemoryManager({ source: 'host', random_seed: 1, gc_probability: 0, hostGc: false, ...config })
}

/** Pushes `percent`% of a 1000-byte host limit and checks. */
function at (m, percent) {
  m.updateHostReading(percent * 10, percent * 10, 1000)
  return m.check()
}

function assertMwError (fn, code, ...needles) {
  let caught
  try {
    fn()
  } catch (e) {
    caught = e
  }
  assert.ok(caught, 'expected an error')
  assert.ok(caught instanceof MemwardenError, `not a MemwardenError: ${caught}`)
  assert.ok(caught instanceof Error)
  assert.equal(caught.code, code, caught.message)
  for (const needle of needles) {
    assert.ok(caught.message.includes(needle), `${JSON.stringify(caught.message)} lacks ${JSON.stringify(needle)}`)
  }
  return caught
}

test('seed basic usage', () => {
  const m = new MemoryManager({
    warning_threshold: 0.75,
    critical_threshold: 0.9,
    auto_gc_threshold: 0.8,
    enable_detailed_tracking: true
  })
  const usage = m.getMemoryUsage()
  assert.ok(usage.current_mb > 1, `current ${usage.current_mb} MB`)
  assert.ok(usage.peak_mb >= usage.current_mb)
  const state = m.getMemoryState()
  assert.ok(['normal', 'warning', 'critical', 'emergency'].includes(state))
  assert.equal(m.state, state)
  if (state === MemoryManager.STATE_CRITICAL) m.emergencyCleanup()

  m.setMemoryLimit('512M')
  assert.deepEqual(m.getMemoryLimit(), { bytes: 512 * MIB, origin: 'explicit' })
  const report = m.forceGarbageCollection()
  assert.equal(report.trigger, 'manual')
  const stats = m.getDetailedStats()
  assert.equal(stats.limit.formatted, '512M')
  assert.equal(stats.enable_detailed_tracking, true)
  assert.ok(Array.isArray(stats.history) && stats.history.length >= 1)
  const seen = []
  m.onStateChange((oldState, newState) => seen.push(`${oldState}->${newState}`))
  m.setMemoryLimit(Math.floor(usage.current_bytes * 1.01))
  assert.ok(['critical', 'emergency'].includes(m.check()))
  assert.equal(seen.length, 1)
  assert.match(seen[0], /^(normal|warning|critical)->(critical|emergency)$/)
})

test('state constants are the strings', () => {
  assert.equal(MemoryManager.STATE_NORMAL, 'normal')
  assert.equal(MemoryManager.STATE_WARNING, 'warning')
  assert.equal(MemoryManager.STATE_CRITICAL, 'critical')
  assert.equal(MemoryManager.STATE_EMERGENCY, 'emergency')
})

test('usage keys and units', () => {
  const m = new MemoryManager({ memory_limit: '64G' })
  const u = m.getMemoryUsage()
  assert.deepEqual(Object.keys(u).sort(), [
    'current_bytes', 'current_mb', 'limit_bytes', 'limit_mb', 'limit_origin',
    'peak_bytes', 'peak_mb', 'source', 'usage_percent'
  ])
  assert.equal(u.current_mb, u.current_bytes / 1048576)
  assert.equal(u.peak_mb, u.peak_bytes / 1048576)
  assert.equal(u.limit_bytes, 64 * 1024 * MIB)
  assert.equal(u.limit_mb, 64 * 1024)
  assert.equal(u.limit_origin, 'explicit')
  assert.equal(u.source, 'process')
  assert.ok(Math.abs(u.usage_percent - (u.current_bytes * 100) / u.limit_bytes) < 1e-9)
  // Resident memory of this very process, as the kernel counts it, within a few MB.
  const rss = process.memoryUsage.rss()
  assert.ok(Math.abs(u.current_bytes - rss) < 32 * MIB, `${u.current_bytes} vs rss ${rss}`)
})

test('states follow thresholds', () => {
  const m = hostManager({ hysteresis: 0 })
  assert.equal(at(m, 10), 'normal')
  assert.equal(at(m, 75), 'warning')
  assert.equal(at(m, 90), 'critical')
  assert.equal(at(m, 96), 'emergency')
  assert.equal(m.state, 'emergency')
  assert.equal(at(m, 50), 'normal')
  assert.equal(m.state, 'normal')
  assert.equal(m.getMemoryState(), 'normal')
})

test('wobbling at a threshold changes state once', () => {
  const m = hostManager()
  const changes = []
  m.on('stateChange', (oldState, newState) => changes.push([oldState, newState]))
  for (let i = 0; i < 100; i++) {
    m.updateHostReading(i % 2 === 0 ? 749 : 751, 751, 1000)
    m.check()
  }
  assert.deepEqual(changes, [['normal', 'warning']])
  // Down only once usage is the hysteresis (2%) below the threshold.
  assert.equal(at(m, 74), 'warning')
  assert.equal(at(m, 72), 'normal')
  assert.deepEqual(changes, [['normal', 'warning'], ['warning', 'normal']])
})

test('memory events carry state, previous, usage and threshold', () => {
  const m = hostManager({ warning_threshold: 0.6, critical_threshold: 0.8, emergency_threshold: 0.95 })
  const events = []
  for (const name of ['memoryWarning', 'memoryCritical', 'memoryEmergency']) {
    m.on(name, (event) => events.push([name, event]))
  }
  at(m, 10)
  assert.equal(events.length, 0)
  at(m, 65)
  at(m, 85)
  at(m, 97)
  assert.deepEqual(events, [
    ['memoryWarning', { state: 'warning', previous: 'normal', usage: 65, threshold: 0.6 }],
    ['memoryCritical', { state: 'critical', previous: 'warning', usage: 85, threshold: 0.8 }],
    ['memoryEmergency', { state: 'emergency', previous: 'critical', usage: 97, threshold: 0.95 }]
  ])
  // Straight from normal to critical: one memoryCritical, no memoryWarning.
  const m2 = hostManager()
  const names = []
  m2.on('memoryWarning', () => names.push('warning'))
  m2.on('memoryCritical', (e) => names.push(`critical from ${e.previous}`))
  at(m2, 91)
  assert.deepEqual(names, ['critical from normal'])
})

test('a listener that throws reaches the caller and the state is still updated', () => {
  const m = hostManager()
  const later = []
  m.on('memoryWarning', () => { throw new Error('boom from listener') })
  m.onStateChange((o, n) => later.push([o, n]))
  assert.throws(() => at(m, 80), /boom from listener/)
  assert.equal(m.state, 'warning')
  assert.deepEqual(later, [['normal', 'warning']], 'the callbacks after the failing one still ran')
})

test('a callback that throws rethrows the very same error object', () => {
  const m = hostManager()
  const mine = new RangeError('boom')
  mine.extra = 42
  m.onStateChange(() => { throw mine })
  let caught
  try {
    at(m, 92)
  } catch (e) {
    caught = e
  }
  assert.equal(caught, mine)
  assert.equal(caught.extra, 42)
  assert.ok(!(caught instanceof MemwardenError))
  assert.equal(m.state, 'critical')
  // Non-Error values come back as they were thrown.
  const m2 = hostManager()
  m2.onStateChange(() => { throw 'plain string' }) // eslint-disable-line no-throw-literal
  assert.throws(() => at(m2, 80), (e) => e === 'plain string')
  assert.equal(m2.state, 'warning')
  // Nothing stays pending: the next call is clean.
  assert.equal(at(m2, 81), 'warning')
})

test('config onStateChange and the first of two throwing callbacks wins', () => {
  const calls = []
  const m = hostManager({ onStateChange: (o, n) => { calls.push(`${o}->${n}`); throw new Error('first') } })
  m.onStateChange(() => { calls.push('second'); throw new Error('second') })
  assert.throws(() => at(m, 80), /^Error: first$/)
  assert.deepEqual(calls, ['normal->warning', 'second'])
})

test('re-entrancy: a stateChange listener calling getMemoryUsage()', () => {
  const m = hostManager()
  const seen = []
  m.on('stateChange', (o, n) => {
    const u = m.getMemoryUsage()
    seen.push([o, n, Math.round(u.usage_percent), m.state])
  })
  at(m, 91)
  assert.deepEqual(seen, [['normal', 'critical', 91, 'critical']])
})

test('re-entrancy: an inner call that throws does not lose the outer exception', () => {
  const m = hostManager()
  m.onStateChange(() => { throw new Error('outer') })
  m.onStateChange(() => {
    // A nested call whose own callback throws; its error is caught here.
    const inner = hostManager()
    inner.onStateChange(() => { throw new Error('inner') })
    assert.throws(() => at(inner, 80), /inner/)
    m.getMemoryUsage()
  })
  assert.throws(() => at(m, 80), /^Error: outer$/)
})

test('forceGarbageCollection runs before-GC, hooks by priority, then after-GC with the report', () => {
  const order = []
  let gcReport = null
  const m = hostManager({ gcCallback: (r) => { order.push('gcCallback'); gcReport = r } })
  m.updateHostReading(500, 500, 1000)
  m.onBeforeGC(() => order.push('before'))
  m.registerCleanupHook('low', () => order.push('low'), -5)
  m.registerCleanupHook('high', (level) => order.push(`high:${level}`), 10)
  m.registerCleanupHook('mid', () => order.push('mid'))
  m.onAfterGC((r) => order.push(`after:${r.hooks.length}`))
  assert.deepEqual(m.cleanupHooks(), [
    { name: 'high', priority: 10 },
    { name: 'mid', priority: 0 },
    { name: 'low', priority: -5 }
  ])
  const report = m.forceGarbageCollection()
  assert.deepEqual(order, ['before', 'high:normal', 'mid', 'low', 'gcCallback', 'after:4'])
  assert.equal(report.trigger, 'manual')
  assert.equal(report.level, 'normal')
  assert.equal(report.before_bytes, 500)
  assert.deepEqual(report.hooks.map((h) => h.name), ['before_gc#0', 'high', 'mid', 'low'])
  assert.ok(report.hooks.every((h) => h.ok))
  assert.equal(gcReport.trigger, 'manual')
  assert.equal(typeof gcReport.duration_ms, 'number')

  order.length = 0
  const emergency = m.emergencyCleanup()
  assert.equal(emergency.level, 'emergency')
  assert.ok(order.includes('high:emergency'))
  assert.equal(m.unregisterCleanupHook('low'), true)
  assert.equal(m.unregisterCleanupHook('low'), false)
  assert.deepEqual(m.cleanupHooks().map((h) => h.name), ['high', 'mid'])
  assert.equal(m.getDetailedStats().cleanup_runs, 2)
})

test('a failing cleanup hook rethrows its error, the others still run and the run is recorded', () => {
  const m = hostManager()
  m.updateHostReading(1, 1)
  const ran = []
  m.registerCleanupHook('bad', () => { throw new Error('nope') }, 5)
  m.registerCleanupHook('good', () => ran.push('good'), 1)
  assert.throws(() => m.forceGarbageCollection(), /^Error: nope$/)
  assert.deepEqual(ran, ['good'])
  const last = m.getDetailedStats().last_cleanup
  assert.equal(last.hooks[0].name, 'bad')
  assert.equal(last.hooks[0].ok, false)
  assert.match(last.hooks[0].error, /nope/)
  assert.equal(last.hooks[1].ok, true)
})

test('a cleanup hook calling forceGarbageCollection is refused, not deadlocked', () => {
  const m = hostManager()
  m.updateHostReading(1, 1)
  let inner = null
  m.registerCleanupHook('again', () => {
    try { m.forceGarbageCollection() } catch (e) { inner = e }
  })
  m.forceGarbageCollection()
  assert.ok(inner instanceof MemwardenError)
  assert.equal(inner.code, 'MW_INVALID_ARGUMENT')
  assert.match(inner.message, /already in progress/)
})

test('automatic cleanup when crossing auto_gc_threshold', () => {
  const triggers = []
  const m = hostManager({ gcCallback: (r) => triggers.push(r.trigger) })
  at(m, 50)
  assert.deepEqual(triggers, [])
  at(m, 81)
  assert.deepEqual(triggers, ['auto'])
  at(m, 97)
  assert.deepEqual(triggers, ['auto', 'emergency'])
})

test("'v8-gc' hook runs global.gc when exposed", () => {
  assert.equal(typeof global.gc, 'function', 'run the tests with node --expose-gc, as run-tests.sh and npm test do')
  const original = global.gc
  let calls = 0
  global.gc = (...args) => { calls++; return original(...args) }
  try {
    const m = new MemoryManager({ source: 'host' })
    m.updateHostReading(1, 1)
    assert.deepEqual(m.cleanupHooks(), [{ name: 'v8-gc', priority: -1000 }])
    const report = m.forceGarbageCollection()
    assert.equal(calls, 1)
    assert.deepEqual(report.hooks.map((h) => h.name), ['v8-gc'])
    const without = new MemoryManager({ source: 'host', hostGc: false })
    assert.deepEqual(without.cleanupHooks(), [])
  } finally {
    global.gc = original
  }
})

test("'v8-gc' hook is absent without --expose-gc and present with it", () => {
  const script = `
    const { MemoryManager } = require(${JSON.stringify(path.join(__dirname, '..'))})
    console.log(JSON.stringify({ gc: typeof global.gc, hooks: new MemoryManager().cleanupHooks() }))
  `
  const run = (flags) => JSON.parse(execFileSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8' }))
  assert.deepEqual(run([]), { gc: 'undefined', hooks: [] })
  assert.deepEqual(run(['--expose-gc']), { gc: 'function', hooks: [{ name: 'v8-gc', priority: -1000 }] })
})

test("source 'v8-heap' reads V8's heap and its limit", () => {
  const m = new MemoryManager({ source: 'v8-heap' })
  assert.equal(m.source, 'v8-heap')
  const u = m.getMemoryUsage()
  const h = v8.getHeapStatistics()
  assert.equal(u.source, 'v8-heap')
  assert.equal(u.limit_origin, 'host')
  assert.equal(u.limit_bytes, h.heap_size_limit)
  assert.ok(Math.abs(u.current_bytes - h.used_heap_size) < 8 * MIB, `${u.current_bytes} vs ${h.used_heap_size}`)
  assert.ok(u.peak_bytes >= u.current_bytes)
  assert.equal(m.check(), 'normal')
  // An explicit limit still wins over V8's.
  m.setMemoryLimit(Math.floor(u.current_bytes * 1.05))
  assert.notEqual(m.check(), 'normal')
  assert.equal(m.getMemoryUsage().limit_origin, 'explicit')
})

test("source 'host' without a reading is a clear error", () => {
  const m = new MemoryManager({ source: 'host' })
  assertMwError(() => m.check(), 'MW_NOT_FOUND', "'host'", 'no reading yet')
})

test("setMemoryLimit('512M') is explicit and -1 clears it", () => {
  const m = hostManager()
  m.updateHostReading(10, 10, 128 * MIB)
  assert.deepEqual(m.getMemoryLimit(), { bytes: 128 * MIB, origin: 'host' })
  m.setMemoryLimit('512M')
  assert.deepEqual(m.getMemoryLimit(), { bytes: 512 * MIB, origin: 'explicit' })
  m.setMemoryLimit(-1)
  assert.deepEqual(m.getMemoryLimit(), { bytes: 128 * MIB, origin: 'host' })
  m.setMemoryLimit(4096)
  assert.deepEqual(m.getMemoryLimit(), { bytes: 4096, origin: 'explicit' })
  m.setMemoryLimit('-1')
  assert.equal(m.getMemoryLimit().origin, 'host')
  // Without a host limit the system's applies.
  const p = new MemoryManager()
  assert.ok(['cgroup_v2', 'cgroup_v1', 'physical'].includes(p.getMemoryLimit().origin))
  // Bad limits leave the manager as it was.
  assertMwError(() => m.setMemoryLimit('12Q'), 'MW_INVALID_ARGUMENT', "'12Q'")
  assertMwError(() => m.setMemoryLimit(0), 'MW_INVALID_ARGUMENT', '0')
  assertMwError(() => m.setMemoryLimit(-7), 'MW_INVALID_ARGUMENT', '-7')
  assertMwError(() => m.setMemoryLimit(1.5), 'MW_INVALID_ARGUMENT', '1.5')
  assert.equal(m.getMemoryLimit().origin, 'host')
  assert.throws(() => m.setMemoryLimit({}), (e) => e instanceof TypeError && /'limit'/.test(e.message))
})

test('bad config is MW_INVALID_CONFIG naming the key and value', () => {
  const cases = [
    [{ warning_treshold: 0.5 }, "unknown key 'warning_treshold'; did you mean 'warning_threshold'?"],
    [{ warning_threshold: 1.5 }, "'warning_threshold'", '1.5'],
    [{ warning_threshold: 'high' }, "'warning_threshold'", "'high'"],
    [{ enable_detailed_tracking: 'yes' }, "'enable_detailed_tracking'", "'yes'"],
    [{ gc_probability: -0.1 }, "'gc_probability'", '-0.1'],
    [{ memory_limit: '12X' }, "'memory_limit'", "'12X'"],
    [{ memory_limit: -5 }, "'memory_limit'", '-5'],
    [{ source: 'heap' }, "'source'", "'heap'", "'v8-heap'"],
    [{ hysteresis: 0.7 }, "'hysteresis'"],
    [{ random_seed: -1 }, "'random_seed'"],
    [{ warning_threshold: NaN }, "'warning_threshold'", 'NaN'],
    [{ warning_threshold: 0.95, critical_threshold: 0.9 }, 'warning_threshold < critical_threshold < emergency_threshold', '0.95 / 0.9']
  ]
  for (const [config, ...needles] of cases) {
    assertMwError(() => new MemoryManager(config), 'MW_INVALID_CONFIG', ...needles)
  }
  // Large byte counts and seeds stay integers on their way to the core.
  const big = new MemoryManager({ source: 'host', memory_limit: 8 * 1024 * MIB, random_seed: 2 ** 40 })
  assert.deepEqual(big.getMemoryLimit(), { bytes: 8 * 1024 * MIB, origin: 'explicit' })
})

test('JS type errors name the argument', () => {
  const m = hostManager()
  const typeError = (fn, needle) => assert.throws(fn, (e) => e instanceof TypeError && e.message.includes(needle))
  typeError(() => m.onStateChange('nope'), "'callback'")
  typeError(() => m.onBeforeGC(null), "'callback'")
  typeError(() => m.onAfterGC(1), "'callback'")
  typeError(() => m.registerCleanupHook('x', 5), "'fn'")
  typeError(() => m.registerCleanupHook(5, () => {}), "'name'")
  typeError(() => m.registerCleanupHook('x', () => {}, 1.5), "'priority'")
  typeError(() => m.updateHostReading('10'), "'current'")
  typeError(() => new MemoryManager({ gcCallback: 'x' }), "'gcCallback'")
  typeError(() => new MemoryManager('512M'), "'config'")
  // The native class checks too.
  const native = require('../index.js')
  const n = new native.NativeMemoryManager({ source: 'host' })
  typeError(() => n.onStateChange({}), "'callback'")
})

test('updateHostReading on a process manager is MW_INVALID_ARGUMENT', () => {
  const m = new MemoryManager()
  assertMwError(() => m.updateHostReading(1, 1, 10), 'MW_INVALID_ARGUMENT', 'update_host_reading', "'host'")
  const h = hostManager()
  assertMwError(() => h.updateHostReading(-5), 'MW_INVALID_ARGUMENT', "'current'", '-5')
})

test('resetPeak brings the peak down to the current reading', () => {
  const m = hostManager()
  m.updateHostReading(900, 900, 1000)
  assert.equal(m.getMemoryUsage().peak_bytes, 900)
  m.updateHostReading(300, 300, 1000)
  assert.equal(m.getMemoryUsage().peak_bytes, 900)
  m.resetPeak()
  assert.equal(m.getMemoryUsage().peak_bytes, 300)
  m.refreshLimit()
})

test('parseSize, formatSize and version', () => {
  assert.equal(parseSize('512M'), 512 * MIB)
  assert.equal(parseSize('1g'), 1024 * MIB)
  assert.equal(parseSize('128K'), 128 * 1024)
  assert.equal(parseSize('-1'), null)
  assertMwError(() => parseSize('12X'), 'MW_INVALID_ARGUMENT', "'12X'")
  assert.equal(formatSize(512 * MIB), '512M')
  assert.equal(formatSize(1536), '1536')
  assertMwError(() => formatSize(-1), 'MW_INVALID_ARGUMENT', '-1')
  assert.match(memwarden.version, /^\d+\.\d+\.\d+/)
  assert.equal(memwarden.version, require('../package.json').version)
})

test('a manager and its callbacks are collected once unreachable', async () => {
  assert.equal(typeof global.gc, 'function', 'run the tests with node --expose-gc, as run-tests.sh and npm test do')
  let collected = false
  const registry = new FinalizationRegistry(() => { collected = true })
  ;(() => {
    const m = hostManager()
    // Callbacks that capture the manager: a cycle through the native object.
    m.on('stateChange', () => m.getMemoryUsage())
    m.registerCleanupHook('self', () => m.state)
    registry.register(m, 'm')
    at(m, 80)
  })()
  for (let i = 0; i < 20 && !collected; i++) {
    global.gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  assert.ok(collected, 'the manager was never collected')
})
