//! MemoryManager: readings, limit with its origin, states with hysteresis,
//! state-change callbacks, cleanup hooks and "garbage collection".

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cleanup::{Cleanup, CleanupLevel};
use crate::config::ConfigReader;
use crate::error::{Error, ErrorKind, Result};
use crate::probe::{self, LimitOrigin, ProcessProbe};
use crate::size::{Size, parse_size, to_mb};
use crate::stats::{SplitMix64, linear_fit};

/// Memory states, ordered from calm to dire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Normal,
    Warning,
    Critical,
    Emergency,
}

impl State {
    pub const ALL: [State; 4] = [State::Normal, State::Warning, State::Critical, State::Emergency];

    /// `"normal"`, `"warning"`, `"critical"` or `"emergency"`: the value of `STATE_*` in the bindings.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Normal => "normal",
            State::Warning => "warning",
            State::Critical => "critical",
            State::Emergency => "emergency",
        }
    }
}

/// Where current and peak come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This process's resident memory (the default).
    Process,
    /// Numbers the host pushes with [`MemoryManager::update_host_reading`]; the label
    /// (`"host"`, `"v8-heap"`) says whose.
    Host(&'static str),
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Process => "process",
            Source::Host(label) => label,
        }
    }
}

/// A manager's configuration, keyed as the seed writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerConfig {
    pub warning_threshold: f64,
    pub critical_threshold: f64,
    pub emergency_threshold: f64,
    pub auto_gc_threshold: f64,
    pub gc_probability: f64,
    pub enable_detailed_tracking: bool,
    /// An explicit limit in bytes; `None` lets the next origin decide.
    pub memory_limit: Option<u64>,
    pub source: Source,
    pub hysteresis: f64,
    pub random_seed: Option<u64>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            warning_threshold: 0.75,
            critical_threshold: 0.9,
            emergency_threshold: 0.95,
            auto_gc_threshold: 0.8,
            gc_probability: 0.1,
            enable_detailed_tracking: false,
            memory_limit: None,
            source: Source::Process,
            hysteresis: 0.02,
            random_seed: None,
        }
    }
}

impl ManagerConfig {
    /// Every key the manager accepts.
    pub const KEYS: &'static [&'static str] = &[
        "warning_threshold",
        "critical_threshold",
        "auto_gc_threshold",
        "enable_detailed_tracking",
        "gc_probability",
        "emergency_threshold",
        "memory_limit",
        "source",
        "hysteresis",
        "random_seed",
    ];

    /// Reads a config object (`null` = defaults). Unknown keys and bad values are
    /// `InvalidConfig` errors naming the key and the value.
    pub fn from_json(value: &Value) -> Result<Self> {
        let r = ConfigReader::new("MemoryManager", value, Self::KEYS)?;
        let d = ManagerConfig::default();
        let frac = "a number in (0, 1]";
        let in_unit = |x: f64| x > 0.0 && x <= 1.0;
        let cfg = ManagerConfig {
            warning_threshold: r.f64("warning_threshold", d.warning_threshold, frac, in_unit)?,
            critical_threshold: r.f64("critical_threshold", d.critical_threshold, frac, in_unit)?,
            emergency_threshold: r.f64("emergency_threshold", d.emergency_threshold, frac, in_unit)?,
            auto_gc_threshold: r.f64("auto_gc_threshold", d.auto_gc_threshold, frac, in_unit)?,
            gc_probability: r
                .f64("gc_probability", d.gc_probability, "a number in [0, 1]", |x| (0.0..=1.0).contains(&x))?,
            enable_detailed_tracking: r.bool("enable_detailed_tracking", d.enable_detailed_tracking)?,
            memory_limit: match r.get("memory_limit") {
                None => None,
                Some(v) => limit_from_json(v)
                    .map_err(|_| r.bad("memory_limit", "a size like '512M', a number of bytes > 0, or -1 for none"))?,
            },
            source: match r.choice("source", "process", &["process", "host", "v8-heap"])? {
                "host" => Source::Host("host"),
                "v8-heap" => Source::Host("v8-heap"),
                _ => Source::Process,
            },
            hysteresis: r.f64("hysteresis", d.hysteresis, "a number in [0, 0.5)", |x| (0.0..0.5).contains(&x))?,
            random_seed: r.u64("random_seed")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let (w, c, e) = (self.warning_threshold, self.critical_threshold, self.emergency_threshold);
        if !(w < c && c < e) {
            return Err(Error::invalid_config(format!(
                "MemoryManager config: thresholds must be ordered warning_threshold < critical_threshold < \
                 emergency_threshold, got {w} / {c} / {e}"
            )));
        }
        Ok(())
    }

    fn threshold(&self, s: State) -> f64 {
        match s {
            State::Normal => 0.0,
            State::Warning => self.warning_threshold,
            State::Critical => self.critical_threshold,
            State::Emergency => self.emergency_threshold,
        }
    }

    /// The state a fraction of the limit falls in, ignoring hysteresis.
    fn raw_state(&self, fraction: f64) -> State {
        if fraction >= self.emergency_threshold {
            State::Emergency
        } else if fraction >= self.critical_threshold {
            State::Critical
        } else if fraction >= self.warning_threshold {
            State::Warning
        } else {
            State::Normal
        }
    }

    /// Moving up is immediate; moving down only once usage is `hysteresis` below the
    /// threshold of the state being left.
    fn next_state(&self, current: State, fraction: f64) -> State {
        let raw = self.raw_state(fraction);
        if raw >= current { raw } else { raw.max(current.min(self.raw_state(fraction + self.hysteresis))) }
    }
}

