'use strict'
const { describeType, jsonSafe } = require('./util.js')

// ResourceTracker: Streamflow's resource tracking (seed 004) over core::tracker. The core keeps
// the resources, statistics, thresholds with hysteresis, oldest-first cleanup and the leak
// report; this file adds what only JavaScript has: an EventEmitter, sizes of Buffers and
// ArrayBuffers, a FinalizationRegistry that reports objects collected without a release, an
// unref'd timer for the cleanup schedule (so `onBeforeGC` hooks and `gcCallback` run on the JS
// thread), and `debug()` logging.

const { EventEmitter } = require('node:events')
const native = require('../index.js')

const METHOD = 'new ResourceTracker()'
const HOOK_KEYS = ['onBeforeGC', 'gcCallback']
const AT_EXIT_KEYS = ['reportAtExit', 'report_at_exit']
const MAX_TIMER_MS = 2 ** 31 - 1

/** Bytes of a Buffer, TypedArray, DataView, (Shared)ArrayBuffer, string or Blob; else 0. */
function sizeOf (resource) {
  if (resource === null || resource === undefined) return 0
  if (typeof resource === 'string') return Buffer.byteLength(resource)
  if (ArrayBuffer.isView(resource) || resource instanceof ArrayBuffer) return resource.byteLength
  if (typeof SharedArrayBuffer !== 'undefined' && resource instanceof SharedArrayBuffer) return resource.byteLength
  if (typeof Blob !== 'undefined' && resource instanceof Blob) return resource.size
  return 0
}

function canBeCollected (resource) {
  return (typeof resource === 'object' && resource !== null) || typeof resource === 'function'
}

/**
 * Trackers made with `reportAtExit: true` or switched to `debug({ verbose: true })` write their
 * leak report to stderr when the process exits, in the line Python and PHP write (the core
 * builds it).
 */
const exitTrackers = new Set()
let exitHookInstalled = false
function reportAtExit () {
  for (const ref of exitTrackers) {
    const t = ref.deref()
    if (t === undefined || t._disposed || !(t._reportAtExit || t._debug.verbose)) continue
    let line
    try {
      line = t._native.exitReportLine()
    } catch (e) {
      try {
        line = native.NativeResourceTracker.exitReportFailedLine(String(e && e.message))
      } catch {
        continue // nothing is thrown from the 'exit' listener
      }
    }
    process.stderr.write(line + '\n')
  }
}
function watchAtExit (tracker) {
  if (!tracker._exitRef) {
    tracker._exitRef = new WeakRef(tracker)
    exitTrackers.add(tracker._exitRef)
  }
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.on('exit', reportAtExit)
  }
}

/**
 * Streamflow's resource tracker. Emits, synchronously from the call that caused them,
 * `'memoryWarning'` and `'memoryCritical'` (`{ type, usage, threshold, detail }`) once per
 * crossing, and `'cleanup'` (`detail.released_ids`, `detail.freed_bytes`) from `cleanup()` and
 * every run of the schedule. The schedule's timer never keeps the process alive.
 */
