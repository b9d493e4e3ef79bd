'use strict'
const { describeType } = require('./util.js')

// memoryTracking(options): the seed's MemoryTrackingMiddleware as an Express/Connect
// `(req, res, next)` function, and `wrap(handler)` for a plain `http.createServer` handler.
// Measurement, sampling, the high-usage decision, per-route analytics, logging and header
// values are the core's (core::request); this file hooks them into Node's response life cycle:
// begin when the request enters, headers when the head is written, end on 'close' (right after
// 'finish', or alone for an aborted response).

const http = require('node:http')
const native = require('../index.js')

// Per response, as two symbol-keyed properties (a fixed shape, no object or closure per
// request): the request's handle, 0 once it ended, and the Tracking that sets its headers,
// undefined once they are set.
const kHandle = Symbol('memwarden.requestHandle')
const kTracking = Symbol('memwarden.tracking')
/**
 * The same facts for responses whose prototype is not Node's own (Express sets its own with
 * Object.setPrototypeOf), as a WeakMap entry { handle, tracking }. V8 caches no map
 * transition for a property added to such an object, so every Express response has a map of
 * its own: a property added to it cost a new map (~94,000 instructions per request, counted
 * under callgrind), and every property read of it misses V8's caches and runs a full lookup
 * (~1,000-2,500 instructions each). So for these responses nothing is added to the response,
 * and no property of the response is read that the entry can answer (`res.writeHead`,
 * `res.headersSent`, the two symbols), nor `res.on` (Node's, read off its prototype). The entry
 * holds nothing that leads back to the response (not even `req`): a scavenge keeps a WeakMap's
 * values alive, and one that reached the response kept every finished request alive into the
 * old generation (counted: +60,000 instructions per request of collector work).
 */
const STATE = new WeakMap()
const PLAIN_RESPONSE = http.ServerResponse.prototype

/**
 * The headers are set when the head is written. One hook on `http.ServerResponse.prototype`
 * (installed once, by the first middleware with headers; it wraps whatever `writeHead` was
 * there) serves every response that inherits it, Express's included: a hook assigned to each
 * response gives every response its own shape and costs a hello-world server ~3x what setting
 * the four headers costs (counted under callgrind). Responses that do not inherit it (other
 * response classes, test doubles) get a hook of their own. Untracked responses pay one
 * property read.
 */
let hookedWriteHead = null

function installWriteHeadHook () {
  if (hookedWriteHead !== null) return
  const proto = http.ServerResponse.prototype
  const original = proto.writeHead
  hookedWriteHead = function writeHead (statusCode, reason, headers) {
    // The last argument, not `arguments` itself: handing that over would make V8 build it.
    if (Object.getPrototypeOf(this) === PLAIN_RESPONSE) {
      const tracking = this[kTracking]
      if (tracking !== undefined) {
        this[kTracking] = undefined
        const handle = this[kHandle]
        if (handle !== 0 && !this.headersSent) tracking.setHeaders(this, handle, arguments.length > 0 ? arguments[arguments.length - 1] : undefined)
      }
    } else {
      const state = STATE.get(this)
      if (state !== undefined && state.tracking !== undefined) {
        const t = state.tracking
        state.tracking = undefined
        // No headersSent read (see STATE): a head written without this hook makes setHeader
        // throw, which setHeaders catches.
        if (state.handle !== 0) t.setHeaders(this, state.handle, arguments.length > 0 ? arguments[arguments.length - 1] : undefined)
      }
    }
    return original.apply(this, arguments)
  }
  proto.writeHead = hookedWriteHead
}

const MIB = 1048576

/** The seed's options (camelCase) and the core's keys; the snake_case spelling is accepted too. */
const OPTION_KEYS = Object.freeze({
  enabled: 'enabled',
  trackPeak: 'track_peak',
  logHighUsage: 'log_high_usage',
  thresholdMb: 'threshold_mb',
  detailedTracking: 'detailed_tracking',
  trackAllocations: 'track_allocations',
  trackDeallocations: 'track_deallocations',
  includeStackTraces: 'include_stack_traces',
  includeHeaders: 'include_headers',
  logFile: 'log_file',
  sampleRate: 'sample_rate',
  randomSeed: 'random_seed',
  maxRoutes: 'max_routes',
  memoryLimit: 'memory_limit',
  samplerIntervalMs: 'sampler_interval_ms'
})
const DETAILED_KEYS = Object.freeze({
  enabled: 'enabled',
  trackAllocations: 'track_allocations',
  trackDeallocations: 'track_deallocations',
  includeStackTraces: 'include_stack_traces'
})
const CORE_KEYS = new Set(Object.values(OPTION_KEYS))
const UNMATCHED = 'unmatched'
const HEADER_NAMES = Object.freeze({
  'X-Memory-Usage': 'X-Memory-Usage',
  'X-Memory-Peak': 'X-Memory-Peak',
  'X-Memory-Limit': 'X-Memory-Limit',
  'X-Memory-Efficiency': 'X-Memory-Efficiency'
})
const METHOD = 'memoryTracking()'

