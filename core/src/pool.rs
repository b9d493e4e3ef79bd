//! Pool: a factory-backed object pool (HikariCP-class).
//!
//! Objects live in a slab; the idle ones are a LIFO stack of slot indices, so the hot
//! path is a lock, a pop and a push, no hashing and no clock read. Time-based features
//! (idle/lifetime eviction, validation bypass, leak detection) read a coarse clock that a
//! ticker thread advances. Waiters queue first come first served: blocking waiters (threads)
//! and async waiters (a callback handed the object, for event-loop hosts) share one queue.
//! No lock is held while a hook runs.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use serde_json::Value;

use crate::cleanup::{Cleanup, CleanupLevel};
use crate::config::ConfigReader;
use crate::error::{Error, ErrorKind, Result};

// ---- clock -------------------------------------------------------------------

/// Milliseconds on a monotonic clock. The default is coarse (advanced every few ms by a
/// ticker thread, so reading it is one atomic load); tests inject a manual one.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The process-wide coarse clock: one atomic, advanced every [`TICK`] by the pool thread.
pub struct CoarseClock;

const TICK: Duration = Duration::from_millis(10);
static START: LazyLock<Instant> = LazyLock::new(Instant::now);
static COARSE_NOW: AtomicU64 = AtomicU64::new(0);

impl Clock for CoarseClock {
    fn now_ms(&self) -> u64 {
        ensure_ticker();
        COARSE_NOW.load(Ordering::Relaxed)
    }
}

/// A clock tests move by hand.
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Pools whose maintenance the ticker runs (auto_cleanup), held weakly.
static MAINTAINED: LazyLock<Mutex<Vec<Weak<dyn Maintain>>>> = LazyLock::new(|| Mutex::new(Vec::new()));
static TICKER_STARTED: AtomicBool = AtomicBool::new(false);

trait Maintain: Send + Sync {
    fn tick(self: Arc<Self>);
}

/// One thread for the whole process: advances the coarse clock every TICK and, every
/// second, gives each auto-cleanup pool a chance to evict, detect leaks and refill.
fn ensure_ticker() {
    if TICKER_STARTED.load(Ordering::Relaxed) || TICKER_STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    COARSE_NOW.store(START.elapsed().as_millis() as u64, Ordering::Relaxed);
    std::thread::Builder::new()
        .name("memwarden-pool".into())
        .spawn(|| {
            let mut n: u64 = 0;
            loop {
                std::thread::sleep(TICK);
                COARSE_NOW.store(START.elapsed().as_millis() as u64, Ordering::Relaxed);
                n += 1;
                if n.is_multiple_of(100) {
                    let pools: Vec<_> = {
                        let mut list = MAINTAINED.lock();
                        list.retain(|w| w.strong_count() > 0);
                        list.iter().filter_map(Weak::upgrade).collect()
                    };
                    for p in pools {
                        p.tick();
                    }
                }
            }
        })
        .expect("spawn the memwarden-pool ticker");
}

// ---- config ------------------------------------------------------------------

/// A pool's configuration, keyed as the seed writes it. Times are seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub max_size: usize,
    pub min_size: usize,
    /// Idle objects unused this long are destroyed (down to `min_size`). 0 = never.
    pub max_idle_time: f64,
    /// Objects older than this are destroyed when next idle. 0 = never.
    pub max_lifetime: f64,
    /// An object idle longer than this is validated before it is handed out.
    pub validation_interval: f64,
    /// How long a blocking `acquire` waits for a free object.
    pub acquire_timeout: f64,
    /// An object held longer than this is reported as a possible leak. 0 = off.
    pub leak_detection_threshold: f64,
    /// Whether the pool thread evicts, detects leaks and refills to `min_size` by itself.
    pub auto_cleanup: bool,
    /// Whether counters are kept (sizes are always known).
    pub statistics: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: 10,
            min_size: 2,
            max_idle_time: 300.0,
            max_lifetime: 0.0,
            validation_interval: 60.0,
            acquire_timeout: 30.0,
            leak_detection_threshold: 0.0,
            auto_cleanup: true,
            statistics: true,
        }
    }
}

impl PoolConfig {
    pub const KEYS: &'static [&'static str] = &[
        "max_size",
        "min_size",
        "max_idle_time",
        "max_lifetime",
        "validation_interval",
        "acquire_timeout",
        "leak_detection_threshold",
        "auto_cleanup",
        "statistics",
    ];

    /// Reads a config object (`null` = defaults). `min_size` defaults to the smaller of 2 and
    /// `max_size`, so `{"max_size": 1}` is valid.
    pub fn from_json(value: &Value) -> Result<Self> {
        Self::from_json_with(value, &[])
    }

    /// As [`from_json`](Self::from_json), also accepting (and ignoring) `binding_keys` that a
    /// binding has already taken care of (`factory`, ...), so that they are not "unknown".
    pub fn from_json_with(value: &Value, binding_keys: &[&str]) -> Result<Self> {
        let known: Vec<&str> = Self::KEYS.iter().chain(binding_keys).copied().collect();
        let r = ConfigReader::new("MemoryPool", value, &known)?;
        let d = PoolConfig::default();
        let secs = |key: &str, default: f64| r.f64(key, default, "a number of seconds >= 0", |x| x >= 0.0);
        let size = |key: &str| -> Result<Option<usize>> {
            r.u64(key).map_err(|_| r.bad(key, "a whole number >= 0")).map(|v| v.map(|v| v as usize))
        };
        let max_size = size("max_size")?.unwrap_or(d.max_size);
        if max_size == 0 {
            return Err(r.bad("max_size", "a whole number >= 1"));
        }
        let min_size = size("min_size")?.unwrap_or(d.min_size.min(max_size));
        if min_size > max_size {
            return Err(Error::invalid_config(format!(
                "MemoryPool config: min_size ({min_size}) must not exceed max_size ({max_size})"
            )));
        }
        let acquire_timeout = secs("acquire_timeout", d.acquire_timeout)?;
        Ok(PoolConfig {
            max_size,
            min_size,
            max_idle_time: secs("max_idle_time", d.max_idle_time)?,
            max_lifetime: secs("max_lifetime", d.max_lifetime)?,
            validation_interval: secs("validation_interval", d.validation_interval)?,
            acquire_timeout,
            leak_detection_threshold: secs("leak_detection_threshold", d.leak_detection_threshold)?,
            auto_cleanup: r.bool("auto_cleanup", d.auto_cleanup)?,
            statistics: r.bool("statistics", d.statistics)?,
        })
    }
}

fn ms(secs: f64) -> u64 {
    (secs * 1000.0).round() as u64
}

// ---- hooks -------------------------------------------------------------------

type CreateFn<T> = Box<dyn Fn() -> Result<T> + Send + Sync>;
type ResetFn<T> = Box<dyn Fn(&mut T) -> Result<()> + Send + Sync>;
type ValidateFn<T> = Box<dyn Fn(&T) -> Result<bool> + Send + Sync>;
type DestroyFn<T> = Box<dyn Fn(T) + Send + Sync>;
type IdentityFn<T> = Box<dyn Fn(&T) -> u64 + Send + Sync>;
type LeakFn = Box<dyn Fn(&LeakReport) + Send + Sync>;
/// Hands an async waiter its object (or the error that ended its wait).
type DeliverFn<T> = Box<dyn FnOnce(Result<Lease<T>>) + Send>;