class ResourceTracker extends EventEmitter {
  constructor (options) {
    super()
    if (options === undefined || options === null) options = {}
    if (typeof options !== 'object' || Array.isArray(options)) {
      throw new TypeError(`${METHOD}: 'options' must be an object, got ${describeType(options)}`)
    }
    const core = {}
    let interval = 30000
    let intervalKey = null
    this._beforeGC = []
    this._gcCallback = null
    this._reportAtExit = false
    this._exitRef = null
    let atExitKey = null
    for (const [key, value] of Object.entries(options)) {
      if (value === undefined) continue
      if (AT_EXIT_KEYS.includes(key)) {
        if (atExitKey !== null) throw new TypeError(`${METHOD}: '${atExitKey}' and '${key}' are the same option; give one`)
        atExitKey = key
        if (typeof value !== 'boolean') {
          throw new TypeError(`${METHOD}: '${key}' must be a boolean, got ${describeType(value)}`)
        }
        this._reportAtExit = value
        continue
      }
      if (HOOK_KEYS.includes(key) || key === 'on_before_gc' || key === 'gc_callback') {
        if (typeof value !== 'function') {
          throw new TypeError(`${METHOD}: '${key}' must be a function, got ${describeType(value)}`)
        }
        if (key === 'onBeforeGC' || key === 'on_before_gc') this._beforeGC.push(value)
        else this._gcCallback = value
      } else if (key === 'cleanupInterval' || key === 'cleanup_interval') {
        if (intervalKey !== null) throw new TypeError(`${METHOD}: '${intervalKey}' and '${key}' are the same option; give one`)
        intervalKey = key
        if (typeof value !== 'number') {
          throw new TypeError(`${METHOD}: '${key}' must be a number of milliseconds, got ${describeType(value)}`)
        }
        if (!Number.isFinite(value) || value < 0 || value > MAX_TIMER_MS) {
          throw new RangeError(`${METHOD}: '${key}' must be a number of milliseconds from 0 to ${MAX_TIMER_MS}, got ${value}`)
        }
        interval = value
      } else {
        core[key] = jsonSafe(value)
      }
    }
    // The schedule runs here, on the JS thread; the core starts no thread of its own.
    core.cleanupInterval = 0
    this._native = new native.NativeResourceTracker(core)
    this._autoCleanup = (core.enableAutoCleanup ?? core.enable_auto_cleanup) === true
    this._interval = interval
    this._tokens = new Map()
    this._disposed = false
    this._debug = { trackingEnabled: false, verbose: false }
    this._registry = new FinalizationRegistry((id) => this._collected(id))
    this._timer = null
    if (this._autoCleanup && interval > 0) {
      const ref = new WeakRef(this)
      const timer = setInterval(() => {
        const t = ref.deref()
        if (t === undefined) clearInterval(timer)
        else t._scheduled()
      }, interval)
      timer.unref()
      this._timer = timer
    }
    if (this._reportAtExit) watchAtExit(this)
  }

  /**
   * Tracks `resource` of `type` (default `'unknown'`); its size is `metadata.size`, else the
   * byte length of a Buffer / ArrayBuffer / TypedArray / string. Objects collected without a
   * release are released and counted as leaked. Returns the id (0 when tracking is disabled).
   */
  trackResource (resource, type, metadata) {
    if (type === undefined || type === null) type = 'unknown'
    if (typeof type !== 'string') {
      throw new TypeError(`trackResource(): 'type' must be a string, got ${describeType(type)}`)
    }
    let text
    let size = sizeOf(resource)
    if (metadata !== undefined && metadata !== null) {
      if (typeof metadata !== 'object' || Array.isArray(metadata)) {
        throw new TypeError(`trackResource(): 'metadata' must be an object, got ${describeType(metadata)}`)
      }
      try {
        text = JSON.stringify(metadata)
      } catch (e) {
        throw new TypeError(`trackResource(): 'metadata' cannot be serialised as JSON: ${e.message}`)
      }
      if (metadata.size !== undefined) {
        if (typeof metadata.size !== 'number') {
          throw new TypeError(`trackResource(): 'metadata.size' must be a number of bytes, got ${describeType(metadata.size)}`)
        }
        if (!Number.isFinite(metadata.size) || metadata.size < 0) {
          throw new RangeError(`trackResource(): 'metadata.size' must be a number of bytes >= 0, got ${metadata.size}`)
        }
        size = metadata.size
      }
    }
    const id = this._native.trackResource(type, size, text)
    if (id !== 0 && canBeCollected(resource)) {
      const token = {}
      this._registry.register(resource, id, token)
      this._tokens.set(id, token)
    }
    if (this._debug.trackingEnabled) this._log('track', id, { type, size, metadata: this._debug.verbose ? metadata : undefined })
    this._emitEvents()
    return id
  }

  /** Releases a resource and returns its `ResourceStats`; an unknown or released id throws (MW_NOT_FOUND). */
  releaseResource (id) {
    const stats = this._native.releaseResource(this._id('releaseResource', id))
    this._forget(id)
    if (this._debug.trackingEnabled) this._log('release', id, stats)
    this._emitEvents()
    return stats
  }

  /** `{ type, size, createdAt, metadata }` of a tracked resource, or `undefined`. */
  getResource (id) {
    return this._native.getResource(this._id('getResource', id)) ?? undefined
  }

  /** `totalAllocated`, `activeResources`, `peakMemoryUsage`, `byType`, `leaks`, ... */
  getMemoryStats () {
    return this._native.getMemoryStats()
  }

  /** Per type: `live`, `released`, `collected_unreleased` (leaked), `cleaned_up`. */
  leakReport () {
    return this._native.leakReport()
  }

