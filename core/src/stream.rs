//! Streamflow's chunked stream processing (seed 004, "Memory vs Performance"): a file or a
//! host stream is read in chunks of `chunkSize`, at most `concurrentStreams` chunk handlers run
//! at once, every chunk in flight is tracked in a [`ResourceTracker`], reading pauses while
//! admitting another chunk would take the tracker over its warning threshold (backpressure),
//! chunks are optionally gzip-compressed (`compressionEnabled`), and `performance` events carry
//! `speed`, `memoryUsage` and `processingTime`.
//!
//! Two layers:
//! 1. a driver for hosts that run their own loop (Node's event loop, PHP): [`StreamProcessor::admit`]
//!    / [`StreamProcessor::wait_admit`] before reading a chunk, [`StreamProcessor::finish`] (or
//!    [`StreamProcessor::cancel`]) when its handler is done, [`StreamProcessor::compress`],
//!    [`StreamProcessor::end`] for the summary;
//! 2. [`StreamProcessor::process_reader`] / [`StreamProcessor::process_file`], which run the
//!    whole loop here, handlers on up to `concurrentStreams` worker threads (on the calling
//!    thread when `concurrentStreams` is 1).
//!
//! The bound: a chunk is admitted only when fewer than `concurrentStreams` are in flight and the
//! tracker, with the chunk added, stays at or below `thresholds.warning * maxMemoryUsage`; when
//! nothing is in flight one chunk is always admitted so progress never stops. `chunkSize` may
//! not exceed `maxMemoryUsage`, so the tracked bytes never exceed `maxMemoryUsage` (unless
//! a tracker shared with other users is already over it by itself).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};

use crate::config::{ConfigReader, describe};
use crate::error::{Error, ErrorKind, Result};
use crate::probe::ProcessProbe;
use crate::size::{MIB, Size, parse_size};
use crate::tracker::{ResourceTracker, TrackerConfig, TrackerEvent};

const EVENT_QUEUE: usize = 1024;
const COMPONENT: &str = "StreamProcessor";

/// Config with the seed's keys (camelCase), snake_case aliases accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Bytes per chunk (default 1 MiB, the seed's `1024 * 1024`).
    pub chunk_size: u64,
    /// Chunk handlers running at once (default 3, the seed's "moderate concurrency").
    pub concurrent_streams: usize,
    /// Gzip every chunk before its handler sees it (default false).
    pub compression_enabled: bool,
    /// The processor's own tracker: `maxMemoryUsage`, `thresholds`, `cleanupInterval`.
    pub tracker: TrackerConfig,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            chunk_size: MIB,
            concurrent_streams: 3,
            compression_enabled: false,
            tracker: TrackerConfig::default(),
        }
    }
}

const KEYS: &[&str] = &[
    "chunkSize",
    "chunk_size",
    "concurrentStreams",
    "concurrent_streams",
    "compressionEnabled",
    "compression_enabled",
    "maxMemoryUsage",
    "max_memory_usage",
    "thresholds",
    "cleanupInterval",
    "cleanup_interval",
];

/// Keys that configure the processor's own tracker.
const TRACKER_KEYS: &[&str] =
    &["maxMemoryUsage", "max_memory_usage", "thresholds", "cleanupInterval", "cleanup_interval"];

/// The key actually given among a camelCase name and its snake_case alias.
fn pick(r: &ConfigReader<'_>, camel: &'static str, snake: &'static str) -> Result<&'static str> {
    match (r.get(camel), r.get(snake)) {
        (Some(_), Some(_)) => Err(Error::invalid_config(format!(
            "{COMPONENT} config: '{camel}' and '{snake}' are the same option; give one"
        ))),
        (None, Some(_)) => Ok(snake),
        _ => Ok(camel),
    }
}

/// A size in bytes: a whole number or a string such as `"1M"`.
fn size_key(r: &ConfigReader<'_>, key: &str) -> Result<Option<u64>> {
    let expected = "a number of bytes > 0 or a size such as '1M'";
    match r.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => match parse_size(s) {
            Ok(Size::Bytes(0)) | Ok(Size::Unlimited) => Err(r.bad(key, expected)),
            Ok(Size::Bytes(n)) => Ok(Some(n)),
            Err(e) => {
                Err(Error::invalid_config(format!("{COMPONENT} config: invalid value for '{key}': {}", e.message())))
            }
        },
        Some(v) => match v.as_u64() {
            Some(0) | None => {
                let why = if v.as_i64().is_some_and(|n| n < 0) { " (negative sizes are not allowed)" } else { "" };
                Err(Error::invalid_config(format!(
                    "{COMPONENT} config: invalid value for '{key}': expected {expected}, got {}{why}",
                    describe(v)
                )))
            }
            Some(n) => Ok(Some(n)),
        },
    }
}

impl StreamConfig {
    /// Parses the seed's keys: `chunkSize` (bytes or "1M"), `concurrentStreams` (>= 1),
    /// `compressionEnabled`, and for the tracker `maxMemoryUsage` (bytes or "100M"),
    /// `thresholds` `{warning, critical}`, `cleanupInterval` (ms). Unknown keys are errors.
    pub fn from_json(v: &Value) -> Result<Self> {
        let c = Self::parse(v)?;
        c.check_against(c.tracker.max_memory_usage)?;
        Ok(c)
    }

    fn parse(v: &Value) -> Result<Self> {
        let r = ConfigReader::new(COMPONENT, v, KEYS)?;
        let d = StreamConfig::default();
        let ck = pick(&r, "chunkSize", "chunk_size")?;
        let chunk_size = size_key(&r, ck)?.unwrap_or(d.chunk_size);
        let cs = pick(&r, "concurrentStreams", "concurrent_streams")?;
        let concurrent_streams = match r.get(cs) {
            None => d.concurrent_streams,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=1024).contains(&n) => n as usize,
                _ => return Err(r.bad(cs, "a whole number from 1 to 1024")),
            },
        };
        let compression_enabled = r.bool(pick(&r, "compressionEnabled", "compression_enabled")?, false)?;
        // The tracker's own keys go to the tracker, which checks them the same way.
        let mut t = serde_json::Map::new();
        let mk = pick(&r, "maxMemoryUsage", "max_memory_usage")?;
        if let Some(max) = size_key(&r, mk)? {
            t.insert("maxMemoryUsage".into(), json!(max));
        }
        if let Some(th) = r.get("thresholds") {
            t.insert("thresholds".into(), th.clone());
        }
        let ci = pick(&r, "cleanupInterval", "cleanup_interval")?;
        if let Some(c) = r.get(ci) {
            t.insert("cleanupInterval".into(), c.clone());
        }
        let tracker = TrackerConfig::from_json(&Value::Object(t))
            .map_err(|e| Error::invalid_config(e.message().replacen("ResourceTracker", COMPONENT, 1)))?;
        Ok(StreamConfig { chunk_size, concurrent_streams, compression_enabled, tracker })
    }

    fn check_against(&self, max: u64) -> Result<()> {
        if self.chunk_size > max {
            return Err(Error::invalid_config(format!(
                "{COMPONENT} config: chunkSize ({}) is larger than maxMemoryUsage ({max}); one chunk must fit",
                self.chunk_size
            )));
        }
        Ok(())
    }
}

