'use strict'

// Behaviour of the Node binding's StreamingIterator, LazyIterator and FilteredIterator.

const test = require('node:test')
const assert = require('node:assert/strict')

const { StreamingIterator, LazyIterator, FilteredIterator, MemoryManager, MemwardenError } = require('..')

const range = (n) => Array.from({ length: n }, (_, i) => i)

/** An iterator object whose next() throws once at item `at`, then goes on. */
function flaky (n, at) {
  let i = 0
  let thrown = false
  return {
    [Symbol.iterator] () { return this },
    next () {
      if (i === at && !thrown) {
        thrown = true
        throw new Error(`flaky at ${at}`)
      }
      return i < n ? { value: i++, done: false } : { value: undefined, done: true }
    }
  }
}

test('StreamingIterator: chunks of chunk_size from an array and a generator', () => {
  const it = new StreamingIterator(range(25), { chunk_size: 10 })
  assert.deepEqual([...it].map((c) => c.length), [10, 10, 5])
  const s = it.getStats()
  assert.equal(s.chunks, 3)
  assert.equal(s.items, 25)
  assert.equal(s.finished, true)

  function * gen () { for (let i = 0; i < 7; i++) yield { i } }
  const chunks = [...new StreamingIterator(gen(), { chunk_size: 3, memory_limit: '128M', auto_gc: true })]
  assert.deepEqual(chunks.map((c) => c.map((x) => x.i)), [[0, 1, 2], [3, 4, 5], [6]])
})

test('StreamingIterator: an async iterable with for await', async () => {
  async function * source () {
    for (let i = 0; i < 11; i++) {
      await new Promise((resolve) => setImmediate(resolve))
      yield i
    }
  }
  const got = []
  for await (const chunk of new StreamingIterator(source(), { chunk_size: 4 })) got.push(chunk)
  assert.deepEqual(got, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]])
  // A sync iterable works with for await too.
  const sync = []
  for await (const chunk of new StreamingIterator(range(3), { chunk_size: 2 })) sync.push(chunk)
  assert.deepEqual(sync, [[0, 1], [2]])
  // And an async source refuses plain for...of.
  assert.throws(() => [...new StreamingIterator(source(), {})], TypeError)
})

test('StreamingIterator: error_handling stop rethrows the original error', () => {
  const boom = new Error('source broke')
  function * gen () { yield 1; yield 2; throw boom }
  const it = new StreamingIterator(gen(), { chunk_size: 5, error_handling: 'stop' })
  const seen = []
  assert.throws(() => { for (const c of it) seen.push(c) }, (e) => e === boom)
  // Items pulled before the exception are not lost.
  assert.deepEqual(seen, [[1, 2]])
  assert.equal(it.getStats().error_count, 1)
})

test('StreamingIterator: error_handling continue and retry go on after a throwing source', () => {
  const cont = new StreamingIterator(flaky(10, 4), { chunk_size: 3, error_handling: 'continue' })
  assert.deepEqual([...cont].flat(), range(10))
  const cs = cont.getStats()
  assert.equal(cs.error_count, 1)
  assert.equal(cs.skipped_chunks, 1)
  assert.match(cs.errors[0].message, /flaky at 4/)

  const retry = new StreamingIterator(flaky(10, 4), { chunk_size: 3, error_handling: 'retry', retry_attempts: 2 })
  assert.deepEqual([...retry].flat(), range(10))
  assert.equal(retry.getStats().retries, 1)

  // retry gives up after retry_attempts and throws the source's own exception.
  let n = 0
  const always = { [Symbol.iterator] () { return this }, next () { n++; throw new RangeError('always') } }
  const it = new StreamingIterator(always, { error_handling: 'retry', retry_attempts: 2 })
  assert.throws(() => [...it], (e) => e instanceof RangeError && e.message === 'always')
  assert.equal(n, 3)
})

test('StreamingIterator: cache_chunks + rewind replays without reading the source again', () => {
  let pulls = 0
  function * gen () { for (let i = 0; i < 6; i++) { pulls++; yield i } }
  const it = new StreamingIterator(gen(), { chunk_size: 4, cache_chunks: true })
  const first = [...it]
  assert.equal(pulls, 6)
  first[0].push('mutated by the user')
  it.rewind()
  const second = [...it]
  assert.equal(pulls, 6)
  assert.deepEqual(second, [[0, 1, 2, 3], [4, 5]])
  assert.equal(it.getStats().replayed_chunks, 2)
  // Without the cache a forward-only source cannot rewind.
  const plain = new StreamingIterator(gen(), { chunk_size: 4 })
  assert.throws(() => plain.rewind(), (e) => e instanceof MemwardenError && e.code === 'MW_UNSUPPORTED' && /cache_chunks/.test(e.message))
})

