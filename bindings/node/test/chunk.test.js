'use strict'

// Behaviour of the Node binding's ChunkedDatabaseProcessor on SQLite (a temp file), and on
// PostgreSQL and MariaDB when they are reachable (MEMWARDEN_TEST_POSTGRES_URL,
// MEMWARDEN_TEST_MYSQL_URL; MEMWARDEN_REQUIRE_SERVICES=1 turns a skip into a failure).

const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { ChunkedDatabaseProcessor, MemoryManager, MemwardenError } = require('..')

const PG_URL = process.env.MEMWARDEN_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test'
const MY_URL = process.env.MEMWARDEN_TEST_MYSQL_URL || 'mysql://root@127.0.0.1:3306/test'
const REQUIRE = process.env.MEMWARDEN_REQUIRE_SERVICES === '1'

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memwarden-chunk-'))
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }))
let seq = 0
const unique = (stem) => `${stem}_${process.pid}_${++seq}`

function haveSqlite3 () {
  return spawnSync('sqlite3', ['-version']).status === 0
}

/** A SQLite file with table t(id, name, active, score) of `n` rows; every third row inactive. */
function sqliteDb (n) {
  const file = path.join(tmp, `${unique('db')}.sqlite`)
  execFileSync('sqlite3', [file,
    'CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, active INTEGER, score REAL, data BLOB);' +
    `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${n}) ` +
    "INSERT INTO t SELECT x, 'name ' || x, CASE WHEN x % 3 = 0 THEN 0 ELSE 1 END, x * 0.5, x'00ff' FROM c;"])
  return { file, url: `sqlite://${file}` }
}

const sqliteOk = haveSqlite3()
// scripts/test installs the sqlite3 CLI; without it these tests fail rather than hide.
const sqliteTest = (name, fn) => test(name, (...a) => {
  assert.ok(sqliteOk, 'the sqlite3 CLI is needed to create the test databases (apt-get install sqlite3)')
  return fn(...a)
})

function activeIds (n) {
  const ids = []
  for (let i = 1; i <= n; i++) if (i % 3 !== 0) ids.push(i)
  return ids
}

function assertOnce (seen, expected) {
  const counts = new Map()
  for (const id of seen) counts.set(id, (counts.get(id) || 0) + 1)
  const twice = [...counts].filter(([, c]) => c > 1)
  assert.deepEqual(twice, [], 'rows seen twice')
  assert.deepEqual([...counts.keys()].sort((a, b) => a - b), expected)
}

sqliteTest('every row exactly once while the callback updates the filtered column (sqlite file)', () => {
  const { file, url } = sqliteDb(1000)
  const p = new ChunkedDatabaseProcessor(url, { chunk_size: 100 })
  const seen = []
  const stats = p.processQuery('SELECT * FROM t WHERE active = 1', (batch) => {
    for (const row of batch) seen.push(row.id)
    // Deactivate the rows just seen: with OFFSET paging this would skip the next rows.
    execFileSync('sqlite3', [file, `UPDATE t SET active = 0 WHERE id IN (${batch.map((r) => r.id).join(',')})`])
  })
  assertOnce(seen, activeIds(1000))
  assert.equal(stats.processed, seen.length)
  assert.equal(stats.key_column, 'id')
  assert.equal(stats.pagination, 'keyset')
  assert.equal(Number(execFileSync('sqlite3', [file, 'SELECT COUNT(*) FROM t WHERE active = 1'])), 0)
})

sqliteTest('rows are objects with typed values, or arrays with row_format tuple', () => {
  const { url } = sqliteDb(5)
  const rows = []
  new ChunkedDatabaseProcessor(url).process('SELECT * FROM t', (row) => rows.push(row))
  assert.deepEqual(rows[0], { id: 1, name: 'name 1', active: 1, score: 0.5, data: Buffer.from([0, 255]) })
  const tuples = []
  new ChunkedDatabaseProcessor(url, { row_format: 'tuple' }).processQuery('SELECT id, name FROM t', (b) => tuples.push(...b))
  assert.deepEqual(tuples, [[1, 'name 1'], [2, 'name 2'], [3, 'name 3'], [4, 'name 4'], [5, 'name 5']])
})

