'use strict'

// Behaviour of the Node binding's StreamProcessor. Run with `node --test test/`.

const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const zlib = require('node:zlib')
const { Readable } = require('node:stream')

const { StreamProcessor, ResourceTracker, MemwardenError } = require('..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const DATA = Buffer.from(Array.from({ length: 200_000 + 77 }, (_, i) => (i * 31) % 251))
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex')

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-stream-'))
const file = path.join(dir, 'in.bin')
fs.writeFileSync(file, DATA)
test.after(() => fs.rmSync(dir, { recursive: true, force: true }))

/** Joins chunks in index order, checking each index and offset exactly once. */
function reassemble (seen) {
  const sorted = [...seen].sort((a, b) => a.info.index - b.info.index)
  let offset = 0
  sorted.forEach(({ info, data }, i) => {
    assert.equal(info.index, i)
    assert.equal(info.offset, offset)
    assert.equal(info.size, data.length)
    offset += data.length
  })
  return Buffer.concat(sorted.map((s) => s.data))
}

for (const streams of [1, 3]) {
  test(`processFile: every byte once, in index order (concurrentStreams ${streams})`, async () => {
    const sp = new StreamProcessor({ chunkSize: '16K', concurrentStreams: streams, maxMemoryUsage: '1M' })
    const seen = []
    const summary = await sp.processFile(file, async (data, info) => {
      await sleep(Math.random() * 3)
      seen.push({ data: Buffer.from(data), info })
    })
    assert.equal(sha(reassemble(seen)), sha(DATA))
    assert.equal(summary.final, true)
    assert.equal(summary.chunks, Math.ceil(DATA.length / 16384))
    assert.equal(summary.bytes, DATA.length)
    assert.equal(sp.getStats().tracker.activeResources, 0)
  })
}

test('processStream re-cuts odd pieces into chunkSize chunks', async () => {
  const sp = new StreamProcessor({ chunk_size: 10_000, concurrent_streams: 2 })
  const pieces = []
  for (let i = 0; i < DATA.length; i += 7777) pieces.push(DATA.subarray(i, i + 7777))
  const seen = []
  const summary = await sp.processStream(Readable.from(pieces), async (data, info) => { seen.push({ data, info }) })
  const all = reassemble(seen)
  assert.equal(sha(all), sha(DATA))
  assert.ok(seen.every(({ data, info }) => data.length === 10_000 || info.index === seen.length - 1))
  assert.equal(summary.chunks, seen.length)
  // an empty stream: no chunk
  const none = await sp.processStream(Readable.from([]), () => assert.fail('no chunk expected'))
  assert.equal(none.chunks, 0)
  // a file stream with a small highWaterMark
  const seen2 = []
  await sp.processStream(fs.createReadStream(file, { highWaterMark: 1000 }), (data, info) => { seen2.push({ data, info }) })
  assert.equal(sha(reassemble(seen2)), sha(DATA))
})

test('compression round-trips', async () => {
  const sp = new StreamProcessor({ chunkSize: '32K', compressionEnabled: true, concurrentStreams: 2 })
  const seen = []
  const summary = await sp.processFile(file, async (data, info) => {
    assert.deepEqual([...data.subarray(0, 2)], [0x1f, 0x8b])
    seen.push({ data, info })
  })
  seen.sort((a, b) => a.info.index - b.info.index)
  const gz = Buffer.concat(seen.map((s) => s.data))
  assert.equal(sha(zlib.gunzipSync(gz)), sha(DATA))
  assert.equal(summary.compressedBytes, gz.length)
  assert.equal(zlib.gunzipSync(await sp.compress(Buffer.from('hello'))).toString(), 'hello')
})

test('backpressure: a slow handler never has more than the bound in flight', async () => {
  // warning 0.5 of 160K = 80K = 5 chunks of 16K: the tracker bounds concurrency 8 to 5
  for (const [streams, cap] of [[8, 5], [2, 2]]) {
    const sp = new StreamProcessor({
      chunkSize: '16K', concurrentStreams: streams, maxMemoryUsage: '160K', thresholds: { warning: 0.5, critical: 0.9 }
    })
    let running = 0; let most = 0; let mostTracked = 0
    const source = Readable.from((function * () { for (let i = 0; i < DATA.length; i += 4096) yield DATA.subarray(i, i + 4096) })())
    const summary = await sp.processStream(source, async () => {
      running++
      most = Math.max(most, running)
      mostTracked = Math.max(mostTracked, sp.getStats().tracker.totalAllocated)
      await sleep(5)
      running--
    })
    assert.ok(most <= cap && most >= 2, `most in flight ${most}, cap ${cap}`)
    assert.ok(mostTracked <= cap * 16384 && mostTracked <= 160 * 1024)
    assert.ok(summary.peakInFlight <= cap)
    assert.ok(summary.pauses > 0)
    assert.ok(sp.getStats().tracker.peakMemoryUsage <= 160 * 1024)
  }
})

test('the Readable is not read ahead while reading pauses', async () => {
  const sp = new StreamProcessor({ chunkSize: 1000, concurrentStreams: 1 })
  let pulled = 0
  const source = new Readable({
    highWaterMark: 1000,
    read () {
      pulled += 1000
      this.push(pulled > 50_000 ? null : Buffer.alloc(1000, 7))
    }
  })
  let maxAhead = 0
  let handled = 0
  await sp.processStream(source, async (data) => {
    handled += data.length
    maxAhead = Math.max(maxAhead, pulled - handled)
    await sleep(1)
  })
  assert.equal(handled, 50_000)
  assert.ok(maxAhead <= 4000, `read ${maxAhead} bytes ahead of the handler`)
})

for (const streams of [1, 4]) {
  test(`a handler error rejects with the original error and its chunk (concurrentStreams ${streams})`, async () => {
    const sp = new StreamProcessor({ chunkSize: 10_000, concurrentStreams: streams })
    const calls = []
    const boom = new Error('upload refused')
    await assert.rejects(sp.processFile(file, async (data, info) => {
      calls.push(info.index)
      await sleep(1)
      if (info.index === 3) throw boom
    }), (e) => e === boom && e.chunk.index === 3 && e.chunk.offset === 30_000 && e.chunk.size === 10_000)
    assert.ok(calls.length < 21)
    const st = sp.getStats().tracker
    assert.equal(st.activeResources, 0)
    assert.equal(st.totalAllocated, 0)
    assert.equal((await sp.processFile(file, () => {})).bytes, DATA.length)
  })
}

test('stream errors, bad arguments and missing files', async () => {
  const sp = new StreamProcessor({ chunkSize: 100 })
  const broken = new Readable({ read () { this.destroy(new Error('source broke')) } })
  await assert.rejects(sp.processStream(broken, () => {}), /source broke/)
  await assert.rejects(sp.processStream(42, () => {}), TypeError)
  await assert.rejects(sp.processFile(file, 'nope'), /'handler' must be a function/)
  await assert.rejects(sp.processFile(path.join(dir, 'missing.bin'), () => {}), { code: 'ENOENT' })
  assert.equal(sp.getStats().tracker.activeResources, 0)
  // one run at a time per processor
  const first = sp.processFile(file, () => sleep(1))
  await assert.rejects(sp.processFile(file, () => {}), /already in progress/)
  await first
})

test('performance events', async () => {
  const got = []
  const sp = new StreamProcessor({ chunkSize: 100_000, concurrentStreams: 1, performanceCallback: (e) => got.push(e) })
  await sp.processFile(file, () => {})
  assert.equal(got.length, 4) // 3 chunks and the summary
  got.slice(0, 3).forEach((e, i) => {
    assert.equal(e.final, false)
    assert.equal(e.index, i)
    assert.ok(e.speed >= 0 && e.processingTime >= 0)
    assert.equal(e.memoryUsage, 100_000)
  })
  assert.equal(got[3].final, true)
  assert.equal(got[3].bytes, DATA.length)
  const warnings = []
  const small = new StreamProcessor({ chunkSize: 1000, maxMemoryUsage: 1000, concurrentStreams: 1 })
  small.on('memoryCritical', (e) => warnings.push(e))
  await small.processFile(file, () => {})
  assert.ok(warnings.length >= 1, 'one chunk of maxMemoryUsage is critical')
})

test('bad config gives MemwardenError naming the key', () => {
  for (const [options, text] of [
    [{ chunkSize: 0 }, /chunkSize/],
    [{ chunkSize: -1 }, /negative/],
    [{ concurrentStreams: 0 }, /concurrentStreams/],
    [{ maxMemoryUsage: '-5M' }, /negative/],
    [{ chunkSise: 1 }, /did you mean 'chunkSize'/],
    [{ chunkSize: '2M', maxMemoryUsage: '1M' }, /larger than maxMemoryUsage/]
  ]) {
    assert.throws(() => new StreamProcessor(options), (e) => e instanceof MemwardenError && e.code === 'MW_INVALID_CONFIG' && text.test(e.message))
  }
  assert.throws(() => new StreamProcessor([]), TypeError)
  assert.throws(() => new StreamProcessor({ performanceCallback: 3 }), /performanceCallback/)
})

test('a ResourceTracker of your own: its stats show the chunks, its thresholds give backpressure, its listeners hear', async () => {
  const tracker = new ResourceTracker({ maxMemoryUsage: 100_000, thresholds: { warning: 0.5, critical: 0.9 } })
  const warnings = []
  tracker.on('memoryWarning', (e) => warnings.push(e))
  const buffer = tracker.trackResource(null, 'buffer', { size: 40_000 })
  const sp = new StreamProcessor({ chunkSize: 20_000, concurrentStreams: 4, tracker })
  assert.equal(sp.tracker, tracker)
  const spWarnings = []
  sp.on('memoryWarning', (e) => spWarnings.push(e))
  const during = []
  const summary = await sp.processFile(file, async () => {
    during.push(tracker.getMemoryStats())
    await sleep(2)
  })
  assert.equal(summary.chunks, 11)
  assert.equal(summary.bytes, DATA.length)
  // 40_000 of the buffer and one chunk pass the tracker's warning level (50_000): one chunk
  // at a time, though concurrentStreams is 4.
  assert.equal(summary.peakInFlight, 1)
  assert.ok(summary.pauses > 0)
  for (const st of during) {
    assert.deepEqual(st.byType, { buffer: 1, chunk: 1 })
    assert.equal(st.totalAllocated, 60_000)
    assert.equal(st.activeResources, 2)
  }
  const st = tracker.getMemoryStats()
  assert.deepEqual([st.totalAllocated, st.activeResources, st.peakMemoryUsage, st.totalTracked], [40_000, 1, 60_000, 13])
  assert.deepEqual(tracker.leakReport().chunk, { live: 0, released: 12, collected_unreleased: 0, cleaned_up: 0 })
  assert.equal(warnings.length, 12, 'every admission crossed the warning level')
  assert.ok(warnings.every((e) => e.usage === 60_000 && e.threshold === 0.5))
  assert.deepEqual(spWarnings.map((e) => e.index), Array.from({ length: 12 }, (_, i) => i))
  tracker.releaseResource(buffer)

  // Without the buffer the same level lets two chunks of 20_000 in at once, never three.
  const t2 = new ResourceTracker({ maxMemoryUsage: 100_000, thresholds: { warning: 0.5, critical: 0.9 } })
  const sp2 = new StreamProcessor({ chunkSize: 20_000, concurrentStreams: 4, tracker: t2 })
  let most = 0
  const s2 = await sp2.processFile(file, async () => {
    most = Math.max(most, t2.getMemoryStats().totalAllocated)
    await sleep(3)
  })
  assert.ok(s2.peakInFlight <= 2, `${s2.peakInFlight} in flight`)
  assert.ok(most <= 50_000 && t2.getMemoryStats().peakMemoryUsage <= 50_000)
  tracker.dispose()
  t2.dispose()
})

test('memoryWarning and memoryCritical of the processor\'s own tracker carry the chunk index', async () => {
  const sp = new StreamProcessor({ chunkSize: 100_000, concurrentStreams: 1, maxMemoryUsage: 150_000, thresholds: { warning: 0.5, critical: 0.9 } })
  const warnings = []
  const critical = []
  sp.on('memoryWarning', (e) => warnings.push(e))
  sp.on('memoryCritical', (e) => critical.push(e))
  await sp.processFile(file, () => {})
  assert.deepEqual(warnings.map((e) => e.index), [0, 1, 2, 3], '3 chunks and the end-of-input probe')
  assert.ok(warnings.every((e) => e.type === 'memoryWarning' && e.usage === 100_000 && e.threshold === 0.5))
  assert.deepEqual(critical, [])
})

test('the tracker option takes only a ResourceTracker, and not with its keys', () => {
  for (const bad of [{}, { trackResource () {} }, 3, 'tracker', new StreamProcessor()]) {
    assert.throws(() => new StreamProcessor({ tracker: bad }), (e) => e instanceof TypeError && /'tracker' must be a ResourceTracker/.test(e.message))
  }
  const tracker = new ResourceTracker({ maxMemoryUsage: 1000 })
  assert.throws(() => new StreamProcessor({ tracker, maxMemoryUsage: 10 }), (e) => e.code === 'MW_INVALID_CONFIG' && /'maxMemoryUsage' is an option of the tracker/.test(e.message))
  assert.throws(() => new StreamProcessor({ tracker, chunkSize: 2000 }), (e) => e.code === 'MW_INVALID_CONFIG' && /larger than maxMemoryUsage \(1000\)/.test(e.message))
  assert.equal(new StreamProcessor({ tracker: null }).tracker, null)
  tracker.dispose()
})