/// A chunk admitted for processing. Hand it back to [`StreamProcessor::finish`] or
/// [`StreamProcessor::cancel`] exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkTicket {
    /// 0, 1, 2, ... in reading order within the run.
    pub index: u64,
    /// Byte offset of the chunk in the input.
    pub offset: u64,
    /// Bytes admitted (and tracked).
    pub size: u64,
    /// The chunk's id in the tracker (0 when the tracker keeps nothing).
    pub resource_id: u64,
}

/// What a handler sees.
#[derive(Debug)]
pub struct StreamChunk<'a> {
    pub index: u64,
    pub offset: u64,
    /// The chunk's bytes, gzip-compressed when `compressionEnabled`.
    pub data: &'a [u8],
    /// Bytes of input in this chunk (before compression).
    pub raw_len: u64,
    pub compressed: bool,
}

/// The chunk whose handler failed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkFailure {
    pub index: u64,
    pub offset: u64,
    pub size: u64,
    pub error: Error,
}

pub type PerformanceCallback = Arc<dyn Fn(&Value) + Send + Sync>;

/// Receives every event of the processor (see [`StreamProcessor::set_event_callback`]).
pub type EventCallback = Arc<dyn Fn(&Value) + Send + Sync>;

#[derive(Default)]
struct Run {
    started: Option<Instant>,
    next_index: u64,
    next_offset: u64,
    in_flight: usize,
    peak_in_flight: usize,
    peak_tracked: u64,
    chunks: u64,
    bytes: u64,
    compressed_bytes: u64,
    cancelled: u64,
    refused: u64,
    handler_ms: f64,
}

#[derive(Default)]
struct Inner {
    run: Run,
    /// Set when a handler failed or reading failed: blocked admissions return at once.
    abort: bool,
    failure: Option<ChunkFailure>,
    events: VecDeque<Value>,
    dropped_events: u64,
    runs: u64,
}

/// The processor. Thread-safe; share it by reference or in an `Arc`.
pub struct StreamProcessor {
    cfg: StreamConfig,
    tracker: Arc<ResourceTracker>,
    own_tracker: bool,
    warning_bytes: u64,
    inner: Mutex<Inner>,
    changed: Condvar,
    callback: Mutex<Option<PerformanceCallback>>,
    event_callback: Mutex<Option<EventCallback>>,
    probe: Option<ProcessProbe>,
}

impl StreamProcessor {
    pub fn from_json(v: &Value) -> Result<Self> {
        Self::new(StreamConfig::from_json(v)?)
    }

    /// A processor from the seed's keys that tracks its chunks in the caller's `tracker`
    /// ([`with_tracker`](Self::with_tracker)). The tracker's own keys (`maxMemoryUsage`,
    /// `thresholds`, `cleanupInterval` and their aliases) are refused: the tracker's apply.
    pub fn from_json_with_tracker(v: &Value, tracker: Arc<ResourceTracker>) -> Result<Self> {
        if let Some(o) = v.as_object() {
            for k in TRACKER_KEYS {
                if o.contains_key(*k) {
                    return Err(Error::invalid_config(format!(
                        "{COMPONENT} config: '{k}' is an option of the tracker; with a tracker given, \
                         its own '{k}' applies (set it on the ResourceTracker)"
                    )));
                }
            }
        }
        Self::with_tracker(StreamConfig::parse(v)?, tracker)
    }

    /// A processor with its own tracker built from `cfg.tracker`.
    pub fn new(cfg: StreamConfig) -> Result<Self> {
        let tracker = Arc::new(ResourceTracker::new(cfg.tracker.clone()));
        Self::build(cfg, tracker, true)
    }

    /// A processor that tracks its chunks in the caller's tracker (whose `maxMemoryUsage` and
    /// thresholds then apply; `cfg.tracker` is ignored). The chunks show in that tracker's
    /// statistics (type `chunk`, metadata `index` and `offset`) while they are in flight, the
    /// tracker's own event callback and poll queue get the `memoryWarning` / `memoryCritical`
    /// events an admission causes, and so do this processor's callback and poll queue.
    pub fn with_tracker(cfg: StreamConfig, tracker: Arc<ResourceTracker>) -> Result<Self> {
        Self::build(cfg, tracker, false)
    }

    fn build(mut cfg: StreamConfig, tracker: Arc<ResourceTracker>, own: bool) -> Result<Self> {
        if cfg.chunk_size == 0 {
            return Err(Error::invalid_config(format!("{COMPONENT} config: chunkSize must be > 0")));
        }
        if cfg.concurrent_streams == 0 {
            return Err(Error::invalid_config(format!("{COMPONENT} config: concurrentStreams must be >= 1")));
        }
        let tc = tracker.config().clone();
        cfg.check_against(tc.max_memory_usage)?;
        cfg.tracker = tc.clone();
        Ok(StreamProcessor {
            warning_bytes: (tc.warning * tc.max_memory_usage as f64) as u64,
            cfg,
            tracker,
            own_tracker: own,
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            callback: Mutex::new(None),
            event_callback: Mutex::new(None),
            probe: ProcessProbe::new().ok(),
        })
    }

    pub fn config(&self) -> &StreamConfig {
        &self.cfg
    }

    pub fn tracker(&self) -> &Arc<ResourceTracker> {
        &self.tracker
    }

