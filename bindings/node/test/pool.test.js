'use strict'

// Behaviour of the Node binding's MemoryPool / TypedMemoryPool. Run with `node --test test/`.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const { MemoryPool, TypedMemoryPool, MemoryManager, MemwardenError } = require('..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A fake database connection, as in the seed. */
class DatabaseConnection {
  static created = 0
  constructor (config) {
    this.config = config
    this.id = ++DatabaseConnection.created
    this.connected = true
    this.inTransaction = false
    this.cache = new Map()
    this.closed = false
  }

  query (sql) {
    this.cache.set(sql, true)
    return [{ sql, connection: this.id }]
  }

  rollback () {
    this.inTransaction = false
  }

  clearCache () {
    this.cache.clear()
  }

  isConnected () {
    return this.connected
  }

  close () {
    this.closed = true
  }
}

/** A pool of `{ n }` objects that records what its hooks saw. */
function countingPool (config = {}) {
  const seen = { created: 0, destroyed: [], reset: 0, validated: 0 }
  const pool = new MemoryPool({
    factory: () => ({ n: seen.created++ }),
    destroy: (obj) => seen.destroyed.push(obj.n),
    auto_cleanup: false,
    ...config
  })
  return { pool, seen }
}

/**
 * Awaits `promise` with the event loop held open: the pool's own timers are unref'd (a
 * waiter that nothing can serve does not keep a process alive).
 */
async function held (promise) {
  const keepAlive = setInterval(() => {}, 1000)
  try {
    return await promise
  } finally {
    clearInterval(keepAlive)
  }
}

async function rejectsWith (promise, code, ...needles) {
  await assert.rejects(held(promise), (e) => {
    assert.ok(e instanceof MemwardenError, `not a MemwardenError: ${e}`)
    assert.equal(e.code, code, e.message)
    for (const n of needles) assert.ok(e.message.includes(n), `${JSON.stringify(e.message)} lacks ${JSON.stringify(n)}`)
    return true
  })
}

function throwsMw (fn, code, ...needles) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof MemwardenError, `not a MemwardenError: ${e}`)
    assert.equal(e.code, code, e.message)
    for (const n of needles) assert.ok(e.message.includes(n), `${JSON.stringify(e.message)} lacks ${JSON.stringify(n)}`)
    return true
  })
}

test('seed basic usage', () => {
  const config = { dsn: 'sqlite::memory:' }
  const connectionPool = new MemoryPool({
    factory: function () {
      return new DatabaseConnection(config)
    },
    max_size: 10,
    min_size: 2,
    max_idle_time: 300 // 5 minutes
  })
  const connection = connectionPool.acquire()
  assert.ok(connection instanceof DatabaseConnection)
  const result = connection.query('SELECT * FROM users')
  assert.equal(result[0].sql, 'SELECT * FROM users')
  connectionPool.release(connection)

  const stats = connectionPool.getStatistics()
  assert.equal(stats.active, 0)
  assert.equal(stats.idle, 2)
  assert.equal(stats.hit_rate, 100)
  assert.equal(stats.total_created, 2)
  assert.equal(stats.total_destroyed, 0)
  connectionPool.close()
})

test('seed typed pool', () => {
  class DatabaseConnectionPool extends TypedMemoryPool {
    createObject () {
      return new DatabaseConnection(this.config)
    }

    resetObject (object) {
      object.rollback() // Reset state
      object.clearCache()
    }

    validateObject (object) {
      return object.isConnected()
    }
  }

  const pool = new DatabaseConnectionPool({ max_size: 15 })
  assert.ok(pool instanceof MemoryPool)
  const conn = pool.acquire()
  assert.ok(conn instanceof DatabaseConnection)
  assert.deepEqual(conn.config, { max_size: 15 })
  conn.inTransaction = true
  conn.query('SELECT 1')
  pool.release(conn)
  assert.equal(conn.inTransaction, false, 'resetObject ran on release')
  assert.equal(conn.cache.size, 0)
  const s = pool.getStatistics()
  assert.equal(s.max_size, 15)
  assert.equal(s.min_size, 2)
  pool.close()
})