/// A JSON limit value: `"512M"`, a number of bytes, or `-1` / `"-1"` (none).
fn limit_from_json(v: &Value) -> Result<Option<u64>> {
    let size = match v {
        Value::String(s) => parse_size(s)?,
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(b), _) => Size::Bytes(b),
            (None, Some(-1)) => Size::Unlimited,
            _ => return Err(Error::invalid_argument("bad limit")),
        },
        _ => return Err(Error::invalid_argument("bad limit")),
    };
    match size {
        Size::Bytes(0) => Err(Error::invalid_argument("zero limit")),
        Size::Bytes(b) => Ok(Some(b)),
        Size::Unlimited => Ok(None),
    }
}

/// One fresh reading, in the units every binding shows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    pub current_bytes: u64,
    pub peak_bytes: u64,
    pub limit_bytes: u64,
    /// 0–100.
    pub usage_percent: f64,
    pub current_mb: f64,
    pub peak_mb: f64,
    pub limit_mb: f64,
    pub limit_origin: LimitOrigin,
    #[serde(serialize_with = "ser_source")]
    pub source: Source,
}

fn ser_source<S: serde::Serializer>(s: &Source, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

impl Usage {
    fn new(current: u64, peak: u64, (limit, origin): (u64, LimitOrigin), source: Source) -> Usage {
        Usage {
            current_bytes: current,
            peak_bytes: peak,
            limit_bytes: limit,
            usage_percent: if limit == 0 { 0.0 } else { current as f64 * 100.0 / limit as f64 },
            current_mb: to_mb(current),
            peak_mb: to_mb(peak),
            limit_mb: to_mb(limit),
            limit_origin: origin,
            source,
        }
    }
}

/// One hook's part in a cleanup run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookRun {
    pub name: String,
    pub ok: bool,
    pub error: Option<String>,
    pub duration_ms: f64,
}

/// What a cleanup run ("garbage collection") did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GcReport {
    /// `"manual"`, `"auto"` (crossed `auto_gc_threshold`), `"probability"` (`gc_probability`
    /// while above it), `"emergency"` (entered the emergency state) or `"emergency_manual"`.
    pub trigger: &'static str,
    pub level: CleanupLevel,
    pub before_bytes: u64,
    pub after_bytes: u64,
    /// `before - after`, never negative.
    pub freed_bytes: u64,
    pub freed_mb: f64,
    pub duration_ms: f64,
    pub hooks: Vec<HookRun>,
    /// Whether glibc's `malloc_trim(0)` ran.
    pub malloc_trim: bool,
}

pub type StateCallback = Arc<dyn Fn(State, State) -> Result<()> + Send + Sync>;
pub type BeforeGcHook = Arc<dyn Fn() -> Result<()> + Send + Sync>;
pub type AfterGcCallback = Arc<dyn Fn(&GcReport) -> Result<()> + Send + Sync>;
/// Asked for a fresh host reading whenever the manager needs one: `(current, peak, limit)`,
/// the limit `None` when the host has none.
pub type HostReader = Arc<dyn Fn() -> Result<(u64, u64, Option<u64>)> + Send + Sync>;

struct CleanupHook {
    name: String,
    priority: i32,
    hook: Arc<dyn Cleanup>,
}

#[derive(Default)]
struct Callbacks {
    state_change: Vec<StateCallback>,
    before_gc: Vec<BeforeGcHook>,
    after_gc: Vec<AfterGcCallback>,
    /// Kept sorted: higher priority first, then registration order.
    cleanup: Vec<Arc<CleanupHook>>,
    host_reader: Option<HostReader>,
}

#[derive(Debug, Clone, Copy)]
struct HostReading {
    current: u64,
    peak: u64,
    limit: Option<u64>,
}

/// History kept with `enable_detailed_tracking`: this many recent samples.
pub const HISTORY_SAMPLES: usize = 120;

struct Inner {
    cfg: ManagerConfig,
    state: State,
    system_limit: (u64, LimitOrigin),
    host: Option<HostReading>,
    peak_seen: u64,
    rng: SplitMix64,
    above_auto_gc: bool,
    checks: u64,
    state_changes: u64,
    cleanup_runs: u64,
    last_cleanup: Option<GcReport>,
    history: VecDeque<(f64, u64)>,
}

/// What a [`MemoryManager::check`] decided to do after updating the state.
enum AutoCleanup {
    None,
    Gc(&'static str),
    Emergency,
}

/// Watches one process's (or host's) memory against a limit.
///
/// Thread-safe. Callbacks run synchronously on the thread that called in, and the
/// manager holds none of its locks while they run, so they may call back in.
pub struct MemoryManager {
    probe: Option<ProcessProbe>,
    inner: Mutex<Inner>,
    callbacks: Mutex<Callbacks>,
    started: Instant,
    /// Serialises cleanup runs; `gc_owner` names the thread inside one so that a
    /// hook calling back in is refused instead of deadlocking.
    gc_lock: Mutex<()>,
    gc_owner: AtomicU64,
}

fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    TOKEN.with(|t| *t)
}