    /// `performance` events are also delivered here, on the thread that finished the chunk
    /// (a worker thread in `process_*` with `concurrentStreams` > 1).
    pub fn set_performance_callback(&self, cb: Option<PerformanceCallback>) {
        *self.callback.lock() = cb;
    }

    /// Every event of the processor, as JSON with its `type`: `performance` (per chunk, and
    /// the summary with `final: true`) and the tracker's `memoryWarning` / `memoryCritical`
    /// caused by admitting a chunk. Delivered on the thread that caused it (a worker thread in
    /// `process_*` with `concurrentStreams` > 1 for `performance`, the reading thread for the
    /// tracker's events), never while the processor holds a lock; the same events are queued
    /// for [`poll_events`](Self::poll_events).
    pub fn set_event_callback(&self, cb: Option<EventCallback>) {
        *self.event_callback.lock() = cb;
    }

    fn tracked_total(&self) -> u64 {
        self.tracker.get_memory_stats()["totalAllocated"].as_u64().unwrap_or(0)
    }

    fn rss(&self) -> Option<u64> {
        self.probe.as_ref().and_then(|p| p.current_bytes().ok())
    }

    /// Starts a new run: counters, index and offset start again at 0. Fails while chunks of
    /// the previous run are in flight.
    pub fn begin(&self) -> Result<()> {
        let mut g = self.inner.lock();
        if g.run.in_flight > 0 {
            return Err(Error::invalid_argument(format!(
                "{COMPONENT}: {} chunk(s) of the current run are still in flight; finish or cancel them first",
                g.run.in_flight
            )));
        }
        g.run = Run { started: Some(Instant::now()), ..Run::default() };
        g.abort = false;
        g.failure = None;
        g.runs += 1;
        Ok(())
    }

    /// Admits under the processor's lock; the tracker events the admission caused are queued
    /// here and come back to be delivered once the lock is released.
    fn try_admit(&self, g: &mut Inner, size: u64) -> Result<Option<(ChunkTicket, Vec<TrackerEvent>)>> {
        if size == 0 {
            return Err(Error::invalid_argument(format!("{COMPONENT}: cannot admit a chunk of 0 bytes")));
        }
        if size > self.cfg.tracker.max_memory_usage {
            return Err(Error::invalid_argument(format!(
                "{COMPONENT}: a chunk of {size} bytes is larger than maxMemoryUsage ({})",
                self.cfg.tracker.max_memory_usage
            )));
        }
        let run = &mut g.run;
        if run.in_flight >= self.cfg.concurrent_streams
            || (run.in_flight > 0 && self.tracked_total() + size > self.warning_bytes)
        {
            run.refused += 1;
            return Ok(None);
        }
        let (index, offset) = (run.next_index, run.next_offset);
        let meta = json!({"index": index, "offset": offset});
        let (resource_id, events) = self.tracker.track_resource_deferred("chunk", size, meta)?;
        if self.own_tracker {
            // Nobody else polls the processor's own tracker: its queue would only fill up.
            let _ = self.tracker.poll_events();
        }
        run.started.get_or_insert_with(Instant::now);
        run.next_index += 1;
        run.next_offset += size;
        run.in_flight += 1;
        run.peak_in_flight = run.peak_in_flight.max(run.in_flight);
        run.peak_tracked = run.peak_tracked.max(self.tracked_total());
        for e in &events {
            let mut v = e.to_json();
            v["index"] = json!(index);
            self.emit(g, &v);
        }
        Ok(Some((ChunkTicket { index, offset, size, resource_id }, events)))
    }

    /// Delivers an admission's tracker events: to the tracker's callback, then to this
    /// processor's event callback (they were queued for both polls already).
    fn admitted(&self, r: Option<(ChunkTicket, Vec<TrackerEvent>)>) -> Option<ChunkTicket> {
        let (t, events) = r?;
        if !events.is_empty() {
            let cb = self.event_callback.lock().clone();
            if let Some(cb) = cb {
                for e in &events {
                    let mut v = e.to_json();
                    v["index"] = json!(t.index);
                    cb(&v);
                }
            }
            self.tracker.deliver_events(events);
        }
        Some(t)
    }

    /// Admits a chunk of `size` bytes now, or `None` when reading must pause (backpressure):
    /// `concurrentStreams` chunks in flight, or the tracker would pass its warning threshold.
    /// Read the chunk only after it was admitted.
    pub fn admit(&self, size: u64) -> Result<Option<ChunkTicket>> {
        let r = {
            let mut g = self.inner.lock();
            self.try_admit(&mut g, size)?
        };
        Ok(self.admitted(r))
    }