test('a TypedMemoryPool must override createObject and takes no hook keys', () => {
  class Empty extends TypedMemoryPool {}
  assert.throws(() => new Empty({}), TypeError)
  class Ok extends TypedMemoryPool {
    createObject () {
      return {}
    }
  }
  throwsMw(() => new Ok({ factory: () => ({}) }), 'MW_INVALID_CONFIG', 'createObject')
  // Only overridden methods are passed to the core: no validation calls otherwise.
  const p = new Ok({ max_size: 1, min_size: 1, validation_interval: 0, auto_cleanup: false })
  p.release(p.acquire())
  p.close()
})

test('min_size is prefilled and max_size never exceeded', () => {
  const { pool, seen } = countingPool({ max_size: 3, min_size: 2 })
  assert.equal(seen.created, 2)
  assert.deepEqual(pick(pool.getStatistics(), 'idle', 'active', 'size'), { idle: 2, active: 0, size: 2 })
  const held = [pool.acquire(), pool.acquire(), pool.acquire()]
  assert.equal(new Set(held).size, 3)
  assert.equal(seen.created, 3)
  throwsMw(() => pool.acquire(), 'MW_EXHAUSTED', 'max_size')
  assert.equal(seen.created, 3)
  assert.equal(pool.getStatistics().size, 3)
  for (const o of held) pool.release(o)
  pool.close()
})

test('objects are reused, most recently released first, and hit_rate counts it', () => {
  const { pool, seen } = countingPool({ max_size: 3, min_size: 0 })
  const a = pool.acquire()
  pool.release(a)
  for (let i = 0; i < 9; i++) {
    const b = pool.acquire()
    assert.equal(b, a)
    pool.release(b)
  }
  const s = pool.getStatistics()
  assert.equal(seen.created, 1)
  assert.equal(s.total_acquired, 10)
  assert.equal(s.hit_rate, 90)
  pool.close()
})

test('acquireAsync resolves at once when an object is free', async () => {
  const { pool } = countingPool({ max_size: 1, min_size: 1 })
  const obj = await pool.acquireAsync()
  assert.equal(obj.n, 0)
  pool.release(obj)
  pool.close()
})

test('acquireAsync waiters are served first come first served', async () => {
  const { pool } = countingPool({ max_size: 1, min_size: 0, acquire_timeout: 5 })
  const held = pool.acquire()
  const order = []
  const waiters = ['a', 'b', 'c'].map((name) =>
    pool.acquireAsync().then((obj) => {
      order.push(name)
      assert.equal(obj, held)
      // Hand it on a little later, as real work would.
      setTimeout(() => pool.release(obj), 2)
    })
  )
  assert.equal(pool.getStatistics().waiting, 3)
  // A sync acquire does not jump the queue.
  throwsMw(() => pool.acquire(), 'MW_EXHAUSTED')
  pool.release(held)
  await Promise.all(waiters)
  assert.deepEqual(order, ['a', 'b', 'c'])
  await sleep(10)
  const s = pool.getStatistics()
  assert.deepEqual(pick(s, 'waiting', 'active', 'idle', 'total_created'), { waiting: 0, active: 0, idle: 1, total_created: 1 })
  pool.close()
})

test('acquireAsync times out with MW_TIMEOUT and counts it', async () => {
  const { pool } = countingPool({ max_size: 1, min_size: 0, acquire_timeout: 0.05 })
  const held = pool.acquire()
  const started = Date.now()
  await rejectsWith(pool.acquireAsync(), 'MW_TIMEOUT', 'acquire_timeout (0.05 s)', '1 of max_size 1')
  assert.ok(Date.now() - started >= 40)
  const s = pool.getStatistics()
  assert.equal(s.timeouts, 1)
  assert.equal(s.waiting, 0)
  // The released object is not handed to the waiter that gave up.
  pool.release(held)
  assert.equal(pool.getStatistics().idle, 1)
  pool.close()
})