impl MemoryManager {
    pub fn new(cfg: ManagerConfig) -> Result<Self> {
        let probe = match cfg.source {
            Source::Process => Some(ProcessProbe::new()?),
            Source::Host(_) => None,
        };
        let rng = cfg.random_seed.map(SplitMix64::new).unwrap_or_else(SplitMix64::from_entropy);
        Ok(MemoryManager {
            probe,
            inner: Mutex::new(Inner {
                cfg,
                state: State::Normal,
                system_limit: system_limit(),
                host: None,
                peak_seen: 0,
                rng,
                above_auto_gc: false,
                checks: 0,
                state_changes: 0,
                cleanup_runs: 0,
                last_cleanup: None,
                history: VecDeque::new(),
            }),
            callbacks: Mutex::new(Callbacks::default()),
            started: Instant::now(),
            gc_lock: Mutex::new(()),
            gc_owner: AtomicU64::new(0),
        })
    }

    /// A manager from a JSON config (`null` = defaults).
    pub fn from_json(config: &Value) -> Result<Self> {
        Self::new(ManagerConfig::from_json(config)?)
    }

    pub fn config(&self) -> ManagerConfig {
        self.inner.lock().cfg.clone()
    }

    // ---- readings -------------------------------------------------------

    fn current_bytes(&self) -> Result<u64> {
        match &self.probe {
            Some(p) => p.current_bytes(),
            None => self.host_reading().map(|h| h.current),
        }
    }

