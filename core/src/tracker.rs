//! Streamflow's ResourceTracker (seed 004): resources tracked by type and size, statistics
//! with Streamflow's names, `memoryWarning` / `memoryCritical` events once per crossing (with
//! hysteresis), cleanup of the oldest resources, and a leak report per type.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};

use crate::config::ConfigReader;
use crate::error::{Error, ErrorKind, Result};

/// Hysteresis: a level is left downward only this fraction of `maxMemoryUsage` below it.
pub const HYSTERESIS: f64 = 0.02;

/// What both at-exit lines start with (see [`ResourceTracker::exit_report_line`]).
const EXIT_REPORT: &str = "memwarden: ResourceTracker leak report at exit";

/// The line a binding writes at exit instead of the report when taking it failed (a host-side
/// error, say), without a trailing newline:
/// `memwarden: ResourceTracker leak report at exit failed: <message>`.
pub fn exit_report_failed_line(message: &str) -> String {
    format!("{EXIT_REPORT} failed: {message}")
}

const EVENT_QUEUE: usize = 1024;

/// Config as Streamflow writes it (camelCase), snake_case aliases accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    pub max_memory_usage: u64,
    /// Milliseconds; the auto-cleanup timer runs only when > 0 and `enable_auto_cleanup`.
    pub cleanup_interval_ms: u64,
    pub enable_auto_cleanup: bool,
    pub warning: f64,
    pub critical: f64,
    pub tracking_enabled: bool,
    pub detailed: bool,
    pub metadata: bool,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            max_memory_usage: 100 * 1024 * 1024,
            cleanup_interval_ms: 30_000,
            enable_auto_cleanup: false,
            warning: 0.7,
            critical: 0.9,
            tracking_enabled: true,
            detailed: false,
            metadata: true,
        }
    }
}

fn pick<'a>(r: &ConfigReader<'a>, camel: &str, snake: &str) -> Result<Option<(&'static str, &'a Value)>> {
    match (r.get(camel), r.get(snake)) {
        (Some(_), Some(_)) => Err(Error::invalid_config(format!(
            "ResourceTracker config: '{camel}' and '{snake}' are the same option; give one"
        ))),
        (Some(v), None) => Ok(Some(("c", v))),
        (None, Some(v)) => Ok(Some(("s", v))),
        (None, None) => Ok(None),
    }
}

impl TrackerConfig {
    /// The keys `from_json` takes: Streamflow's, and their snake_case spellings.
    pub const KEYS: [&'static str; 9] = [
        "maxMemoryUsage",
        "max_memory_usage",
        "cleanupInterval",
        "cleanup_interval",
        "enableAutoCleanup",
        "enable_auto_cleanup",
        "thresholds",
        "resourceTracking",
        "resource_tracking",
    ];

    pub fn from_json(v: &Value) -> Result<Self> {
        let r = ConfigReader::new("ResourceTracker", v, &Self::KEYS)?;
        let d = TrackerConfig::default();
        let key = |camel: &'static str, snake: &'static str| -> Result<&'static str> {
            Ok(match pick(&r, camel, snake)? {
                Some(("s", _)) => snake,
                _ => camel,
            })
        };
        let max_key = key("maxMemoryUsage", "max_memory_usage")?;
        let max_memory_usage = match r.u64(max_key)? {
            Some(0) => return Err(r.bad(max_key, "a number of bytes > 0")),
            Some(n) => n,
            None => d.max_memory_usage,
        };
        let cleanup_interval_ms = r.u64(key("cleanupInterval", "cleanup_interval")?)?.unwrap_or(d.cleanup_interval_ms);
        let enable_auto_cleanup = r.bool(key("enableAutoCleanup", "enable_auto_cleanup")?, d.enable_auto_cleanup)?;
        let (mut warning, mut critical) = (d.warning, d.critical);
        if let Some(t) = r.get("thresholds") {
            let tr = ConfigReader::new("ResourceTracker thresholds", t, &["warning", "critical"])?;
            let frac = "a fraction of maxMemoryUsage from 0 to 1";
            warning = tr.f64("warning", warning, frac, |x| (0.0..=1.0).contains(&x))?;
            critical = tr.f64("critical", critical, frac, |x| (0.0..=1.0).contains(&x))?;
            if warning > critical {
                return Err(Error::invalid_config(format!(
                    "ResourceTracker config: thresholds.warning ({warning}) is above thresholds.critical ({critical})"
                )));
            }
        }
        let mut c =
            TrackerConfig { max_memory_usage, cleanup_interval_ms, enable_auto_cleanup, warning, critical, ..d };
        if let Some((_, rt)) = pick(&r, "resourceTracking", "resource_tracking")? {
            let rr = ConfigReader::new("ResourceTracker resourceTracking", rt, &["enabled", "detailed", "metadata"])?;
            c.tracking_enabled = rr.bool("enabled", c.tracking_enabled)?;
            c.detailed = rr.bool("detailed", c.detailed)?;
            c.metadata = rr.bool("metadata", c.metadata)?;
        }
        Ok(c)
    }
}