    /// Like [`admit`](Self::admit), waiting up to `timeout` (forever with `None`) for a chunk in
    /// flight to finish. `None` on timeout, or when the run was aborted by a failure.
    pub fn wait_admit(&self, size: u64, timeout: Option<Duration>) -> Result<Option<ChunkTicket>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let r = {
            let mut g = self.inner.lock();
            loop {
                if g.abort {
                    break None;
                }
                if let Some(t) = self.try_admit(&mut g, size)? {
                    break Some(t);
                }
                match deadline {
                    Some(d) => {
                        if self.changed.wait_until(&mut g, d).timed_out() {
                            break self.try_admit(&mut g, size)?;
                        }
                    }
                    None => self.changed.wait(&mut g),
                }
            }
        };
        Ok(self.admitted(r))
    }

    fn release(&self, t: &ChunkTicket) -> Result<()> {
        match self.tracker.release_resource(t.resource_id) {
            // A caller's tracker with auto cleanup may have dropped it already.
            Err(e) if e.kind() == ErrorKind::NotFound && !self.own_tracker => Ok(()),
            other => other.map(|_| ()),
        }
    }

    fn emit(&self, g: &mut Inner, ev: &Value) {
        if g.events.len() >= EVENT_QUEUE {
            g.events.pop_front();
            g.dropped_events += 1;
        }
        g.events.push_back(ev.clone());
    }

    fn deliver(&self, ev: &Value) {
        let cb = self.callback.lock().clone();
        if let Some(cb) = cb {
            cb(ev);
        }
        let cb = self.event_callback.lock().clone();
        if let Some(cb) = cb {
            cb(ev);
        }
    }

    /// The chunk's handler is done: `bytes` of input (the chunk's real length; the last chunk may
    /// be shorter than admitted) were handled in `processing_ms`. Releases the chunk from the
    /// tracker, wakes a waiting reader and returns the chunk's `performance` event.
    pub fn finish(&self, ticket: ChunkTicket, bytes: u64, processing_ms: f64) -> Result<Value> {
        self.finish_with(ticket, bytes, None, processing_ms)
    }

    /// [`finish`](Self::finish) for a chunk the host compressed (with [`compress`](Self::compress))
    /// to `compressed` bytes: counted in `compressedBytes` and the event's `compressedSize`.
    pub fn finish_compressed(
        &self,
        ticket: ChunkTicket,
        bytes: u64,
        compressed: Option<u64>,
        processing_ms: f64,
    ) -> Result<Value> {
        self.finish_with(ticket, bytes, compressed, processing_ms)
    }

    fn finish_with(&self, t: ChunkTicket, bytes: u64, compressed: Option<u64>, ms: f64) -> Result<Value> {
        if bytes > t.size {
            return Err(Error::invalid_argument(format!(
                "{COMPONENT}: chunk {} was admitted for {} bytes, finished with {bytes}",
                t.index, t.size
            )));
        }
        if !ms.is_finite() || ms < 0.0 {
            return Err(Error::invalid_argument(format!("{COMPONENT}: processing time {ms} ms is not a time")));
        }
        let ev = {
            let mut g = self.inner.lock();
            if g.run.in_flight == 0 {
                return Err(Error::invalid_argument(format!("{COMPONENT}: chunk {} is not in flight", t.index)));
            }
            let memory = self.tracked_total();
            self.release(&t)?;
            let run = &mut g.run;
            run.in_flight -= 1;
            run.chunks += 1;
            run.bytes += bytes;
            run.compressed_bytes += compressed.unwrap_or(0);
            run.handler_ms += ms;
            let elapsed = run.started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
            let mut ev = json!({
                "type": "performance", "final": false,
                "index": t.index, "offset": t.offset, "size": bytes,
                "speed": if elapsed > 0.0 { run.bytes as f64 / elapsed } else { 0.0 },
                "memoryUsage": memory,
                "processingTime": ms,
                "chunks": run.chunks, "bytes": run.bytes, "inFlight": run.in_flight,
            });
            if let Some(c) = compressed {
                ev["compressedSize"] = json!(c);
            }
            if let Some(rss) = self.rss() {
                ev["rss"] = json!(rss);
            }
            self.emit(&mut g, &ev);
            ev
        };
        self.changed.notify_all();
        self.deliver(&ev);
        Ok(ev)
    }

    /// Gives a chunk back without counting it (read failed, input ended, handler failed).
    pub fn cancel(&self, t: ChunkTicket) -> Result<()> {
        self.give_back(t, true)
    }

    /// The chunk admitted to find out that the input has ended: released, counted nowhere.
    pub fn unused(&self, t: ChunkTicket) -> Result<()> {
        self.give_back(t, false)
    }

    fn give_back(&self, t: ChunkTicket, count: bool) -> Result<()> {
        {
            let mut g = self.inner.lock();
            if g.run.in_flight == 0 {
                return Err(Error::invalid_argument(format!("{COMPONENT}: chunk {} is not in flight", t.index)));
            }
            self.release(&t)?;
            g.run.in_flight -= 1;
            g.run.cancelled += u64::from(count);
        }
        self.changed.notify_all();
        Ok(())
    }

    /// Records that the handler of `t` failed: the chunk is released, blocked admissions return,
    /// and the first failure of the run is kept ([`last_failure`](Self::last_failure)).
    pub fn fail(&self, t: ChunkTicket, raw_len: u64, error: Error) -> Result<()> {
        {
            let mut g = self.inner.lock();
            g.abort = true;
            if g.failure.is_none() {
                g.failure = Some(ChunkFailure { index: t.index, offset: t.offset, size: raw_len, error });
            }
        }
        self.cancel(t)
    }

    /// The first handler failure of the current run.
    pub fn last_failure(&self) -> Option<ChunkFailure> {
        self.inner.lock().failure.clone()
    }

    /// Gzip (one gzip member per chunk; members concatenated are a valid gzip stream).
    pub fn compress(&self, data: &[u8]) -> Result<Vec<u8>> {
        let mut enc =
            flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2 + 64), flate2::Compression::fast());
        enc.write_all(data).map_err(|e| Error::io("gzip compression failed", &e))?;
        enc.finish().map_err(|e| Error::io("gzip compression failed", &e))
    }

    /// Ends the run: returns (and emits) the summary `performance` event with `final: true`:
    /// `speed` (bytes/s over the run), `memoryUsage` (the most bytes tracked at once),
    /// `processingTime` (ms of the run), `chunks`, `bytes`, `compressedBytes`, `peakInFlight`,
    /// `handlerTime` (ms summed over handlers), `cancelled`, `pauses` (admissions refused).
    pub fn end(&self) -> Result<Value> {
        let ev = {
            let mut g = self.inner.lock();
            if g.run.in_flight > 0 {
                return Err(Error::invalid_argument(format!(
                    "{COMPONENT}: {} chunk(s) still in flight; finish or cancel them before end()",
                    g.run.in_flight
                )));
            }
            let ev = self.summary(&g.run);
            self.emit(&mut g, &ev);
            ev
        };
        self.deliver(&ev);
        Ok(ev)
    }

    fn summary(&self, run: &Run) -> Value {
        let elapsed = run.started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
        let mut ev = json!({
            "type": "performance", "final": true,
            "speed": if elapsed > 0.0 { run.bytes as f64 / elapsed } else { 0.0 },
            "memoryUsage": run.peak_tracked,
            "processingTime": elapsed * 1000.0,
            "handlerTime": run.handler_ms,
            "chunks": run.chunks, "bytes": run.bytes,
            "peakInFlight": run.peak_in_flight,
            "cancelled": run.cancelled,
            "pauses": run.refused,
        });
        if self.cfg.compression_enabled {
            ev["compressedBytes"] = json!(run.compressed_bytes);
        }
        if let Some(rss) = self.rss() {
            ev["rss"] = json!(rss);
        }
        ev
    }

    /// Events since the last poll, oldest first: `performance` events and the tracker's
    /// `memoryWarning` / `memoryCritical` events caused by admitting a chunk (with the `index`
    /// of that chunk), whether the tracker is the processor's own or the caller's.
    pub fn poll_events(&self) -> Vec<Value> {
        self.inner.lock().events.drain(..).collect()
    }

    /// Config, the current run's counters and the tracker's statistics.
    pub fn stats(&self) -> Value {
        let g = self.inner.lock();
        let mut s = self.summary(&g.run);
        let o = s.as_object_mut().expect("summary is an object");
        o.remove("type");
        o.remove("final");
        o.insert("inFlight".into(), json!(g.run.in_flight));
        o.insert("chunkSize".into(), json!(self.cfg.chunk_size));
        o.insert("concurrentStreams".into(), json!(self.cfg.concurrent_streams));
        o.insert("compressionEnabled".into(), json!(self.cfg.compression_enabled));
        o.insert("maxMemoryUsage".into(), json!(self.cfg.tracker.max_memory_usage));
        o.insert("runs".into(), json!(g.runs));
        o.insert("droppedEvents".into(), json!(g.dropped_events));
        o.insert("tracker".into(), self.tracker.get_memory_stats());
        s
    }

    /// Reads `path` in chunks and calls `handler` on each; see [`process_reader`](Self::process_reader).
    pub fn process_file<F>(&self, path: impl AsRef<Path>, handler: F) -> Result<Value>
    where
        F: Fn(&StreamChunk<'_>) -> Result<()> + Sync,
    {
        let path = path.as_ref();
        let f = std::fs::File::open(path).map_err(|e| Error::io(&format!("cannot open '{}'", path.display()), &e))?;
        self.process_reader(f, handler)
    }

    /// Reads `reader` to its end in chunks of `chunkSize` on the calling thread, and runs
    /// `handler` on each chunk: on the calling thread when `concurrentStreams` is 1, else on up
    /// to `concurrentStreams` worker threads (chunks may then finish out of order; `index` and
    /// `offset` say where each belongs). Returns the summary event. When a handler fails (or
    /// panics), no further chunk is read or handed out, the chunks in flight finish, and the
    /// error names the chunk (index, offset); the tracker is left with nothing of this run.
    pub fn process_reader<R, F>(&self, mut reader: R, handler: F) -> Result<Value>
    where
        R: Read,
        F: Fn(&StreamChunk<'_>) -> Result<()> + Sync,
    {
        self.begin()?;
        let chunk = self.cfg.chunk_size;
        let run_one = |t: ChunkTicket, buf: Vec<u8>| {
            if self.inner.lock().abort {
                let _ = self.cancel(t);
                return;
            }
            let raw = buf.len() as u64;
            let start = Instant::now();
            let (data, compressed) = if self.cfg.compression_enabled {
                match self.compress(&buf) {
                    Ok(c) => (c, true),
                    Err(e) => {
                        let _ = self.fail(t, raw, e);
                        return;
                    }
                }
            } else {
                (buf, false)
            };
            let sc = StreamChunk { index: t.index, offset: t.offset, data: &data, raw_len: raw, compressed };
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&sc)))
                .unwrap_or_else(|p| Err(Error::callback(format!("the handler panicked: {}", panic_text(&*p)))));
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            match res {
                Ok(()) => {
                    let _ = self.finish_with(t, raw, compressed.then_some(data.len() as u64), ms);
                }
                Err(e) => {
                    let _ = self.fail(t, raw, e);
                }
            }
        };
        let read_err: Option<Error> = if self.cfg.concurrent_streams == 1 {
            let mut err = None;
            while let Some(t) = self.wait_admit(chunk, None)? {
                match read_chunk(&mut reader, t) {
                    Ok(Some(buf)) => run_one(t, buf),
                    Ok(None) => {
                        self.unused(t)?;
                        break;
                    }
                    Err(e) => {
                        self.cancel(t)?;
                        err = Some(e);
                        break;
                    }
                }
            }
            err
        } else {
            let (tx, rx) = std::sync::mpsc::channel::<(ChunkTicket, Vec<u8>)>();
            let rx = Mutex::new(rx);
            std::thread::scope(|s| {
                for _ in 0..self.cfg.concurrent_streams {
                    s.spawn(|| {
                        loop {
                            let job = rx.lock().recv();
                            match job {
                                Ok((t, buf)) => run_one(t, buf),
                                Err(_) => return,
                            }
                        }
                    });
                }
                let mut err = None;
                loop {
                    let t = match self.wait_admit(chunk, None) {
                        Ok(Some(t)) => t,
                        Ok(None) => break,
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    };
                    match read_chunk(&mut reader, t) {
                        Ok(Some(buf)) => {
                            if let Err(std::sync::mpsc::SendError((t, _))) = tx.send((t, buf)) {
                                let _ = self.cancel(t);
                                break;
                            }
                        }
                        Ok(None) => {
                            let _ = self.unused(t);
                            break;
                        }
                        Err(e) => {
                            let _ = self.cancel(t);
                            err = Some(e);
                            break;
                        }
                    }
                }
                drop(tx);
                err
            })
        };
        if let Some(f) = self.last_failure() {
            let _ = self.end();
            return Err(Error::new(
                f.error.kind(),
                format!(
                    "{COMPONENT}: the handler failed on chunk {} (offset {}, {} bytes): {}",
                    f.index,
                    f.offset,
                    f.size,
                    f.error.message()
                ),
            ));
        }
        if let Some(e) = read_err {
            let _ = self.end();
            return Err(e);
        }
        self.end()
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

