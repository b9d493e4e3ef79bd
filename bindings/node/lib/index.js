'use strict'

// The idiomatic layer over the generated native loader (../index.js): an EventEmitter,
// the V8-specific pieces (`source: 'v8-heap'`, the `v8-gc` cleanup hook), MemoryPool /
// TypedMemoryPool (the table of pooled JS objects, Promises, timers) and MemwardenError. Every behaviour that another binding would also need lives in the
// Rust core; this file only adapts it to Node.

const { EventEmitter } = require('node:events')
const v8 = require('node:v8')
const native = require('../index.js')

/** Every error memwarden raises: `code` is `MW_<KIND>` (`MW_INVALID_CONFIG`, ...). */
class MemwardenError extends Error {
  constructor (message, code) {
    super(message)
    this.name = 'MemwardenError'
    this.code = code
  }
}

// Native errors are created as MemwardenError from here on.
native.setErrorClass(MemwardenError)

const STATES = Object.freeze({
  STATE_NORMAL: 'normal',
  STATE_WARNING: 'warning',
  STATE_CRITICAL: 'critical',
  STATE_EMERGENCY: 'emergency'
})

const EVENT_OF_STATE = {
  warning: 'memoryWarning',
  critical: 'memoryCritical',
  emergency: 'memoryEmergency'
}

// Keys handled here and never sent to the core.
const BINDING_KEYS = ['gcCallback', 'onStateChange', 'hostGc']

function requireFunction (method, arg, fn) {
  if (typeof fn !== 'function') {
    throw new TypeError(`${method}(): '${arg}' must be a function, got ${describeType(fn)}`)
  }
}

function describeType (v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  return typeof v
}

/** Splits the user's config into the binding's keys and the core's JSON config. */
function splitConfig (config) {
  if (config === undefined || config === null) return { binding: {}, core: null }
  if (typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError(`new MemoryManager(): 'config' must be an object, got ${describeType(config)}`)
  }
  const binding = {}
  const core = {}
  for (const [key, value] of Object.entries(config)) {
    if (BINDING_KEYS.includes(key)) {
      binding[key] = value
    } else if (value !== undefined) {
      // NaN / Infinity have no JSON form: pass their text so the core's message names them.
      core[key] = typeof value === 'number' && !Number.isFinite(value) ? String(value) : value
    }
  }
  if (binding.gcCallback !== undefined) requireFunction('new MemoryManager', 'gcCallback', binding.gcCallback)
  if (binding.onStateChange !== undefined) requireFunction('new MemoryManager', 'onStateChange', binding.onStateChange)
  if (binding.hostGc !== undefined && typeof binding.hostGc !== 'boolean') {
    throw new TypeError(`new MemoryManager(): 'hostGc' must be a boolean, got ${describeType(binding.hostGc)}`)
  }
  return { binding, core }
}

/**
 * Watches memory against a limit: states with hysteresis, cleanup hooks and
 * "garbage collection". Emits, synchronously from `check()` / `getMemoryState()`:
 * `'stateChange'` (old, new), and on entering a state `'memoryWarning'`,
 * `'memoryCritical'`, `'memoryEmergency'` with `{ state, previous, usage, threshold }`.
 */
class MemoryManager extends EventEmitter {
  static STATE_NORMAL = STATES.STATE_NORMAL
  static STATE_WARNING = STATES.STATE_WARNING
  static STATE_CRITICAL = STATES.STATE_CRITICAL
  static STATE_EMERGENCY = STATES.STATE_EMERGENCY

  constructor (config) {
    super()
    const { binding, core } = splitConfig(config)
    this._native = new native.NativeMemoryManager(core)
    this._v8 = this._native.source === 'v8-heap'
    this._v8Peak = 0

    // One core state-change callback feeds the EventEmitter.
    this._native.onStateChange((previous, state) => this._emitStateChange(previous, state))
    if (binding.onStateChange) this._native.onStateChange(binding.onStateChange)
    if (binding.gcCallback) this._native.onAfterGC(binding.gcCallback)
    if (binding.hostGc !== false && typeof global.gc === 'function') {
      // Looked up at call time, so a later replacement of global.gc is honoured.
      this._native.registerCleanupHook('v8-gc', () => {
        if (typeof global.gc === 'function') global.gc()
      }, -1000)
    }
  }

