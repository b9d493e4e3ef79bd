// Hand-written typings for the idiomatic layer (lib/index.js). The native classes they wrap
// are typed in the generated ../index.d.ts (NativeMemoryManager, NativeMemoryPool); keep
// them consistent.

import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { CleanupHookInfo, MemoryLimit } from '../index'

export type { CleanupHookInfo, MemoryLimit }

export type MemoryState = 'normal' | 'warning' | 'critical' | 'emergency'
export type CleanupLevel = 'normal' | 'emergency'
export type LimitOrigin = 'explicit' | 'host' | 'cgroup_v2' | 'cgroup_v1' | 'physical'
export type Source = 'process' | 'host' | 'v8-heap'

/** `code` is `'MW_' + kind`. */
export type MemwardenErrorCode =
  | 'MW_INVALID_ARGUMENT'
  | 'MW_INVALID_CONFIG'
  | 'MW_TIMEOUT'
  | 'MW_EXHAUSTED'
  | 'MW_CYCLE'
  | 'MW_NOT_FOUND'
  | 'MW_IO'
  | 'MW_DATABASE'
  | 'MW_CALLBACK'
  | 'MW_CLOSED'
  | 'MW_UNSUPPORTED'

export class MemwardenError extends Error {
  constructor(message: string, code: MemwardenErrorCode)
  readonly code: MemwardenErrorCode
}

export interface MemoryUsage {
  current_bytes: number
  peak_bytes: number
  limit_bytes: number
  /** 0–100. */
  usage_percent: number
  /** MiB (1,048,576 bytes), unrounded. */
  current_mb: number
  peak_mb: number
  limit_mb: number
  limit_origin: LimitOrigin
  source: Source
}

export interface HookRun {
  name: string
  ok: boolean
  error: string | null
  duration_ms: number
}

export interface GcReport {
  trigger: 'manual' | 'auto' | 'probability' | 'emergency' | 'emergency_manual'
  level: CleanupLevel
  before_bytes: number
  after_bytes: number
  freed_bytes: number
  freed_mb: number
  duration_ms: number
  hooks: HookRun[]
  malloc_trim: boolean
}

export interface DetailedStats {
  usage: MemoryUsage
  state: MemoryState
  source: Source
  limit: { bytes: number; mb: number; formatted: string; origin: LimitOrigin }
  thresholds: {
    warning_threshold: number
    critical_threshold: number
    emergency_threshold: number
    auto_gc_threshold: number
    gc_probability: number
    hysteresis: number
  }
  psi: Record<string, any> | null
  checks: number
  state_changes: number
  cleanup_runs: number
  last_cleanup: GcReport | null
  cleanup_hooks: CleanupHookInfo[]
  enable_detailed_tracking: boolean
  history: Array<{ elapsed_seconds: number; current_bytes: number }> | null
  growth_rate: { mb_per_min: number; r_squared: number } | null
  [key: string]: any
}

export interface MemoryManagerConfig {
  /** Fractions of the limit; defaults 0.75 / 0.9 / 0.95. */
  warning_threshold?: number
  critical_threshold?: number
  emergency_threshold?: number
  /** Collect when usage crosses this fraction (default 0.8). */
  auto_gc_threshold?: number
  /** Chance of a collection per check while above auto_gc_threshold (default 0.1). */
  gc_probability?: number
  enable_detailed_tracking?: boolean
  /** `'512M'`, bytes, or -1 for no explicit limit. */
  memory_limit?: string | number
  /** Default `'process'`. */
  source?: Source
  /** Margin below a threshold before a state is left downward (default 0.02). */
  hysteresis?: number
  random_seed?: number
  /** After-GC callback; receives the report. */
  gcCallback?: (report: GcReport) => void
  onStateChange?: (oldState: MemoryState, newState: MemoryState) => void
  /** Register `global.gc` (when exposed) as cleanup hook `'v8-gc'`, priority -1000. Default true. */
  hostGc?: boolean
}

export interface MemoryEvent {
  state: MemoryState
  previous: MemoryState
  /** usage_percent (0–100) when the state was entered. */
  usage: number
  /** The configured threshold of `state`, a fraction of the limit. */
  threshold: number
}

export interface MemoryManagerEvents {
  stateChange: [oldState: MemoryState, newState: MemoryState]
  memoryWarning: [event: MemoryEvent]
  memoryCritical: [event: MemoryEvent]
  memoryEmergency: [event: MemoryEvent]
}

export class MemoryManager extends EventEmitter {
  static readonly STATE_NORMAL: 'normal'
  static readonly STATE_WARNING: 'warning'
  static readonly STATE_CRITICAL: 'critical'
  static readonly STATE_EMERGENCY: 'emergency'

  constructor(config?: MemoryManagerConfig)

