//! Memory-efficient iterators: [`StreamingIterator`] (chunks from a source that can only go
//! forward), [`LazyIterator`] (pages from a loader that can be asked for any page) and
//! [`FilteredIterator`] (items that pass every filter).
//!
//! The streaming and lazy iterators watch memory between chunks: growth over a baseline taken
//! when iteration starts is compared with `memory_limit`; above it they run cleanup (a
//! [`MemoryManager`]'s collection or a closure), measure again and, still above, halve the chunk
//! size. Items are generic: the bindings iterate host objects, the C ABI `uintptr_t`s.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ConfigReader;
use crate::error::{Error, ErrorKind, Result};
use crate::manager::MemoryManager;
use crate::probe::ProcessProbe;
use crate::size::{Size, parse_size};

// ---- config ------------------------------------------------------------------

/// What happens when a source or loader fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorHandling {
    /// Record the error and go on with the next chunk (the seed's default).
    Continue,
    /// Return the error; the iterator ends.
    Stop,
    /// Call again up to `retry_attempts` times, then return the error.
    Retry,
}

/// How a [`LazyIterator`] asks for pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageMode {
    /// `(offset, limit)`, as the seed's loader.
    Offset,
    /// `(after_key, limit)`: recommended, see [`LazyIterator`].
    Keyset,
}

/// The options every iterator reads, keyed as the seed writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct IterConfig {
    /// Items per chunk ([`StreamingIterator`], [`FilteredIterator`] over a chunk source).
    pub chunk_size: usize,
    /// Items per batch ([`LazyIterator`]).
    pub batch_size: usize,
    /// Allowed memory growth over the baseline, in bytes; `u64::MAX` for none (`-1`).
    pub memory_limit: u64,
    /// Whether cleanup runs when growth exceeds `memory_limit`.
    pub auto_gc: bool,
    pub prefetch: bool,
    pub cache_chunks: bool,
    pub parallel_processing: bool,
    pub error_handling: ErrorHandling,
    pub retry_attempts: u32,
    pub early_exit: bool,
    /// The key field's name for keyset pagination; used by the bindings, not by the core.
    pub key: Option<String>,
    pub mode: PageMode,
}

impl Default for IterConfig {
    fn default() -> Self {
        IterConfig {
            chunk_size: 1000,
            batch_size: 1000,
            memory_limit: 128 * crate::size::MIB,
            auto_gc: true,
            prefetch: false,
            cache_chunks: false,
            parallel_processing: false,
            error_handling: ErrorHandling::Continue,
            retry_attempts: 3,
            early_exit: true,
            key: None,
            mode: PageMode::Offset,
        }
    }
}

const COMMON_KEYS: &[&str] =
    &["memory_limit", "auto_gc", "prefetch", "cache_chunks", "parallel_processing", "error_handling", "retry_attempts"];

impl IterConfig {
    /// Keys a [`StreamingIterator`] accepts.
    pub const STREAMING_KEYS: &'static [&'static str] = &[
        "chunk_size",
        "memory_limit",
        "auto_gc",
        "prefetch",
        "cache_chunks",
        "parallel_processing",
        "error_handling",
        "retry_attempts",
    ];
    /// Keys a [`LazyIterator`] accepts.
    pub const LAZY_KEYS: &'static [&'static str] = &[
        "batch_size",
        "chunk_size",
        "memory_limit",
        "auto_gc",
        "prefetch",
        "cache_chunks",
        "parallel_processing",
        "error_handling",
        "retry_attempts",
        "key",
        "mode",
    ];
    /// Keys a [`FilteredIterator`] accepts: its own and those of the chunk source under it.
    pub const FILTERED_KEYS: &'static [&'static str] = &[
        "filters",
        "early_exit",
        "chunk_size",
        "memory_limit",
        "auto_gc",
        "prefetch",
        "cache_chunks",
        "parallel_processing",
        "error_handling",
        "retry_attempts",
    ];

    /// Reads a config object (`null` = defaults) for `component`: `"StreamingIterator"`,
    /// `"LazyIterator"` or `"FilteredIterator"` each accept their own keys; any other name
    /// accepts every key. Unknown keys and bad values are `InvalidConfig` errors naming them.
    pub fn from_json(component: &'static str, value: &Value) -> Result<Self> {
        Self::from_json_with(component, value, &[])
    }

    /// As [`from_json`](Self::from_json), also accepting (and ignoring) `binding_keys`.
    pub fn from_json_with(component: &'static str, value: &Value, binding_keys: &[&str]) -> Result<Self> {
        let own: Vec<&str> = match component {
            "StreamingIterator" => Self::STREAMING_KEYS.to_vec(),
            "LazyIterator" => Self::LAZY_KEYS.to_vec(),
            "FilteredIterator" => Self::FILTERED_KEYS.to_vec(),
            _ => {
                let mut all: Vec<&str> = Self::LAZY_KEYS.to_vec();
                all.extend(["filters", "early_exit"]);
                all.extend(COMMON_KEYS);
                all.sort_unstable();
                all.dedup();
                all
            }
        };
        let known: Vec<&str> = own.into_iter().chain(binding_keys.iter().copied()).collect();
        let r = ConfigReader::new(component, value, &known)?;
        let d = IterConfig::default();
        let count = |key: &str, default: usize| -> Result<usize> {
            match r.u64(key).map_err(|_| r.bad(key, "a whole number > 0"))? {
                None => Ok(default),
                Some(0) => Err(r.bad(key, "a whole number > 0")),
                Some(n) => usize::try_from(n).map_err(|_| r.bad(key, "a whole number > 0")),
            }
        };
        let memory_limit = match r.get("memory_limit") {
            None => d.memory_limit,
            Some(v) => limit_from_json(v)
                .ok_or_else(|| r.bad("memory_limit", "a size like '128M', a number of bytes > 0, or -1 for none"))?,
        };
        let retry_attempts =
            match r.u64("retry_attempts").map_err(|_| r.bad("retry_attempts", "a whole number >= 0"))? {
                None => d.retry_attempts,
                Some(n) => u32::try_from(n).map_err(|_| r.bad("retry_attempts", "a whole number below 2^32"))?,
            };
        let error_handling = match r.choice("error_handling", "continue", &["continue", "stop", "retry"])? {
            "stop" => ErrorHandling::Stop,
            "retry" => ErrorHandling::Retry,
            _ => ErrorHandling::Continue,
        };
        let mode = match r.choice("mode", "offset", &["offset", "keyset"])? {
            "keyset" => PageMode::Keyset,
            _ => PageMode::Offset,
        };
        Ok(IterConfig {
            chunk_size: count("chunk_size", d.chunk_size)?,
            batch_size: count("batch_size", d.batch_size)?,
            memory_limit,
            auto_gc: r.bool("auto_gc", d.auto_gc)?,
            prefetch: r.bool("prefetch", d.prefetch)?,
            cache_chunks: r.bool("cache_chunks", d.cache_chunks)?,
            parallel_processing: r.bool("parallel_processing", d.parallel_processing)?,
            error_handling,
            retry_attempts,
            early_exit: r.bool("early_exit", d.early_exit)?,
            key: r.str("key")?.map(str::to_owned),
            mode,
        })
    }
}

fn limit_from_json(v: &Value) -> Option<u64> {
    let size = match v {
        Value::String(s) => parse_size(s).ok()?,
        Value::Number(n) if n.as_i64() == Some(-1) => Size::Unlimited,
        Value::Number(n) => Size::Bytes(n.as_u64()?),
        _ => return None,
    };
    match size {
        Size::Unlimited => Some(u64::MAX),
        Size::Bytes(0) => None,
        Size::Bytes(b) => Some(b),
    }
}

// ---- statistics ----------------------------------------------------------------

/// A source or loader error, with the index of the chunk it was loading (counting skipped ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChunkError {
    pub chunk: u64,
    pub message: String,
}

/// What a [`StreamingIterator`] or [`LazyIterator`] did. For the lazy iterator a chunk is a
/// batch and `chunk_size` the current `batch_size`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IterStats {
    /// Chunks delivered from the source (not counting replays from the cache).
    pub chunks: u64,
    pub items: u64,
    /// The current chunk size.
    pub chunk_size: usize,
    pub initial_chunk_size: usize,
    /// How many times the chunk size was halved because memory stayed above the limit.
    pub chunk_size_reductions: u64,
    pub cleanups: u64,
    pub memory_checks: u64,
    pub peak_memory_growth_bytes: u64,
    /// `null` when there is no limit.
    pub memory_limit_bytes: Option<u64>,
    /// `"process"` (resident memory), `"custom"` (an injected reader) or `"unavailable"`.
    pub memory_source: &'static str,
    /// `"manager"`, `"callback"` or `"none"`.
    pub cleanup: &'static str,
    /// The first [`MAX_RECORDED_ERRORS`] errors; `error_count` counts all.
    pub errors: Vec<ChunkError>,
    pub error_count: u64,
    pub skipped_chunks: u64,
    pub retries: u64,
    pub cached_chunks: usize,
    pub cache_dropped: bool,
    /// How many chunks had been delivered when the cache was dropped.
    pub cache_dropped_at: Option<u64>,
    /// Whether the cache holds the whole sequence (a rewind replays it without the source).
    pub cache_complete: bool,
    pub replayed_chunks: u64,
    pub rewinds: u64,
    /// Batches that were loaded ahead, before they were asked for.
    pub prefetched: u64,
    pub prefetch_active: bool,
    pub parallel_active: bool,
    pub finished: bool,
}

