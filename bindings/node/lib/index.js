'use strict'
const { describeType, jsonSafe } = require('./util.js')

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

// ---- iterators -------------------------------------------------------------------------

const SLOT_SPAN = 4294967296 // 2^32: an item id is slot * 2^32 + index

/**
 * The arrays pulled from a source or returned by a loader, by slot: the core iterates ids
 * (slot * 2^32 + index) and never holds the JS values themselves.
 */
class SlotTable {
  constructor () {
    this.arrays = []
    this.free = []
    this.order = []
  }

  put (arr) {
    const s = this.free.length > 0 ? this.free.pop() : this.arrays.length
    this.arrays[s] = arr
    this.order.push(s)
    return s
  }

  item (id) {
    return this.arrays[Math.floor(id / SLOT_SPAN)][id % SLOT_SPAN]
  }

  /** A chunk from its description: `[-1 - slot, count]` or a list of ids. */
  chunk (d, copy) {
    if (d.length === 2 && d[0] < 0) {
      const arr = this.arrays[-1 - d[0]]
      return copy || d[1] !== arr.length ? arr.slice(0, d[1]) : arr
    }
    const out = new Array(d.length)
    for (let i = 0; i < d.length; i++) out[i] = this.item(d[i])
    return out
  }

  /** Forgets every slot allocated before `slot` (consumed in order). */
  dropBefore (slot) {
    while (this.order.length > 0 && this.order[0] !== slot) {
      const s = this.order.shift()
      this.arrays[s] = undefined
      this.free.push(s)
    }
  }

  clear () {
    this.arrays = []
    this.free = []
    this.order = []
  }
}

function managerNative (method, manager) {
  if (manager === undefined || manager === null) return null
  if (!(manager instanceof MemoryManager)) {
    throw new TypeError(`${method}: 'manager' must be a memwarden MemoryManager, got ${describeType(manager)}`)
  }
  return manager._native
}

