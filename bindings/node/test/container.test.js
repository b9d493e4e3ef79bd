'use strict'

// Behaviour of the Node binding's LazyContainer. Run with `node --test test/`.

const test = require('node:test')
const assert = require('node:assert/strict')

const { LazyContainer, MemoryManager, MemwardenError } = require('..')

function throwsMw (fn, code, ...needles) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof MemwardenError, `not a MemwardenError: ${e}`)
    assert.equal(e.code, code, e.message)
    for (const n of needles) assert.ok(e.message.includes(n), `${JSON.stringify(e.message)} lacks ${JSON.stringify(n)}`)
    return true
  })
}

class DatabaseConnection {
  constructor (config) {
    this.config = config
  }
}
class UserService {
  constructor (db) {
    this.db = db
  }
}
class Logger {
  constructor (name) {
    this.name = name
  }
}
class EmailService {
  constructor (logger, config) {
    this.logger = logger
    this.config = config
  }
}
class RedisCache {}

test('seed Basic Usage: lazy services are created on first get, with their dependencies', () => {
  const container = new LazyContainer()
  let dbCreated = 0
  container.lazy('database', () => {
    dbCreated++
    return new DatabaseConnection({ dsn: 'sqlite::memory:' })
  })
  container.lazy('userService', (container) => new UserService(container.get('database')))
  assert.equal(dbCreated, 0, 'nothing is created at registration')
  const userService = container.get('userService')
  assert.equal(dbCreated, 1, 'database created here')
  assert.ok(userService instanceof UserService)
  assert.ok(userService.db instanceof DatabaseConnection)
  assert.equal(container.get('userService'), userService, 'cached')
  assert.equal(container.get('database'), userService.db)
  assert.equal(dbCreated, 1)
})

test('seed Service Registration: simple factory, dependencies, singleton', () => {
  const container = new LazyContainer()
  container.lazy('config', () => new Map([['payment.provider', 'stripe']]))
  container.lazy('logger', () => new Logger('app'))
  container.lazy('emailService', (container) => new EmailService(container.get('logger'), container.get('config')))
  container.singleton('cache', () => new RedisCache())
  const email = container.get('emailService')
  assert.equal(email.logger.name, 'app')
  assert.equal(email.config.get('payment.provider'), 'stripe')
  assert.equal(container.get('cache'), container.get('cache'))
})

test('seed Configuration: the seed keys and camelCase aliases', () => {
  const c = new LazyContainer({ auto_wire: true, circular_detection: true, cache_instances: true, debug_mode: false })
  c.lazy('x', () => ({}))
  assert.equal(c.get('x'), c.get('x'))
  const nc = new LazyContainer({ cacheInstances: false })
  nc.lazy('l', () => ({}))
  nc.singleton('s', () => ({}))
  assert.notEqual(nc.get('l'), nc.get('l'), 'lazy without cache_instances is built every time')
  assert.equal(nc.get('s'), nc.get('s'), 'singletons are always cached')
  throwsMw(() => new LazyContainer({ cache_instance: true }), 'MW_INVALID_CONFIG', "did you mean 'cache_instances'")
  throwsMw(() => new LazyContainer({ debug_mode: 'yes' }), 'MW_INVALID_CONFIG', 'debug_mode')
  throwsMw(() => new LazyContainer({ debugMode: true, debug_mode: true }), 'MW_INVALID_CONFIG', 'both')
  assert.throws(() => new LazyContainer('x'), TypeError)
})