  _emitStateChange (previous, state) {
    this.emit('stateChange', previous, state)
    const event = EVENT_OF_STATE[state]
    if (event && this.listenerCount(event) > 0) {
      this.emit(event, {
        state,
        previous,
        usage: this._native.getMemoryUsage().usage_percent,
        threshold: this._native.thresholdOf(state)
      })
    }
  }

  /** For `source: 'v8-heap'`: push V8's heap numbers before every reading. */
  _read () {
    if (!this._v8) return
    const h = v8.getHeapStatistics()
    if (h.used_heap_size > this._v8Peak) this._v8Peak = h.used_heap_size
    this._native.updateHostReading(h.used_heap_size, this._v8Peak, h.heap_size_limit)
  }

  /** Samples, updates the state (emitting events) and returns it. */
  check () {
    this._read()
    return this._native.check()
  }

  /** Same as `check()`: the seed calls it and acts on the answer. */
  getMemoryState () {
    return this.check()
  }

  /** The state the last check arrived at, without a new reading. */
  get state () {
    return this._native.state
  }

  /** The configured source: `'process'`, `'host'` or `'v8-heap'`. */
  get source () {
    return this._native.source
  }

  getMemoryUsage () {
    this._read()
    return this._native.getMemoryUsage()
  }

  getDetailedStats () {
    this._read()
    return this._native.getDetailedStats()
  }

  forceGarbageCollection () {
    this._read()
    return this._native.forceGarbageCollection()
  }

  emergencyCleanup () {
    this._read()
    return this._native.emergencyCleanup()
  }

  /** `'512M'`, bytes, or `-1` to clear the explicit limit. */
  setMemoryLimit (limit) {
    if (typeof limit !== 'string' && typeof limit !== 'number') {
      throw new TypeError(`setMemoryLimit(): 'limit' must be a string like '512M' or a number of bytes, got ${describeType(limit)}`)
    }
    this._native.setMemoryLimit(limit)
  }

  /** `{ bytes, origin }`. */
  getMemoryLimit () {
    return this._native.getMemoryLimit()
  }

  onStateChange (fn) {
    requireFunction('onStateChange', 'callback', fn)
    this._native.onStateChange(fn)
    return this
  }

  onBeforeGC (fn) {
    requireFunction('onBeforeGC', 'callback', fn)
    this._native.onBeforeGC(fn)
    return this
  }

  onAfterGC (fn) {
    requireFunction('onAfterGC', 'callback', fn)
    this._native.onAfterGC(fn)
    return this
  }

  /**
   * `fn()` or `fn(level)`; higher priorities run first. A `MemoryPool` in place of `fn`
   * registers the pool's own cleanup: idle objects trimmed to `min_size` (emergency: all); a
   * `LazyContainer` registers its cleanup (with `release_lazy_on_cleanup`: lazy instances dropped).
   */
  registerCleanupHook (name, fn, priority = 0) {
    if (typeof name !== 'string') {
      throw new TypeError(`registerCleanupHook(): 'name' must be a string, got ${describeType(name)}`)
    }
    if (!(fn instanceof MemoryPool) && !(fn instanceof LazyContainer)) requireFunction('registerCleanupHook', 'fn', fn)
    if (!Number.isInteger(priority) || priority < -(2 ** 31) || priority >= 2 ** 31) {
      throw new TypeError(`registerCleanupHook(): 'priority' must be a 32-bit integer, got ${String(priority)}`)
    }
    if (fn instanceof MemoryPool) {
      this._native.registerPoolCleanup(name, fn._native, priority)
    } else if (fn instanceof LazyContainer) {
      this._native.registerContainerCleanup(name, fn._native, priority)
    } else {
      this._native.registerCleanupHook(name, fn, priority)
    }
    return this
  }

  unregisterCleanupHook (name) {
    if (typeof name !== 'string') {
      throw new TypeError(`unregisterCleanupHook(): 'name' must be a string, got ${describeType(name)}`)
    }
    return this._native.unregisterCleanupHook(name)
  }

  /** `[{ name, priority }]` in the order the hooks run. */
  cleanupHooks () {
    return this._native.cleanupHooks()
  }

  /** For `source: 'host'`: the host's current and peak bytes and its own limit. */
  updateHostReading (current, peak, limit) {
    for (const [arg, v] of [['current', current], ['peak', peak], ['limit', limit]]) {
      if (v !== undefined && v !== null && typeof v !== 'number') {
        throw new TypeError(`updateHostReading(): '${arg}' must be a number of bytes, got ${describeType(v)}`)
      }
    }
    if (typeof current !== 'number') {
      throw new TypeError(`updateHostReading(): 'current' must be a number of bytes, got ${describeType(current)}`)
    }
    this._native.updateHostReading(current, peak ?? undefined, limit ?? undefined)
  }

