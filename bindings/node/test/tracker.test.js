'use strict'

// ResourceTracker (seed 004): tracking, stats, release errors, events, cleanup and its hooks,
// the unref'd schedule, collection by the GC counted as leaked (needs --expose-gc, which
// run-tests.sh and `npm test` pass), bad metadata, dispose and debug.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const { ResourceTracker, MemwardenError } = require('..')

async function waitFor (pred, what, ms = 10000) {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

test('trackResource, getResource, getMemoryStats with Streamflow names', () => {
  const t = new ResourceTracker({ maxMemoryUsage: 100 * 1024 * 1024 })
  const chunk = { data: 'x' }
  const a = t.trackResource(chunk, 'chunk', { size: 1024, type: 'image' })
  const buf = Buffer.alloc(300)
  const b = t.trackResource(buf, 'buffer')
  const c = t.trackResource(new ArrayBuffer(50), 'buffer', { name: 'ab' })
  const d = t.trackResource(new Float64Array(4)) // 32 bytes, type 'unknown'
  assert.deepEqual([a, b, c, d], [1, 2, 3, 4])
  const r = t.getResource(a)
  assert.equal(r.type, 'chunk')
  assert.equal(r.size, 1024)
  assert.deepEqual(r.metadata, { size: 1024, type: 'image' })
  assert.ok(Math.abs(r.createdAt - Date.now()) < 60000, `createdAt ${r.createdAt}`)
  assert.equal(t.getResource(b).size, 300)
  assert.deepEqual(t.getResource(b).metadata, {})
  const s = t.getMemoryStats()
  assert.equal(s.totalAllocated, 1024 + 300 + 50 + 32)
  assert.equal(s.activeResources, 4)
  assert.equal(s.peakMemoryUsage, 1406)
  assert.deepEqual(s.byType, { chunk: 1, buffer: 2, unknown: 1 })
  const stats = t.releaseResource(b)
  assert.equal(stats.size, 300)
  assert.equal(t.getResource(b), undefined)
  const after = t.getMemoryStats()
  assert.equal(after.totalAllocated, 1106)
  assert.equal(after.peakMemoryUsage, 1406)
  assert.equal(after.activeResources, 3)
  t.dispose()
})

test('a release of an unknown or released id throws MW_NOT_FOUND and changes nothing', async () => {
  const t = new ResourceTracker({})
  const id = t.trackResource({}, 'chunk', { size: 10 })
  await t.releaseResource(id) // the seed awaits it; a plain value is fine
  const before = t.getMemoryStats()
  for (const bad of [id, 999]) {
    assert.throws(() => t.releaseResource(bad), (e) => {
      assert.ok(e instanceof MemwardenError)
      assert.equal(e.code, 'MW_NOT_FOUND')
      assert.match(e.message, new RegExp(`resource ${bad} is not tracked`))
      return true
    })
    assert.deepEqual(t.getMemoryStats(), before)
  }
  assert.throws(() => t.releaseResource('1'), TypeError)
  assert.throws(() => t.releaseResource(-1), /'id'/)
  assert.deepEqual(t.getMemoryStats(), before)
})

test('metadata JSON cannot hold (BigInt, cycles) is a TypeError naming the problem; stats unchanged', () => {
  const t = new ResourceTracker({})
  t.trackResource({}, 'chunk', { size: 5 })
  const before = t.getMemoryStats()
  const cyclic = { size: 1 }
  cyclic.self = cyclic
  for (const [meta, re] of [[{ n: 10n }, /BigInt/], [cyclic, /circular/i]]) {
    assert.throws(() => t.trackResource({}, 'chunk', meta), (e) => {
      assert.ok(e instanceof TypeError)
      assert.match(e.message, /'metadata' cannot be serialised as JSON/)
      assert.match(e.message, re)
      return true
    })
    assert.deepEqual(t.getMemoryStats(), before)
  }
  assert.throws(() => t.trackResource({}, 'chunk', { size: -1 }), RangeError)
  assert.throws(() => t.trackResource({}, 'chunk', { size: '1k' }), TypeError)
  assert.throws(() => t.trackResource({}, 5), /'type' must be a string/)
  assert.throws(() => t.trackResource({}, 'x', 'meta'), /'metadata' must be an object/)
  assert.deepEqual(t.getMemoryStats(), before)
})

test('memoryWarning and memoryCritical once per crossing, synchronously', () => {
  const t = new ResourceTracker({ maxMemoryUsage: 1000, thresholds: { warning: 0.7, critical: 0.9 } })
  const seen = []
  t.on('memoryWarning', (e) => seen.push(['warning', e.usage, e.threshold]))
  t.on('memoryCritical', (e) => seen.push(['critical', e.usage, e.threshold]))
  const a = t.trackResource(null, 'chunk', { size: 700 })
  assert.deepEqual(seen, [['warning', 700, 0.7]])
  const b = t.trackResource(null, 'chunk', { size: 10 })
  assert.equal(seen.length, 1, 'still warning: no second event')
  t.releaseResource(b)
  const c = t.trackResource(null, 'chunk', { size: 250 })
  assert.deepEqual(seen[1], ['critical', 950, 0.9])
  t.releaseResource(c)
  t.releaseResource(a)
  t.trackResource(null, 'chunk', { size: 750 })
  assert.deepEqual(seen.map((s) => s[0]), ['warning', 'critical', 'warning'])
  assert.equal(t.getMemoryStats().level, 'warning')
})

test('cleanup(): onBeforeGC hooks, oldest first below warning, cleanup event, gcCallback', () => {
  const order = []
  const t = new ResourceTracker({
    maxMemoryUsage: 1000,
    cleanupInterval: 0,
    enableAutoCleanup: true,
    thresholds: { warning: 0.6, critical: 0.8 },
    gcCallback: () => order.push('gcCallback'),
    onBeforeGC: () => order.push('config hook')
  })
  t.onBeforeGC(() => order.push('hook'))
  t.on('cleanup', (e) => order.push(`cleanup ${e.detail.released_ids.join(',')}`))
  t.on('memoryCritical', () => order.push('critical'))
  const ids = []
  for (let i = 0; i < 9; i++) ids.push(t.trackResource({ i }, 'chunk', { size: 100 }))
  assert.deepEqual(order, ['critical'])
  const r = t.cleanup()
  assert.deepEqual(r.releasedIds, ids.slice(0, 4))
  assert.equal(r.freedBytes, 400)
  assert.deepEqual(order, ['critical', 'config hook', 'hook', 'cleanup 1,2,3,4', 'gcCallback'])
  assert.equal(t.getMemoryStats().totalAllocated, 500)
  assert.equal(t.leakReport().chunk.cleaned_up, 4)
  assert.throws(() => t.releaseResource(ids[0]), { code: 'MW_NOT_FOUND' })
  // Without enableAutoCleanup the hooks run and nothing is released.
  const quiet = new ResourceTracker({ maxMemoryUsage: 100 })
  let ran = 0
  quiet.onBeforeGC(() => { ran++ })
  quiet.trackResource(null, 'x', { size: 100 })
  assert.deepEqual(quiet.cleanup().releasedIds, [])
  assert.equal(ran, 1)
  assert.throws(() => quiet.onBeforeGC('no'), TypeError)
})

test('the cleanup schedule runs on the event loop and stops on dispose', async () => {
  const t = new ResourceTracker({ maxMemoryUsage: 1000, cleanup_interval: 20, enable_auto_cleanup: true })
  let hooks = 0
  let cleanups = 0
  t.onBeforeGC(() => { hooks++ })
  t.on('cleanup', () => { cleanups++ })
  for (let i = 0; i < 9; i++) t.trackResource(null, 'chunk', { size: 100 })
  await waitFor(() => t.getMemoryStats().totalAllocated === 600, 'the schedule to clean up')
  await waitFor(() => cleanups >= 2, 'a second scheduled run (reported with nothing released)')
  assert.ok(hooks >= 2)
  const report = t.dispose()
  assert.deepEqual(report, { chunk: { live: 6, released: 3, collected_unreleased: 0, cleaned_up: 3 } })
  const after = cleanups
  await new Promise((resolve) => setTimeout(resolve, 60))
  assert.equal(cleanups, after, 'no run after dispose')
  assert.deepEqual(t.dispose(), report, 'dispose is idempotent')
  assert.throws(() => t.trackResource(null, 'x'), { code: 'MW_CLOSED' })
  assert.throws(() => t.cleanup(), { code: 'MW_CLOSED' })
  assert.equal(t.disposed, true)
})

test('a scheduled run whose hook throws goes to the error event', async () => {
  const t = new ResourceTracker({ cleanupInterval: 10, enableAutoCleanup: true })
  t.onBeforeGC(() => { throw new Error('hook failed') })
  const keep = setInterval(() => {}, 1000) // the schedule's timer is unref'd: keep the loop alive
  const err = await new Promise((resolve) => t.once('error', resolve))
  clearInterval(keep)
  assert.match(err.message, /hook failed/)
  t.dispose()
})

test('objects the GC collects without a release are released and counted as leaked', async () => {
  assert.equal(typeof global.gc, 'function', 'run with --expose-gc (run-tests.sh and npm test do)')
  const t = new ResourceTracker({ maxMemoryUsage: 1 << 30 })
  const kept = Buffer.alloc(64)
  const keptId = t.trackResource(kept, 'buffer')
  ;(() => {
    for (let i = 0; i < 3; i++) t.trackResource({ payload: new Array(1000).fill(i) }, 'chunk', { size: 4000 })
  })()
  const released = (() => {
    const o = {}
    return t.trackResource(o, 'chunk', { size: 1 })
  })()
  t.releaseResource(released)
  const deadline = Date.now() + 10000
  while (t.leakReport().chunk.collected_unreleased < 3) {
    if (Date.now() > deadline) throw new Error(`not collected: ${JSON.stringify(t.leakReport())}`)
    global.gc()
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const leaks = t.leakReport()
  assert.deepEqual(leaks.chunk, { live: 0, released: 1, collected_unreleased: 3, cleaned_up: 0 })
  assert.deepEqual(leaks.buffer, { live: 1, released: 0, collected_unreleased: 0, cleaned_up: 0 })
  const s = t.getMemoryStats()
  assert.equal(s.totalAllocated, 64)
  assert.equal(s.activeResources, 1)
  assert.equal(t.getResource(keptId).size, kept.length)
  t.dispose()
})

test('timers never keep the process alive: a child with an undisposed tracker exits on its own', () => {
  const lib = path.join(__dirname, '..')
  const script = `
    const { ResourceTracker, memoryTracking } = require(${JSON.stringify(lib)})
    const t = new ResourceTracker({ cleanupInterval: 50, enableAutoCleanup: true, maxMemoryUsage: 100 })
    t.trackResource({}, 'chunk', { size: 90 })
    memoryTracking({ samplerIntervalMs: 5 })
    globalThis.keep = t
    console.log('started')
  `
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 20000, encoding: 'utf8' })
  assert.equal(r.error, undefined, `the child did not exit by itself: ${r.error}`)
  assert.equal(r.signal, null)
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'started')
})

