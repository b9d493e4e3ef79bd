'use strict'

// MemoryPool acquire+release round trips against generic-pool, in one run: ns per round trip
// and ratio. generic-pool is installed into a temporary folder (npm install --no-save) when
// it cannot be required.
// Usage: node bench/pool.js [iterations]

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { MemoryPool } = require('..')

const iterations = Number(process.argv[2] || 1000000)
const asyncIterations = Math.max(1000, Math.floor(iterations / 4))

function loadGenericPool () {
  try {
    return require('generic-pool')
  } catch {}
  const dir = path.join(os.tmpdir(), 'memwarden-bench-generic-pool')
  const entry = path.join(dir, 'node_modules', 'generic-pool')
  if (!fs.existsSync(entry)) {
    fs.mkdirSync(dir, { recursive: true })
    console.error(`installing generic-pool into ${dir} ...`)
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', dir, 'generic-pool'], {
      stdio: ['ignore', 'ignore', 'inherit']
    })
  }
  return require(entry)
}

function benchSync (label, n, fn) {
  for (let i = 0; i < Math.min(n, 20000); i++) fn() // warm-up
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) fn()
  return { label, ns: Number(process.hrtime.bigint() - t0) / n }
}

async function benchAsync (label, n, fn) {
  for (let i = 0; i < Math.min(n, 20000); i++) await fn() // warm-up
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await fn()
  return { label, ns: Number(process.hrtime.bigint() - t0) / n }
}

async function main () {
  const genericPool = loadGenericPool()
  const gp = genericPool.createPool(
    { create: async () => ({ id: 1 }), destroy: async () => {} },
    { max: 10, min: 2 }
  )
  const mw = new MemoryPool({ factory: () => ({ id: 1 }), max_size: 10, min_size: 2 })
  const mwReset = new MemoryPool({ factory: () => ({ n: 0 }), reset: (o) => { o.n = 0 }, max_size: 10, min_size: 2 })

  const rows = []
  rows.push(benchSync('memwarden acquire() + release()', iterations, () => mw.release(mw.acquire())))
  rows.push(benchSync('memwarden acquire() + release(), reset hook', iterations, () => mwReset.release(mwReset.acquire())))
  rows.push(await benchAsync('memwarden await acquireAsync() + release()', asyncIterations, async () => {
    mw.release(await mw.acquireAsync())
  }))
  rows.push(await benchAsync('memwarden await use(fn)', asyncIterations, () => mw.use(() => 1)))
  rows.push(await benchAsync('generic-pool await acquire() + release()', asyncIterations, async () => {
    gp.release(await gp.acquire())
  }))

  await gp.drain()
  await gp.clear()
  mw.close()
  mwReset.close()

  const anchor = rows[rows.length - 1].ns
  console.log(`node ${process.version}, ${iterations} sync / ${asyncIterations} async round trips each`)
  console.log('round trip'.padEnd(48) + 'ns/op'.padStart(10) + '   generic-pool / this')
  for (const r of rows) {
    console.log(r.label.padEnd(48) + r.ns.toFixed(0).padStart(10) + `${(anchor / r.ns).toFixed(1)}x`.padStart(22))
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