/// A possible leak: an object held longer than `leak_detection_threshold`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeakReport {
    pub id: u64,
    pub held_ms: u64,
    /// Where it was acquired: the host's stack or the caller's label, when given.
    pub acquired_at: Option<String>,
}

/// Builds a [`Pool`]: the factory plus optional reset, validate, destroy and identity hooks.
pub struct PoolBuilder<T> {
    config: PoolConfig,
    create: CreateFn<T>,
    reset: Option<ResetFn<T>>,
    validate: Option<ValidateFn<T>>,
    destroy: Option<DestroyFn<T>>,
    identity: Option<IdentityFn<T>>,
    on_leak: Option<LeakFn>,
    clock: Option<Arc<dyn Clock>>,
    background_hooks: bool,
}

impl<T: Send + 'static> PoolBuilder<T> {
    pub fn new(config: PoolConfig, create: impl Fn() -> Result<T> + Send + Sync + 'static) -> Self {
        PoolBuilder {
            config,
            create: Box::new(create),
            reset: None,
            validate: None,
            destroy: None,
            identity: None,
            on_leak: None,
            clock: None,
            background_hooks: true,
        }
    }
    /// Runs on every release; an error destroys the object and is returned to the releaser.
    pub fn reset(mut self, f: impl Fn(&mut T) -> Result<()> + Send + Sync + 'static) -> Self {
        self.reset = Some(Box::new(f));
        self
    }
    /// Runs on acquire for an object idle longer than `validation_interval`; `false` destroys
    /// it and the next one is tried; an error destroys it and is returned to the acquirer.
    pub fn validate(mut self, f: impl Fn(&T) -> Result<bool> + Send + Sync + 'static) -> Self {
        self.validate = Some(Box::new(f));
        self
    }
    /// Runs when the pool destroys an object (eviction, failed validation, close, trim).
    pub fn destroy(mut self, f: impl Fn(T) + Send + Sync + 'static) -> Self {
        self.destroy = Some(Box::new(f));
        self
    }
    /// Lets `release(value)` find the object by an identity (an address), for hosts that hand
    /// the object itself back. Without it, objects are released by their lease id.
    pub fn identity(mut self, f: impl Fn(&T) -> u64 + Send + Sync + 'static) -> Self {
        self.identity = Some(Box::new(f));
        self
    }
    pub fn on_leak(mut self, f: impl Fn(&LeakReport) + Send + Sync + 'static) -> Self {
        self.on_leak = Some(Box::new(f));
        self
    }
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Whether hooks may run on the pool thread (true by default). Hosts whose callbacks must
    /// run on their own thread (Node, PHP) say false: maintenance then runs on the next call
    /// into the pool, or when the host calls [`Pool::maintain`].
    pub fn background_hooks(mut self, yes: bool) -> Self {
        self.background_hooks = yes;
        self
    }

    /// Creates the pool and its first `min_size` objects. A factory error is returned.
    pub fn build(self) -> Result<Pool<T>> {
        if self.clock.is_none() {
            ensure_ticker();
        }
        let acquire_reads_clock = self.validate.is_some() || self.config.leak_detection_threshold > 0.0;
        // max_size is a bound, not a request: a huge one (any usize is a valid config) must not
        // reserve memory up front (found by the ffi_config fuzz target: capacity overflow).
        let reserve = self.config.max_size.min(1024);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                slots: Vec::with_capacity(reserve),
                free_slots: Vec::new(),
                idle: Vec::with_capacity(reserve),
                by_identity: HashMap::default(),
                live: 0,
                creating: 0,
                waiters: VecDeque::new(),
                next_ticket: 0,
                closed: false,
                stats: Counters::default(),
                leaks: VecDeque::new(),
                last_maintenance: 0,
            }),
            cond: Condvar::new(),
            maintenance_due: AtomicBool::new(false),
            limits: Limits {
                idle_ms: ms(self.config.max_idle_time),
                lifetime_ms: ms(self.config.max_lifetime),
                validation_ms: ms(self.config.validation_interval),
                leak_ms: ms(self.config.leak_detection_threshold),
                timeout: Duration::from_secs_f64(self.config.acquire_timeout),
            },
            config: self.config,
            create: self.create,
            reset: self.reset,
            validate: self.validate,
            destroy: self.destroy,
            identity: self.identity,
            on_leak: self.on_leak,
            clock: self.clock,
            acquire_reads_clock,
            background_hooks: self.background_hooks,
        });
        let pool = Pool { shared };
        pool.refill()?;
        if pool.shared.config.auto_cleanup {
            ensure_ticker();
            let weak: Weak<dyn Maintain> = Arc::downgrade(&pool.shared) as Weak<dyn Maintain>;
            MAINTAINED.lock().push(weak);
        }
        Ok(pool)
    }
}

// ---- state -------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Idle,
    Active,
    /// Out of the pool's hands for a moment: being validated or reset.
    Busy,
}

struct Slot<T> {
    generation: u32,
    state: SlotState,
    value: Option<T>,
    identity: u64,
    created_ms: u64,
    last_used_ms: u64,
    acquired_ms: u64,
    label: Option<Box<str>>,
    leak_reported: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    total_created: u64,
    total_destroyed: u64,
    total_acquired: u64,
    hits: u64,
    timeouts: u64,
    validation_failures: u64,
    leaks: u64,
    create_failures: u64,
}

/// A queued acquirer. Async waiters are handed the object by whoever frees it.
enum Waiter<T> {
    Blocking { ticket: u64 },
    Async { ticket: u64, label: Option<Box<str>>, deliver: DeliverFn<T> },
}

impl<T> Waiter<T> {
    fn ticket(&self) -> u64 {
        match self {
            Waiter::Blocking { ticket } | Waiter::Async { ticket, .. } => *ticket,
        }
    }
}

/// Hashes a u64 identity with one multiplication (identities are addresses, already spread).
#[derive(Default)]
struct IdHasher(u64);
impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

struct Inner<T> {
    slots: Vec<Slot<T>>,
    free_slots: Vec<usize>,
    /// Idle slot indices; the most recently released on top.
    idle: Vec<usize>,
    by_identity: HashMap<u64, usize, BuildHasherDefault<IdHasher>>,
    /// Objects alive: idle + active + busy.
    live: usize,
    /// Objects being created right now (count toward `max_size`).
    creating: usize,
    waiters: VecDeque<Waiter<T>>,
    next_ticket: u64,
    closed: bool,
    stats: Counters,
    leaks: VecDeque<LeakReport>,
    last_maintenance: u64,
}

/// Leak reports kept in the statistics.
const LEAKS_KEPT: usize = 32;

/// The config's times, converted once.
struct Limits {
    idle_ms: u64,
    lifetime_ms: u64,
    validation_ms: u64,
    leak_ms: u64,
    timeout: Duration,
}

struct Shared<T> {
    inner: Mutex<Inner<T>>,
    cond: Condvar,
    maintenance_due: AtomicBool,
    limits: Limits,
    config: PoolConfig,
    create: CreateFn<T>,
    reset: Option<ResetFn<T>>,
    validate: Option<ValidateFn<T>>,
    destroy: Option<DestroyFn<T>>,
    identity: Option<IdentityFn<T>>,
    on_leak: Option<LeakFn>,
    /// `None`: the coarse clock, read inline (one atomic load).
    clock: Option<Arc<dyn Clock>>,
    /// Whether acquire needs the time (validation or leak detection configured).
    acquire_reads_clock: bool,
    background_hooks: bool,
}