test('close rejects waiters, refuses acquires and destroys objects as they come back', async () => {
  const { pool, seen } = countingPool({ max_size: 2, min_size: 2, acquire_timeout: 5 })
  const a = pool.acquire()
  const b = pool.acquire()
  const waiting = pool.acquireAsync()
  const idleBefore = pool.getStatistics()
  assert.equal(idleBefore.waiting, 1)
  assert.equal(pool.closed, false)
  pool.close()
  assert.equal(pool.closed, true)
  await rejectsWith(waiting, 'MW_CLOSED')
  throwsMw(() => pool.acquire(), 'MW_CLOSED')
  await rejectsWith(pool.acquireAsync(), 'MW_CLOSED')
  await rejectsWith(pool.use(async () => 1), 'MW_CLOSED')
  assert.deepEqual(seen.destroyed, [])
  pool.release(a)
  pool.release(b)
  assert.deepEqual(seen.destroyed.sort(), [0, 1])
  const s = pool.getStatistics()
  assert.deepEqual(pick(s, 'size', 'idle', 'active', 'closed'), { size: 0, idle: 0, active: 0, closed: true })
  pool.close() // idempotent
})

test('double and foreign release are MW_INVALID_ARGUMENT and change nothing', () => {
  const { pool } = countingPool({ max_size: 2, min_size: 0 })
  const a = pool.acquire()
  const b = pool.acquire()
  pool.release(a)
  const before = pool.getStatistics()
  throwsMw(() => pool.release(a), 'MW_INVALID_ARGUMENT', 'released twice')
  throwsMw(() => pool.release({ n: 0 }), 'MW_INVALID_ARGUMENT')
  throwsMw(() => pool.release(undefined), 'MW_INVALID_ARGUMENT')
  throwsMw(() => pool.release(42), 'MW_INVALID_ARGUMENT')
  assert.deepEqual(pool.getStatistics(), before)
  // The table is intact: both objects still behave.
  assert.equal(pool.acquire(), a)
  pool.release(a)
  pool.release(b)
  assert.equal(pool.getStatistics().idle, 2)
  pool.close()
})

test('reset runs on release; a throwing reset rethrows and destroys the object', () => {
  const boom = new Error('rollback failed')
  let resets = 0
  const { pool, seen } = countingPool({
    max_size: 2,
    min_size: 0,
    reset: (obj) => {
      resets++
      if (obj.n === 1) throw boom
      obj.dirty = false
    }
  })
  const a = pool.acquire()
  const b = pool.acquire()
  a.dirty = true
  pool.release(a)
  assert.equal(a.dirty, false)
  assert.throws(() => pool.release(b), (e) => e === boom)
  assert.equal(resets, 2)
  assert.deepEqual(seen.destroyed, [1])
  assert.deepEqual(pick(pool.getStatistics(), 'idle', 'active', 'size'), { idle: 1, active: 0, size: 1 })
  throwsMw(() => pool.release(b), 'MW_INVALID_ARGUMENT')
  pool.close()
})

test('validate runs only for objects idle longer than validation_interval', async () => {
  let validated = 0
  const { pool } = countingPool({
    max_size: 2,
    min_size: 1,
    validation_interval: 0.05,
    validate: () => {
      validated++
      return true
    }
  })
  for (let i = 0; i < 50; i++) pool.release(pool.acquire())
  assert.equal(validated, 0, 'a hot pool does not validate')
  await sleep(120)
  pool.release(pool.acquire())
  assert.equal(validated, 1)
  pool.close()
})

test('failing validation destroys the object and serves the next', async () => {
  const calls = []
  const { pool, seen } = countingPool({
    max_size: 3,
    min_size: 2,
    validation_interval: 0,
    validate: (obj) => {
      calls.push(obj.n)
      return obj.n !== 1 // object 1 has gone bad
    }
  })
  await sleep(30) // idle longer than validation_interval (the clock is coarse)
  const obj = pool.acquire()
  assert.equal(obj.n, 0)
  assert.deepEqual(calls, [1, 0])
  assert.deepEqual(seen.destroyed, [1])
  const s = pool.getStatistics()
  assert.equal(s.validation_failures, 1)
  assert.equal(s.size, 1)
  pool.release(obj)
  // A validator that returns a non-boolean is an error, not a silent false.
  const bad = new MemoryPool({ factory: () => ({}), min_size: 1, validation_interval: 0, validate: () => undefined, auto_cleanup: false })
  await sleep(30)
  throwsMw(() => bad.acquire(), 'MW_CALLBACK', 'true or false')
  bad.close()
  pool.close()
})

