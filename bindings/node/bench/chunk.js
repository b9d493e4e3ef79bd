'use strict'

// ChunkedDatabaseProcessor against better-sqlite3, in one run: the sum of one column over a
// SQLite file table of N rows, as rows/s and ratio. The table is made with the sqlite3 CLI
// when it is installed, else with better-sqlite3. better-sqlite3 is installed into a temporary
// folder (npm install --no-save) when it cannot be required; on a machine without its prebuilt
// binary it compiles from source the first time (a few minutes).
// Usage: node bench/chunk.js [rows]

const { execFileSync, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { ChunkedDatabaseProcessor } = require('..')

const N = Number(process.argv[2] || 1000000)

function loadBetterSqlite () {
  try {
    return require('better-sqlite3')
  } catch {}
  const dir = path.join(os.tmpdir(), 'memwarden-bench-better-sqlite3')
  const entry = path.join(dir, 'node_modules', 'better-sqlite3')
  if (!fs.existsSync(entry)) {
    fs.mkdirSync(dir, { recursive: true })
    console.error(`installing better-sqlite3 into ${dir} ...`)
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', dir, 'better-sqlite3'], {
      stdio: ['ignore', 'ignore', 'inherit']
    })
  }
  return require(entry)
}

function makeTable (file, Database) {
  const create = 'CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, active INTEGER)'
  const fill = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${N}) ` +
    "INSERT INTO t SELECT x, 'name ' || x, x * 0.25, x % 2 FROM c"
  if (spawnSync('sqlite3', ['-version']).status === 0) {
    execFileSync('sqlite3', [file, `${create}; ${fill};`])
    return 'sqlite3 CLI'
  }
  const db = new Database(file)
  db.exec(create)
  db.exec(fill)
  db.close()
  return 'better-sqlite3'
}

function time (label, fn) {
  const t0 = process.hrtime.bigint()
  const sum = fn()
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  return { label, s, rps: N / s, sum }
}

function main () {
  const Database = loadBetterSqlite()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memwarden-bench-chunk-'))
  const file = path.join(dir, 'bench.db')
  try {
    const made = makeTable(file, Database)
    const expected = 0.25 * N * (N + 1) / 2
    const url = `sqlite://${file}`
    const runs = {
      'memwarden processQuery, rows as objects': () => {
        let sum = 0
        new ChunkedDatabaseProcessor(url, { chunk_size: 1000 }).processQuery('SELECT * FROM t', (batch) => {
          for (let i = 0; i < batch.length; i++) sum += batch[i].score
        })
        return sum
      },
      'memwarden processQuery, row_format tuple': () => {
        let sum = 0
        new ChunkedDatabaseProcessor(url, { chunk_size: 1000, row_format: 'tuple' }).processQuery('SELECT * FROM t', (batch) => {
          for (let i = 0; i < batch.length; i++) sum += batch[i][2]
        })
        return sum
      },
      'memwarden process (row callback)': () => {
        let sum = 0
        new ChunkedDatabaseProcessor(url, { chunk_size: 1000 }).process('SELECT * FROM t', (row) => { sum += row.score })
        return sum
      },
      'better-sqlite3 .iterate()': () => {
        const db = new Database(file, { readonly: true })
        let sum = 0
        for (const row of db.prepare('SELECT * FROM t').iterate()) sum += row.score
        db.close()
        return sum
      }
    }
    // Warm-up on the page cache, then the measured runs.
    for (const fn of Object.values(runs)) fn()
    const rows = Object.entries(runs).map(([label, fn]) => time(label, fn))
    for (const r of rows) {
      if (Math.abs(r.sum - expected) > 1e-6 * expected) throw new Error(`${r.label}: sum ${r.sum}, expected ${expected}`)
    }
    const anchor = rows[rows.length - 1]
    console.log(`node ${process.version}, SQLite file table of ${N} rows (made with the ${made}), sum of one column`)
    console.log('run'.padEnd(44) + 'seconds'.padStart(10) + 'rows/s'.padStart(14) + '   this / better-sqlite3')
    for (const r of rows) {
      console.log(r.label.padEnd(44) + r.s.toFixed(3).padStart(10) + Math.round(r.rps).toLocaleString('en').padStart(14) +
        `${(r.rps / anchor.rps).toFixed(2)}x`.padStart(26))
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main()
