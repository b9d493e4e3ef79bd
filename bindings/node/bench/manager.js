'use strict'

// manager.check() against Node's own readings, in one run: per-call time and ratio.
// Usage: node bench/manager.js [iterations]

const { MemoryManager } = require('..')

const iterations = Number(process.argv[2] || 200000)

function bench (label, fn) {
  for (let i = 0; i < Math.min(iterations, 10000); i++) fn() // warm-up
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) fn()
  const ns = Number(process.hrtime.bigint() - t0) / iterations
  return { label, ns }
}

const process_ = new MemoryManager({ hostGc: false, gc_probability: 0, memory_limit: '64G' })
const v8heap = new MemoryManager({ source: 'v8-heap', hostGc: false, gc_probability: 0 })
const host = new MemoryManager({ source: 'host', hostGc: false, gc_probability: 0 })
host.updateHostReading(1000, 1000, 1 << 30)

const rows = [
  bench("manager.check() (source 'process')", () => process_.check()),
  bench("manager.check() (source 'v8-heap')", () => v8heap.check()),
  bench("manager.check() (source 'host')", () => host.check()),
  bench('manager.getMemoryUsage() (process)', () => process_.getMemoryUsage()),
  bench('process.memoryUsage()', () => process.memoryUsage()),
  bench('process.memoryUsage.rss()', () => process.memoryUsage.rss())
]

const anchor = rows.find((r) => r.label === 'process.memoryUsage()').ns
const rssAnchor = rows.find((r) => r.label === 'process.memoryUsage.rss()').ns
console.log(`node ${process.version}, ${iterations} calls each`)
console.log('call'.padEnd(40) + 'ns/call'.padStart(10) + '  vs memoryUsage()  vs memoryUsage.rss()')
for (const r of rows) {
  console.log(
    r.label.padEnd(40) +
    r.ns.toFixed(0).padStart(10) +
    `${(r.ns / anchor).toFixed(2)}x`.padStart(18) +
    `${(r.ns / rssAnchor).toFixed(2)}x`.padStart(21)
  )
}
