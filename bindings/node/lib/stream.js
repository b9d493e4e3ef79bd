'use strict'
const { describeType } = require('./util.js')

// StreamProcessor: Streamflow's chunked uploads on the core's admit/finish driver. The core
// decides when a chunk may be read (at most `concurrentStreams` in flight, and the chunk tracker
// kept at or below its warning threshold); this file only runs the async loop: it reads a chunk
// only once admitted, so a file or a Readable is never read ahead of what may be in memory.

const { EventEmitter } = require('node:events')
const fs = require('node:fs')
const { performance } = require('node:perf_hooks')
const native = require('../index.js')
const { ResourceTracker } = require('./tracker.js')

// Keys handled here and never sent to the core.
const BINDING_KEYS = ['performanceCallback', 'performance_callback', 'tracker']

/** Reads up to `n` bytes from a Readable, exactly `n` unless the stream ends; null at the end. */
class StreamSource {
  constructor (readable) {
    this.readable = readable
    this.pieces = []
    this.buffered = 0
    this.ended = false
    this.error = null
    this.wake = null
    const notify = () => { if (this.wake) { const w = this.wake; this.wake = null; w() } }
    readable.on('end', () => { this.ended = true; notify() })
    readable.on('close', () => { this.ended = true; notify() })
    readable.on('error', (e) => { this.error = e; notify() })
    readable.on('readable', notify)
    readable.pause()
  }

  async read (n) {
    for (;;) {
      if (this.error) throw this.error
      let piece
      // read() pulls only what was asked for; between chunks nothing is read, the Readable stays paused.
      while (this.buffered < n && (piece = this.readable.read()) !== null) {
        const buf = typeof piece === 'string' ? Buffer.from(piece) : piece
        if (!Buffer.isBuffer(buf) && !(buf instanceof Uint8Array)) {
          throw new TypeError(`processStream(): the stream gave ${describeType(piece)}, expected Buffer or string chunks`)
        }
        this.pieces.push(Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength))
        this.buffered += buf.length
      }
      if (this.buffered >= n || (this.ended && this.buffered > 0)) {
        const all = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces, this.buffered)
        const out = all.subarray(0, Math.min(n, all.length))
        const rest = all.subarray(out.length)
        this.pieces = rest.length ? [rest] : []
        this.buffered = rest.length
        return out
      }
      // A destroyed stream emits 'error' (if any) before 'close': wait for 'close' to know which.
      const errored = this.readable.errored
      if (errored) throw errored
      if (this.ended || this.readable.readableEnded) return null
      await new Promise((resolve) => { this.wake = resolve })
    }
  }
}

/** Reads a file chunk by chunk at the position of the chunk, into a fresh buffer each time. */
class FileSource {
  constructor (handle) {
    this.handle = handle
    this.position = 0
  }

  async read (n) {
    const buf = Buffer.allocUnsafe(n)
    let got = 0
    while (got < n) {
      const { bytesRead } = await this.handle.read(buf, got, n - got, this.position + got)
      if (bytesRead === 0) break
      got += bytesRead
    }
    this.position += got
    return got === 0 ? null : (got === n ? buf : buf.subarray(0, got))
  }
}

/**
 * Reads a file or a Readable in chunks of `chunkSize` and runs an async handler on each, at
 * most `concurrentStreams` at once, with backpressure from the chunk tracker. Emits
 * `performance` (per chunk and a final summary with `final: true`), `memoryWarning` and
 * `memoryCritical`. With `tracker` (a ResourceTracker of yours) the chunks are tracked there:
 * its statistics show them, its thresholds give the backpressure, and its listeners get the
 * events that admitting a chunk causes (so do this processor's).
 */
class StreamProcessor extends EventEmitter {
  constructor (options) {
    super()
    if (options !== undefined && options !== null && (typeof options !== 'object' || Array.isArray(options))) {
      throw new TypeError(`new StreamProcessor(): 'options' must be an object, got ${describeType(options)}`)
    }
    const core = {}
    this._tracker = null
    for (const [key, value] of Object.entries(options || {})) {
      if (key === 'tracker') {
        if (value === undefined || value === null) continue
        if (!(value instanceof ResourceTracker)) {
          throw new TypeError(`new StreamProcessor(): 'tracker' must be a ResourceTracker, got ${describeType(value)}`)
        }
        this._tracker = value
      } else if (BINDING_KEYS.includes(key)) {
        if (value === undefined || value === null) continue
        if (typeof value !== 'function') {
          throw new TypeError(`new StreamProcessor(): '${key}' must be a function, got ${describeType(value)}`)
        }
        this.on('performance', value)
      } else {
        core[key] = value
      }
    }
    this._native = this._tracker === null
      ? new native.NativeStreamProcessor(core)
      : new native.NativeStreamProcessor(core, this._tracker._native)
    this._running = false
  }