impl IterStats {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("stats serialize")
    }
}

/// Errors kept in [`IterStats::errors`]; later ones are only counted.
pub const MAX_RECORDED_ERRORS: usize = 100;
/// With `error_handling: 'continue'`, this many failures in a row end the iteration with the
/// last error instead of trying forever.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 100;

/// Reads memory in bytes; growth is measured against its first reading.
pub type MemoryReader = Box<dyn FnMut() -> u64 + Send>;
/// Frees memory when growth exceeds `memory_limit` (a host's collector, a cache flush).
pub type CleanupFn = Box<dyn FnMut() -> Result<()> + Send>;
/// Copies a chunk into the cache.
pub type Cloner<T> = fn(&[T]) -> Vec<T>;

// ---- the shared chunk engine -----------------------------------------------------

enum CleanupHook {
    None,
    Manager(Arc<MemoryManager>),
    Callback(CleanupFn),
}

/// Memory checks, chunk size, stats, error records and the cache, shared by the streaming and
/// lazy iterators.
struct Engine<T> {
    limit: u64,
    auto_gc: bool,
    error_handling: ErrorHandling,
    retry_attempts: u32,
    reader: MemoryReader,
    baseline: Option<u64>,
    cleanup: CleanupHook,
    stats: IterStats,
    cloner: Option<Cloner<T>>,
    /// Whether chunks are still being cached (false when off or dropped).
    caching: bool,
    cache: Vec<Vec<T>>,
    replay: Option<usize>,
    consecutive_errors: u32,
}

fn process_reader() -> (MemoryReader, &'static str) {
    match ProcessProbe::new() {
        Ok(p) => (Box::new(move || p.current_bytes().unwrap_or(0)), "process"),
        Err(_) => (Box::new(|| 0), "unavailable"),
    }
}

impl<T> Engine<T> {
    fn set_memory_reader(&mut self, reader: MemoryReader) {
        self.reader = reader;
        self.baseline = None;
        self.stats.memory_source = "custom";
    }

    fn set_cleanup(&mut self, hook: CleanupHook, name: &'static str) {
        self.cleanup = hook;
        self.stats.cleanup = name;
    }

    fn new(cfg: &IterConfig, size: usize, cloner: Option<Cloner<T>>) -> Result<Self> {
        if cfg.cache_chunks && cloner.is_none() {
            return Err(Error::invalid_config(
                "cache_chunks needs items that can be copied; construct the iterator with `new` (T: Clone)",
            ));
        }
        let (reader, source) = process_reader();
        Ok(Engine {
            limit: cfg.memory_limit,
            auto_gc: cfg.auto_gc,
            error_handling: cfg.error_handling,
            retry_attempts: cfg.retry_attempts,
            reader,
            baseline: None,
            cleanup: CleanupHook::None,
            stats: IterStats {
                chunks: 0,
                items: 0,
                chunk_size: size,
                initial_chunk_size: size,
                chunk_size_reductions: 0,
                cleanups: 0,
                memory_checks: 0,
                peak_memory_growth_bytes: 0,
                memory_limit_bytes: (cfg.memory_limit != u64::MAX).then_some(cfg.memory_limit),
                memory_source: source,
                cleanup: "none",
                errors: Vec::new(),
                error_count: 0,
                skipped_chunks: 0,
                retries: 0,
                cached_chunks: 0,
                cache_dropped: false,
                cache_dropped_at: None,
                cache_complete: false,
                replayed_chunks: 0,
                rewinds: 0,
                prefetched: 0,
                prefetch_active: false,
                parallel_active: false,
                finished: false,
            },
            cloner,
            caching: cfg.cache_chunks,
            cache: Vec::new(),
            replay: None,
            consecutive_errors: 0,
        })
    }

    fn size(&self) -> usize {
        self.stats.chunk_size
    }

    fn measure(&mut self) -> u64 {
        let now = (self.reader)();
        let base = *self.baseline.get_or_insert(now);
        self.stats.memory_checks += 1;
        let growth = now.saturating_sub(base);
        self.stats.peak_memory_growth_bytes = self.stats.peak_memory_growth_bytes.max(growth);
        growth
    }

    /// Takes the baseline on the first pull; between chunks, compares growth with the limit.
    fn before_pull(&mut self) -> Result<()> {
        if self.baseline.is_none() {
            self.measure();
            return Ok(());
        }
        if self.stats.chunks == 0 || self.measure() <= self.limit {
            return Ok(());
        }
        if self.auto_gc {
            let ran = match &mut self.cleanup {
                CleanupHook::None => false,
                CleanupHook::Manager(m) => m.force_garbage_collection().map(|_| true)?,
                CleanupHook::Callback(f) => f().map(|_| true)?,
            };
            if ran {
                self.stats.cleanups += 1;
                if self.measure() <= self.limit {
                    return Ok(());
                }
            }
        }
        if self.caching {
            self.drop_cache();
            if self.measure() <= self.limit {
                return Ok(());
            }
        }
        if self.stats.chunk_size > 1 {
            self.stats.chunk_size = (self.stats.chunk_size / 2).max(1);
            self.stats.chunk_size_reductions += 1;
        }
        Ok(())
    }

    fn drop_cache(&mut self) {
        self.caching = false;
        self.stats.cache_dropped = true;
        self.stats.cache_dropped_at = Some(self.stats.chunks);
        self.cache = Vec::new();
        self.stats.cached_chunks = 0;
    }

    fn delivered(&mut self, chunk: &[T]) {
        self.consecutive_errors = 0;
        self.stats.chunks += 1;
        self.stats.items += chunk.len() as u64;
        if self.caching
            && let Some(clone) = self.cloner
        {
            self.cache.push(clone(chunk));
            self.stats.cached_chunks = self.cache.len();
        }
    }

    fn ended(&mut self) {
        self.stats.finished = true;
        if self.caching {
            self.stats.cache_complete = true;
        }
    }

    fn index(&self) -> u64 {
        self.stats.chunks + self.stats.skipped_chunks
    }

    fn record_error(&mut self, e: &Error) {
        self.stats.error_count += 1;
        if self.stats.errors.len() < MAX_RECORDED_ERRORS {
            self.stats.errors.push(ChunkError { chunk: self.index(), message: e.message().to_owned() });
        }
    }

    /// `continue`: counts a skipped chunk; too many failures in a row end the iteration.
    fn skip(&mut self, e: Error) -> Result<()> {
        self.stats.skipped_chunks += 1;
        self.consecutive_errors += 1;
        if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
            return Err(Error::new(
                e.kind(),
                format!("giving up after {MAX_CONSECUTIVE_ERRORS} failed chunks in a row; last error: {}", e.message()),
            ));
        }
        Ok(())
    }

    /// The next cached chunk while replaying; `Some(empty)` at the end of a complete cache.
    fn replay_next(&mut self) -> Option<Vec<T>> {
        let pos = self.replay?;
        if let Some(chunk) = self.cache.get(pos) {
            self.replay = Some(pos + 1);
            self.stats.replayed_chunks += 1;
            let clone = self.cloner.expect("caching implies a cloner");
            return Some(clone(chunk));
        }
        if self.stats.cache_complete {
            return Some(Vec::new());
        }
        // The cached prefix is replayed; the source goes on from where it stopped.
        self.replay = None;
        None
    }

    /// Starts replaying the cache when it is intact; `false` when it cannot.
    fn rewind_cache(&mut self) -> bool {
        self.stats.rewinds += 1;
        if self.caching {
            self.replay = Some(0);
            true
        } else {
            false
        }
    }
}

// ---- StreamingIterator ---------------------------------------------------------

/// A forward-only source of chunks: the seed's `$dataSource`.
pub trait ChunkSource<T> {
    /// Up to `max` items; an empty vector is the end.
    fn next_chunk(&mut self, max: usize) -> Result<Vec<T>>;
}

impl<T, S: ChunkSource<T> + ?Sized> ChunkSource<T> for Box<S> {
    fn next_chunk(&mut self, max: usize) -> Result<Vec<T>> {
        (**self).next_chunk(max)
    }
}

/// A closure `|max| -> Result<Vec<T>>` as a [`ChunkSource`].
pub struct FnSource<F>(pub F);

