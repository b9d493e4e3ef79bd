//! Per-request memory measurement for every middleware (DESIGN §4 "Middleware and tracker").
//!
//! `begin(route)` reads memory, `end(token)` reads it again and gives a [`RequestReport`]:
//! start, end, peak, delta, duration, and how many other requests were in flight during it.
//! Process memory is shared by every request the process serves at once, so when requests
//! overlap their figures cannot be attributed to one of them; the report says how many
//! overlapped instead of pretending. Analytics are kept per route *template*, never per raw
//! path, with a cap on the number of routes (the rest go into `"other"`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::ConfigReader;
use crate::error::{Error, Result};
use crate::probe::ProcessProbe;

const MIB: f64 = 1_048_576.0;
/// Samples kept per route for the percentiles (reservoir sampling: uniform over all requests).
pub const RESERVOIR: usize = 256;
/// The longest [`RequestTracker::header_block`]: four lines of at most 21 bytes of name and
/// separator, 20 of value (u64::MAX bytes in MiB is 17592186044416.0; efficiency is at most
/// 100.0) and the newline.
pub const HEADER_BLOCK_MAX: usize = 4 * (21 + 20 + 1);
/// The route analytics put every route into once `max_routes` distinct templates are known.
pub const OTHER_ROUTE: &str = "other";
/// The route of a request no route took (a 404), and the placeholder the middlewares begin
/// with when the route is known only at the end.
pub const UNMATCHED: &str = "unmatched";

/// The seed's `detailed_tracking` keys. Accepted and recorded; the core has no allocator
/// hooks, so only a host that offers allocation tracking (Python `tracemalloc`) acts on them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DetailedTracking {
    pub enabled: bool,
    pub track_allocations: bool,
    pub track_deallocations: bool,
    pub include_stack_traces: bool,
}

/// The middleware's options as the seed writes them.
#[derive(Debug, Clone)]
pub struct RequestConfig {
    pub enabled: bool,
    pub track_peak: bool,
    pub log_high_usage: bool,
    /// Growth during a request (peak minus start) above this many MiB makes it high-usage.
    pub threshold_mb: f64,
    pub detailed_tracking: DetailedTracking,
    pub include_headers: bool,
    pub log_file: Option<PathBuf>,
    pub sample_rate: f64,
    pub random_seed: Option<u64>,
    /// Distinct route templates kept before the rest go into `"other"`.
    pub max_routes: usize,
    /// For `X-Memory-Limit`; `None`: the cgroup limit, else physical memory.
    pub memory_limit: Option<u64>,
    /// `sampler_interval_ms` > 0: a library thread reads the process every that many ms and
    /// `begin`/`end` take its last value (no syscall per request; figures up to that old).
    /// 0: `begin`/`end` read the process themselves (`pread`, ~1 µs each on a quiet machine).
    pub sampler_interval_ms: u64,
    /// `sampler_interval_ms: "auto"` (the default): read the process per request until requests
    /// come faster than [`AUTO_RATE`] a second, then start the sampler thread (every
    /// [`AUTO_INTERVAL_MS`] ms) for the rest of the tracker's life. A busy server's
    /// requests are short, a reading per request would cost more than they do, and a reading
    /// a few ms old says as much about them.
    pub sampler_auto: bool,
}

/// Requests a second above which `sampler_interval_ms: "auto"` starts the sampler thread.
pub const AUTO_RATE: u64 = 1000;
/// The sampler's interval once `"auto"` has started it.
pub const AUTO_INTERVAL_MS: u64 = 5;
/// `"auto"` looks at the time taken by every this many requests.
const AUTO_WINDOW: u64 = 64;

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            enabled: true,
            track_peak: true,
            log_high_usage: true,
            threshold_mb: 50.0,
            detailed_tracking: DetailedTracking::default(),
            include_headers: true,
            log_file: None,
            sample_rate: 1.0,
            random_seed: None,
            max_routes: 200,
            memory_limit: None,
            sampler_interval_ms: 0,
            sampler_auto: true,
        }
    }
}

const KEYS: &[&str] = &[
    "enabled",
    "track_peak",
    "log_high_usage",
    "threshold_mb",
    "detailed_tracking",
    "track_allocations",
    "track_deallocations",
    "include_stack_traces",
    "include_headers",
    "log_file",
    "sample_rate",
    "random_seed",
    "max_routes",
    "memory_limit",
    "sampler_interval_ms",
];

/// The last configs read from JSON text, newest last: under php-fpm or `php -S` every request
/// builds its middleware from the same text, so it is parsed and checked once per process.
static CONFIG_CACHE: Mutex<Vec<(Box<str>, RequestConfig)>> = Mutex::new(Vec::new());
const CONFIG_CACHE_LEN: usize = 4;

impl RequestConfig {
    /// [`from_json`](Self::from_json) of a JSON text (empty: the defaults), remembering the
    /// last few texts that were valid so the same text is not parsed again.
    pub fn from_json_text(text: &str) -> Result<Self> {
        if let Some((_, c)) = CONFIG_CACHE.lock().iter().rev().find(|(t, _)| **t == *text) {
            return Ok(c.clone());
        }
        let cfg = Self::from_json(&crate::config::parse_json("MemoryTrackingMiddleware", text)?)?;
        let mut cache = CONFIG_CACHE.lock();
        if cache.len() >= CONFIG_CACHE_LEN {
            cache.remove(0);
        }
        cache.push((text.into(), cfg.clone()));
        Ok(cfg)
    }

    /// Reads the seed's options. `detailed_tracking` is `true`/`false` or an object with
    /// `track_allocations`, `track_deallocations`, `include_stack_traces` (the seed also writes
    /// those three at the top level; both are accepted).
    pub fn from_json(v: &Value) -> Result<Self> {
        let r = ConfigReader::new("MemoryTrackingMiddleware", v, KEYS)?;
        let d = RequestConfig::default();
        let mut detailed = DetailedTracking::default();
        match r.get("detailed_tracking") {
            None => {}
            Some(Value::Bool(b)) => detailed.enabled = *b,
            Some(obj @ Value::Object(_)) => {
                let dr = ConfigReader::new(
                    "MemoryTrackingMiddleware detailed_tracking",
                    obj,
                    &["enabled", "track_allocations", "track_deallocations", "include_stack_traces"],
                )?;
                detailed.enabled = dr.bool("enabled", true)?;
                detailed.track_allocations = dr.bool("track_allocations", false)?;
                detailed.track_deallocations = dr.bool("track_deallocations", false)?;
                detailed.include_stack_traces = dr.bool("include_stack_traces", false)?;
            }
            Some(_) => return Err(r.bad("detailed_tracking", "true, false or an object")),
        }
        detailed.track_allocations |= r.bool("track_allocations", false)?;
        detailed.track_deallocations |= r.bool("track_deallocations", false)?;
        detailed.include_stack_traces |= r.bool("include_stack_traces", false)?;
        let memory_limit = match r.get("memory_limit") {
            None => None,
            Some(Value::String(s)) => match crate::size::parse_size(s)? {
                crate::Size::Bytes(b) => Some(b),
                crate::Size::Unlimited => None,
            },
            Some(v) => Some(v.as_u64().ok_or_else(|| r.bad("memory_limit", "bytes or a size such as '512M'"))?),
        };
        Ok(RequestConfig {
            enabled: r.bool("enabled", d.enabled)?,
            track_peak: r.bool("track_peak", d.track_peak)?,
            log_high_usage: r.bool("log_high_usage", d.log_high_usage)?,
            threshold_mb: r.f64("threshold_mb", d.threshold_mb, "a number of MB >= 0", |x| x >= 0.0)?,
            detailed_tracking: detailed,
            include_headers: r.bool("include_headers", d.include_headers)?,
            log_file: r.str("log_file")?.map(PathBuf::from),
            sample_rate: r.f64("sample_rate", d.sample_rate, "a number from 0 to 1", |x| (0.0..=1.0).contains(&x))?,
            random_seed: r.u64("random_seed")?,
            max_routes: match r.u64("max_routes")? {
                Some(0) => return Err(r.bad("max_routes", "a whole number >= 1")),
                Some(n) => n as usize,
                None => d.max_routes,
            },
            memory_limit,
            sampler_interval_ms: match r.get("sampler_interval_ms") {
                Some(Value::String(s)) if s == "auto" => 0,
                Some(Value::String(_)) => return Err(r.bad("sampler_interval_ms", "a whole number of ms or \"auto\"")),
                _ => r.u64("sampler_interval_ms")?.unwrap_or(0),
            },
            sampler_auto: match r.get("sampler_interval_ms") {
                None | Some(Value::Null) => d.sampler_auto,
                Some(Value::String(_)) => true,
                Some(_) => false,
            },
        })
    }
}