/// Reads up to `t.size` bytes; `None` at the end of the input.
fn read_chunk<R: Read>(r: &mut R, t: ChunkTicket) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; t.size as usize];
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::io(
                    &format!("{COMPONENT}: reading the input failed at offset {}", t.offset + n as u64),
                    &e,
                ));
            }
        }
    }
    if n == 0 {
        return Ok(None);
    }
    buf.truncate(n);
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn sp(v: Value) -> StreamProcessor {
        StreamProcessor::from_json(&v).unwrap()
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Collects (index, offset, bytes) from a handler, in any order.
    type Seen = Mutex<Vec<(u64, u64, Vec<u8>)>>;

    fn reassemble(seen: &Seen) -> Vec<u8> {
        let mut v = seen.lock().clone();
        v.sort_by_key(|c| c.0);
        let mut out = Vec::new();
        for (i, (idx, off, bytes)) in v.into_iter().enumerate() {
            assert_eq!(idx, i as u64, "every index exactly once");
            assert_eq!(off, out.len() as u64, "offsets are contiguous");
            out.extend(bytes);
        }
        out
    }

    #[test]
    fn config_keys_aliases_sizes_and_errors() {
        let p = sp(json!({"chunkSize": "64K", "concurrentStreams": 2, "compressionEnabled": true,
            "maxMemoryUsage": "1M", "thresholds": {"warning": 0.5, "critical": 0.8}, "cleanupInterval": 0}));
        let c = p.config();
        assert_eq!((c.chunk_size, c.concurrent_streams, c.compression_enabled), (65536, 2, true));
        assert_eq!((c.tracker.max_memory_usage, c.tracker.warning), (MIB, 0.5));
        let p = sp(
            json!({"chunk_size": 10, "concurrent_streams": 1, "compression_enabled": false, "max_memory_usage": 100}),
        );
        assert_eq!((p.config().chunk_size, p.config().tracker.max_memory_usage), (10, 100));
        assert_eq!(sp(json!(null)).config(), &StreamConfig::default());
        for (v, msg) in [
            (json!({"chunkSize": 0}), "'chunkSize'"),
            (json!({"chunkSize": -5}), "negative"),
            (json!({"chunkSize": "-5M"}), "negative"),
            (json!({"chunkSize": "lots"}), "'chunkSize'"),
            (json!({"concurrentStreams": 0}), "'concurrentStreams'"),
            (json!({"concurrentStreams": 1.5}), "'concurrentStreams'"),
            (json!({"maxMemoryUsage": -1}), "negative"),
            (json!({"chunkSiz": 1}), "did you mean 'chunkSize'"),
            (json!({"chunkSize": 1, "chunk_size": 1}), "same option"),
            (json!({"chunkSize": 2000, "maxMemoryUsage": 1000}), "larger than maxMemoryUsage"),
            (json!({"thresholds": {"warning": 2}}), "StreamProcessor"),
            (json!({"compressionEnabled": "yes"}), "'compressionEnabled'"),
        ] {
            let e = StreamProcessor::from_json(&v).err().unwrap_or_else(|| panic!("{v} accepted"));
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{v}");
            assert!(e.message().contains(msg), "{v}: {e}");
        }
    }

    #[test]
    fn every_byte_once_in_index_order_single_and_parallel() {
        let input = data(10_000 + 17);
        for streams in [1, 3] {
            let p = sp(json!({"chunkSize": 1000, "concurrentStreams": streams, "maxMemoryUsage": 100_000}));
            let seen: Seen = Mutex::new(Vec::new());
            let sum = p
                .process_reader(&input[..], |c| {
                    assert!(!c.compressed);
                    seen.lock().push((c.index, c.offset, c.data.to_vec()));
                    Ok(())
                })
                .unwrap();
            assert_eq!(reassemble(&seen), input);
            assert_eq!((sum["chunks"].as_u64(), sum["bytes"].as_u64()), (Some(11), Some(10_017)));
            assert_eq!(sum["final"], true);
            assert_eq!(p.tracker().get_memory_stats()["activeResources"], 0);
            assert_eq!(p.tracker().get_memory_stats()["totalTracked"], 12, "11 chunks and the EOF probe");
        }
        // empty input: no chunk, summary with zeros
        let p = sp(json!({"chunkSize": 10, "maxMemoryUsage": 100}));
        let sum = p.process_reader(&[][..], |_| panic!("no chunk expected")).unwrap();
        assert_eq!(sum["chunks"], 0);
    }

    #[test]
    fn compression_round_trips() {
        use std::io::Read as _;
        let input = data(50_000);
        let p = sp(
            json!({"chunkSize": 4096, "compressionEnabled": true, "concurrentStreams": 2, "maxMemoryUsage": 1_000_000}),
        );
        let seen: Seen = Mutex::new(Vec::new());
        let sum = p
            .process_reader(&input[..], |c| {
                assert!(c.compressed && c.data.starts_with(&[0x1f, 0x8b]));
                seen.lock().push((c.index, c.offset, c.data.to_vec()));
                Ok(())
            })
            .unwrap();
        let mut v = seen.lock().clone();
        v.sort_by_key(|c| c.0);
        let gz: Vec<u8> = v.into_iter().flat_map(|c| c.2).collect();
        assert_eq!(sum["compressedBytes"].as_u64(), Some(gz.len() as u64));
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, input);
    }

    #[test]
    fn backpressure_bounds_in_flight_and_tracked_bytes() {
        // warning at 0.5 of 10_000 = 5000 bytes = 5 chunks; concurrentStreams 8 is not the limit here,
        // the tracker is; with concurrentStreams 2 the stream count is.
        for (streams, cap) in [(8usize, 5usize), (2, 2)] {
            let p = sp(json!({"chunkSize": 1000, "concurrentStreams": streams, "maxMemoryUsage": 10_000,
                "thresholds": {"warning": 0.5, "critical": 0.9}}));
            let running = AtomicUsize::new(0);
            let most = AtomicUsize::new(0);
            let most_tracked = AtomicUsize::new(0);
            let input = data(40_000);
            let sum = p
                .process_reader(&input[..], |_| {
                    let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    let t = p.tracker().get_memory_stats()["totalAllocated"].as_u64().unwrap();
                    most_tracked.fetch_max(t as usize, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(3));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap();
            assert!(most.load(Ordering::SeqCst) <= cap, "{} > {cap}", most.load(Ordering::SeqCst));
            assert!(most.load(Ordering::SeqCst) >= 2, "work did overlap");
            assert!(most_tracked.load(Ordering::SeqCst) <= 5000);
            assert!(p.tracker().get_memory_stats()["peakMemoryUsage"].as_u64().unwrap() <= 5000);
            assert!(sum["peakInFlight"].as_u64().unwrap() <= cap as u64);
            assert!(sum["pauses"].as_u64().unwrap() > 0, "reading paused");
            assert_eq!(sum["bytes"], 40_000);
        }
    }

    #[test]
    fn handler_error_names_the_chunk_and_leaks_nothing() {
        for streams in [1, 4] {
            let p = sp(json!({"chunkSize": 100, "concurrentStreams": streams, "maxMemoryUsage": 100_000}));
            let calls = AtomicUsize::new(0);
            let e = p
                .process_reader(&data(10_000)[..], |c| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    if c.index == 7 { Err(Error::callback("disk full")) } else { Ok(()) }
                })
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Callback);
            assert!(e.message().contains("chunk 7 (offset 700, 100 bytes): disk full"), "{e}");
            assert!(calls.load(Ordering::SeqCst) < 100, "stopped early");
            let f = p.last_failure().unwrap();
            assert_eq!((f.index, f.offset), (7, 700));
            let st = p.tracker().get_memory_stats();
            assert_eq!((st["activeResources"].as_u64(), st["totalAllocated"].as_u64()), (Some(0), Some(0)));
            // a panicking handler is an error too, and the processor is usable afterwards
            let e = p.process_reader(&data(500)[..], |c| if c.index == 2 { panic!("boom") } else { Ok(()) });
            assert!(e.unwrap_err().message().contains("panicked: boom"));
            assert_eq!(p.process_reader(&data(500)[..], |_| Ok(())).unwrap()["chunks"], 5);
        }
    }

    #[test]
    fn read_errors_and_missing_files() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("device gone"));
                }
                self.0 -= 1;
                b[0] = 1;
                Ok(1)
            }
        }
        let p = sp(json!({"chunkSize": 2, "maxMemoryUsage": 100}));
        let e = p.process_reader(Broken(5), |_| Ok(())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains("offset 5") && e.message().contains("device gone"), "{e}");
        assert_eq!(p.tracker().get_memory_stats()["activeResources"], 0);
        let e = p.process_file("/nonexistent/memwarden-stream", |_| Ok(())).unwrap_err();
        assert!(e.message().contains("cannot open '/nonexistent/memwarden-stream'"), "{e}");
    }

    #[test]
    fn process_file_and_performance_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.bin");
        let input = data(3 * 1024 + 5);
        std::fs::write(&path, &input).unwrap();
        let p = sp(json!({"chunkSize": 1024, "concurrentStreams": 1, "maxMemoryUsage": 1_000_000}));
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        p.set_performance_callback(Some(Arc::new(move |e: &Value| g.lock().push(e.clone()))));
        let seen: Seen = Mutex::new(Vec::new());
        p.process_file(&path, |c| {
            seen.lock().push((c.index, c.offset, c.data.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(reassemble(&seen), input);
        let ev = got.lock().clone();
        assert_eq!(ev.len(), 5, "4 chunks and the summary");
        for (i, e) in ev[..4].iter().enumerate() {
            assert_eq!((e["final"].as_bool(), e["index"].as_u64()), (Some(false), Some(i as u64)));
            assert_eq!(e["memoryUsage"], 1024, "the chunk was tracked while handled");
            assert!(e["speed"].as_f64().unwrap() >= 0.0 && e["processingTime"].as_f64().unwrap() >= 0.0);
            assert_eq!(e["chunks"], i as u64 + 1);
        }
        assert_eq!((ev[4]["final"].as_bool(), ev[4]["bytes"].as_u64()), (Some(true), Some(3 * 1024 + 5)));
        let polled = p.poll_events();
        assert_eq!(polled.iter().filter(|e| e["type"] == "performance").count(), 5);
        assert!(p.poll_events().is_empty());
    }

    #[test]
    fn driver_admit_finish_cancel_and_wait() {
        let p = sp(json!({"chunkSize": 100, "concurrentStreams": 2, "maxMemoryUsage": 1000}));
        let a = p.admit(100).unwrap().unwrap();
        let b = p.admit(100).unwrap().unwrap();
        assert_eq!((a.index, a.offset, b.index, b.offset), (0, 0, 1, 100));
        assert!(p.admit(100).unwrap().is_none(), "concurrentStreams reached");
        assert!(p.wait_admit(100, Some(Duration::from_millis(20))).unwrap().is_none(), "timed out");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| p.wait_admit(100, Some(Duration::from_secs(10))).unwrap());
            // the waiter gets its chunk once `a` finishes
            let ev = p.finish(a, 100, 1.5).unwrap();
            assert_eq!((ev["index"].as_u64(), ev["processingTime"].as_f64()), (Some(0), Some(1.5)));
            let c = waiter.join().unwrap().unwrap();
            assert_eq!((c.index, c.offset), (2, 200));
            p.cancel(c).unwrap();
        });
        assert!(p.end().unwrap_err().message().contains("in flight"));
        let ev = p.finish_compressed(b, 60, Some(20), 0.0).unwrap();
        assert_eq!(ev["compressedSize"], 20);
        let sum = p.end().unwrap();
        assert_eq!(
            (sum["chunks"].as_u64(), sum["bytes"].as_u64(), sum["cancelled"].as_u64()),
            (Some(2), Some(160), Some(1))
        );
        for (r, msg) in [(p.admit(0), "0 bytes"), (p.admit(5000), "larger than maxMemoryUsage")] {
            assert!(r.unwrap_err().message().contains(msg));
        }
        assert!(p.cancel(a).unwrap_err().message().contains("not in flight"));
        let d = p.admit(100).unwrap().unwrap();
        assert!(p.finish(d, 101, 0.0).unwrap_err().message().contains("finished with 101"));
        assert!(p.finish(d, 100, f64::NAN).is_err());
        p.fail(d, 100, Error::callback("x")).unwrap();
        assert!(p.wait_admit(100, None).unwrap().is_none(), "an aborted run admits nothing");
        p.begin().unwrap();
        assert!(p.admit(100).unwrap().is_some());
        assert_eq!(p.stats()["inFlight"], 1);
    }

    #[test]
    fn a_shared_tracker_sets_the_bound() {
        let t = Arc::new(ResourceTracker::from_json(&json!({"maxMemoryUsage": 1000})).unwrap());
        let cfg = StreamConfig { chunk_size: 100, concurrent_streams: 100, ..StreamConfig::default() };
        let p = StreamProcessor::with_tracker(cfg.clone(), t.clone()).unwrap();
        let other = t.track_resource("buffer", 600, json!({})).unwrap();
        let a = p.admit(100).unwrap().unwrap(); // 700 = warning: admitted
        assert!(p.admit(100).unwrap().is_none(), "800 would pass the warning threshold");
        p.finish(a, 100, 0.0).unwrap();
        t.release_resource(other).unwrap();
        let big = StreamConfig { chunk_size: 2000, ..cfg };
        assert!(StreamProcessor::with_tracker(big, t.clone()).is_err());
        // From JSON: the tracker's keys are refused, the rest as usual.
        let p = StreamProcessor::from_json_with_tracker(&json!({"chunkSize": 500, "concurrentStreams": 2}), t.clone())
            .unwrap();
        assert_eq!((p.config().chunk_size, p.config().tracker.max_memory_usage), (500, 1000));
        for (v, msg) in [
            (json!({"maxMemoryUsage": 10}), "'maxMemoryUsage' is an option of the tracker"),
            (json!({"thresholds": {"warning": 0.5}}), "'thresholds' is an option of the tracker"),
            (json!({"cleanup_interval": 5}), "'cleanup_interval' is an option of the tracker"),
            (json!({"chunkSize": 2000}), "larger than maxMemoryUsage (1000)"),
            (json!({"chunkSiz": 1}), "did you mean 'chunkSize'"),
        ] {
            let e = StreamProcessor::from_json_with_tracker(&v, t.clone()).err().unwrap();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{v}");
            assert!(e.message().contains(msg), "{v}: {e}");
        }
        // A chunk larger than the default 100M budget is fine when the caller's tracker is larger.
        let huge = Arc::new(ResourceTracker::from_json(&json!({"maxMemoryUsage": 1u64 << 30})).unwrap());
        assert!(StreamProcessor::from_json_with_tracker(&json!({"chunkSize": "200M"}), huge).is_ok());
    }

    #[test]
    fn a_shared_tracker_sees_the_chunks_and_gets_their_events() {
        let t = Arc::new(
            ResourceTracker::from_json(
                &json!({"maxMemoryUsage": 1000, "thresholds": {"warning": 0.5, "critical": 0.9}}),
            )
            .unwrap(),
        );
        let tracker_seen = Arc::new(Mutex::new(Vec::new()));
        let ts = tracker_seen.clone();
        t.set_event_callback(Some(Arc::new(move |e: &TrackerEvent| ts.lock().push(e.name))));
        let buffer = t.track_resource("buffer", 400, json!({})).unwrap();
        let cfg = StreamConfig { chunk_size: 300, concurrent_streams: 4, ..StreamConfig::default() };
        let p = Arc::new(StreamProcessor::with_tracker(cfg, t.clone()).unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s2, weak) = (seen.clone(), Arc::downgrade(&p));
        p.set_event_callback(Some(Arc::new(move |e: &Value| {
            // Called with no lock of the processor held: calling back into it is fine.
            let in_flight = weak.upgrade().map(|p| p.stats()["inFlight"].clone());
            s2.lock().push((e["type"].as_str().unwrap().to_owned(), in_flight));
        })));
        let most = AtomicUsize::new(0);
        let sum = p
            .process_reader(&data(3000)[..], |_| {
                let total = t.get_memory_stats()["totalAllocated"].as_u64().unwrap();
                most.fetch_max(total as usize, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        assert_eq!(sum["chunks"], 10);
        // 400 of the buffer and one chunk of 300 pass the warning level (500): one chunk at a
        // time, whatever concurrentStreams says.
        assert_eq!(sum["peakInFlight"], 1);
        assert_eq!(most.load(Ordering::SeqCst), 700);
        let st = t.get_memory_stats();
        assert_eq!((st["activeResources"].as_u64(), st["totalAllocated"].as_u64()), (Some(1), Some(400)));
        assert_eq!(st["totalTracked"], 12, "the buffer, 10 chunks and the EOF probe");
        assert_eq!(st["leaks"]["chunk"]["released"], 11);
        assert_eq!(st["peakMemoryUsage"], 700);
        // Each admission went 400 -> 700 (warning) and each release back to 400 (below 0.48).
        let tracker_events = tracker_seen.lock().clone();
        assert_eq!(tracker_events.len(), 11);
        assert!(tracker_events.iter().all(|n| *n == "memoryWarning"));
        assert_eq!(t.poll_events().len(), 11, "also queued for the tracker's own poll");
        let seen = seen.lock().clone();
        let warnings: Vec<_> = seen.iter().filter(|(ty, _)| ty == "memoryWarning").collect();
        assert_eq!(warnings.len(), 11);
        assert_eq!(warnings[0].1, Some(json!(1)), "delivered once the chunk was in flight");
        assert_eq!(seen.iter().filter(|(ty, _)| ty == "performance").count(), 11, "10 chunks and the summary");
        let polled = p.poll_events();
        let first = polled.iter().find(|e| e["type"] == "memoryWarning").unwrap();
        assert_eq!((first["index"].as_u64(), first["usage"].as_u64()), (Some(0), Some(700)));
        assert_eq!(polled.iter().filter(|e| e["type"] == "memoryWarning").count(), 11);
        t.release_resource(buffer).unwrap();
    }

    #[test]
    fn own_tracker_events_reach_the_callback_and_the_poll() {
        let p = sp(json!({"chunkSize": 100, "concurrentStreams": 1, "maxMemoryUsage": 150,
            "thresholds": {"warning": 0.5, "critical": 0.6}}));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        p.set_event_callback(Some(Arc::new(move |e: &Value| s2.lock().push(e["type"].as_str().unwrap().to_owned()))));
        p.process_reader(&data(250)[..], |_| Ok(())).unwrap();
        // 100 of 150 is past both thresholds: one memoryCritical per admission (4 with the EOF probe).
        let seen = seen.lock().clone();
        assert_eq!(seen.iter().filter(|t| *t == "memoryCritical").count(), 4, "{seen:?}");
        let polled = p.poll_events();
        assert_eq!(polled.iter().filter(|e| e["type"] == "memoryCritical").count(), 4);
        assert!(p.tracker().poll_events().is_empty(), "the own tracker's queue is not left to fill up");
        assert_eq!(p.stats()["tracker"]["droppedEvents"], 0);
    }

    #[test]
    fn compress_gives_gzip() {
        use std::io::Read as _;
        let p = sp(json!({}));
        let z = p.compress(b"hello hello hello").unwrap();
        let mut s = String::new();
        flate2::read::GzDecoder::new(&z[..]).read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello hello hello");
    }
}