impl<T, F: FnMut(usize) -> Result<Vec<T>>> ChunkSource<T> for FnSource<F> {
    fn next_chunk(&mut self, max: usize) -> Result<Vec<T>> {
        (self.0)(max)
    }
}

/// An iterator's items as a [`ChunkSource`].
pub struct IterSource<I>(pub I);

impl<T, I: Iterator<Item = T>> ChunkSource<T> for IterSource<I> {
    fn next_chunk(&mut self, max: usize) -> Result<Vec<T>> {
        Ok(self.0.by_ref().take(max).collect())
    }
}

/// Chunks of `chunk_size` items from a [`ChunkSource`], with memory checks between chunks.
///
/// Between chunks it measures memory growth over the reading taken when iteration started.
/// Above `memory_limit` it runs cleanup ([`set_manager`](Self::set_manager) or
/// [`set_cleanup`](Self::set_cleanup); none with `auto_gc: false`), measures again, drops the
/// cache if one is kept, and when still above halves the chunk size (down to 1).
///
/// A source error is handled by `error_handling`: `stop` returns it, `continue` records it in
/// the stats and pulls again, `retry` calls again up to `retry_attempts` times and then returns
/// it. With `cache_chunks`, chunks are kept while memory stays within the limit, and
/// [`rewind`](Self::rewind) replays them; a source can only go forward, so a rewind after the
/// cache was dropped is an error.
pub struct StreamingIterator<T, S> {
    source: S,
    engine: Engine<T>,
    done: bool,
}

impl<T: Clone, S: ChunkSource<T>> StreamingIterator<T, S> {
    pub fn new(source: S, cfg: &IterConfig) -> Result<Self> {
        Self::build(source, cfg, Some(|c: &[T]| c.to_vec()))
    }
}

impl<T, S: ChunkSource<T>> StreamingIterator<T, S> {
    /// For items that cannot be copied: `cache_chunks` is then an error.
    pub fn new_uncloneable(source: S, cfg: &IterConfig) -> Result<Self> {
        Self::build(source, cfg, None)
    }

    /// With a copy function of the caller's (for host objects that need a lock to copy).
    pub fn with_cloner(source: S, cfg: &IterConfig, cloner: Cloner<T>) -> Result<Self> {
        Self::build(source, cfg, Some(cloner))
    }

    fn build(source: S, cfg: &IterConfig, cloner: Option<Cloner<T>>) -> Result<Self> {
        Ok(StreamingIterator { source, engine: Engine::new(cfg, cfg.chunk_size, cloner)?, done: false })
    }

    /// Replaces the memory reader (default: this process's resident bytes).
    pub fn set_memory_reader(&mut self, reader: MemoryReader) {
        self.engine.set_memory_reader(reader);
    }

    /// Cleanup above the limit runs the manager's `force_garbage_collection()`.
    pub fn set_manager(&mut self, manager: Arc<MemoryManager>) {
        self.engine.set_cleanup(CleanupHook::Manager(manager), "manager");
    }

    /// Cleanup above the limit runs `f` (replaces a manager).
    pub fn set_cleanup(&mut self, f: CleanupFn) {
        self.engine.set_cleanup(CleanupHook::Callback(f), "callback");
    }

    /// The next chunk; empty at the end (and after a `stop` error).
    pub fn next_chunk(&mut self) -> Result<Vec<T>> {
        if let Some(c) = self.engine.replay_next() {
            return Ok(c);
        }
        if self.done {
            return Ok(Vec::new());
        }
        self.engine.before_pull()?;
        let mut attempts = 0u32;
        loop {
            match self.source.next_chunk(self.engine.size()) {
                Ok(chunk) if chunk.is_empty() => {
                    self.done = true;
                    self.engine.ended();
                    return Ok(chunk);
                }
                Ok(chunk) => {
                    self.engine.delivered(&chunk);
                    return Ok(chunk);
                }
                Err(e) => {
                    self.engine.record_error(&e);
                    match self.engine.error_handling {
                        ErrorHandling::Retry if attempts < self.engine.retry_attempts => {
                            attempts += 1;
                            self.engine.stats.retries += 1;
                        }
                        ErrorHandling::Continue => {
                            if let Err(e) = self.engine.skip(e) {
                                self.done = true;
                                return Err(e);
                            }
                        }
                        _ => {
                            self.done = true;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Starts again from the first chunk by replaying the cache (and, when the source had not
    /// ended, going on with the source after the cached chunks).
    pub fn rewind(&mut self) -> Result<()> {
        if self.engine.rewind_cache() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            if self.engine.stats.cache_dropped {
                format!(
                    "source cannot be replayed: the cache was dropped at {} chunks because memory_limit was exceeded; \
                     set cache_chunks with a larger memory_limit",
                    self.engine.stats.cache_dropped_at.unwrap_or(self.engine.stats.chunks)
                )
            } else {
                "source cannot be replayed: it only goes forward and cache_chunks is off; set cache_chunks".to_owned()
            },
        ))
    }

    pub fn stats(&self) -> &IterStats {
        &self.engine.stats
    }

    /// The items one by one.
    pub fn items(self) -> Items<T, Self> {
        Items { chunks: self, buffer: VecDeque::new(), done: false, _t: PhantomData }
    }
}

impl<T, S: ChunkSource<T>> Iterator for StreamingIterator<T, S> {
    type Item = Result<Vec<T>>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_chunk() {
            Ok(c) if c.is_empty() => None,
            other => Some(other),
        }
    }
}

impl<T, S: ChunkSource<T>> ChunkSource<T> for StreamingIterator<T, S> {
    fn next_chunk(&mut self, _max: usize) -> Result<Vec<T>> {
        StreamingIterator::next_chunk(self)
    }
}

/// Items one by one from chunks.
pub struct Items<T, C> {
    chunks: C,
    buffer: VecDeque<T>,
    done: bool,
    _t: PhantomData<T>,
}

impl<T, C> Items<T, C> {
    pub fn inner(&self) -> &C {
        &self.chunks
    }
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.chunks
    }
}

impl<T, C: ChunkSource<T>> Iterator for Items<T, C> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(x) = self.buffer.pop_front() {
                return Some(Ok(x));
            }
            if self.done {
                return None;
            }
            match self.chunks.next_chunk(usize::MAX) {
                Ok(c) if c.is_empty() => self.done = true,
                Ok(c) => self.buffer.extend(c),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

// ---- LazyIterator --------------------------------------------------------------

/// A keyset pagination key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    Int(i64),
    Text(String),
}

/// Which page a [`Loader`] is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page<'a> {
    /// Items from this offset (the seed's `function($offset, $limit)`).
    Offset(u64),
    /// Items whose key comes after this one; `None` for the first page.
    After(Option<&'a Key>),
}

/// Loads pages for a [`LazyIterator`].
pub trait Loader<T> {
    /// Up to `limit` items of `page`; an empty vector is the end.
    fn load(&mut self, page: Page<'_>, limit: usize) -> Result<Vec<T>>;

    /// An item's key, for keyset mode.
    fn key_of(&self, _item: &T) -> Result<Key> {
        Err(Error::new(ErrorKind::Unsupported, "this loader gives no keys; keyset mode needs key_of"))
    }

    /// The key after which the next page starts, asked right after `batch` (not empty) was
    /// loaded: by default the key of its last item.
    fn next_key(&mut self, batch: &[T]) -> Result<Key> {
        self.key_of(batch.last().expect("next_key is asked for a non-empty batch"))
    }
}

impl<T, L: Loader<T> + ?Sized> Loader<T> for Box<L> {
    fn load(&mut self, page: Page<'_>, limit: usize) -> Result<Vec<T>> {
        (**self).load(page, limit)
    }
    fn key_of(&self, item: &T) -> Result<Key> {
        (**self).key_of(item)
    }
    fn next_key(&mut self, batch: &[T]) -> Result<Key> {
        (**self).next_key(batch)
    }
}

/// An offset loader from a closure `|offset, limit| -> Result<Vec<T>>`.
#[derive(Clone)]
pub struct OffsetFn<F>(pub F);

impl<T, F: FnMut(u64, usize) -> Result<Vec<T>>> Loader<T> for OffsetFn<F> {
    fn load(&mut self, page: Page<'_>, limit: usize) -> Result<Vec<T>> {
        match page {
            Page::Offset(o) => (self.0)(o, limit),
            Page::After(_) => Err(Error::invalid_config("this is an offset loader; set mode 'offset'")),
        }
    }
}

/// A keyset loader from `|after_key, limit| -> Result<Vec<T>>` and `|item| -> Result<Key>`.
#[derive(Clone)]
pub struct KeysetFn<F, K>(pub F, pub K);

impl<T, F, K> Loader<T> for KeysetFn<F, K>
where
    F: FnMut(Option<&Key>, usize) -> Result<Vec<T>>,
    K: Fn(&T) -> Result<Key>,
{
    fn load(&mut self, page: Page<'_>, limit: usize) -> Result<Vec<T>> {
        match page {
            Page::After(k) => (self.0)(k, limit),
            Page::Offset(_) => Err(Error::invalid_config("this is a keyset loader; set mode 'keyset'")),
        }
    }
    fn key_of(&self, item: &T) -> Result<Key> {
        (self.1)(item)
    }
}

#[derive(Debug, Clone)]
enum OwnedPage {
    Offset(u64),
    After(Option<Key>),
}

impl OwnedPage {
    fn page(&self) -> Page<'_> {
        match self {
            OwnedPage::Offset(o) => Page::Offset(*o),
            OwnedPage::After(k) => Page::After(k.as_ref()),
        }
    }
}

/// A loaded batch and, in keyset mode, the key after which the next one starts.
type Loaded<T> = Result<(Vec<T>, Option<Key>)>;

fn load_one<T, L: Loader<T>>(loader: &mut L, page: &OwnedPage, limit: usize) -> Loaded<T> {
    let batch = loader.load(page.page(), limit)?;
    let key = match page {
        OwnedPage::After(_) if !batch.is_empty() => Some(loader.next_key(&batch)?),
        _ => None,
    };
    Ok((batch, key))
}

struct Job {
    generation: u64,
    seq: u64,
    page: OwnedPage,
    limit: usize,
}

struct Done<T> {
    generation: u64,
    seq: u64,
    result: Loaded<T>,
}

/// Loads on background threads: one for prefetch, two for parallel offset pages.
struct Ahead<T> {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done<T>>,
    /// How many pages are kept loading ahead of the one being delivered.
    window: usize,
    generation: u64,
    next_seq: u64,
    /// Issued, undelivered jobs in delivery order.
    issued: VecDeque<(u64, OwnedPage, usize)>,
    arrived: HashMap<u64, Loaded<T>>,
}

impl<T: Send + 'static> Ahead<T> {
    fn start<L: Loader<T> + Send + 'static>(loaders: Vec<L>, window: usize) -> Result<Self> {
        let (job_tx, job_rx) = channel::<Job>();
        let (done_tx, done_rx) = channel::<Done<T>>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for (i, mut loader) in loaders.into_iter().enumerate() {
            let jobs = job_rx.clone();
            let done = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("memwarden-lazy-{i}"))
                .spawn(move || {
                    loop {
                        let job = match jobs.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            load_one(&mut loader, &job.page, job.limit)
                        }))
                        .unwrap_or_else(|p| Err(Error::callback(format!("loader panicked: {}", panic_text(&*p)))));
                        if done.send(Done { generation: job.generation, seq: job.seq, result }).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::io("cannot start a loader thread", &e))?;
        }
        Ok(Ahead {
            jobs: Some(job_tx),
            done: done_rx,
            window,
            generation: 0,
            next_seq: 0,
            issued: VecDeque::new(),
            arrived: HashMap::new(),
        })
    }
}