/** NaN / Infinity have no JSON form: their text goes to the core, whose message names them. */
function jsonSafe (v) {
  return typeof v === 'number' && !Number.isFinite(v) ? String(v) : v
}

function describeError (e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`
  try {
    return `thrown: ${String(e)}`
  } catch {
    return 'a non-Error value was thrown'
  }
}

/**
 * Splits the options into the core's JSON config and this layer's `routeTemplate`; remembers
 * which spelling the user wrote for each core key, so errors name the key as written.
 */
function readOptions (options) {
  if (options === undefined || options === null) options = {}
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${METHOD}: 'options' must be an object, got ${describeType(options)}`)
  }
  const core = {}
  const written = {}
  let routeTemplate = null
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue
    if (key === 'routeTemplate' || key === 'route_template') {
      if (routeTemplate !== null) throw new TypeError(`${METHOD}: 'routeTemplate' and 'route_template' are the same option; give one`)
      if (typeof value !== 'function') {
        throw new TypeError(`${METHOD}: '${key}' must be a function (req) => string, got ${describeType(value)}`)
      }
      routeTemplate = value
      continue
    }
    const coreKey = OPTION_KEYS[key] || key
    if (written[coreKey] !== undefined) {
      throw new TypeError(`${METHOD}: '${written[coreKey]}' and '${key}' are the same option; give one`)
    }
    written[coreKey] = key
    if (coreKey === 'detailed_tracking' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const d = {}
      for (const [k, x] of Object.entries(value)) {
        if (x !== undefined) d[DETAILED_KEYS[k] || k] = jsonSafe(x)
      }
      core[coreKey] = d
    } else {
      core[coreKey] = jsonSafe(value)
    }
  }
  return { core, written, routeTemplate, options }
}

/**
 * The core's config error as a RangeError (a number out of range) or a TypeError (anything
 * else), naming the key as the user wrote it; `code` stays the core's `MW_INVALID_CONFIG`.
 */
function configError (e, written, options) {
  if (!e || e.code !== 'MW_INVALID_CONFIG') return e
  let message = e.message.replace(/^MemoryTrackingMiddleware( detailed_tracking)? config: /, `${METHOD}: `)
  for (const [coreKey, key] of Object.entries(written)) {
    message = message.split(`'${coreKey}'`).join(`'${key}'`)
  }
  // Suggestions in the core's spelling become camelCase when the user writes camelCase.
  if (Object.keys(options).some((k) => /[A-Z]/.test(k))) {
    for (const [camel, coreKey] of Object.entries(OPTION_KEYS)) {
      message = message.split(`did you mean '${coreKey}'`).join(`did you mean '${camel}'`)
    }
  }
  const named = /invalid value for '([^']+)'/.exec(message)
  const value = named ? lookup(options, named[1]) : undefined
  const Ctor = typeof value === 'number' && /expected a (whole )?number/.test(message) ? RangeError : TypeError
  const err = new Ctor(message)
  err.code = e.code
  return err
}

function lookup (options, key) {
  if (key in options) return options[key]
  for (const k of ['detailedTracking', 'detailed_tracking']) {
    const d = options[k]
    if (d && typeof d === 'object' && key in d) return d[key]
  }
  return undefined
}

class Tracking {
  constructor (options) {
    const { core, written, routeTemplate, options: given } = readOptions(options)
    try {
      this.native = new native.NativeRequestTracker(core)
    } catch (e) {
      throw configError(e, written, given)
    }
    // The per-request calls as plain functions: cheaper than the class's methods.
    const fast = this.native.fastPaths()
    this.begin = fast.begin
    this.headers = fast.headers
    this.finishFast = fast.finish
    this.enabled = core.enabled !== false
    this.includeHeaders = core.include_headers !== false
    this.routeTemplate = routeTemplate
    this.highUsageHandler = null
    this.analyticsHandler = null
    this.lastPairs = []
    this.lastRoute = null
    this.lastExpress = { route: null, method: null, base: null, template: UNMATCHED }
    if (this.includeHeaders && this.enabled) installWriteHeadHook()
    const tracking = this
    // The 'close' listeners shared by every response of this middleware (`this` is the
    // response; Node sets `res.req`): one per kind of response, so neither asks which kind
    // it has (Object.getPrototypeOf of a response runs in V8's runtime, ~100 instructions).
    this.onClose = function memwardenClose () {
      const handle = this[kHandle]
      if (handle === undefined || handle === 0) return
      this[kHandle] = 0
      tracking.finish(this.req, this, handle)
    }
    this.onCloseState = function memwardenCloseState () {
      const state = STATE.get(this)
      if (state === undefined || state.handle === 0) return
      const handle = state.handle
      state.handle = 0
      tracking.finish(this.req, this, handle)
    }
  }

