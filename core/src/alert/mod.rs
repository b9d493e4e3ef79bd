//! MemoryAlertingService (DESIGN §4 "Alerting"): judges a manager's readings against the
//! alerting thresholds and delivers alerts by e-mail, Slack, a generic webhook and
//! Prometheus Alertmanager from ONE background delivery thread with a bounded queue, so
//! `check_and_alert()` never waits on the network.
//!
//! Policies, in the words of DESIGN §4:
//! - a level (warning / critical / emergency) is entered when usage reaches its threshold and
//!   left downward only when usage falls `hysteresis` percentage points below it;
//! - a channel hears about levels at or above its own `threshold`;
//! - `throttle_minutes`: at most one message per channel per alert level in that window
//!   (escalation notices are throttled per escalation level, user messages per text and level);
//! - `alert_cooldown_minutes`: after a resolve, the same condition (a level at or below the one
//!   that resolved) does not alert again within it; it is recorded as `suppressed`;
//! - escalation: level 1 at once (merged into the first alert); level n+1 when the condition has
//!   lasted `escalation_intervals[n-1]` minutes; past the last level, the top level repeats every
//!   last interval until resolved;
//! - a resolve notice (Alertmanager: `endsAt`) goes to every channel that heard of the condition;
//! - `batch_alerts`: what is queued within `batch_window_seconds` of the first goes out as one
//!   message per channel.
//!
//! History: each alert is written before it is queued; each delivery attempt is appended
//! (`ok`, `failed`, `throttled`, `dropped`); secrets never reach it (see [`redact_url`]).

mod clock;
mod config;
mod deliver;
#[cfg(test)]
mod fault_tests;
mod history;
mod render;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex as StdMutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::Value;

pub use clock::{Clock, ManualClock, SystemClock, rfc3339};
pub use config::{
    AlertConfig, ChannelKind, CustomMetrics, EmailChannel, Escalation, EscalationLevel, HttpChannel, Secret,
    SmtpConfig, Template, TlsMode, redact_url,
};

use clock::minutes_ms;
use history::{AlertRow, History};
use render::{AlertInfo, SystemProbe, Templates};

use crate::error::{Error, Result};
use crate::manager::{ManagerConfig, MemoryManager, State};

/// Where the service reads usage (percent of the limit) from.
pub trait UsageSource: Send + Sync {
    fn usage_percent(&self) -> Result<f64>;
}

impl UsageSource for MemoryManager {
    fn usage_percent(&self) -> Result<f64> {
        Ok(self.get_memory_usage()?.usage_percent)
    }
}

impl<T: UsageSource + ?Sized> UsageSource for Arc<T> {
    fn usage_percent(&self) -> Result<f64> {
        (**self).usage_percent()
    }
}

/// Something that happened to an alert: `alert_raised`, `alert_resolved`, `alert_suppressed`,
/// `alert_dropped`, `delivery_ok`, `delivery_failed`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertEvent {
    pub kind: &'static str,
    pub alert_id: i64,
    pub level: &'static str,
    pub channel: Option<&'static str>,
    pub message: String,
    pub error: Option<String>,
    pub time: String,
    pub timestamp: f64,
}

/// Called on the delivery thread for every event.
pub type EventCallback = Box<dyn Fn(&AlertEvent) + Send + Sync>;

const EVENT_CAPACITY: usize = 1024;
/// How long `Drop` lets queued deliveries finish before abandoning them.
const DROP_GRACE: Duration = Duration::from_secs(2);

struct Job {
    channel: ChannelKind,
    alerts: Vec<AlertInfo>,
    /// E-mail: these recipients instead of the channel's.
    recipients: Option<Vec<String>>,
    /// Webhook: this URL instead of the channel's.
    url: Option<Secret>,
}

enum Msg {
    Job(Job),
    Event(Box<AlertEvent>),
}

struct Shared {
    cfg: AlertConfig,
    secrets: Vec<(String, String)>,
    history: History,
    clock: Arc<dyn Clock>,
    templates: Templates,
    smtp: Option<lettre::SmtpTransport>,
    host: String,
    events: Mutex<VecDeque<AlertEvent>>,
    events_dropped: AtomicU64,
    callback: RwLock<Option<Arc<EventCallback>>>,
    pending: StdMutex<usize>,
    drained: Condvar,
    stop: AtomicBool,
    system: Mutex<SystemProbe>,
}

