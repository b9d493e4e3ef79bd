//! check_and_alert() latency while every endpoint hangs against while they answer at once,
//! from one run. Each check flips usage between normal and warning so every call raises or
//! resolves an alert and queues a delivery (throttle and cooldown 0).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memwarden_core::{ManagerConfig, MemoryAlertingService, MemoryManager, Source};

fn server(hang: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                loop {
                    let mut len = 0;
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut b = vec![0; len];
                    let _ = r.read_exact(&mut b);
                    if hang {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                    let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    port
}

fn run(hang: bool, n: usize) -> f64 {
    let port = server(hang);
    let m = Arc::new(
        MemoryManager::new(ManagerConfig {
            source: Source::Host("host"),
            memory_limit: Some(1000),
            ..ManagerConfig::default()
        })
        .unwrap(),
    );
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let cfg = format!(
        r#"{{"alert_cooldown_minutes": 0, "hysteresis": 0, "queue_capacity": 100000, "channels": {{
          "slack": {{"webhook_url": "{}", "threshold": "warning", "throttle_minutes": 0, "timeout": 5}},
          "webhook": {{"url": "{}", "threshold": "warning", "throttle_minutes": 0, "timeout": 5}},
          "alertmanager": {{"url": "{}", "threshold": "warning", "throttle_minutes": 0, "timeout": 5}}}}}}"#,
        url("/slack"),
        url("/hook"),
        url("")
    );
    let svc = MemoryAlertingService::from_json(&cfg, Some(m.clone())).unwrap();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        m.update_host_reading(if i % 2 == 0 { 800 } else { 500 }, 0, None).unwrap();
        let t = Instant::now();
        svc.check_and_alert().unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    samples[n / 2]
}

fn main() {
    let n = 4000;
    // Interleaved, two rounds per side, the better median of each side (same rule for both).
    let (a1, h1, a2, h2) = (run(false, n), run(true, n), run(false, n), run(true, n));
    let (answer, hang) = (a1.min(a2), h1.min(h2));
    println!("check_and_alert median latency, {n} calls each (every call raises or resolves an alert)");
    println!("  endpoints answer at once: {answer:.2} us");
    println!("  endpoints hang:           {hang:.2} us");
    println!("  ratio hang / answer:      {:.3} (goal <= 1.2)", hang / answer);
    std::process::exit(0);
}