sqliteTest('progress both ways: progress_callback(processed, total) and setProgressCallback(stats)', () => {
  const { url } = sqliteDb(250)
  const calls = []
  const p = new ChunkedDatabaseProcessor(url, {
    chunk_size: 100,
    memory_limit: '128M',
    progress_callback: (processed, total) => calls.push([processed, total])
  })
  p.process('SELECT * FROM t', () => {})
  assert.deepEqual(calls, [[100, 250], [200, 250], [250, 250]])
  const stats = []
  p.setProgressCallback((s) => stats.push(s))
  p.processQuery('SELECT * FROM t', () => {}, { batch_size: 125 })
  assert.equal(stats.length, 2)
  const last = stats[1]
  assert.equal(last.processed, 250)
  assert.equal(last.total, 250)
  for (const k of ['memory_usage', 'estimated_remaining', 'rows_per_second']) assert.equal(typeof last[k], 'number', k)
  assert.equal(p.getStats().processed, 250)
})

sqliteTest('a failing chunk is retried, then error_callback decides continue or stop', () => {
  const { url } = sqliteDb(300)
  const boom = new Error('cannot handle chunk 2')
  let attempts = 0
  const failSecond = (batch) => {
    if (batch[0].id === 101) {
      attempts++
      throw boom
    }
  }
  const decisions = []
  const p = new ChunkedDatabaseProcessor(url, {
    chunk_size: 100,
    retry_attempts: 2,
    retry_delay: 0,
    error_callback: (error, chunk) => {
      decisions.push({ same: error === boom, chunk })
      return true
    }
  })
  const stats = p.processQuery('SELECT * FROM t', failSecond)
  assert.equal(attempts, 3)
  assert.equal(decisions.length, 1)
  assert.equal(decisions[0].same, true)
  assert.equal(decisions[0].chunk.first_key, 101)
  assert.equal(decisions[0].chunk.last_key, 200)
  assert.equal(decisions[0].chunk.attempts, 3)
  assert.equal(stats.processed, 200)
  assert.equal(stats.failed_chunks, 1)
  assert.equal(stats.failed_rows, 100)
  assert.equal(stats.retries, 2)
  assert.match(stats.failures[0].error, /cannot handle chunk 2/)

  // stop: the original exception is rethrown.
  p.setErrorCallback(() => false)
  assert.throws(() => p.processQuery('SELECT * FROM t', failSecond), (e) => e === boom)
  assert.equal(p.getStats().processed, 100)

  // A retry that succeeds clears the exception: the run finishes.
  let once = true
  const s = p.processQuery('SELECT * FROM t', (batch) => {
    if (batch[0].id === 101 && once) {
      once = false
      throw new Error('transient')
    }
  })
  assert.equal(s.processed, 300)
  assert.equal(s.retries, 1)
})

sqliteTest('a callback exception without error_callback is rethrown as the same object', () => {
  const { url } = sqliteDb(50)
  class MyError extends Error {}
  const mine = new MyError('row 7')
  const p = new ChunkedDatabaseProcessor(url, { chunk_size: 10, retry_attempts: 0 })
  assert.throws(() => p.process('SELECT * FROM t', (row) => { if (row.id === 7) throw mine }), (e) => e === mine)
  // A non-Error value too.
  assert.throws(() => p.process('SELECT * FROM t', () => { throw 'a string' }), (e) => e === 'a string') // eslint-disable-line no-throw-literal
  // A Promise in a synchronous run is refused with a pointer to the async form.
  assert.throws(() => p.processQuery('SELECT * FROM t', async () => {}), (e) => e.code === 'MW_CALLBACK' && /processQueryAsync/.test(e.message))
})