  get chunkSize () { return this._native.chunkSize }
  get concurrentStreams () { return this._native.concurrentStreams }
  get compressionEnabled () { return this._native.compressionEnabled }
  /** The ResourceTracker given as `tracker`, or null when the processor has its own. */
  get tracker () { return this._tracker }

  /** Config, the last run's counters and `tracker` statistics. */
  getStats () { return this._native.stats() }
  stats () { return this._native.stats() }

  /** Gzip of `data`, as chunks are compressed with `compressionEnabled` (a Promise). */
  compress (data) { return this._native.compress(data) }

  /** Processes the file at `path`; resolves to the summary. */
  async processFile (path, handler) {
    checkHandler('processFile', handler)
    // The run is claimed before the file is opened: two calls whose opens finish in the other
    // order must still see the first call's run.
    this._claim()
    try {
      const handle = await fs.promises.open(path, 'r')
      try {
        return await this._run(new FileSource(handle), handler)
      } finally {
        await handle.close()
      }
    } finally {
      this._running = false
    }
  }

  /** Processes a Readable (Buffer or string chunks, re-cut into `chunkSize`); resolves to the summary. */
  async processStream (readable, handler) {
    checkHandler('processStream', handler)
    if (!readable || typeof readable.read !== 'function' || typeof readable.on !== 'function') {
      throw new TypeError(`processStream(): 'readable' must be a stream.Readable, got ${describeType(readable)}`)
    }
    this._claim()
    try {
      return await this._run(new StreamSource(readable), handler)
    } finally {
      this._running = false
    }
  }

  /** One run at a time per processor: checked and taken synchronously, at the call. */
  _claim () {
    if (this._running) throw new Error('StreamProcessor: a run is already in progress on this processor')
    this._running = true
  }

  _emitEvents () {
    for (const ev of this._native.pollEvents()) this.emit(ev.type, ev)
    // The caller's tracker emits what admitting chunks caused, as its own calls do.
    if (this._tracker !== null && !this._tracker.disposed) this._tracker._emitEvents()
  }

  /** A claimed run (see `_claim`). */
  async _run (source, handler) {
    const n = this._native
    n.begin()
    const chunkSize = n.chunkSize
    const compress = n.compressionEnabled
    const inFlight = new Set()
    let failure = null
    let wake = null
    const slotFreed = () => new Promise((resolve) => { wake = resolve })
    const freed = () => { if (wake) { const w = wake; wake = null; w() } }

    while (failure === null) {
      const ticket = n.admit(chunkSize)
      if (ticket === null) {
        // Backpressure: nothing is read until a chunk in flight finishes.
        await slotFreed()
        continue
      }
      let buf
      try {
        buf = await source.read(chunkSize)
      } catch (e) {
        n.cancel(ticket.index, true)
        failure = { error: e }
        break
      }
      if (buf === null) {
        n.cancel(ticket.index, false)
        break
      }
      if (failure !== null) {
        n.cancel(ticket.index, true)
        break
      }
      const task = (async () => {
        const start = performance.now()
        try {
          const data = compress ? await n.compress(buf) : buf
          await handler(data, { index: ticket.index, offset: ticket.offset, size: buf.length })
          n.finish(ticket.index, buf.length, compress ? data.length : 0, performance.now() - start)
        } catch (e) {
          n.cancel(ticket.index, true)
          if (failure === null) failure = { error: e, chunk: { index: ticket.index, offset: ticket.offset, size: buf.length } }
        }
        this._emitEvents()
      })()
      inFlight.add(task)
      task.finally(() => { inFlight.delete(task); freed() })
      this._emitEvents()
    }
    await Promise.all(inFlight)
    const summary = n.end()
    this._emitEvents()
    if (failure !== null) {
      const e = failure.error
      if (failure.chunk && e !== null && typeof e === 'object') {
        try { e.chunk = failure.chunk } catch (_) { /* frozen error object: nothing to add */ }
      }
      throw e
    }
    return summary
  }
}

function checkHandler (method, handler) {
  if (typeof handler !== 'function') {
    throw new TypeError(`${method}(): 'handler' must be a function, got ${describeType(handler)}`)
  }
}

module.exports = { StreamProcessor }