impl<T> Ahead<T> {
    fn issue(&mut self, page: OwnedPage, limit: usize, front: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(tx) = &self.jobs {
            let _ = tx.send(Job { generation: self.generation, seq, page: page.clone(), limit });
        }
        if front {
            self.issued.push_front((seq, page, limit));
        } else {
            self.issued.push_back((seq, page, limit));
        }
    }

    fn wait(&mut self, seq: u64) -> Loaded<T> {
        loop {
            if let Some(r) = self.arrived.remove(&seq) {
                return r;
            }
            match self.done.recv() {
                Ok(d) if d.generation == self.generation => {
                    self.arrived.insert(d.seq, d.result);
                }
                Ok(_) => {}
                Err(_) => return Err(Error::callback("the loader thread stopped")),
            }
        }
    }

    /// Forgets everything in flight: later results are ignored.
    fn reset(&mut self) {
        self.generation += 1;
        self.issued.clear();
        self.arrived.clear();
    }
}

impl<T> Drop for Ahead<T> {
    fn drop(&mut self) {
        // Closing the job channel ends the threads after their current load.
        self.jobs = None;
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

enum Backend<T, L> {
    Sync(L),
    Ahead(Ahead<T>),
}

/// Items loaded a batch at a time from a [`Loader`], on demand.
///
/// Two kinds of paging: `mode: 'offset'` calls the loader with `(offset, limit)` as the seed
/// does; `mode: 'keyset'` calls it with `(after_key, limit)`, the key of the previous batch's
/// last item. **Keyset is recommended**: with OFFSET the database reads and throws away every
/// row before the offset (quadratic over a whole table), and rows inserted or deleted during
/// the run shift the pages so that rows are skipped or seen twice; a keyset page starts right
/// after the last key seen and does neither.
///
/// `prefetch` (with [`with_threads`](Self::with_threads)) loads the next batch on a
/// background thread while the current one is consumed; `parallel_processing` in offset mode
/// keeps two batches loading ahead on two threads, delivered in order. Loaders that are not
/// `Send` (host callbacks) load synchronously with [`new`](Self::new), and the stats say
/// `prefetch_active: false`.
///
/// `error_handling`: `stop` returns the error; `retry` loads the page again up to
/// `retry_attempts` times; `continue` skips the page in offset mode (the next offset is known)
/// and records it, but cannot skip in keyset mode, where the next key is unknown: there it
/// returns an error saying so. Memory checks and `batch_size` shrinking work as in
/// [`StreamingIterator`]. [`rewind`](Self::rewind) always works: it replays the cache when
/// `cache_chunks` kept it, and loads again from the first page otherwise.
pub struct LazyIterator<T, L> {
    backend: Backend<T, L>,
    mode: PageMode,
    engine: Engine<T>,
    /// Offset of the next page to deliver (sync) or to issue (ahead).
    offset: u64,
    last_key: Option<Key>,
    done: bool,
    attempts: u32,
    buffer: VecDeque<T>,
}

fn copy_vec<T: Clone>(c: &[T]) -> Vec<T> {
    c.to_vec()
}

impl<T: Clone, L: Loader<T>> LazyIterator<T, L> {
    /// Loads on the calling thread; `prefetch` and `parallel_processing` have no effect.
    pub fn new(loader: L, cfg: &IterConfig) -> Result<Self> {
        Self::build(Backend::Sync(loader), cfg, Some(copy_vec::<T>), false, false)
    }
}

impl<T: Clone + Send + 'static, L: Loader<T> + Send + 'static> LazyIterator<T, L> {
    /// Honours `prefetch`: the next batch loads on a background thread while the current one
    /// is consumed (offset and keyset modes). `parallel_processing` is treated as `prefetch`
    /// here; [`with_threads`](Self::with_threads) loads two batches at once. Without either
    /// it is [`new`](Self::new).
    pub fn with_prefetch(loader: L, cfg: &IterConfig) -> Result<Self> {
        if cfg.prefetch || cfg.parallel_processing {
            Self::build(Backend::Ahead(Ahead::start(vec![loader], 1)?), cfg, Some(copy_vec::<T>), true, false)
        } else {
            Self::build(Backend::Sync(loader), cfg, Some(copy_vec::<T>), false, false)
        }
    }
}

impl<T: Clone + Send + 'static, L: Loader<T> + Clone + Send + 'static> LazyIterator<T, L> {
    /// As [`with_prefetch`](Self::with_prefetch), and `parallel_processing` in offset mode keeps
    /// two batches loading ahead on two threads (each with a clone of the loader), delivered in
    /// order. In keyset mode the next page needs the previous page's last key, so it
    /// prefetches one batch instead and the stats say `parallel_active: false`.
    pub fn with_threads(loader: L, cfg: &IterConfig) -> Result<Self> {
        if cfg.parallel_processing && cfg.mode == PageMode::Offset {
            let ahead = Ahead::start(vec![loader.clone(), loader], 2)?;
            Self::build(Backend::Ahead(ahead), cfg, Some(copy_vec::<T>), true, true)
        } else {
            Self::with_prefetch(loader, cfg)
        }
    }
}

impl<T, L: Loader<T>> LazyIterator<T, L> {
    /// For items that cannot be copied: `cache_chunks` is then an error.
    pub fn new_uncloneable(loader: L, cfg: &IterConfig) -> Result<Self> {
        Self::build(Backend::Sync(loader), cfg, None, false, false)
    }

    fn build(
        backend: Backend<T, L>,
        cfg: &IterConfig,
        cloner: Option<Cloner<T>>,
        prefetch: bool,
        parallel: bool,
    ) -> Result<Self> {
        let mut engine = Engine::new(cfg, cfg.batch_size, cloner)?;
        engine.stats.prefetch_active = prefetch;
        engine.stats.parallel_active = parallel;
        Ok(LazyIterator {
            backend,
            mode: cfg.mode,
            engine,
            offset: 0,
            last_key: None,
            done: false,
            attempts: 0,
            buffer: VecDeque::new(),
        })
    }

    /// Replaces the memory reader (default: this process's resident bytes).
    pub fn set_memory_reader(&mut self, reader: MemoryReader) {
        self.engine.set_memory_reader(reader);
    }

    /// Cleanup above the limit runs the manager's `force_garbage_collection()`.
    pub fn set_manager(&mut self, manager: Arc<MemoryManager>) {
        self.engine.set_cleanup(CleanupHook::Manager(manager), "manager");
    }

    /// Cleanup above the limit runs `f` (replaces a manager).
    pub fn set_cleanup(&mut self, f: CleanupFn) {
        self.engine.set_cleanup(CleanupHook::Callback(f), "callback");
    }

    pub fn stats(&self) -> &IterStats {
        &self.engine.stats
    }

    fn page(&self) -> OwnedPage {
        match self.mode {
            PageMode::Offset => OwnedPage::Offset(self.offset),
            PageMode::Keyset => OwnedPage::After(self.last_key.clone()),
        }
    }

    fn finish(&mut self) {
        self.done = true;
        if let Backend::Ahead(a) = &mut self.backend {
            a.reset();
        }
    }

    /// A failed page: `Ok(true)` to retry it, `Ok(false)` when skipped, `Err` to end.
    fn on_error(&mut self, e: Error) -> Result<bool> {
        self.engine.record_error(&e);
        match self.engine.error_handling {
            ErrorHandling::Retry if self.attempts < self.engine.retry_attempts => {
                self.attempts += 1;
                self.engine.stats.retries += 1;
                Ok(true)
            }
            ErrorHandling::Continue if self.mode == PageMode::Offset => {
                self.attempts = 0;
                self.engine.skip(e).inspect_err(|_| self.finish()).map(|_| false)
            }
            ErrorHandling::Continue => {
                self.finish();
                Err(Error::new(
                    e.kind(),
                    format!(
                        "{}; error_handling 'continue' cannot skip a batch in keyset mode because the key after it \
                         is unknown; use 'retry' or 'stop'",
                        e.message()
                    ),
                ))
            }
            _ => {
                self.finish();
                Err(e)
            }
        }
    }

    /// The next batch; empty at the end.
    pub fn next_batch(&mut self) -> Result<Vec<T>> {
        if let Some(c) = self.engine.replay_next() {
            return Ok(c);
        }
        if self.done {
            return Ok(Vec::new());
        }
        self.engine.before_pull()?;
        loop {
            let size = self.engine.size();
            let page = self.page();
            let (result, limit, prefetched) = match &mut self.backend {
                Backend::Sync(loader) => (load_one(loader, &page, size), size, false),
                Backend::Ahead(a) => {
                    let prefetched = !a.issued.is_empty();
                    if a.issued.is_empty() {
                        if self.mode == PageMode::Offset {
                            self.offset += size as u64;
                        }
                        a.issue(page, size, false);
                    }
                    let (seq, page, limit) = a.issued.front().cloned().expect("a page was issued");
                    let r = a.wait(seq);
                    a.issued.pop_front();
                    if r.is_err() && self.engine.error_handling == ErrorHandling::Retry {
                        // Re-issued at the front so that it is delivered before the pages ahead.
                        if self.attempts < self.engine.retry_attempts {
                            a.issue(page, limit, true);
                        }
                    }
                    (r, limit, prefetched)
                }
            };
            match result {
                Ok((batch, _)) if batch.is_empty() => {
                    self.attempts = 0;
                    self.finish();
                    self.engine.ended();
                    return Ok(batch);
                }
                Ok((batch, key)) => {
                    self.attempts = 0;
                    if prefetched {
                        self.engine.stats.prefetched += 1;
                    }
                    match &mut self.backend {
                        Backend::Sync(_) => match self.mode {
                            PageMode::Offset => self.offset += limit as u64,
                            PageMode::Keyset => self.last_key = key,
                        },
                        Backend::Ahead(a) => match self.mode {
                            PageMode::Offset => {
                                while a.issued.len() < a.window {
                                    a.issue(OwnedPage::Offset(self.offset), size, false);
                                    self.offset += size as u64;
                                }
                            }
                            PageMode::Keyset => {
                                self.last_key = key;
                                a.issue(OwnedPage::After(self.last_key.clone()), size, false);
                            }
                        },
                    }
                    self.engine.delivered(&batch);
                    return Ok(batch);
                }
                Err(e) => {
                    let retry = self.on_error(e)?;
                    if !retry && let Backend::Sync(_) = self.backend {
                        self.offset += limit as u64;
                    }
                }
            }
        }
    }

    /// Starts again from the first item: replays the cache when `cache_chunks` kept it
    /// (loading on after the cached batches if the run had not ended), otherwise loads again
    /// from the first page.
    pub fn rewind(&mut self) -> Result<()> {
        self.buffer.clear();
        if self.engine.rewind_cache() {
            return Ok(());
        }
        if let Backend::Ahead(a) = &mut self.backend {
            a.reset();
        }
        self.offset = 0;
        self.last_key = None;
        self.done = false;
        self.attempts = 0;
        self.engine.stats.finished = false;
        if self.engine.cloner.is_some() && self.engine.stats.cache_dropped {
            // A fresh pass may cache again.
            self.engine.caching = true;
        }
        Ok(())
    }
}

impl<T, L: Loader<T>> Iterator for LazyIterator<T, L> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(x) = self.buffer.pop_front() {
                return Some(Ok(x));
            }
            match self.next_batch() {
                Ok(b) if b.is_empty() => return None,
                Ok(b) => self.buffer.extend(b),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl<T, L: Loader<T>> ChunkSource<T> for LazyIterator<T, L> {
    fn next_chunk(&mut self, _max: usize) -> Result<Vec<T>> {
        self.next_batch()
    }
}

// ---- FilteredIterator ------------------------------------------------------------

/// How often one filter ran and said no.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilterCount {
    pub evaluated: u64,
    pub rejected: u64,
}

/// What a [`FilteredIterator`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilterStats {
    pub items_seen: u64,
    pub passed: u64,
    pub rejected: u64,
    pub filters: Vec<FilterCount>,
    pub early_exit: bool,
}

impl FilterStats {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("stats serialize")
    }
}