/// One tracked resource, Streamflow's `ResourceStats` shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceStats {
    pub kind: String,
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub metadata: Value,
}

impl ResourceStats {
    pub fn to_json(&self) -> Value {
        json!({"type": self.kind, "size": self.size, "createdAt": self.created_at, "metadata": self.metadata})
    }
}

/// A threshold crossing or a cleanup, delivered to the callback and the poll queue.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerEvent {
    /// `memoryWarning`, `memoryCritical` or `cleanup`.
    pub name: &'static str,
    pub usage: u64,
    pub threshold: f64,
    pub detail: Value,
}

impl TrackerEvent {
    pub fn to_json(&self) -> Value {
        json!({"type": self.name, "usage": self.usage, "threshold": self.threshold, "detail": self.detail})
    }
}

/// What `cleanup()` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanupReport {
    pub released_ids: Vec<u64>,
    pub freed_bytes: u64,
}

pub type EventCallback = Arc<dyn Fn(&TrackerEvent) + Send + Sync>;
pub type Hook = Arc<dyn Fn() + Send + Sync>;

#[derive(Default, Clone, Copy)]
struct TypeCounts {
    live: u64,
    live_bytes: u64,
    released: u64,
    collected_unreleased: u64,
    cleaned_up: u64,
}

#[derive(Default)]
struct State {
    next_id: u64,
    resources: BTreeMap<u64, ResourceStats>,
    total: u64,
    peak: u64,
    tracked: u64,
    by_type: HashMap<String, TypeCounts>,
    level: u8,
    events: VecDeque<TrackerEvent>,
    dropped_events: u64,
    disposed: bool,
}