/** Splits options into the binding's keys and the core's JSON config. */
function splitOptions (method, options, bindingKeys) {
  if (options === undefined || options === null) return { binding: {}, core: null }
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${method}: 'options' must be an object, got ${describeType(options)}`)
  }
  const binding = {}
  const core = {}
  for (const [key, value] of Object.entries(options)) {
    if (bindingKeys.includes(key)) binding[key] = value
    else if (value !== undefined) core[key] = typeof value === 'number' && !Number.isFinite(value) ? String(value) : value
  }
  return { binding, core }
}

function isIterable (v) {
  return v !== null && v !== undefined && typeof v[Symbol.iterator] === 'function'
}

function isAsyncIterable (v) {
  return v !== null && v !== undefined && typeof v[Symbol.asyncIterator] === 'function'
}

/** A rejection reason that is no Error at all still reaches the core as an error. */
function rejection (e, what) {
  return e === undefined || e === null ? new MemwardenError(`${what} rejected with ${e}`, 'MW_CALLBACK') : e
}

/**
 * Pulls up to `max` items from a sync iterator into a new array. An exception after some
 * items were pulled is kept for the next pull, so no item is lost.
 */
function pullSync (state, max) {
  if (state.failed) {
    state.failed = false
    const e = state.error
    state.error = undefined
    throw e
  }
  const out = []
  try {
    while (out.length < max) {
      const r = state.it.next()
      if (r.done) break
      out.push(r.value)
    }
  } catch (e) {
    if (out.length === 0) throw e
    state.failed = true
    state.error = e
  }
  return out
}

async function pullAsync (state, max) {
  if (state.failed) {
    state.failed = false
    const e = state.error
    state.error = undefined
    throw e
  }
  const out = []
  try {
    while (out.length < max) {
      const r = await state.it.next()
      if (r.done) break
      out.push(r.value)
    }
  } catch (e) {
    if (out.length === 0) throw rejection(e, 'the source')
    state.failed = true
    state.error = e
  }
  return out
}

/**
 * Chunks of `chunk_size` items from a sync iterable (array, generator) — `for (const chunk
 * of it)` — or from an async iterable — `for await (const chunk of it)`. Between chunks the
 * core watches memory growth against `memory_limit` (cleanup through `manager`, then smaller
 * chunks). A source that throws follows `error_handling`: `'continue'` (recorded, go on),
 * `'retry'` (`retry_attempts` more pulls), `'stop'` (the original exception is rethrown).
 * `cache_chunks` keeps the chunks so that `rewind()` replays them without the source.
 */
class StreamingIterator {
  constructor (source, options) {
    const method = 'new StreamingIterator()'
    if (!isIterable(source) && !isAsyncIterable(source)) {
      throw new TypeError(`${method}: 'source' must be an iterable or an async iterable, got ${describeType(source)}`)
    }
    const { binding, core } = splitOptions(method, options, ['manager'])
    const manager = managerNative(method, binding.manager)
    this._native = new native.NativeStreamingIterator(core)
    if (manager) this._native.setManager(manager)
    this._cache = Boolean(core && core.cache_chunks)
    this._source = source
    this._state = null
    this._slots = new SlotTable()
    this._sync = (kind, max) => {
      const out = pullSync(this._pullState(false), max)
      return [this._slots.put(out), out.length]
    }
    this._async = (kind, max, b, c, reply) => {
      pullAsync(this._pullState(true), max).then(
        (out) => reply(null, [this._slots.put(out), out.length]),
        (e) => reply(rejection(e, 'the source')))
    }
  }

  _pullState (async) {
    if (this._state === null) {
      const it = async && isAsyncIterable(this._source)
        ? this._source[Symbol.asyncIterator]()
        : this._source[Symbol.iterator]()
      this._state = { it, failed: false, error: undefined }
    }
    return this._state
  }

  _deliver (d) {
    const chunk = this._slots.chunk(d, this._cache)
    if (!this._native.retains) this._slots.clear()
    return chunk
  }

  * [Symbol.iterator] () {
    if (!isIterable(this._source)) {
      throw new TypeError('StreamingIterator: the source is an async iterable; iterate with for await')
    }
    for (;;) {
      const d = this._native.next(this._sync)
      if (d.length === 0) return
      yield this._deliver(d)
    }
  }

  async * [Symbol.asyncIterator] () {
    if (!isAsyncIterable(this._source)) {
      yield * this[Symbol.iterator]()
      return
    }
    for (;;) {
      const d = await this._native.nextAsync(this._async)
      if (d.length === 0) return
      yield this._deliver(d)
    }
  }

  /** Replays the cached chunks on the next iteration (`cache_chunks`); throws `MW_UNSUPPORTED` otherwise. */
  rewind () {
    this._native.rewind()
  }

  /** `chunks`, `items`, `chunk_size`, `cleanups`, `errors`, `error_count`, `retries`, `cached_chunks`, ... */
  getStats () {
    return this._native.stats()
  }
}

/**
 * Items loaded on demand: `loader(offset, limit)`, or with `mode: 'keyset'` and `key` (a
 * property name or a function of the item) `loader(afterKey, limit)`, `afterKey` null first.
 * `for (const item of it)` calls a loader that returns arrays; `for await` also one that
 * returns Promises (the core then waits on a worker thread, the event loop stays free).
 * `batches()` yields whole batches. `prefetch` has no effect with a JS loader (it runs on the
 * JS thread, one batch at a time; `getStats().prefetch_active` is false).
 */
class LazyIterator {
  constructor (loader, options) {
    const method = 'new LazyIterator()'
    requireFunction(method, 'loader', loader)
    const { binding, core } = splitOptions(method, options, ['manager', 'key'])
    const manager = managerNative(method, binding.manager)
    const key = binding.key
    if (typeof key === 'string') {
      core.key = key
      this._keyOf = (item) => item[key]
    } else if (typeof key === 'function') {
      this._keyOf = key
    } else if (key !== undefined && key !== null) {
      throw new TypeError(`${method}: 'key' must be a property name or a function, got ${describeType(key)}`)
    } else {
      this._keyOf = null
    }
    this._native = new native.NativeLazyIterator(core)
    if (this._native.keyset && this._keyOf === null) {
      throw new MemwardenError(
        "LazyIterator config: mode 'keyset' needs 'key' (the item's key property, or a function item => key)",
        'MW_INVALID_CONFIG')
    }
    if (manager) this._native.setManager(manager)
    this._cache = Boolean(core && core.cache_chunks)
    this._loader = loader
    this._slots = new SlotTable()
    this._sync = (kind, at, limit) => {
      const r = loader(at, limit)
      if (isThenable(r)) {
        r.catch(() => {})
        throw new MemwardenError('LazyIterator: the loader returned a Promise; iterate with for await', 'MW_CALLBACK')
      }
      return this._stash(r)
    }
    this._async = (kind, at, limit, c, reply) => {
      let r
      try {
        r = loader(at, limit)
      } catch (e) {
        reply(e)
        return
      }
      Promise.resolve(r).then((v) => {
        let answer
        try {
          answer = this._stash(v)
        } catch (e) {
          reply(e)
          return
        }
        reply(null, answer)
      }, (e) => reply(rejection(e, 'the loader')))
    }
  }

  _stash (batch) {
    if (batch === undefined || batch === null) batch = []
    if (!Array.isArray(batch)) {
      if (!isIterable(batch)) {
        throw new MemwardenError(`LazyIterator: the loader must return an array, got ${describeType(batch)}`, 'MW_CALLBACK')
      }
      batch = Array.from(batch)
    }
    const slot = this._slots.put(batch)
    if (this._keyOf !== null && this._native.keyset && batch.length > 0) {
      return [slot, batch.length, this._keyOf(batch[batch.length - 1])]
    }
    return [slot, batch.length]
  }

  _deliver (d) {
    const batch = this._slots.chunk(d, this._cache)
    if (!this._native.retains) this._slots.clear()
    return batch
  }

  _syncBatches () {
    const self = this
    return (function * () {
      for (;;) {
        const d = self._native.next(self._sync)
        if (d.length === 0) return
        yield self._deliver(d)
      }
    })()
  }

  async * _asyncBatches () {
    for (;;) {
      const d = await this._native.nextAsync(this._async)
      if (d.length === 0) return
      yield this._deliver(d)
    }
  }

  /** The batches themselves: `for (const batch of it.batches())` or `for await`. */
  batches () {
    return {
      [Symbol.iterator]: () => this._syncBatches(),
      [Symbol.asyncIterator]: () => this._asyncBatches()
    }
  }

  * [Symbol.iterator] () {
    for (const batch of this._syncBatches()) yield * batch
  }

  async * [Symbol.asyncIterator] () {
    for await (const batch of this._asyncBatches()) yield * batch
  }

  /** Starts again from the first item: replays the cache (`cache_chunks`) or loads again. */
  rewind () {
    this._native.rewind()
  }

  getStats () {
    return this._native.stats()
  }
}

/**
 * The items of `source` (an iterable of items; a StreamingIterator's chunks are flattened)
 * that pass every function of `filters`, in order. With `early_exit` (default true) an
 * item's filters stop at the first that rejects it; with `false` every filter sees every
 * item. A filter that throws ends the iteration with its exception. Synchronous only.
 */
class FilteredIterator {
  constructor (source, options) {
    const method = 'new FilteredIterator()'
    if (source instanceof StreamingIterator) {
      const chunks = source
      source = { * [Symbol.iterator] () { for (const c of chunks) yield * c } }
    }
    if (!isIterable(source)) {
      throw new TypeError(`${method}: 'source' must be an iterable of items, got ${describeType(source)}` +
        (isAsyncIterable(source) ? ' (an async iterable; FilteredIterator is synchronous)' : ''))
    }
    const { binding, core } = splitOptions(method, options, ['filters', 'manager'])
    const filters = binding.filters === undefined ? [] : binding.filters
    if (!Array.isArray(filters)) {
      throw new TypeError(`${method}: 'filters' must be an array of functions, got ${describeType(filters)}`)
    }
    filters.forEach((f, i) => requireFunction(method, `filters[${i}]`, f))
    this._native = new native.NativeFilteredIterator(core, filters.length)
    this._filters = filters.slice()
    this._source = source
    this._state = null
    this._slots = new SlotTable()
    this._dispatch = (kind, a, b) => {
      if (kind === 5) return this._filters[a](this._slots.item(b))
      if (this._state === null) this._state = { it: this._source[Symbol.iterator](), failed: false, error: undefined }
      const out = pullSync(this._state, a)
      return [this._slots.put(out), out.length]
    }
  }

  * [Symbol.iterator] () {
    for (;;) {
      const ids = this._native.next(this._dispatch, 256)
      if (ids.length === 0) {
        this._slots.clear()
        return
      }
      const items = new Array(ids.length)
      for (let i = 0; i < ids.length; i++) items[i] = this._slots.item(ids[i])
      this._slots.dropBefore(Math.floor(ids[ids.length - 1] / SLOT_SPAN))
      yield * items
    }
  }

  /** `items_seen`, `passed`, `rejected`, `filters: [{ evaluated, rejected }]`, `early_exit`, `source`. */
  getStats () {
    return this._native.stats()
  }
}

// ---- ChunkedDatabaseProcessor ----------------------------------------------------------

const PROCESSOR_KEYS = ['progress_callback', 'error_callback', 'manager']

function emitWarnings (stats) {
  for (const w of (stats && stats.warnings) || []) {
    process.emitWarning(`ChunkedDatabaseProcessor: ${w}`, { code: 'MEMWARDEN_CHUNK' })
  }
}

function noPromise (r) {
  if (isThenable(r)) {
    r.then(null, () => {})
    throw new MemwardenError(
      'ChunkedDatabaseProcessor: a callback returned a Promise in a synchronous run; use processAsync() / processQueryAsync()',
      'MW_CALLBACK')
  }
}

/**
 * The transaction of one chunk in the same-transaction mode (`checkpoint_table`): what runs
 * through `execute` / `query` commits together with the chunk's checkpoint, or not at all.
 * Valid only while its callback runs (in an async run, until the callback's Promise settles).
 */
class ChunkTransaction {
  constructor (nativeProcessor) {
    this._native = nativeProcessor
  }

  /** Runs `sql` with `params` (an array; `?` placeholders for SQLite and MySQL, `$1` for PostgreSQL). */
  execute (sql, params) {
    this.query(sql, params)
  }

  /** As `execute`, and returns the rows as objects. */
  query (sql, params) {
    if (typeof sql !== 'string') throw new TypeError(`ChunkTransaction.execute(): 'sql' must be a string, got ${describeType(sql)}`)
    if (params !== undefined && params !== null && !Array.isArray(params)) {
      throw new TypeError(`ChunkTransaction.execute(): 'params' must be an array, got ${describeType(params)}`)
    }
    return this._native.txExecute(sql, params ?? null)
  }
}

/**
 * Walks a query's rows in chunks by keyset pagination (a row is never skipped or seen twice
 * while the callback updates rows), with progress, retries, an error policy, parallel key
 * ranges, a per-chunk memory budget and checkpoints. `connection` is a URL or PDO DSN
 * (`sqlite:///path.db`, `postgres://...`, `mysql://...`). Callbacks run on the JS thread;
 * `process` / `processQuery` are synchronous, `processAsync` / `processQueryAsync` run the
 * core on a worker thread and wait for each callback (and the Promise it returns).
 */
class ChunkedDatabaseProcessor {
  constructor (connection, options) {
    const method = 'new ChunkedDatabaseProcessor()'
    if (typeof connection !== 'string') {
      throw new TypeError(`${method}: 'connection' must be a connection string (sqlite:///path.db, postgres://..., ` +
        `mysql://..., or a PDO DSN), got ${describeType(connection)}`)
    }
    const { binding, core } = splitOptions(method, options, PROCESSOR_KEYS)
    for (const k of ['progress_callback', 'error_callback']) {
      if (binding[k] !== undefined && binding[k] !== null) requireFunction(method, k, binding[k])
    }
    const manager = managerNative(method, binding.manager)
    this._native = new native.NativeChunkedDatabaseProcessor(connection, core)
    if (manager) this._native.setManager(manager)
    this._progress = binding.progress_callback || null
    this._progressStats = false
    this._onError = binding.error_callback || null
  }

  /** `fn(stats)` after every chunk (`processed`, `total`, `memory_usage`, `estimated_remaining`, ...); replaces `progress_callback`. */
  setProgressCallback (fn) {
    if (fn !== null) requireFunction('setProgressCallback', 'fn', fn)
    this._progress = fn
    this._progressStats = fn !== null
    return this
  }

  /** `fn(error, chunk) -> boolean`: a chunk failed after its retries; true skips it, false stops. */
  setErrorCallback (fn) {
    if (fn !== null) requireFunction('setErrorCallback', 'fn', fn)
    this._onError = fn
    return this
  }

  /** The connection, password masked. */
  get connection () {
    return this._native.connection
  }

  /** The chunk's transaction for a callback, in the same-transaction mode (else undefined). */
  _tx () {
    return this._native.transactional ? new ChunkTransaction(this._native) : undefined
  }

  /** `rowCallback(row)` for every row (`rowCallback(row, tx)` with `checkpoint_table`); returns the final statistics. */
  process (sql, rowCallback) {
    requireFunction('process', 'rowCallback', rowCallback)
    return this._run('process', sql, (rows) => {
      const tx = this._tx()
      for (let i = 0; i < rows.length; i++) {
        const r = rowCallback(rows[i], tx)
        if (r !== undefined) noPromise(r)
      }
    }, null)
  }

  /**
   * `batchCallback(rows)` per chunk (`batchCallback(rows, tx)` with `checkpoint_table`);
   * `options`: `batch_size`, `parallel`. Returns the final statistics.
   */
  processQuery (sql, batchCallback, options) {
    requireFunction('processQuery', 'batchCallback', batchCallback)
    return this._run('processQuery', sql, (rows) => noPromise(batchCallback(rows, this._tx())), options)
  }

  /** As `process`; `rowCallback` may return a Promise, awaited before the next row. */
  processAsync (sql, rowCallback) {
    requireFunction('processAsync', 'rowCallback', rowCallback)
    return this._runAsync('processAsync', sql, async (rows) => {
      const tx = this._tx()
      for (let i = 0; i < rows.length; i++) {
        const r = rowCallback(rows[i], tx)
        if (isThenable(r)) await r
      }
    }, null)
  }

  /** As `processQuery`; `batchCallback` may return a Promise, awaited before the next batch. */
  processQueryAsync (sql, batchCallback, options) {
    requireFunction('processQueryAsync', 'batchCallback', batchCallback)
    return this._runAsync('processQueryAsync', sql, (rows) => batchCallback(rows, this._tx()), options)
  }

  _check (method, sql, options) {
    if (typeof sql !== 'string') throw new TypeError(`${method}(): 'sql' must be a string, got ${describeType(sql)}`)
    if (options !== undefined && options !== null && (typeof options !== 'object' || Array.isArray(options))) {
      throw new TypeError(`${method}(): 'options' must be an object, got ${describeType(options)}`)
    }
    return {
      progress: this._progress !== null,
      progressStats: this._progressStats,
      onError: this._onError !== null
    }
  }

  _run (method, sql, onBatch, options) {
    const flags = this._check(method, sql, options)
    const { _progress: progress, _progressStats: withStats, _onError: onError } = this
    const dispatch = (kind, a, b, c) => {
      if (kind === 2) return onBatch(a)
      if (kind === 3) return noPromise(withStats ? progress(c) : progress(a, b))
      const r = onError(a, b)
      noPromise(r)
      return r
    }
    let stats
    try {
      stats = this._native.run(sql, dispatch, options ?? null, flags)
    } finally {
      emitWarnings(stats || this._native.stats())
    }
    return stats
  }

  async _runAsync (method, sql, onBatch, options) {
    const flags = this._check(method, sql, options)
    const { _progress: progress, _progressStats: withStats, _onError: onError } = this
    const dispatch = (kind, a, b, c, reply) => {
      let r
      try {
        if (kind === 2) r = onBatch(a)
        else if (kind === 3) r = withStats ? progress(c) : progress(a, b)
        else r = onError(a, b)
      } catch (e) {
        reply(rejection(e, 'the callback'))
        return
      }
      if (isThenable(r)) r.then((v) => reply(null, v), (e) => reply(rejection(e, 'the callback')))
      else reply(null, r)
    }
    let stats
    try {
      stats = await this._native.runAsync(sql, dispatch, options ?? null, flags)
    } finally {
      emitWarnings(stats || this._native.stats())
    }
    return stats
  }

  /** Statistics of the last (or running) call. */
  getStats () {
    return this._native.stats()
  }

  /** The manager whose cleanup runs when a chunk exceeds `memory_limit`; `null` for none. */
  setManager (manager) {
    this._native.setManager(managerNative('setManager', manager))
    return this
  }
}

// ---- MemoryAlertingService -------------------------------------------------------------

/** Core event kinds and the EventEmitter events they become. */
const ALERT_EVENTS = Object.freeze({
  alert_raised: 'alert',
  alert_resolved: 'resolved',
  delivery_ok: 'deliveryOk',
  delivery_failed: 'deliveryFailed',
  alert_dropped: 'dropped',
  alert_suppressed: 'suppressed'
})

function timeoutArg (method, t) {
  if (t === undefined || t === null) return undefined
  if (typeof t !== 'number') {
    throw new TypeError(`${method}: 'timeoutSeconds' must be a number of seconds, got ${describeType(t)}`)
  }
  return t
}

/**
 * Judges a MemoryManager's readings against the alerting thresholds and delivers alerts by
 * e-mail, Slack, a generic webhook and Alertmanager from a background thread (DESIGN §4).
 * `checkAndAlert()` never waits on the network. Emits, asynchronously on the JS thread:
 * `'alert'` (raised), `'resolved'`, `'deliveryOk'`, `'deliveryFailed'`, `'dropped'` (queue
 * full), `'suppressed'` (cooldown), and `'event'` for every one of them; each with the core's
 * event object `{ kind, alert_id, level, channel, message, error, time, timestamp }`.
 * Event delivery never keeps the process alive.
 */
class MemoryAlertingService extends EventEmitter {
  constructor (config, manager) {
    super()
    const method = 'new MemoryAlertingService()'
    if (config !== undefined && config !== null && (typeof config !== 'object' || Array.isArray(config))) {
      throw new TypeError(`${method}: 'config' must be an object, got ${describeType(config)}`)
    }
    const m = managerNative(method, manager)
    this._manager = m ? manager : null
    this._native = new native.NativeMemoryAlertingService(config == null ? null : jsonSafe(config), m)
    this._native.setEventHandler((event) => this._dispatch(event))
  }

  _dispatch (event) {
    this.emit('event', event)
    const name = ALERT_EVENTS[event.kind]
    if (name) this.emit(name, event)
  }

  /** Reads the manager, decides, queues deliveries and returns the level at once. */
  checkAndAlert () {
    if (this._manager) this._manager._read()
    return this._native.checkAndAlert()
  }

  /** Sends a message of your own at `level`; returns the alert's id in the history. */
  sendAlert (message, level = 'warning') {
    if (typeof message !== 'string') {
      throw new TypeError(`sendAlert(): 'message' must be a string, got ${describeType(message)}`)
    }
    if (typeof level !== 'string') {
      throw new TypeError(`sendAlert(): 'level' must be a string, got ${describeType(level)}`)
    }
    return this._native.sendAlert(message, level)
  }

  /**
   * Resolves once every queued delivery was attempted (true) or the timeout passed (false),
   * after the events of those deliveries were emitted. Waits off the JS thread.
   */
  async flush (timeoutSeconds) {
    const p = this._native.flush(timeoutArg('flush()', timeoutSeconds))
    // The event function is unref'd; this timer keeps the loop alive until the Promise settles.
    const keep = setInterval(() => {}, 1 << 30)
    try {
      return await p
    } finally {
      clearInterval(keep)
    }
  }

  /** As `flush()`, blocking this thread; events follow asynchronously. */
  flushSync (timeoutSeconds) {
    return this._native.flushSync(timeoutArg('flushSync()', timeoutSeconds))
  }

  /** The history, newest first; filters: `level`, `channel`, `kind`, `since` (epoch s), `limit`. */
  getAlertHistory (filters) {
    if (filters !== undefined && filters !== null && (typeof filters !== 'object' || Array.isArray(filters))) {
      throw new TypeError(`getAlertHistory(): 'filters' must be an object, got ${describeType(filters)}`)
    }
    return this._native.getAlertHistory(filters == null ? undefined : jsonSafe(filters))
  }

  /** Every event since the last call, oldest first (the same events are also emitted). */
  pollEvents () {
    return this._native.pollEvents()
  }

  /** The level the last check arrived at. */
  get level () {
    return this._native.level
  }

  get closed () {
    return this._native.closed
  }

  /** Stops the service; queued deliveries get a short grace period in the background. */
  close () {
    this._native.close()
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

// memoryTracking() and ResourceTracker live in files of their own (issue 8).
const { memoryTracking } = require('./middleware.js')
const { ResourceTracker } = require('./tracker.js')
// ---- Monitor -----------------------------------------------------------------------------

function pathArg (method, p) {
  if (p instanceof URL) return require('node:url').fileURLToPath(p)
  if (typeof p !== 'string') {
    throw new TypeError(`${method}: 'path' must be a string or a file: URL, got ${describeType(p)}`)
  }
  return p
}

/**
 * Samples a process (`pid`; with `children` its whole tree) or the whole system every
 * `interval` seconds on a background thread, keeps the series, appends each sample to `export`
 * as it goes, and analyzes it. `await monitor.use(async (m) => ...)` samples while the function
 * runs; `using m = monitor.started()` does the same where `Symbol.dispose` exists.
 */
class Monitor {
  constructor (config) {
    const method = 'new Monitor()'
    if (config !== undefined && config !== null && (typeof config !== 'object' || Array.isArray(config))) {
      throw new TypeError(`${method}: 'config' must be an object, got ${describeType(config)}`)
    }
    const cfg = config == null ? null : jsonSafe(config)
    if (cfg && cfg.export instanceof URL) cfg.export = pathArg(method, cfg.export)
    this._native = new native.NativeMonitor(cfg)
  }

  /** Starts the background sampler (at once, then every interval; late ticks are skipped). */
  start () { this._native.start(); return this }
  /** Stops the background sampler and fsyncs the export. */
  stop () { this._native.stop() }
  get running () { return this._native.running }
  /** Why the sampler stopped on its own (`'process 123 has exited'`), or null. */
  get ended () { return this._native.ended ?? null }
  get skippedTicks () { return this._native.skippedTicks }
  /** `{ target, interval, limit_bytes, limit_origin, threshold, started_unix_ms, version }`. */
  get meta () { return this._native.meta }
  /** Takes a sample now, adds it to the series and returns it. */
  sampleNow () { return this._native.sampleNow() }
  /** `{ t, unix_ms, current_bytes, peak_bytes, limit_bytes }` for every sample so far. */
  samples () { return this._native.samples() }
  /** The analysis of the series so far (as `analyze(path)`). */
  analyze () { return this._native.analyze() }
  /** Writes the series so far to `path` as an export file (atomically). */
  export (path) { this._native.export(pathArg('Monitor.export()', path)) }

  /** Samples while `fn(monitor)` runs (awaited), then stops; returns what `fn` returned. */
  async use (fn) {
    if (typeof fn !== 'function') {
      throw new TypeError(`Monitor.use(): 'fn' must be a function, got ${describeType(fn)}`)
    }
    this.start()
    try {
      return await fn(this)
    } finally {
      this.stop()
    }
  }

  /** Starts and returns this monitor, for `using m = new Monitor(cfg).started()`. */
  started () { return this.start() }
}
if (typeof Symbol.dispose === 'symbol') {
  Monitor.prototype[Symbol.dispose] = function () { this.stop() }
}

/**
 * The analysis of an export file (`memwarden monitor --export`, a Monitor's `export`, or
 * `Monitor.export()`): `{ samples, duration_s, average_mb, min_mb, peak_mb, limit_mb,
 * efficiency_percent, spikes: [{ t, mb, jump_mb }], leak: { slope_mb_per_min, r2, steady,
 * sentence } | null }`. An empty, truncated or foreign file throws `MW_INVALID_ARGUMENT`, a
 * missing one `MW_IO`, naming the file.
 */
function analyze (path) {
  return native.analyzeFile(pathArg('analyze()', path))
}
const { StreamProcessor } = require('./stream')

module.exports = {
  MemoryManager,
  MemoryPool,
  TypedMemoryPool,
  LazyContainer,
  StreamingIterator,
  LazyIterator,
  FilteredIterator,
  ChunkedDatabaseProcessor,
  ChunkTransaction,
  MemoryAlertingService,
  ResourceTracker,
  memoryTracking,
  Monitor,
  analyze,
  StreamProcessor,
  MemwardenError,
  parseSize,
  formatSize,
  version: native.version()
}
