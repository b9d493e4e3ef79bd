//! `memwarden monitor`: samples a pid, a command it starts, or the whole system.

use std::path::PathBuf;
use std::process::{Child, ExitCode, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use memwarden_core::monitor::{Exporter, Meta, Sample, Sampler, Target, Ticker, analyze, mb, render_prometheus};
use memwarden_core::{ErrorKind, MemoryAlertingService, State};
use serde_json::json;

use crate::Fail;
use crate::serve::MetricsServer;

#[derive(Args)]
pub struct MonitorArgs {
    /// Seconds between samples; fractions allowed (0.1), must be > 0.
    #[arg(long, default_value = "1", allow_hyphen_values = true)]
    interval: String,
    /// Stop after this many seconds (default: until the process exits or Ctrl-C).
    #[arg(long, allow_hyphen_values = true)]
    duration: Option<String>,
    /// Alert threshold, percent of the limit.
    #[arg(long, default_value = "80", allow_hyphen_values = true)]
    threshold: String,
    /// Watch this process (default: the whole system, or the command after `--`).
    #[arg(long, allow_hyphen_values = true)]
    pid: Option<String>,
    /// With --pid or a command: sum the memory of the whole process tree.
    #[arg(long)]
    children: bool,
    /// Live output format: table, json (JSON Lines, one object per sample) or csv (with a header).
    #[arg(long, value_enum, default_value_t = OutFormat::Table)]
    format: OutFormat,
    /// Write the run's metadata and then each sample, appended as one JSON line as it is taken, to
    /// FILE for `analyze` and `plot` (a killed monitor leaves every whole line readable).
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// fsync the export file every N samples (default: about once a second).
    #[arg(long, value_name = "N")]
    export_every: Option<usize>,
    /// No live output (export, alerts and --serve still work).
    #[arg(long, short)]
    quiet: bool,
    /// Print the target, its limit and origin, alert events and a closing summary on stderr.
    #[arg(long, short)]
    verbose: bool,
    /// Send alerts to this e-mail address (SMTP from MEMWARDEN_SMTP_HOST/PORT/USER/PASSWORD/FROM/TLS).
    #[arg(long, value_name = "ADDRESS")]
    email: Option<String>,
    /// POST alerts as JSON to this URL.
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// Send alerts to this Slack incoming-webhook URL.
    #[arg(long, value_name = "URL")]
    slack: Option<String>,
    /// Serve the current reading in Prometheus text format at http://ADDR/metrics (e.g. 127.0.0.1:9184).
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
    /// The command to start and watch until it exits (after `--`); memwarden exits with its status.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutFormat {
    Table,
    Json,
    Csv,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM end the run cleanly: the table is closed and the export written.
fn install_stop_handler() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    // Safety: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

fn number(flag: &str, text: &str, what: &str, ok: impl Fn(f64) -> bool) -> Result<f64, Fail> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && ok(v) => Ok(v),
        _ => Err(Fail::new(format!("--{flag} must be {what}, got '{text}'"))),
    }
}