  on<K extends keyof MemoryManagerEvents>(event: K, listener: (...args: MemoryManagerEvents[K]) => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
  once<K extends keyof MemoryManagerEvents>(event: K, listener: (...args: MemoryManagerEvents[K]) => void): this
  once(event: string | symbol, listener: (...args: any[]) => void): this

  /** Samples, updates the state (emitting events synchronously) and returns it. */
  check(): MemoryState
  /** Same as check(). */
  getMemoryState(): MemoryState
  /** The state the last check arrived at. */
  readonly state: MemoryState
  readonly source: Source

  getMemoryUsage(): MemoryUsage
  getDetailedStats(): DetailedStats
  forceGarbageCollection(): GcReport
  emergencyCleanup(): GcReport

  setMemoryLimit(limit: string | number): void
  getMemoryLimit(): MemoryLimit

  onStateChange(fn: (oldState: MemoryState, newState: MemoryState) => void): this
  onBeforeGC(fn: () => void): this
  onAfterGC(fn: (report: GcReport) => void): this
  /** A `MemoryPool` in place of `fn` registers the pool's cleanup (idle trimmed to `min_size`; emergency: all idle); a `LazyContainer` its cleanup (release_lazy_on_cleanup). */
  registerCleanupHook(name: string, fn: (() => void) | ((level: CleanupLevel) => void) | MemoryPool<any> | LazyContainer, priority?: number): this
  unregisterCleanupHook(name: string): boolean
  cleanupHooks(): CleanupHookInfo[]

  /** For source 'host': current and peak bytes, and the host's own limit (omit / -1 = none). */
  updateHostReading(current: number, peak?: number, limit?: number): void
  resetPeak(): void
  refreshLimit(): void
}

/** The core's pool keys, as the seed spells them. Times are seconds. */
export interface PoolOptions {
  /** At most this many objects exist (default 10). */
  max_size?: number
  /** Created up front and kept (default min(2, max_size)). */
  min_size?: number
  /** Idle objects unused this long are destroyed, down to min_size (default 300; 0 = never). */
  max_idle_time?: number
  /** Objects older than this are destroyed when next idle (default 0 = never). */
  max_lifetime?: number
  /** An object idle longer than this is validated before it is handed out (default 60). */
  validation_interval?: number
  /** How long acquireAsync() waits for a free object (default 30). */
  acquire_timeout?: number
  /** An object held longer than this is reported to onLeak (default 0 = off). */
  leak_detection_threshold?: number
  /** Evict, detect leaks and refill from an unref'd 1 s interval (default true). */
  auto_cleanup?: boolean
  /** Keep counters (default true); sizes are always known. */
  statistics?: boolean
  /** camelCase aliases of the keys above (giving both spellings is an error). */
  maxSize?: number
  minSize?: number
  maxIdleTime?: number
  maxLifetime?: number
  validationInterval?: number
  acquireTimeout?: number
  leakDetectionThreshold?: number
  autoCleanup?: boolean
}

export interface LeakReport<T = any> {
  /** The lease id. */
  id: number
  held_ms: number
  /** The acquiring call's stack, or the label given to acquire(). */
  acquired_at: string | null
  /** The object held (undefined in `recent_leaks` of the statistics). */
  object?: T
}

export interface PoolConfig<T> extends PoolOptions {
  /** Creates an object; called with the pool. Must return a new, non-null object synchronously. */
  factory: ((pool: MemoryPool<T>) => T) | (() => T)
  /** Runs on every release; a throw destroys the object and is rethrown by release(). */
  reset?: (obj: T) => void
  /** Runs on acquire for an object idle longer than validation_interval; false destroys it. */
  validate?: (obj: T) => boolean
  /** Runs when the pool destroys an object (eviction, failed validation or reset, trim, close). */
  destroy?: (obj: T) => void
  onLeak?: (report: LeakReport<T>) => void
}

export interface PoolStatistics {
  active: number
  idle: number
  waiting: number
  size: number
  max_size: number
  min_size: number
  /** % of acquires served by an existing object. */
  hit_rate: number
  total_created: number
  total_destroyed: number
  total_acquired: number
  timeouts: number
  validation_failures: number
  leaks: number
  recent_leaks: LeakReport[]
  closed: boolean
  statistics: boolean
}

/**
 * A factory-backed object pool. Hooks run on the JS thread inside the pool call that needs
 * them; time-based maintenance runs on the next call and, with auto_cleanup, from an unref'd
 * interval. Releasing an object twice, or one the pool did not hand out, is `MW_INVALID_ARGUMENT`
 * (an object released and already handed to someone else cannot be told apart: do not use
 * an object after releasing it).
 */
export class MemoryPool<T = any> {
  constructor(config: PoolConfig<T>)
  /** The config as given (frozen). */
  readonly config: Readonly<Record<string, any>>
  /**
   * An idle or new object. Never blocks: throws MemwardenError `MW_EXHAUSTED` when all
   * max_size objects are in use (use acquireAsync() to wait), `MW_CLOSED` after close(),
   * or the factory's own exception. `label` names the call site in leak reports.
   */
  acquire(label?: string): T
  /** Resolves with an object at once or when one is released (FIFO); rejects `MW_TIMEOUT` / `MW_CLOSED`. */
  acquireAsync(label?: string): Promise<T>
  /** Returns the object; `MW_INVALID_ARGUMENT` (nothing changed) when it is not out of this pool. */
  release(obj: T): void
  /** Acquires (waiting), calls fn, releases even when fn throws; resolves with fn's result. */
  use<R>(fn: (obj: T) => R | Promise<R>): Promise<R>
  getStatistics(): PoolStatistics
  /** Evicts idle / expired objects, reports leaks, refills to min_size. */
  maintain(): void
  /** Destroys idle objects down to `keep` (default 0); returns how many. */
  trim(keep?: number): number
  /** 'normal' trims idle objects to min_size, 'emergency' to 0. */
  cleanup(level?: CleanupLevel): void
  /** No new acquires; idle objects destroyed, in-use ones when released; waiters rejected `MW_CLOSED`. */
  close(): void
  readonly closed: boolean
}

/**
 * A pool whose hooks are methods. `min_size` objects are created inside the constructor,
 * before a subclass's own fields are set: createObject() may read `this.config`.
 */
export abstract class TypedMemoryPool<T = any> extends MemoryPool<T> {
  constructor(config?: PoolOptions & { onLeak?: (report: LeakReport<T>) => void; [key: string]: any })
  protected abstract createObject(): T
  protected resetObject(obj: T): void
  protected validateObject(obj: T): boolean
  protected destroyObject(obj: T): void
}

export interface ContainerConfig {
  /** Construct class factories with their constructor parameters resolved by name (default true). */
  auto_wire?: boolean
  /** Detect cycles and report their path (default true); off, a depth guard still stops recursion. */
  circular_detection?: boolean
  /** Cache `lazy` instances (default true); singletons are always cached. */
  cache_instances?: boolean
  /** Per-service counts and times in getStatistics() (default false). */
  debug_mode?: boolean
  /** Let a MemoryManager's cleanup drop cached lazy (not singleton) instances (default false). */
  release_lazy_on_cleanup?: boolean
  /** camelCase aliases of the keys above (giving both spellings is an error). */
  autoWire?: boolean
  circularDetection?: boolean
  cacheInstances?: boolean
  debugMode?: boolean
  releaseLazyOnCleanup?: boolean
}

/**
 * A factory: a function called with the container (or without arguments), or — with
 * `auto_wire` — a class whose constructor parameters (or `static inject = ['db', ...]`)
 * name the services it is constructed with. Must return the instance synchronously.
 */
export type ServiceFactory<T = any> =
  | ((container: LazyContainer) => T)
  | (() => T)
  | (new (...deps: any[]) => T)

export interface ServiceOptions<T = any> {
  /** Runs when the instance is disposed (container / scope dispose, releaseLazy), newest first. */
  dispose?: (instance: T) => void
  /** Replace a service already registered under this name (else `MW_INVALID_ARGUMENT`). */
  override?: boolean
}

export interface ContainerStatistics {
  /** Instances created. */
  created: number
  /** Instances held now (container-wide and in open scopes). */
  cached: number
  /** Mean creation time in ms (every lazy/singleton/scoped creation, one transient in 64). */
  avg_creation_time: number
  /** MB: lazy/singleton services never created times the average resident memory a first creation cost. */
  memory_saved: number
  registered: number
  never_created: number
  aliases: number
  tags: number
  /** With debug_mode only. */
  services?: Record<string, { lifetime: string; created: number; total_creation_time: number; cached: boolean }>
}

/**
 * One scope (one request) of a LazyContainer: `scoped` services once per scope. Call
 * `dispose()` when done; a scope garbage-collected without it is disposed after the
 * collection (its dispose hooks run then; a hook's exception becomes a process warning).
 */
export class ContainerScope {
  private constructor()
  get<T = any>(name: string): T
  /** Runs the dispose hooks of this scope's instances, newest first. Idempotent. */
  dispose(): void
}

/**
 * Deferred object creation: `lazy`, `singleton`, transient `factory`, `scoped`; aliases,
 * tags, cycle detection with the path (`MW_CYCLE`), disposal newest first. Factories run
 * synchronously on the JS thread; a throwing factory's own exception is rethrown and
 * nothing is cached.
 */
export class LazyContainer {
  constructor(config?: ContainerConfig)
  /** Created on first get, cached with cache_instances. */
  lazy<T = any>(name: string, factory: ServiceFactory<T>, options?: ServiceOptions<T>): this
  /** Created on first get, built exactly once. */
  singleton<T = any>(name: string, factory: ServiceFactory<T>, options?: ServiceOptions<T>): this
  /** A new instance on every get. */
  factory<T = any>(name: string, factory: ServiceFactory<T>, options?: ServiceOptions<T>): this
  /** One instance per scope: resolve through createScope().get(name). */
  scoped<T = any>(name: string, factory: ServiceFactory<T>, options?: ServiceOptions<T>): this
  /** `MW_NOT_FOUND` (with a did-you-mean), `MW_CYCLE`, `MW_CLOSED`, or the factory's own exception. */
  get<T = any>(name: string): T
  has(name: string): boolean
  /** `get(alias)` resolves `name` (which need not exist yet); alias cycles are `MW_CYCLE`. */
  alias(alias: string, name: string): this
  tag(name: string, tags: string | string[]): this
  /** The instances of every service tagged `tag`, in registration order. */
  getByTag<T = any>(tag: string): T[]
  /** Registered service names, in registration order. */
  names(): string[]
  createScope(): ContainerScope
  /** Disposes open scopes, then cached instances newest first; later calls throw `MW_CLOSED`. */
  dispose(): void
  /** Drops cached lazy (not singleton) instances, running their dispose hooks; returns how many. */
  releaseLazy(): number
  getStatistics(): ContainerStatistics
}

// ---- iterators -----------------------------------------------------------------------

export type ErrorHandling = 'continue' | 'stop' | 'retry'

export interface IteratorOptions {
  /** Items per chunk (StreamingIterator, FilteredIterator's source). Default 1000. */
  chunk_size?: number
  /** Allowed memory growth over the start of iteration: `'128M'`, bytes, or -1 for none. */
  memory_limit?: string | number
  /** Run cleanup (the manager's collection) when growth exceeds memory_limit. Default true. */
  auto_gc?: boolean
  /** No effect with JS sources and loaders (they run on the JS thread, one chunk at a time). */
  prefetch?: boolean
  /** Keep delivered chunks so that rewind() replays them without the source. */
  cache_chunks?: boolean
  parallel_processing?: boolean
  /** Default 'continue'. */
  error_handling?: ErrorHandling
  /** Default 3. */
  retry_attempts?: number
  /** Runs its cleanup hooks when growth exceeds memory_limit. */
  manager?: MemoryManager
}

export interface IteratorStats {
  chunks: number
  items: number
  chunk_size: number
  initial_chunk_size: number
  chunk_size_reductions: number
  cleanups: number
  memory_checks: number
  peak_memory_growth_bytes: number
  memory_limit_bytes: number | null
  memory_source: 'process' | 'custom' | 'unavailable'
  cleanup: 'manager' | 'callback' | 'none'
  errors: Array<{ chunk: number; message: string }>
  error_count: number
  skipped_chunks: number
  retries: number
  cached_chunks: number
  cache_dropped: boolean
  cache_dropped_at: number | null
  cache_complete: boolean
  replayed_chunks: number
  rewinds: number
  prefetched: number
  prefetch_active: boolean
  parallel_active: boolean
  finished: boolean
}

/** Chunks (arrays) of a sync iterable with `for...of`, or of an async iterable with `for await`. */
export class StreamingIterator<T = any> implements Iterable<T[]>, AsyncIterable<T[]> {
  constructor(source: Iterable<T> | AsyncIterable<T>, options?: IteratorOptions)
  [Symbol.iterator](): Iterator<T[]>
  [Symbol.asyncIterator](): AsyncIterator<T[]>
  /** Replays the cached chunks (`cache_chunks`); `MW_UNSUPPORTED` when the source cannot be replayed. */
  rewind(): void
  getStats(): IteratorStats
}

export type PageKey = number | string | bigint

export interface LazyIteratorOptions extends Omit<IteratorOptions, 'chunk_size'> {
  /** Items per loader call. Default 1000. */
  batch_size?: number
  chunk_size?: number
  /** `'offset'`: loader(offset, limit) (default); `'keyset'`: loader(afterKey, limit). */
  mode?: 'offset' | 'keyset'
  /** Keyset mode: the item's key property, or a function item => key. */
  key?: string | ((item: any) => PageKey)
}

/**
 * Items loaded on demand. `for...of` needs a loader that returns arrays; `for await` also
 * takes one that returns Promises.
 */
export class LazyIterator<T = any> implements Iterable<T>, AsyncIterable<T> {
  constructor(
    loader: ((offset: any, limit: number) => T[] | Iterable<T> | Promise<T[] | Iterable<T>>),
    options?: LazyIteratorOptions
  )
  [Symbol.iterator](): Iterator<T>
  [Symbol.asyncIterator](): AsyncIterator<T>
  /** The batches themselves. */
  batches(): Iterable<T[]> & AsyncIterable<T[]>
  rewind(): void
  getStats(): IteratorStats
}

export interface FilteredIteratorOptions<T> extends IteratorOptions {
  filters?: Array<(item: T) => boolean>
  /** Stop an item's filters at the first that rejects it. Default true. */
  early_exit?: boolean
}

export interface FilterStats {
  items_seen: number
  passed: number
  rejected: number
  filters: Array<{ evaluated: number; rejected: number }>
  early_exit: boolean
  source: IteratorStats
}

/** The items of `source` that pass every filter (a StreamingIterator's chunks are flattened). Synchronous. */
export class FilteredIterator<T = any> implements Iterable<T> {
  constructor(source: Iterable<T> | StreamingIterator<T>, options?: FilteredIteratorOptions<T>)
  [Symbol.iterator](): Iterator<T>
  getStats(): FilterStats
}

// ---- ChunkedDatabaseProcessor --------------------------------------------------------

export type Row = Record<string, any>
/** Blobs arrive as Buffers. */
export type Cell = null | boolean | number | bigint | string | Uint8Array

export interface ChunkInfo {
  /** 1-based chunk number in this run. */
  index: number
  after_key: PageKey | null
  first_key: PageKey | null
  last_key: PageKey | null
  rows: number
  attempts: number
}

export interface ChunkStats {
  processed: number
  total: number
  total_is_exact: boolean
  percent: number
  /** MB. */
  memory_usage: number
  memory_usage_bytes: number
  /** Seconds. */
  estimated_remaining: number
  rows_per_second: number
  elapsed: number
  chunks: number
  failed_chunks: number
  failed_rows: number
  retries: number
  chunk_size: number
  chunk_size_reductions: number
  cleanups: number
  max_chunk_bytes: number
  resumed: boolean
  key_column: string | null
  pagination: 'keyset' | 'cursor' | 'offset'
  workers: number
  failures: Array<ChunkInfo & { error: string }>
  /** Also emitted with process.emitWarning (code `MEMWARDEN_CHUNK`). */
  warnings: string[]
}

export interface ChunkedDatabaseProcessorOptions {
  chunk_size?: number
  /** Per-chunk budget: a bigger chunk runs the manager's cleanup and halves the chunk size. */
  memory_limit?: string | number
  /** Per query, seconds (0 = none). */
  timeout?: number
  retry_attempts?: number
  /** Seconds before the first retry, doubling. */
  retry_delay?: number
  parallel_chunks?: number
  key_column?: string
  pagination?: 'keyset' | 'cursor' | 'offset'
  /** A file: the last key of every finished chunk is saved; a rerun resumes after it. */
  checkpoint?: string
  checkpoint_fsync?: boolean
  /**
   * The same-transaction mode: a table (created if missing) holding the run's checkpoint row.
   * Callbacks get `(rows, tx)`; what they run through `tx` commits with the chunk's checkpoint,
   * so a resume after a crash applies every row exactly once. Excludes `checkpoint`,
   * `parallel_chunks` > 1, `prefetch` and non-keyset pagination.
   */
  checkpoint_table?: string
  exact_count?: boolean
  prefetch?: boolean
  /** `'dict'` (objects, default) or `'tuple'` (arrays). */
  row_format?: 'dict' | 'tuple'
  user?: string
  password?: string
  connect_timeout?: number
  /**
   * A SQLite file this process already holds open outside memwarden (better-sqlite3, node:sqlite)
   * is refused unless true: two SQLite libraries in one process do not see each other's locks.
   */
  allow_shared_sqlite_file?: boolean
  progress_callback?: ((processed: number, total: number) => void) | null
  /** A chunk failed after its retries: true skips it, false stops (rethrowing the error). */
  error_callback?: ((error: any, chunk: ChunkInfo) => boolean) | null
  manager?: MemoryManager
}

export interface ProcessQueryOptions {
  /** Overrides chunk_size for this call. */
  batch_size?: number
  /** true: parallel_chunks (at least 2) workers; a number: that many. */
  parallel?: boolean | number
}

/**
 * The transaction of one chunk in the same-transaction mode (`checkpoint_table`), valid while
 * its callback runs. Placeholders: `?` for SQLite and MySQL, `$1` for PostgreSQL.
 */
export class ChunkTransaction {
  private constructor()
  execute(sql: string, params?: Array<null | boolean | number | string> | null): void
  query(sql: string, params?: Array<null | boolean | number | string> | null): Array<Record<string, any>>
}

export class ChunkedDatabaseProcessor {
  /** `connection`: `sqlite:///path.db`, `postgres://...`, `mysql://...`, or a PDO DSN. */
  constructor(connection: string, options?: ChunkedDatabaseProcessorOptions)
  /** The connection, password masked. */
  readonly connection: string
  /** `rowCallback(row)` for every row, on this thread; returns the final statistics. `tx` is set with `checkpoint_table`. */
  process(sql: string, rowCallback: (row: any, tx?: ChunkTransaction) => void): ChunkStats
  processQuery(
    sql: string,
    batchCallback: (rows: any[], tx?: ChunkTransaction) => void,
    options?: ProcessQueryOptions
  ): ChunkStats
  /** The core runs on a worker thread; a Promise returned by the callback is awaited before the run goes on. */
  processAsync(sql: string, rowCallback: (row: any, tx?: ChunkTransaction) => void | Promise<void>): Promise<ChunkStats>
  processQueryAsync(
    sql: string,
    batchCallback: (rows: any[], tx?: ChunkTransaction) => void | Promise<void>,
    options?: ProcessQueryOptions
  ): Promise<ChunkStats>
  setProgressCallback(fn: ((stats: ChunkStats) => void) | null): this
  setErrorCallback(fn: ((error: any, chunk: ChunkInfo) => boolean) | null): this
  setManager(manager: MemoryManager | null): this
  getStats(): ChunkStats
}

// ---- MemoryAlertingService ------------------------------------------------------------

export type AlertLevel = 'warning' | 'critical' | 'emergency'
export type AlertChannel = 'email' | 'slack' | 'webhook' | 'alertmanager'

export interface EmailChannelConfig {
  enabled?: boolean
  recipients: string[]
  /** Lowest level this channel hears about (default 'warning'). */
  threshold?: AlertLevel
  /** At most one message per alert level in this window (default 15). */
  throttle_minutes?: number
  /** A named template: 'memory_alert' (default) or one of `templates`. */
  template?: string
  smtp?: {
    host?: string
    port?: number
    /** 'none', 'starttls' (default) or 'tls'. */
    tls?: 'none' | 'starttls' | 'tls'
    username?: string
    /** Never shown in history, logs or errors. */
    password?: string
    from?: string
    /** Seconds for connect and each command (default 30). */
    timeout?: number
  }
}

export interface HttpChannelConfig {
  enabled?: boolean
  threshold?: AlertLevel
  throttle_minutes?: number
  /** Seconds for the whole request. */
  timeout?: number
  /** Attempts after the first, with exponential backoff. */
  retry_attempts?: number
}

export interface SlackChannelConfig extends HttpChannelConfig {
  /** The incoming webhook's URL; its path (the token) never appears in history. */
  webhook_url: string
  channel?: string
  username?: string
}

export interface WebhookChannelConfig extends HttpChannelConfig {
  url: string
  headers?: Record<string, string>
}

export interface AlertmanagerChannelConfig extends HttpChannelConfig {
  /** The Alertmanager base URL; alerts go to `<url>/api/v2/alerts`. */
  url: string
  labels?: Record<string, string>
  headers?: Record<string, string>
}

/** The seed's alerting keys. Thresholds are percent; `*_minutes` minutes; other times seconds. */
export interface AlertingConfig {
  channels?: {
    email?: EmailChannelConfig
    slack?: SlackChannelConfig
    webhook?: WebhookChannelConfig
    alertmanager?: AlertmanagerChannelConfig
  }
  /** Percent of the limit (default 75 / 90 / 95). */
  thresholds?: { warning?: number, critical?: number, emergency?: number }
  escalation?: {
    enabled?: boolean
    /** Level number ('1', '2', ...) -> the channels it reaches, as the seed writes them. */
    levels?: Record<string, any>
    escalation_intervals?: number[]
  }
  history_retention_days?: number
  /** An SQLite file; in memory when omitted. */
  history_path?: string
  alert_cooldown_minutes?: number
  batch_alerts?: boolean
  batch_window_seconds?: number
  include_system_info?: boolean
  custom_metrics?: { cpu_usage?: boolean, disk_usage?: boolean, active_connections?: boolean }
  queue_capacity?: number
  /** Percentage points below a threshold before its level is left (default 2). */
  hysteresis?: number
  /** Own e-mail templates (minijinja): name -> { subject, body }. */
  templates?: Record<string, { subject: string, body: string }>
}

export interface AlertEvent {
  kind: 'alert_raised' | 'alert_resolved' | 'alert_suppressed' | 'alert_dropped' | 'delivery_ok' | 'delivery_failed'
  alert_id: number
  level: AlertLevel
  channel: AlertChannel | null
  message: string
  error: string | null
  /** RFC 3339. */
  time: string
  /** Epoch seconds. */
  timestamp: number
}

export interface AlertDelivery {
  channel: AlertChannel
  time: string
  timestamp: number
  attempt: number
  outcome: 'ok' | 'failed' | 'throttled' | 'dropped'
  error: string | null
}

export interface AlertRecord {
  id: number
  kind: 'alert' | 'resolved' | 'escalation' | 'custom'
  level: AlertLevel
  message: string
  usage_percent: number | null
  status: string
  escalation_level: number | null
  time: string
  timestamp: number
  deliveries: AlertDelivery[]
}

export interface AlertHistoryFilters {
  level?: AlertLevel
  channel?: AlertChannel
  kind?: AlertRecord['kind']
  /** Epoch seconds. */
  since?: number
  limit?: number
}

/**
 * Alerts on a MemoryManager's readings by e-mail, Slack, webhook and Alertmanager; delivery
 * runs on a background thread. Events arrive asynchronously and never keep the process alive.
 */
export class MemoryAlertingService extends EventEmitter {
  constructor(config?: AlertingConfig | null, manager?: MemoryManager | null)
  /** Reads the manager, decides, queues deliveries; returns the level at once. */
  checkAndAlert(): MemoryState
  /** A message of your own; returns its id in the history. */
  sendAlert(message: string, level?: AlertLevel): number
  /** True once queued deliveries were attempted (and their events emitted); false on timeout. */
  flush(timeoutSeconds?: number): Promise<boolean>
  flushSync(timeoutSeconds?: number): boolean
  getAlertHistory(filters?: AlertHistoryFilters): AlertRecord[]
  pollEvents(): AlertEvent[]
  readonly level: MemoryState
  readonly closed: boolean
  close(): void