struct Shared {
    cfg: TrackerConfig,
    /// `resourceTracking.enabled`, switchable at run time by `debug({trackingEnabled})`.
    tracking: std::sync::atomic::AtomicBool,
    /// Ids handed out while tracking was off (0) are always a no-op to release.
    untracked_ids: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    callback: Mutex<Option<EventCallback>>,
    before_gc: Mutex<Vec<Hook>>,
    gc_callback: Mutex<Option<Hook>>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The tracker. Share it by reference or wrap it in an `Arc`; dropping it stops the timer.
pub struct ResourceTracker {
    shared: Arc<Shared>,
    timer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Shared {
    fn closed() -> Error {
        Error::new(ErrorKind::Closed, "ResourceTracker was disposed")
    }

    /// Re-evaluates the level; returns the events to deliver (outside the lock).
    fn evaluate(&self, s: &mut State) -> Vec<TrackerEvent> {
        let max = self.cfg.max_memory_usage as f64;
        let ratio = s.total as f64 / max;
        let (w, c) = (self.cfg.warning, self.cfg.critical);
        let mut level = s.level;
        // Up: to the highest level reached. Down: only a margin below the level's threshold.
        let reached = if ratio >= c {
            2
        } else if ratio >= w {
            1
        } else {
            0
        };
        if reached > level {
            level = reached;
        } else {
            while level > 0 && ratio < [0.0, w, c][level as usize] - HYSTERESIS {
                level -= 1;
            }
        }
        let mut out = Vec::new();
        if level > s.level {
            let (name, threshold) = if level == 2 { ("memoryCritical", c) } else { ("memoryWarning", w) };
            out.push(TrackerEvent {
                name,
                usage: s.total,
                threshold,
                detail: json!({"ratio": ratio, "maxMemoryUsage": self.cfg.max_memory_usage}),
            });
        }
        s.level = level;
        for e in &out {
            Self::queue(s, e.clone());
        }
        out
    }

    fn queue(s: &mut State, e: TrackerEvent) {
        if s.events.len() >= EVENT_QUEUE {
            s.events.pop_front();
            s.dropped_events += 1;
        }
        s.events.push_back(e);
    }

    fn deliver(&self, events: Vec<TrackerEvent>) {
        if events.is_empty() {
            return;
        }
        let cb = self.callback.lock().clone();
        if let Some(cb) = cb {
            for e in &events {
                cb(e);
            }
        }
    }

    fn cleanup(&self, from_timer: bool) -> Result<CleanupReport> {
        if self.state.lock().disposed {
            return Err(Self::closed());
        }
        let hooks = self.before_gc.lock().clone();
        for h in hooks {
            h();
        }
        let mut report = CleanupReport::default();
        let events = {
            let mut s = self.state.lock();
            if self.cfg.enable_auto_cleanup {
                let target = (self.cfg.warning * self.cfg.max_memory_usage as f64) as u64;
                while s.total >= target {
                    let Some((id, r)) = s.resources.pop_first() else { break };
                    s.total -= r.size;
                    let t = s.by_type.entry(r.kind).or_default();
                    t.live -= 1;
                    t.live_bytes -= r.size;
                    t.released += 1;
                    t.cleaned_up += 1;
                    report.released_ids.push(id);
                    report.freed_bytes += r.size;
                }
            }
            let mut ev = self.evaluate(&mut s);
            if from_timer || !report.released_ids.is_empty() {
                let e = TrackerEvent {
                    name: "cleanup",
                    usage: s.total,
                    threshold: self.cfg.warning,
                    detail: json!({"released_ids": report.released_ids, "freed_bytes": report.freed_bytes}),
                };
                Self::queue(&mut s, e.clone());
                ev.push(e);
            }
            ev
        };
        self.deliver(events);
        let gc = self.gc_callback.lock().clone();
        if let Some(gc) = gc {
            gc();
        }
        Ok(report)
    }
}

impl ResourceTracker {
    pub fn from_json(v: &Value) -> Result<Self> {
        Ok(Self::new(TrackerConfig::from_json(v)?))
    }

