'use strict'

// Monitor and analyze(path): background sampling of real processes, the series, the analysis,
// export files written here and by the `memwarden` CLI, and bad input. The CLI binary is
// $MEMWARDEN_BIN or <target>/debug/memwarden ($CARGO_TARGET_DIR or the repository's target/),
// built with cargo when missing.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('node:child_process')
const path = require('node:path')
const fs = require('node:fs')
const os = require('node:os')

const { Monitor, analyze, MemwardenError } = require('..')

const REPO = path.resolve(__dirname, '..', '..', '..')

/** Polls `pred` every 5 ms until it holds (or fails after `ms`). */
async function poll (pred, what, ms = 10000) {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

function cli () {
  if (process.env.MEMWARDEN_BIN) return process.env.MEMWARDEN_BIN
  const bin = path.join(process.env.CARGO_TARGET_DIR || path.join(REPO, 'target'), 'debug', 'memwarden')
  if (!fs.existsSync(bin)) {
    const r = spawnSync('cargo', ['build', '--quiet', '-p', 'memwarden-cli'], { cwd: REPO, stdio: 'inherit' })
    assert.equal(r.status, 0, 'cargo build -p memwarden-cli failed')
  }
  assert.ok(fs.existsSync(bin), `${bin} was not built`)
  return bin
}

function tmp () {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'mw-node-monitor-'))
}

test('use() samples in the background and the export grows as it goes', async () => {
  const dir = tmp()
  const live = path.join(dir, 'live.jsonl')
  const m = new Monitor({ pid: process.pid, interval: 0.02, threshold: 70, export: live })
  assert.equal(m.running, false)
  await m.use(async () => {
    assert.equal(m.running, true)
    await poll(() => m.samples().length >= 5, '5 samples')
    assert.ok(analyze(live).samples >= 1)
  })
  assert.equal(m.running, false)
  const samples = m.samples()
  for (const s of samples) assert.ok(s.current_bytes > 0 && s.peak_bytes >= s.current_bytes)
  assert.equal(m.meta.target, `pid ${process.pid}`)
  assert.equal(m.meta.threshold, 70)
  const a = m.analyze()
  assert.equal(a.samples, samples.length)
  assert.ok(a.peak_mb >= a.average_mb && a.average_mb > 0)
  assert.ok(Math.abs(a.efficiency_percent - a.average_mb / a.peak_mb * 100) < 1e-9)
  assert.deepEqual(analyze(live), a)
  const copy = path.join(dir, 'copy.jsonl')
  m.export(copy)
  assert.deepEqual(analyze(copy), a)
  assert.deepEqual(analyze(new URL(`file://${copy}`)), a)
  const s = m.sampleNow()
  assert.ok(s.current_bytes > 0)
  assert.equal(m.samples().length, samples.length + 1)
  fs.rmSync(dir, { recursive: true })
})

test('a growing allocation shows up and the leak trend is reported', () => {
  const m = new Monitor({ pid: process.pid, interval: 60 })
  const held = []
  for (let i = 0; i < 8; i++) {
    held.push(Buffer.alloc(4 << 20, 1)) // 4 MB more, written, so resident
    m.sampleNow()
  }
  const cur = m.samples().map((s) => s.current_bytes)
  assert.ok(cur[cur.length - 1] - cur[0] >= 20 << 20, String(cur))
  const { leak } = m.analyze()
  assert.ok(leak && leak.slope_mb_per_min > 0 && leak.r2 >= 0 && leak.r2 <= 1)
  assert.equal(typeof leak.sentence, 'string')
  assert.equal(held.length, 8)
})

test('a process that exits ends the sampler with the reason', async () => {
  const child = spawn(process.execPath, ['-e', 'process.stdin.resume()'], { stdio: ['pipe', 'ignore', 'ignore'] })
  const m = new Monitor({ pid: child.pid, interval: 0.01 }).start()
  await poll(() => m.samples().length >= 1, 'a sample')
  const exited = new Promise((resolve) => child.on('exit', resolve))
  child.stdin.end()
  await exited
  await poll(() => !m.running, 'the sampler to notice the exit')
  assert.match(m.ended, new RegExp(`process ${child.pid} has exited`))
  m.stop()
})

test('reads an export written by the CLI, as the CLI analyzes it', () => {
  const dir = tmp()
  const f = path.join(dir, 'cli.jsonl')
  const bin = cli()
  const run = spawnSync(bin, ['monitor', '--interval', '0.1', '--duration', '0.3', '--quiet', '--export', f])
  assert.equal(run.status, 0, String(run.stderr))
  const a = analyze(f)
  const report = JSON.parse(spawnSync(bin, ['analyze', f, '--format', 'json']).stdout)
  assert.deepEqual(a, report.analysis)
  // Ticks at 0, 0.1, 0.2 and 0.3 s (fewer only if the machine stalled a whole interval).
  assert.ok(a.samples >= 2 && a.samples <= 4, String(a.samples))
  fs.rmSync(dir, { recursive: true })
})

test('a file cut mid-line keeps every whole sample; bad files throw naming the file', () => {
  const dir = tmp()
  const m = new Monitor({ interval: 60 })
  for (let i = 0; i < 3; i++) m.sampleNow()
  const f = path.join(dir, 'run.jsonl')
  m.export(f)
  const whole = fs.readFileSync(f)
  fs.writeFileSync(f, whole.subarray(0, whole.length - 4))
  assert.equal(analyze(f).samples, 2)

  const bad = path.join(dir, 'bad.jsonl')
  for (const [content, needle] of [
    ['', /is empty/],
    ['{"memwarden_monitor": 2, "meta": {"tar', /is truncated/],
    ['{"name": "something else"}\n', /is not a memwarden monitor export/],
    [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a]), /is not a memwarden monitor export/]
  ]) {
    fs.writeFileSync(bad, content)
    assert.throws(() => analyze(bad), (e) => {
      assert.ok(e instanceof MemwardenError)
      assert.equal(e.code, 'MW_INVALID_ARGUMENT')
      assert.match(e.message, needle)
      assert.match(e.message, /bad\.jsonl/)
      return true
    })
  }
  assert.throws(() => analyze(path.join(dir, 'absent.jsonl')), { code: 'MW_IO', message: /cannot read/ })
  fs.rmSync(dir, { recursive: true })
})

test('bad input throws in the host idiom', () => {
  assert.throws(() => new Monitor({ pid: 999999999 }), { code: 'MW_NOT_FOUND', message: /no process with pid 999999999/ })
  assert.throws(() => new Monitor({ interval: 0 }), { code: 'MW_INVALID_CONFIG', message: /'interval'/ })
  assert.throws(() => new Monitor({ interval: -1 }), { code: 'MW_INVALID_CONFIG' })
  assert.throws(() => new Monitor({ intervall: 1 }), { code: 'MW_INVALID_CONFIG', message: /did you mean 'interval'/ })
  assert.throws(() => new Monitor({ export: '/nonexistent-dir/x.jsonl' }), { code: 'MW_IO', message: /cannot write export file/ })
  assert.throws(() => new Monitor('pid 1'), TypeError)
  assert.throws(() => analyze(42), TypeError)
  const m = new Monitor({ interval: 0.05 }).start()
  assert.throws(() => m.start(), { code: 'MW_INVALID_ARGUMENT', message: /already running/ })
  m.stop()
  m.stop() // a no-op
  assert.throws(() => m.export('/nonexistent-dir/out.jsonl'), { code: 'MW_IO' })
  assert.throws(() => m.export(null), TypeError)
})