pub fn run(args: MonitorArgs) -> Result<ExitCode, Fail> {
    let interval = number("interval", &args.interval, "a number of seconds > 0", |v| v > 0.0)?;
    let duration = args
        .duration
        .as_deref()
        .map(|d| number("duration", d, "a number of seconds >= 0", |v| v >= 0.0))
        .transpose()?;
    let threshold = number("threshold", &args.threshold, "a percentage in (0, 100)", |v| v > 0.0 && v < 100.0)?;
    if args.export_every == Some(0) {
        return Err(Fail::new("--export-every must be at least 1"));
    }
    let pid =
        match &args.pid {
            None => None,
            Some(p) => Some(p.trim().parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| {
                Fail::new(format!("--pid must be a process id (a positive whole number), got '{p}'"))
            })?),
        };
    if pid.is_some() && !args.command.is_empty() {
        return Err(Fail::new("give either --pid or a command after `--`, not both"));
    }
    // Alerting is configured before anything starts, so a bad URL or address fails first.
    let alerts = alert_service(&args, threshold)?;
    let server = args.serve.as_deref().map(MetricsServer::start).transpose()?;
    if let Some(s) = &server {
        eprintln!("memwarden: serving Prometheus metrics on http://{}/metrics", s.addr());
    }

    install_stop_handler();
    let mut child = match args.command.split_first() {
        None => None,
        Some((prog, rest)) => Some(
            std::process::Command::new(prog)
                .args(rest)
                .spawn()
                .map_err(|e| Fail::new(format!("cannot start command '{prog}': {e}")))?,
        ),
    };
    let result = watch(&args, interval, duration, threshold, pid, child.as_mut(), alerts.as_ref(), server.as_ref());
    // Whatever happened, a started command is not left behind unwaited.
    let status = match child.as_mut() {
        Some(c) => {
            if result.is_err() {
                let _ = c.kill();
            }
            c.wait().ok()
        }
        None => None,
    };
    if let Some(svc) = &alerts {
        if !svc.flush(Some(Duration::from_secs(20))) {
            eprintln!("memwarden: some alerts were still being delivered after 20 s");
        }
        report_alert_events(svc, args.verbose);
    }
    result?;
    Ok(status.map_or(ExitCode::SUCCESS, exit_code_of))
}