sqliteTest('checkpoint: a stopped run resumes after the last finished chunk', () => {
  const { url } = sqliteDb(500)
  const checkpoint = path.join(tmp, `${unique('cp')}.json`)
  const seen = []
  const p = new ChunkedDatabaseProcessor(url, { chunk_size: 100, retry_attempts: 0, checkpoint })
  const stop = new Error('crash at 301')
  assert.throws(() => p.process('SELECT * FROM t', (row) => {
    if (row.id === 301) throw stop
    seen.push(row.id)
  }), (e) => e === stop)
  assert.ok(fs.existsSync(checkpoint))
  const again = []
  const s = new ChunkedDatabaseProcessor(url, { chunk_size: 100, checkpoint }).process('SELECT * FROM t', (row) => again.push(row.id))
  assert.equal(s.resumed, true)
  assert.equal(again[0], 301)
  assert.deepEqual([...new Set([...seen.filter((id) => id <= 300), ...again])].sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i + 1))
  assert.ok(!fs.existsSync(checkpoint))
})

sqliteTest('parallel_chunks 3 covers each id once; parallel: true per call', () => {
  const { url } = sqliteDb(1000)
  for (const [cfg, opts] of [[{ parallel_chunks: 3 }, undefined], [{}, { parallel: 3, batch_size: 64 }]]) {
    const seen = []
    const s = new ChunkedDatabaseProcessor(url, { chunk_size: 50, ...cfg }).processQuery('SELECT * FROM t', (b) => {
      for (const r of b) seen.push(r.id)
    }, opts)
    assert.equal(s.workers, 3)
    assertOnce(seen, Array.from({ length: 1000 }, (_, i) => i + 1))
  }
})

sqliteTest('OFFSET pagination is emitted as a process warning', async () => {
  const { url } = sqliteDb(20)
  const warnings = []
  const onWarning = (w) => warnings.push(w)
  process.on('warning', onWarning)
  try {
    const s = new ChunkedDatabaseProcessor(url, { pagination: 'offset', chunk_size: 10 }).process('SELECT * FROM t', () => {})
    assert.equal(s.processed, 20)
    await new Promise((resolve) => setImmediate(resolve))
  } finally {
    process.off('warning', onWarning)
  }
  assert.ok(warnings.some((w) => w.code === 'MEMWARDEN_CHUNK' && /offset/.test(w.message)), warnings.map(String).join('\n'))
})

sqliteTest('bad config and bad connections get a MemwardenError with a code', () => {
  const { url } = sqliteDb(1)
  assert.throws(() => new ChunkedDatabaseProcessor(url, { chunk_size: 0 }), (e) => e instanceof MemwardenError && e.code === 'MW_INVALID_CONFIG' && /chunk_size/.test(e.message))
  assert.throws(() => new ChunkedDatabaseProcessor(url, { chunk_sise: 10 }), (e) => e.code === 'MW_INVALID_CONFIG' && /did you mean 'chunk_size'/.test(e.message))
  assert.throws(() => new ChunkedDatabaseProcessor('nosuch://x'), (e) => e instanceof MemwardenError)
  assert.throws(() => new ChunkedDatabaseProcessor({}), TypeError)
  const p = new ChunkedDatabaseProcessor(url)
  assert.throws(() => p.process('SELECT * FROM missing_table', () => {}), (e) => e.code === 'MW_DATABASE')
  assert.throws(() => p.processQuery('SELECT * FROM t', () => {}, { batch_sise: 3 }), (e) => e.code === 'MW_INVALID_CONFIG')
})

sqliteTest('a SQLite file this process holds open outside memwarden is refused; allow_shared_sqlite_file opts out', () => {
  const { file, url } = sqliteDb(10)
  // A descriptor of our own stands for better-sqlite3 or node:sqlite: another SQLite library in
  // this process, whose locks memwarden's bundled SQLite would not see.
  const fd = fs.openSync(file, 'r')
  try {
    assert.throws(() => new ChunkedDatabaseProcessor(url), (e) => e instanceof MemwardenError &&
      e.code === 'MW_INVALID_ARGUMENT' && e.message.includes(file) &&
      /two SQLite libraries in one process do not see each other's locks/.test(e.message) &&
      /allow_shared_sqlite_file/.test(e.message))
    const p = new ChunkedDatabaseProcessor(url, { allow_shared_sqlite_file: true })
    assert.equal(p.process('SELECT * FROM t', () => {}).processed, 10)
  } finally {
    fs.closeSync(fd)
  }
  // Opened after the processor: refused when the run starts, fine once closed again.
  const p = new ChunkedDatabaseProcessor(url)
  const late = fs.openSync(file, 'r')
  assert.throws(() => p.process('SELECT * FROM t', () => {}), (e) => e.code === 'MW_INVALID_ARGUMENT')
  fs.closeSync(late)
  assert.equal(p.process('SELECT * FROM t', () => {}).processed, 10)
})