test('a throwing factory: the original error, the pool consistent', async () => {
  const boom = new TypeError('database is down')
  let fail = true
  let made = 0
  const pool = new MemoryPool({
    factory: () => {
      if (fail) throw boom
      return { n: made++ }
    },
    max_size: 1,
    min_size: 0,
    auto_cleanup: false
  })
  assert.throws(() => pool.acquire(), (e) => e === boom)
  await assert.rejects(pool.acquireAsync(), (e) => e === boom)
  await assert.rejects(pool.use(async () => 1), (e) => e === boom)
  assert.deepEqual(pick(pool.getStatistics(), 'size', 'active', 'idle', 'waiting'), { size: 0, active: 0, idle: 0, waiting: 0 })
  fail = false
  const obj = pool.acquire()
  assert.deepEqual(obj, { n: 0 })
  pool.release(obj)
  pool.close()

  // A throwing factory at construction (min_size) throws from the constructor.
  assert.throws(() => new MemoryPool({ factory: () => { throw boom }, min_size: 1 }), (e) => e === boom)
})

test('a waiter whose object the factory fails to create gets the factory error', async () => {
  let fail = false
  const boom = new Error('cannot connect')
  const pool = new MemoryPool({
    factory: () => {
      if (fail) throw boom
      return {}
    },
    max_size: 1,
    min_size: 0,
    acquire_timeout: 5,
    reset: () => { throw new Error('reset failed') },
    auto_cleanup: false
  })
  const held = pool.acquire()
  const waiting = pool.acquireAsync()
  fail = true
  // The reset fails: the object is destroyed and the waiter's object must be created anew,
  // which fails too. The releaser gets its own error (the reset's), the waiter the factory's.
  assert.throws(() => pool.release(held), /reset failed/)
  await assert.rejects(waiting, (e) => e === boom)
  assert.deepEqual(pick(pool.getStatistics(), 'size', 'waiting'), { size: 0, waiting: 0 })
  pool.close()
})

test('a factory returning undefined, null, a Promise or a pooled object is a MemwardenError', () => {
  for (const [value, needle] of [[undefined, 'undefined'], [null, 'null'], [Promise.resolve({}), 'Promise']]) {
    const pool = new MemoryPool({ factory: () => value, min_size: 0, auto_cleanup: false })
    throwsMw(() => pool.acquire(), 'MW_CALLBACK', needle)
    assert.equal(pool.getStatistics().size, 0)
    pool.close()
  }
  const same = {}
  const pool = new MemoryPool({ factory: () => same, min_size: 0, max_size: 2, auto_cleanup: false })
  pool.acquire()
  throwsMw(() => pool.acquire(), 'MW_CALLBACK', 'already in the pool')
  pool.release(same)
  pool.close()
})

test('the factory is called with the pool', () => {
  let got
  const pool = new MemoryPool({ factory: (p) => { got = p; return {} }, min_size: 1, auto_cleanup: false })
  assert.equal(got, pool)
  pool.close()
})

test('leak detection reports once, with where the object was acquired', async () => {
  const leaks = []
  const { pool } = countingPool({
    max_size: 2,
    min_size: 0,
    leak_detection_threshold: 0.05,
    onLeak: (report) => leaks.push(report)
  })
  const obj = pool.acquire()
  pool.maintain()
  assert.equal(leaks.length, 0)
  await sleep(100)
  pool.maintain()
  pool.maintain()
  assert.equal(leaks.length, 1, 'reported once')
  const [report] = leaks
  assert.ok(report.acquired_at.includes(path.basename(__filename)), report.acquired_at)
  assert.ok(!report.acquired_at.includes(path.join('lib', 'index.js')), report.acquired_at)
  assert.ok(report.held_ms >= 50)
  assert.equal(report.object, obj)
  const s = pool.getStatistics()
  assert.equal(s.leaks, 1)
  assert.equal(s.recent_leaks.length, 1)
  assert.equal(s.recent_leaks[0].acquired_at, report.acquired_at)
  pool.release(obj)

  // An explicit label wins; use() labels with its caller.
  const labeled = pool.acquire('worker #7')
  let inUse
  const using = pool.use(async (o) => {
    inUse = o
    await sleep(100)
    pool.maintain()
  })
  await using
  await sleep(10)
  pool.maintain()
  assert.equal(leaks.length, 3)
  assert.ok(leaks.some((l) => l.acquired_at === 'worker #7' && l.object === labeled))
  const useLeak = leaks.find((l) => l.object === inUse)
  assert.ok(useLeak.acquired_at.includes(path.basename(__filename)), useLeak.acquired_at)
  pool.release(labeled)
  pool.close()
})