  resetPeak () {
    this._v8Peak = 0
    this._read()
    this._native.resetPeak()
  }

  refreshLimit () {
    this._native.refreshLimit()
  }
}

// ---- MemoryPool ------------------------------------------------------------------------

// The core's keys and their camelCase spellings; `statistics` is spelled the same.
const POOL_ALIASES = {
  maxSize: 'max_size',
  minSize: 'min_size',
  maxIdleTime: 'max_idle_time',
  maxLifetime: 'max_lifetime',
  validationInterval: 'validation_interval',
  acquireTimeout: 'acquire_timeout',
  leakDetectionThreshold: 'leak_detection_threshold',
  autoCleanup: 'auto_cleanup'
}
const POOL_HOOKS = ['factory', 'reset', 'validate', 'destroy', 'onLeak']
// What TypedMemoryPool takes from methods instead of the config.
const TYPED_HOOKS = ['factory', 'reset', 'validate', 'destroy']
const TYPED = Symbol('TypedMemoryPool')
// setTimeout's longest delay; a longer acquire_timeout waits without a timer.
const MAX_TIMER_MS = 2 ** 31 - 1
const MAINTAIN_EVERY_MS = 1000

function isThenable (v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function'
}

/** Splits a pool config into hooks and the core's JSON config (camelCase aliases mapped). */
function splitPoolConfig (method, config, typed) {
  if (config === undefined || config === null) config = {}
  if (typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError(`${method}: 'config' must be an object, got ${describeType(config)}`)
  }
  const hooks = {}
  const core = {}
  for (const [key, value] of Object.entries(config)) {
    if (POOL_HOOKS.includes(key)) {
      if (typed && TYPED_HOOKS.includes(key)) {
        throw new MemwardenError(
          `${method}: a TypedMemoryPool takes no '${key}'; override ` +
          `${{ factory: 'createObject', reset: 'resetObject', validate: 'validateObject', destroy: 'destroyObject' }[key]}() instead`,
          'MW_INVALID_CONFIG')
      }
      if (value !== undefined) requireFunction(method, key, value)
      hooks[key] = value
      continue
    }
    const seedKey = Object.hasOwn(POOL_ALIASES, key) ? POOL_ALIASES[key] : key
    if (seedKey !== key && Object.hasOwn(config, seedKey)) {
      throw new MemwardenError(
        `MemoryPool config: both '${key}' and '${seedKey}' given; use one`, 'MW_INVALID_CONFIG')
    }
    if (value !== undefined) {
      // NaN / Infinity have no JSON form: pass their text so the core's message names them.
      core[seedKey] = typeof value === 'number' && !Number.isFinite(value) ? String(value) : value
    }
  }
  if (!typed) requireFunction(method, 'factory', hooks.factory)
  return { hooks, core }
}

/**
 * An unref'd interval that maintains `pool` while it lives. Made out here, not in the
 * constructor, whose closures hold `this`: the interval must only hold the pool weakly, so
 * that an unreferenced pool is collected (and its interval then ends).
 */
function maintainEverySecond (pool) {
  const ref = new WeakRef(pool)
  const timer = setInterval(() => {
    const p = ref.deref()
    if (p === undefined) clearInterval(timer)
    else p._maintainQuietly()
  }, MAINTAIN_EVERY_MS)
  timer.unref()
  return timer
}

/** The caller's stack, without the frames of this file: where an object was acquired. */
function callSite (above) {
  const holder = {}
  Error.captureStackTrace(holder, above)
  const stack = holder.stack
  const nl = stack.indexOf('\n')
  return nl < 0 ? '' : stack.slice(nl + 1).split('\n').map((l) => l.trim()).join('\n')
}

/**
 * A factory-backed object pool (HikariCP-class): `min_size` objects created up front, at
 * most `max_size`, reused most-recently-released first, validated when idle longer than
 * `validation_interval`, reset on release, evicted after `max_idle_time` / `max_lifetime`,
 * possible leaks reported after `leak_detection_threshold` seconds.
 *
 * Every hook runs on the JS thread, synchronously, inside the pool call that needs it.
 * Time-based maintenance runs on the next call into the pool and, with `auto_cleanup`,
 * from an unref'd 1 s interval (it never keeps the process alive).
 */