    /// The host's numbers: fresh from the host reader when one is set, else the last pushed.
    fn host_reading(&self) -> Result<HostReading> {
        let reader = self.callbacks.lock().host_reader.clone();
        if let Some(read) = reader {
            let (current, peak, limit) = read()?;
            let h = HostReading { current, peak: peak.max(current), limit: limit.filter(|l| *l > 0) };
            self.inner.lock().host = Some(h);
            return Ok(h);
        }
        let inner = self.inner.lock();
        inner.host.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "source '{}' has no reading yet; push one with update_host_reading() first",
                    inner.cfg.source.as_str()
                ),
            )
        })
    }

    /// For a host source: the host's current and peak usage and its own limit (`None` when
    /// the host has none, like PHP's `memory_limit = -1`).
    pub fn update_host_reading(&self, current: u64, peak: u64, limit: Option<u64>) -> Result<()> {
        let mut inner = self.inner.lock();
        if let Source::Process = inner.cfg.source {
            return Err(Error::invalid_argument(
                "update_host_reading() needs source 'host' or 'v8-heap'; this manager reads the process",
            ));
        }
        inner.host = Some(HostReading { current, peak: peak.max(current), limit: limit.filter(|l| *l > 0) });
        Ok(())
    }

    /// For a host source: a function the manager calls for a fresh reading each time it
    /// needs one (check, usage, before and after cleanup), instead of pushed readings.
    pub fn set_host_reader(&self, reader: HostReader) -> Result<()> {
        if let Source::Process = self.inner.lock().cfg.source {
            return Err(Error::invalid_argument(
                "set_host_reader() needs source 'host' or 'v8-heap'; this manager reads the process",
            ));
        }
        self.callbacks.lock().host_reader = Some(reader);
        Ok(())
    }

    fn limit_of(inner: &Inner) -> (u64, LimitOrigin) {
        if let Some(l) = inner.cfg.memory_limit {
            return (l, LimitOrigin::Explicit);
        }
        if let Some(HostReading { limit: Some(l), .. }) = inner.host {
            return (l, LimitOrigin::Host);
        }
        inner.system_limit
    }

    /// The limit in bytes and where it came from.
    pub fn limit(&self) -> (u64, LimitOrigin) {
        Self::limit_of(&self.inner.lock())
    }

    /// Reads cgroup and physical limits again (they are read once, at construction).
    pub fn refresh_limit(&self) {
        let l = system_limit();
        self.inner.lock().system_limit = l;
    }

    /// Sets an explicit limit; [`Size::Unlimited`] (`-1`) clears it so the next origin applies.
    pub fn set_memory_limit(&self, size: Size) -> Result<()> {
        let limit = match size {
            Size::Bytes(0) => {
                return Err(Error::invalid_argument("invalid memory limit 0: a limit must be greater than zero"));
            }
            Size::Bytes(b) => Some(b),
            Size::Unlimited => None,
        };
        self.inner.lock().cfg.memory_limit = limit;
        Ok(())
    }

    /// `set_memory_limit` from text: `"512M"`, `"1G"`, `"-1"`.
    pub fn set_memory_limit_str(&self, text: &str) -> Result<()> {
        self.set_memory_limit(parse_size(text)?)
    }

    /// A fresh reading. Does not change the state.
    pub fn get_memory_usage(&self) -> Result<Usage> {
        let (current, peak) = match &self.probe {
            Some(p) => {
                let current = p.current_bytes()?;
                (current, p.peak_bytes()?.max(current))
            }
            None => {
                let h = self.host_reading()?;
                (h.current, h.peak)
            }
        };
        let mut inner = self.inner.lock();
        inner.peak_seen = inner.peak_seen.max(peak);
        Ok(Usage::new(current, inner.peak_seen, Self::limit_of(&inner), inner.cfg.source))
    }

    /// Resets the peak to the current reading (`/proc/self/clear_refs` for the process).
    pub fn reset_peak(&self) -> Result<()> {
        if let Some(p) = &self.probe {
            p.reset_peak()?;
        }
        let current = self.current_bytes().unwrap_or(0);
        let mut inner = self.inner.lock();
        inner.peak_seen = current;
        if let Some(h) = inner.host.as_mut() {
            h.peak = h.current;
        }
        Ok(())
    }

    // ---- states ----------------------------------------------------------

    /// The state the last `check()` arrived at, without a new reading.
    pub fn state(&self) -> State {
        self.inner.lock().state
    }

    /// Samples, updates the state (with hysteresis), fires `on_state_change(old, new)` once
    /// per change, and runs automatic cleanup: an emergency cleanup on entering the emergency
    /// state; a collection when usage crosses `auto_gc_threshold` and, while it stays above,
    /// with probability `gc_probability` per check.
    ///
    /// If a callback or hook fails, everything else still runs and the state is still
    /// updated; the first failure is returned as an `ErrorKind::Callback` error.
    pub fn check(&self) -> Result<State> {
        let current = self.current_bytes()?;
        let (old, new, auto) = {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            inner.checks += 1;
            inner.peak_seen = inner.peak_seen.max(current);
            let (limit, _) = Self::limit_of(inner);
            let fraction = current as f64 / limit as f64;
            let old = inner.state;
            let new = inner.cfg.next_state(old, fraction);
            inner.state = new;
            if new != old {
                inner.state_changes += 1;
            }
            let auto = if new == State::Emergency && old != State::Emergency {
                AutoCleanup::Emergency
            } else if fraction >= inner.cfg.auto_gc_threshold {
                if !inner.above_auto_gc {
                    inner.above_auto_gc = true;
                    AutoCleanup::Gc("auto")
                } else if inner.cfg.gc_probability > 0.0 && inner.rng.next_f64() < inner.cfg.gc_probability {
                    AutoCleanup::Gc("probability")
                } else {
                    AutoCleanup::None
                }
            } else {
                if fraction < inner.cfg.auto_gc_threshold - inner.cfg.hysteresis {
                    inner.above_auto_gc = false;
                }
                AutoCleanup::None
            };
            if inner.cfg.enable_detailed_tracking {
                if inner.history.len() == HISTORY_SAMPLES {
                    inner.history.pop_front();
                }
                let t = self.started.elapsed().as_secs_f64();
                inner.history.push_back((t, current));
            }
            (old, new, auto)
        };

        let mut first_err: Option<Error> = None;
        if new != old {
            let cbs = self.callbacks.lock().state_change.clone();
            for cb in cbs {
                if let Err(e) = cb(old, new) {
                    first_err.get_or_insert(e);
                }
            }
        }
        // A check from inside a cleanup hook never starts another cleanup.
        let in_cleanup = self.gc_owner.load(Ordering::Acquire) == thread_token();
        let cleanup = match auto {
            AutoCleanup::None => Ok(()),
            _ if in_cleanup => Ok(()),
            AutoCleanup::Gc(trigger) => self.run_cleanup(trigger, CleanupLevel::Normal).map(|_| ()),
            AutoCleanup::Emergency => self.run_cleanup("emergency", CleanupLevel::Emergency).map(|_| ()),
        };
        if let Err(e) = cleanup {
            first_err.get_or_insert(e);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(new),
        }
    }

    // ---- callbacks and hooks ---------------------------------------------

    /// `on_state_change(old, new)`, fired once per change, in registration order.
    pub fn on_state_change(&self, cb: StateCallback) {
        self.callbacks.lock().state_change.push(cb);
    }

    /// A hook that runs first in every cleanup run (the TypeScript guide's `onBeforeGC`).
    pub fn on_before_gc(&self, hook: BeforeGcHook) {
        self.callbacks.lock().before_gc.push(hook);
    }

    /// A callback that runs last in every cleanup run, with its report (`gcCallback`).
    pub fn on_after_gc(&self, cb: AfterGcCallback) {
        self.callbacks.lock().after_gc.push(cb);
    }

    /// Registers a named cleanup hook. Higher priorities run first; equal priorities in
    /// registration order. A second registration under the same name replaces the first.
    pub fn register_cleanup(&self, name: &str, priority: i32, hook: Arc<dyn Cleanup>) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid_argument("a cleanup hook needs a non-empty name"));
        }
        let mut cbs = self.callbacks.lock();
        cbs.cleanup.retain(|h| h.name != name);
        let at = cbs.cleanup.iter().position(|h| h.priority < priority).unwrap_or(cbs.cleanup.len());
        cbs.cleanup.insert(at, Arc::new(CleanupHook { name: name.to_owned(), priority, hook }));
        Ok(())
    }

    /// Removes a cleanup hook by name; `false` when there was none.
    pub fn unregister_cleanup(&self, name: &str) -> bool {
        let mut cbs = self.callbacks.lock();
        let before = cbs.cleanup.len();
        cbs.cleanup.retain(|h| h.name != name);
        cbs.cleanup.len() != before
    }

    /// Names and priorities of the registered cleanup hooks, in the order they run.
    pub fn cleanup_hooks(&self) -> Vec<(String, i32)> {
        self.callbacks.lock().cleanup.iter().map(|h| (h.name.clone(), h.priority)).collect()
    }

    // ---- cleanup ---------------------------------------------------------

    /// Runs `onBeforeGC` hooks, the cleanup hooks by priority, `malloc_trim(0)` on glibc,
    /// then the after-GC callbacks, and reports bytes freed and time taken.
    pub fn force_garbage_collection(&self) -> Result<GcReport> {
        self.run_cleanup("manual", CleanupLevel::Normal)
    }

    /// Everything [`force_garbage_collection`](Self::force_garbage_collection) does, with
    /// hooks asked to release all they can.
    pub fn emergency_cleanup(&self) -> Result<GcReport> {
        self.run_cleanup("emergency_manual", CleanupLevel::Emergency)
    }

    fn run_cleanup(&self, trigger: &'static str, level: CleanupLevel) -> Result<GcReport> {
        let me = thread_token();
        if self.gc_owner.load(Ordering::Acquire) == me {
            return Err(Error::invalid_argument(
                "a cleanup run is already in progress on this thread (called from inside a cleanup hook)",
            ));
        }
        let _running = self.gc_lock.lock();
        self.gc_owner.store(me, Ordering::Release);
        let result = self.cleanup_steps(trigger, level);
        self.gc_owner.store(0, Ordering::Release);
        result
    }

    fn cleanup_steps(&self, trigger: &'static str, level: CleanupLevel) -> Result<GcReport> {
        let t0 = Instant::now();
        let before = self.current_bytes().unwrap_or(0);
        let (before_gc, cleanup, after_gc) = {
            let c = self.callbacks.lock();
            (c.before_gc.clone(), c.cleanup.clone(), c.after_gc.clone())
        };
        let mut first_err: Option<Error> = None;
        let mut hooks = Vec::with_capacity(before_gc.len() + cleanup.len());
        let mut record = |name: String, started: Instant, r: Result<()>| {
            let error = r.as_ref().err().map(|e| e.message().to_owned());
            if let Err(e) = r {
                first_err.get_or_insert(Error::callback(format!("cleanup hook '{name}' failed: {}", e.message())));
            }
            hooks.push(HookRun { name, ok: error.is_none(), error, duration_ms: ms(started.elapsed()) });
        };
        for (i, h) in before_gc.iter().enumerate() {
            let s = Instant::now();
            record(format!("before_gc#{i}"), s, h());
        }
        for h in &cleanup {
            let s = Instant::now();
            record(h.name.clone(), s, h.hook.cleanup(level));
        }
        let trimmed = malloc_trim();
        let after = self.current_bytes().unwrap_or(before);
        let freed = before.saturating_sub(after);
        let mut report = GcReport {
            trigger,
            level,
            before_bytes: before,
            after_bytes: after,
            freed_bytes: freed,
            freed_mb: to_mb(freed),
            duration_ms: 0.0,
            hooks,
            malloc_trim: trimmed,
        };
        report.duration_ms = ms(t0.elapsed());
        for cb in &after_gc {
            if let Err(e) = cb(&report) {
                first_err.get_or_insert(Error::callback(format!("after-GC callback failed: {}", e.message())));
            }
        }
        {
            let mut inner = self.inner.lock();
            inner.cleanup_runs += 1;
            inner.last_cleanup = Some(report.clone());
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    // ---- statistics ------------------------------------------------------

    /// Usage, state, limit and its origin, thresholds, PSI, counters, the last cleanup and,
    /// with `enable_detailed_tracking`, recent samples and the growth rate (MB/min, with the
    /// R² of its least-squares fit).
    pub fn get_detailed_stats(&self) -> Result<Value> {
        let usage = self.get_memory_usage()?;
        let hooks = self.cleanup_hooks();
        let inner = self.inner.lock();
        let (limit, origin) = Self::limit_of(&inner);
        let c = &inner.cfg;
        let (history, growth) = if c.enable_detailed_tracking {
            let pts: Vec<(f64, f64)> = inner.history.iter().map(|&(t, b)| (t / 60.0, to_mb(b))).collect();
            let hist: Vec<Value> =
                inner.history.iter().map(|&(t, b)| json!({"elapsed_seconds": t, "current_bytes": b})).collect();
            let growth = linear_fit(&pts).map(|(slope, r2)| json!({"mb_per_min": slope, "r_squared": r2}));
            (Value::Array(hist), growth.unwrap_or(Value::Null))
        } else {
            (Value::Null, Value::Null)
        };
        Ok(json!({
            "usage": usage,
            "state": inner.state,
            "source": c.source.as_str(),
            "limit": {
                "bytes": limit,
                "mb": to_mb(limit),
                "formatted": crate::size::format_size(limit),
                "origin": origin,
            },
            "thresholds": {
                "warning_threshold": c.warning_threshold,
                "critical_threshold": c.critical_threshold,
                "emergency_threshold": c.emergency_threshold,
                "auto_gc_threshold": c.auto_gc_threshold,
                "gc_probability": c.gc_probability,
                "hysteresis": c.hysteresis,
            },
            "psi": probe::read_psi(),
            "checks": inner.checks,
            "state_changes": inner.state_changes,
            "cleanup_runs": inner.cleanup_runs,
            "last_cleanup": inner.last_cleanup,
            "cleanup_hooks": hooks.iter().map(|(n, p)| json!({"name": n, "priority": p})).collect::<Vec<_>>(),
            "enable_detailed_tracking": c.enable_detailed_tracking,
            "history": history,
            "growth_rate": growth,
        }))
    }

    /// The threshold (a fraction of the limit) at which `state` begins.
    pub fn threshold_of(&self, state: State) -> f64 {
        self.inner.lock().cfg.threshold(state)
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn system_limit() -> (u64, LimitOrigin) {
    probe::cgroup_limit().unwrap_or_else(|| (probe::physical_memory().max(1), LimitOrigin::Physical))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc_trim() -> bool {
    // Safety: malloc_trim has no preconditions; it only returns free heap pages to the OS.
    unsafe { libc::malloc_trim(0) };
    true
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn host_manager(cfg: Value) -> MemoryManager {
        let mut cfg = cfg;
        cfg["source"] = json!("host");
        cfg.as_object_mut().unwrap().entry("random_seed").or_insert(json!(1));
        MemoryManager::from_json(&cfg).unwrap()
    }

    fn at(m: &MemoryManager, percent: u64) -> State {
        m.update_host_reading(percent * 10, percent * 10, Some(1000)).unwrap();
        m.check().unwrap()
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = ManagerConfig::from_json(&Value::Null).unwrap();
        assert_eq!(c, ManagerConfig::default());
        assert_eq!((c.warning_threshold, c.critical_threshold, c.emergency_threshold), (0.75, 0.9, 0.95));
        assert_eq!((c.auto_gc_threshold, c.gc_probability), (0.8, 0.1));
    }

    #[test]
    fn bad_config_names_key_and_value() {
        let cases = [
            (json!({"warning_threshold": 1.5}), "'warning_threshold'"),
            (json!({"warning_threshold": "high"}), "'high'"),
            (json!({"critical_threshold": 0}), "'critical_threshold'"),
            (json!({"gc_probability": -0.1}), "-0.1"),
            (json!({"enable_detailed_tracking": "yes"}), "'enable_detailed_tracking'"),
            (json!({"memory_limit": "12X"}), "'12X'"),
            (json!({"memory_limit": -5}), "-5"),
            (json!({"memory_limit": 0}), "'memory_limit'"),
            (json!({"source": "heap"}), "'heap'"),
            (json!({"hysteresis": 0.7}), "'hysteresis'"),
            (json!({"random_seed": -1}), "'random_seed'"),
            (json!({"warning_treshold": 0.5}), "did you mean 'warning_threshold'"),
            (json!({"warning_threshold": 0.95, "critical_threshold": 0.9}), "ordered"),
            (json!("512M"), "expected an object"),
        ];
        for (cfg, needle) in cases {
            let e = ManagerConfig::from_json(&cfg).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{cfg}");
            assert!(e.message().contains(needle), "{cfg}: {e}");
        }
    }

    #[test]
    fn memory_limit_forms() {
        let c = ManagerConfig::from_json(&json!({"memory_limit": "512M"})).unwrap();
        assert_eq!(c.memory_limit, Some(512 << 20));
        let c = ManagerConfig::from_json(&json!({"memory_limit": 4096})).unwrap();
        assert_eq!(c.memory_limit, Some(4096));
        let c = ManagerConfig::from_json(&json!({"memory_limit": -1})).unwrap();
        assert_eq!(c.memory_limit, None);
    }

    #[test]
    fn states_follow_thresholds() {
        let m = host_manager(json!({"hysteresis": 0.0, "gc_probability": 0.0}));
        assert_eq!(at(&m, 10), State::Normal);
        assert_eq!(at(&m, 75), State::Warning);
        assert_eq!(at(&m, 90), State::Critical);
        assert_eq!(at(&m, 96), State::Emergency);
        assert_eq!(at(&m, 50), State::Normal);
        assert_eq!(m.state(), State::Normal);
    }

    #[test]
    fn wobbling_at_a_threshold_changes_state_once() {
        let m = host_manager(json!({}));
        let changes = Arc::new(Mutex::new(Vec::new()));
        let c = changes.clone();
        m.on_state_change(Arc::new(move |o, n| {
            c.lock().push((o, n));
            Ok(())
        }));
        for i in 0..100 {
            m.update_host_reading(if i % 2 == 0 { 749 } else { 751 }, 751, Some(1000)).unwrap();
            m.check().unwrap();
        }
        assert_eq!(*changes.lock(), vec![(State::Normal, State::Warning)]);
        // Down only once usage is the hysteresis (2%) below the threshold.
        assert_eq!(at(&m, 74), State::Warning);
        assert_eq!(at(&m, 72), State::Normal);
        assert_eq!(changes.lock().len(), 2);
        // From emergency straight down to where usage is.
        at(&m, 99);
        assert_eq!(at(&m, 91), State::Critical);
        assert_eq!(at(&m, 20), State::Normal);
    }

    #[test]
    fn callbacks_get_old_and_new_and_may_call_back_in() {
        let m = Arc::new(host_manager(json!({"gc_probability": 0.0})));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, m2) = (seen.clone(), Arc::downgrade(&m));
        m.on_state_change(Arc::new(move |o, n| {
            let usage = m2.upgrade().unwrap().get_memory_usage()?;
            s.lock().push((o.as_str(), n.as_str(), usage.usage_percent.round()));
            Ok(())
        }));
        at(&m, 91);
        assert_eq!(*seen.lock(), vec![("normal", "critical", 91.0)]);
    }

    #[test]
    fn failing_callback_still_updates_state_and_runs_the_rest() {
        let m = host_manager(json!({"gc_probability": 0.0}));
        let ran = Arc::new(AtomicUsize::new(0));
        m.on_state_change(Arc::new(|_, _| Err(Error::callback("boom"))));
        let r = ran.clone();
        m.on_state_change(Arc::new(move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        m.update_host_reading(760, 760, Some(1000)).unwrap();
        let e = m.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Callback);
        assert_eq!(e.message(), "boom");
        assert_eq!(m.state(), State::Warning);
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn cleanup_order_and_report() {
        let m = host_manager(json!({}));
        m.update_host_reading(500, 500, Some(1000)).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        m.on_before_gc(Arc::new(move || {
            o.lock().push("before".to_string());
            Ok(())
        }));
        for (name, prio) in [("low", -5), ("high", 10), ("mid", 0), ("mid2", 0)] {
            let o = order.clone();
            m.register_cleanup(
                name,
                prio,
                Arc::new(move |lvl: CleanupLevel| {
                    o.lock().push(format!("{name}:{}", lvl.as_str()));
                    Ok(())
                }),
            )
            .unwrap();
        }
        let o = order.clone();
        m.on_after_gc(Arc::new(move |r: &GcReport| {
            o.lock().push(format!("after:{}", r.hooks.len()));
            Ok(())
        }));
        let r = m.force_garbage_collection().unwrap();
        assert_eq!(*order.lock(), ["before", "high:normal", "mid:normal", "mid2:normal", "low:normal", "after:5"]);
        assert_eq!(r.trigger, "manual");
        assert_eq!(r.before_bytes, 500);
        assert!(r.hooks.iter().all(|h| h.ok));
        order.lock().clear();
        let r = m.emergency_cleanup().unwrap();
        assert_eq!(r.level, CleanupLevel::Emergency);
        assert!(order.lock().contains(&"high:emergency".to_string()));
        assert!(m.unregister_cleanup("low"));
        assert_eq!(m.cleanup_hooks().len(), 3);
        let stats = m.get_detailed_stats().unwrap();
        assert_eq!(stats["cleanup_runs"], 2);
    }

    #[test]
    fn failing_hook_is_reported_and_others_run() {
        let m = host_manager(json!({}));
        m.update_host_reading(1, 1, None).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        m.register_cleanup("bad", 5, Arc::new(|_: CleanupLevel| Err(Error::callback("nope")))).unwrap();
        let r = ran.clone();
        m.register_cleanup(
            "good",
            1,
            Arc::new(move |_: CleanupLevel| {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
        )
        .unwrap();
        let e = m.force_garbage_collection().unwrap_err();
        assert!(e.message().contains("'bad'") && e.message().contains("nope"), "{e}");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        let last = &m.get_detailed_stats().unwrap()["last_cleanup"];
        assert_eq!(last["hooks"][0]["ok"], false);
        assert_eq!(last["hooks"][1]["ok"], true);
    }

    #[test]
    fn reentrant_cleanup_is_refused_not_deadlocked() {
        let m = Arc::new(host_manager(json!({})));
        m.update_host_reading(1, 1, None).unwrap();
        let w = Arc::downgrade(&m);
        m.register_cleanup(
            "again",
            0,
            Arc::new(move |_: CleanupLevel| w.upgrade().unwrap().force_garbage_collection().map(|_| ())),
        )
        .unwrap();
        let e = m.force_garbage_collection().unwrap_err();
        assert!(e.message().contains("already in progress"), "{e}");
    }

    #[test]
    fn automatic_cleanup_on_crossing_and_by_probability() {
        let m = host_manager(json!({"gc_probability": 0.5, "random_seed": 42}));
        let runs = Arc::new(Mutex::new(Vec::new()));
        let r = runs.clone();
        m.on_after_gc(Arc::new(move |rep: &GcReport| {
            r.lock().push(rep.trigger);
            Ok(())
        }));
        at(&m, 50);
        assert!(runs.lock().is_empty());
        at(&m, 81);
        assert_eq!(*runs.lock(), ["auto"]);
        for _ in 0..200 {
            at(&m, 82);
        }
        let prob = runs.lock().iter().filter(|t| **t == "probability").count();
        assert!((60..140).contains(&prob), "{prob} probability runs out of 200 at p=0.5");
        runs.lock().clear();
        at(&m, 97);
        assert_eq!(*runs.lock(), ["emergency"]);
        // Below auto_gc minus hysteresis, then above again: another crossing.
        at(&m, 50);
        runs.lock().clear();
        let m2 = host_manager(json!({"gc_probability": 0.0}));
        let r2 = runs.clone();
        m2.on_after_gc(Arc::new(move |rep: &GcReport| {
            r2.lock().push(rep.trigger);
            Ok(())
        }));
        at(&m2, 81);
        at(&m2, 85);
        at(&m2, 70);
        at(&m2, 81);
        assert_eq!(*runs.lock(), ["auto", "auto"]);
    }

    #[test]
    fn same_seed_same_decisions() {
        let count = |seed: u64| {
            let m = host_manager(json!({"gc_probability": 0.3, "random_seed": seed}));
            let n = Arc::new(AtomicUsize::new(0));
            let c = n.clone();
            m.on_after_gc(Arc::new(move |_: &GcReport| {
                c.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }));
            for _ in 0..100 {
                at(&m, 85);
            }
            n.load(Ordering::SeqCst)
        };
        assert_eq!(count(9), count(9));
    }

    #[test]
    fn limit_origins_in_order() {
        let m = host_manager(json!({}));
        m.update_host_reading(10, 10, None).unwrap();
        let (_, o) = m.limit();
        assert!(matches!(o, LimitOrigin::CgroupV1 | LimitOrigin::CgroupV2 | LimitOrigin::Physical));
        m.update_host_reading(10, 10, Some(128 << 20)).unwrap();
        assert_eq!(m.limit(), (128 << 20, LimitOrigin::Host));
        m.set_memory_limit_str("512M").unwrap();
        assert_eq!(m.limit(), (512 << 20, LimitOrigin::Explicit));
        m.set_memory_limit_str("-1").unwrap();
        assert_eq!(m.limit(), (128 << 20, LimitOrigin::Host));
        let before = m.limit();
        assert!(m.set_memory_limit_str("12Q").unwrap_err().message().contains("'12Q'"));
        assert!(m.set_memory_limit(Size::Bytes(0)).is_err());
        assert_eq!(m.limit(), before, "a bad limit leaves the manager unchanged");
    }

    #[test]
    fn process_source_reads_real_memory() {
        let m = MemoryManager::from_json(&json!({"memory_limit": "64G"})).unwrap();
        let u = m.get_memory_usage().unwrap();
        assert!(u.current_bytes > 1 << 20);
        assert!(u.peak_bytes >= u.current_bytes);
        assert_eq!(u.limit_bytes, 64 << 30);
        assert!((u.current_mb - u.current_bytes as f64 / 1048576.0).abs() < 1e-9);
        assert!((u.usage_percent - u.current_bytes as f64 * 100.0 / (64u64 << 30) as f64).abs() < 1e-9);
        assert_eq!(m.check().unwrap(), State::Normal);
        assert!(m.update_host_reading(1, 1, None).is_err());
        // Limit just above current: usage is critical-or-worse.
        m.set_memory_limit(Size::Bytes(u.current_bytes + u.current_bytes / 50)).unwrap();
        assert!(m.check().unwrap() >= State::Critical);
    }

    #[test]
    fn host_reader_is_asked_for_every_reading() {
        let m = host_manager(json!({"gc_probability": 0.0}));
        let level = Arc::new(AtomicUsize::new(100));
        let l = level.clone();
        m.set_host_reader(Arc::new(move || {
            let v = l.load(Ordering::SeqCst) as u64;
            Ok((v, v, Some(1000)))
        }))
        .unwrap();
        assert_eq!(m.check().unwrap(), State::Normal);
        level.store(920, Ordering::SeqCst);
        assert_eq!(m.check().unwrap(), State::Critical);
        assert_eq!(m.limit(), (1000, LimitOrigin::Host));
        // Cleanup sees the host's number after its hooks ran.
        let l = level.clone();
        m.register_cleanup(
            "free",
            0,
            Arc::new(move |_: CleanupLevel| {
                l.store(400, Ordering::SeqCst);
                Ok(())
            }),
        )
        .unwrap();
        let r = m.force_garbage_collection().unwrap();
        assert_eq!((r.before_bytes, r.after_bytes, r.freed_bytes), (920, 400, 520));
        m.set_host_reader(Arc::new(|| Err(Error::callback("host gone")))).unwrap();
        assert_eq!(m.check().unwrap_err().message(), "host gone");
        let p = MemoryManager::from_json(&Value::Null).unwrap();
        assert!(p.set_host_reader(Arc::new(|| Ok((1, 1, None)))).is_err());
    }

    #[test]
    fn host_source_without_reading_is_a_clear_error() {
        let m = MemoryManager::from_json(&json!({"source": "v8-heap"})).unwrap();
        let e = m.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("'v8-heap'"), "{e}");
    }

    #[test]
    fn detailed_tracking_keeps_bounded_history_with_growth() {
        let m = host_manager(json!({"enable_detailed_tracking": true}));
        for i in 0..(HISTORY_SAMPLES as u64 + 30) {
            m.update_host_reading(100 + i * 1000, 100 + i * 1000, Some(1 << 40)).unwrap();
            m.check().unwrap();
        }
        let s = m.get_detailed_stats().unwrap();
        assert_eq!(s["history"].as_array().unwrap().len(), HISTORY_SAMPLES);
        assert!(s["growth_rate"]["mb_per_min"].as_f64().unwrap() > 0.0);
        assert_eq!(s["checks"], HISTORY_SAMPLES as u64 + 30);
        assert_eq!(s["limit"]["origin"], "host");
        let plain = host_manager(json!({}));
        plain.update_host_reading(1, 1, None).unwrap();
        assert!(plain.get_detailed_stats().unwrap()["history"].is_null());
    }

    #[test]
    fn concurrent_checks_count_every_change_once() {
        let m = Arc::new(host_manager(json!({"gc_probability": 0.0})));
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        m.on_state_change(Arc::new(move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        m.update_host_reading(760, 760, Some(1000)).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let m = &m;
                s.spawn(move || {
                    for _ in 0..1000 {
                        m.check().unwrap();
                    }
                });
            }
        });
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(m.get_detailed_stats().unwrap()["state_changes"], 1);
    }
}