test('debug({ trackingEnabled, verbose }) logs every operation; verbose prints the leak report at exit', () => {
  const t = new ResourceTracker({ maxMemoryUsage: 100 })
  const lines = []
  const orig = console.debug
  console.debug = (line) => lines.push(line)
  try {
    const stats = t.debug({ trackingEnabled: true })
    assert.equal(stats.activeResources, 0)
    const id = t.trackResource({}, 'chunk', { size: 80 })
    t.releaseResource(id)
    t.debug({ verbose: true })
    t.trackResource(null, 'chunk', { size: 5, secret: 'meta' })
    t.debug({ trackingEnabled: false, verbose: false })
    t.trackResource(null, 'chunk', { size: 1 })
  } finally {
    console.debug = orig
  }
  assert.match(lines[0], /track #1/)
  assert.ok(lines.some((l) => /event memoryWarning/.test(l)), lines.join('\n'))
  assert.ok(lines.some((l) => /release #1/.test(l)))
  assert.ok(lines.some((l) => /track #2 .*"secret":"meta".*"activeResources":1/.test(l)), lines.join('\n'))
  assert.ok(!lines.some((l) => /#3/.test(l)), 'tracking logs off again')
  assert.throws(() => t.debug({ trackingEnabled: 'yes' }), TypeError)
  assert.throws(() => t.debug({ loud: true }), /unknown option 'loud'/)

  const lib = path.join(__dirname, '..')
  const script = `
    const { ResourceTracker } = require(${JSON.stringify(lib)})
    const t = new ResourceTracker({})
    t.debug({ verbose: true })
    t.trackResource(null, 'socket', { size: 1 })
    globalThis.keep = t
  `
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 20000, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stderr, /^memwarden: ResourceTracker leak report at exit: {"activeResources":1,"totalAllocated":1,"leaks":{"socket":{[^}]*"live":1[,}]/m)
})

test('reportAtExit writes the leak report at exit, in the line Python and PHP write; a disposed tracker does not', () => {
  const lib = path.join(__dirname, '..')
  const script = `
    const { ResourceTracker } = require(${JSON.stringify(lib)})
    const a = new ResourceTracker({ reportAtExit: true })
    a.trackResource(null, 'upload', { size: 10 })
    a.releaseResource(a.trackResource(null, 'upload', { size: 5 }))
    const b = new ResourceTracker({ report_at_exit: true })
    b.trackResource(null, 'socket', { size: 3 })
    b.dispose()
    const c = new ResourceTracker({ reportAtExit: false })
    c.trackResource(null, 'quiet', { size: 1 })
    globalThis.keep = [a, c]
  `
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 20000, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  const lines = r.stderr.split('\n').filter((l) => l.includes('leak report at exit'))
  assert.equal(lines.length, 1, r.stderr)
  const report = JSON.parse(lines[0].slice(lines[0].indexOf('{')))
  assert.equal(report.activeResources, 1)
  assert.equal(report.totalAllocated, 10)
  assert.equal(report.leaks.upload.live, 1)
  assert.equal(report.leaks.upload.released, 1)
  assert.ok(!('socket' in report.leaks) && !('quiet' in report.leaks), lines[0])

  assert.throws(() => new ResourceTracker({ reportAtExit: 'yes' }), { name: 'TypeError', message: /'reportAtExit' must be a boolean, got string/ })
  assert.throws(() => new ResourceTracker({ reportAtExit: true, report_at_exit: true }), /'reportAtExit' and 'report_at_exit' are the same option/)
})

test('reportAtExit: a report that cannot be taken gives the failed line, and the exit code stays 0', () => {
  const lib = path.join(__dirname, '..')
  const script = `
    const { ResourceTracker } = require(${JSON.stringify(lib)})
    const a = new ResourceTracker({ reportAtExit: true })
    a._native.exitReportLine = () => { throw new Error('boom') }
    globalThis.keep = a
  `
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 20000, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stderr, /^memwarden: ResourceTracker leak report at exit failed: boom$/m)

  // Not even the failed line (the error's message cannot be read): nothing is written and
  // nothing is thrown from the exit listener.
  const worse = script + `
    a._native.exitReportLine = () => { throw { get message () { throw new Error('worse') } } }
  `
  const w = spawnSync(process.execPath, ['-e', worse], { timeout: 20000, encoding: 'utf8' })
  assert.equal(w.status, 0, w.stderr)
  assert.doesNotMatch(w.stderr, /leak report at exit|worse/)
})

test('config: Streamflow keys, snake_case aliases and errors', () => {
  const t = new ResourceTracker({
    maxMemoryUsage: 200 * 1024 * 1024,
    cleanupInterval: 15000,
    enableAutoCleanup: true,
    thresholds: { warning: 0.6, critical: 0.8 },
    gcCallback: () => {},
    resourceTracking: { enabled: true, detailed: true, metadata: true }
  })
  t.trackResource(null, 'chunk', { size: 7 })
  assert.deepEqual(t.getMemoryStats().bytesByType, { chunk: 7 })
  assert.equal(t.getMemoryStats().maxMemoryUsage, 200 * 1024 * 1024)
  t.dispose()
  const off = new ResourceTracker({ resource_tracking: { enabled: false } })
  assert.equal(off.trackResource({}, 'chunk', { size: 7 }), 0)
  assert.equal(off.getMemoryStats().activeResources, 0)
  const noMeta = new ResourceTracker({ resourceTracking: { metadata: false } })
  assert.deepEqual(noMeta.getResource(noMeta.trackResource(null, 'x', { size: 1, a: 1 })).metadata, {})
  for (const [cfg, Ctor, re] of [
    [{ thresholds: { warning: 0.9, critical: 0.5 } }, MemwardenError, /above thresholds.critical/],
    [{ maxMemoryUsag: 1 }, MemwardenError, /did you mean 'maxMemoryUsage'/],
    [{ maxMemoryUsage: -5 }, MemwardenError, /maxMemoryUsage/],
    [{ cleanupInterval: -1 }, RangeError, /'cleanupInterval'/],
    [{ cleanupInterval: '30s' }, TypeError, /'cleanupInterval'/],
    [{ cleanupInterval: 1, cleanup_interval: 1 }, TypeError, /same option/],
    [{ gcCallback: 'x' }, TypeError, /'gcCallback' must be a function/],
    [[], TypeError, /'options' must be an object/]
  ]) {
    assert.throws(() => new ResourceTracker(cfg), (e) => {
      assert.ok(e instanceof Ctor, `${JSON.stringify(cfg)}: ${e.constructor.name} ${e.message}`)
      assert.match(e.message, re)
      return true
    })
  }
})