class MemoryPool {
  constructor (config, typed) {
    const isTyped = typed === TYPED
    const method = isTyped ? `new ${new.target.name}()` : 'new MemoryPool()'
    const { hooks, core } = splitPoolConfig(method, config, isTyped)
    if (isTyped) {
      if (this.createObject === TypedMemoryPool.prototype.createObject) {
        throw new TypeError(`${method}: a TypedMemoryPool subclass must override createObject()`)
      }
      hooks.factory = () => this.createObject()
      const proto = TypedMemoryPool.prototype
      if (this.resetObject !== proto.resetObject) hooks.reset = (obj) => this.resetObject(obj)
      if (this.validateObject !== proto.validateObject) hooks.validate = (obj) => this.validateObject(obj)
      if (this.destroyObject !== proto.destroyObject) hooks.destroy = (obj) => this.destroyObject(obj)
    }
    /** The config as given (a frozen copy): what `createObject()` may read. */
    this.config = Object.freeze({ ...(config || {}) })
    // id -> object, object -> id, ids free for reuse.
    this._objects = []
    this._ids = new Map()
    this._free = []
    this._leak = false
    this._lastWarning = undefined

    const user = hooks
    const wrappers = {
      factory: () => {
        const obj = user.factory(this)
        if (obj === undefined || obj === null) {
          throw new MemwardenError(
            `MemoryPool: the factory returned ${obj}; it must return the object to pool`, 'MW_CALLBACK')
        }
        if (isThenable(obj)) {
          throw new MemwardenError(
            'MemoryPool: the factory returned a Promise; it must return the object itself ' +
            '(create asynchronous resources before, or pool a wrapper that connects lazily)', 'MW_CALLBACK')
        }
        if (this._ids.has(obj)) {
          throw new MemwardenError(
            'MemoryPool: the factory returned an object that is already in the pool; it must create a new one each time',
            'MW_CALLBACK')
        }
        const id = this._free.length > 0 ? this._free.pop() : this._objects.length
        this._objects[id] = obj
        this._ids.set(obj, id)
        return id
      },
      destroy: (id) => {
        const obj = this._objects[id]
        this._objects[id] = undefined
        this._ids.delete(obj)
        this._free.push(id)
        if (user.destroy) user.destroy(obj)
      }
    }
    if (user.reset) {
      wrappers.reset = (id) => {
        if (isThenable(user.reset(this._objects[id]))) {
          throw new MemwardenError('MemoryPool: reset returned a Promise; it must reset synchronously', 'MW_CALLBACK')
        }
      }
    }
    if (user.validate) {
      wrappers.validate = (id) => {
        const ok = user.validate(this._objects[id])
        if (typeof ok !== 'boolean') {
          throw new MemwardenError(
            `MemoryPool: validate must return true or false, got ${isThenable(ok) ? 'a Promise' : describeType(ok)}`,
            'MW_CALLBACK')
        }
        return ok
      }
    }
    if (user.onLeak) {
      wrappers.onLeak = (id, heldMs, acquiredAt, valueId) => {
        user.onLeak({
          id,
          held_ms: heldMs,
          acquired_at: acquiredAt,
          object: valueId >= 0 ? this._objects[valueId] : undefined
        })
      }
    }

    this._native = new native.NativeMemoryPool(core, wrappers)
    // Plain native functions: one call each way on the hot path.
    const fast = this._native.fastPaths()
    this._acquireId = fast.acquire
    this._tryAcquireId = fast.tryAcquire
    this._releaseId = fast.release
    const effective = this._native.config()
    this._leak = effective.leak_detection_threshold > 0
    this._timeoutMs = effective.acquire_timeout * 1000
    this._maxSize = effective.max_size
    this._timer = null
    if (effective.auto_cleanup) this._timer = maintainEverySecond(this)
  }

  _maintainQuietly () {
    try {
      this._native.maintain()
      this._lastWarning = undefined
    } catch (e) {
      // A factory that fails to refill, a hook that throws: reported, never fatal here.
      const text = String(e && e.message)
      if (text !== this._lastWarning) {
        this._lastWarning = text
        process.emitWarning(`MemoryPool maintenance failed: ${text}`, { code: 'MEMWARDEN_POOL_MAINTENANCE' })
      }
    }
  }

  _label (label, above) {
    if (label !== undefined && typeof label !== 'string') {
      throw new TypeError(`acquire(): 'label' must be a string, got ${describeType(label)}`)
    }
    if (!this._leak) return undefined
    return label === undefined ? callSite(above) : label
  }