/// An object out of the pool, with the id that releases it.
#[derive(Debug)]
pub struct Lease<T> {
    pub id: u64,
    pub value: T,
}

fn lease_id(index: usize, generation: u32) -> u64 {
    (generation as u64) << 32 | index as u64
}

/// A factory-backed object pool. Cheap to clone (a handle); thread-safe.
pub struct Pool<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool { shared: self.shared.clone() }
    }
}

/// What `take_or_queue` found.
enum Take<T> {
    /// Checked out already (no validation needed).
    Ready(Lease<T>),
    /// Taken from the idle stack; must be validated before it is handed out.
    Validate(usize, T),
    /// Room for a new object: the caller creates it (a `creating` slot is reserved).
    Create,
    Wait,
}

impl<T: Send + 'static> Pool<T> {
    pub fn builder(config: PoolConfig, create: impl Fn() -> Result<T> + Send + Sync + 'static) -> PoolBuilder<T> {
        PoolBuilder::new(config, create)
    }

    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    #[inline]
    fn now(&self) -> u64 {
        match &self.shared.clock {
            None => COARSE_NOW.load(Ordering::Relaxed),
            Some(c) => c.now_ms(),
        }
    }

    /// Takes an object, waiting up to `acquire_timeout` when all `max_size` are in use.
    pub fn acquire(&self) -> Result<Lease<T>> {
        self.acquire_labeled(None)
    }

    /// As [`acquire`](Self::acquire), remembering `label` (a stack, a call site) for leak reports.
    pub fn acquire_labeled(&self, label: Option<&str>) -> Result<Lease<T>> {
        self.acquire_inner(label, Some(self.shared.limits.timeout))
    }

    /// Takes an object if one is idle or can be created now; `Ok(None)` when the caller
    /// would have to wait. Never blocks.
    pub fn try_acquire(&self, label: Option<&str>) -> Result<Option<Lease<T>>> {
        match self.acquire_inner(label, None) {
            Ok(l) => Ok(Some(l)),
            Err(e) if e.kind() == ErrorKind::Exhausted => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn acquire_inner(&self, label: Option<&str>, wait: Option<Duration>) -> Result<Lease<T>> {
        self.run_due_maintenance();
        let s = &*self.shared;
        let mut ticket: Option<u64> = None;
        let mut deadline: Option<Instant> = None;
        loop {
            let now = if s.acquire_reads_clock { self.now() } else { 0 };
            let mut g = s.inner.lock();
            if g.closed {
                if let Some(t) = ticket {
                    g.waiters.retain(|w| w.ticket() != t);
                }
                return Err(closed());
            }
            let took = self.take_or_queue(&mut g, ticket, now, label);
            if let (Some(t), false) = (ticket, matches!(took, Take::Wait)) {
                g.waiters.retain(|w| w.ticket() != t);
                if !g.waiters.is_empty() {
                    s.cond.notify_all(); // the next in line may find something too
                }
            }
            match took {
                Take::Ready(lease) => return Ok(lease),
                Take::Validate(idx, value) => {
                    drop(g);
                    match self.validate_and_check_out(idx, value, label, now)? {
                        Some(lease) => return Ok(lease),
                        None => continue, // failed validation: try the next
                    }
                }
                Take::Create => {
                    drop(g);
                    return self.create_and_check_out(label);
                }
                Take::Wait => {
                    let Some(wait) = wait else {
                        return Err(self.exhausted(&g));
                    };
                    let dl = *deadline.get_or_insert_with(|| Instant::now() + wait);
                    if ticket.is_none() {
                        let t = g.next_ticket;
                        g.next_ticket += 1;
                        g.waiters.push_back(Waiter::Blocking { ticket: t });
                        ticket = Some(t);
                    }
                    let failures_before = g.stats.create_failures;
                    let timed_out = s.cond.wait_until(&mut g, dl).timed_out();
                    if g.closed {
                        g.waiters.retain(|w| Some(w.ticket()) != ticket);
                        return Err(closed());
                    }
                    if g.stats.create_failures != failures_before && g.idle.is_empty() {
                        // The factory failed while we waited: say so rather than wait on.
                        g.waiters.retain(|w| Some(w.ticket()) != ticket);
                        s.cond.notify_all();
                        return Err(Error::new(
                            ErrorKind::Callback,
                            "the pool's factory failed while this acquire was waiting",
                        ));
                    }
                    if timed_out && Instant::now() >= dl {
                        g.waiters.retain(|w| Some(w.ticket()) != ticket);
                        if s.config.statistics {
                            g.stats.timeouts += 1;
                        }
                        let in_use = g.live - g.idle.len();
                        s.cond.notify_all();
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "MemoryPool: no object became free within acquire_timeout ({} s); {in_use} of max_size {} in use",
                                s.config.acquire_timeout, s.config.max_size
                            ),
                        ));
                    }
                }
            }
        }
    }

    fn exhausted(&self, g: &Inner<T>) -> Error {
        Error::new(
            ErrorKind::Exhausted,
            format!(
                "MemoryPool exhausted: all {} objects (max_size) are in use",
                g.live.max(self.shared.config.max_size)
            ),
        )
    }

    /// Under the lock: an idle object, room to create one, or wait. Only the head of the
    /// waiter queue (or anyone when nobody waits) may take.
    fn take_or_queue(&self, g: &mut Inner<T>, ticket: Option<u64>, now: u64, label: Option<&str>) -> Take<T> {
        let my_turn = match (g.waiters.front(), ticket) {
            (None, _) => true,
            (Some(w), Some(t)) => w.ticket() == t,
            (Some(_), None) => false,
        };
        if !my_turn {
            return Take::Wait;
        }
        if let Some(idx) = g.idle.pop() {
            let s = &*self.shared;
            let slot = &mut g.slots[idx];
            let value = slot.value.take().expect("idle slot holds its object");
            if s.validate.is_some() && now.saturating_sub(slot.last_used_ms) > s.limits.validation_ms {
                slot.state = SlotState::Busy;
                return Take::Validate(idx, value);
            }
            let id = Self::activate(slot, idx, now, label);
            if s.config.statistics {
                g.stats.total_acquired += 1;
                g.stats.hits += 1;
            }
            return Take::Ready(Lease { id, value });
        }
        if g.live + g.creating < self.shared.config.max_size {
            g.creating += 1;
            return Take::Create;
        }
        Take::Wait
    }

    fn activate(slot: &mut Slot<T>, idx: usize, now: u64, label: Option<&str>) -> u64 {
        slot.state = SlotState::Active;
        slot.acquired_ms = now;
        slot.leak_reported = false;
        slot.label = label.map(Into::into);
        lease_id(idx, slot.generation)
    }

    /// Validates an object that sat idle longer than `validation_interval`, then hands it
    /// out. `Ok(None)`: it failed validation and was destroyed.
    fn validate_and_check_out(&self, idx: usize, value: T, label: Option<&str>, now: u64) -> Result<Option<Lease<T>>> {
        let s = &*self.shared;
        if let Some(validate) = &s.validate {
            match validate(&value) {
                Ok(true) => {}
                Ok(false) => {
                    self.discard(idx, value, true);
                    return Ok(None);
                }
                Err(e) => {
                    self.discard(idx, value, true);
                    return Err(e);
                }
            }
        }
        let mut g = s.inner.lock();
        let id = Self::activate(&mut g.slots[idx], idx, now, label);
        if s.config.statistics {
            g.stats.total_acquired += 1;
            g.stats.hits += 1;
        }
        Ok(Some(Lease { id, value }))
    }

    /// Creates an object for a reserved `creating` place and checks it out.
    fn create_and_check_out(&self, label: Option<&str>) -> Result<Lease<T>> {
        let s = &*self.shared;
        let created = (s.create)();
        let now = self.now();
        let mut g = s.inner.lock();
        g.creating -= 1;
        match created {
            Ok(value) => {
                let identity = s.identity.as_ref().map(|f| f(&value)).unwrap_or(0);
                if s.identity.is_some() && g.by_identity.contains_key(&identity) {
                    s.cond.notify_all();
                    drop(g);
                    return Err(Error::invalid_argument(
                        "MemoryPool: the factory returned an object that is already in the pool; it must create a new one each time",
                    ));
                }
                let idx = self.insert_slot(&mut g, identity, now);
                let slot = &mut g.slots[idx];
                slot.state = SlotState::Active;
                slot.acquired_ms = now;
                slot.label = label.map(Into::into);
                let id = lease_id(idx, slot.generation);
                if s.config.statistics {
                    g.stats.total_created += 1;
                    g.stats.total_acquired += 1;
                }
                Ok(Lease { id, value })
            }
            Err(e) => {
                g.stats.create_failures += 1;
                // Wake the waiters: they learn of the failure instead of hanging.
                s.cond.notify_all();
                let asyncs = self.take_async_waiters_on_failure(&mut g);
                drop(g);
                for deliver in asyncs {
                    deliver(Err(Error::new(
                        ErrorKind::Callback,
                        format!("the pool's factory failed: {}", e.message()),
                    )));
                }
                Err(e)
            }
        }
    }

    fn take_async_waiters_on_failure(&self, g: &mut Inner<T>) -> Vec<DeliverFn<T>> {
        if !g.idle.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut rest = VecDeque::new();
        for w in g.waiters.drain(..) {
            match w {
                Waiter::Async { deliver, .. } => out.push(deliver),
                b => rest.push_back(b),
            }
        }
        g.waiters = rest;
        out
    }

    fn insert_slot(&self, g: &mut Inner<T>, identity: u64, now: u64) -> usize {
        let slot = Slot {
            generation: 0,
            state: SlotState::Busy,
            value: None,
            identity,
            created_ms: now,
            last_used_ms: now,
            acquired_ms: now,
            label: None,
            leak_reported: false,
        };
        let idx = match g.free_slots.pop() {
            Some(i) => {
                let generation = g.slots[i].generation;
                g.slots[i] = Slot { generation, ..slot };
                i
            }
            None => {
                g.slots.push(slot);
                g.slots.len() - 1
            }
        };
        if self.shared.identity.is_some() {
            g.by_identity.insert(identity, idx);
        }
        g.live += 1;
        idx
    }

    /// Forgets a slot and destroys its object (outside the lock).
    fn discard(&self, idx: usize, value: T, validation_failed: bool) {
        let s = &*self.shared;
        {
            let mut g = s.inner.lock();
            self.free_slot(&mut g, idx);
            if s.config.statistics && validation_failed {
                g.stats.validation_failures += 1;
            }
            s.cond.notify_all();
        }
        self.destroy_value(value);
        self.serve_async_waiters();
    }

    fn free_slot(&self, g: &mut Inner<T>, idx: usize) {
        let s = &*self.shared;
        let slot = &mut g.slots[idx];
        slot.state = SlotState::Free;
        slot.generation = slot.generation.wrapping_add(1);
        slot.label = None;
        let identity = slot.identity;
        if s.identity.is_some() {
            g.by_identity.remove(&identity);
        }
        g.free_slots.push(idx);
        g.live -= 1;
        if s.config.statistics {
            g.stats.total_destroyed += 1;
        }
    }

    fn destroy_value(&self, value: T) {
        match &self.shared.destroy {
            Some(d) => d(value),
            None => drop(value),
        }
    }

    /// Returns an object by its lease id.
    pub fn release(&self, lease: Lease<T>) -> Result<()> {
        self.release_by_id(lease.id, lease.value)
    }

    /// Returns `value`, acquired under lease `id`. Releasing twice, or an id this pool did not
    /// hand out, is an `InvalidArgument` error and leaves the pool as it was.
    pub fn release_by_id(&self, id: u64, value: T) -> Result<()> {
        let idx = (id & 0xFFFF_FFFF) as usize;
        let generation = (id >> 32) as u32;
        self.release_slot(
            |g| g.slots.get(idx).filter(|s| s.generation == generation && s.state == SlotState::Active).map(|_| idx),
            value,
        )
    }

    /// Returns an object found by its identity (pools built with [`PoolBuilder::identity`]).
    pub fn release_value(&self, value: T) -> Result<()> {
        let Some(identity_fn) = &self.shared.identity else {
            return Err(Error::invalid_argument("MemoryPool: this pool releases by lease id, not by object"));
        };
        let identity = identity_fn(&value);
        self.release_slot(
            |g| g.by_identity.get(&identity).copied().filter(|&i| g.slots[i].state == SlotState::Active),
            value,
        )
    }

    fn release_slot(&self, find: impl FnOnce(&Inner<T>) -> Option<usize>, mut value: T) -> Result<()> {
        let s = &*self.shared;
        let idx = {
            let mut g = s.inner.lock();
            let Some(idx) = find(&g) else {
                return Err(Error::invalid_argument(
                    "MemoryPool: release of an object that is not in use from this pool (released twice, or acquired elsewhere)",
                ));
            };
            if s.reset.is_some() || g.closed {
                g.slots[idx].state = SlotState::Busy;
            } else {
                self.put_idle(&mut g, idx, value);
                return Ok(());
            }
            idx
        };
        let reset_result = match &s.reset {
            Some(reset) => reset(&mut value),
            None => Ok(()),
        };
        let mut g = s.inner.lock();
        if reset_result.is_err() || g.closed {
            drop(g);
            self.discard(idx, value, false);
            return reset_result;
        }
        self.put_idle(&mut g, idx, value);
        Ok(())
    }

    /// Under the lock: back on the idle stack (or to the head async waiter, or destroyed
    /// when past `max_lifetime`).
    fn put_idle(&self, g: &mut parking_lot::MutexGuard<'_, Inner<T>>, idx: usize, value: T) {
        let s = &*self.shared;
        let now = self.now();
        let lifetime = s.limits.lifetime_ms;
        if lifetime > 0 && now.saturating_sub(g.slots[idx].created_ms) >= lifetime {
            g.slots[idx].state = SlotState::Busy;
            parking_lot::MutexGuard::unlocked(g, || self.discard(idx, value, false));
            return;
        }
        if let Some(Waiter::Async { .. }) = g.waiters.front() {
            let Some(Waiter::Async { label, deliver, .. }) = g.waiters.pop_front() else { unreachable!() };
            let slot = &mut g.slots[idx];
            slot.state = SlotState::Active;
            slot.acquired_ms = now;
            slot.last_used_ms = now;
            slot.leak_reported = false;
            slot.label = label;
            let id = lease_id(idx, slot.generation);
            if s.config.statistics {
                g.stats.total_acquired += 1;
                g.stats.hits += 1;
            }
            parking_lot::MutexGuard::unlocked(g, || deliver(Ok(Lease { id, value })));
            return;
        }
        let slot = &mut g.slots[idx];
        slot.state = SlotState::Idle;
        slot.value = Some(value);
        slot.last_used_ms = now;
        g.idle.push(idx);
        if !g.waiters.is_empty() {
            s.cond.notify_all();
        }
    }

    /// Queues an async acquire: `deliver` is called with the object as soon as one is free
    /// (right away, on this thread, when one is), or with an error. Returns a ticket for
    /// [`cancel_waiter`](Self::cancel_waiter), or `None` when `deliver` already ran.
    pub fn acquire_async(
        &self,
        label: Option<&str>,
        deliver: impl FnOnce(Result<Lease<T>>) + Send + 'static,
    ) -> Option<u64> {
        match self.try_acquire(label) {
            Ok(Some(lease)) => {
                deliver(Ok(lease));
                None
            }
            Err(e) => {
                deliver(Err(e));
                None
            }
            Ok(None) => {
                let mut g = self.shared.inner.lock();
                if g.closed {
                    drop(g);
                    deliver(Err(closed()));
                    return None;
                }
                let t = g.next_ticket;
                g.next_ticket += 1;
                g.waiters.push_back(Waiter::Async {
                    ticket: t,
                    label: label.map(Into::into),
                    deliver: Box::new(deliver),
                });
                Some(t)
            }
        }
    }

    /// Removes a queued async waiter (its timeout passed); `true` when it was still queued.
    /// The waiter's callback is dropped without being called.
    pub fn cancel_waiter(&self, ticket: u64) -> bool {
        let mut g = self.shared.inner.lock();
        let before = g.waiters.len();
        g.waiters.retain(|w| w.ticket() != ticket);
        let removed = g.waiters.len() != before;
        if removed && self.shared.config.statistics {
            g.stats.timeouts += 1;
        }
        if removed {
            self.shared.cond.notify_all();
        }
        removed
    }

    /// Serves async waiters at the head of the queue when there is room to create.
    fn serve_async_waiters(&self) {
        loop {
            let (label, deliver) = {
                let mut g = self.shared.inner.lock();
                if g.closed || !matches!(g.waiters.front(), Some(Waiter::Async { .. })) {
                    return;
                }
                if g.live + g.creating >= self.shared.config.max_size {
                    return;
                }
                let Some(Waiter::Async { label, deliver, .. }) = g.waiters.pop_front() else { unreachable!() };
                g.creating += 1;
                (label, deliver)
            };
            deliver(self.create_and_check_out(label.as_deref()));
        }
    }

    // ---- maintenance ------------------------------------------------------

    fn run_due_maintenance(&self) {
        if self.shared.maintenance_due.load(Ordering::Relaxed)
            && self.shared.maintenance_due.swap(false, Ordering::AcqRel)
        {
            let _ = self.maintain();
        }
    }

    /// Evicts idle objects past `max_idle_time` (down to `min_size`) or `max_lifetime`,
    /// reports objects held past `leak_detection_threshold`, and refills to `min_size`.
    /// Runs by itself with `auto_cleanup`; hosts without background hooks call it (or it
    /// runs on their next call into the pool).
    pub fn maintain(&self) -> Result<()> {
        let s = &*self.shared;
        let now = self.now();
        let Limits { idle_ms: idle_limit, lifetime_ms: lifetime, leak_ms: leak_after, .. } = s.limits;
        let (evicted, leaks) = {
            let mut g = s.inner.lock();
            g.last_maintenance = now;
            let mut evicted = Vec::new();
            // Oldest idle first (bottom of the stack).
            let mut keep = Vec::with_capacity(g.idle.len());
            let idle: Vec<usize> = std::mem::take(&mut g.idle);
            let mut live = g.live;
            for idx in idle {
                let slot = &g.slots[idx];
                let too_idle =
                    idle_limit > 0 && now.saturating_sub(slot.last_used_ms) >= idle_limit && live > s.config.min_size;
                let too_old = lifetime > 0 && now.saturating_sub(slot.created_ms) >= lifetime;
                if too_idle || too_old {
                    let value = g.slots[idx].value.take().expect("idle slot holds its object");
                    self.free_slot(&mut g, idx);
                    live -= 1;
                    evicted.push(value);
                } else {
                    keep.push(idx);
                }
            }
            g.idle = keep;
            let mut leaks = Vec::new();
            if leak_after > 0 {
                let mut found = Vec::new();
                for (i, slot) in g.slots.iter_mut().enumerate() {
                    if slot.state == SlotState::Active
                        && !slot.leak_reported
                        && now.saturating_sub(slot.acquired_ms) >= leak_after
                    {
                        slot.leak_reported = true;
                        found.push(LeakReport {
                            id: lease_id(i, slot.generation),
                            held_ms: now - slot.acquired_ms,
                            acquired_at: slot.label.as_deref().map(str::to_owned),
                        });
                    }
                }
                for l in &found {
                    if s.config.statistics {
                        g.stats.leaks += 1;
                    }
                    if g.leaks.len() == LEAKS_KEPT {
                        g.leaks.pop_front();
                    }
                    g.leaks.push_back(l.clone());
                }
                leaks = found;
            }
            if !evicted.is_empty() {
                s.cond.notify_all();
            }
            (evicted, leaks)
        };
        for v in evicted {
            self.destroy_value(v);
        }
        if let Some(on_leak) = &s.on_leak {
            for l in &leaks {
                on_leak(l);
            }
        }
        self.refill()
    }

    /// Creates idle objects until `min_size` are alive.
    fn refill(&self) -> Result<()> {
        let s = &*self.shared;
        loop {
            {
                let mut g = s.inner.lock();
                if g.closed || g.live + g.creating >= s.config.min_size {
                    return Ok(());
                }
                g.creating += 1;
            }
            let created = (s.create)();
            let now = self.now();
            let mut g = s.inner.lock();
            g.creating -= 1;
            let value = match created {
                Ok(v) => v,
                Err(e) => {
                    g.stats.create_failures += 1;
                    s.cond.notify_all();
                    return Err(e);
                }
            };
            let identity = s.identity.as_ref().map(|f| f(&value)).unwrap_or(0);
            let idx = self.insert_slot(&mut g, identity, now);
            if s.config.statistics {
                g.stats.total_created += 1;
            }
            self.put_idle(&mut g, idx, value);
        }
    }

    /// Destroys idle objects down to `keep` (never below zero); returns how many went.
    pub fn trim(&self, keep: usize) -> usize {
        let victims = {
            let mut g = self.shared.inner.lock();
            let mut victims = Vec::new();
            // Trim from the bottom (least recently used).
            while g.idle.len() > keep && g.live > keep {
                let idx = g.idle.remove(0);
                let value = g.slots[idx].value.take().expect("idle slot holds its object");
                self.free_slot(&mut g, idx);
                victims.push(value);
            }
            victims
        };
        let n = victims.len();
        for v in victims {
            self.destroy_value(v);
        }
        n
    }

    /// No new acquires; idle objects destroyed now, in-use ones when they come back; waiters
    /// get a `Closed` error. Idempotent.
    pub fn close(&self) {
        let (victims, asyncs) = {
            let mut g = self.shared.inner.lock();
            g.closed = true;
            let idle = std::mem::take(&mut g.idle);
            let mut victims = Vec::new();
            for idx in idle {
                let value = g.slots[idx].value.take().expect("idle slot holds its object");
                self.free_slot(&mut g, idx);
                victims.push(value);
            }
            let mut asyncs = Vec::new();
            for w in g.waiters.drain(..) {
                if let Waiter::Async { deliver, .. } = w {
                    asyncs.push(deliver);
                }
            }
            self.shared.cond.notify_all();
            (victims, asyncs)
        };
        for v in victims {
            self.destroy_value(v);
        }
        for d in asyncs {
            d(Err(closed()));
        }
    }

    pub fn is_closed(&self) -> bool {
        self.shared.inner.lock().closed
    }

    /// `active`, `idle`, `waiting`, `size`, `hit_rate` (% of acquires served by an existing
    /// object), `total_created`, `total_destroyed`, `total_acquired`, `timeouts`,
    /// `validation_failures`, `leaks`, `recent_leaks`, `max_size`, `min_size`, `closed`,
    /// `statistics`.
    pub fn statistics(&self) -> PoolStats {
        let g = self.shared.inner.lock();
        let c = g.stats;
        PoolStats {
            active: g.live - g.idle.len(),
            idle: g.idle.len(),
            waiting: g.waiters.len(),
            size: g.live,
            max_size: self.shared.config.max_size,
            min_size: self.shared.config.min_size,
            hit_rate: if c.total_acquired == 0 { 0.0 } else { c.hits as f64 * 100.0 / c.total_acquired as f64 },
            total_created: c.total_created,
            total_destroyed: c.total_destroyed,
            total_acquired: c.total_acquired,
            timeouts: c.timeouts,
            validation_failures: c.validation_failures,
            leaks: c.leaks,
            recent_leaks: g.leaks.iter().cloned().collect(),
            closed: g.closed,
            statistics: self.shared.config.statistics,
        }
    }
}

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "MemoryPool is closed: no new acquires")
}