impl Shared {
    fn redact(&self, s: &str) -> String {
        config::redact(&self.secrets, s)
    }

    fn event(
        &self,
        kind: &'static str,
        a: &AlertInfo,
        channel: Option<ChannelKind>,
        error: Option<String>,
    ) -> AlertEvent {
        let now = self.clock.now_ms();
        AlertEvent {
            kind,
            alert_id: a.id,
            level: a.level.as_str(),
            channel: channel.map(ChannelKind::as_str),
            message: a.message.clone(),
            error,
            time: rfc3339(now),
            timestamp: now as f64 / 1000.0,
        }
    }

    fn push_event(&self, e: AlertEvent) {
        let mut q = self.events.lock();
        if q.len() >= EVENT_CAPACITY {
            q.pop_front();
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(e);
    }

    /// On the delivery thread: to the poll queue and the callback.
    fn emit(&self, e: AlertEvent) {
        self.call_back(&e);
        self.push_event(e);
    }

    fn call_back(&self, e: &AlertEvent) {
        let cb = self.callback.read().clone();
        if let Some(cb) = cb {
            // A panicking callback must not take the delivery thread down.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(e)));
        }
    }

    fn done(&self, n: usize) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *p = p.saturating_sub(n);
        if *p == 0 {
            self.drained.notify_all();
        }
    }
}

struct Condition {
    started_ms: i64,
    peak: State,
    silent: bool,
    /// Escalation steps sent so far (1 after the first alert).
    steps: usize,
    next_step_ms: Option<i64>,
    notified: BTreeSet<ChannelKind>,
    fired_levels: Vec<State>,
}

struct Policy {
    level: State,
    condition: Option<Condition>,
    last_sent: HashMap<(ChannelKind, String), i64>,
    last_resolve: Option<(i64, State)>,
    last_prune_ms: i64,
}

/// The alerting service. Thread-safe; see the module docs for its policies.
pub struct MemoryAlertingService {
    shared: Arc<Shared>,
    source: Arc<dyn UsageSource>,
    policy: Mutex<Policy>,
    tx: Mutex<Option<SyncSender<Msg>>>,
    worker: Mutex<Option<(JoinHandle<()>, Receiver<()>)>>,
}

impl MemoryAlertingService {
    /// A service judging `manager`'s readings (a default process manager when `None`).
    pub fn new(config: AlertConfig, manager: Option<Arc<MemoryManager>>) -> Result<Self> {
        let source: Arc<dyn UsageSource> = match manager {
            Some(m) => m,
            None => Arc::new(MemoryManager::new(ManagerConfig::default())?),
        };
        Self::with_source(config, source, Arc::new(SystemClock))
    }

    /// From JSON config text.
    pub fn from_json(config: &str, manager: Option<Arc<MemoryManager>>) -> Result<Self> {
        Self::new(AlertConfig::from_json_str(config)?, manager)
    }