    /// A tracker; starts the auto-cleanup thread when `enable_auto_cleanup` and
    /// `cleanup_interval_ms > 0`.
    pub fn new(cfg: TrackerConfig) -> Self {
        let shared = Arc::new(Shared {
            tracking: std::sync::atomic::AtomicBool::new(cfg.tracking_enabled),
            untracked_ids: std::sync::atomic::AtomicBool::new(false),
            cfg,
            state: Mutex::new(State { next_id: 1, ..State::default() }),
            callback: Mutex::new(None),
            before_gc: Mutex::new(Vec::new()),
            gc_callback: Mutex::new(None),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let timer = (shared.cfg.enable_auto_cleanup && shared.cfg.cleanup_interval_ms > 0).then(|| {
            let sh = shared.clone();
            std::thread::Builder::new()
                .name("memwarden-tracker".into())
                .spawn(move || {
                    let every = Duration::from_millis(sh.cfg.cleanup_interval_ms);
                    loop {
                        let mut stop = sh.stop.lock();
                        if !*stop {
                            sh.wake.wait_for(&mut stop, every);
                        }
                        if *stop {
                            return;
                        }
                        drop(stop);
                        let _ = sh.cleanup(true);
                    }
                })
                .expect("cannot start the tracker's cleanup thread")
        });
        ResourceTracker { shared, timer: Mutex::new(timer) }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.shared.cfg
    }

    /// Whether `track_resource` keeps resources now (`resourceTracking.enabled`, then `debug`).
    pub fn tracking_enabled(&self) -> bool {
        self.shared.tracking.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The seed's `debug({trackingEnabled})`: switches tracking on or off from now on; resources
    /// already tracked stay tracked and can be released.
    pub fn set_tracking_enabled(&self, on: bool) {
        self.shared.tracking.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Tracks a resource of `kind` and `size` bytes; returns its id (ids start at 1 and are
    /// never reused). With `resourceTracking.enabled` false nothing is kept and the id is 0.
    pub fn track_resource(&self, kind: &str, size: u64, metadata: Value) -> Result<u64> {
        let (id, events) = self.track_resource_deferred(kind, size, metadata)?;
        self.shared.deliver(events);
        Ok(id)
    }

    /// [`track_resource`](Self::track_resource) without calling the event callback: the
    /// events it caused (also queued for [`poll_events`](Self::poll_events) as always) come
    /// back, for a caller that tracks under a lock of its own and hands them to
    /// [`deliver_events`](Self::deliver_events) once that lock is released (the StreamProcessor).
    pub fn track_resource_deferred(&self, kind: &str, size: u64, metadata: Value) -> Result<(u64, Vec<TrackerEvent>)> {
        let cfg = &self.shared.cfg;
        if !self.tracking_enabled() {
            self.shared.untracked_ids.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok((0, Vec::new()));
        }
        let events = {
            let mut s = self.shared.state.lock();
            if s.disposed {
                return Err(Shared::closed());
            }
            let id = s.next_id;
            s.next_id += 1;
            let metadata = if cfg.metadata { metadata } else { Value::Object(Default::default()) };
            s.resources.insert(id, ResourceStats { kind: kind.to_owned(), size, created_at: now_ms(), metadata });
            s.total += size;
            s.peak = s.peak.max(s.total);
            s.tracked += 1;
            let t = s.by_type.entry(kind.to_owned()).or_default();
            t.live += 1;
            t.live_bytes += size;
            let ev = self.shared.evaluate(&mut s);
            (id, ev)
        };
        Ok(events)
    }

    /// Calls the event callback with events [`track_resource_deferred`](Self::track_resource_deferred) returned.
    pub fn deliver_events(&self, events: Vec<TrackerEvent>) {
        self.shared.deliver(events);
    }

    fn remove(&self, id: u64, collected: bool) -> Result<ResourceStats> {
        if id == 0 && self.shared.untracked_ids.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(ResourceStats { kind: String::new(), size: 0, created_at: 0, metadata: Value::Null });
        }
        let (r, events) = {
            let mut s = self.shared.state.lock();
            if s.disposed {
                return Err(Shared::closed());
            }
            let r = s.resources.remove(&id).ok_or_else(|| {
                Error::new(ErrorKind::NotFound, format!("resource {id} is not tracked (unknown or already released)"))
            })?;
            s.total -= r.size;
            let t = s.by_type.entry(r.kind.clone()).or_default();
            t.live -= 1;
            t.live_bytes -= r.size;
            if collected {
                t.collected_unreleased += 1;
            } else {
                t.released += 1;
            }
            let ev = self.shared.evaluate(&mut s);
            (r, ev)
        };
        self.shared.deliver(events);
        Ok(r)
    }

    /// Releases a resource. An unknown or already released id is an error and changes nothing.
    pub fn release_resource(&self, id: u64) -> Result<ResourceStats> {
        self.remove(id, false)
    }

    /// The host collected the resource without a release: it is removed and counted as leaked.
    pub fn mark_collected(&self, id: u64) -> Result<ResourceStats> {
        self.remove(id, true)
    }

    pub fn get_resource(&self, id: u64) -> Option<ResourceStats> {
        self.shared.state.lock().resources.get(&id).cloned()
    }

    /// `totalAllocated` (bytes tracked now), `activeResources`, `peakMemoryUsage`,
    /// `totalTracked`, `maxMemoryUsage`, `usageRatio`, `level`, `byType` (live count per type)
    /// and `leaks` per type (`live`, `released`, `collected_unreleased`, `cleaned_up`).
    pub fn get_memory_stats(&self) -> Value {
        let s = self.shared.state.lock();
        let mut by_type = serde_json::Map::new();
        let mut leaks = serde_json::Map::new();
        let mut bytes = serde_json::Map::new();
        for (k, t) in &s.by_type {
            by_type.insert(k.clone(), json!(t.live));
            bytes.insert(k.clone(), json!(t.live_bytes));
            leaks.insert(
                k.clone(),
                json!({"live": t.live, "released": t.released,
                       "collected_unreleased": t.collected_unreleased, "cleaned_up": t.cleaned_up}),
            );
        }
        let level = ["normal", "warning", "critical"][s.level as usize];
        let mut v = json!({
            "totalAllocated": s.total,
            "activeResources": s.resources.len(),
            "peakMemoryUsage": s.peak,
            "totalTracked": s.tracked,
            "maxMemoryUsage": self.shared.cfg.max_memory_usage,
            "usageRatio": s.total as f64 / self.shared.cfg.max_memory_usage as f64,
            "level": level,
            "byType": by_type,
            "leaks": leaks,
            "droppedEvents": s.dropped_events,
        });
        if self.shared.cfg.detailed {
            v["bytesByType"] = Value::Object(bytes);
        }
        v
    }

    /// The leak report alone: per type `live`, `released`, `collected_unreleased`, `cleaned_up`.
    pub fn leak_report(&self) -> Value {
        self.get_memory_stats()["leaks"].take()
    }

    /// The leak report line that the bindings write to stderr at exit (Python
    /// `report_at_exit=True`, Node `reportAtExit: true`, PHP `'reportAtExit' => true`, or
    /// verbose debugging), without a trailing newline:
    /// `memwarden: ResourceTracker leak report at exit: {"activeResources":N,"totalAllocated":N,"leaks":{...}}`,
    /// the keys in that order and `leaks` as [`leak_report`](Self::leak_report) gives it (an
    /// object, `{}` when nothing was tracked).
    pub fn exit_report_line(&self) -> String {
        let stats = self.get_memory_stats();
        format!(
            "{EXIT_REPORT}: {{\"activeResources\":{},\"totalAllocated\":{},\"leaks\":{}}}",
            stats["activeResources"], stats["totalAllocated"], stats["leaks"]
        )
    }

    /// Events since the last poll, oldest first.
    pub fn poll_events(&self) -> Vec<TrackerEvent> {
        self.shared.state.lock().events.drain(..).collect()
    }

    /// Events are also delivered to this callback, on the thread that caused them (the timer
    /// thread for auto cleanup).
    pub fn set_event_callback(&self, cb: Option<EventCallback>) {
        *self.shared.callback.lock() = cb;
    }

    /// Runs before every cleanup (the seed's `onBeforeGC`).
    pub fn on_before_gc(&self, hook: Hook) {
        self.shared.before_gc.lock().push(hook);
    }

    /// Runs after every cleanup (Streamflow's `gcCallback`).
    pub fn set_gc_callback(&self, hook: Option<Hook>) {
        *self.shared.gc_callback.lock() = hook;
    }

    /// Runs the before-GC hooks, then, with `enableAutoCleanup`, releases the oldest resources
    /// until usage is below the warning threshold, then the gcCallback. The host should drop
    /// the resources whose ids come back.
    pub fn cleanup(&self) -> Result<CleanupReport> {
        self.shared.cleanup(false)
    }

    /// One run of the schedule, as the cleanup thread does it (a `cleanup` event even when
    /// nothing was released), for hosts that keep the schedule on their own event loop because
    /// their hooks must run there (Node: pass `cleanupInterval: 0` and call this from a timer).
    pub fn scheduled_cleanup(&self) -> Result<CleanupReport> {
        self.shared.cleanup(true)
    }

    /// Stops the timer and forgets every resource; returns the final leak report. Later calls
    /// fail with `Closed`; a second dispose returns the same report.
    pub fn dispose(&self) -> Value {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.timer.lock().take() {
            let _ = h.join();
        }
        let report = self.leak_report();
        self.shared.state.lock().disposed = true;
        report
    }
}

impl Drop for ResourceTracker {
    fn drop(&mut self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.timer.lock().take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn tracker(v: Value) -> ResourceTracker {
        ResourceTracker::from_json(&v).unwrap()
    }

    #[test]
    fn config_keys_and_aliases() {
        let t = tracker(json!({"maxMemoryUsage": 1000, "cleanupInterval": 0, "enableAutoCleanup": true,
            "thresholds": {"warning": 0.6, "critical": 0.8}, "resourceTracking": {"detailed": true}}));
        let c = t.config();
        assert_eq!((c.max_memory_usage, c.cleanup_interval_ms, c.warning, c.critical), (1000, 0, 0.6, 0.8));
        assert!(c.enable_auto_cleanup && c.detailed && c.metadata);
        let t = tracker(json!({"max_memory_usage": 5, "cleanup_interval": 0, "enable_auto_cleanup": true}));
        assert_eq!(t.config().max_memory_usage, 5);
        for (v, msg) in [
            (json!({"thresholds": {"warning": -0.1}}), "warning"),
            (json!({"thresholds": {"warning": 0.9, "critical": 0.5}}), "above"),
            (json!({"maxMemoryUsage": 1, "max_memory_usage": 1}), "same option"),
            (json!({"maxMemoryUsag": 1}), "did you mean"),
            (json!({"maxMemoryUsage": -5}), "maxMemoryUsage"),
        ] {
            let e = ResourceTracker::from_json(&v).err().unwrap();
            assert!(e.message().contains(msg), "{e}");
        }
    }

    #[test]
    fn track_release_stats_and_errors_leave_stats_unchanged() {
        let t = tracker(json!({"maxMemoryUsage": 1000}));
        let a = t.track_resource("chunk", 100, json!({"type": "image"})).unwrap();
        let b = t.track_resource("buffer", 50, json!({})).unwrap();
        let r = t.get_resource(a).unwrap();
        assert_eq!((r.kind.as_str(), r.size, &r.metadata), ("chunk", 100, &json!({"type": "image"})));
        assert!(r.to_json()["createdAt"].as_u64().unwrap() > 0);
        t.release_resource(a).unwrap();
        let before = t.get_memory_stats();
        assert_eq!(before["totalAllocated"], 50);
        assert_eq!(before["activeResources"], 1);
        assert_eq!(before["peakMemoryUsage"], 150);
        assert_eq!(before["byType"]["buffer"], 1);
        for id in [a, 999] {
            let e = t.release_resource(id).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound);
            assert_eq!(t.get_memory_stats(), before);
        }
        assert!(t.mark_collected(a).is_err());
        assert_eq!(t.get_memory_stats(), before);
        t.release_resource(b).unwrap();
    }

    #[test]
    fn leak_report_per_type() {
        let t = tracker(json!({}));
        let a = t.track_resource("chunk", 1, json!({})).unwrap();
        let b = t.track_resource("chunk", 1, json!({})).unwrap();
        t.track_resource("chunk", 1, json!({})).unwrap();
        t.release_resource(a).unwrap();
        t.mark_collected(b).unwrap();
        let l = t.leak_report();
        assert_eq!(l["chunk"], json!({"live": 1, "released": 1, "collected_unreleased": 1, "cleaned_up": 0}));
        let fin = t.dispose();
        assert_eq!(fin, l);
        assert_eq!(t.track_resource("x", 1, json!({})).unwrap_err().kind(), ErrorKind::Closed);
    }

    #[test]
    fn exit_report_line_is_the_line_every_binding_writes() {
        let t = tracker(json!({}));
        assert_eq!(
            t.exit_report_line(),
            r#"memwarden: ResourceTracker leak report at exit: {"activeResources":0,"totalAllocated":0,"leaks":{}}"#
        );
        t.track_resource("upload", 10, json!({"name": "a.bin"})).unwrap();
        let done = t.track_resource("upload", 5, json!({})).unwrap();
        t.release_resource(done).unwrap();
        assert_eq!(
            t.exit_report_line(),
            concat!(
                r#"memwarden: ResourceTracker leak report at exit: {"activeResources":1,"totalAllocated":10,"#,
                r#""leaks":{"upload":{"cleaned_up":0,"collected_unreleased":0,"live":1,"released":1}}}"#
            )
        );
        assert_eq!(exit_report_failed_line("boom"), "memwarden: ResourceTracker leak report at exit failed: boom");
    }

    #[test]
    fn threshold_events_once_per_crossing_with_hysteresis() {
        let t = tracker(json!({"maxMemoryUsage": 1000, "thresholds": {"warning": 0.7, "critical": 0.9}}));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        t.set_event_callback(Some(Arc::new(move |e: &TrackerEvent| s.lock().push(e.name))));
        let a = t.track_resource("x", 700, json!({})).unwrap();
        let b = t.track_resource("x", 10, json!({})).unwrap(); // still warning: no event
        t.release_resource(b).unwrap();
        let c = t.track_resource("x", 5, json!({})).unwrap(); // wobble above 0.68: no event
        t.release_resource(c).unwrap();
        let small = t.track_resource("x", 0, json!({})).unwrap();
        t.release_resource(a).unwrap(); // back to normal
        let d = t.track_resource("x", 950, json!({})).unwrap(); // straight to critical
        t.release_resource(d).unwrap();
        t.release_resource(small).unwrap();
        assert_eq!(*seen.lock(), vec!["memoryWarning", "memoryCritical"]);
        let polled: Vec<_> = t.poll_events().into_iter().map(|e| e.name).collect();
        assert_eq!(polled, vec!["memoryWarning", "memoryCritical"]);
        assert!(t.poll_events().is_empty());
        // a drop of less than the margin below warning keeps the level: no second event
        let t = tracker(json!({"maxMemoryUsage": 1000}));
        let a = t.track_resource("x", 700, json!({})).unwrap();
        t.release_resource(a).unwrap();
        let _ = t.track_resource("x", 690, json!({})).unwrap();
        let _ = t.track_resource("x", 15, json!({})).unwrap();
        assert_eq!(t.poll_events().len(), 2, "left warning (0 < 0.68), re-entered once");
    }

    #[test]
    fn cleanup_releases_the_oldest_below_warning() {
        let t = tracker(json!({"maxMemoryUsage": 1000, "cleanupInterval": 0, "enableAutoCleanup": true}));
        let hooks = Arc::new(AtomicUsize::new(0));
        let (h1, h2) = (hooks.clone(), hooks.clone());
        t.on_before_gc(Arc::new(move || {
            h1.fetch_add(1, Ordering::SeqCst);
        }));
        t.set_gc_callback(Some(Arc::new(move || {
            h2.fetch_add(10, Ordering::SeqCst);
        })));
        let ids: Vec<u64> = (0..9).map(|_| t.track_resource("chunk", 100, json!({})).unwrap()).collect();
        let r = t.cleanup().unwrap();
        assert_eq!(r.released_ids, ids[..3].to_vec());
        assert_eq!(r.freed_bytes, 300);
        assert_eq!(t.get_memory_stats()["totalAllocated"], 600);
        assert_eq!(t.leak_report()["chunk"]["cleaned_up"], 3);
        assert_eq!(hooks.load(Ordering::SeqCst), 11);
        // a scheduled run reports itself even when nothing was released
        t.poll_events();
        let r = t.scheduled_cleanup().unwrap();
        assert!(r.released_ids.is_empty());
        assert_eq!(t.poll_events().iter().map(|e| e.name).collect::<Vec<_>>(), vec!["cleanup"]);
        // without enableAutoCleanup, cleanup runs the hooks and releases nothing
        let t = tracker(json!({"maxMemoryUsage": 100}));
        t.track_resource("x", 100, json!({})).unwrap();
        assert!(t.cleanup().unwrap().released_ids.is_empty());
    }

    #[test]
    fn the_timer_cleans_up_and_stops_on_dispose() {
        let t = tracker(json!({"maxMemoryUsage": 1000, "cleanupInterval": 10, "enableAutoCleanup": true}));
        for _ in 0..9 {
            t.track_resource("chunk", 100, json!({})).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while t.get_memory_stats()["totalAllocated"] != 600 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(t.get_memory_stats()["totalAllocated"], 600);
        assert!(t.poll_events().iter().any(|e| e.name == "cleanup"));
        t.dispose();
        assert!(t.timer.lock().is_none());
        // no thread without auto cleanup
        assert!(tracker(json!({"cleanupInterval": 10})).timer.lock().is_none());
    }

    #[test]
    fn disabled_tracking_keeps_nothing_and_metadata_can_be_dropped() {
        let t = tracker(json!({"resourceTracking": {"enabled": false}}));
        assert_eq!(t.track_resource("x", 5, json!({})).unwrap(), 0);
        t.release_resource(0).unwrap();
        assert_eq!(t.get_memory_stats()["activeResources"], 0);
        let t = tracker(json!({"resourceTracking": {"metadata": false}}));
        let id = t.track_resource("x", 5, json!({"a": 1})).unwrap();
        assert_eq!(t.get_resource(id).unwrap().metadata, json!({}));
    }

    #[test]
    fn tracking_can_be_switched_at_run_time() {
        let t = tracker(json!({}));
        assert!(t.release_resource(0).is_err(), "0 was never handed out");
        let id = t.track_resource("x", 5, json!({})).unwrap();
        t.set_tracking_enabled(false);
        assert!(!t.tracking_enabled());
        assert_eq!(t.track_resource("x", 7, json!({})).unwrap(), 0);
        t.release_resource(0).unwrap();
        assert_eq!(t.get_memory_stats()["totalAllocated"], 5);
        t.release_resource(id).unwrap();
        t.set_tracking_enabled(true);
        assert!(t.track_resource("x", 1, json!({})).unwrap() > id);
    }
}