/// A pool's statistics, with the seed's names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStats {
    pub active: usize,
    pub idle: usize,
    pub waiting: usize,
    pub size: usize,
    pub max_size: usize,
    pub min_size: usize,
    pub hit_rate: f64,
    pub total_created: u64,
    pub total_destroyed: u64,
    pub total_acquired: u64,
    pub timeouts: u64,
    pub validation_failures: u64,
    pub leaks: u64,
    pub recent_leaks: Vec<LeakReport>,
    pub closed: bool,
    pub statistics: bool,
}

/// Called by the ticker about once a second: maintenance runs right there when the hooks
/// may run on the pool thread, else on the host's next call into the pool.
impl<T: Send + 'static> Maintain for Shared<T> {
    fn tick(self: Arc<Self>) {
        let now = Pool { shared: self.clone() }.now();
        if now.saturating_sub(self.inner.lock().last_maintenance) < 1000 {
            return;
        }
        if self.background_hooks {
            let _ = Pool { shared: self }.maintain();
        } else {
            self.maintenance_due.store(true, Ordering::Release);
        }
    }
}

/// The pool's cleanup: trim idle objects to `min_size` (emergency: all idle objects).
impl<T: Send + 'static> Cleanup for Pool<T> {
    fn cleanup(&self, level: CleanupLevel) -> Result<()> {
        let keep = match level {
            CleanupLevel::Normal => self.shared.config.min_size,
            CleanupLevel::Emergency => 0,
        };
        self.trim(keep);
        Ok(())
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let g = self.inner.get_mut();
        for slot in g.slots.iter_mut() {
            if let Some(v) = slot.value.take() {
                match &self.destroy {
                    Some(d) => d(v),
                    None => drop(v),
                }
            }
        }
    }
}

