'use strict'

// Peak RSS of memwarden's StreamProcessor.processFile (1 MiB chunks) against fs.readFile of the
// same file, from one run. A file of MW_BENCH_STREAM_MIB MiB (default 1024) is written to a temp
// dir; each side runs in its own child process (so neither inherits the other's peak) and
// reports VmHWM from /proc/self/status, its time and a SHA-1 of the bytes it saw.
//
//   node bench/stream.js

const { spawnSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const MIB = 1024 * 1024

function vmHwm () {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) * 1024 : 0
}

async function child (kind, file) {
  const { StreamProcessor } = require('..')
  const base = vmHwm()
  const hash = crypto.createHash('sha1')
  const start = process.hrtime.bigint()
  let extra = {}
  if (kind === 'memwarden') {
    const sp = new StreamProcessor({ chunkSize: '1M', concurrentStreams: 3, maxMemoryUsage: '64M' })
    // Chunks may finish out of order with 3 in flight: hash each, combine in index order.
    const sums = []
    const summary = await sp.processFile(file, async (chunk, info) => {
      sums[info.index] = crypto.createHash('sha1').update(chunk).digest()
    })
    for (const s of sums) hash.update(s)
    extra = { trackerPeak: summary.memoryUsage, pauses: summary.pauses }
  } else {
    const data = await fs.promises.readFile(file)
    for (let i = 0; i < data.length; i += MIB) hash.update(crypto.createHash('sha1').update(data.subarray(i, i + MIB)).digest())
  }
  const secs = Number(process.hrtime.bigint() - start) / 1e9
  process.stdout.write(JSON.stringify({ base, peak: vmHwm(), secs, sha1: hash.digest('hex'), ...extra }))
}

function main () {
  const mib = Number(process.env.MW_BENCH_STREAM_MIB || 1024)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-stream-'))
  const file = path.join(dir, 'input.bin')
  try {
    const block = crypto.randomBytes(MIB)
    const fd = fs.openSync(file, 'w')
    for (let i = 0; i < mib; i++) {
      block.writeUInt32LE(i, 0)
      fs.writeSync(fd, block)
    }
    fs.closeSync(fd)
    const run = (kind) => {
      const r = spawnSync(process.execPath, [__filename, '--child', kind, file], { encoding: 'utf8', maxBuffer: MIB })
      if (r.status !== 0) throw new Error(`${kind} child failed: ${r.stderr}`)
      return JSON.parse(r.stdout)
    }
    const mw = run('memwarden')
    const anchor = run('readFile')
    if (mw.sha1 !== anchor.sha1) throw new Error('the two sides saw different bytes')
    const f = (b) => (b / MIB).toFixed(1).padStart(8) + ' MiB'
    console.log(`stream ${mib} MiB, chunkSize 1 MiB, concurrentStreams 3, maxMemoryUsage 64 MiB (each side in its own process)`)
    console.log(`  memwarden StreamProcessor.processFile peak RSS ${f(mw.peak)}  (at start ${f(mw.base)}; ` +
      `tracker peak ${(mw.trackerPeak / MIB).toFixed(1)} MiB, ${mw.pauses} pauses, ${mw.secs.toFixed(2)} s, ${(mib / mw.secs).toFixed(0)} MiB/s)`)
    console.log(`  anchor: fs.readFile whole file        peak RSS ${f(anchor.peak)}  (at start ${f(anchor.base)}; ${anchor.secs.toFixed(2)} s)`)
    console.log(`  ratio memwarden/anchor peak RSS: ${(mw.peak / anchor.peak).toFixed(4)}; ` +
      `memwarden above its start: ${f(mw.peak - mw.base)} (maxMemoryUsage 64 MiB)`)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[2] === '--child') {
  child(process.argv[3], process.argv[4]).catch((e) => { console.error(e); process.exit(1) })
} else {
  main()
}