test('seed Advanced Features: conditional services, aliases, tags, statistics', () => {
  class StripeProcessor {}
  class PayPalProcessor {}
  class SmsService {}
  const container = new LazyContainer()
  container.lazy('config', () => new Map([['payment.provider', 'stripe']]))
  container.lazy('paymentProcessor', (container) => {
    const config = container.get('config')
    if (config.get('payment.provider') === 'stripe') return new StripeProcessor(config)
    return new PayPalProcessor(config)
  })
  assert.ok(container.get('paymentProcessor') instanceof StripeProcessor)

  container.lazy('database', () => new DatabaseConnection({}))
  container.lazy('logger', () => new Logger('app'))
  container.lazy('emailService', (c) => new EmailService(c.get('logger'), c.get('config')))
  container.lazy('smsService', () => new SmsService())
  container.alias('db', 'database')
  container.alias('log', 'logger')
  assert.equal(container.get('db'), container.get('database'))
  assert.equal(container.get('log'), container.get('logger'))
  assert.ok(container.has('db') && container.has('logger') && !container.has('nothing'))

  container.tag('emailService', ['notification', 'communication'])
  container.tag('smsService', ['notification', 'communication'])
  const notificationServices = container.getByTag('notification')
  assert.equal(notificationServices.length, 2)
  assert.ok(notificationServices[0] instanceof EmailService, 'registration order')
  assert.ok(notificationServices[1] instanceof SmsService)
  assert.deepEqual(container.getByTag('none'), [])

  const stats = container.getStatistics()
  for (const key of ['created', 'cached', 'avg_creation_time', 'memory_saved']) {
    assert.equal(typeof stats[key], 'number', key)
  }
  assert.equal(stats.created, 6, 'config, paymentProcessor, database, logger, emailService, smsService')
  assert.equal(stats.cached, 6)
  assert.ok(stats.avg_creation_time >= 0)
  assert.ok(stats.memory_saved >= 0)
  assert.equal(stats.aliases, 2)
})

test('lazy: the factory runs on the first get only; statistics count it', () => {
  const c = new LazyContainer()
  let calls = 0
  c.lazy('svc', () => ({ n: ++calls }))
  c.lazy('never', () => ({}))
  assert.equal(calls, 0)
  assert.equal(c.getStatistics().created, 0)
  const a = c.get('svc')
  assert.equal(c.get('svc'), a)
  assert.equal(calls, 1)
  const s = c.getStatistics()
  assert.equal(s.created, 1)
  assert.equal(s.cached, 1)
  assert.equal(s.never_created, 1)
})

test('singleton identity, transient a new instance each time', () => {
  const c = new LazyContainer()
  c.singleton('s', () => ({}))
  let made = 0
  c.factory('t', () => ({ n: ++made }))
  assert.equal(c.get('s'), c.get('s'))
  const t1 = c.get('t')
  const t2 = c.get('t')
  assert.notEqual(t1, t2)
  assert.deepEqual([t1.n, t2.n], [1, 2])
  for (let i = 0; i < 100; i++) c.get('t')
  assert.ok(c._temp.every((v) => v === undefined), 'transient instances are not kept by the container')
  assert.equal(c.getStatistics().cached, 1)
})

test('factories may be called with or without the container, and may be classes', () => {
  const c = new LazyContainer({ auto_wire: false })
  c.lazy('noArg', () => 'plain')
  c.lazy('withArg', (container) => container.get('noArg') + '!')
  class Takes {
    constructor (container) {
      this.container = container
    }
  }
  c.lazy('cls', Takes)
  assert.equal(c.get('withArg'), 'plain!')
  assert.equal(c.get('cls').container, c, 'without auto_wire a class gets the container')
})

test('scoped: one instance per scope, disposed in reverse creation order', () => {
  const c = new LazyContainer()
  const log = []
  c.scoped('request', () => ({ name: 'request' }), { dispose: (o) => log.push(`dispose ${o.name}`) })
  c.scoped('handler', (c) => ({ name: 'handler', request: c.get('request') }), {
    dispose: (o) => log.push(`dispose ${o.name}`)
  })
  c.singleton('config', () => ({ name: 'config' }), { dispose: (o) => log.push(`dispose ${o.name}`) })
  throwsMw(() => c.get('request'), 'MW_INVALID_ARGUMENT', 'resolve it through a scope')
  // Language-neutral: no other binding's spelling of how to get a scope.
  assert.throws(() => c.get('request'), { message: "service 'request' is scoped: resolve it through a scope" })

  const s1 = c.createScope()
  const s2 = c.createScope()
  const h1 = s1.get('handler')
  assert.equal(h1.request, s1.get('request'))
  assert.equal(s1.get('request'), s1.get('request'))
  assert.notEqual(s1.get('request'), s2.get('request'))
  assert.equal(s1.get('config'), c.get('config'))
  s1.dispose()
  assert.deepEqual(log, ['dispose handler', 'dispose request'])
  s1.dispose()
  assert.equal(log.length, 2, 'idempotent')
  throwsMw(() => s1.get('request'), 'MW_CLOSED')

  log.length = 0
  c.dispose()
  assert.deepEqual(log, ['dispose request', 'dispose config'], 'open scopes first, then the container, newest first')
  throwsMw(() => c.get('config'), 'MW_CLOSED')
  throwsMw(() => c.lazy('late', () => ({})), 'MW_CLOSED')
  c.dispose()
})