/// A request in flight, from `begin` to `end`.
#[derive(Debug, Clone)]
pub struct RequestToken {
    /// Borrowed for the unmatched placeholder (no allocation per request when the host names
    /// the route at the end).
    route: Cow<'static, str>,
    start_bytes: u64,
    start_hwm: u64,
    started: Instant,
    begin_seq: u64,
    in_flight_at_start: u64,
}

impl RequestToken {
    pub fn route(&self) -> &str {
        &self.route
    }
    pub fn start_bytes(&self) -> u64 {
        self.start_bytes
    }
    /// Replaces the route template; for hosts that learn the route only after `begin` (Express
    /// matches routes while the request runs).
    pub fn set_route(&mut self, route_template: &str) {
        if *self.route != *route_template {
            self.route = Cow::Owned(route_template.to_owned());
        }
    }
}

/// One measured request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestReport {
    pub route: String,
    pub start_bytes: u64,
    pub end_bytes: u64,
    /// The highest reading known during the request: the host's peak when it gave one; for the
    /// process, the resident high-water mark when it rose during the request, else max(start, end).
    pub peak_bytes: u64,
    pub delta_bytes: i64,
    pub duration_ms: f64,
    /// Other requests in flight at some time during this one (their memory is in these figures too).
    pub overlapped: u32,
    pub high_usage: bool,
}

/// Called for every high-usage request; an `Err` is logged and counted, never fails the request.
pub type HighUsageHandler = Arc<dyn Fn(&RequestReport) -> std::result::Result<(), String> + Send + Sync>;

#[derive(Default)]
struct RouteStats {
    count: u64,
    high_usage: u64,
    overlapped: u64,
    duration_sum_ms: f64,
    duration_max_ms: f64,
    delta_max: i64,
    peak_max: u64,
    deltas: Vec<i64>,
    peaks: Vec<u64>,
}

struct Analytics {
    /// By template; a BTreeMap: no SipHash of the route per request (at most `max_routes`).
    routes: BTreeMap<String, RouteStats>,
    /// Distinct templates that were folded into "other" (counted, not kept).
    overflowed: u64,
}

/// The last header block of [`RequestTracker::peek_header_block`] and the values it shows.
#[derive(Debug, Default, Clone)]
pub struct HeaderCache {
    /// The four values as shown (one decimal): the block changes only when one of these does,
    /// not with every page the process gains or loses.
    figures: Option<[u64; 4]>,
    /// The readings (memory now, peak) that last gave `figures`: the same readings, the same
    /// block, without working out the values.
    readings: Option<(u64, u64)>,
    /// `Name: value` lines, each ended by `\n`; empty with `include_headers` off.
    pub block: String,
}

/// Measures requests and aggregates them per route template. Share it between threads.
pub struct RequestTracker {
    cfg: RequestConfig,
    /// Opened on first use, so hosts that give their own readings (`begin_with`, PHP) never
    /// open /proc: under php-fpm a tracker lives for one request.
    probe: std::sync::OnceLock<Option<Arc<ProcessProbe>>>,
    /// Started at construction (`sampler_interval_ms` > 0) or by `"auto"`; `Some(None)` if the
    /// thread could not start (readings stay per request).
    sampler: std::sync::OnceLock<Option<Arc<Sampler>>>,
    /// For `"auto"`: when the current window of [`AUTO_WINDOW`] requests began (ns since `epoch`).
    auto_window_start: AtomicU64,
    epoch: Instant,
    limit_bytes: u64,
    rng: AtomicU64,
    in_flight: AtomicU64,
    begun: AtomicU64,
    sampled_out: AtomicU64,
    handler_errors: AtomicU64,
    analytics: Mutex<Analytics>,
    handler: RwLock<Option<HighUsageHandler>>,
}

/// The last readings of the sampler thread.
struct Sampler {
    current: AtomicU64,
    hwm: AtomicU64,
    stop: std::sync::atomic::AtomicBool,
}

impl Sampler {
    fn read(&self, probe: &ProcessProbe, track_peak: bool) {
        if let Ok(b) = probe.current_bytes() {
            self.current.store(b, Ordering::Release);
        }
        if track_peak && let Ok(h) = probe.peak_bytes() {
            self.hwm.store(h, Ordering::Release);
        }
    }
}

/// `v` in tenths as `{:.1}` rounds it (the exact binary value, half to even); `None` where
/// [`write_one_decimal`] leaves it to `core::fmt` (not finite, negative, or 9e14 and above).
fn tenths(v: f64) -> Option<u64> {
    // Finite, not negative and below 2^53 / 10: v * 10 = m * 10 * 2^e fits in a u128.
    if !(v.is_finite() && v.is_sign_positive() && v < 9.0e14) {
        return None;
    }
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    // v = m * 2^e exactly
    let (m, e) = if exp == 0 { (frac, -1074) } else { (frac | (1u64 << 52), exp - 1075) };
    let n = u128::from(m) * 10;
    let tenths: u128 = if e >= 0 {
        n << e
    } else if e <= -120 {
        0 // below 2^-60: rounds to 0.0
    } else {
        let s = (-e) as u32;
        let q = n >> s;
        let r = n & ((1u128 << s) - 1);
        let half = 1u128 << (s - 1);
        if r > half || (r == half && q & 1 == 1) { q + 1 } else { q }
    };
    // < 9e15: fits a u64.
    Some(tenths as u64)
}

/// What [`write_one_decimal`] shows of `v`, as one number: equal keys, equal text.
fn shown_key(v: f64) -> u64 {
    // Tenths are below 2^63; the top bit marks a value formatted by core::fmt.
    tenths(v).unwrap_or(v.to_bits() | 1 << 63)
}

/// Appends `v` as `format!("{v:.1}")` writes it (the exact binary value rounded half to even
/// to one decimal), in integer arithmetic: the `core::fmt` float path costs about 900
/// instructions a value, and a header block has four (PHP pays them on every request).
fn write_one_decimal(out: &mut String, v: f64) {
    use std::fmt::Write;
    let Some(tenths) = tenths(v) else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{v:.1}");
        return;
    };
    // The digits by hand (core::fmt costs more than all of this).
    let mut t = tenths;
    let mut buf = [0u8; 24];
    let mut i = buf.len();
    i -= 1;
    buf[i] = b'0' + (t % 10) as u8;
    i -= 1;
    buf[i] = b'.';
    t /= 10;
    loop {
        i -= 1;
        buf[i] = b'0' + (t % 10) as u8;
        t /= 10;
        if t == 0 {
            break;
        }
    }
    // Only ASCII digits and '.' were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// `Name: value\n` for each header.