/// An object borrowed from a [`Pool`]; goes back when dropped (the Rust idiom for `use`).
pub struct Pooled<T: Send + 'static> {
    pool: Pool<T>,
    lease: Option<Lease<T>>,
}

impl<T: Send + 'static> Pool<T> {
    /// Takes an object that returns itself to the pool when dropped.
    pub fn get(&self) -> Result<Pooled<T>> {
        Ok(Pooled { pool: self.clone(), lease: Some(self.acquire()?) })
    }
}

impl<T: Send + 'static> std::ops::Deref for Pooled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.lease.as_ref().expect("present until drop").value
    }
}

impl<T: Send + 'static> std::ops::DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.lease.as_mut().expect("present until drop").value
    }
}

impl<T: Send + 'static> Drop for Pooled<T> {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            // A reset hook's error has already destroyed the object; nothing else to do.
            let _ = self.pool.release(lease);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    struct Fixture {
        clock: Arc<ManualClock>,
        created: Arc<AtomicUsize>,
        destroyed: Arc<Mutex<Vec<u64>>>,
    }

    fn fixture() -> Fixture {
        Fixture {
            clock: Arc::new(ManualClock::default()),
            created: Arc::new(AtomicUsize::new(0)),
            destroyed: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn pool(cfg: Value, f: &Fixture) -> PoolBuilder<u64> {
        let mut cfg = cfg;
        cfg.as_object_mut().unwrap().entry("auto_cleanup").or_insert(json!(false));
        let created = f.created.clone();
        let destroyed = f.destroyed.clone();
        Pool::builder(PoolConfig::from_json(&cfg).unwrap(), move || Ok(created.fetch_add(1, Ordering::SeqCst) as u64))
            .destroy(move |v| destroyed.lock().push(v))
            .clock(f.clock.clone())
    }

    #[test]
    fn config_defaults_and_bad_values() {
        let c = PoolConfig::from_json(&Value::Null).unwrap();
        assert_eq!((c.max_size, c.min_size, c.max_idle_time, c.validation_interval), (10, 2, 300.0, 60.0));
        assert!(c.auto_cleanup && c.statistics);
        assert_eq!(PoolConfig::from_json(&json!({"max_size": 1})).unwrap().min_size, 1);
        for (cfg, needle) in [
            (json!({"max_size": 0}), "'max_size'"),
            (json!({"max_size": 2, "min_size": 3}), "min_size (3) must not exceed max_size (2)"),
            (json!({"max_idle_time": -1}), "'max_idle_time'"),
            (json!({"acquire_timeout": "soon"}), "'soon'"),
            (json!({"max_sise": 3}), "did you mean 'max_size'"),
            (json!({"statistics": 1}), "'statistics'"),
        ] {
            let e = PoolConfig::from_json(&cfg).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            assert!(e.message().contains(needle), "{cfg}: {e}");
        }
        assert!(PoolConfig::from_json_with(&json!({"factory": null, "max_size": 3}), &["factory"]).is_ok());
    }

    /// Regression (fuzz/regressions/ffi_config): a max_size near usize::MAX panicked with
    /// "capacity overflow", and a merely large one reserved gigabytes, at construction.
    #[test]
    fn a_huge_max_size_reserves_nothing_up_front() {
        let f = fixture();
        for max in [16_655_124_075_896_686_364u64, u64::MAX, 1 << 40] {
            let p = pool(json!({"max_size": max, "min_size": 1}), &f).build().unwrap();
            assert_eq!(p.config().max_size as u64, max);
            let a = p.acquire().unwrap();
            let b = p.acquire().unwrap();
            assert_eq!(p.statistics().active, 2);
            p.release(a).unwrap();
            p.release(b).unwrap();
        }
    }

    #[test]
    fn min_size_is_prefilled_and_objects_are_reused() {
        let f = fixture();
        let p = pool(json!({"max_size": 3, "min_size": 2}), &f).build().unwrap();
        assert_eq!(f.created.load(Ordering::SeqCst), 2);
        let s = p.statistics();
        assert_eq!((s.idle, s.active, s.total_created), (2, 0, 2));
        let a = p.acquire().unwrap();
        let first = a.value;
        p.release(a).unwrap();
        let b = p.acquire().unwrap();
        assert_eq!(b.value, first, "the most recently released object comes back first");
        p.release(b).unwrap();
        let s = p.statistics();
        assert_eq!((s.total_acquired, s.hit_rate, s.total_created), (2, 100.0, 2));
    }

    #[test]
    fn never_more_than_max_size_and_waiters_time_out() {
        let f = fixture();
        let p = pool(json!({"max_size": 2, "min_size": 0, "acquire_timeout": 0.05}), &f).build().unwrap();
        let a = p.acquire().unwrap();
        let b = p.acquire().unwrap();
        let e = p.acquire().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.message().contains("acquire_timeout") && e.message().contains("2 of max_size 2"), "{e}");
        assert_eq!(p.try_acquire(None).unwrap().map(|l| l.id), None);
        assert_eq!(p.statistics().timeouts, 1);
        assert_eq!(f.created.load(Ordering::SeqCst), 2);
        p.release(a).unwrap();
        p.release(b).unwrap();
    }

    #[test]
    fn waiters_are_served_first_come_first_served() {
        let f = fixture();
        let p = pool(json!({"max_size": 1, "min_size": 0, "acquire_timeout": 5}), &f).build().unwrap();
        let held = p.acquire().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..3 {
            let (p2, order) = (p.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let l = p2.acquire().unwrap();
                order.lock().push(i);
                std::thread::sleep(Duration::from_millis(5));
                p2.release(l).unwrap();
            }));
            // Let each thread queue before the next one starts.
            while p.statistics().waiting < i + 1 {
                std::thread::yield_now();
            }
        }
        p.release(held).unwrap();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2]);
    }

    #[test]
    fn a_failing_factory_wakes_waiters_with_an_error() {
        let fail = Arc::new(AtomicBool::new(false));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (fl, gt) = (fail.clone(), gate.clone());
        let p: Pool<u64> = Pool::builder(
            PoolConfig::from_json(&json!({"max_size": 1, "min_size": 0, "acquire_timeout": 10, "auto_cleanup": false}))
                .unwrap(),
            move || {
                if fl.load(Ordering::SeqCst) {
                    // Hold the factory until the waiter is queued, then fail.
                    let (m, c) = &*gt;
                    let mut open = m.lock();
                    while !*open {
                        c.wait(&mut open);
                    }
                    Err(Error::callback("database is down"))
                } else {
                    Ok(1)
                }
            },
        )
        .build()
        .unwrap();
        fail.store(true, Ordering::SeqCst);
        let p2 = p.clone();
        let creator = std::thread::spawn(move || p2.acquire().unwrap_err());
        while p.shared.inner.lock().creating == 0 {
            std::thread::yield_now();
        }
        let p3 = p.clone();
        let waiter = std::thread::spawn(move || p3.acquire().unwrap_err());
        while p.statistics().waiting == 0 {
            std::thread::yield_now();
        }
        *gate.0.lock() = true;
        gate.1.notify_all();
        let started = Instant::now();
        assert_eq!(creator.join().unwrap().message(), "database is down");
        let e = waiter.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "the waiter hung");
        assert!(e.message().contains("factory failed"), "{e}");
        let s = p.statistics();
        assert_eq!((s.active, s.idle, s.waiting, s.size), (0, 0, 0, 0));
    }

    #[test]
    fn idle_and_lifetime_eviction_keep_min_size() {
        let f = fixture();
        let p =
            pool(json!({"max_size": 4, "min_size": 1, "max_idle_time": 10, "max_lifetime": 100}), &f).build().unwrap();
        let leases: Vec<_> = (0..4).map(|_| p.acquire().unwrap()).collect();
        for l in leases {
            p.release(l).unwrap();
        }
        assert_eq!(p.statistics().idle, 4);
        f.clock.advance(Duration::from_secs(5));
        p.maintain().unwrap();
        assert_eq!(p.statistics().idle, 4, "not idle long enough yet");
        f.clock.advance(Duration::from_secs(6));
        p.maintain().unwrap();
        let s = p.statistics();
        assert_eq!((s.idle, s.total_destroyed), (1, 3), "evicted down to min_size");
        // Past max_lifetime even the min_size object goes, and is replaced.
        f.clock.advance(Duration::from_secs(100));
        p.maintain().unwrap();
        let s = p.statistics();
        assert_eq!((s.idle, s.total_destroyed, s.total_created), (1, 4, 5));
        assert_eq!(s.total_created - s.total_destroyed, (s.active + s.idle) as u64);
    }

    #[test]
    fn validation_only_after_validation_interval_and_failures_try_the_next() {
        let f = fixture();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let p = pool(json!({"max_size": 3, "min_size": 2, "validation_interval": 30}), &f)
            .validate(move |v: &u64| {
                c.fetch_add(1, Ordering::SeqCst);
                Ok(*v != 1) // object 1 has gone bad
            })
            .build()
            .unwrap();
        for _ in 0..100 {
            let l = p.acquire().unwrap();
            p.release(l).unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "a hot pool does not validate");
        f.clock.advance(Duration::from_secs(31));
        let l = p.acquire().unwrap();
        assert_eq!(l.value, 0, "object 1 failed validation and was destroyed; 0 was tried next");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(*f.destroyed.lock(), vec![1]);
        assert_eq!(p.statistics().validation_failures, 1);
        p.release(l).unwrap();
    }

    #[test]
    fn a_validator_error_is_returned_and_the_object_destroyed() {
        let f = fixture();
        let p = pool(json!({"max_size": 2, "min_size": 1, "validation_interval": 0}), &f)
            .validate(|_| Err(Error::callback("validator exploded")))
            .build()
            .unwrap();
        f.clock.advance(Duration::from_millis(5));
        assert_eq!(p.acquire().unwrap_err().message(), "validator exploded");
        let s = p.statistics();
        assert_eq!((s.size, s.total_destroyed, s.active), (0, 1, 0));
    }

    #[test]
    fn double_and_foreign_release_are_errors_and_change_nothing() {
        let f = fixture();
        let p = pool(json!({"max_size": 2, "min_size": 0}), &f).build().unwrap();
        let l = p.acquire().unwrap();
        let id = l.id;
        p.release(l).unwrap();
        let before = p.statistics();
        let e = p.release_by_id(id, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("released twice"), "{e}");
        assert!(p.release_by_id(12345, 7).is_err());
        assert_eq!(p.statistics(), before);
        // A stale id of a slot that was reused does not match the new lease.
        let l2 = p.acquire().unwrap();
        assert_ne!(l2.id, 12345);
        p.release(l2).unwrap();
    }

    #[test]
    fn identity_release_and_foreign_objects() {
        let f = fixture();
        let p = pool(json!({"max_size": 2, "min_size": 0}), &f).identity(|v| *v + 1000).build().unwrap();
        let l = p.acquire().unwrap();
        let v = l.value;
        p.release_value(v).unwrap();
        assert!(p.release_value(v).unwrap_err().message().contains("not in use"));
        assert!(p.release_value(999).is_err());
        assert_eq!(p.statistics().idle, 1);
    }

    #[test]
    fn reset_runs_on_release_and_a_failing_reset_destroys() {
        let f = fixture();
        let resets = Arc::new(AtomicUsize::new(0));
        let r = resets.clone();
        let p = pool(json!({"max_size": 2, "min_size": 0}), &f)
            .reset(move |v: &mut u64| {
                r.fetch_add(1, Ordering::SeqCst);
                if *v == 1 { Err(Error::callback("rollback failed")) } else { Ok(()) }
            })
            .build()
            .unwrap();
        let a = p.acquire().unwrap();
        let b = p.acquire().unwrap();
        p.release(a).unwrap();
        assert_eq!(p.release(b).unwrap_err().message(), "rollback failed");
        assert_eq!(resets.load(Ordering::SeqCst), 2);
        assert_eq!(*f.destroyed.lock(), vec![1]);
        let s = p.statistics();
        assert_eq!((s.idle, s.active, s.size), (1, 0, 1));
    }

    #[test]
    fn leaks_are_reported_with_where_they_were_acquired() {
        let f = fixture();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let p = pool(json!({"max_size": 2, "min_size": 0, "leak_detection_threshold": 2}), &f)
            .on_leak(move |l| s2.lock().push(l.clone()))
            .build()
            .unwrap();
        let l = p.acquire_labeled(Some("worker.rs:42")).unwrap();
        f.clock.advance(Duration::from_secs(1));
        p.maintain().unwrap();
        assert!(seen.lock().is_empty());
        f.clock.advance(Duration::from_secs(2));
        p.maintain().unwrap();
        p.maintain().unwrap();
        let leaks = seen.lock().clone();
        assert_eq!(leaks.len(), 1, "reported once");
        assert_eq!(leaks[0].acquired_at.as_deref(), Some("worker.rs:42"));
        assert_eq!(leaks[0].held_ms, 3000);
        let s = p.statistics();
        assert_eq!(s.leaks, 1);
        assert_eq!(s.recent_leaks, leaks);
        p.release(l).unwrap();
    }

    #[test]
    fn close_drains_and_refuses() {
        let f = fixture();
        let p = pool(json!({"max_size": 2, "min_size": 2, "acquire_timeout": 5}), &f).build().unwrap();
        let held = p.acquire().unwrap();
        let held2 = p.acquire().unwrap();
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || p2.acquire().unwrap_err());
        while p.statistics().waiting == 0 {
            std::thread::yield_now();
        }
        let got_async = Arc::new(Mutex::new(None));
        let g2 = got_async.clone();
        assert!(p.acquire_async(None, move |r| *g2.lock() = Some(r.map(|l| l.value))).is_some());
        p.close();
        assert_eq!(waiter.join().unwrap().kind(), ErrorKind::Closed);
        assert_eq!(got_async.lock().take().unwrap().unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(p.acquire().unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(p.try_acquire(None).unwrap_err().kind(), ErrorKind::Closed);
        p.release(held).unwrap();
        p.release(held2).unwrap();
        assert_eq!(f.destroyed.lock().len(), 2, "in-use objects destroyed when returned");
        let s = p.statistics();
        assert!(s.closed);
        assert_eq!((s.size, s.idle, s.active), (0, 0, 0));
        p.close();
    }

    #[test]
    fn async_waiters_are_handed_objects_in_order_and_can_be_cancelled() {
        let f = fixture();
        let p = pool(json!({"max_size": 1, "min_size": 0}), &f).build().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        assert!(p.acquire_async(None, move |r| g.lock().push(("now", r.unwrap().value))).is_none());
        let first = p.try_acquire(None).unwrap();
        assert!(first.is_none(), "the one object is out");
        let mut tickets = Vec::new();
        for name in ["a", "b", "c"] {
            let g = got.clone();
            let p2 = p.clone();
            tickets.push(p.acquire_async(None, move |r| {
                let l = r.unwrap();
                g.lock().push((name, l.value));
                p2.release(l).unwrap();
            }));
        }
        assert!(p.cancel_waiter(tickets[1].unwrap()));
        assert!(!p.cancel_waiter(tickets[1].unwrap()));
        let lease = Lease { id: lease_id(0, 0), value: 0 };
        p.release(lease).unwrap();
        assert_eq!(*got.lock(), vec![("now", 0), ("a", 0), ("c", 0)]);
        assert_eq!(p.statistics().waiting, 0);
    }

    #[test]
    fn statistics_off_keeps_sizes_only() {
        let f = fixture();
        let p = pool(json!({"max_size": 2, "min_size": 1, "statistics": false}), &f).build().unwrap();
        let l = p.acquire().unwrap();
        let s = p.statistics();
        assert_eq!((s.active, s.idle, s.size), (1, 0, 1));
        assert_eq!((s.total_created, s.total_acquired, s.hit_rate), (0, 0, 0.0));
        assert!(!s.statistics);
        p.release(l).unwrap();
    }

    #[test]
    fn cleanup_trims_to_min_size_and_emergency_to_zero() {
        let f = fixture();
        let p = pool(json!({"max_size": 5, "min_size": 2}), &f).build().unwrap();
        let ls: Vec<_> = (0..5).map(|_| p.acquire().unwrap()).collect();
        for l in ls {
            p.release(l).unwrap();
        }
        p.cleanup(CleanupLevel::Normal).unwrap();
        assert_eq!(p.statistics().idle, 2);
        p.cleanup(CleanupLevel::Emergency).unwrap();
        assert_eq!(p.statistics().idle, 0);
        // Registered with a manager, a forced collection trims the pool.
        let p2 = pool(json!({"max_size": 5, "min_size": 1}), &f).build().unwrap();
        let ls: Vec<_> = (0..3).map(|_| p2.acquire().unwrap()).collect();
        for l in ls {
            p2.release(l).unwrap();
        }
        let m = crate::MemoryManager::from_json(&Value::Null).unwrap();
        m.register_cleanup("pool", 0, Arc::new(p2.clone())).unwrap();
        m.force_garbage_collection().unwrap();
        assert_eq!(p2.statistics().idle, 1);
    }

    #[test]
    fn pooled_guard_returns_on_drop() {
        let f = fixture();
        let p = pool(json!({"max_size": 1, "min_size": 0}), &f).build().unwrap();
        {
            let mut g = p.get().unwrap();
            *g += 100;
            assert_eq!(p.statistics().active, 1);
        }
        assert_eq!(p.statistics().idle, 1);
        assert_eq!(*p.get().unwrap(), 100);
    }

    #[test]
    fn two_threads_keep_the_invariant() {
        let f = fixture();
        let p = pool(json!({"max_size": 4, "min_size": 1, "acquire_timeout": 10, "validation_interval": 0}), &f)
            .validate(|v: &u64| Ok(v % 7 != 3))
            .reset(|v: &mut u64| if *v % 11 == 5 { Err(Error::callback("reset failed")) } else { Ok(()) })
            .build()
            .unwrap();
        for round in 0..20 {
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let p = &p;
                    let clock = &f.clock;
                    s.spawn(move || {
                        for i in 0..500 {
                            if i % 50 == 0 {
                                clock.advance(Duration::from_millis(1));
                            }
                            if let Ok(l) = p.acquire() {
                                let _ = p.release(l);
                            }
                        }
                    });
                }
            });
            let st = p.statistics();
            assert_eq!(st.total_created - st.total_destroyed, (st.active + st.idle) as u64, "round {round}: {st:?}");
            assert!(st.size <= 4 && st.active == 0 && st.waiting == 0);
        }
    }
}