  /**
   * Starts measuring `req`; sets the headers when the head is written; ends on 'close', which
   * a response emits once, right after 'finish' when it was handed over and alone when the
   * client went away (one listener: a second 'finish' listener would turn Node's own into an
   * array that every emit copies).
   */
  track (req, res) {
    if (!this.enabled) return
    const handle = this.begin()
    if (handle === 0) return
    if (Object.getPrototypeOf(res) === PLAIN_RESPONSE) {
      if (res.req === req && res[kHandle] === undefined && (!this.includeHeaders || res.writeHead === hookedWriteHead)) {
        // Node's own response, tracked by no other middleware yet: the shared hook and
        // listener, the handle and this tracking on the response.
        res[kHandle] = handle
        res[kTracking] = this.includeHeaders ? this : undefined
        res.on('close', this.onClose)
        return
      }
    } else if (PLAIN_RESPONSE.isPrototypeOf(res) && (!this.includeHeaders || PLAIN_RESPONSE.writeHead === hookedWriteHead) && !STATE.has(res)) {
      // A response that inherits from Node's (Express's), tracked by no other middleware yet:
      // the shared hook and listener, the facts in STATE. Node's constructor set `res.req`,
      // which the listener reads. The hook runs behind whatever own writeHead wrappers sit in
      // front of it, as every head goes through the prototype's.
      STATE.set(res, { handle, tracking: this.includeHeaders ? this : undefined })
      // Node's `on` read off its prototype, a cache hit, rather than off the response.
      PLAIN_RESPONSE.on.call(res, 'close', this.onCloseState)
      return
    }
    const tracking = this
    if (this.includeHeaders) {
      const writeHead = res.writeHead
      res.writeHead = function memwardenWriteHead (statusCode, reason, headers) {
        res.writeHead = writeHead
        if (!res.headersSent) tracking.setHeaders(res, handle, arguments.length > 0 ? arguments[arguments.length - 1] : undefined)
        return writeHead.apply(this, arguments)
      }
    }
    res.on('close', () => tracking.finish(req, res, handle))
  }

  /** `last`: writeHead's last argument, which takes ours when it is a raw header array. */
  setHeaders (res, handle, last) {
    let h
    try {
      h = this.headers(handle)
    } catch (e) {
      // A failed reading never breaks the response.
      this.native.handlerFailed(UNMATCHED, `reading memory for the headers failed: ${describeError(e)}`)
      return
    }
    // `true`: the same block as the last answer, whose [name, value, ...] split is kept (the
    // figures change at most once per reading, so most requests take this path).
    if (h === '') return // an unknown handle: the cache stays the last block's
    if (h !== true) {
      const pairs = []
      for (const line of h.split('\n')) {
        const colon = line.indexOf(': ')
        if (colon > 0) {
          const name = line.slice(0, colon)
          // The core's names as literals: a slice of the block would be a sliced string
          // that Node's setHeader flattens for every response.
          pairs.push(HEADER_NAMES[name] || name, line.slice(colon + 2))
        }
      }
      this.lastPairs = pairs
    }
    const pairs = this.lastPairs
    // writeHead(status, [reason], headers): raw header arrays take ours appended.
    if (Array.isArray(last)) {
      for (let i = 0; i < pairs.length; i++) last.push(pairs[i])
    } else {
      try {
        for (let i = 0; i < pairs.length; i += 2) res.setHeader(pairs[i], pairs[i + 1])
      } catch (e) {
        // The head was already written (ERR_HTTP_HEADERS_SENT): the writeHead that follows
        // throws Node's own error for it; ours adds nothing.
        if (!e || e.code !== 'ERR_HTTP_HEADERS_SENT') throw e
      }
    }
  }

  /**
   * The route template: `routeTemplate(req)`, else Express's matched route's path below its
   * router's mount path ('GET /users/:id'), else 'unmatched'. The last template is kept, so the
   * same route gives the same string, which `finish` compares by identity.
   */
  route (req) {
    if (this.routeTemplate === null) {
      const route = req.route
      if (!route || typeof route.path !== 'string') return UNMATCHED
      const method = req.method
      const base = req.baseUrl || ''
      const last = this.lastExpress
      if (last.route === route && last.method === method && last.base === base) return last.template
      const template = `${method} ${base}${route.path}`
      this.lastExpress = { route, method, base, template }
      return template
    }
    try {
      const r = this.routeTemplate(req)
      if (typeof r === 'string' && r.length > 0) return r
      this.native.handlerFailed(UNMATCHED, `routeTemplate returned ${describeType(r)}, not a non-empty string`)
    } catch (e) {
      this.native.handlerFailed(UNMATCHED, `routeTemplate threw: ${describeError(e)}`)
    }
    return UNMATCHED
  }