    /// Any usage source and clock (tests use a [`ManualClock`]).
    pub fn with_source(config: AlertConfig, source: Arc<dyn UsageSource>, clock: Arc<dyn Clock>) -> Result<Self> {
        let templates = Templates::new(&config)?;
        let smtp = match &config.email {
            Some(e) if e.enabled => Some(deliver::smtp_transport(e)?),
            _ => None,
        };
        let history = History::open(config.history_path.as_deref())?;
        let now = clock.now_ms();
        history.prune(now - (config.history_retention_days * 86_400_000.0) as i64)?;
        let cpu = config.custom_metrics.cpu_usage;
        let (tx, rx) = sync_channel(config.queue_capacity);
        let shared = Arc::new(Shared {
            secrets: config.secrets(),
            cfg: config,
            history,
            clock,
            templates,
            smtp,
            host: render::hostname(),
            events: Mutex::new(VecDeque::new()),
            events_dropped: AtomicU64::new(0),
            callback: RwLock::new(None),
            pending: StdMutex::new(0),
            drained: Condvar::new(),
            stop: AtomicBool::new(false),
            system: Mutex::new(SystemProbe::new(cpu)),
        });
        let (done_tx, done_rx) = sync_channel(1);
        let s2 = shared.clone();
        let handle = std::thread::Builder::new()
            .name("memwarden-alert".into())
            .spawn(move || {
                worker(&s2, rx);
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::io("cannot start the alert delivery thread", &e))?;
        Ok(MemoryAlertingService {
            shared,
            source,
            policy: Mutex::new(Policy {
                level: State::Normal,
                condition: None,
                last_sent: HashMap::new(),
                last_resolve: None,
                last_prune_ms: now,
            }),
            tx: Mutex::new(Some(tx)),
            worker: Mutex::new(Some((handle, done_rx))),
        })
    }

    pub fn config(&self) -> &AlertConfig {
        &self.shared.cfg
    }

    /// The level the last check arrived at.
    pub fn level(&self) -> State {
        self.policy.lock().level
    }

    /// Sets (or with `None` clears) the callback that gets every event on the delivery thread.
    pub fn set_event_callback(&self, cb: Option<EventCallback>) {
        *self.shared.callback.write() = cb.map(Arc::new);
    }

    /// Every event since the last call, oldest first (at most 1024 are kept).
    pub fn poll_events(&self) -> Vec<AlertEvent> {
        self.shared.events.lock().drain(..).collect()
    }

    /// Events lost because nobody polled (oldest discarded first).
    pub fn events_dropped(&self) -> u64 {
        self.shared.events_dropped.load(Ordering::Relaxed)
    }

    /// Reads usage, decides, queues deliveries and returns the current level at once.
    pub fn check_and_alert(&self) -> Result<State> {
        let pct = self.source.usage_percent()?;
        self.judge(pct)
    }

    /// The policy step for a reading of `pct` percent (what `check_and_alert` does after reading).
    pub fn judge(&self, pct: f64) -> Result<State> {
        let s = &self.shared;
        let cfg = &s.cfg;
        let now = s.clock.now_ms();
        let mut p = self.policy.lock();
        if now - p.last_prune_ms >= 3_600_000 {
            p.last_prune_ms = now;
            s.history.prune(now - (cfg.history_retention_days * 86_400_000.0) as i64)?;
        }
        let new = self.next_level(p.level, pct);
        p.level = new;
        if new == State::Normal {
            if let Some(c) = p.condition.take() {
                if !c.silent {
                    p.last_resolve = Some((now, c.peak));
                }
                if !c.silent && !c.notified.is_empty() {
                    let mut info =
                        self.info("resolved", c.peak, format!("memory back to normal ({pct:.1}%)"), Some(pct));
                    info.started_ms = c.started_ms;
                    info.fired_levels = c.fired_levels.clone();
                    info.id = self.record(&info, "raised", None)?;
                    self.raised_event("alert_resolved", &info);
                    for ch in &c.notified {
                        self.enqueue(Job { channel: *ch, alerts: vec![info.clone()], recipients: None, url: None });
                    }
                }
            }
            return Ok(new);
        }
        let last_resolve = p.last_resolve;
        let Policy { condition, last_sent, .. } = &mut *p;
        match condition {
            None => {
                let silent = last_resolve
                    .is_some_and(|(t, peak)| now - t < minutes_ms(cfg.alert_cooldown_minutes) && new <= peak);
                let mut c = Condition {
                    started_ms: now,
                    peak: new,
                    silent,
                    steps: 0,
                    next_step_ms: None,
                    notified: BTreeSet::new(),
                    fired_levels: Vec::new(),
                };
                if silent {
                    let info = self.info("alert", new, self.level_message(new, pct), Some(pct));
                    let id = self.record(&info, "suppressed", None)?;
                    s.push_event(s.event("alert_suppressed", &AlertInfo { id, ..info }, None, None));
                } else {
                    let esc = self.escalation_step(&mut c);
                    self.raise(last_sent, &mut c, new, pct, now, esc.as_ref())?;
                }
                *condition = Some(c);
            }
            Some(c) => {
                if new > c.peak {
                    c.peak = new;
                    if c.silent && last_resolve.is_none_or(|(_, peak)| new > peak) {
                        c.silent = false;
                    }
                    if !c.silent {
                        let esc = if c.steps == 0 { self.escalation_step(c) } else { None };
                        self.raise(last_sent, c, new, pct, now, esc.as_ref())?;
                    }
                } else if !c.silent && c.next_step_ms.is_some_and(|t| now >= t) {
                    let level = c.peak;
                    if let Some((n, lvl)) = self.escalation_step(c) {
                        self.escalate(last_sent, c, level, pct, now, n, &lvl)?;
                    }
                }
            }
        }
        Ok(new)
    }

    /// Sends the user's own message at `level` (warning, critical or emergency) to every
    /// channel whose threshold it meets. The same text at the same level is throttled per channel.
    pub fn send_alert(&self, message: &str, level: State) -> Result<i64> {
        if level == State::Normal {
            return Err(Error::invalid_argument(
                "send_alert: level must be 'warning', 'critical' or 'emergency', got 'normal'",
            ));
        }
        let s = &self.shared;
        let now = s.clock.now_ms();
        let mut info = self.info("custom", level, message.to_owned(), None);
        info.id = self.record(&info, "raised", None)?;
        self.raised_event("alert_raised", &info);
        let mut p = self.policy.lock();
        for ch in ChannelKind::ALL {
            let Some((threshold, throttle)) = s.cfg.policy(ch).filter(|_| s.cfg.enabled(ch)) else { continue };
            if level < threshold {
                continue;
            }
            let key = (ch, format!("custom:{}:{message}", level.as_str()));
            if self.throttled(&mut p.last_sent, key, throttle, now) {
                s.history.insert_delivery(info.id, ch.as_str(), now, 0, "throttled", None)?;
                continue;
            }
            self.enqueue(Job { channel: ch, alerts: vec![info.clone()], recipients: None, url: None });
        }
        Ok(info.id)
    }

    /// `send_alert` with the level as text.
    pub fn send_alert_str(&self, message: &str, level: &str) -> Result<i64> {
        let l = match level {
            "warning" => State::Warning,
            "critical" => State::Critical,
            "emergency" => State::Emergency,
            other => {
                return Err(Error::invalid_argument(format!(
                    "send_alert: unknown level '{other}'; expected 'warning', 'critical' or 'emergency'"
                )));
            }
        };
        self.send_alert(message, l)
    }

    /// Waits until every queued delivery has been attempted (`None`: no limit). True when drained.
    pub fn flush(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut p = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        while *p > 0 {
            match deadline {
                None => p = self.shared.drained.wait(p).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    p = self.shared.drained.wait_timeout(p, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
        true
    }

    /// The history as a JSON array, newest first. Filter keys: `level`, `channel`, `kind`
    /// (`alert`, `resolved`, `escalation`, `custom`), `since` (epoch seconds), `limit`.
    pub fn get_alert_history(&self, filter: &Value) -> Result<Value> {
        self.shared.history.query(filter)
    }

    /// Deletes history older than `history_retention_days` now; returns how many alerts went.
    pub fn prune_history(&self) -> Result<usize> {
        let now = self.shared.clock.now_ms();
        self.shared.history.prune(now - (self.shared.cfg.history_retention_days * 86_400_000.0) as i64)
    }

    // ---- internals -------------------------------------------------------

    fn next_level(&self, current: State, pct: f64) -> State {
        let cfg = &self.shared.cfg;
        let raw = |x: f64| {
            if x >= cfg.thresholds[2] {
                State::Emergency
            } else if x >= cfg.thresholds[1] {
                State::Critical
            } else if x >= cfg.thresholds[0] {
                State::Warning
            } else {
                State::Normal
            }
        };
        let r = raw(pct);
        if r >= current { r } else { r.max(current.min(raw(pct + cfg.hysteresis))) }
    }

    fn level_message(&self, level: State, pct: f64) -> String {
        format!(
            "memory usage {pct:.1}% reached the {} threshold ({}%)",
            level.as_str(),
            self.shared.cfg.threshold_of(level)
        )
    }

    fn info(&self, kind: &'static str, level: State, message: String, pct: Option<f64>) -> AlertInfo {
        let now = self.shared.clock.now_ms();
        AlertInfo {
            id: 0,
            kind,
            level,
            message,
            usage_percent: pct,
            threshold: (kind != "custom").then(|| self.shared.cfg.threshold_of(level)),
            escalation_level: None,
            started_ms: now,
            raised_ms: now,
            fired_levels: Vec::new(),
        }
    }

    fn record(&self, a: &AlertInfo, status: &str, esc: Option<u32>) -> Result<i64> {
        let msg = self.shared.redact(&a.message);
        self.shared.history.insert_alert(&AlertRow {
            raised_ms: a.raised_ms,
            kind: a.kind,
            level: a.level.as_str(),
            message: &msg,
            usage_percent: a.usage_percent,
            status,
            escalation_level: esc,
        })
    }

    /// Born on the caller's thread: into the poll queue now, to the callback via the queue.
    fn raised_event(&self, kind: &'static str, a: &AlertInfo) {
        let s = &self.shared;
        let e = s.event(kind, a, None, None);
        if s.callback.read().is_some() {
            let _ = self.send_msg(Msg::Event(Box::new(e.clone())));
        }
        s.push_event(e);
    }

    fn throttled(
        &self,
        last: &mut HashMap<(ChannelKind, String), i64>,
        key: (ChannelKind, String),
        minutes: f64,
        now: i64,
    ) -> bool {
        if let Some(t) = last.get(&key)
            && now - *t < minutes_ms(minutes)
        {
            return true;
        }
        last.insert(key, now);
        false
    }

    /// The next escalation step if escalation is on: its number and level; schedules the one after.
    fn escalation_step(&self, c: &mut Condition) -> Option<(usize, EscalationLevel)> {
        let esc = &self.shared.cfg.escalation;
        if !esc.enabled || esc.levels.is_empty() {
            return None;
        }
        c.steps += 1;
        let k = c.steps; // the step being sent now
        let iv = &esc.intervals_minutes;
        // Step k+1 starts at intervals[k-1] minutes into the condition; past the list, the
        // last interval repeats from the previous step.
        c.next_step_ms = if k <= iv.len() {
            Some(c.started_ms + minutes_ms(iv[k - 1]))
        } else {
            match (iv.last(), c.next_step_ms) {
                (Some(last), Some(prev)) if *last > 0.0 => Some(prev + minutes_ms(*last)),
                _ => None,
            }
        };
        let n = k.min(esc.levels.len());
        Some((n, esc.levels[n - 1].clone()))
    }

    fn raise(
        &self,
        last: &mut HashMap<(ChannelKind, String), i64>,
        c: &mut Condition,
        level: State,
        pct: f64,
        now: i64,
        esc: Option<&(usize, EscalationLevel)>,
    ) -> Result<()> {
        let s = &self.shared;
        let mut info = self.info("alert", level, self.level_message(level, pct), Some(pct));
        info.started_ms = c.started_ms;
        info.escalation_level = esc.map(|(n, _)| *n as u32);
        info.id = self.record(&info, "raised", info.escalation_level)?;
        self.raised_event("alert_raised", &info);
        c.fired_levels.push(level);
        for ch in ChannelKind::ALL {
            if !s.cfg.enabled(ch) {
                continue;
            }
            let by_threshold = s.cfg.policy(ch).is_some_and(|(t, _)| level >= t);
            let (by_esc, recipients, url) = match esc {
                Some((_, l)) => targets(&s.cfg, l, ch),
                None => (false, None, None),
            };
            if !by_threshold && !by_esc {
                continue;
            }
            // Merge the channel's own recipients with escalation level 1's.
            let recipients = match (ch, by_threshold, recipients) {
                (ChannelKind::Email, true, Some(extra)) => {
                    let mut all = s.cfg.email.as_ref().map(|e| e.recipients.clone()).unwrap_or_default();
                    for r in extra {
                        if !all.contains(&r) {
                            all.push(r);
                        }
                    }
                    Some(all)
                }
                (_, _, r) => r,
            };
            let throttle = s.cfg.policy(ch).map_or(0.0, |p| p.1);
            if self.throttled(last, (ch, level.as_str().to_owned()), throttle, now) {
                s.history.insert_delivery(info.id, ch.as_str(), now, 0, "throttled", None)?;
                continue;
            }
            let url = if by_threshold { None } else { url };
            if self.enqueue(Job { channel: ch, alerts: vec![info.clone()], recipients, url }) {
                c.notified.insert(ch);
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn escalate(
        &self,
        last: &mut HashMap<(ChannelKind, String), i64>,
        c: &mut Condition,
        level: State,
        pct: f64,
        now: i64,
        n: usize,
        lvl: &EscalationLevel,
    ) -> Result<()> {
        let s = &self.shared;
        let started = c.started_ms;
        let minutes = (now - started) as f64 / 60_000.0;
        let mut info = self.info(
            "escalation",
            level,
            format!("escalation level {n}: memory at {pct:.1}% ({}) for {minutes:.0} minutes", level.as_str()),
            Some(pct),
        );
        info.started_ms = started;
        info.escalation_level = Some(n as u32);
        info.id = self.record(&info, "raised", Some(n as u32))?;
        self.raised_event("alert_raised", &info);
        for ch in ChannelKind::ALL {
            let (yes, recipients, url) = targets(&s.cfg, lvl, ch);
            if !yes {
                continue;
            }
            let throttle = s.cfg.policy(ch).map_or(0.0, |p| p.1);
            let key = (ch, format!("{}/escalation-{n}", level.as_str()));
            if self.throttled(last, key, throttle, now) {
                s.history.insert_delivery(info.id, ch.as_str(), now, 0, "throttled", None)?;
                continue;
            }
            if self.enqueue(Job { channel: ch, alerts: vec![info.clone()], recipients, url }) {
                c.notified.insert(ch);
            }
        }
        Ok(())
    }

    fn send_msg(&self, m: Msg) -> std::result::Result<(), Msg> {
        let tx = self.tx.lock();
        let Some(tx) = tx.as_ref() else { return Err(m) };
        *self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        match tx.try_send(m) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                self.shared.done(1);
                Err(m)
            }
        }
    }

    /// Queues a delivery; a full queue records it as dropped. True when queued.
    fn enqueue(&self, job: Job) -> bool {
        match self.send_msg(Msg::Job(job)) {
            Ok(()) => true,
            Err(Msg::Job(job)) => {
                let s = &self.shared;
                let now = s.clock.now_ms();
                for a in &job.alerts {
                    let _ = s.history.insert_delivery(
                        a.id,
                        job.channel.as_str(),
                        now,
                        0,
                        "dropped",
                        Some("delivery queue full"),
                    );
                    let _ = s.history.set_status(a.id, "dropped");
                    s.push_event(s.event("alert_dropped", a, Some(job.channel), Some("delivery queue full".into())));
                }
                false
            }
            Err(Msg::Event(_)) => false,
        }
    }
}

/// The e-mail (subject, body) that template `name` (`memory_alert` or one of the config's
/// `templates`) renders for one alert with the seed's variables (`level`, `kind`, `message`,
/// `usage_percent`, `threshold`, `time`, `hostname`, `count`, `alerts`, `system`), without
/// sending anything: for previewing templates, and what the fuzzer drives. A template that
/// does not compile is `InvalidConfig`; one that fails while rendering is `InvalidArgument`.
pub fn preview_email(
    config: &AlertConfig,
    name: &str,
    level: State,
    message: &str,
    usage_percent: f64,
    system: Option<Value>,
) -> Result<(String, String)> {
    let templates = Templates::new(config)?;
    let info = AlertInfo {
        id: 1,
        kind: "alert",
        level,
        message: message.to_string(),
        usage_percent: Some(usage_percent),
        threshold: Some(config.threshold_of(level)),
        escalation_level: None,
        started_ms: 0,
        raised_ms: 0,
        fired_levels: Vec::new(),
    };
    templates.email(name, &[info], &system, &render::hostname())
}

/// Does escalation level `l` name channel `ch`, and with which recipients / URL?
fn targets(cfg: &AlertConfig, l: &EscalationLevel, ch: ChannelKind) -> (bool, Option<Vec<String>>, Option<Secret>) {
    match ch {
        ChannelKind::Email => match &l.email {
            Some(list) if list.is_empty() => (true, None, None),
            Some(list) => (true, Some(list.clone()), None),
            None => (false, None, None),
        },
        ChannelKind::Slack => (l.slack && cfg.enabled(ch), None, None),
        ChannelKind::Alertmanager => (l.alertmanager && cfg.enabled(ch), None, None),
        ChannelKind::Webhook => match &l.webhook {
            Some(u) => (true, None, u.clone()),
            None => (false, None, None),
        },
    }
}

impl Drop for MemoryAlertingService {
    /// Closes the queue, gives queued deliveries [`DROP_GRACE`] to finish, then abandons the
    /// rest (recorded as failed) and joins the thread with a bound; a thread stuck in a
    /// network call past that is left to finish on its own.
    fn drop(&mut self) {
        drop(self.tx.lock().take());
        if let Some((handle, done)) = self.worker.lock().take() {
            let finished = match done.recv_timeout(DROP_GRACE) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                Err(RecvTimeoutError::Timeout) => {
                    self.shared.stop.store(true, Ordering::SeqCst);
                    matches!(done.recv_timeout(Duration::from_secs(1)), Ok(()) | Err(RecvTimeoutError::Disconnected))
                }
            };
            if finished {
                let _ = handle.join();
            }
        }
    }
}

// ---- the delivery thread ----------------------------------------------------

fn worker(s: &Shared, rx: Receiver<Msg>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        if s.cfg.batch_alerts && !s.stop.load(Ordering::Relaxed) {
            let until = Instant::now() + clock::secs(s.cfg.batch_window_seconds);
            loop {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                match rx.recv_timeout(until - now) {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
        }
        let n = batch.len();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process(s, batch)));
        s.done(n);
    }
}

fn process(s: &Shared, batch: Vec<Msg>) {
    let mut groups: Vec<Job> = Vec::new();
    for m in batch {
        match m {
            Msg::Event(e) => s.call_back(&e),
            Msg::Job(j) => {
                let same = groups.iter_mut().find(|g| {
                    g.channel == j.channel
                        && g.recipients == j.recipients
                        && g.url.as_ref().map(Secret::expose) == j.url.as_ref().map(Secret::expose)
                });
                match same {
                    Some(g) => g.alerts.extend(j.alerts),
                    None => groups.push(j),
                }
            }
        }
    }
    for g in groups {
        deliver_group(s, g);
    }
}

fn deliver_group(s: &Shared, g: Job) {
    let cfg = &s.cfg;
    let system = s.system.lock().collect(cfg.include_system_info, cfg.custom_metrics);
    let retries = match g.channel {
        ChannelKind::Email => 1,
        k => cfg.http(k).map_or(0, |h| h.retry_attempts),
    };
    let mut attempt = 0u32;
    let last = loop {
        attempt += 1;
        let a = if s.stop.load(Ordering::Relaxed) {
            deliver::Attempt {
                ok: false,
                error: Some("service closed before delivery".into()),
                retry: false,
                retry_after: None,
            }
        } else {
            send_once(s, &g, &system)
        };
        let now = s.clock.now_ms();
        let err = a.error.as_deref().map(|e| s.redact(e));
        for al in &g.alerts {
            let _ = s.history.insert_delivery(
                al.id,
                g.channel.as_str(),
                now,
                attempt,
                if a.ok { "ok" } else { "failed" },
                err.as_deref(),
            );
        }
        if a.ok || !a.retry || attempt > retries {
            break (a.ok, err);
        }
        if !deliver::pause(deliver::backoff(attempt, a.retry_after), &s.stop) {
            break (false, err);
        }
    };
    for al in &g.alerts {
        let kind = if last.0 { "delivery_ok" } else { "delivery_failed" };
        s.emit(s.event(kind, al, Some(g.channel), last.1.clone()));
    }
}

fn send_once(s: &Shared, g: &Job, system: &Option<Value>) -> deliver::Attempt {
    let cfg = &s.cfg;
    let fail = |e: String| deliver::Attempt { ok: false, error: Some(e), retry: false, retry_after: None };
    match g.channel {
        ChannelKind::Email => {
            let (Some(e), Some(t)) = (cfg.email.as_ref(), s.smtp.as_ref()) else {
                return fail("e-mail channel is not configured".into());
            };
            let (subject, body) = match s.templates.email(&e.template, &g.alerts, system, &s.host) {
                Ok(x) => x,
                Err(err) => return fail(err.to_string()),
            };
            let to = g.recipients.as_deref().unwrap_or(&e.recipients);
            deliver::send_email(t, e, to, &subject, body)
        }
        k => {
            let Some(h) = cfg.http(k) else { return fail(format!("{} channel is not configured", k.as_str())) };
            let url = g.url.as_ref().unwrap_or(&h.url);
            let (body, suffix) = match k {
                ChannelKind::Slack => {
                    (render::slack_payload(&g.alerts, &h.slack_channel, &h.slack_username, &s.host), "")
                }
                ChannelKind::Alertmanager => {
                    (render::alertmanager_payload(&g.alerts, &h.labels, &s.host, s.clock.now_ms()), "/api/v2/alerts")
                }
                _ => (render::webhook_payload(&g.alerts, system, &s.host), ""),
            };
            deliver::post_json(h, url, suffix, &body)
        }
    }
}

impl std::fmt::Debug for MemoryAlertingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryAlertingService").field("level", &self.level()).finish_non_exhaustive()
    }
}