fn exit_code_of(s: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
        (None, Some(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
        _ => ExitCode::FAILURE,
    }
}

#[allow(clippy::too_many_arguments)]
fn watch(
    args: &MonitorArgs,
    interval: f64,
    duration: Option<f64>,
    threshold: f64,
    pid: Option<u32>,
    mut child: Option<&mut Child>,
    alerts: Option<&MemoryAlertingService>,
    server: Option<&MetricsServer>,
) -> Result<(), Fail> {
    let target = match (pid, child.as_deref()) {
        (Some(pid), _) => Target::Pid { pid, children: args.children },
        (None, Some(c)) => Target::Pid { pid: c.id(), children: args.children },
        (None, None) => Target::System,
    };
    let described = if args.command.is_empty() {
        target.describe()
    } else {
        format!("{} ({})", args.command.join(" "), target.describe())
    };
    let mut sampler = Sampler::new(target)?;
    let (limit, origin) = sampler.limit();
    let meta = Meta {
        target: described.clone(),
        interval,
        limit_bytes: limit,
        limit_origin: origin.as_str().to_owned(),
        threshold,
        started_unix_ms: sampler.started_unix_ms(),
        version: memwarden_core::VERSION.to_owned(),
    };
    let every = args.export_every.unwrap_or(((1.0 / interval).round() as usize).max(1));
    let mut exporter = args.export.as_ref().map(|p| Exporter::create(p, meta.clone(), every)).transpose()?;
    if args.verbose {
        eprintln!(
            "memwarden: watching {described}; limit {:.1} MB from {}; every {interval} s; threshold {threshold}%",
            mb(limit),
            origin.as_str()
        );
    }
    let mut out = Output::new(args.format, args.quiet);
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut level = State::Normal;
    let mut above = false;
    // Late ticks (a stalled machine) are skipped, not caught up in a burst.
    let mut ticker = Ticker::new(Duration::from_secs_f64(interval));
    let end_reason = loop {
        let s = match sampler.sample() {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::NotFound => break e.message().to_owned(),
            Err(e) => return Err(e.into()),
        };
        samples.push(s);
        out.row(&s);
        if let Some(x) = exporter.as_mut() {
            x.push(s)?;
        }
        if let Some(srv) = server {
            srv.publish(render_prometheus(&s, &described, origin.as_str(), samples.len() as u64));
        }
        let pct = s.usage_percent();
        if let Some(svc) = alerts {
            let new = svc.judge(pct)?;
            if new != level && args.verbose {
                eprintln!("memwarden: alert level {} -> {} at {pct:.1}%", level.as_str(), new.as_str());
            }
            level = new;
        }
        if (pct >= threshold) != above {
            above = !above;
            if args.verbose || (args.format == OutFormat::Table && !args.quiet) {
                let word = if above { "above" } else { "back below" };
                eprintln!("memwarden: usage {pct:.1}% of the limit is {word} the {threshold}% threshold");
            }
        }
        let next = ticker.after_sample(started.elapsed());
        if duration.is_some_and(|d| next.as_secs_f64() > d + 1e-9) {
            break "duration reached".to_owned();
        }
        // Sleep to the next tick in short steps, so an exiting command or Ctrl-C ends the run at once.
        let deadline = started + next;
        let mut reason = None;
        loop {
            if STOP.load(Ordering::SeqCst) {
                reason = Some("interrupted".to_owned());
                break;
            }
            if let Some(c) = child.as_deref_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                reason = Some(format!("command exited ({st})"));
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
        }
        if let Some(r) = reason {
            break r;
        }
    };
    out.finish();
    if let Some(x) = exporter.as_mut() {
        x.write()?;
    }
    if !args.verbose && !args.quiet && pid.is_some() && end_reason.ends_with("has exited") {
        eprintln!("memwarden: {end_reason}");
    }
    if args.verbose {
        let a = analyze(&samples);
        eprintln!(
            "memwarden: stopped: {end_reason}; {} samples over {:.1} s{}; average {:.1} MB, peak {:.1} MB{}",
            a.samples,
            a.duration_s,
            match ticker.skipped() {
                0 => String::new(),
                n => format!(" ({n} late ticks skipped)"),
            },
            a.average_mb,
            a.peak_mb,
            exporter.as_ref().map(|x| format!("; exported to {}", x.path().display())).unwrap_or_default()
        );
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn utc(unix_ms: u64) -> String {
    // The core's RFC 3339 formatter, shown as "YYYY-MM-DD HH:MM:SS".
    let iso = memwarden_core::alert::rfc3339(unix_ms as i64);
    iso[..19].replacen('T', " ", 1)
}

/// The live output: the seed's table drawn row by row, JSON Lines, or CSV.
struct Output {
    format: OutFormat,
    quiet: bool,
    started: bool,
    bottom: Option<String>,
}

const TABLE_HEADER: [&str; 4] = ["Time (UTC)", "Current (MB)", "Peak (MB)", "Limit (MB)"];

impl Output {
    fn new(format: OutFormat, quiet: bool) -> Self {
        Output { format, quiet, started: false, bottom: None }
    }

    /// A comfy-table table of one row; every cell is padded to a fixed width so the rows printed
    /// one at a time line up under the header printed with the first.
    fn table_lines(cells: [String; 4]) -> Vec<String> {
        let pad = |i: usize, s: &str| if i == 0 { format!("{s:<19}") } else { format!("{s:>12}") };
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(TABLE_HEADER.iter().enumerate().map(|(i, h)| pad(i, h)).collect::<Vec<_>>());
        t.add_row(cells.iter().enumerate().map(|(i, c)| pad(i, c)).collect::<Vec<_>>());
        t.to_string().lines().map(str::to_owned).collect()
    }

    fn row(&mut self, s: &Sample) {
        if self.quiet {
            return;
        }
        match self.format {
            OutFormat::Table => {
                let lines = Self::table_lines([
                    utc(s.unix_ms),
                    format!("{:.1}", mb(s.current_bytes)),
                    format!("{:.1}", mb(s.peak_bytes)),
                    format!("{:.1}", mb(s.limit_bytes)),
                ]);
                // top, header, separator, row, bottom
                if !self.started {
                    lines[..3].iter().for_each(|l| println!("{l}"));
                }
                println!("{}", lines[3]);
                self.bottom = lines.last().cloned();
            }
            OutFormat::Json => println!("{}", sample_json(s)),
            OutFormat::Csv => {
                if !self.started {
                    println!(
                        "time,t,unix_ms,current_bytes,peak_bytes,limit_bytes,current_mb,peak_mb,limit_mb,usage_percent"
                    );
                }
                println!(
                    "{},{:.3},{},{},{},{},{:.3},{:.3},{:.3},{:.3}",
                    utc(s.unix_ms),
                    s.t,
                    s.unix_ms,
                    s.current_bytes,
                    s.peak_bytes,
                    s.limit_bytes,
                    mb(s.current_bytes),
                    mb(s.peak_bytes),
                    mb(s.limit_bytes),
                    s.usage_percent()
                );
            }
        }
        self.started = true;
    }

    fn finish(&mut self) {
        if let Some(b) = self.bottom.take() {
            println!("{b}");
        }
    }
}

fn sample_json(s: &Sample) -> serde_json::Value {
    json!({
        "time": utc(s.unix_ms),
        "t": s.t,
        "unix_ms": s.unix_ms,
        "current_bytes": s.current_bytes,
        "peak_bytes": s.peak_bytes,
        "limit_bytes": s.limit_bytes,
        "current_mb": mb(s.current_bytes),
        "peak_mb": mb(s.peak_bytes),
        "limit_mb": mb(s.limit_bytes),
        "usage_percent": s.usage_percent(),
    })
}

/// The alerting service for the channels given on the command line, `None` without any.
/// `--threshold` is the warning level; critical and emergency sit halfway to 100% each.
fn alert_service(args: &MonitorArgs, threshold: f64) -> Result<Option<MemoryAlertingService>, Fail> {
    let mut channels = serde_json::Map::new();
    if let Some(u) = &args.webhook {
        channels.insert("webhook".into(), json!({"url": u, "threshold": "warning", "retry_attempts": 2}));
    }
    if let Some(u) = &args.slack {
        channels.insert("slack".into(), json!({"webhook_url": u, "threshold": "warning"}));
    }
    if let Some(a) = &args.email {
        let env = |k: &str| std::env::var(format!("MEMWARDEN_SMTP_{k}")).ok().filter(|v| !v.is_empty());
        let mut smtp = serde_json::Map::new();
        if let Some(h) = env("HOST") {
            smtp.insert("host".into(), h.into());
        }
        if let Some(p) = env("PORT") {
            let port: u64 =
                p.parse().map_err(|_| Fail::new(format!("MEMWARDEN_SMTP_PORT must be a port number, got '{p}'")))?;
            smtp.insert("port".into(), port.into());
        }
        for (var, key) in [("USER", "username"), ("PASSWORD", "password"), ("FROM", "from"), ("TLS", "tls")] {
            if let Some(v) = env(var) {
                smtp.insert(key.into(), v.into());
            }
        }
        channels.insert("email".into(), json!({"recipients": [a], "threshold": "warning", "smtp": smtp}));
    }
    if channels.is_empty() {
        return Ok(None);
    }
    let critical = (threshold + 100.0) / 2.0;
    let cfg = json!({
        "thresholds": {"warning": threshold, "critical": critical, "emergency": (critical + 100.0) / 2.0},
        "channels": channels,
    });
    let cfg = memwarden_core::AlertConfig::from_json(&cfg)?;
    // The service judges the monitor's readings (`judge(pct)`); its own source is never read.
    struct Unused;
    impl memwarden_core::alert::UsageSource for Unused {
        fn usage_percent(&self) -> memwarden_core::Result<f64> {
            Ok(0.0)
        }
    }
    let svc = MemoryAlertingService::with_source(cfg, Arc::new(Unused), Arc::new(memwarden_core::alert::SystemClock))?;
    Ok(Some(svc))
}

fn report_alert_events(svc: &MemoryAlertingService, verbose: bool) {
    for ev in svc.poll_events() {
        let ch = ev.channel.unwrap_or("-");
        match ev.kind {
            "delivery_failed" => {
                eprintln!("memwarden: alert to {ch} failed: {}", ev.error.as_deref().unwrap_or("unknown error"))
            }
            "alert_dropped" => eprintln!("memwarden: alert dropped (queue full): {}", ev.message),
            _ if verbose => eprintln!("memwarden: alert event {} ({ch}, {}): {}", ev.kind, ev.level, ev.message),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_697_380_200_000), "2023-10-15 14:30:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
