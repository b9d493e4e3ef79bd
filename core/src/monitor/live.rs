//! [`Monitor`]: a sampler on a background thread that keeps the series, appends it to an export
//! file as it goes, and analyzes it on demand. What every binding calls `Monitor`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use super::{Analysis, Exporter, Meta, Sample, Sampler, Target, Ticker, analyze, read_export, write_export};
use crate::config::ConfigReader;
use crate::error::{Error, ErrorKind, Result};

const KEYS: &[&str] = &["pid", "children", "system", "interval", "threshold", "export", "export_sync_every"];

/// What a [`Monitor`] watches and how.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    pub target: Target,
    /// Seconds between samples (> 0).
    pub interval: f64,
    /// Alert threshold, percent of the limit (recorded in the export; plots draw it).
    pub threshold: f64,
    /// Append every sample to this file while sampling.
    pub export: Option<PathBuf>,
    /// fsync the export every N samples (default: about once a second).
    pub export_sync_every: Option<usize>,
}

impl MonitorConfig {
    /// Keys: `pid` (default: the whole system), `children` (false), `system` (true means no pid),
    /// `interval` (seconds, 1), `threshold` (percent, 80), `export` (a path), `export_sync_every`.
    pub fn from_json(v: &Value) -> Result<Self> {
        let r = ConfigReader::new("Monitor", v, KEYS)?;
        let pid = match r.u64("pid")? {
            None => None,
            Some(p) if p > 0 && p <= u32::MAX as u64 => Some(p as u32),
            Some(_) => return Err(r.bad("pid", "a process id (a whole number > 0)")),
        };
        let children = r.bool("children", false)?;
        let system = r.bool("system", pid.is_none())?;
        let target = match (pid, system) {
            (Some(_), true) => {
                return Err(Error::invalid_config("Monitor config: give either 'pid' or 'system': true, not both"));
            }
            (Some(pid), false) => Target::Pid { pid, children },
            (None, true) => Target::System,
            (None, false) => {
                return Err(Error::invalid_config("Monitor config: 'system' is false but no 'pid' is given"));
            }
        };
        if children && target == Target::System {
            return Err(Error::invalid_config("Monitor config: 'children' needs a 'pid'"));
        }
        let interval = r.f64("interval", 1.0, "a number of seconds > 0", |x| x > 0.0)?;
        let threshold = r.f64("threshold", 80.0, "a percentage in (0, 100)", |x| x > 0.0 && x < 100.0)?;
        let export = r.str("export")?.map(PathBuf::from);
        let export_sync_every = match r.u64("export_sync_every")? {
            Some(0) => return Err(r.bad("export_sync_every", "a whole number >= 1")),
            n => n.map(|n| n as usize),
        };
        Ok(MonitorConfig { target, interval, threshold, export, export_sync_every })
    }
}

struct State {
    samples: Vec<Sample>,
    exporter: Option<Exporter>,
    /// Why the background sampler stopped on its own (the process exited, the export failed).
    ended: Option<String>,
    skipped: u64,
}

struct Shared {
    sampler: Mutex<Sampler>,
    state: Mutex<State>,
    stop: Mutex<bool>,
    wake: Condvar,
    meta: Meta,
}

impl Shared {
    fn take(&self) -> Result<Sample> {
        // The sampler stays locked until the sample is recorded, so the series is in time order.
        let mut sampler = self.sampler.lock();
        let s = sampler.sample()?;
        let mut st = self.state.lock();
        st.samples.push(s);
        if let Some(x) = st.exporter.as_mut() {
            x.push(s)?;
        }
        Ok(s)
    }
}

/// Samples a [`Target`] every `interval` on a background thread (between [`Monitor::start`] and
/// [`Monitor::stop`]) or when asked ([`Monitor::sample_now`]). Thread-safe.
pub struct Monitor {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    config: MonitorConfig,
}

impl Monitor {
    pub fn from_json(v: &Value) -> Result<Self> {
        Self::new(MonitorConfig::from_json(v)?)
    }