sqliteTest('processQueryAsync / processAsync: Promise callbacks awaited, event loop free, original rejection', async () => {
  const { file, url } = sqliteDb(600)
  const p = new ChunkedDatabaseProcessor(url, { chunk_size: 100, retry_attempts: 0 })
  let ticks = 0
  const timer = setInterval(() => { ticks++ }, 1)
  const seen = []
  let inFlight = 0
  const stats = await p.processQueryAsync('SELECT * FROM t WHERE active = 1', async (batch) => {
    assert.equal(inFlight++, 0)
    await new Promise((resolve) => setTimeout(resolve, 10))
    for (const r of batch) seen.push(r.id)
    execFileSync('sqlite3', [file, `UPDATE t SET active = 0 WHERE id IN (${batch.map((r) => r.id).join(',')})`])
    inFlight--
  })
  clearInterval(timer)
  assertOnce(seen, activeIds(600))
  assert.equal(stats.processed, 400)
  assert.ok(ticks >= 5, `the event loop ran ${ticks} timer ticks during the run`)

  const rows = []
  await p.processAsync('SELECT id FROM t', async (row) => { rows.push(row.id) })
  assert.equal(rows.length, 600)

  const boom = new Error('async boom')
  await assert.rejects(p.processQueryAsync('SELECT * FROM t', async (b) => { if (b[0].id > 200) throw boom }), (e) => e === boom)
  assert.equal(p.getStats().processed, 200)
  // Busy while a run is going on.
  const running = p.processQueryAsync('SELECT * FROM t', () => new Promise((resolve) => setTimeout(resolve, 5)))
  assert.throws(() => p.process('SELECT * FROM t', () => {}), (e) => /in progress/.test(e.message))
  await running
})

sqliteTest('seed snippets, translated', () => {
  const { url } = sqliteDb(3000)
  const updated = []
  const updateUserRecord = (row) => updated.push(row.id)
  const out = []
  const processor = new ChunkedDatabaseProcessor(url, {
    chunk_size: 1000,
    memory_limit: '128M',
    progress_callback: (processed, total) => { out.push(`Processed: ${processed}/${total}`) }
  })
  processor.process('SELECT * FROM t WHERE active = 1', (row) => { updateUserRecord(row) })
  assert.equal(updated.length, 2000)
  assert.equal(out.at(-1), 'Processed: 2000/2000')

  const notified = []
  const sendNotification = (user) => notified.push(user.id)
  processor.processQuery('SELECT * FROM t', (batch) => {
    for (const user of batch) sendNotification(user)
  }, { batch_size: 500, parallel: true })
  assert.equal(notified.length, 3000)

  const config = { chunk_size: 1000, memory_limit: '128M', timeout: 300, retry_attempts: 3, parallel_chunks: 1, progress_callback: null, error_callback: null }
  assert.equal(new ChunkedDatabaseProcessor(url, config).process('SELECT id FROM t', () => {}).processed, 3000)

  const lines = []
  processor.setProgressCallback((stats) => {
    const percentage = (stats.processed / stats.total) * 100
    lines.push(`Progress: ${percentage}% (${stats.processed}/${stats.total})`, `Memory: ${stats.memory_usage}MB`, `ETA: ${stats.estimated_remaining} seconds`)
  })
  processor.setErrorCallback((error, chunk) => {
    lines.push(`Error processing chunk ${chunk.index}: ${error.message}`)
    return true
  })
  processor.process('SELECT * FROM t', (row) => { if (row.id === 1500) throw new Error('bad row') })
  assert.ok(lines.includes('Progress: 100% (2000/3000)') || lines.some((l) => l.startsWith('Progress: ')))
  assert.ok(lines.includes('Error processing chunk 2: bad row'), lines.join('\n'))

  // A manager runs its cleanup when a chunk exceeds memory_limit (the per-chunk budget).
  const manager = new MemoryManager()
  let gcs = 0
  manager.onBeforeGC(() => { gcs++ })
  const s = new ChunkedDatabaseProcessor(url, { chunk_size: 1000, memory_limit: 1024, manager }).process('SELECT * FROM t', () => {})
  assert.ok(gcs >= 1 && s.cleanups >= 1 && s.chunk_size_reductions >= 1, JSON.stringify(s))
})

