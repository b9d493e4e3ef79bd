'use strict'

// LazyContainer resolution against awilix, in one run: ns per get and ratio. awilix is
// installed into a temporary folder (npm install --no-save) when it cannot be required.
// Usage: node bench/container.js [iterations]

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { LazyContainer } = require('..')

const iterations = Number(process.argv[2] || 2000000)

function loadAwilix () {
  try {
    return require('awilix')
  } catch {}
  const dir = path.join(os.tmpdir(), 'memwarden-bench-awilix')
  const entry = path.join(dir, 'node_modules', 'awilix')
  if (!fs.existsSync(entry)) {
    fs.mkdirSync(dir, { recursive: true })
    console.error(`installing awilix into ${dir} ...`)
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', dir, 'awilix'], {
      stdio: ['ignore', 'ignore', 'inherit']
    })
  }
  return require(entry)
}

let sink = null
function bench (label, n, fn) {
  for (let i = 0; i < Math.min(n, 50000); i++) sink = fn() // warm-up
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) sink = fn()
  return { label, ns: Number(process.hrtime.bigint() - t0) / n }
}

class Db {}
class Logger {}
class Repo {
  constructor (db, logger) {
    this.db = db
    this.logger = logger
  }
}
// awilix's default injection mode (PROXY) passes one cradle object.
class RepoCradle {
  constructor ({ db, logger }) {
    this.db = db
    this.logger = logger
  }
}

function main () {
  const awilix = loadAwilix()
  const aw = awilix.createContainer()
  aw.register({
    db: awilix.asClass(Db).singleton(),
    logger: awilix.asClass(Logger).singleton(),
    repo: awilix.asClass(RepoCradle).transient(),
    repoFn: awilix.asFunction(({ db, logger }) => new Repo(db, logger)).transient()
  })

  const mw = new LazyContainer()
  mw.singleton('db', Db)
  mw.singleton('logger', Logger)
  mw.factory('repo', Repo) // auto-wired by parameter names
  mw.factory('repoFn', (c) => new Repo(c.get('db'), c.get('logger')))

  const transientN = Math.max(10000, Math.floor(iterations / 4))
  const pairs = [
    [bench('memwarden get(), cached singleton', iterations, () => mw.get('db')),
      bench('awilix resolve(), cached singleton', iterations, () => aw.resolve('db'))],
    [bench('memwarden native fast path only (no JS memo)', iterations, () => mw._getId('db')),
      bench('awilix resolve(), cached singleton', iterations, () => aw.resolve('db'))],
    [bench('memwarden get(), transient class, 2 deps', transientN, () => mw.get('repo')),
      bench('awilix resolve(), transient asClass, 2 deps', transientN, () => aw.resolve('repo'))],
    [bench('memwarden get(), transient function, 2 deps', transientN, () => mw.get('repoFn')),
      bench('awilix resolve(), transient asFunction, 2 deps', transientN, () => aw.resolve('repoFn'))]
  ]
  if (sink === null) throw new Error('unreachable')

  console.log(`node ${process.version}, ${iterations} singleton / ${transientN} transient gets each`)
  console.log('get'.padEnd(48) + 'ns/op'.padStart(10) + '   memwarden / awilix')
  for (const [m, a] of pairs) {
    console.log(m.label.padEnd(48) + m.ns.toFixed(0).padStart(10) + `${(m.ns / a.ns).toFixed(2)}x`.padStart(21))
    console.log(a.label.padEnd(48) + a.ns.toFixed(0).padStart(10))
  }
}

main()