    /// Checks the target (a pid must exist and be ours) and creates the export file, so both
    /// fail here rather than on the background thread.
    pub fn new(config: MonitorConfig) -> Result<Self> {
        let sampler = Sampler::new(config.target)?;
        let (limit, origin) = sampler.limit();
        let meta = Meta {
            target: config.target.describe(),
            interval: config.interval,
            limit_bytes: limit,
            limit_origin: origin.as_str().to_owned(),
            threshold: config.threshold,
            started_unix_ms: sampler.started_unix_ms(),
            version: crate::VERSION.to_owned(),
        };
        let every = config.export_sync_every.unwrap_or(((1.0 / config.interval).round() as usize).max(1));
        let exporter = config.export.as_ref().map(|p| Exporter::create(p, meta.clone(), every)).transpose()?;
        let shared = Arc::new(Shared {
            sampler: Mutex::new(sampler),
            state: Mutex::new(State { samples: Vec::new(), exporter, ended: None, skipped: 0 }),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            meta,
        });
        Ok(Monitor { shared, thread: Mutex::new(None), config })
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// What is watched, its limit and origin, as written in the export header.
    pub fn meta(&self) -> &Meta {
        &self.shared.meta
    }

    /// Starts sampling on a background thread, at once and then every `interval` (late ticks are
    /// skipped, not caught up). An error if already running.
    pub fn start(&self) -> Result<()> {
        let mut slot = self.thread.lock();
        match slot.take() {
            Some(h) if !h.is_finished() => {
                *slot = Some(h);
                return Err(Error::new(ErrorKind::InvalidArgument, "the monitor is already running"));
            }
            // A sampler that ended on its own (its process exited) is reaped; a new one starts.
            Some(h) => drop(h.join()),
            None => {}
        }
        *self.shared.stop.lock() = false;
        self.shared.state.lock().ended = None;
        let shared = self.shared.clone();
        let interval = Duration::from_secs_f64(self.config.interval);
        let handle = std::thread::Builder::new()
            .name("memwarden-monitor".into())
            .spawn(move || run(&shared, interval))
            .map_err(|e| Error::io("cannot start the monitor thread", &e))?;
        *slot = Some(handle);
        Ok(())
    }

    /// Stops the background sampler (returns once it has) and fsyncs the export. No-op when
    /// not running.
    pub fn stop(&self) -> Result<()> {
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            *self.shared.stop.lock() = true;
            self.shared.wake.notify_all();
            let _ = h.join();
        }
        if let Some(x) = self.shared.state.lock().exporter.as_mut() {
            x.write()?;
        }
        Ok(())
    }

