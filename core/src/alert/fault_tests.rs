//! Faults at the endpoints (issue 9): SMTP and webhook servers that hang, refuse, reset the
//! connection or answer with errors. `check_and_alert` must never wait on them, and every
//! attempt must be in the history (as many deliveries as the server saw connections).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::tests::host_manager;
use super::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Accepts and never answers.
    Hang,
    /// Accepts, reads what the client sends first (for SMTP: nothing), then resets (RST).
    Reset,
    /// SMTP: greets with 554; the session is refused.
    SmtpError,
    /// SMTP: greets, then answers every command with 421 (service not available).
    Smtp421,
}

/// A TCP server on 127.0.0.1:0 that misbehaves the same way on every connection.
struct FaultServer {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// Closes with an RST instead of a FIN: SO_LINGER on with a zero timeout.
fn reset(stream: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // Safety: a valid socket fd and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

impl FaultServer {
    fn start(fault: Fault, smtp: bool) -> FaultServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                c2.fetch_add(1, Ordering::SeqCst);
                stream.set_nonblocking(false).unwrap();
                let s3 = s2.clone();
                std::thread::spawn(move || match fault {
                    Fault::Hang => {
                        while !s3.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    Fault::Reset => {
                        if !smtp {
                            // Wait for the request to arrive, so the reset hits a sent request.
                            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                            let mut buf = [0u8; 64];
                            let _ = stream.read(&mut buf);
                        }
                        reset(stream);
                    }
                    Fault::SmtpError => {
                        let _ = stream.write_all(b"554 no service for you\r\n");
                    }
                    Fault::Smtp421 => {
                        let _ = stream.write_all(b"220 flaky ESMTP\r\n");
                        stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                        let mut buf = [0u8; 512];
                        while let Ok(n) = stream.read(&mut buf) {
                            if n == 0 || stream.write_all(b"421 try again later\r\n").is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        FaultServer { port, connections, stop }
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A port nobody listens on: bound, then closed.
fn refused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn service(channels: Value) -> (MemoryAlertingService, Arc<MemoryManager>) {
    let m = host_manager();
    let cfg = json!({"alert_cooldown_minutes": 0, "hysteresis": 0, "channels": channels});
    let clock = Arc::new(ManualClock::default());
    let svc = MemoryAlertingService::with_source(AlertConfig::from_json(&cfg).unwrap(), m.clone(), clock).unwrap();
    (svc, m)
}

/// Raises the usage to 91% and back to 50% `n` times; no `check_and_alert` may take long,
/// whatever the endpoint does (its timeout is 1 s, so one that waited would show).
fn checks_never_block(svc: &MemoryAlertingService, m: &MemoryManager, n: usize) {
    for i in 0..n {
        let pct = if i % 2 == 0 { 91.0 } else { 50.0 };
        m.update_host_reading((pct * 10.0) as u64, 0, None).unwrap();
        let t = Instant::now();
        svc.check_and_alert().unwrap();
        assert!(t.elapsed() < Duration::from_millis(1000), "check_and_alert waited {:?}", t.elapsed());
    }
}

/// Waits (bounded) for every queued delivery to finish, then returns the history rows that
/// went to a channel; the first raised alert must be among them.
fn settled(svc: &MemoryAlertingService) -> Vec<Value> {
    assert!(svc.flush(Some(Duration::from_secs(60))), "the deliveries did not finish");
    let hist = svc.get_alert_history(&json!({"limit": 1000})).unwrap().as_array().unwrap().clone();
    assert!(
        hist.iter().any(|a| a["kind"] == "alert" && !a["deliveries"].as_array().unwrap().is_empty()),
        "the raised alert has no delivery: {hist:?}"
    );
    hist.into_iter().filter(|a| !a["deliveries"].as_array().unwrap().is_empty()).collect()
}

/// Every delivery recorded failed, on `channel`, with an error text; returns how many attempts
/// there were in all.
fn all_failed(hist: &[Value], channel: &str, what: &str) -> usize {
    let mut attempts = 0;
    for a in hist {
        let d = a["deliveries"].as_array().unwrap();
        for x in d {
            assert_eq!(x["channel"], channel, "{what}: {x}");
            assert_eq!(x["outcome"], "failed", "{what}: {x}");
            assert!(!x["error"].as_str().unwrap_or("").is_empty(), "{what}: no error text: {x}");
        }
        attempts += d.len();
    }
    attempts
}

fn email(port: u16) -> Value {
    json!({"email": {"recipients": ["ops@example.com"], "threshold": "warning", "throttle_minutes": 0,
        "smtp": {"host": "127.0.0.1", "port": port, "tls": "none", "from": "mw@example.com", "timeout": 1}}})
}

fn webhook(port: u16) -> Value {
    json!({"webhook": {"url": format!("http://127.0.0.1:{port}/hook"), "threshold": "warning",
        "throttle_minutes": 0, "timeout": 1, "retry_attempts": 2}})
}

#[test]
fn a_webhook_that_resets_the_connection_is_retried_and_every_attempt_recorded() {
    let s = FaultServer::start(Fault::Reset, false);
    let (svc, m) = service(webhook(s.port));
    checks_never_block(&svc, &m, 4);
    let hist = settled(&svc);
    let attempts = all_failed(&hist, "webhook", "reset");
    for a in &hist {
        assert_eq!(a["deliveries"].as_array().unwrap().len(), 3, "1 try + 2 retries: {a}");
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), attempts, "each attempt is one connection");
    let err = hist[0]["deliveries"][0]["error"].as_str().unwrap().to_lowercase();
    assert!(err.contains("reset") || err.contains("connection") || err.contains("io"), "{err}");
}

#[test]
fn a_refused_webhook_records_every_attempt() {
    let (svc, m) = service(webhook(refused_port()));
    checks_never_block(&svc, &m, 4);
    for a in settled(&svc) {
        assert_eq!(all_failed(std::slice::from_ref(&a), "webhook", "refused"), 3, "{a}");
    }
}

#[test]
fn smtp_faults_block_nothing_and_every_attempt_is_recorded() {
    for fault in [Some(Fault::Hang), Some(Fault::Reset), Some(Fault::SmtpError), Some(Fault::Smtp421), None] {
        let server = fault.map(|f| FaultServer::start(f, true));
        let port = server.as_ref().map_or_else(refused_port, |s| s.port);
        let what = format!("{fault:?}");
        let (svc, m) = service(email(port));
        checks_never_block(&svc, &m, 2);
        let hist = settled(&svc);
        let attempts = all_failed(&hist, "email", &what);
        if let Some(s) = &server {
            assert_eq!(s.connections.load(Ordering::SeqCst), attempts, "{what}: each attempt is one connection");
        }
        if fault == Some(Fault::Hang) {
            let err = hist[0]["deliveries"][0]["error"].as_str().unwrap().to_lowercase();
            assert!(err.contains("timed out") || err.contains("timeout"), "{what}: {err}");
        }
        // Closing the service does not wait for the endpoint either.
        let t = Instant::now();
        drop(svc);
        assert!(t.elapsed() < Duration::from_secs(5), "{what}: drop took {:?}", t.elapsed());
    }
}