/// A filter: `Ok(true)` keeps the item.
pub type Filter<T> = Box<dyn FnMut(&T) -> Result<bool>>;

/// The items of `inner` that every filter accepts, filters applied in order.
///
/// With `early_exit` (default) an item's filters stop at the first that rejects it; without,
/// every filter sees every item (for filters that count) and the item passes only if all
/// accepted. A filter error ends the iteration and is returned; so is an error of `inner`.
pub struct FilteredIterator<T, I, F = Filter<T>> {
    inner: I,
    filters: Vec<F>,
    early_exit: bool,
    stats: FilterStats,
    done: bool,
    pending: Option<Error>,
    _t: PhantomData<fn() -> T>,
}

impl<T, I, F> FilteredIterator<T, I, F>
where
    I: Iterator<Item = Result<T>>,
    F: FnMut(&T) -> Result<bool>,
{
    pub fn new(inner: I, filters: Vec<F>, cfg: &IterConfig) -> Self {
        let stats = FilterStats {
            filters: vec![FilterCount::default(); filters.len()],
            early_exit: cfg.early_exit,
            ..Default::default()
        };
        FilteredIterator {
            inner,
            filters,
            early_exit: cfg.early_exit,
            stats,
            done: false,
            pending: None,
            _t: PhantomData,
        }
    }

    pub fn stats(&self) -> &FilterStats {
        &self.stats
    }

    pub fn inner(&self) -> &I {
        &self.inner
    }

    fn accept(&mut self, item: &T) -> Result<bool> {
        self.stats.items_seen += 1;
        let mut keep = true;
        for (f, count) in self.filters.iter_mut().zip(self.stats.filters.iter_mut()) {
            count.evaluated += 1;
            if !f(item)? {
                count.rejected += 1;
                keep = false;
                if self.early_exit {
                    break;
                }
            }
        }
        if keep {
            self.stats.passed += 1;
        } else {
            self.stats.rejected += 1;
        }
        Ok(keep)
    }

    /// Up to `max` passing items; fewer only at the end, which is an empty vector. An error
    /// met after some items were collected is returned by the next call.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<T>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.next() {
                Some(Ok(x)) => out.push(x),
                Some(Err(e)) if out.is_empty() => return Err(e),
                Some(Err(e)) => {
                    self.pending = Some(e);
                    break;
                }
                None => break,
            }
        }
        Ok(out)
    }
}