// ---- servers -------------------------------------------------------------------------

function reachable (cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10000 })
  if (r.error) return `${cmd} is not installed (${r.error.code})`
  return r.status === 0 ? null : `${cmd}: ${(r.stderr || '').trim().split('\n')[0]}`
}

function pgArgs (sql) {
  return [PG_URL, '-v', 'ON_ERROR_STOP=1', '-q', '-t', '-A', '-c', sql]
}

function myArgs (sql) {
  const u = new URL(MY_URL)
  const args = ['-h', u.hostname, '-P', u.port || '3306', '-u', decodeURIComponent(u.username || 'root'), '--protocol=tcp', '-N', '-B']
  if (u.password) args.push(`-p${decodeURIComponent(u.password)}`)
  args.push(u.pathname.slice(1), '-e', sql)
  return args
}

const servers = [
  {
    name: 'PostgreSQL',
    url: PG_URL,
    run: (sql) => execFileSync('psql', pgArgs(sql), { encoding: 'utf8' }),
    probe: () => reachable('psql', pgArgs('SELECT 1')),
    create: (t, n) => `CREATE TABLE ${t} (id BIGINT PRIMARY KEY, name TEXT, active INT); ` +
      `INSERT INTO ${t} SELECT x, 'name ' || x, CASE WHEN x % 3 = 0 THEN 0 ELSE 1 END FROM generate_series(1, ${n}) x`
  },
  {
    name: 'MariaDB',
    url: MY_URL,
    run: (sql) => execFileSync('mariadb', myArgs(sql), { encoding: 'utf8' }),
    probe: () => reachable('mariadb', myArgs('SELECT 1')),
    create: (t, n) => `SET SESSION max_recursive_iterations = ${n + 10}; CREATE TABLE ${t} (id BIGINT PRIMARY KEY, name TEXT, active INT); ` +
      `INSERT INTO ${t} WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${n}) ` +
      `SELECT x, CONCAT('name ', x), CASE WHEN x % 3 = 0 THEN 0 ELSE 1 END FROM c`
  }
]