fn write_header_lines(values: &[(&'static str, f64); 4], out: &mut String) {
    for &(name, v) in values {
        out.push_str(name);
        out.push_str(": ");
        write_one_decimal(out, v);
        out.push('\n');
    }
}

/// A report's peak: the reading's peak (0 if none), at least the start and the end.
fn peak_of(start_bytes: u64, end_bytes: u64, peak: u64) -> u64 {
    peak.max(start_bytes).max(end_bytes)
}

fn splitmix(z: u64) -> u64 {
    let mut z = z;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("high-usage handler panicked: {}", msg.unwrap_or_else(|| "unknown panic".into()))
}

fn percentile<T: Copy + Ord>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

impl RequestTracker {
    /// A tracker from the seed's options as JSON (`null` for defaults).
    pub fn from_json(v: &Value) -> Result<Self> {
        Self::new(RequestConfig::from_json(v)?)
    }

    pub fn new(cfg: RequestConfig) -> Result<Self> {
        let seed = cfg.random_seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            t.as_nanos() as u64 ^ (std::process::id() as u64) << 32
        });
        // Cached process-wide (refreshed at most every 5 s), so a tracker per request is cheap.
        let limit_bytes = cfg.memory_limit.unwrap_or_else(|| crate::probe::default_limit().0);
        let tracker = RequestTracker {
            probe: std::sync::OnceLock::new(),
            sampler: std::sync::OnceLock::new(),
            auto_window_start: AtomicU64::new(0),
            epoch: Instant::now(),
            limit_bytes,
            rng: AtomicU64::new(seed),
            in_flight: AtomicU64::new(0),
            begun: AtomicU64::new(0),
            sampled_out: AtomicU64::new(0),
            handler_errors: AtomicU64::new(0),
            analytics: Mutex::new(Analytics { routes: BTreeMap::new(), overflowed: 0 }),
            handler: RwLock::new(None),
            cfg,
        };
        if tracker.cfg.sampler_interval_ms > 0 {
            tracker.start_sampler(tracker.cfg.sampler_interval_ms)?;
        }
        Ok(tracker)
    }

    /// Starts the sampler thread once (later calls return the one running).
    fn start_sampler(&self, ms: u64) -> Result<()> {
        let mut failure = None;
        self.sampler.get_or_init(|| {
            let p = self.probe()?.clone();
            let s = Arc::new(Sampler {
                current: AtomicU64::new(0),
                hwm: AtomicU64::new(0),
                stop: std::sync::atomic::AtomicBool::new(false),
            });
            s.read(&p, self.cfg.track_peak);
            let (s2, peak) = (s.clone(), self.cfg.track_peak);
            match std::thread::Builder::new().name("memwarden-request-sampler".into()).spawn(move || {
                while !s2.stop.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    s2.read(&p, peak);
                }
            }) {
                Ok(_) => Some(s),
                Err(e) => {
                    failure = Some(Error::io("cannot start the request sampler thread", &e));
                    None
                }
            }
        });
        failure.map_or(Ok(()), Err)
    }

    fn sampler(&self) -> Option<&Arc<Sampler>> {
        self.sampler.get().and_then(Option::as_ref)
    }

    /// `"auto"`: every [`AUTO_WINDOW`] requests, starts the sampler if they came faster than
    /// [`AUTO_RATE`] a second.
    fn auto_switch(&self) {
        if !self.cfg.sampler_auto || self.sampler.get().is_some() {
            return;
        }
        let n = self.begun.load(Ordering::Relaxed);
        if n % AUTO_WINDOW != AUTO_WINDOW - 1 {
            return;
        }
        let now = self.epoch.elapsed().as_nanos() as u64;
        let start = self.auto_window_start.swap(now, Ordering::Relaxed);
        if now.saturating_sub(start) < AUTO_WINDOW * 1_000_000_000 / AUTO_RATE
            && let Err(e) = self.start_sampler(AUTO_INTERVAL_MS)
        {
            self.log_line(&json!({"event": "sampler_error", "error": e.to_string()}));
        }
    }

    /// How `begin`/`end` read the process now: for the analytics.
    fn readings(&self) -> String {
        match self.sampler.get() {
            Some(Some(_)) if self.cfg.sampler_interval_ms > 0 => {
                format!("sampler thread every {} ms", self.cfg.sampler_interval_ms)
            }
            Some(Some(_)) => {
                format!("sampler thread every {AUTO_INTERVAL_MS} ms (auto: requests came faster than {AUTO_RATE}/s)")
            }
            _ if self.cfg.sampler_auto => format!("one read per reading (auto: sampler above {AUTO_RATE} requests/s)"),
            _ => "one read per reading".into(),
        }
    }

    pub fn config(&self) -> &RequestConfig {
        &self.cfg
    }

    /// The next number of the seeded generator (splitmix64 over an atomic counter).
    fn next_u64(&self) -> u64 {
        splitmix(self.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed).wrapping_add(0x9e37_79b9_7f4a_7c15))
    }

    fn sampled(&self) -> bool {
        if !self.cfg.enabled {
            return false;
        }
        if self.cfg.sample_rate >= 1.0 {
            return true;
        }
        let hit = ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < self.cfg.sample_rate;
        if !hit {
            self.sampled_out.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    fn probe(&self) -> Option<&Arc<ProcessProbe>> {
        self.probe.get_or_init(|| ProcessProbe::new().ok().map(Arc::new)).as_ref()
    }

    fn hwm(&self) -> u64 {
        if !self.cfg.track_peak {
            return 0;
        }
        if let Some(s) = self.sampler() {
            return s.hwm.load(Ordering::Acquire);
        }
        self.probe().and_then(|p| p.peak_bytes().ok()).unwrap_or(0)
    }

    /// Starts measuring a request of `route_template` (`"GET /users/{id}"`, never the raw path)
    /// with the process's resident memory. `None` when disabled or not sampled.
    pub fn begin(&self, route_template: &str) -> Result<Option<RequestToken>> {
        if !self.sampled() {
            return Ok(None);
        }
        let probe = self.probe().ok_or_else(|| {
            Error::new(crate::ErrorKind::Unsupported, "no process probe on this system: use begin_with")
        })?;
        self.auto_switch();
        let bytes = match self.sampler() {
            Some(s) => s.current.load(Ordering::Acquire),
            None => probe.current_bytes()?,
        };
        let hwm = self.hwm();
        Ok(Some(self.start(route_template, bytes, hwm)))
    }

    /// As `begin`, with the host's own reading (PHP's `memory_get_usage()`).
    pub fn begin_with(&self, route_template: &str, bytes: u64) -> Option<RequestToken> {
        if !self.sampled() {
            return None;
        }
        Some(self.start(route_template, bytes, 0))
    }

    fn start(&self, route: &str, bytes: u64, hwm: u64) -> RequestToken {
        let in_flight_at_start = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let begin_seq = self.begun.fetch_add(1, Ordering::AcqRel);
        RequestToken {
            route: if route == UNMATCHED { Cow::Borrowed(UNMATCHED) } else { Cow::Owned(route.to_owned()) },
            start_bytes: bytes,
            start_hwm: hwm,
            started: Instant::now(),
            begin_seq,
            in_flight_at_start,
        }
    }

    /// Drops a request begun with [`begin`](Self::begin) that the host will not end (it could
    /// not keep it): no longer in flight, recorded nowhere.
    pub fn abandon(&self, token: RequestToken) {
        drop(token);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Ends a request measured with the process probe.
    pub fn end(&self, token: RequestToken) -> Result<RequestReport> {
        let (bytes, peak) = self.end_readings(&token)?;
        Ok(self.finish(token, bytes, peak))
    }

    /// As [`end`](Self::end) under `route`, for a host that wants no report back: whether
    /// the request was high-usage. The route is copied only where it is kept (a route new to
    /// the analytics) or reported (a high-usage request's log line and handler), so a request
    /// of a known route allocates nothing.
    pub fn end_quiet(&self, token: RequestToken, route: &str) -> Result<bool> {
        let (bytes, peak) = self.end_readings(&token)?;
        let mut report = self.report(&token, String::new(), bytes, peak);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.record_as(route, &report);
        if report.high_usage {
            report.route = route.to_owned();
            self.on_high_usage(&report);
        }
        Ok(report.high_usage)
    }

    /// [`read_now`](Self::read_now) for a request that ends: on failure it is no longer in flight.
    fn end_readings(&self, token: &RequestToken) -> Result<(u64, u64)> {
        self.read_now(token).inspect_err(|_| {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Memory now and the peak during the request (0 when it did not rise or is not tracked),
    /// read from the process as `end` does; the token's start when there is no probe.
    fn read_now(&self, token: &RequestToken) -> Result<(u64, u64)> {
        let bytes = match self.probe().map(|p| match self.sampler() {
            Some(s) => Ok(s.current.load(Ordering::Acquire)),
            None => p.current_bytes(),
        }) {
            Some(r) => r?,
            None => token.start_bytes,
        };
        let hwm = self.hwm();
        let peak = if self.cfg.track_peak && hwm > token.start_hwm { hwm } else { 0 };
        Ok((bytes, peak))
    }

    /// Ends a request with the host's readings: memory now and the peak during the request
    /// (PHP's `memory_get_peak_usage()` after `memory_reset_peak_usage()` at begin); 0 if unknown.
    pub fn end_with(&self, token: RequestToken, bytes: u64, peak: u64) -> RequestReport {
        self.finish(token, bytes, peak)
    }

    /// The figures so far of a request still in flight, read from the process as `end` does,
    /// for headers that must be sent before the request ends (a streamed body). Nothing is
    /// recorded, no handler runs and the request stays in flight; `end` gives the final figures.
    pub fn peek(&self, token: &RequestToken) -> Result<RequestReport> {
        let mut r = self.figures(token)?;
        r.route = token.route.clone().into_owned();
        Ok(r)
    }

    /// [`peek`](Self::peek)'s figures without the route (nothing allocated).
    fn figures(&self, token: &RequestToken) -> Result<RequestReport> {
        let (bytes, peak) = self.read_now(token)?;
        Ok(self.report(token, String::new(), bytes, peak))
    }

    /// The header block of a request still in flight (as [`peek`](Self::peek) then
    /// [`header_block`](Self::header_block)), kept in `cache`: the per-request path of a host
    /// that sets the headers before the body. The figures change at most once per reading, so
    /// consecutive requests mostly have the same block; then nothing is formatted and this
    /// returns false. True when `cache.block` changed.
    pub fn peek_header_block(&self, token: &RequestToken, cache: &mut HeaderCache) -> Result<bool> {
        if !self.cfg.include_headers {
            cache.readings = None;
            let changed = cache.figures.take().is_some() || !cache.block.is_empty();
            cache.block.clear();
            return Ok(changed);
        }
        // Only the two figures the headers show (no duration, no overlap count).
        let (end_bytes, peak) = self.read_now(token)?;
        let peak_bytes = peak_of(token.start_bytes, end_bytes, peak);
        if cache.readings == Some((end_bytes, peak_bytes)) {
            return Ok(false);
        }
        cache.readings = Some((end_bytes, peak_bytes));
        let values = self.header_values_of(end_bytes, peak_bytes);
        let shown = values.map(|(_, v)| shown_key(v));
        if cache.figures == Some(shown) {
            return Ok(false);
        }
        cache.figures = Some(shown);
        cache.block.clear();
        write_header_lines(&values, &mut cache.block);
        Ok(true)
    }

    /// [`peek`](Self::peek) with the host's readings (memory now and the peak so far, 0 if
    /// unknown), as [`end_with`](Self::end_with) takes them. Nothing is recorded.
    pub fn peek_with(&self, token: &RequestToken, bytes: u64, peak: u64) -> RequestReport {
        self.report(token, token.route.clone().into_owned(), bytes, peak)
    }

    fn report(&self, t: &RequestToken, route: String, end_bytes: u64, peak: u64) -> RequestReport {
        let duration_ms = t.started.elapsed().as_secs_f64() * 1000.0;
        let begun_during = self.begun.load(Ordering::Acquire).saturating_sub(t.begin_seq + 1);
        let overlapped = (t.in_flight_at_start + begun_during).min(u32::MAX as u64) as u32;
        self.make_report(route, t.start_bytes, end_bytes, peak, duration_ms, overlapped)
    }

    /// The one place a report's figures are derived: peak (at least max(start, end)), delta
    /// and the high-usage verdict.
    fn make_report(
        &self,
        route: String,
        start_bytes: u64,
        end_bytes: u64,
        peak: u64,
        duration_ms: f64,
        overlapped: u32,
    ) -> RequestReport {
        let peak_bytes = peak_of(start_bytes, end_bytes, peak);
        let growth = peak_bytes - start_bytes;
        let high_usage = growth as f64 > self.cfg.threshold_mb * MIB;
        RequestReport {
            route,
            start_bytes,
            end_bytes,
            peak_bytes,
            delta_bytes: end_bytes as i64 - start_bytes as i64,
            duration_ms,
            overlapped,
            high_usage,
        }
    }

    /// A whole request the host measured itself, recorded in one call: `route` (a template),
    /// its readings at start and end, the peak during it (0 if unknown), its duration and the
    /// number of other requests the host saw in flight during it. Sampling, the analytics, the
    /// high-usage handler and the log work as for [`begin_with`](Self::begin_with) +
    /// [`end_with`](Self::end_with); `None` when disabled or not sampled (counted as sampled
    /// out). For hosts where each call into the library counts: PHP under php-fpm, whose
    /// request needs no token kept between two calls.
    pub fn record_with(
        &self,
        route: &str,
        start_bytes: u64,
        end_bytes: u64,
        peak: u64,
        duration_ms: f64,
        overlapped: u32,
    ) -> Option<RequestReport> {
        if !self.sampled() {
            return None;
        }
        self.begun.fetch_add(1, Ordering::AcqRel);
        let duration_ms = if duration_ms.is_finite() { duration_ms.max(0.0) } else { 0.0 };
        let report = self.make_report(route.to_owned(), start_bytes, end_bytes, peak, duration_ms, overlapped);
        self.account(&report);
        Some(report)
    }

    fn finish(&self, mut t: RequestToken, end_bytes: u64, peak: u64) -> RequestReport {
        let route = std::mem::take(&mut t.route).into_owned();
        let report = self.report(&t, route, end_bytes, peak);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.account(&report);
        report
    }

    /// A finished request into the analytics, then its high-usage handling.
    fn account(&self, report: &RequestReport) {
        self.record(report);
        if report.high_usage {
            self.on_high_usage(report);
        }
    }

    fn record(&self, r: &RequestReport) {
        self.record_as(&r.route, r);
    }

    /// Adds `r` to the analytics of `route` (`r.route` may be left empty).
    fn record_as(&self, route: &str, r: &RequestReport) {
        let slot = self.next_u64();
        let mut guard = self.analytics.lock();
        let a = &mut *guard;
        // A known route (nearly every request) costs one search.
        let s = match a.routes.get_mut(route) {
            Some(s) => s,
            None => {
                let key = if a.routes.len() < self.cfg.max_routes.saturating_sub(1) {
                    route
                } else {
                    // A template not kept (a new one, so never "other" itself when "other" is kept).
                    a.overflowed += 1;
                    OTHER_ROUTE
                };
                a.routes.entry(key.to_owned()).or_default()
            }
        };
        s.count += 1;
        s.high_usage += r.high_usage as u64;
        s.overlapped += (r.overlapped > 0) as u64;
        s.duration_sum_ms += r.duration_ms;
        s.duration_max_ms = s.duration_max_ms.max(r.duration_ms);
        s.delta_max = if s.count == 1 { r.delta_bytes } else { s.delta_max.max(r.delta_bytes) };
        s.peak_max = s.peak_max.max(r.peak_bytes);
        if s.deltas.len() < RESERVOIR {
            s.deltas.push(r.delta_bytes);
            s.peaks.push(r.peak_bytes);
        } else {
            // Algorithm R: keep each of the `count` requests with probability RESERVOIR/count.
            let j = (slot % s.count) as usize;
            if j < RESERVOIR {
                s.deltas[j] = r.delta_bytes;
                s.peaks[j] = r.peak_bytes;
            }
        }
    }

    fn on_high_usage(&self, r: &RequestReport) {
        let handler = self.handler.read().clone();
        if let Some(h) = handler {
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(r)))
                .unwrap_or_else(|p| Err(panic_text(&*p)));
            if let Err(e) = res {
                self.handler_failed(&r.route, &e);
            }
        }
        if self.cfg.log_high_usage {
            self.log_line(&json!({
                "event": "high_memory_usage",
                "route": r.route,
                "usage_mb": r.end_bytes as f64 / MIB,
                "peak_mb": r.peak_bytes as f64 / MIB,
                "delta_mb": r.delta_bytes as f64 / MIB,
                "duration_ms": r.duration_ms,
                "overlapped": r.overlapped,
                "threshold_mb": self.cfg.threshold_mb,
            }));
        }
    }

    /// Appends one JSON line to `log_file`, or writes it to stderr without one.
    fn log_line(&self, v: &Value) {
        let line = format!("{v}\n");
        match &self.cfg.log_file {
            Some(path) => {
                let ok = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                if let Err(e) = ok {
                    eprintln!("memwarden: cannot append to {}: {e}: {line}", path.display());
                }
            }
            None => eprint!("memwarden: {line}"),
        }
    }

    /// Records a handler that failed (a high-usage or analytics handler, also one the binding
    /// calls itself): counted in `handler_errors` and logged as a `handler_error` line (to `log_file`, else stderr). The handler set with
    /// [`set_high_usage_handler`](Self::set_high_usage_handler) goes through here; a host that
    /// calls its own handler after `end` when the report says `high_usage` (PHP, to avoid a
    /// C callback per request) reports its failures here too.
    pub fn handler_failed(&self, route: &str, error: &str) {
        self.handler_errors.fetch_add(1, Ordering::Relaxed);
        self.log_line(&json!({"event": "handler_error", "route": route, "error": error}));
    }

    /// Sets (or with `None` clears) the high-usage handler.
    pub fn set_high_usage_handler(&self, h: Option<HighUsageHandler>) {
        *self.handler.write() = h;
    }

    /// The limit reported as `X-Memory-Limit`.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// `X-Memory-Usage`, `X-Memory-Peak`, `X-Memory-Limit` (MiB, one decimal, as the seed) and
    /// `X-Memory-Efficiency` (end / peak, percent). Empty when `include_headers` is false.
    pub fn headers(&self, r: &RequestReport) -> Vec<(&'static str, String)> {
        if !self.cfg.include_headers {
            return Vec::new();
        }
        self.header_values(r)
            .into_iter()
            .map(|(name, v)| {
                let mut s = String::with_capacity(20);
                write_one_decimal(&mut s, v);
                (name, s)
            })
            .collect()
    }

    /// The four headers' names and values, unformatted.
    fn header_values(&self, r: &RequestReport) -> [(&'static str, f64); 4] {
        self.header_values_of(r.end_bytes, r.peak_bytes)
    }

    fn header_values_of(&self, end_bytes: u64, peak_bytes: u64) -> [(&'static str, f64); 4] {
        let eff = if peak_bytes == 0 { 100.0 } else { end_bytes as f64 / peak_bytes as f64 * 100.0 };
        [
            ("X-Memory-Usage", end_bytes as f64 / MIB),
            ("X-Memory-Peak", peak_bytes as f64 / MIB),
            ("X-Memory-Limit", self.limit_bytes as f64 / MIB),
            ("X-Memory-Efficiency", eff),
        ]
    }

    /// The [`headers`](Self::headers) as a header block: one `Name: value` line each, every
    /// line ended by `\n` (`"X-Memory-Usage: 45.0\nX-Memory-Peak: 50.0\n..."`); empty when
    /// `include_headers` is false. At most [`HEADER_BLOCK_MAX`] bytes.
    pub fn header_block(&self, r: &RequestReport) -> String {
        let mut s = String::with_capacity(112);
        if self.cfg.include_headers {
            self.write_header_block(r, &mut s);
        }
        s
    }

    fn write_header_block(&self, r: &RequestReport, out: &mut String) {
        self.write_header_values(r.end_bytes, r.peak_bytes, out);
    }

    fn write_header_values(&self, end_bytes: u64, peak_bytes: u64, out: &mut String) {
        write_header_lines(&self.header_values_of(end_bytes, peak_bytes), out);
    }

    /// Requests begun and not yet ended.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Per-route aggregates as JSON: `routes` (by template: `count`, `high_usage`,
    /// `overlapped`, `overlapped_share`, `delta_bytes` / `peak_bytes` `{p50, p95, max}`,
    /// `duration_ms` `{avg, max}`), plus `in_flight`, `sampled_out`, `handler_errors`,
    /// `max_routes`, `overflowed_routes` and a `note` on attribution.
    pub fn analytics(&self) -> Value {
        let a = self.analytics.lock();
        let mut routes = serde_json::Map::new();
        for (name, s) in &a.routes {
            let mut d = s.deltas.clone();
            d.sort_unstable();
            let mut p = s.peaks.clone();
            p.sort_unstable();
            routes.insert(
                name.clone(),
                json!({
                    "count": s.count,
                    "high_usage": s.high_usage,
                    "overlapped": s.overlapped,
                    "overlapped_share": if s.count == 0 { 0.0 } else { s.overlapped as f64 / s.count as f64 },
                    "delta_bytes": {"p50": percentile(&d, 0.5), "p95": percentile(&d, 0.95), "max": s.delta_max},
                    "peak_bytes": {"p50": percentile(&p, 0.5), "p95": percentile(&p, 0.95), "max": s.peak_max},
                    "duration_ms": {
                        "avg": if s.count == 0 { 0.0 } else { s.duration_sum_ms / s.count as f64 },
                        "max": s.duration_max_ms,
                    },
                }),
            );
        }
        json!({
            "routes": routes,
            "in_flight": self.in_flight(),
            "sampled_out": self.sampled_out.load(Ordering::Relaxed),
            "handler_errors": self.handler_errors.load(Ordering::Relaxed),
            "max_routes": self.cfg.max_routes,
            "overflowed_routes": a.overflowed,
            "sample_rate": self.cfg.sample_rate,
            "readings": self.readings(),
            "note": "figures are the process's memory; a request that overlapped others also carries their memory",
        })
    }
}

impl Drop for RequestTracker {
    fn drop(&mut self) {
        // The thread sees the flag within one interval and exits; it holds only its own Arcs.
        if let Some(s) = self.sampler() {
            s.stop.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_decimal_is_what_format_writes() {
        let check = |v: f64| {
            let mut s = String::new();
            write_one_decimal(&mut s, v);
            assert_eq!(s, format!("{v:.1}"), "for {v:e}");
        };
        // ties (exact halves round to even), values just around them, MiB and ratios
        for v in [0.0, 0.05, 0.15, 0.25, 0.35, 0.45, 1.25, 2.75, 99.95, 100.0, 5e-324, 1e-20, 0.04999999999999999] {
            check(v);
            check(f64::from_bits(v.to_bits() + 1));
            if v > 0.0 {
                check(f64::from_bits(v.to_bits() - 1));
            }
        }
        for v in [8.99e14, 9.0e14, 1e300, f64::MAX, f64::INFINITY, f64::NAN, -0.0, -0.04, -1.25] {
            check(v);
        }
        let mut z = 0x1234_5678_9abc_def0u64;
        for _ in 0..200_000 {
            z = splitmix(z);
            check((z >> 20) as f64 / MIB); // bytes in MiB: exact, with exact ties
            check((z % (1 << 40)) as f64 / MIB);
            let (a, b) = ((z >> 32) + 1, (z & 0xffff_ffff) + 1);
            check(a.min(b) as f64 / a.max(b) as f64 * 100.0);
            check(f64::from_bits(z >> 2)); // any positive double
        }
    }

    fn tracker(v: Value) -> RequestTracker {
        RequestTracker::from_json(&v).unwrap()
    }

    #[test]
    fn config_errors_name_the_key() {
        for (v, key) in [
            (json!({"sample_rate": 1.5}), "sample_rate"),
            (json!({"sample_rate": -0.1}), "sample_rate"),
            (json!({"threshold_mb": -1}), "threshold_mb"),
            (json!({"detailed_tracking": 3}), "detailed_tracking"),
            (json!({"max_routes": 0}), "max_routes"),
        ] {
            let e = RequestTracker::from_json(&v).err().unwrap();
            assert!(e.message().contains(key), "{e}");
        }
        let e = RequestTracker::from_json(&json!({"sample_rat": 1})).err().unwrap();
        assert!(e.message().contains("did you mean 'sample_rate'"), "{e}");
    }

    #[test]
    fn seed_options_and_detailed_tracking_are_recorded() {
        let t = tracker(json!({"enabled": true, "track_peak": true, "log_high_usage": true, "threshold_mb": 50,
            "detailed_tracking": true, "track_allocations": true, "track_deallocations": true,
            "include_stack_traces": false, "include_headers": true, "log_file": "memory.log", "sample_rate": 1.0}));
        let d = &t.config().detailed_tracking;
        assert!(d.enabled && d.track_allocations && d.track_deallocations && !d.include_stack_traces);
        let t = tracker(json!({"detailed_tracking": {"track_allocations": true, "include_stack_traces": true}}));
        let d = &t.config().detailed_tracking;
        assert!(d.enabled && d.track_allocations && !d.track_deallocations && d.include_stack_traces);
    }

    #[test]
    fn sampling_is_repeatable_with_a_seed_and_near_the_rate() {
        let run = || {
            let t = tracker(json!({"sample_rate": 0.3, "random_seed": 42}));
            (0..2000).map(|_| t.begin_with("GET /", 1).map(|k| t.end_with(k, 1, 1)).is_some()).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|x| **x).count();
        assert!((500..700).contains(&hits), "{hits}");
        let t = tracker(json!({"sample_rate": 0.0}));
        assert!(t.begin_with("GET /", 1).is_none());
        let t = tracker(json!({"enabled": false}));
        assert!(t.begin("GET /").unwrap().is_none());
    }

    #[test]
    fn record_with_is_begin_with_and_end_with_in_one_call() {
        let cfg = json!({"threshold_mb": 2, "random_seed": 3, "log_high_usage": false});
        let (a, b) = (tracker(cfg.clone()), tracker(cfg));
        let k = a.begin_with("GET /x", 10 << 20).unwrap();
        let ra = a.end_with(k, 11 << 20, 13 << 20);
        let rb = b.record_with("GET /x", 10 << 20, 11 << 20, 13 << 20, 4.5, 2).unwrap();
        assert_eq!(
            (rb.start_bytes, rb.end_bytes, rb.peak_bytes, rb.delta_bytes),
            (10 << 20, 11 << 20, 13 << 20, 1 << 20)
        );
        assert_eq!((ra.peak_bytes, ra.delta_bytes, ra.high_usage), (rb.peak_bytes, rb.delta_bytes, rb.high_usage));
        assert!(rb.high_usage, "3 MiB of growth over a 2 MiB threshold");
        assert_eq!((rb.duration_ms, rb.overlapped, rb.route.as_str()), (4.5, 2, "GET /x"));
        // the peak is at least max(start, end); a duration that is not a number counts as 0
        let r = b.record_with("GET /x", 5, 9, 0, f64::NAN, 0).unwrap();
        assert_eq!((r.peak_bytes, r.duration_ms, r.high_usage), (9, 0.0, false));
        let an = b.analytics();
        let x = &an["routes"]["GET /x"];
        assert_eq!(
            (x["count"].as_u64(), x["high_usage"].as_u64(), x["overlapped"].as_u64()),
            (Some(2), Some(1), Some(1))
        );
        assert_eq!(an["in_flight"], 0);
        // sampling and `enabled` apply as for begin
        let off = tracker(json!({"sample_rate": 0.0}));
        assert!(off.record_with("GET /", 1, 1, 1, 1.0, 0).is_none());
        assert_eq!(off.analytics()["sampled_out"], 1);
        assert!(tracker(json!({"enabled": false})).record_with("GET /", 1, 1, 1, 1.0, 0).is_none());
    }

    #[test]
    fn overlap_counts_concurrent_requests() {
        let t = tracker(json!({}));
        let a = t.begin_with("A", 100).unwrap();
        let b = t.begin_with("B", 100).unwrap();
        assert_eq!(t.in_flight(), 2);
        let rb = t.end_with(b, 150, 0);
        let c = t.begin_with("C", 100).unwrap();
        let rc = t.end_with(c, 100, 0);
        let ra = t.end_with(a, 200, 250);
        assert_eq!((ra.overlapped, rb.overlapped, rc.overlapped), (2, 1, 1));
        let d = t.begin_with("D", 1).unwrap();
        assert_eq!(t.end_with(d, 1, 0).overlapped, 0);
        assert_eq!(ra.peak_bytes, 250);
        assert_eq!(rb.peak_bytes, 150);
        assert_eq!(ra.delta_bytes, 100);
        assert_eq!(t.in_flight(), 0);
        let an = t.analytics();
        assert_eq!(an["routes"]["A"]["overlapped_share"], 1.0);
        assert_eq!(an["routes"]["D"]["overlapped_share"], 0.0);
    }

    #[test]
    fn abandon_leaves_no_request_in_flight_and_records_nothing() {
        let t = tracker(json!({}));
        let a = t.begin_with("A", 100).unwrap();
        assert_eq!(t.in_flight(), 1);
        t.abandon(a);
        assert_eq!(t.in_flight(), 0);
        assert!(t.analytics()["routes"].get("A").is_none());
    }

    #[test]
    fn overlap_with_two_threads() {
        let t = Arc::new(tracker(json!({})));
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (t, b) = (t.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let k = t.begin("GET /x").unwrap().unwrap();
                    b.wait();
                    t.end(k).unwrap()
                })
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap().overlapped, 1);
        }
    }

    #[test]
    fn analytics_are_bounded_per_template() {
        let t = tracker(json!({"max_routes": 3}));
        for i in 0..50 {
            let k = t.begin_with(&format!("GET /r{i}"), 0).unwrap();
            t.end_with(k, 10, 0);
        }
        let a = t.analytics();
        let routes = a["routes"].as_object().unwrap();
        assert_eq!(routes.len(), 3, "{a}");
        assert_eq!(routes[OTHER_ROUTE]["count"], 48);
        assert_eq!(a["overflowed_routes"], 48);
        // a known route keeps its own entry
        let k = t.begin_with("GET /r0", 0).unwrap();
        t.end_with(k, 10, 0);
        assert_eq!(t.analytics()["routes"]["GET /r0"]["count"], 2);
    }

    #[test]
    fn percentiles_are_sane() {
        let t = tracker(json!({"random_seed": 1}));
        for i in 1..=1000u64 {
            let k = t.begin_with("GET /p", 0).unwrap();
            t.end_with(k, i, i * 2);
        }
        let a = t.analytics();
        let d = &a["routes"]["GET /p"]["delta_bytes"];
        let (p50, p95) = (d["p50"].as_i64().unwrap(), d["p95"].as_i64().unwrap());
        assert_eq!(d["max"], 1000);
        assert!((350..650).contains(&p50), "{d}");
        assert!((880..=1000).contains(&p95), "{d}");
        assert!(p50 < p95);
        assert_eq!(a["routes"]["GET /p"]["peak_bytes"]["max"], 2000);
        assert_eq!(percentile(&[1, 2, 3, 4], 0.5), Some(2));
        assert_eq!(percentile::<u64>(&[], 0.5), None);
    }

    #[test]
    fn high_usage_calls_the_handler_and_logs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("memory.log");
        let t = tracker(json!({"threshold_mb": 1, "log_file": log.to_str().unwrap()}));
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        t.set_high_usage_handler(Some(Arc::new(move |r: &RequestReport| {
            s.fetch_add(1, Ordering::SeqCst);
            if r.route == "boom" { Err("handler failed".into()) } else { Ok(()) }
        })));
        let k = t.begin_with("small", 0).unwrap();
        assert!(!t.end_with(k, 1 << 20, 0).high_usage);
        let k = t.begin_with("big", 0).unwrap();
        assert!(t.end_with(k, 0, 3 << 20).high_usage, "peak growth counts");
        let k = t.begin_with("boom", 0).unwrap();
        assert!(t.end_with(k, 5 << 20, 0).high_usage);
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().filter(|l| l.contains("high_memory_usage")).count(), 2, "{text}");
        assert!(text.contains("handler failed"));
        assert_eq!(t.analytics()["handler_errors"], 1);
        assert_eq!(t.analytics()["routes"]["big"]["high_usage"], 1);
    }

    #[test]
    fn handler_failed_counts_and_logs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("memory.log");
        let t = tracker(json!({"log_file": log.to_str().unwrap()}));
        t.handler_failed("GET /big", "alerting is down");
        assert_eq!(t.analytics()["handler_errors"], 1);
        let line: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
        assert_eq!(line, json!({"event": "handler_error", "route": "GET /big", "error": "alerting is down"}));
    }

    #[test]
    fn default_limit_is_the_cgroup_or_physical() {
        let (bytes, _) = crate::probe::default_limit();
        let fresh = crate::probe::cgroup_limit().map(|(b, _)| b).unwrap_or_else(crate::probe::physical_memory);
        assert_eq!(bytes, fresh);
        assert_eq!(tracker(json!({})).limit_bytes(), fresh);
        assert_eq!(crate::probe::default_limit().0, fresh, "the cached answer is the same");
    }

    #[test]
    fn headers_follow_the_seed() {
        let t = tracker(json!({"memory_limit": "128M"}));
        let k = t.begin_with("GET /", 40 << 20).unwrap();
        let r = t.end_with(k, 45 << 20, 50 << 20);
        let h = t.headers(&r);
        assert_eq!(
            h,
            vec![
                ("X-Memory-Usage", "45.0".to_string()),
                ("X-Memory-Peak", "50.0".to_string()),
                ("X-Memory-Limit", "128.0".to_string()),
                ("X-Memory-Efficiency", "90.0".to_string()),
            ]
        );
        assert!(tracker(json!({"include_headers": false})).headers(&r).is_empty());
        assert_eq!(
            t.header_block(&r),
            "X-Memory-Usage: 45.0\nX-Memory-Peak: 50.0\nX-Memory-Limit: 128.0\nX-Memory-Efficiency: 90.0\n"
        );
        assert_eq!(tracker(json!({"include_headers": false})).header_block(&r), "");
        let huge = RequestReport { end_bytes: u64::MAX, peak_bytes: u64::MAX, ..r };
        let t = tracker(json!({"memory_limit": u64::MAX}));
        assert!(t.header_block(&huge).len() <= HEADER_BLOCK_MAX, "{}", t.header_block(&huge));
    }

    #[test]
    fn shown_key_is_what_one_decimal_shows() {
        for (a, b) in [(45.0, 45.04), (45.06, 45.14), (0.25, 0.2), (1e15, 1e15)] {
            let text = |v: f64| {
                let mut s = String::new();
                write_one_decimal(&mut s, v);
                s
            };
            assert_eq!(shown_key(a) == shown_key(b), text(a) == text(b), "{a} {b}");
        }
        assert_ne!(shown_key(45.0), shown_key(45.1));
        assert_ne!(shown_key(1e15), shown_key(2e15));
    }

    #[test]
    fn end_quiet_records_as_end_does() {
        let cfg = json!({"threshold_mb": 0, "random_seed": 3, "log_high_usage": false, "sampler_interval_ms": 0});
        let (a, b) = (tracker(cfg.clone()), tracker(cfg));
        let mut k = a.begin_with("unmatched", 10 << 20).unwrap();
        k.set_route("GET /x");
        let ra = a.end_with(k, 11 << 20, 13 << 20);
        assert!(ra.high_usage);
        let k = b.begin("unmatched").unwrap().unwrap();
        b.end_quiet(k, "GET /x").unwrap();
        let (x, y) = (&a.analytics()["routes"]["GET /x"], &b.analytics()["routes"]["GET /x"]);
        assert_eq!((x["count"].as_u64(), y["count"].as_u64()), (Some(1), Some(1)));
        assert_eq!(b.in_flight(), 0);
        assert!(b.analytics()["routes"].get("unmatched").is_none(), "recorded under the route given");
    }

    #[test]
    fn peek_header_block_is_the_block_of_peek() {
        let t = tracker(json!({"memory_limit": "128M", "sampler_interval_ms": 0}));
        let k = t.begin("GET /").unwrap().unwrap();
        let mut cache = HeaderCache { figures: None, readings: None, block: String::from("left over") };
        assert!(t.peek_header_block(&k, &mut cache).unwrap(), "the first block is new");
        let out = cache.block.clone();
        let r = t.peek(&k).unwrap();
        // The process may move between the two readings: compare the shape and the limit.
        let names: Vec<&str> = out.lines().map(|l| l.split(": ").next().unwrap()).collect();
        assert_eq!(names, ["X-Memory-Usage", "X-Memory-Peak", "X-Memory-Limit", "X-Memory-Efficiency"]);
        assert!(out.contains("X-Memory-Limit: 128.0\n"), "{out}");
        assert_eq!(out.lines().count(), t.header_block(&r).lines().count());
        assert_eq!(t.in_flight(), 1, "peeking ends nothing");
        // The same figures (a sampler that reads once a minute): the block is kept, nothing
        // formatted.
        let slow = tracker(json!({"memory_limit": "128M", "sampler_interval_ms": 60000}));
        let k1 = slow.begin("GET /").unwrap().unwrap();
        let mut c = HeaderCache::default();
        assert!(slow.peek_header_block(&k1, &mut c).unwrap());
        let first = c.block.clone();
        c.block.push_str("marker");
        assert!(!slow.peek_header_block(&k1, &mut c).unwrap(), "unchanged figures, unchanged block");
        assert!(c.block.ends_with("marker"), "not rewritten");
        // Other figures: a new block.
        let mut c2 = HeaderCache { figures: Some([1, 1, 1, 1]), readings: None, block: first.clone() };
        assert!(slow.peek_header_block(&k1, &mut c2).unwrap());
        assert_eq!(c2.block, first);
        let off = tracker(json!({"include_headers": false}));
        let k2 = off.begin_with("GET /", 1).unwrap();
        assert!(off.peek_header_block(&k2, &mut cache).unwrap(), "cleared");
        assert_eq!(cache.block, "", "nothing written when include_headers is off");
        assert!(!off.peek_header_block(&k2, &mut cache).unwrap());
        t.end(k).unwrap();
        slow.end(k1).unwrap();
        off.end_with(k2, 1, 1);
    }

    #[test]
    fn peek_records_nothing_and_route_can_change() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("m.log");
        let t = tracker(json!({"log_file": log.to_str().unwrap()}));
        let mut k = t.begin("unmatched").unwrap().unwrap();
        let p = t.peek(&k).unwrap();
        assert_eq!(p.route, "unmatched");
        assert!(p.start_bytes > 0 && p.peak_bytes >= p.end_bytes.max(p.start_bytes), "{p:?}");
        assert_eq!(t.in_flight(), 1);
        assert!(t.analytics()["routes"].as_object().unwrap().is_empty());
        k.set_route("GET /users/:id");
        let r = t.end(k).unwrap();
        assert_eq!(r.route, "GET /users/:id");
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.analytics()["routes"]["GET /users/:id"]["count"], 1);
        t.handler_failed("GET /users/:id", "analytics handler threw");
        assert_eq!(t.analytics()["handler_errors"], 1);
        assert!(std::fs::read_to_string(&log).unwrap().contains("analytics handler threw"));
    }

    #[test]
    fn peek_reads_without_ending() {
        let t = tracker(json!({"memory_limit": "128M"}));
        let k = t.begin("GET /s").unwrap().unwrap();
        let s = t.peek(&k).unwrap();
        assert_eq!(s.route, "GET /s");
        assert!(s.end_bytes > 0 && s.peak_bytes >= s.end_bytes);
        assert_eq!(t.in_flight(), 1, "a peek does not end the request");
        assert!(t.analytics()["routes"].as_object().unwrap().is_empty(), "nor record it");
        let mut k = k;
        k.set_route("GET /s/{id}");
        let r = t.end(k).unwrap();
        assert_eq!(t.in_flight(), 0);
        assert_eq!(r.start_bytes, s.start_bytes);
        assert_eq!(r.route, "GET /s/{id}");
        assert_eq!(t.analytics()["routes"]["GET /s/{id}"]["count"], 1);
    }

    #[test]
    fn peek_with_takes_the_hosts_readings_and_runs_no_handler() {
        let t = tracker(json!({"threshold_mb": 1, "memory_limit": "128M", "log_high_usage": false}));
        let called = Arc::new(AtomicU64::new(0));
        let c = called.clone();
        t.set_high_usage_handler(Some(Arc::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })));
        let k = t.begin_with("GET /big", 10 << 20);
        let k = k.unwrap();
        let p = t.peek_with(&k, 12 << 20, 15 << 20);
        assert_eq!((p.start_bytes, p.end_bytes, p.peak_bytes, p.delta_bytes), (10 << 20, 12 << 20, 15 << 20, 2 << 20));
        assert!(p.high_usage, "5 MiB of growth so far is above 1 MiB");
        assert_eq!(called.load(Ordering::SeqCst), 0, "a peek runs no handler");
        assert_eq!(t.in_flight(), 1);
        assert!(t.analytics()["routes"].as_object().unwrap().is_empty());
        let p = t.peek_with(&k, 9 << 20, 0);
        assert_eq!((p.peak_bytes, p.delta_bytes, p.high_usage), (10 << 20, -(1 << 20), false));
        let r = t.end_with(k, 11 << 20, 15 << 20);
        assert!(r.high_usage);
        assert_eq!(called.load(Ordering::SeqCst), 1);
        assert_eq!(t.analytics()["routes"]["GET /big"]["count"], 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_readings() {
        let t = tracker(json!({}));
        let k = t.begin("GET /").unwrap().unwrap();
        let v = vec![1u8; 8 << 20];
        std::hint::black_box(&v);
        let r = t.end(k).unwrap();
        assert!(r.start_bytes > 0 && r.end_bytes > 0 && r.peak_bytes >= r.end_bytes.max(r.start_bytes));
        assert!(r.duration_ms >= 0.0);
        let t = tracker(json!({"sampler_interval_ms": 1}));
        let k = t.begin("GET /").unwrap().unwrap();
        let r = t.end(k).unwrap();
        assert!(r.start_bytes > 0 && r.end_bytes > 0, "{r:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn auto_starts_the_sampler_only_when_requests_come_fast() {
        // Slow requests: one reading each, no thread.
        let t = tracker(json!({}));
        assert!(t.cfg.sampler_auto);
        for _ in 0..(2 * AUTO_WINDOW) {
            let k = t.begin("GET /slow").unwrap().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
            t.end(k).unwrap();
        }
        assert!(t.sampler().is_none(), "{}", t.analytics()["readings"]);
        assert!(t.analytics()["readings"].as_str().unwrap().starts_with("one read per reading (auto"));
        // A burst: the sampler starts within two windows and serves the readings.
        let t = tracker(json!({"sampler_interval_ms": "auto"}));
        for _ in 0..(2 * AUTO_WINDOW) {
            let k = t.begin("GET /fast").unwrap().unwrap();
            t.end(k).unwrap();
        }
        let s = t.sampler().expect("the burst started the sampler");
        assert!(s.current.load(Ordering::Acquire) > 0);
        assert!(t.analytics()["readings"].as_str().unwrap().contains("auto"));
        let k = t.begin("GET /fast").unwrap().unwrap();
        assert!(t.end(k).unwrap().start_bytes > 0);
        // 0 turns it off whatever the rate; a word other than "auto" is an error naming the key.
        let t = tracker(json!({"sampler_interval_ms": 0}));
        for _ in 0..(2 * AUTO_WINDOW) {
            let k = t.begin("GET /fast").unwrap().unwrap();
            t.end(k).unwrap();
        }
        assert!(t.sampler().is_none());
        let e = RequestTracker::from_json(&json!({"sampler_interval_ms": "often"})).err().unwrap();
        assert!(e.message().contains("sampler_interval_ms"), "{}", e.message());
    }
}
