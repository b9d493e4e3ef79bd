//! Real endpoints on loopback: a small HTTP server standing in for Slack, the webhook and
//! Alertmanager (answering, failing, hanging), an SMTP sink, and a manual clock.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::*;
use crate::manager::{ManagerConfig, Source};

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Mode {
    Ok,
    Status(u16),
    Hang,
}

#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub path: String,
    pub body: Value,
}

/// An HTTP/1.1 server on 127.0.0.1:0 that records every POST.
pub(crate) struct Http {
    pub port: u16,
    pub mode: Arc<Mutex<Mode>>,
    pub reqs: Arc<Mutex<Vec<Req>>>,
    pub hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Http {
    pub fn start(mode: Mode) -> Http {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let (mode, reqs, hits, stop) = (
            Arc::new(Mutex::new(mode)),
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (m2, r2, h2, s2) = (mode.clone(), reqs.clone(), hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((stream, _)) => {
                        let (m, r, h, s) = (m2.clone(), r2.clone(), h2.clone(), s2.clone());
                        std::thread::spawn(move || serve(stream, m, r, h, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Http { port, mode, reqs, hits, stop }
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    pub fn set(&self, m: Mode) {
        *self.mode.lock() = m;
    }
    pub fn bodies(&self) -> Vec<Value> {
        self.reqs.lock().iter().map(|r| r.body.clone()).collect()
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    mode: Arc<Mutex<Mode>>,
    reqs: Arc<Mutex<Vec<Req>>>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut len = 0;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let m = *mode.lock();
        match m {
            Mode::Hang => {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            Mode::Ok => {
                reqs.lock().push(Req { path, body: serde_json::from_slice(&body).unwrap_or(Value::Null) });
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            }
            Mode::Status(code) => {
                let extra = if code == 429 { "retry-after: 0\r\n" } else { "" };
                let _ = write!(w, "HTTP/1.1 {code} Nope\r\n{extra}content-length: 4\r\n\r\nnope");
            }
        }
    }
}

/// Received mails: recipients and the DATA text.
type Mails = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// A minimal SMTP receiver: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
pub(crate) struct Smtp {
    pub port: u16,
    pub mails: Mails,
}

impl Smtp {
    pub fn start() -> Smtp {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m2 = mails.clone();
        std::thread::spawn(move || {
            for stream in l.incoming().flatten() {
                let m = m2.clone();
                std::thread::spawn(move || smtp_session(stream, m));
            }
        });
        Smtp { port, mails }
    }
}

fn smtp_session(stream: TcpStream, mails: Mails) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let _ = w.write_all(b"220 sink ESMTP\r\n");
    let mut rcpt = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let up = line.to_ascii_uppercase();
        let reply: &[u8] = if up.starts_with("EHLO") {
            b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
        } else if up.starts_with("HELO") || up.starts_with("MAIL") || up.starts_with("RSET") || up.starts_with("NOOP") {
            if up.starts_with("RSET") {
                rcpt.clear();
            }
            b"250 OK\r\n"
        } else if up.starts_with("AUTH PLAIN") {
            // Credentials arrive base64-encoded; the test only needs them accepted.
            b"235 accepted\r\n"
        } else if up.starts_with("RCPT") {
            let a = line.split('<').nth(1).and_then(|x| x.split('>').next()).unwrap_or("").to_owned();
            rcpt.push(a);
            b"250 OK\r\n"
        } else if up.starts_with("DATA") {
            let _ = w.write_all(b"354 go ahead\r\n");
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            mails.lock().push((std::mem::take(&mut rcpt), data));
            b"250 queued\r\n"
        } else if up.starts_with("QUIT") {
            let _ = w.write_all(b"221 bye\r\n");
            return;
        } else {
            b"502 no\r\n"
        };
        let _ = w.write_all(reply);
    }
}

pub(crate) fn host_manager() -> Arc<MemoryManager> {
    let m = MemoryManager::new(ManagerConfig {
        source: Source::Host("host"),
        memory_limit: Some(1000),
        ..ManagerConfig::default()
    })
    .unwrap();
    m.update_host_reading(100, 100, None).unwrap();
    Arc::new(m)
}

fn set(m: &MemoryManager, pct: f64) {
    m.update_host_reading((pct * 10.0).round() as u64, 0, None).unwrap();
}

struct Rig {
    svc: MemoryAlertingService,
    m: Arc<MemoryManager>,
    clock: Arc<ManualClock>,
}

fn rig(cfg: Value) -> Rig {
    let m = host_manager();
    let clock = Arc::new(ManualClock::default());
    let svc =
        MemoryAlertingService::with_source(AlertConfig::from_json(&cfg).unwrap(), m.clone(), clock.clone()).unwrap();
    Rig { svc, m, clock }
}

impl Rig {
    fn at(&self, pct: f64) -> State {
        set(&self.m, pct);
        self.svc.check_and_alert().unwrap()
    }
    fn flush(&self) {
        assert!(self.svc.flush(Some(Duration::from_secs(10))), "delivery did not drain");
    }
    fn history(&self, f: Value) -> Vec<Value> {
        self.svc.get_alert_history(&f).unwrap().as_array().unwrap().clone()
    }
}

fn webhook(url: &str, extra: Value) -> Value {
    let mut w = json!({"enabled": true, "url": url, "threshold": "warning", "timeout": 2, "retry_attempts": 0,
                       "throttle_minutes": 5});
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    w
}

fn err(cfg: Value) -> String {
    AlertConfig::from_json(&cfg).expect_err("config must be refused").message().to_owned()
}

#[test]
fn bad_config_is_refused_at_construction_with_its_name() {
    let e = err(json!({"channels": {"pagerduty": {}}}));
    assert!(e.contains("unknown channel 'pagerduty'"), "{e}");
    let e = err(json!({"channels": {"slak": {}}}));
    assert!(e.contains("did you mean 'slack'"), "{e}");
    let e = err(json!({"channels": {"webhook": {"url": "ftp://x/secret-token"}}}));
    assert!(e.contains("bad URL") && e.contains("channels.webhook.url") && !e.contains("secret-token"), "{e}");
    let e = err(json!({"channels": {"slack": {"webhook_url": "not a url/TOKEN123"}}}));
    assert!(e.contains("bad URL") && !e.contains("TOKEN123"), "{e}");
    let e = err(json!({"channels": {"email": {"recipients": ["admin@example.com", "not-an-address"]}}}));
    assert!(e.contains("bad e-mail address 'not-an-address'"), "{e}");
    let e = err(json!({"channels": {"email": {"recipients": ["a@example.com"], "threshold": "severe"}}}));
    assert!(e.contains("unknown threshold name 'severe'") && e.contains("channels.email.threshold"), "{e}");
    let e = err(json!({"thresholds": {"warning": 75, "panic": 99}}));
    assert!(e.contains("unknown key 'panic'"), "{e}");
    let e = err(json!({"escalation": {"enabled": true, "levels": {"1": {"pager": true}}}}));
    assert!(e.contains("unknown channel 'pager'"), "{e}");
    let e = err(json!({"escalation": {"enabled": true, "levels": {"1": {"slack": true}}}}));
    assert!(e.contains("channel 'slack'") && e.contains("not configured"), "{e}");
    let e = err(json!({"channels": {"slack": {"enabled": false, "webhook_url": "http://127.0.0.1/x"}},
                      "escalation": {"enabled": true, "levels": {"1": {"slack": true}}}}));
    assert!(e.contains("not configured and enabled"), "{e}");
    let e = err(json!({"escalation": {"escalation_intervals": [5, -1]}}));
    assert!(e.contains("escalation_intervals[1] is negative"), "{e}");
    let e = err(json!({"channels": {"email": {"recipients": ["a@example.com"], "template": "nope"}}}));
    assert!(e.contains("template 'nope'"), "{e}");
    let e = err(json!({"thresholds": {"warning": 95, "critical": 90}}));
    assert!(e.contains("ordered"), "{e}");
    let e = err(json!({"channels": {"email": {"recipients": ["a@example.com"], "smtp": {"password": 12345}}}}));
    assert!(!e.contains("12345"), "{e}");
    // The seed's own examples are accepted.
    AlertConfig::from_json(&json!({
        "channels": {
            "email": {"enabled": true, "recipients": ["admin@example.com", "ops@example.com"], "threshold": "warning",
                      "throttle_minutes": 15, "template": "memory_alert"},
            "slack": {"enabled": true, "webhook_url": "https://hooks.slack.com/services/T/B/X", "channel": "#alerts",
                      "username": "Glueful Monitor", "threshold": "critical", "throttle_minutes": 5},
            "webhook": {"enabled": true, "url": "https://your-monitoring-system.com/alerts", "threshold": "warning",
                        "timeout": 30, "retry_attempts": 3}
        },
        "thresholds": {"warning": 75, "critical": 90, "emergency": 95},
        "escalation": {"enabled": true, "levels": {"1": {"email": ["admin@example.com"]},
            "2": {"email": ["manager@example.com"], "slack": true}, "3": {"webhook": "https://pager-duty.com/x"}},
            "escalation_intervals": [5, 15, 30]},
        "history_retention_days": 30, "alert_cooldown_minutes": 10, "batch_alerts": true, "include_system_info": true,
        "custom_metrics": {"cpu_usage": true, "disk_usage": true, "active_connections": true}
    }))
    .unwrap();
}

#[test]
fn webhook_gets_json_and_history_records_the_attempt() {
    let h = Http::start(Mode::Ok);
    let r = rig(json!({"channels": {"webhook": webhook(&h.url("/hook"), json!({}))}}));
    assert_eq!(r.at(80.0), State::Warning);
    r.flush();
    let b = h.bodies();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["source"], "memwarden");
    assert_eq!(b[0]["alerts"][0]["level"], "warning");
    assert_eq!(b[0]["alerts"][0]["usage_percent"], 80.0);
    let hist = r.history(json!({}));
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0]["deliveries"][0]["outcome"], "ok");
    assert_eq!(hist[0]["deliveries"][0]["channel"], "webhook");
    let ev: Vec<&str> = r.svc.poll_events().iter().map(|e| e.kind).collect();
    assert_eq!(ev, ["alert_raised", "delivery_ok"]);
    assert!(r.svc.poll_events().is_empty());
}

#[test]
fn slack_and_alertmanager_get_their_payloads_and_resolve_notices() {
    let h = Http::start(Mode::Ok);
    let r = rig(json!({"channels": {
        "slack": {"webhook_url": h.url("/services/T0/B0/SECRET"), "channel": "#alerts", "username": "Mon",
                  "threshold": "critical", "throttle_minutes": 5, "retry_attempts": 0},
        "alertmanager": {"url": h.url(""), "threshold": "warning", "labels": {"team": "ops"}}}}));
    r.at(80.0);
    r.flush();
    assert_eq!(h.reqs.lock().len(), 1, "slack's threshold is critical");
    r.at(92.0);
    r.flush();
    r.at(50.0);
    r.flush();
    let reqs = h.reqs.lock().clone();
    let slack: Vec<&Req> = reqs.iter().filter(|q| q.path.starts_with("/services")).collect();
    let am: Vec<&Req> = reqs.iter().filter(|q| q.path == "/api/v2/alerts").collect();
    assert_eq!(slack.len(), 2, "critical alert + resolve");
    assert_eq!(slack[0].body["channel"], "#alerts");
    assert_eq!(slack[0].body["username"], "Mon");
    assert!(slack[0].body["text"].as_str().unwrap().contains("CRITICAL"));
    assert_eq!(am.len(), 3);
    assert_eq!(am[0].body[0]["labels"]["severity"], "warning");
    assert_eq!(am[0].body[0]["labels"]["team"], "ops");
    assert!(am[0].body[0].get("endsAt").is_none());
    let resolved = &am[2].body;
    assert_eq!(resolved.as_array().unwrap().len(), 2, "both fired levels end");
    assert!(resolved[0]["endsAt"].is_string());
    let hist = r.history(json!({"kind": "resolved"}));
    assert_eq!(hist.len(), 1);
    let all = serde_json::to_string(&r.history(json!({}))).unwrap();
    assert!(!all.contains("SECRET"));
}

#[test]
fn email_reaches_the_smtp_server_with_recipients_subject_and_body() {
    let s = Smtp::start();
    let r = rig(json!({
        "include_system_info": true,
        "custom_metrics": {"cpu_usage": true, "disk_usage": true, "active_connections": true},
        "channels": {"email": {"recipients": ["admin@example.com", "ops@example.com"], "threshold": "warning",
            "smtp": {"host": "127.0.0.1", "port": s.port, "tls": "none", "from": "mw@example.com",
                     "username": "u", "password": "hunter2"}}}}));
    r.at(91.0);
    r.flush();
    let hist = r.history(json!({}));
    assert_eq!(hist[0]["deliveries"][0]["outcome"], "ok", "{hist:?}");
    let mails = s.mails.lock().clone();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].0, ["admin@example.com", "ops@example.com"]);
    let data = &mails[0].1;
    assert!(data.contains("Subject: [memwarden] CRITICAL: memory at 91"), "{data}");
    assert!(data.contains("critical threshold (90%)"), "{data}");
    assert!(data.contains("active_connections"), "{data}");
    assert!(data.contains("memory_total_mb"), "{data}");
    assert!(!serde_json::to_string(&hist).unwrap().contains("hunter2"));
}

#[test]
fn user_templates_render() {
    let s = Smtp::start();
    let r = rig(json!({
        "templates": {"short": {"subject": "MEM {{ level }} {{ usage_percent }}", "body": "n={{ count }}"}},
        "channels": {"email": {"recipients": ["a@example.com"], "template": "short",
            "smtp": {"host": "127.0.0.1", "port": s.port, "tls": "none"}}}}));
    r.at(76.0);
    r.flush();
    let data = s.mails.lock()[0].1.clone();
    assert!(data.contains("Subject: MEM warning 76"), "{data}");
    assert!(data.contains("n=1"), "{data}");
}

#[test]
fn throttle_allows_one_message_per_channel_per_level_in_the_window() {
    let h = Http::start(Mode::Ok);
    let r = rig(json!({"alert_cooldown_minutes": 0, "hysteresis": 0,
                       "channels": {"webhook": webhook(&h.url("/h"), json!({"throttle_minutes": 10}))}}));
    r.at(80.0);
    r.at(50.0);
    r.clock.advance_minutes(1.0);
    r.at(80.0); // same level within 10 minutes: throttled
    r.at(92.0); // another level: allowed
    r.clock.advance_minutes(10.0);
    r.at(50.0);
    r.at(80.0); // window over
    r.flush();
    let levels: Vec<String> = h.bodies().iter().map(|b| b["alerts"][0]["level"].as_str().unwrap().to_owned()).collect();
    let kinds: Vec<String> = h.bodies().iter().map(|b| b["alerts"][0]["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "alert").count(), 3, "{kinds:?}");
    assert_eq!(levels.iter().filter(|l| *l == "critical").count(), 1 + 1, "critical alert and its resolve: {levels:?}");
    let throttled = r.history(json!({}));
    let n = throttled
        .iter()
        .filter(|a| a["deliveries"].as_array().unwrap().iter().any(|d| d["outcome"] == "throttled"))
        .count();
    assert_eq!(n, 1);
}

#[test]
fn cooldown_after_resolve_suppresses_the_same_condition() {
    let h = Http::start(Mode::Ok);
    let r = rig(json!({"alert_cooldown_minutes": 10,
                       "channels": {"webhook": webhook(&h.url("/h"), json!({"throttle_minutes": 0}))}}));
    r.at(80.0);
    r.at(50.0); // resolve
    r.clock.advance_minutes(5.0);
    r.at(80.0); // within cooldown: suppressed
    r.at(50.0);
    r.clock.advance_minutes(6.0);
    r.at(80.0); // cooldown counted from the first resolve: over
    r.flush();
    let kinds: Vec<String> = h.bodies().iter().map(|b| b["alerts"][0]["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["alert", "resolved", "alert"]);
    let sup = r.history(json!({})).iter().filter(|a| a["status"] == "suppressed").count();
    assert_eq!(sup, 1);
    // A worse condition is not "the same": it alerts within the cooldown.
    r.at(50.0);
    r.at(96.0);
    r.flush();
    assert_eq!(h.bodies().last().unwrap()["alerts"][0]["level"], "emergency");
}

#[test]
fn hysteresis_keeps_a_wobbling_reading_to_one_alert() {
    let h = Http::start(Mode::Ok);
    let r = rig(json!({"alert_cooldown_minutes": 0,
                       "channels": {"webhook": webhook(&h.url("/h"), json!({"throttle_minutes": 0}))}}));
    for i in 0..50 {
        let pct = if i % 2 == 0 { 75.5 } else { 74.0 };
        assert_eq!(r.at(pct), State::Warning);
    }
    assert_eq!(r.at(72.9), State::Normal);
    r.flush();
    let kinds: Vec<String> = h.bodies().iter().map(|b| b["alerts"][0]["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["alert", "resolved"]);
}

#[test]
fn escalation_follows_the_intervals_and_repeats_the_top_level() {
    let h = Http::start(Mode::Ok);
    let s = Smtp::start();
    let r = rig(json!({
        "channels": {
            "email": {"recipients": ["admin@example.com"], "threshold": "emergency", "throttle_minutes": 0,
                      "smtp": {"host": "127.0.0.1", "port": s.port, "tls": "none"}},
            "slack": {"webhook_url": h.url("/slack"), "threshold": "emergency", "throttle_minutes": 0},
            "webhook": webhook(&h.url("/default"), json!({"threshold": "emergency", "throttle_minutes": 0}))},
        "escalation": {"enabled": true, "levels": {
            "1": {"email": ["admin@example.com"]},
            "2": {"email": ["manager@example.com"], "slack": true},
            "3": {"webhook": h.url("/pager/TOKEN")}},
            "escalation_intervals": [5, 15, 30]}}));
    r.at(80.0); // level 1 at once: email admin
    r.flush();
    assert_eq!(s.mails.lock().len(), 1);
    r.clock.advance_minutes(4.9);
    r.at(80.0);
    r.flush();
    assert_eq!(s.mails.lock().len(), 1, "not yet");
    r.clock.advance_minutes(0.1); // 5 minutes: level 2
    r.at(80.0);
    r.flush();
    assert_eq!(s.mails.lock().len(), 2);
    assert_eq!(s.mails.lock()[1].0, ["manager@example.com"]);
    assert_eq!(h.reqs.lock().iter().filter(|q| q.path == "/slack").count(), 1);
    r.clock.advance_minutes(10.0); // 15: level 3
    r.at(80.0);
    r.flush();
    let pager = |h: &Http| h.reqs.lock().iter().filter(|q| q.path == "/pager/TOKEN").count();
    assert_eq!(pager(&h), 1);
    r.clock.advance_minutes(14.0); // 29
    r.at(80.0);
    r.flush();
    assert_eq!(pager(&h), 1);
    r.clock.advance_minutes(1.0); // 30: top level again
    r.at(80.0);
    r.flush();
    assert_eq!(pager(&h), 2);
    r.clock.advance_minutes(30.0); // every 30 after that
    r.at(80.0);
    r.flush();
    assert_eq!(pager(&h), 3);
    assert_eq!(h.reqs.lock().iter().filter(|q| q.path == "/default").count(), 0, "below the channel threshold");
    let esc = r.history(json!({"kind": "escalation"}));
    assert_eq!(esc.len(), 4);
    assert!(!serde_json::to_string(&r.history(json!({}))).unwrap().contains("TOKEN"));
}

#[test]
fn batch_alerts_go_out_as_one_message_per_channel() {
    let h = Http::start(Mode::Ok);
    let r = rig(json!({"batch_alerts": true, "batch_window_seconds": 0.3,
                       "channels": {"webhook": webhook(&h.url("/h"), json!({}))}}));
    for i in 0..3 {
        r.svc.send_alert(&format!("slow request {i}"), State::Warning).unwrap();
    }
    r.flush();
    let b = h.bodies();
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["alerts"].as_array().unwrap().len(), 3);
    assert_eq!(r.history(json!({"channel": "webhook"})).len(), 3);
}

#[test]
fn a_hanging_endpoint_blocks_nothing_and_times_out() {
    let h = Http::start(Mode::Hang);
    let r = rig(json!({"alert_cooldown_minutes": 0, "hysteresis": 0,
        "channels": {"webhook": webhook(&h.url("/h"), json!({"timeout": 0.3, "retry_attempts": 1, "throttle_minutes": 0}))}}));
    let t = Instant::now();
    for i in 0..20 {
        r.at(if i % 2 == 0 { 80.0 } else { 50.0 });
    }
    assert!(t.elapsed() < Duration::from_millis(250), "check_and_alert waited: {:?}", t.elapsed());
    assert!(!r.svc.flush(Some(Duration::from_millis(50))));
    let first = r.history(json!({"limit": 100})).pop().unwrap();
    let id = first["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hist = r.history(json!({"limit": 100}));
        let a = hist.iter().find(|a| a["id"] == id).unwrap();
        let d = a["deliveries"].as_array().unwrap();
        if d.len() == 2 {
            assert_eq!(d[0]["outcome"], "failed");
            assert!(d[0]["error"].as_str().unwrap().to_lowercase().contains("timeout"), "{d:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no timeout recorded: {a:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = Instant::now();
    drop(r);
    assert!(t.elapsed() < Duration::from_secs(5), "drop took {:?}", t.elapsed());
}

#[test]
fn server_errors_and_429_are_retried_then_recorded() {
    let h = Http::start(Mode::Status(500));
    let r = rig(json!({"channels": {"webhook": webhook(&h.url("/h/abc"), json!({"retry_attempts": 2}))}}));
    r.at(80.0);
    r.flush();
    assert_eq!(h.hits.load(Ordering::SeqCst), 3);
    let d = r.history(json!({}))[0]["deliveries"].clone();
    assert_eq!(d.as_array().unwrap().len(), 3);
    assert_eq!(d[2]["error"], "HTTP 500");
    let ev = r.svc.poll_events();
    assert_eq!(ev.last().unwrap().kind, "delivery_failed");
    // 429 then success.
    h.set(Mode::Status(429));
    let m = r.svc.send_alert("custom", State::Critical).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    h.set(Mode::Ok);
    r.flush();
    let a = r.history(json!({"kind": "custom"}));
    assert_eq!(a[0]["id"], m);
    let d = a[0]["deliveries"].as_array().unwrap();
    assert_eq!(d.last().unwrap()["outcome"], "ok", "{d:?}");
    assert!(d.iter().any(|x| x["error"] == "HTTP 429"));
}

#[test]
fn a_refused_connection_fails_with_a_redacted_error_and_reaches_the_callback() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hooks/SECRET-TOKEN");
    let r = rig(json!({"channels": {"webhook": webhook(&url, json!({}))}}));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    r.svc.set_event_callback(Some(Box::new(move |e: &AlertEvent| {
        s2.lock().push((e.kind, std::thread::current().name().map(str::to_owned)));
    })));
    r.svc.send_alert("disk is fine but memory is not", State::Warning).unwrap();
    r.flush();
    let hist = r.history(json!({}));
    let d = &hist[0]["deliveries"][0];
    assert_eq!(d["outcome"], "failed");
    let text = serde_json::to_string(&hist).unwrap();
    assert!(!text.contains("SECRET-TOKEN"), "{text}");
    let ev = r.svc.poll_events();
    assert!(ev.iter().all(|e| !e.error.clone().unwrap_or_default().contains("SECRET")));
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|(_, t)| t.as_deref() == Some("memwarden-alert")), "{seen:?}");
    assert_eq!(seen[1].0, "delivery_failed");
}

#[test]
fn a_full_queue_records_the_alert_as_dropped() {
    let h = Http::start(Mode::Hang);
    let r = rig(json!({"queue_capacity": 1, "channels": {"webhook": webhook(&h.url("/h"), json!({"timeout": 0.5}))}}));
    for i in 0..5 {
        r.svc.send_alert(&format!("m{i}"), State::Warning).unwrap();
    }
    let hist = r.history(json!({}));
    let dropped = hist.iter().filter(|a| a["status"] == "dropped").count();
    assert!(dropped >= 3, "{hist:?}");
    assert!(r.svc.poll_events().iter().any(|e| e.kind == "alert_dropped"));
}

#[test]
fn history_filters_and_pruning() {
    let r = rig(json!({"history_retention_days": 1}));
    r.svc.send_alert("old", State::Critical).unwrap();
    r.clock.advance_minutes(60.0 * 23.0);
    r.svc.send_alert("newer", State::Warning).unwrap();
    r.svc.send_alert("newest", State::Emergency).unwrap();
    assert_eq!(r.history(json!({})).len(), 3);
    assert_eq!(r.history(json!({"level": "warning"}))[0]["message"], "newer");
    assert_eq!(r.history(json!({"limit": 1}))[0]["message"], "newest");
    let since = r.clock.now_ms() as f64 / 1000.0 - 60.0;
    assert_eq!(r.history(json!({"since": since})).len(), 2);
    assert!(r.svc.get_alert_history(&json!({"colour": 1})).is_err());
    r.clock.advance_minutes(120.0);
    assert_eq!(r.svc.prune_history().unwrap(), 1);
    assert_eq!(r.history(json!({})).len(), 2);
    assert!(r.svc.send_alert("x", State::Normal).is_err());
}

#[test]
fn history_on_disk_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    let cfg = json!({"history_path": path.to_str().unwrap()});
    {
        let r = rig(cfg.clone());
        r.svc.send_alert("persisted", State::Warning).unwrap();
    }
    let r = rig(cfg);
    assert_eq!(r.history(json!({}))[0]["message"], "persisted");
}

#[test]
fn default_manager_reads_the_process() {
    let svc = MemoryAlertingService::from_json("", None).unwrap();
    assert_eq!(svc.check_and_alert().unwrap(), State::Normal);
    assert!(svc.flush(Some(Duration::from_secs(1))));
}