// The scoped instances live in the container's JS table until their scope is disposed; a
// scope collected without dispose() must not leave them there for good.
test('a scope collected without dispose() is disposed and its table entries freed', async () => {
  assert.equal(typeof global.gc, 'function', 'run the tests with node --expose-gc, as run-tests.sh and npm test do')
  const c = new LazyContainer()
  const disposed = []
  c.scoped('request', () => ({ name: 'request' }), { dispose: (o) => disposed.push(o.name) })
  c.scoped('handler', (c) => ({ name: 'handler', request: c.get('request') }), {
    dispose: (o) => disposed.push(o.name)
  })
  c.singleton('config', () => ({ name: 'config' }))
  const live = () => c._objects.filter((o) => o !== undefined).map((o) => o.name).sort()
  const kept = c.createScope()
  kept.get('request');
  (() => {
    const dropped = c.createScope()
    dropped.get('handler')
    dropped.get('config')
  })()
  assert.deepEqual(live(), ['config', 'handler', 'request', 'request'])
  for (let i = 0; i < 50 && disposed.length < 2; i++) {
    global.gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  assert.deepEqual(disposed, ['handler', 'request'], 'the collected scope was disposed, newest first')
  assert.deepEqual(live(), ['config', 'request'], "only the live scope's and the container's instances remain")
  assert.equal(c.getStatistics().cached, 2)
  // A scope disposed by hand is not disposed again when collected; the container still works.
  kept.dispose()
  assert.deepEqual(disposed, ['handler', 'request', 'request'])
  assert.deepEqual(live(), ['config'])
  const again = c.createScope()
  assert.equal(again.get('request').name, 'request')
  again.dispose()
  c.dispose()
})

test('container dispose runs dispose hooks newest first', () => {
  const c = new LazyContainer()
  const log = []
  for (const n of ['a', 'b', 'c']) c.lazy(n, () => n, { dispose: (v) => log.push(v) })
  c.get('b')
  c.get('a')
  c.get('c')
  c.dispose()
  assert.deepEqual(log, ['c', 'a', 'b'])
})

test('a singleton capturing a scoped service is an error', () => {
  const c = new LazyContainer()
  c.scoped('request', () => ({}))
  c.singleton('cache', (c) => ({ request: c.get('request') }))
  const scope = c.createScope()
  throwsMw(() => scope.get('cache'), 'MW_INVALID_ARGUMENT', "singleton 'cache' cannot depend on scoped service 'request'")
  assert.equal(c.getStatistics().cached, 0)
})

test('a cycle fails with its path', () => {
  const c = new LazyContainer()
  c.lazy('a', (c) => c.get('b'))
  c.lazy('b', (c) => c.get('c'))
  c.lazy('c', (c) => c.get('a'))
  for (let i = 0; i < 2; i++) {
    throwsMw(() => c.get('a'), 'MW_CYCLE')
    assert.throws(() => c.get('a'), { message: 'circular dependency: a -> b -> c -> a' })
  }
  assert.throws(() => c.get('b'), { message: 'circular dependency: b -> c -> a -> b' })
  c.lazy('c', () => 'c', { override: true })
  assert.equal(c.get('a'), 'c')
  assert.equal(c.getStatistics().cached, 3)
})

test('a throwing factory: the original error is rethrown and nothing is cached', () => {
  const c = new LazyContainer()
  let fail = true
  const boom = new Error('connection refused')
  c.singleton('db', () => {
    if (fail) throw boom
    return { db: true }
  })
  c.lazy('users', (c) => ({ db: c.get('db') }))
  assert.throws(() => c.get('users'), (e) => e === boom)
  assert.throws(() => c.get('db'), (e) => e === boom)
  const s = c.getStatistics()
  assert.equal(s.cached, 0)
  assert.equal(s.created, 0)
  fail = false
  assert.deepEqual(c.get('users'), { db: { db: true } })
})

test('a factory returning undefined or null is an error naming the service', () => {
  const c = new LazyContainer()
  c.lazy('nothing', () => undefined)
  c.factory('nil', () => null)
  throwsMw(() => c.get('nothing'), 'MW_CALLBACK', "'nothing'", 'returned undefined')
  throwsMw(() => c.get('nil'), 'MW_CALLBACK', "'nil'", 'returned null')
  assert.equal(c.getStatistics().cached, 0)
})

test('auto_wire: class constructor parameters resolved by name', () => {
  const c = new LazyContainer()
  c.lazy('database', () => new DatabaseConnection({}))
  c.lazy('logger', () => new Logger('app'))
  class Repo {
    constructor (database, logger = null) {
      this.database = database
      this.logger = logger
    }
  }
  class SubRepo extends Repo {}
  c.singleton('repo', Repo)
  c.singleton('sub', SubRepo)
  const repo = c.get('repo')
  assert.ok(repo instanceof Repo)
  assert.equal(repo.database, c.get('database'))
  assert.equal(repo.logger, c.get('logger'))
  assert.equal(c.get('sub').database, c.get('database'), 'a subclass without constructor uses its base class parameters')
  class NoParams {}
  c.lazy('noParams', NoParams)
  assert.ok(c.get('noParams') instanceof NoParams)
})

test('auto_wire: static inject list', () => {
  const c = new LazyContainer()
  c.lazy('db', () => ({ kind: 'db' }))
  c.lazy('log', () => ({ kind: 'log' }))
  class Service {
    static inject = ['db', 'log']
    constructor (a, b) {
      this.a = a
      this.b = b
    }
  }
  c.lazy('service', Service)
  const s = c.get('service')
  assert.equal(s.a.kind, 'db')
  assert.equal(s.b.kind, 'log')
})

test('auto_wire: an unresolvable parameter names the parameter and the service', () => {
  const c = new LazyContainer()
  class Needs {
    constructor (missingThing) {
      this.m = missingThing
    }
  }
  c.lazy('needs', Needs)
  throwsMw(() => c.get('needs'), 'MW_NOT_FOUND', "'missingThing'", "'needs'")
  assert.equal(c.has('needs'), true)
})

test('unknown service: MW_NOT_FOUND with a did-you-mean', () => {
  const c = new LazyContainer()
  c.lazy('database', () => ({}))
  throwsMw(() => c.get('databse'), 'MW_NOT_FOUND', "did you mean 'database'")
  throwsMw(() => c.get('zzz'), 'MW_NOT_FOUND', "service 'zzz' is not registered")
  throwsMw(() => c.tag('zzz', ['x']), 'MW_NOT_FOUND', 'not registered')
  assert.throws(() => c.get(42), TypeError)
})

test('aliases: to nothing, cycles, onto a service name', () => {
  const c = new LazyContainer()
  c.lazy('database', () => ({}))
  c.alias('ghost', 'nowhere')
  throwsMw(() => c.get('ghost'), 'MW_NOT_FOUND', "alias 'ghost' points to 'nowhere', which is not registered")
  assert.equal(c.has('ghost'), false)
  c.alias('a', 'b')
  throwsMw(() => c.alias('b', 'a'), 'MW_CYCLE', 'alias cycle: b -> a -> b')
  throwsMw(() => c.alias('database', 'x'), 'MW_INVALID_ARGUMENT', 'already registered as a service')
  c.alias('primary', 'db')
  c.alias('db', 'database')
  assert.equal(c.get('primary'), c.get('database'), 'alias chains')
})

test('duplicates without and with override; empty names', () => {
  const c = new LazyContainer()
  c.lazy('database', () => 'first')
  throwsMw(() => c.lazy('database', () => 'second'), 'MW_INVALID_ARGUMENT', 'already registered')
  assert.equal(c.get('database'), 'first')
  c.singleton('database', () => 'second', { override: true })
  assert.equal(c.get('database'), 'second')
  throwsMw(() => c.lazy('', () => 'x'), 'MW_INVALID_ARGUMENT', 'must not be empty')
  throwsMw(() => c.lazy('  ', () => 'x'), 'MW_INVALID_ARGUMENT', 'must not be empty')
  throwsMw(() => c.alias('', 'database'), 'MW_INVALID_ARGUMENT', 'must not be empty')
  assert.throws(() => c.lazy('x', 'not a function'), TypeError)
  assert.throws(() => c.lazy('x', () => 1, { override: 'yes' }), TypeError)
  assert.deepEqual(c.names(), ['database'])
})

test('debug_mode adds per-service statistics', () => {
  const c = new LazyContainer({ debug_mode: true })
  c.lazy('used', () => ({}))
  c.factory('t', () => ({}))
  c.get('used')
  c.get('t')
  c.get('t')
  const s = c.getStatistics()
  assert.equal(s.services.t.created, 2)
  assert.equal(s.services.used.cached, true)
  assert.equal(new LazyContainer().getStatistics().services, undefined)
})

test('releaseLazy drops lazy instances (not singletons) and runs their dispose hooks', () => {
  const c = new LazyContainer()
  const disposed = []
  c.lazy('l', () => ({ n: 'l' }), { dispose: (o) => disposed.push(o.n) })
  c.singleton('s', () => ({ n: 's' }), { dispose: (o) => disposed.push(o.n) })
  const l = c.get('l')
  const s = c.get('s')
  assert.equal(c.releaseLazy(), 1)
  assert.deepEqual(disposed, ['l'])
  assert.notEqual(c.get('l'), l)
  assert.equal(c.get('s'), s)
})

test('manager integration: release_lazy_on_cleanup', () => {
  const c = new LazyContainer({ release_lazy_on_cleanup: true })
  const disposed = []
  c.lazy('l', () => ({ n: 'l' }), { dispose: (o) => disposed.push(o.n) })
  c.singleton('s', () => ({ n: 's' }))
  const l = c.get('l')
  const s = c.get('s')
  const m = new MemoryManager({ hostGc: false })
  m.registerCleanupHook('container', c, 5)
  assert.deepEqual(m.cleanupHooks(), [{ name: 'container', priority: 5 }])
  m.forceGarbageCollection()
  assert.deepEqual(disposed, ['l'], 'the dispose hook ran inside forceGarbageCollection')
  assert.notEqual(c.get('l'), l, 'rebuilt after the cleanup')
  assert.equal(c.get('s'), s, 'the singleton stays')

  const off = new LazyContainer()
  off.lazy('l', () => ({}))
  const kept = off.get('l')
  m.registerCleanupHook('off', off)
  m.emergencyCleanup()
  assert.equal(off.get('l'), kept, 'without release_lazy_on_cleanup nothing is dropped')
  assert.equal(m.unregisterCleanupHook('off'), true)
})

test('a dispose hook that throws: the original error is rethrown after all ran', () => {
  const c = new LazyContainer()
  const boom = new Error('dispose failed')
  const log = []
  c.lazy('a', () => 'a', { dispose: () => { log.push('a') } })
  c.lazy('b', () => 'b', { dispose: () => { log.push('b'); throw boom } })
  c.get('a')
  c.get('b')
  assert.throws(() => c.dispose(), (e) => e === boom)
  assert.deepEqual(log, ['b', 'a'])
})

test('cached instances stay correct when an alias is redefined or a service replaced', () => {
  const c = new LazyContainer()
  c.lazy('one', () => ({ n: 1 }))
  c.lazy('two', () => ({ n: 2 }))
  c.alias('current', 'one')
  assert.equal(c.get('current').n, 1)
  c.alias('current', 'two')
  assert.equal(c.get('current').n, 2, 'the alias is followed again')
  c.lazy('two', () => ({ n: 22 }), { override: true })
  assert.equal(c.get('current').n, 22)
  assert.equal(c.get('two').n, 22)
})