  on(event: 'alert' | 'resolved' | 'deliveryOk' | 'deliveryFailed' | 'dropped' | 'suppressed' | 'event', listener: (event: AlertEvent) => void): this
  once(event: 'alert' | 'resolved' | 'deliveryOk' | 'deliveryFailed' | 'dropped' | 'suppressed' | 'event', listener: (event: AlertEvent) => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
  once(event: string | symbol, listener: (...args: any[]) => void): this
}

// ---- memoryTracking (middleware) ---------------------------------------------------

/** The seed's MemoryTrackingMiddleware options; the seed's snake_case spelling is accepted too. */
export interface MemoryTrackingOptions {
  enabled?: boolean
  trackPeak?: boolean
  logHighUsage?: boolean
  /** Growth during a request (peak minus start) above this many MiB makes it high-usage. */
  thresholdMb?: number
  /** Accepted; no effect in Node (no per-allocation hook without the inspector). */
  detailedTracking?: boolean | { enabled?: boolean, trackAllocations?: boolean, trackDeallocations?: boolean, includeStackTraces?: boolean }
  trackAllocations?: boolean
  trackDeallocations?: boolean
  includeStackTraces?: boolean
  includeHeaders?: boolean
  logFile?: string
  /** 0 to 1. */
  sampleRate?: number
  /** The route template of a request, read when it ends. Default: Express's matched route or 'unmatched'. */
  routeTemplate?: (req: any) => string
  maxRoutes?: number
  memoryLimit?: number | string
  randomSeed?: number
  samplerIntervalMs?: number | 'auto'
  [snakeCase: string]: unknown
}

/** The native figures of one request, in bytes. */
export interface RequestReport {
  route: string
  startBytes: number
  endBytes: number
  peakBytes: number
  deltaBytes: number
  durationMs: number
  /** Other requests in flight during this one; their memory is in these figures too. */
  overlapped: number
  highUsage: boolean
}

/** What the analytics handler gets for each measured request. */
export interface RequestAnalytics {
  route: string
  method: string
  statusCode: number
  /** The client went away before the response finished. */
  aborted: boolean
  usageMb: number
  peakMb: number
  startMb: number
  deltaMb: number
  durationMs: number
  overlapped: number
  highUsage: boolean
  report: RequestReport
}

export interface MemoryTrackingMethods {
  /** `(usageMb, req, report)`: `usageMb` is the growth that crossed `thresholdMb`. */
  setHighUsageHandler(handler: ((usageMb: number, req: any, report: RequestReport) => unknown) | null): this
  setAnalyticsHandler(handler: ((analytics: RequestAnalytics, req: any) => unknown) | null): this
  /** Per route template: count, high_usage, overlapped_share, delta_bytes / peak_bytes {p50, p95, max}, duration_ms. */
  analytics(): Record<string, any>
  readonly inFlight: number
}

export type TrackedHandler<H> = H & MemoryTrackingMethods

export interface MemoryTrackingMiddleware extends MemoryTrackingMethods {
  (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void
  /** The same tracking for a plain `http.createServer` handler. */
  wrap<H extends (req: IncomingMessage, res: ServerResponse) => unknown>(handler: H): TrackedHandler<H>
  wrapHandler<H extends (req: IncomingMessage, res: ServerResponse) => unknown>(handler: H): TrackedHandler<H>
}

export declare function memoryTracking(options?: MemoryTrackingOptions | null): MemoryTrackingMiddleware
export declare namespace memoryTracking {
  function wrap<H extends (req: IncomingMessage, res: ServerResponse) => unknown>(handler: H, options?: MemoryTrackingOptions | null): TrackedHandler<H>
  function wrapHandler<H extends (req: IncomingMessage, res: ServerResponse) => unknown>(handler: H, options?: MemoryTrackingOptions | null): TrackedHandler<H>
}

// ---- ResourceTracker ---------------------------------------------------------------

export interface ResourceTrackerOptions {
  maxMemoryUsage?: number
  /** Milliseconds. */
  cleanupInterval?: number
  enableAutoCleanup?: boolean
  thresholds?: { warning?: number, critical?: number }
  gcCallback?: () => void
  onBeforeGC?: () => void
  resourceTracking?: { enabled?: boolean, detailed?: boolean, metadata?: boolean }
  /** Write the leak report to stderr when the process exits (as `debug({ verbose: true })` does). */
  reportAtExit?: boolean
  [snakeCase: string]: unknown
}

/** Streamflow's ResourceStats. */
export interface ResourceStats {
  type: string
  size: number
  /** Milliseconds since the epoch. */
  createdAt: number
  metadata: Record<string, any>
}

export interface TypeLeaks {
  live: number
  released: number
  collected_unreleased: number
  cleaned_up: number
}

export interface ResourceMemoryStats {
  totalAllocated: number
  activeResources: number
  peakMemoryUsage: number
  totalTracked: number
  maxMemoryUsage: number
  usageRatio: number
  level: 'normal' | 'warning' | 'critical'
  byType: Record<string, number>
  leaks: Record<string, TypeLeaks>
  droppedEvents: number
  /** With `resourceTracking.detailed`. */
  bytesByType?: Record<string, number>
}

export interface TrackerEvent {
  type: 'memoryWarning' | 'memoryCritical' | 'cleanup'
  usage: number
  threshold: number
  detail: Record<string, any>
}

export interface CleanupResult {
  releasedIds: number[]
  freedBytes: number
}

/** Streamflow's resource tracker (seed 004). */
export class ResourceTracker extends EventEmitter {
  constructor(options?: ResourceTrackerOptions | null)
  trackResource(resource: unknown, type?: string, metadata?: Record<string, any> | null): number
  releaseResource(id: number): ResourceStats
  getResource(id: number): ResourceStats | undefined
  getMemoryStats(): ResourceMemoryStats
  leakReport(): Record<string, TypeLeaks>
  onBeforeGC(hook: () => void): this
  cleanup(): CleanupResult
  debug(options?: { trackingEnabled?: boolean, verbose?: boolean }): ResourceMemoryStats
  dispose(): Record<string, TypeLeaks>
  readonly disposed: boolean