test('without leak detection no label is kept', async () => {
  const { pool } = countingPool({ max_size: 1, min_size: 0 })
  const obj = pool.acquire('ignored')
  pool.maintain()
  assert.deepEqual(pool.getStatistics().recent_leaks, [])
  pool.release(obj)
  assert.throws(() => pool.acquire(42), TypeError)
  pool.close()
})

test('statistics: false keeps sizes only', () => {
  const { pool } = countingPool({ max_size: 2, min_size: 1, statistics: false })
  const o = pool.acquire()
  const s = pool.getStatistics()
  assert.deepEqual(pick(s, 'active', 'idle', 'size', 'total_created', 'total_acquired', 'hit_rate', 'statistics'),
    { active: 1, idle: 0, size: 1, total_created: 0, total_acquired: 0, hit_rate: 0, statistics: false })
  pool.release(o)
  pool.close()
})

test('camelCase aliases', async () => {
  const pool = new MemoryPool({
    factory: () => ({}),
    maxSize: 3,
    minSize: 1,
    maxIdleTime: 10,
    maxLifetime: 100,
    validationInterval: 5,
    acquireTimeout: 0.05,
    leakDetectionThreshold: 0,
    autoCleanup: false
  })
  const s = pool.getStatistics()
  assert.deepEqual(pick(s, 'max_size', 'min_size', 'size'), { max_size: 3, min_size: 1, size: 1 })
  const held = [pool.acquire(), pool.acquire(), pool.acquire()]
  await rejectsWith(pool.acquireAsync(), 'MW_TIMEOUT', '0.05 s')
  for (const o of held) pool.release(o)
  pool.close()
  throwsMw(() => new MemoryPool({ factory: () => ({}), maxSize: 2, max_size: 3 }), 'MW_INVALID_CONFIG', "'maxSize'", "'max_size'")
})

test('bad config is refused with a message naming it', () => {
  const f = () => ({})
  for (const [config, needle] of [
    [{ factory: f, max_size: 0 }, "'max_size'"],
    [{ factory: f, max_size: 2, min_size: 3 }, 'min_size (3) must not exceed max_size (2)'],
    [{ factory: f, max_idle_time: -1 }, "'max_idle_time'"],
    [{ factory: f, acquire_timeout: -0.5 }, "'acquire_timeout'"],
    [{ factory: f, max_sise: 3 }, "did you mean 'max_size'"],
    [{ factory: f, statistics: 'yes' }, "'statistics'"],
    [{ factory: f, max_size: NaN }, "'max_size'"]
  ]) {
    throwsMw(() => new MemoryPool(config), 'MW_INVALID_CONFIG', needle)
  }
  assert.throws(() => new MemoryPool({ max_size: 2 }), (e) => e instanceof TypeError && e.message.includes("'factory'"))
  assert.throws(() => new MemoryPool({ factory: 'nope' }), (e) => e instanceof TypeError && e.message.includes("'factory'"))
  assert.throws(() => new MemoryPool({ factory: f, reset: 1 }), (e) => e instanceof TypeError && e.message.includes("'reset'"))
  assert.throws(() => new MemoryPool(), TypeError)
  assert.throws(() => new MemoryPool([]), TypeError)
})