for (const server of servers) {
  const why = server.probe()
  if (why !== null && REQUIRE) {
    test(`${server.name} is required (MEMWARDEN_REQUIRE_SERVICES=1)`, () => assert.fail(`${server.name} unreachable: ${why}`))
    continue
  }
  const opts = { skip: why === null ? false : `${server.name} unreachable: ${why}` }

  test(`${server.name}: each row once while another connection updates the filtered column`, opts, () => {
    const table = unique('mw_node_chunk')
    server.run(server.create(table, 1200))
    try {
      const seen = []
      const p = new ChunkedDatabaseProcessor(server.url, { chunk_size: 100 })
      const stats = p.processQuery(`SELECT * FROM ${table} WHERE active = 1`, (batch) => {
        for (const r of batch) seen.push(r.id)
        server.run(`UPDATE ${table} SET active = 0 WHERE id IN (${batch.map((r) => r.id).join(',')})`)
      })
      assertOnce(seen, activeIds(1200))
      assert.equal(stats.key_column, 'id')
      assert.equal(Number(server.run(`SELECT COUNT(*) FROM ${table} WHERE active = 1`).trim()), 0)

      const par = []
      const s = new ChunkedDatabaseProcessor(server.url, { chunk_size: 64, parallel_chunks: 3 })
        .processQuery(`SELECT id, name FROM ${table}`, (b) => { for (const r of b) par.push(r.id) })
      assert.equal(s.workers, 3)
      assertOnce(par, Array.from({ length: 1200 }, (_, i) => i + 1))
    } finally {
      server.run(`DROP TABLE IF EXISTS ${table}`)
    }
  })

  test(`${server.name}: processQueryAsync and row_format tuple`, opts, async () => {
    const table = unique('mw_node_chunk')
    server.run(server.create(table, 300))
    try {
      const rows = []
      const s = await new ChunkedDatabaseProcessor(server.url, { chunk_size: 100, row_format: 'tuple' })
        .processQueryAsync(`SELECT id, name FROM ${table}`, async (b) => {
          await new Promise((resolve) => setImmediate(resolve))
          rows.push(...b)
        })
      assert.equal(s.processed, 300)
      assert.deepEqual(rows[0], [1, 'name 1'])
    } finally {
      server.run(`DROP TABLE IF EXISTS ${table}`)
    }
  })
}

// ---- the same-transaction mode (checkpoint_table) ----------------------------------------

/** An output table (no key: a write applied twice shows as two rows), its INSERT, and the options. */
function txSetup (mark, exec) {
  const out = unique('mw_node_txo')
  const ck = `${out}_ck`
  exec(`CREATE TABLE ${out} (id BIGINT NOT NULL, v BIGINT NOT NULL)`)
  const insert = `INSERT INTO ${out} (id, v) VALUES (${mark === '$' ? '$1, $2' : '?, ?'})`
  const opts = { chunk_size: 100, retry_attempts: 0, checkpoint_table: ck, key_column: 'id' }
  return { out, ck, insert, opts }
}

function counts (read, out) {
  return read(`SELECT id || ':' || COUNT(*) || ':' || SUM(v) FROM ${out} GROUP BY id ORDER BY id`)
}

sqliteTest('checkpoint_table: chunk writes commit with the checkpoint; a resume applies each row exactly once', async () => {
  const { file, url } = sqliteDb(1000)
  const read = (sql) => execFileSync('sqlite3', [file, sql], { encoding: 'utf8' }).trim().split('\n').filter(Boolean)
  const exec = (sql) => execFileSync('sqlite3', [file, sql])
  const { out, ck, insert, opts } = txSetup('?', exec)
  const src = 'SELECT * FROM t'
  const kept = []
  const write = (rows, tx, failAt) => {
    kept.push(tx)
    for (const r of rows) tx.execute(insert, [r.id, r.id * 2])
    if (rows[0].id === failAt) throw new Error('dies after writing chunk 3')
  }
  const p = new ChunkedDatabaseProcessor(url, opts)
  assert.throws(() => p.processQuery(src, (rows, tx) => write(rows, tx, 201)), /dies after writing chunk 3/)
  const expect = (n) => Array.from({ length: n }, (_, i) => `${i + 1}:1:${2 * (i + 1)}`)
  assert.deepEqual(counts(read, out), expect(200), "chunk 3's writes were rolled back")
  assert.throws(() => kept[kept.length - 1].execute(insert, [0, 0]), /transaction has ended/)

  // The resume, asynchronously: a Promise-returning callback keeps its transaction until it settles.
  const firsts = []
  const stats = await new ChunkedDatabaseProcessor(url, opts).processQueryAsync(src, async (rows, tx) => {
    firsts.push(rows[0].id)
    await new Promise((resolve) => setImmediate(resolve))
    write(rows, tx)
  })
  assert.equal(firsts[0], 201)
  assert.equal(stats.resumed, true)
  assert.equal(stats.processed, 1000)
  assert.deepEqual(counts(read, out), expect(1000))
  assert.deepEqual(read(`SELECT COUNT(*) FROM ${ck}`), ['0'], 'a finished run deletes its checkpoint row')

  // process() hands (row, tx); tx.query reads inside the transaction.
  const seen = []
  new ChunkedDatabaseProcessor(url, opts).process('SELECT * FROM t WHERE id <= 1', (row, tx) => {
    seen.push(tx.query(`SELECT COUNT(*) AS n FROM ${out}`)[0].n)
  })
  assert.deepEqual(seen, [1000])
})