  /**
   * Takes an object: an idle one, or a new one from the factory while fewer than `max_size`
   * exist. Never blocks: throws MemwardenError `MW_EXHAUSTED` when all `max_size` objects are
   * in use (use `acquireAsync()` to wait), `MW_CLOSED` after `close()`, and the factory's own
   * exception when it throws. `label` names the call site in leak reports (default: the stack).
   */
  acquire (label) {
    const id = this._leak || label !== undefined
      ? this._acquireId(this._label(label, MemoryPool.prototype.acquire))
      : this._acquireId()
    return this._objects[id]
  }

  /**
   * A Promise of an object: at once when one is free, else queued first come first served
   * and resolved when one is released. Rejects with `MW_TIMEOUT` after `acquire_timeout`
   * seconds, `MW_CLOSED` on `close()`, or the factory's own exception.
   */
  acquireAsync (label) {
    return this._acquireAsync(label, MemoryPool.prototype.acquireAsync)
  }

  _acquireAsync (label, above) {
    let id
    try {
      if (this._leak || label !== undefined) {
        label = this._label(label, above)
        id = this._tryAcquireId(label)
      } else {
        id = this._tryAcquireId()
      }
    } catch (e) {
      return Promise.reject(e)
    }
    if (id >= 0) return Promise.resolve(this._objects[id])
    return new Promise((resolve, reject) => {
      let timer = null
      const settle = (result) => {
        if (timer !== null) clearTimeout(timer)
        if (typeof result === 'number') resolve(this._objects[result])
        else reject(result)
      }
      const ticket = this._native.acquireAsync(label, settle)
      if (ticket >= 0 && this._timeoutMs <= MAX_TIMER_MS) {
        timer = setTimeout(() => {
          if (this._native.cancelWaiter(ticket)) reject(this._timeoutError())
        }, this._timeoutMs)
        timer.unref()
      }
    })
  }

  _timeoutError () {
    const s = this._native.statistics()
    return new MemwardenError(
      `MemoryPool: no object became free within acquire_timeout (${this._timeoutMs / 1000} s); ` +
      `${s.active} of max_size ${s.max_size} in use`, 'MW_TIMEOUT')
  }

  /**
   * Returns `obj` to the pool (reset first, when a reset hook is set; an object whose reset
   * throws is destroyed and the exception rethrown). An object this pool did not hand out,
   * or one already released, is MemwardenError `MW_INVALID_ARGUMENT` and changes nothing.
   */
  release (obj) {
    const id = this._ids.get(obj)
    this._releaseId(id === undefined ? -1 : id)
  }

  /**
   * `await pool.use(async (obj) => ...)`: acquires (waiting like `acquireAsync()`), calls
   * `fn(obj)`, awaits its result and releases the object even when `fn` throws. Returns
   * what `fn` returned.
   */
  async use (fn) {
    requireFunction('use', 'fn', fn)
    const obj = await this._acquireAsync(undefined, MemoryPool.prototype.use)
    try {
      return await fn(obj)
    } finally {
      this.release(obj)
    }
  }

  /**
   * `active`, `idle`, `waiting`, `size`, `max_size`, `min_size`, `hit_rate` (% of acquires
   * served by an existing object), `total_created`, `total_destroyed`, `total_acquired`,
   * `timeouts`, `validation_failures`, `leaks`, `recent_leaks`, `closed`, `statistics`.
   */
  getStatistics () {
    return this._native.statistics()
  }

  /** Evicts idle / expired objects, reports leaks, refills to `min_size`. */
  maintain () {
    this._native.maintain()
  }

  /** Destroys idle objects down to `keep`; returns how many were destroyed. */
  trim (keep = 0) {
    if (!Number.isInteger(keep) || keep < 0 || keep > 2 ** 32 - 1) {
      throw new TypeError(`trim(): 'keep' must be a whole number >= 0, got ${String(keep)}`)
    }
    return this._native.trim(keep)
  }

  /** The pool's cleanup: `'normal'` trims idle objects to `min_size`, `'emergency'` to 0. */
  cleanup (level = 'normal') {
    if (typeof level !== 'string') {
      throw new TypeError(`cleanup(): 'level' must be 'normal' or 'emergency', got ${describeType(level)}`)
    }
    this._native.cleanup(level)
  }

  /**
   * No new acquires (`MW_CLOSED`); idle objects destroyed now, objects in use when they are
   * released; queued `acquireAsync()` Promises reject with `MW_CLOSED`. Idempotent.
   */
  close () {
    if (this._timer !== null) {
      clearInterval(this._timer)
      this._timer = null
    }
    this._native.close()
  }