test('StreamingIterator: a manager runs cleanup when growth exceeds memory_limit', () => {
  const manager = new MemoryManager()
  let gcs = 0
  manager.onBeforeGC(() => { gcs++ })
  // 1 byte: every check after the first chunk is over the limit.
  // Kept alive and touched, so resident memory grows with every chunk.
  const kept = []
  function * big () { for (let i = 0; i < 40; i++) yield Buffer.alloc(1024 * 1024, 1) }
  const it = new StreamingIterator(big(), { chunk_size: 8, memory_limit: 1, manager })
  let items = 0
  for (const c of it) {
    items += c.length
    kept.push(c)
  }
  assert.equal(items, 40)
  const s = it.getStats()
  assert.equal(s.cleanup, 'manager')
  assert.ok(s.cleanups >= 1 && gcs >= 1, JSON.stringify(s))
  assert.ok(s.chunk_size < 8)
})

test('bad config: chunk_size 0 and unknown keys name the key with a code', () => {
  assert.throws(() => new StreamingIterator([], { chunk_size: 0 }),
    (e) => e instanceof MemwardenError && e.code === 'MW_INVALID_CONFIG' && /chunk_size/.test(e.message))
  assert.throws(() => new StreamingIterator([], { chunk_sise: 10 }),
    (e) => e.code === 'MW_INVALID_CONFIG' && /did you mean 'chunk_size'/.test(e.message))
  assert.throws(() => new LazyIterator(() => [], { batch_sise: 10 }),
    (e) => e.code === 'MW_INVALID_CONFIG' && /did you mean 'batch_size'/.test(e.message))
  assert.throws(() => new LazyIterator(() => [], { mode: 'keyset' }), (e) => e.code === 'MW_INVALID_CONFIG' && /key/.test(e.message))
  assert.throws(() => new FilteredIterator([], { filters: [1] }), TypeError)
  assert.throws(() => new StreamingIterator(42), TypeError)
})

const rows = range(23).map((i) => ({ id: i * 2, status: i % 3 === 0 ? 'active' : 'idle', score: i * 5 }))

test('LazyIterator: offset loader, as the seed', () => {
  const calls = []
  const it = new LazyIterator((offset, limit) => {
    calls.push([offset, limit])
    return rows.slice(offset, offset + limit)
  }, { batch_size: 10, prefetch: true })
  assert.deepEqual([...it].map((r) => r.id), rows.map((r) => r.id))
  assert.deepEqual(calls, [[0, 10], [10, 10], [20, 10], [30, 10]])
  assert.equal(it.getStats().prefetch_active, false)
  assert.deepEqual([...it.batches()], [])
  it.rewind()
  assert.deepEqual([...it.batches()].map((b) => b.length), [10, 10, 3])
})

test('LazyIterator: keyset loader with a property name and with a function', () => {
  for (const key of ['id', (r) => r.id]) {
    const calls = []
    const it = new LazyIterator((after, limit) => {
      calls.push(after)
      return rows.filter((r) => after === null || r.id > after).slice(0, limit)
    }, { batch_size: 10, mode: 'keyset', key })
    assert.deepEqual([...it].map((r) => r.id), rows.map((r) => r.id))
    assert.deepEqual(calls, [null, 18, 38, 44])
  }
  // String keys work too.
  const names = ['a', 'b', 'c', 'd', 'e']
  const it = new LazyIterator((after, limit) => names.filter((n) => after === null || n > after).slice(0, limit).map((n) => ({ n })),
    { batch_size: 2, mode: 'keyset', key: 'n' })
  assert.deepEqual([...it].map((x) => x.n), names)
})