impl<T, I, F> Iterator for FilteredIterator<T, I, F>
where
    I: Iterator<Item = Result<T>>,
    F: FnMut(&T) -> Result<bool>,
{
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        if self.done {
            return None;
        }
        loop {
            let item = match self.inner.next() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(x)) => x,
            };
            match self.accept(&item) {
                Ok(true) => return Some(Ok(item)),
                Ok(false) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    fn cfg(v: Value) -> IterConfig {
        IterConfig::from_json("iterator", &v).unwrap()
    }

    fn numbers(n: u32) -> IterSource<std::ops::Range<u32>> {
        IterSource(0..n)
    }

    /// A reader that returns the values it is given, then repeats the last.
    fn scripted(values: Vec<u64>) -> MemoryReader {
        let mut i = 0;
        Box::new(move || {
            let v = values[i.min(values.len() - 1)];
            i += 1;
            v
        })
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = IterConfig::from_json("StreamingIterator", &Value::Null).unwrap();
        assert_eq!((c.chunk_size, c.batch_size, c.memory_limit), (1000, 1000, 128 << 20));
        assert!(c.auto_gc && !c.prefetch && !c.cache_chunks && !c.parallel_processing && c.early_exit);
        assert_eq!((c.error_handling, c.retry_attempts, c.mode), (ErrorHandling::Continue, 3, PageMode::Offset));
        let e = IterConfig::from_json("StreamingIterator", &json!({"chunk_size": 0})).unwrap_err();
        assert!(e.message().contains("'chunk_size'") && e.message().contains("> 0"), "{e}");
        let e = IterConfig::from_json("StreamingIterator", &json!({"chunk_sise": 5})).unwrap_err();
        assert!(e.message().contains("did you mean 'chunk_size'"), "{e}");
        let e = IterConfig::from_json("StreamingIterator", &json!({"batch_size": 5})).unwrap_err();
        assert!(e.message().contains("unknown key 'batch_size'"), "{e}");
        let e = IterConfig::from_json("LazyIterator", &json!({"mode": "cursor"})).unwrap_err();
        assert!(e.message().contains("'mode'") && e.message().contains("'keyset'"), "{e}");
        let e = IterConfig::from_json("LazyIterator", &json!({"error_handling": "ignore"})).unwrap_err();
        assert!(e.message().contains("'error_handling'"), "{e}");
        let e = IterConfig::from_json("LazyIterator", &json!({"memory_limit": "12X"})).unwrap_err();
        assert!(e.message().contains("'memory_limit'") && e.message().contains("'12X'"), "{e}");
        let c = IterConfig::from_json(
            "LazyIterator",
            &json!({"memory_limit": "1K", "batch_size": 500, "prefetch": true, "mode": "keyset", "key": "id"}),
        )
        .unwrap();
        assert_eq!((c.memory_limit, c.batch_size, c.key.as_deref()), (1024, 500, Some("id")));
        assert_eq!(cfg(json!({"memory_limit": 4096})).memory_limit, 4096);
        assert_eq!(cfg(json!({"memory_limit": -1})).memory_limit, u64::MAX);
        let f = IterConfig::from_json("FilteredIterator", &json!({"filters": [1, 2], "early_exit": false})).unwrap();
        assert!(!f.early_exit);
    }

    #[test]
    fn streams_chunks_of_the_configured_size() {
        let mut it = StreamingIterator::new(numbers(25), &cfg(json!({"chunk_size": 10}))).unwrap();
        let sizes: Vec<usize> = it.by_ref().map(|c| c.unwrap().len()).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        let s = it.stats();
        assert_eq!((s.chunks, s.items, s.chunk_size, s.finished), (3, 25, 10, true));
        let items: Vec<u32> = StreamingIterator::new(numbers(7), &cfg(json!({"chunk_size": 3})))
            .unwrap()
            .items()
            .map(|x| x.unwrap())
            .collect();
        assert_eq!(items, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn memory_growth_runs_cleanup_then_halves_the_chunk_size() {
        let c = cfg(json!({"chunk_size": 8, "memory_limit": 1000}));
        let mut it = StreamingIterator::new(numbers(100), &c).unwrap();
        // baseline 0; before chunk 2: 5000 (over), after cleanup 5000 (still over) -> halve;
        // before chunk 3: 2000, after cleanup 500 (fine); then 0.
        it.set_memory_reader(scripted(vec![0, 5000, 5000, 2000, 500, 0]));
        let cleanups = Arc::new(AtomicUsize::new(0));
        let c2 = cleanups.clone();
        it.set_cleanup(Box::new(move || {
            c2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        let sizes: Vec<usize> = (0..4).map(|_| it.next_chunk().unwrap().len()).collect();
        assert_eq!(sizes, vec![8, 4, 4, 4]);
        let s = it.stats();
        assert_eq!(cleanups.load(Ordering::SeqCst), 2);
        assert_eq!((s.cleanups, s.chunk_size_reductions, s.chunk_size, s.initial_chunk_size), (2, 1, 4, 8));
        assert_eq!(s.peak_memory_growth_bytes, 5000);
        assert_eq!(s.memory_source, "custom");
        assert_eq!(s.memory_checks, 6);
    }

    #[test]
    fn without_auto_gc_no_cleanup_runs_and_the_size_bottoms_out_at_one() {
        let c = cfg(json!({"chunk_size": 4, "memory_limit": 10, "auto_gc": false}));
        let mut it = StreamingIterator::new(numbers(100), &c).unwrap();
        it.set_memory_reader(scripted(vec![0, 100]));
        let called = Arc::new(AtomicUsize::new(0));
        let c2 = called.clone();
        it.set_cleanup(Box::new(move || {
            c2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        let sizes: Vec<usize> = (0..5).map(|_| it.next_chunk().unwrap().len()).collect();
        assert_eq!(sizes, vec![4, 2, 1, 1, 1]);
        assert_eq!(called.load(Ordering::SeqCst), 0);
        assert_eq!((it.stats().cleanups, it.stats().chunk_size_reductions), (0, 2));
    }

    #[test]
    fn a_manager_collects_when_growth_exceeds_the_limit() {
        let m = Arc::new(MemoryManager::from_json(&Value::Null).unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let h2 = hits.clone();
        m.on_before_gc(Arc::new(move || {
            h2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        let mut it = StreamingIterator::new(numbers(10), &cfg(json!({"chunk_size": 2, "memory_limit": 10}))).unwrap();
        it.set_manager(m);
        it.set_memory_reader(scripted(vec![0, 50, 0]));
        it.next_chunk().unwrap();
        it.next_chunk().unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!((it.stats().cleanups, it.stats().chunk_size_reductions, it.stats().cleanup), (1, 0, "manager"));
    }

    /// Fails at the given call numbers (0-based), otherwise yields `chunk` items per call.
    struct Flaky {
        calls: u32,
        fail: Vec<u32>,
        left: u32,
    }

    impl ChunkSource<u32> for Flaky {
        fn next_chunk(&mut self, max: usize) -> Result<Vec<u32>> {
            let call = self.calls;
            self.calls += 1;
            if self.fail.contains(&call) {
                return Err(Error::callback(format!("boom {call}")));
            }
            let n = (max as u32).min(self.left);
            self.left -= n;
            Ok((0..n).map(|i| call * 100 + i).collect())
        }
    }

    #[test]
    fn error_handling_stop_continue_retry() {
        let flaky = |fail: Vec<u32>| Flaky { calls: 0, fail, left: 6 };
        let mut it =
            StreamingIterator::new(flaky(vec![1]), &cfg(json!({"chunk_size": 2, "error_handling": "stop"}))).unwrap();
        assert_eq!(it.next_chunk().unwrap().len(), 2);
        assert_eq!(it.next_chunk().unwrap_err().message(), "boom 1");
        assert!(it.next_chunk().unwrap().is_empty(), "a stopped iterator stays ended");
        assert_eq!(it.stats().errors, vec![ChunkError { chunk: 1, message: "boom 1".into() }]);

        let mut it = StreamingIterator::new(flaky(vec![1, 2]), &cfg(json!({"chunk_size": 2}))).unwrap();
        let chunks: Vec<Vec<u32>> = it.by_ref().map(|c| c.unwrap()).collect();
        assert_eq!(chunks, vec![vec![0, 1], vec![300, 301], vec![400, 401]]);
        assert_eq!((it.stats().skipped_chunks, it.stats().error_count), (2, 2));
        assert_eq!(it.stats().errors[1].chunk, 2);

        let retry = cfg(json!({"chunk_size": 2, "error_handling": "retry", "retry_attempts": 2}));
        let mut it = StreamingIterator::new(flaky(vec![1, 2]), &retry).unwrap();
        assert_eq!(it.by_ref().map(|c| c.unwrap().len()).sum::<usize>(), 6);
        assert_eq!((it.stats().retries, it.stats().skipped_chunks), (2, 0));
        let mut it = StreamingIterator::new(flaky(vec![1, 2, 3]), &retry).unwrap();
        it.next_chunk().unwrap();
        assert_eq!(it.next_chunk().unwrap_err().message(), "boom 3");
        assert_eq!(it.stats().retries, 2);
    }

    #[test]
    fn continue_gives_up_on_a_source_that_always_fails() {
        let mut it = StreamingIterator::new(
            FnSource(|_| -> Result<Vec<u8>> { Err(Error::callback("down")) }),
            &cfg(Value::Null),
        )
        .unwrap();
        let e = it.next_chunk().unwrap_err();
        assert!(e.message().contains("giving up") && e.message().contains("down"), "{e}");
    }

    #[test]
    fn cache_replays_without_the_source() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let mut n = 0u32;
        let src = FnSource(move |max: usize| {
            c2.fetch_add(1, Ordering::SeqCst);
            let out: Vec<u32> = (n..(n + max as u32).min(5)).collect();
            n += out.len() as u32;
            Ok(out)
        });
        let mut it = StreamingIterator::new(src, &cfg(json!({"chunk_size": 2, "cache_chunks": true}))).unwrap();
        let first: Vec<Vec<u32>> = it.by_ref().map(|c| c.unwrap()).collect();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(it.stats().cache_complete);
        it.rewind().unwrap();
        let again: Vec<Vec<u32>> = it.by_ref().map(|c| c.unwrap()).collect();
        assert_eq!(first, again);
        assert_eq!(calls.load(Ordering::SeqCst), 4, "the replay must not call the source");
        assert_eq!(it.stats().replayed_chunks, 3);
    }

    #[test]
    fn rewind_mid_stream_replays_the_prefix_then_continues() {
        let mut it = StreamingIterator::new(numbers(6), &cfg(json!({"chunk_size": 2, "cache_chunks": true}))).unwrap();
        assert_eq!(it.next_chunk().unwrap(), vec![0, 1]);
        it.rewind().unwrap();
        let all: Vec<u32> = it.by_ref().flat_map(|c| c.unwrap()).collect();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn rewind_errors_when_the_cache_was_dropped_or_is_off() {
        let e = StreamingIterator::new(numbers(3), &cfg(Value::Null)).unwrap().rewind().unwrap_err();
        assert!(e.message().contains("cache_chunks is off"), "{e}");
        let c = cfg(json!({"chunk_size": 1, "cache_chunks": true, "memory_limit": 10}));
        let mut it = StreamingIterator::new(numbers(5), &c).unwrap();
        it.set_memory_reader(scripted(vec![0, 0, 0, 100]));
        let n = it.by_ref().count();
        assert_eq!(n, 5);
        assert!(it.stats().cache_dropped && !it.stats().cache_complete);
        let e = it.rewind().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_eq!(
            e.message(),
            "source cannot be replayed: the cache was dropped at 3 chunks because memory_limit was exceeded; \
             set cache_chunks with a larger memory_limit"
        );
    }

    #[test]
    fn uncloneable_items_refuse_cache_chunks() {
        struct NoClone;
        let src = FnSource(|_| Ok(vec![NoClone]));
        let e = StreamingIterator::new_uncloneable(src, &cfg(json!({"cache_chunks": true}))).err().unwrap();
        assert!(e.message().contains("cache_chunks"));
    }

    fn table(n: i64) -> Vec<(i64, String)> {
        (1..=n).map(|i| (i * 10, format!("row{i}"))).collect()
    }

    #[allow(clippy::type_complexity)]
    fn offset_loader(
        rows: Vec<(i64, String)>,
        calls: Arc<AtomicUsize>,
    ) -> OffsetFn<impl FnMut(u64, usize) -> Result<Vec<(i64, String)>> + Clone> {
        OffsetFn(move |offset: u64, limit: usize| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(rows.iter().skip(offset as usize).take(limit).cloned().collect())
        })
    }

    #[allow(clippy::type_complexity)]
    fn keyset_loader(
        rows: Vec<(i64, String)>,
    ) -> KeysetFn<
        impl FnMut(Option<&Key>, usize) -> Result<Vec<(i64, String)>> + Clone,
        impl Fn(&(i64, String)) -> Result<Key> + Clone,
    > {
        KeysetFn(
            move |after: Option<&Key>, limit: usize| {
                let after = match after {
                    None => i64::MIN,
                    Some(Key::Int(k)) => *k,
                    Some(k) => return Err(Error::invalid_argument(format!("bad key {k:?}"))),
                };
                Ok(rows.iter().filter(|r| r.0 > after).take(limit).cloned().collect())
            },
            |r: &(i64, String)| Ok(Key::Int(r.0)),
        )
    }

    #[test]
    fn lazy_offset_and_keyset_yield_every_row_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = cfg(json!({"batch_size": 4}));
        let mut it = LazyIterator::new(offset_loader(table(10), calls.clone()), &c).unwrap();
        let rows: Vec<_> = it.by_ref().map(|r| r.unwrap()).collect();
        assert_eq!(rows, table(10));
        assert_eq!(calls.load(Ordering::SeqCst), 4, "3 pages and the empty one");
        assert_eq!((it.stats().chunks, it.stats().items), (3, 10));

        let mut it =
            LazyIterator::new(keyset_loader(table(10)), &cfg(json!({"batch_size": 3, "mode": "keyset"}))).unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| Some(it.next_batch().unwrap().len())).take(5).collect();
        assert_eq!(sizes, vec![3, 3, 3, 1, 0]);
        assert!(it.stats().finished);
    }

    #[test]
    fn keyset_never_skips_when_rows_are_deleted_during_the_run() {
        // The loader sees a table from which the first batch's rows are deleted after loading.
        let rows = Arc::new(Mutex::new(table(6)));
        let r2 = rows.clone();
        let loader = KeysetFn(
            move |after: Option<&Key>, limit: usize| {
                let a = match after {
                    Some(Key::Int(k)) => *k,
                    _ => i64::MIN,
                };
                Ok(r2.lock().unwrap().iter().filter(|r| r.0 > a).take(limit).cloned().collect::<Vec<_>>())
            },
            |r: &(i64, String)| Ok(Key::Int(r.0)),
        );
        let mut it = LazyIterator::new(loader, &cfg(json!({"batch_size": 2, "mode": "keyset"}))).unwrap();
        let mut seen = it.next_batch().unwrap();
        rows.lock().unwrap().retain(|r| r.0 > 20);
        while let Ok(b) = it.next_batch() {
            if b.is_empty() {
                break;
            }
            seen.extend(b);
        }
        assert_eq!(seen, table(6));
    }

    #[test]
    fn lazy_error_handling() {
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = |fail_at: Vec<u64>, calls: Arc<AtomicUsize>| {
            OffsetFn(move |offset: u64, limit: usize| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if fail_at.contains(&offset) && n < 100 {
                    return Err(Error::callback(format!("db down at {offset}")));
                }
                Ok((offset..(offset + limit as u64).min(9)).collect::<Vec<u64>>())
            })
        };
        // continue skips the failed page (offset += limit).
        let mut it = LazyIterator::new(failing(vec![3], calls.clone()), &cfg(json!({"batch_size": 3}))).unwrap();
        let got: Vec<u64> = it.by_ref().map(|r| r.unwrap()).collect();
        assert_eq!(got, vec![0, 1, 2, 6, 7, 8]);
        assert_eq!(it.stats().skipped_chunks, 1);
        assert_eq!(it.stats().errors[0].message, "db down at 3");
        // retry loads the same page again.
        let c = cfg(json!({"batch_size": 3, "error_handling": "retry", "retry_attempts": 1}));
        let flaky = Arc::new(AtomicUsize::new(0));
        let f2 = flaky.clone();
        let loader = OffsetFn(move |offset: u64, limit: usize| {
            if offset == 3 && f2.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(Error::callback("once"));
            }
            Ok((offset..(offset + limit as u64).min(9)).collect::<Vec<u64>>())
        });
        let got: Vec<u64> = LazyIterator::new(loader, &c).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(got, (0..9).collect::<Vec<_>>());
        // stop returns it.
        let mut it =
            LazyIterator::new(failing(vec![0], calls.clone()), &cfg(json!({"error_handling": "stop"}))).unwrap();
        assert!(it.next_batch().unwrap_err().message().contains("db down at 0"));
        // keyset cannot skip.
        let loader = KeysetFn(
            |_: Option<&Key>, _: usize| -> Result<Vec<i64>> { Err(Error::callback("nope")) },
            |x: &i64| Ok(Key::Int(*x)),
        );
        let e = LazyIterator::new(loader, &cfg(json!({"mode": "keyset"}))).unwrap().next_batch().unwrap_err();
        assert!(e.message().contains("nope") && e.message().contains("keyset"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Callback);
    }

    #[test]
    fn prefetch_gives_the_same_sequence_from_another_thread() {
        let main = std::thread::current().id();
        let off_thread = Arc::new(AtomicUsize::new(0));
        for mode in ["offset", "keyset"] {
            let c = cfg(json!({"batch_size": 3, "mode": mode, "prefetch": true}));
            let plain_c = cfg(json!({"batch_size": 3, "mode": mode}));
            let rows = table(11);
            let o2 = off_thread.clone();
            let seen_thread = move || {
                if std::thread::current().id() != main {
                    o2.fetch_add(1, Ordering::SeqCst);
                }
            };
            let (pre, plain): (Vec<_>, Vec<_>) = if mode == "offset" {
                let st = seen_thread.clone();
                let inner = offset_loader(rows.clone(), Arc::new(AtomicUsize::new(0)));
                let mut inner2 = inner.clone();
                let wrapped = OffsetFn(move |o, l| {
                    st();
                    (inner2.0)(o, l)
                });
                let it = LazyIterator::with_prefetch(wrapped, &c).unwrap();
                assert!(it.stats().prefetch_active);
                (
                    it.map(|r| r.unwrap()).collect(),
                    LazyIterator::new(inner, &plain_c).unwrap().map(|r| r.unwrap()).collect(),
                )
            } else {
                let st = seen_thread.clone();
                let k = keyset_loader(rows.clone());
                let mut load = k.0.clone();
                let wrapped = KeysetFn(
                    move |a: Option<&Key>, l| {
                        st();
                        load(a, l)
                    },
                    k.1.clone(),
                );
                let mut it = LazyIterator::with_prefetch(wrapped, &c).unwrap();
                let mut got = Vec::new();
                loop {
                    let b = it.next_batch().unwrap();
                    if b.is_empty() {
                        break;
                    }
                    got.extend(b);
                }
                assert!(it.stats().prefetched >= 3, "{:?}", it.stats());
                (got, LazyIterator::new(k, &plain_c).unwrap().map(|r| r.unwrap()).collect())
            };
            assert_eq!(pre, plain);
            assert_eq!(pre, rows);
        }
        assert!(off_thread.load(Ordering::SeqCst) >= 8, "loads must run off the calling thread");
    }

    #[test]
    fn parallel_delivers_in_order_with_two_loads_in_flight() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let (f, m) = (in_flight.clone(), max_seen.clone());
        let loader = OffsetFn(move |offset: u64, limit: usize| {
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            // Later pages answer faster, so out-of-order arrival is the normal case.
            std::thread::sleep(std::time::Duration::from_millis(20u64.saturating_sub(offset / 2)));
            f.fetch_sub(1, Ordering::SeqCst);
            Ok((offset..(offset + limit as u64).min(40)).collect::<Vec<u64>>())
        });
        let c = cfg(json!({"batch_size": 4, "parallel_processing": true}));
        let mut it = LazyIterator::with_threads(loader, &c).unwrap();
        assert!(it.stats().parallel_active);
        let mut got = Vec::new();
        loop {
            let b = it.next_batch().unwrap();
            if b.is_empty() {
                break;
            }
            // Consuming takes a while, so the loads ahead overlap.
            std::thread::sleep(std::time::Duration::from_millis(25));
            got.extend(b);
        }
        assert_eq!(got, (0..40).collect::<Vec<_>>());
        assert_eq!(max_seen.load(Ordering::SeqCst), 2, "two batches load at once");
        assert!(it.stats().prefetched >= 9);
    }

    #[test]
    fn parallel_continue_skips_and_retry_reloads_in_order() {
        let tries = Arc::new(AtomicUsize::new(0));
        let t2 = tries.clone();
        let loader = OffsetFn(move |offset: u64, limit: usize| {
            if offset == 4 && t2.fetch_add(1, Ordering::SeqCst) < 1 {
                return Err(Error::callback("flaky"));
            }
            Ok((offset..(offset + limit as u64).min(12)).collect::<Vec<u64>>())
        });
        let c = cfg(json!({"batch_size": 2, "parallel_processing": true, "error_handling": "retry"}));
        let got: Vec<u64> = LazyIterator::with_threads(loader.clone(), &c).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(got, (0..12).collect::<Vec<_>>());
        let always = OffsetFn(|offset: u64, limit: usize| {
            if offset == 4 {
                return Err(Error::callback("bad page"));
            }
            Ok((offset..(offset + limit as u64).min(12)).collect::<Vec<u64>>())
        });
        let c = cfg(json!({"batch_size": 2, "parallel_processing": true}));
        let mut it = LazyIterator::with_threads(always, &c).unwrap();
        let got: Vec<u64> = it.by_ref().map(|r| r.unwrap()).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 6, 7, 8, 9, 10, 11]);
        assert_eq!(it.stats().skipped_chunks, 1);
    }

    #[test]
    fn lazy_cache_replays_without_loading_and_rewind_reloads_otherwise() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = cfg(json!({"batch_size": 4, "cache_chunks": true}));
        let mut it = LazyIterator::new(offset_loader(table(9), calls.clone()), &c).unwrap();
        let first: Vec<_> = it.by_ref().map(|r| r.unwrap()).collect();
        let loads = calls.load(Ordering::SeqCst);
        it.rewind().unwrap();
        let again: Vec<_> = it.by_ref().map(|r| r.unwrap()).collect();
        assert_eq!(first, again);
        assert_eq!(calls.load(Ordering::SeqCst), loads, "the cache answers");

        let mut it = LazyIterator::new(offset_loader(table(5), calls.clone()), &cfg(json!({"batch_size": 2}))).unwrap();
        let first: Vec<_> = it.by_ref().map(|r| r.unwrap()).collect();
        let before = calls.load(Ordering::SeqCst);
        it.rewind().unwrap();
        let again: Vec<_> = it.by_ref().map(|r| r.unwrap()).collect();
        assert_eq!(first, again);
        assert!(calls.load(Ordering::SeqCst) > before, "no cache: loads again");
    }

    #[test]
    fn lazy_batch_size_shrinks_under_memory_pressure() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut it =
            LazyIterator::new(offset_loader(table(20), calls), &cfg(json!({"batch_size": 8, "memory_limit": 100})))
                .unwrap();
        let grown = Arc::new(AtomicU64::new(0));
        let g2 = grown.clone();
        it.set_memory_reader(Box::new(move || g2.load(Ordering::SeqCst)));
        assert_eq!(it.next_batch().unwrap().len(), 8);
        grown.store(1000, Ordering::SeqCst);
        let b = it.next_batch().unwrap();
        assert_eq!(b.len(), 4);
        assert_eq!(b[0].0, 90, "the next page starts after the first");
        let rest: Vec<_> = it.by_ref().map(|r| r.unwrap()).collect();
        assert_eq!(rest.len(), 8);
        assert!(it.stats().chunk_size_reductions >= 1);
    }

    #[test]
    fn filters_count_with_and_without_early_exit() {
        let run = |early: bool| {
            let src = (0..10).map(Ok::<i32, Error>);
            let filters: Vec<Filter<i32>> = vec![Box::new(|x: &i32| Ok(x % 2 == 0)), Box::new(|x: &i32| Ok(*x > 3))];
            let mut it = FilteredIterator::new(src, filters, &cfg(json!({"early_exit": early})));
            let got: Vec<i32> = it.by_ref().map(|r| r.unwrap()).collect();
            (got, it.stats().clone())
        };
        let (got, s) = run(true);
        assert_eq!(got, vec![4, 6, 8]);
        assert_eq!((s.items_seen, s.passed, s.rejected), (10, 3, 7));
        assert_eq!(
            s.filters,
            vec![FilterCount { evaluated: 10, rejected: 5 }, FilterCount { evaluated: 5, rejected: 2 }]
        );
        let (got, s) = run(false);
        assert_eq!(got, vec![4, 6, 8]);
        assert_eq!((s.items_seen, s.passed, s.rejected), (10, 3, 7));
        assert_eq!(
            s.filters,
            vec![FilterCount { evaluated: 10, rejected: 5 }, FilterCount { evaluated: 10, rejected: 4 }]
        );
    }

    #[test]
    fn filter_batches_and_errors() {
        let stream = StreamingIterator::new(numbers(50), &cfg(json!({"chunk_size": 7}))).unwrap().items();
        let filters: Vec<Filter<u32>> = vec![Box::new(|x: &u32| {
            if *x == 40 { Err(Error::callback("filter failed on 40")) } else { Ok(x.is_multiple_of(3)) }
        })];
        let mut it = FilteredIterator::new(stream, filters, &IterConfig::default());
        assert_eq!(it.next_batch(5).unwrap(), vec![0, 3, 6, 9, 12]);
        assert_eq!(it.next_batch(100).unwrap(), vec![15, 18, 21, 24, 27, 30, 33, 36, 39]);
        assert_eq!(it.next_batch(100).unwrap_err().message(), "filter failed on 40");
        assert!(it.next_batch(100).unwrap().is_empty(), "a filter error stops the iteration");
        assert_eq!(it.inner().inner().stats().items, 42);
    }
}