  get closed () {
    return this._native.closed
  }
}

/**
 * A pool whose hooks are methods: subclasses override `createObject()` and, as needed,
 * `resetObject(obj)`, `validateObject(obj)` and `destroyObject(obj)`; the constructor takes
 * the config only (`new DatabaseConnectionPool({ max_size: 15 })`). `min_size` objects are
 * created inside the constructor, before a subclass constructor's own fields are set:
 * `createObject()` may read `this.config`.
 */
class TypedMemoryPool extends MemoryPool {
  constructor (config) {
    super(config, TYPED)
  }

  createObject () {
    throw new TypeError(`${this.constructor.name} must override createObject()`)
  }

  resetObject (obj) {}

  validateObject (obj) {
    return true
  }

  destroyObject (obj) {}
}

// ---- LazyContainer ---------------------------------------------------------------------

const CONTAINER_ALIASES = {
  autoWire: 'auto_wire',
  circularDetection: 'circular_detection',
  cacheInstances: 'cache_instances',
  debugMode: 'debug_mode',
  releaseLazyOnCleanup: 'release_lazy_on_cleanup'
}

function containerConfig (config) {
  if (config === undefined || config === null) return null
  if (typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError(`new LazyContainer(): 'config' must be an object, got ${describeType(config)}`)
  }
  const core = {}
  for (const [key, value] of Object.entries(config)) {
    const seedKey = Object.hasOwn(CONTAINER_ALIASES, key) ? CONTAINER_ALIASES[key] : key
    if (seedKey !== key && Object.hasOwn(config, seedKey)) {
      throw new MemwardenError(`LazyContainer config: both '${key}' and '${seedKey}' given; use one`, 'MW_INVALID_CONFIG')
    }
    if (value !== undefined) core[seedKey] = value
  }
  return core
}

function isClass (fn) {
  return /^class[\s{]/.test(Function.prototype.toString.call(fn))
}

/** The names of a class's constructor parameters (its own, else the nearest base class's). */
function constructorParams (cls) {
  for (let c = cls; typeof c === 'function' && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
    if (!isClass(c)) return []
    const src = Function.prototype.toString.call(c)
    const m = /\bconstructor\s*\(([^)]*)\)/.exec(src)
    if (m) {
      return m[1].split(',').map((p) => p.replace(/=[\s\S]*$/, '').trim()).filter((p) => p !== '')
    }
  }
  return []
}

/** What the factory `fn` of service `name` is called as: a function, or a class to construct. */
function builder (container, name, fn) {
  if (!isClass(fn)) return fn
  if (!container._autoWire) return (c) => new fn(c) // eslint-disable-line new-cap
  const inject = Array.isArray(fn.inject) ? fn.inject.slice() : constructorParams(fn)
  for (const p of inject) {
    if (typeof p !== 'string' || !/^[A-Za-z_$][\w$.-]*$/.test(p)) {
      throw new MemwardenError(
        `LazyContainer: cannot auto-wire service '${name}': parameter ${JSON.stringify(p)} is not a plain name ` +
        "(use a factory function or a static inject = ['...'] list)", 'MW_INVALID_ARGUMENT')
    }
  }
  return (c) => {
    const args = new Array(inject.length)
    for (let i = 0; i < inject.length; i++) {
      const p = inject[i]
      try {
        args[i] = c.get(p)
      } catch (e) {
        if (e instanceof MemwardenError && e.code === 'MW_NOT_FOUND' && !c.has(p)) {
          throw new MemwardenError(
            `LazyContainer: cannot auto-wire parameter '${p}' of service '${name}': no service '${p}' is registered`,
            'MW_NOT_FOUND')
        }
        throw e
      }
    }
    return new fn(...args) // eslint-disable-line new-cap
  }
}

const LIFETIMES = ['lazy', 'singleton', 'factory', 'scoped']

/**
 * Deferred object creation: `lazy` (created on first get, cached with `cache_instances`),
 * `singleton` (built once), transient `factory` (new every get), `scoped` (one per
 * `createScope()`), aliases, tags, cycle detection with the path, disposal newest first.
 * Factories run synchronously on the JS thread and get the container as argument.
 */