test('LazyIterator: an async loader with for await, and errors', async () => {
  const it = new LazyIterator(async (offset, limit) => {
    await new Promise((resolve) => setTimeout(resolve, 1))
    return rows.slice(offset, offset + limit)
  }, { batch_size: 8 })
  const got = []
  for await (const r of it) got.push(r.id)
  assert.deepEqual(got, rows.map((r) => r.id))
  const batches = []
  it.rewind()
  for await (const b of it.batches()) batches.push(b.length)
  assert.deepEqual(batches, [8, 8, 7])

  // A synchronous for...of refuses a Promise-returning loader.
  assert.throws(() => [...new LazyIterator(async () => [], {})], (e) => e.code === 'MW_CALLBACK' && /for await/.test(e.message))

  // error_handling stop: the loader's own rejection reason.
  const boom = new TypeError('db down')
  const failing = new LazyIterator(async (offset) => { if (offset > 0) throw boom; return [1, 2] }, { batch_size: 2, error_handling: 'stop' })
  const seen = []
  await assert.rejects(async () => { for await (const x of failing) seen.push(x) }, (e) => e === boom)
  assert.deepEqual(seen, [1, 2])

  // retry in keyset mode: the failed page is loaded again.
  let fails = 1
  const retry = new LazyIterator(async (after, limit) => {
    if (after === 18 && fails-- > 0) throw new Error('transient')
    return rows.filter((r) => after === null || r.id > after).slice(0, limit)
  }, { batch_size: 10, mode: 'keyset', key: 'id', error_handling: 'retry' })
  const ids = []
  for await (const r of retry) ids.push(r.id)
  assert.deepEqual(ids, rows.map((r) => r.id))
  assert.equal(retry.getStats().retries, 1)
})

test('FilteredIterator: early_exit true and false counts', () => {
  const counts = [0, 0]
  const filters = [
    (item) => { counts[0]++; return item.status === 'active' },
    (item) => { counts[1]++; return item.score > 50 }
  ]
  const early = new FilteredIterator(rows, { filters, early_exit: true })
  const passed = [...early]
  const expected = rows.filter((r) => r.status === 'active' && r.score > 50)
  assert.deepEqual(passed, expected)
  assert.deepEqual(counts, [23, rows.filter((r) => r.status === 'active').length])
  let s = early.getStats()
  assert.equal(s.items_seen, 23)
  assert.equal(s.passed, expected.length)
  const active = rows.filter((r) => r.status === 'active').length
  assert.deepEqual(s.filters, [
    { evaluated: 23, rejected: 23 - active },
    { evaluated: active, rejected: active - expected.length }
  ])

  counts[0] = counts[1] = 0
  const all = new FilteredIterator(rows, { filters, early_exit: false })
  assert.deepEqual([...all], expected)
  assert.deepEqual(counts, [23, 23])
  s = all.getStats()
  assert.equal(s.filters[1].evaluated, 23)
  assert.equal(s.early_exit, false)
})

test('FilteredIterator: over a StreamingIterator, and a throwing filter', () => {
  const source = new StreamingIterator(range(100), { chunk_size: 7 })
  const it = new FilteredIterator(source, { filters: [(x) => x % 10 === 0] })
  assert.deepEqual([...it], [0, 10, 20, 30, 40, 50, 60, 70, 80, 90])
  const boom = new Error('bad filter')
  const bad = new FilteredIterator(range(10), { filters: [(x) => { if (x === 3) throw boom; return true }] })
  const seen = []
  assert.throws(() => { for (const x of bad) seen.push(x) }, (e) => e === boom)
})

test('seed snippets: StreamingIterator, LazyIterator, FilteredIterator', () => {
  const dataSource = range(2500).map((i) => ({ id: i, status: i % 2 ? 'active' : 'idle', score: i % 100 }))
  const processed = []
  const processItem = (item) => processed.push(item.id)
  const iterator = new StreamingIterator(dataSource, { chunk_size: 1000, memory_limit: '128M', auto_gc: true })
  for (const chunk of iterator) {
    for (const item of chunk) processItem(item)
  }
  assert.equal(processed.length, 2500)

  const database = { getRecords: (offset, limit) => dataSource.slice(offset, offset + limit) }
  const lazyIterator = new LazyIterator((offset, limit) => database.getRecords(offset, limit), { batch_size: 500, prefetch: true })
  let n = 0
  for (const item of lazyIterator) { n += item.id >= 0 ? 1 : 0 }
  assert.equal(n, 2500)

  const filteredIterator = new FilteredIterator(dataSource, {
    filters: [
      (item) => item.status === 'active',
      (item) => item.score > 50
    ],
    early_exit: true
  })
  const active = [...filteredIterator]
  assert.equal(active.length, dataSource.filter((i) => i.status === 'active' && i.score > 50).length)

  // The seed's full option list is accepted.
  const config = {
    chunk_size: 1000, memory_limit: '128M', auto_gc: true, prefetch: false, cache_chunks: false, parallel_processing: false, error_handling: 'continue'
  }
  assert.equal([...new StreamingIterator(dataSource, config)].length, 3)
})