test('a manager trims registered pools in forceGarbageCollection', () => {
  const { pool, seen } = countingPool({ max_size: 5, min_size: 1 })
  const held = [1, 2, 3, 4].map(() => pool.acquire())
  for (const o of held) pool.release(o)
  assert.equal(pool.getStatistics().idle, 4)
  const manager = new MemoryManager({ hostGc: false })
  manager.registerCleanupHook('pool', pool, 5)
  assert.deepEqual(manager.cleanupHooks(), [{ name: 'pool', priority: 5 }])
  const report = manager.forceGarbageCollection()
  assert.ok(report.hooks.some((h) => h.name === 'pool' && h.ok))
  assert.equal(pool.getStatistics().idle, 1, 'trimmed to min_size')
  assert.equal(seen.destroyed.length, 3, 'the destroy hook ran for each')
  manager.emergencyCleanup()
  assert.equal(pool.getStatistics().idle, 0)
  assert.equal(manager.unregisterCleanupHook('pool'), true)
  pool.close()
})

test('cleanup and trim', () => {
  const { pool } = countingPool({ max_size: 5, min_size: 2 })
  const held = [1, 2, 3, 4, 5].map(() => pool.acquire())
  for (const o of held) pool.release(o)
  pool.cleanup()
  assert.equal(pool.getStatistics().idle, 2)
  pool.cleanup('emergency')
  assert.equal(pool.getStatistics().idle, 0)
  throwsMw(() => pool.cleanup('gentle'), 'MW_INVALID_ARGUMENT', 'gentle')
  pool.maintain() // refills to min_size
  assert.equal(pool.getStatistics().idle, 2)
  assert.equal(pool.trim(0), 2)
  assert.throws(() => pool.trim(-1), TypeError)
  pool.close()
})

test('use() releases the object, also when fn throws', async () => {
  const { pool } = countingPool({ max_size: 1, min_size: 0 })
  const result = await pool.use(async (obj) => {
    assert.equal(pool.getStatistics().active, 1)
    await sleep(1)
    return obj.n + 41
  })
  assert.equal(result, 41)
  assert.equal(pool.getStatistics().active, 0)
  const boom = new Error('query failed')
  await assert.rejects(pool.use(async () => { throw boom }), (e) => e === boom)
  assert.deepEqual(pick(pool.getStatistics(), 'active', 'idle'), { active: 0, idle: 1 })
  // Sync functions too, and waiting for a busy object.
  const held = pool.acquire()
  const later = pool.use((obj) => obj.n)
  pool.release(held)
  assert.equal(await later, 0)
  await assert.rejects(pool.use('nope'), TypeError)
  pool.close()
})

test('auto_cleanup maintains an idle pool from an unref\'d interval', async () => {
  const { pool, seen } = countingPool({ max_size: 2, min_size: 1, auto_cleanup: true })
  pool.cleanup('emergency')
  assert.equal(pool.getStatistics().size, 0)
  await sleep(1300)
  assert.equal(pool.getStatistics().size, 1, 'refilled to min_size without a call into the pool')
  assert.equal(seen.created, 2)
  pool.close()
})

test('the process exits normally with a live pool', () => {
  const script = `
    const { MemoryPool } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const pool = new MemoryPool({ factory: () => ({}), max_size: 2, min_size: 1 })
    const obj = pool.acquire()
    pool.acquireAsync().then(() => {})
    pool.acquireAsync().then(() => {}, () => {})
    console.log('ok', pool.getStatistics().waiting)
  `
  const started = Date.now()
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10000 })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'ok 1')
  assert.ok(Date.now() - started < 5000)
})

test('an unreferenced pool is collected, its interval notwithstanding', async () => {
  assert.equal(typeof global.gc, 'function', 'run the tests with node --expose-gc, as run-tests.sh and npm test do')
  const used = () => {
    const pool = new MemoryPool({ factory: () => ({}), max_size: 2, min_size: 1 })
    pool.release(pool.acquire())
    return new WeakRef(pool)
  }
  const refs = [used(), used(), used(), used(), used()]
  await sleep(10)
  global.gc()
  await sleep(10)
  global.gc()
  assert.equal(refs.filter((r) => r.deref() !== undefined).length, 0)
})

function pick (obj, ...keys) {
  return Object.fromEntries(keys.map((k) => [k, obj[k]]))
}