  /** Adds a hook that runs before every cleanup (manual or scheduled). */
  onBeforeGC (hook) {
    if (typeof hook !== 'function') {
      throw new TypeError(`onBeforeGC(): 'hook' must be a function, got ${describeType(hook)}`)
    }
    this._beforeGC.push(hook)
    return this
  }

  /**
   * Runs the `onBeforeGC` hooks, then, with `enableAutoCleanup`, releases the oldest resources
   * until usage is below the warning threshold, then `gcCallback`. Returns `{ releasedIds, freedBytes }`.
   * A hook that throws stops the cleanup and the error propagates.
   */
  cleanup () {
    return this._cleanup(false)
  }

  _cleanup (scheduled) {
    if (this._disposed) return this._native.cleanup() // throws MW_CLOSED
    for (const hook of this._beforeGC) hook()
    const r = scheduled ? this._native.scheduledCleanup() : this._native.cleanup()
    for (const id of r.releasedIds) this._forget(id)
    if (this._debug.trackingEnabled) this._log('cleanup', null, r)
    this._emitEvents()
    if (this._gcCallback !== null) this._gcCallback()
    return r
  }

  _scheduled () {
    try {
      this._cleanup(true)
    } catch (e) {
      if (this.listenerCount('error') > 0) this.emit('error', e)
      else console.error('memwarden ResourceTracker: scheduled cleanup failed:', e)
    }
  }

  /**
   * `{ trackingEnabled, verbose }`: with `trackingEnabled`, every track, release, collection,
   * cleanup and event is logged with `console.debug`; `verbose` adds metadata and the
   * statistics, and prints the leak report when the process exits. Returns the statistics.
   */
  debug (options = {}) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw new TypeError(`debug(): 'options' must be an object, got ${describeType(options)}`)
    }
    for (const k of Object.keys(options)) {
      if (k !== 'trackingEnabled' && k !== 'verbose') {
        throw new TypeError(`debug(): unknown option '${k}'; expected 'trackingEnabled' or 'verbose'`)
      }
      if (typeof options[k] !== 'boolean') {
        throw new TypeError(`debug(): '${k}' must be a boolean, got ${describeType(options[k])}`)
      }
    }
    this._debug = {
      trackingEnabled: options.trackingEnabled ?? this._debug.trackingEnabled,
      verbose: options.verbose ?? this._debug.verbose
    }
    if (this._debug.verbose) watchAtExit(this)
    else if (!this._reportAtExit && this._exitRef) {
      exitTrackers.delete(this._exitRef)
      this._exitRef = null
    }
    return this.getMemoryStats()
  }

  /** Stops the schedule and forgets every resource; returns the final leak report. Idempotent. */
  dispose () {
    if (this._timer !== null) {
      clearInterval(this._timer)
      this._timer = null
    }
    for (const token of this._tokens.values()) this._registry.unregister(token)
    this._tokens.clear()
    this._disposed = true
    if (this._exitRef) exitTrackers.delete(this._exitRef)
    return this._native.dispose()
  }

  get disposed () {
    return this._disposed
  }

  _id (method, id) {
    if (typeof id !== 'number') {
      throw new TypeError(`${method}(): 'id' must be a number (the id trackResource returned), got ${describeType(id)}`)
    }
    return id
  }

  _forget (id) {
    const token = this._tokens.get(id)
    if (token !== undefined) {
      this._registry.unregister(token)
      this._tokens.delete(id)
    }
  }

  /** FinalizationRegistry: the object was collected without a release. */
  _collected (id) {
    if (this._disposed || !this._tokens.delete(id)) return
    let stats
    try {
      stats = this._native.markCollected(id)
    } catch {
      return // released in between
    }
    if (this._debug.trackingEnabled) this._log('collected unreleased (leak)', id, stats)
    this._emitEvents()
  }

  _emitEvents () {
    const events = this._native.pollEvents()
    for (const e of events) {
      if (this._debug.trackingEnabled) this._log(`event ${e.type}`, null, e)
      this.emit(e.type, e)
    }
  }

  _log (what, id, detail) {
    const parts = [`memwarden ResourceTracker: ${what}${id === null ? '' : ` #${id}`}`]
    if (this._debug.verbose) {
      parts.push(JSON.stringify(detail ?? null))
      parts.push(JSON.stringify(this.getMemoryStats()))
    }
    console.debug(parts.join(' '))
  }
}

module.exports = { ResourceTracker }