class LazyContainer {
  constructor (config) {
    // id -> instance for cached instances (>= 0); one-shot slots for the others (< 0).
    this._objects = []
    this._free = []
    this._temp = []
    this._tempFree = []
    this._regs = []
    // The registration of each cached id, and name (or alias) -> instance for the instances
    // the core caches container-wide (lazy, singleton): a cached `get` never leaves JS. Cleared
    // whenever the core may drop or replace one (teardown, override, alias, dispose).
    this._idReg = []
    this._memo = new Map()
    const hooks = {
      create: (reg) => this._create(reg),
      teardown: (reg, id) => this._teardown(reg, id)
    }
    this._native = new native.NativeLazyContainer(containerConfig(config), hooks)
    const effective = this._native.config()
    this._autoWire = effective.auto_wire
    this._cacheLazy = effective.cache_instances
    this._getId = this._native.fastPaths().get
  }

  _create (reg) {
    const r = this._regs[reg]
    const obj = r.build(this)
    if (obj === undefined || obj === null) {
      throw new MemwardenError(
        `LazyContainer: the factory of service '${r.name}' returned ${obj}; it must return the instance`, 'MW_CALLBACK')
    }
    if (r.kept) {
      const id = this._free.length > 0 ? this._free.pop() : this._objects.length
      this._objects[id] = obj
      this._idReg[id] = r
      return id
    }
    const slot = this._tempFree.length > 0 ? this._tempFree.pop() : this._temp.length
    this._temp[slot] = obj
    return -slot - 1
  }

  _teardown (reg, id) {
    this._memo.clear()
    const obj = this._objects[id]
    this._objects[id] = undefined
    this._idReg[id] = undefined
    this._free.push(id)
    const r = this._regs[reg]
    if (r.dispose) r.dispose(obj)
  }

  _value (id) {
    if (id >= 0) return this._objects[id]
    const slot = -id - 1
    const obj = this._temp[slot]
    this._temp[slot] = undefined
    this._tempFree.push(slot)
    return obj
  }

  _register (method, lifetime, name, factory, options) {
    if (typeof name !== 'string') {
      throw new TypeError(`${method}(): 'name' must be a string, got ${describeType(name)}`)
    }
    requireFunction(method, 'factory', factory)
    if (options !== undefined && options !== null && (typeof options !== 'object' || Array.isArray(options))) {
      throw new TypeError(`${method}(): 'options' must be an object, got ${describeType(options)}`)
    }
    const { dispose, override = false } = options || {}
    if (dispose !== undefined) requireFunction(method, 'options.dispose', dispose)
    if (typeof override !== 'boolean') {
      throw new TypeError(`${method}(): 'options.override' must be a boolean, got ${describeType(override)}`)
    }
    const reg = this._regs.length
    const kept = lifetime === 'singleton' || lifetime === 'scoped' || (lifetime === 'lazy' && this._cacheLazy)
    this._regs.push({ name, build: builder(this, name, factory), dispose, kept, shared: kept && lifetime !== 'scoped' })
    this._native.register(name, lifetime, reg, override)
    this._memo.clear()
    return this
  }

  /** Created on first `get`, cached (with `cache_instances`). */
  lazy (name, factory, options) {
    return this._register('lazy', 'lazy', name, factory, options)
  }

  /** Created on first `get`, built exactly once, always cached. */
  singleton (name, factory, options) {
    return this._register('singleton', 'singleton', name, factory, options)
  }

  /** A new instance on every `get`. */
  factory (name, factory, options) {
    return this._register('factory', 'factory', name, factory, options)
  }

  /** One instance per scope: resolve through `createScope().get(name)`. */
  scoped (name, factory, options) {
    return this._register('scoped', 'scoped', name, factory, options)
  }

  /**
   * The instance of `name` (or of the service the alias `name` points to). Throws
   * `MW_NOT_FOUND` (unknown), `MW_CYCLE` (with the path), `MW_CLOSED` (disposed), or the
   * factory's own exception (nothing is cached then).
   */
  get (name) {
    if (typeof name !== 'string') {
      throw new TypeError(`get(): 'name' must be a string, got ${describeType(name)}`)
    }
    const hit = this._memo.get(name)
    if (hit !== undefined) return hit
    const id = this._getId(name)
    if (id < 0) return this._value(id)
    const obj = this._objects[id]
    if (this._idReg[id].shared) this._memo.set(name, obj)
    return obj
  }

  /** Whether `name` (or an alias of it) is registered. */
  has (name) {
    return typeof name === 'string' && this._native.has(name)
  }