sqliteTest('checkpoint_table: bad input', () => {
  const { url } = sqliteDb(10)
  assert.throws(() => new ChunkedDatabaseProcessor(url, { checkpoint_table: 'ck', checkpoint: path.join(tmp, 'c') }),
    (e) => e instanceof MemwardenError && /'checkpoint_table' and 'checkpoint' exclude each other/.test(e.message))
  assert.throws(() => new ChunkedDatabaseProcessor(url, { checkpoint_table: 'ck', parallel_chunks: 2 }),
    /'parallel_chunks' must be 1, not 2/)
  assert.throws(() => new ChunkedDatabaseProcessor(url, { checkpoint_table: 'ck', pagination: 'offset' }),
    /needs keyset pagination/)
  assert.throws(() => new ChunkedDatabaseProcessor(url, { checkpoint_table: 'ck; DROP TABLE t' }),
    /invalid value for 'checkpoint_table'/)
  const p = new ChunkedDatabaseProcessor(url, { checkpoint_table: 'ck', retry_attempts: 0 })
  const errors = []
  p.processQuery('SELECT * FROM t', (rows, tx) => {
    for (const [sql, params] of [['SELECT 1', 'x'], ['SELECT 1', { a: 1 }], [5, []], ['SELECT ?', [[1]]]]) {
      try { tx.execute(sql, params) } catch (e) { errors.push(e.message) }
    }
    try { tx.execute('INSERT INTO no_such_table VALUES (1)') } catch (e) { errors.push(e.message) }
  })
  assert.equal(errors.length, 5, errors.join('\n'))
  assert.match(errors[0], /'params' must be an array/)
  assert.match(errors[2], /'sql' must be a string/)
  assert.match(errors[3], /parameter 0 is an array/)
  assert.match(errors[4], /no such table/)
  assert.throws(() => p.processQuery('SELECT * FROM t', () => {}, { parallel: 2 }),
    /'parallel' 2 cannot be used with checkpoint_table/)
})

for (const server of servers) {
  const why = server.probe()
  if (why !== null) continue // reported by the tests above
  test(`${server.name}: checkpoint_table writes exactly once across a failed run and its resume`, () => {
    const table = unique('mw_node_tx')
    server.run(server.create(table, 500))
    const { out, ck, insert, opts } = txSetup(server.name === 'PostgreSQL' ? '$' : '?', (sql) => server.run(sql))
    try {
      const src = `SELECT * FROM ${table}`
      const write = (rows, tx, failAt) => {
        for (const r of rows) tx.execute(insert, [r.id, r.id * 2])
        if (rows[0].id === failAt) throw new Error('boom')
      }
      assert.throws(() => new ChunkedDatabaseProcessor(server.url, opts).processQuery(src, (rows, tx) => write(rows, tx, 301)), /boom/)
      assert.equal(Number(server.run(`SELECT COUNT(*) FROM ${out}`).trim()), 300)
      const s = new ChunkedDatabaseProcessor(server.url, opts).processQuery(src, (rows, tx) => write(rows, tx))
      assert.equal(s.resumed, true)
      assert.equal(server.run(`SELECT COUNT(*), COUNT(DISTINCT id), SUM(v) FROM ${out}`).trim().split(/\s+|\|/).join(','),
        `500,500,${500 * 501}`)
      assert.equal(Number(server.run(`SELECT COUNT(*) FROM ${ck}`).trim()), 0)
    } finally {
      server.run(`DROP TABLE IF EXISTS ${table}`)
      server.run(`DROP TABLE IF EXISTS ${out}`)
      server.run(`DROP TABLE IF EXISTS ${ck}`)
    }
  })
}