  on(event: 'memoryWarning' | 'memoryCritical' | 'cleanup', listener: (event: TrackerEvent) => void): this
  once(event: 'memoryWarning' | 'memoryCritical' | 'cleanup', listener: (event: TrackerEvent) => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
  once(event: string | symbol, listener: (...args: any[]) => void): this
}
// ---- Monitor -----------------------------------------------------------------------------

export interface MonitorConfig {
  /** Watch this process (it must exist and be yours); default: the whole system. */
  pid?: number
  /** With `pid`: the sum over its whole process tree. */
  children?: boolean
  /** true: the whole machine (the default without `pid`). */
  system?: boolean
  /** Seconds between samples, > 0 (default 1). */
  interval?: number
  /** Alert threshold, percent of the limit (default 80), recorded in exports. */
  threshold?: number
  /** Append every sample to this file (one JSON line each) while sampling. */
  export?: string | URL
  /** fsync the export every N samples (default: about once a second). */
  export_sync_every?: number
}

export interface MonitorSample {
  /** Seconds since the monitor was created. */
  t: number
  unix_ms: number
  current_bytes: number
  peak_bytes: number
  limit_bytes: number
}

export interface MonitorAnalysis {
  samples: number
  duration_s: number
  average_mb: number
  min_mb: number
  peak_mb: number
  limit_mb: number
  /** average / peak, percent. */
  efficiency_percent: number
  spikes: Array<{ t: number, mb: number, jump_mb: number }>
  /** null with fewer than 3 samples. */
  leak: { slope_mb_per_min: number, r2: number, steady: boolean, sentence: string } | null
}

/**
 * Samples a process or the whole system every `interval` seconds on a background thread,
 * keeps the series, appends it to `export` as it goes, and analyzes it.
 */
export class Monitor {
  constructor(config?: MonitorConfig | null)
  start(): this
  stop(): void
  readonly running: boolean
  readonly ended: string | null
  readonly skippedTicks: number
  readonly meta: { target: string, interval: number, limit_bytes: number, limit_origin: string, threshold: number, started_unix_ms: number, version: string }
  sampleNow(): MonitorSample
  samples(): MonitorSample[]
  analyze(): MonitorAnalysis
  export(path: string | URL): void
  /** Samples while `fn` runs, then stops. */
  use<T>(fn: (monitor: this) => T | Promise<T>): Promise<T>
  started(): this
}

/** The analysis of an export file. */
export function analyze(path: string | URL): MonitorAnalysis

export interface StreamProcessorOptions {
  /** Bytes per chunk, or a size such as `'1M'` (default 1 MiB). */
  chunkSize?: number | string
  /** Handlers running at once (default 3). */
  concurrentStreams?: number
  /** Hand the handler gzip, one member per chunk (default false). */
  compressionEnabled?: boolean
  /** The chunk tracker's budget: bytes or `'64M'` (default 100 MiB; at least chunkSize). */
  maxMemoryUsage?: number | string
  /** Fractions of maxMemoryUsage; reading pauses at `warning` (default 0.7 / 0.9). */
  thresholds?: { warning?: number, critical?: number }
  cleanupInterval?: number
  performanceCallback?: (metrics: PerformanceMetrics) => void
  /**
   * Track the chunks in this tracker instead of one of the processor's own: its statistics
   * show them, its `maxMemoryUsage` and `thresholds` give the backpressure, and its listeners
   * get the events admitting a chunk causes. Then `maxMemoryUsage`, `thresholds` and
   * `cleanupInterval` are the tracker's and may not be given here.
   */
  tracker?: ResourceTracker | null
}

/** A `performance` event: per chunk (`final: false`) and the run's summary (`final: true`). */
export interface PerformanceMetrics {
  type: 'performance'
  final: boolean
  /** Bytes per second since the run started. */
  speed: number
  /** Bytes tracked while the chunk was handled; in the summary, the most tracked at once. */
  memoryUsage: number
  /** Milliseconds: the chunk's handler (with compression); in the summary, the whole run. */
  processingTime: number
  chunks: number
  bytes: number
  index?: number
  offset?: number
  size?: number
  [key: string]: any
}

export interface ChunkInfo { index: number, offset: number, size: number }

/**
 * Reads a file or a Readable in chunks and runs an async handler on each, at most
 * `concurrentStreams` at once; reading pauses while the chunk tracker is at its warning
 * threshold, so memory stays bounded whatever the input size.
 */
export class StreamProcessor extends EventEmitter {
  constructor(options?: StreamProcessorOptions | null)
  processFile(path: string, handler: (chunk: Buffer, info: ChunkInfo) => unknown): Promise<PerformanceMetrics>
  processStream(readable: NodeJS.ReadableStream, handler: (chunk: Buffer, info: ChunkInfo) => unknown): Promise<PerformanceMetrics>
  compress(data: Buffer): Promise<Buffer>
  getStats(): Record<string, any>
  stats(): Record<string, any>
  readonly chunkSize: number
  readonly concurrentStreams: number
  readonly compressionEnabled: boolean
  /** The `tracker` option, or null when the processor tracks chunks in a tracker of its own. */
  readonly tracker: ResourceTracker | null

  on(event: 'performance', listener: (metrics: PerformanceMetrics) => void): this
  on(event: 'memoryWarning' | 'memoryCritical', listener: (event: { type: string, usage: number, threshold: number, index: number, detail: Record<string, any> }) => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
}

/** `'512M'` -> 536870912; `'-1'` -> null. */
export function parseSize(text: string): number | null
/** 536870912 -> `'512M'`. */
export function formatSize(bytes: number): string
export const version: string