    /// Whether the background sampler is running (false once it ended on its own).
    pub fn is_running(&self) -> bool {
        self.thread.lock().as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Why the background sampler ended on its own (`process 123 has exited`, an export
    /// write error), if it did.
    pub fn ended(&self) -> Option<String> {
        self.shared.state.lock().ended.clone()
    }

    /// Ticks skipped because the sampler was late.
    pub fn skipped_ticks(&self) -> u64 {
        self.shared.state.lock().skipped
    }

    /// Takes a sample now and adds it to the series (and the export).
    pub fn sample_now(&self) -> Result<Sample> {
        self.shared.take()
    }

    /// The series so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.shared.state.lock().samples.clone()
    }

    /// The analysis of the series so far.
    pub fn analyze(&self) -> Analysis {
        analyze(&self.shared.state.lock().samples)
    }

    /// Writes the series so far as a whole export file (atomically).
    pub fn export(&self, path: impl AsRef<Path>) -> Result<()> {
        let samples = self.samples();
        write_export(path, &self.shared.meta, &samples)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn run(shared: &Shared, interval: Duration) {
    let start = Instant::now();
    let mut ticker = Ticker::new(interval);
    loop {
        if let Err(e) = shared.take() {
            shared.state.lock().ended = Some(e.message().to_owned());
            return;
        }
        let due = start + ticker.after_sample(start.elapsed());
        shared.state.lock().skipped = ticker.skipped();
        let mut stop = shared.stop.lock();
        while !*stop {
            if shared.wake.wait_until(&mut stop, due).timed_out() {
                break;
            }
        }
        if *stop {
            return;
        }
    }
}

/// The analysis of an export file (see [`read_export`] for the errors).
pub fn analyze_file(path: impl AsRef<Path>) -> Result<Analysis> {
    Ok(analyze(&read_export(path)?.samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn me() -> Value {
        json!({"pid": std::process::id(), "interval": 0.02})
    }

    #[test]
    fn config_keys_and_bad_values_are_named() {
        let c = MonitorConfig::from_json(&Value::Null).unwrap();
        assert_eq!((c.target, c.interval, c.threshold), (Target::System, 1.0, 80.0));
        let c = MonitorConfig::from_json(&json!({"pid": 7, "children": true, "interval": 0.5})).unwrap();
        assert_eq!(c.target, Target::Pid { pid: 7, children: true });
        for (v, needle) in [
            (json!({"interval": 0}), "'interval'"),
            (json!({"interval": -1}), "'interval'"),
            (json!({"threshold": 100}), "'threshold'"),
            (json!({"pid": 0}), "'pid'"),
            (json!({"pid": "x"}), "'pid'"),
            (json!({"pid": 5, "system": true}), "not both"),
            (json!({"children": true}), "needs a 'pid'"),
            (json!({"intervall": 1}), "did you mean 'interval'"),
            (json!({"export_sync_every": 0}), "export_sync_every"),
        ] {
            let e = MonitorConfig::from_json(&v).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            assert!(e.message().contains(needle), "{v}: {e}");
        }
    }

    #[test]
    fn background_sampling_fills_the_series_and_the_export() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("live.jsonl");
        let mut cfg = me();
        cfg["export"] = json!(path.to_str().unwrap());
        let m = Monitor::from_json(&cfg).unwrap();
        assert!(!m.is_running());
        m.start().unwrap();
        assert!(m.start().unwrap_err().message().contains("already running"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.samples().len() < 5 {
            assert!(Instant::now() < deadline, "fewer than 5 samples in 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        // While it runs, the export already holds what was sampled (appended as it goes).
        assert!(!read_export(&path).unwrap().samples.is_empty());
        m.stop().unwrap();
        assert!(!m.is_running());
        let n = m.samples().len();
        let s = m.sample_now().unwrap();
        assert!(s.current_bytes > 0);
        assert_eq!(m.samples().len(), n + 1);
        let back = read_export(&path).unwrap();
        assert_eq!(back.samples, m.samples());
        assert_eq!(back.meta.target, format!("pid {}", std::process::id()));
        let a = m.analyze();
        assert_eq!(a.samples, n + 1);
        assert!(a.peak_mb >= a.average_mb && a.average_mb > 0.0);
        let copy = d.path().join("copy.jsonl");
        m.export(&copy).unwrap();
        assert_eq!(analyze_file(&copy).unwrap(), a);
        // Restartable.
        m.start().unwrap();
        m.stop().unwrap();
        assert!(m.samples().len() > n + 1);
    }

    #[test]
    fn a_process_that_exits_ends_the_sampler_with_the_reason() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let m = Monitor::from_json(&json!({"pid": child.id(), "interval": 0.01})).unwrap();
        m.start().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.is_running() {
            assert!(Instant::now() < deadline, "sampler still running 10 s after its process exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        let why = m.ended().unwrap();
        assert!(why.contains(&format!("process {} has exited", child.id())), "{why}");
        m.stop().unwrap();
    }

    #[test]
    fn bad_targets_and_paths_fail_at_creation() {
        let e = Monitor::from_json(&json!({"pid": u32::MAX - 1})).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("no process with pid"), "{e}");
        let e = Monitor::from_json(&json!({"export": "/nonexistent-dir/x.jsonl"})).err().unwrap();
        assert!(e.message().contains("cannot write export file"), "{e}");
        assert!(analyze_file("/nonexistent-dir/x.jsonl").unwrap_err().message().contains("cannot read"));
    }
}