  /** On 'close'; aborted: not finished (read here, only when a handler wants it). */
  finish (req, res, handle) {
    const route = this.route(req)
    let report
    try {
      if (this.highUsageHandler === null && this.analyticsHandler === null) {
        // Nobody wants the report: none is built; the route is handed over only when it
        // differs from the last one (routes repeat: reading the same string costs more than
        // the comparison).
        if (route === this.lastRoute) {
          this.finishFast(handle)
        } else {
          this.lastRoute = null
          this.finishFast(handle, route)
          this.lastRoute = route
        }
        return
      }
      report = this.native.end(handle, route)
    } catch (e) {
      this.lastRoute = null // hand the route over again next time
      this.native.handlerFailed(route, `reading memory at the end of the request failed: ${describeError(e)}`)
      return
    }
    if (report === null) return
    if (report.highUsage && this.highUsageHandler !== null) {
      this.call('high-usage handler', route, this.highUsageHandler, (report.peakBytes - report.startBytes) / MIB, req, report)
    }
    if (this.analyticsHandler !== null) {
      this.call('analytics handler', route, this.analyticsHandler, analyticsOf(report, req, res, !res.writableFinished), req)
    }
  }

  /** Calls a user handler; what it throws (or its Promise rejects with) is logged by the core. */
  call (what, route, fn, a, b, c) {
    let r
    try {
      r = fn(a, b, c)
    } catch (e) {
      this.native.handlerFailed(route, `${what} threw: ${describeError(e)}`)
      return
    }
    if (r !== null && typeof r === 'object' && typeof r.then === 'function') {
      r.then(undefined, (e) => this.native.handlerFailed(route, `${what} rejected: ${describeError(e)}`))
    }
  }
}

/** What the analytics handler gets for one request. */
function analyticsOf (report, req, res, aborted) {
  return {
    route: report.route,
    method: req.method,
    statusCode: res.statusCode,
    aborted,
    usageMb: report.endBytes / MIB,
    peakMb: report.peakBytes / MIB,
    startMb: report.startBytes / MIB,
    deltaMb: report.deltaBytes / MIB,
    durationMs: report.durationMs,
    overlapped: report.overlapped,
    highUsage: report.highUsage,
    report
  }
}

/** The methods shared by the middleware and the wrapped handler. */
function decorate (fn, tracking) {
  fn.setHighUsageHandler = (handler) => {
    if (handler !== null && typeof handler !== 'function') {
      throw new TypeError(`setHighUsageHandler(): 'handler' must be a function or null, got ${describeType(handler)}`)
    }
    tracking.highUsageHandler = handler
    return fn
  }
  fn.setAnalyticsHandler = (handler) => {
    if (handler !== null && typeof handler !== 'function') {
      throw new TypeError(`setAnalyticsHandler(): 'handler' must be a function or null, got ${describeType(handler)}`)
    }
    tracking.analyticsHandler = handler
    return fn
  }
  fn.analytics = () => tracking.native.analytics()
  Object.defineProperty(fn, 'inFlight', { get: () => tracking.native.inFlight })
  return fn
}

function wrapWith (tracking, handler, method) {
  if (typeof handler !== 'function') {
    throw new TypeError(`${method}: 'handler' must be a function (req, res), got ${describeType(handler)}`)
  }
  return decorate(function memwardenTracked (req, res) {
    tracking.track(req, res)
    return handler.apply(this, arguments)
  }, tracking)
}

/**
 * The seed's MemoryTrackingMiddleware for Express/Connect: `app.use(memoryTracking({...}))`.
 * Returns `(req, res, next)` with `setHighUsageHandler(fn)`, `setAnalyticsHandler(fn)`,
 * `analytics()` and `wrap(handler)` (the same tracking for a plain `http` handler).
 */
function memoryTracking (options) {
  const tracking = new Tracking(options)
  const middleware = decorate(function memwardenMiddleware (req, res, next) {
    tracking.track(req, res)
    next()
  }, tracking)
  middleware.wrap = (handler) => wrapWith(tracking, handler, 'wrap()')
  middleware.wrapHandler = middleware.wrap
  return middleware
}

/** `http.createServer(memoryTracking.wrap(handler, options))`. */
memoryTracking.wrap = function wrap (handler, options) {
  return wrapWith(new Tracking(options), handler, 'memoryTracking.wrap()')
}
memoryTracking.wrapHandler = memoryTracking.wrap

module.exports = { memoryTracking }