  /** `get(alias)` resolves `name`; the target need not exist yet; alias cycles are `MW_CYCLE`. */
  alias (alias, name) {
    for (const [arg, v] of [['alias', alias], ['name', name]]) {
      if (typeof v !== 'string') throw new TypeError(`alias(): '${arg}' must be a string, got ${describeType(v)}`)
    }
    this._native.alias(alias, name)
    this._memo.clear()
    return this
  }

  /** Adds tags (a string or an array of strings) to a registered service. */
  tag (name, tags) {
    if (typeof name !== 'string') throw new TypeError(`tag(): 'name' must be a string, got ${describeType(name)}`)
    if (typeof tags === 'string') tags = [tags]
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) {
      throw new TypeError(`tag(): 'tags' must be a string or an array of strings, got ${describeType(tags)}`)
    }
    this._native.tag(name, tags)
    return this
  }

  /** The instances of every service tagged `tag`, in registration order. */
  getByTag (tag) {
    if (typeof tag !== 'string') throw new TypeError(`getByTag(): 'tag' must be a string, got ${describeType(tag)}`)
    return this._native.getByTag(tag).map((id) => this._value(id))
  }

  /** Registered service names, in registration order. */
  names () {
    return this._native.names()
  }

  /** A scope for `scoped` services (one request); `dispose()` it when done. */
  createScope () {
    return new ContainerScope(this, this._native.createScope())
  }

  /**
   * Disposes open scopes, then runs the `dispose` hooks of cached instances newest first.
   * Later calls into the container throw `MW_CLOSED`. Idempotent.
   */
  dispose () {
    this._memo.clear()
    this._native.dispose()
  }

  /** Drops cached lazy (not singleton) instances, running their dispose hooks; returns how many. */
  releaseLazy () {
    return this._native.releaseLazy()
  }

  /**
   * `created` (instances created), `cached` (held now), `avg_creation_time` (ms),
   * `memory_saved` (MB: lazy/singleton services never created times the average resident
   * memory a first creation cost), `registered`, `never_created`, `aliases`, `tags`, and with
   * `debug_mode` per-service `services`.
   */
  getStatistics () {
    return this._native.statistics()
  }
}

/**
 * Disposes the native scope of a ContainerScope that was collected without `dispose()`: its
 * instances would otherwise stay in the container's table for good. The teardown hooks free
 * their table entries and run the `dispose` hooks (here, after the collection). An exception
 * from a hook cannot be thrown to anyone; it becomes a process warning.
 */
function disposeCollectedScope (nativeScope) {
  try {
    nativeScope.dispose()
  } catch (e) {
    const text = e && e.message ? e.message : String(e)
    process.emitWarning(`LazyContainer: disposing a collected scope failed: ${text}`, {
      code: 'MEMWARDEN_SCOPE_DISPOSE'
    })
  }
}
const collectedScopes = new FinalizationRegistry(disposeCollectedScope)

/**
 * A scope of a LazyContainer: `scoped` services once per scope. Call `dispose()` when done; a
 * scope collected without it is disposed after the collection.
 */
class ContainerScope {
  constructor (container, nativeScope) {
    this._container = container
    this._native = nativeScope
    // The held value is the native scope, not this wrapper: it stays reachable for the
    // cleanup while the wrapper can be collected.
    collectedScopes.register(this, nativeScope, this)
  }

  get (name) {
    if (typeof name !== 'string') {
      throw new TypeError(`get(): 'name' must be a string, got ${describeType(name)}`)
    }
    return this._container._value(this._native.get(name))
  }

  /** Runs the `dispose` hooks of this scope's instances, newest first. Idempotent. */
  dispose () {
    try {
      this._native.dispose()
    } finally {
      // Disposed (also when a hook threw: the core marks the scope disposed first).
      collectedScopes.unregister(this)
    }
  }
}

/** `'512M'` -> 536870912, `'-1'` -> null. */
function parseSize (text) {
  if (typeof text !== 'string') {
    throw new TypeError(`parseSize(): 'text' must be a string, got ${describeType(text)}`)
  }
  return native.parseSize(text)
}

/** 536870912 -> `'512M'`. */
function formatSize (bytes) {
  if (typeof bytes !== 'number') {
    throw new TypeError(`formatSize(): 'bytes' must be a number, got ${describeType(bytes)}`)
  }
  return native.formatSize(bytes)
}

module.exports = {
  MemoryManager,
  MemoryPool,
  TypedMemoryPool,
  LazyContainer,
  MemwardenError,
  parseSize,
  formatSize,
  version: native.version()
}
