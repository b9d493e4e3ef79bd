//! `memwarden monitor`, `analyze` and `plot` run as a user would run them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_memwarden");

fn memwarden(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run memwarden")
}

fn have_python() -> bool {
    Command::new("python3").arg("-c").arg("pass").status().is_ok_and(|s| s.success())
}

/// Lines of a child's stdout or stderr, delivered through a channel so reads can have a deadline.
fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line satisfying `pred` before `deadline` from now.
fn wait_line(rx: &mpsc::Receiver<String>, deadline: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
    let end = Instant::now() + deadline;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if pred(&l) => return Some(l),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|r| r.split_whitespace().next()?.parse().ok())
}

/// Python holding `mb` MB (written, so resident) until its stdin closes, then exiting with `code`.
fn python_holding(mb: u64, code: i32) -> String {
    format!("import sys; b = b'x' * ({mb} << 20); print('ready', flush=True); sys.stdin.read(); sys.exit({code})")
}

#[test]
fn a_monitored_command_shows_up_and_its_exit_status_is_ours() {
    if !have_python() {
        eprintln!("skipped: python3 not found");
        return;
    }
    let mut mw = Command::new(BIN)
        .args(["monitor", "--interval", "0.1", "--format", "json", "--", "python3", "-c", &python_holding(50, 3)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(mw.stdout.take().unwrap());
    let seen = wait_line(&rx, Duration::from_secs(30), |l| {
        serde_json::from_str::<Value>(l).ok().and_then(|v| v["current_mb"].as_f64()).is_some_and(|mb| mb >= 50.0)
    });
    drop(mw.stdin.take()); // python reads EOF and exits 3
    let status = mw.wait().unwrap();
    assert!(seen.is_some(), "no sample of 50 MB or more within 30 s");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn pid_rss_is_within_5_percent_of_proc_status() {
    if !have_python() {
        eprintln!("skipped: python3 not found");
        return;
    }
    let mut py = Command::new("python3")
        .args(["-c", &python_holding(64, 0)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(py.stdout.take().unwrap());
    assert!(wait_line(&rx, Duration::from_secs(30), |l| l == "ready").is_some());
    let pid = py.id();
    let out = memwarden(&["monitor", "--pid", &pid.to_string(), "--duration", "0", "--format", "json"]);
    let after = vm_rss_kb(pid).unwrap() as f64 * 1024.0;
    drop(py.stdin.take());
    py.wait().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = v["current_bytes"].as_f64().unwrap();
    assert!(ours > 64.0 * 1048576.0, "{ours}");
    assert!((ours - after).abs() / after < 0.05, "memwarden {ours} vs VmRSS {after}");
}

#[test]
fn json_lines_and_csv_parse() {
    let out = memwarden(&["monitor", "--interval", "0.1", "--duration", "0.3", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        for k in ["t", "unix_ms", "current_bytes", "peak_bytes", "limit_bytes", "usage_percent"] {
            assert!(r[k].is_number(), "{k} in {r}");
        }
        assert!(r["current_bytes"].as_u64().unwrap() <= r["limit_bytes"].as_u64().unwrap());
    }

    let out = memwarden(&[
        "monitor",
        "--interval",
        "0.1",
        "--duration",
        "0.2",
        "--format",
        "csv",
        "--pid",
        &std::process::id().to_string(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[..3], ["time", "t", "unix_ms"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert_eq!(r.len(), header.len());
        assert!(r[1..].iter().all(|c| c.parse::<f64>().is_ok()), "{r:?}");
    }
}

#[test]
fn table_is_the_seeds_live_table() {
    let out = memwarden(&["monitor", "--interval", "0.1", "--duration", "0.1"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for h in ["Time", "Current (MB)", "Peak (MB)", "Limit (MB)"] {
        assert!(text.contains(h), "{text}");
    }
    let widths: Vec<usize> = text.lines().map(|l| l.chars().count()).collect();
    assert_eq!(widths.len(), 6, "{text}"); // top, header, separator, 2 rows, bottom
    assert!(widths.iter().all(|w| *w == widths[0]), "{text}");
}

#[test]
fn export_analyze_plot_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("run.json");
    let svg = d.path().join("chart.svg");
    let fs = f.to_str().unwrap();
    let out = memwarden(&["monitor", "--interval", "0.1", "--duration", "0.5", "--export", fs, "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());

    let out = memwarden(&["analyze", fs, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["analysis"]["samples"], 6);
    assert_eq!(v["meta"]["target"], "system");
    assert_eq!(v["meta"]["limit_origin"], "physical");

    let out = memwarden(&["analyze", fs, "--verbose"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Average Usage:",
        "Peak Usage:",
        "Memory Efficiency:",
        "Potential Issues:",
        "Leak Trend:",
        "Efficiency = average / peak",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }

    let out = memwarden(&["plot", fs, "-o", svg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.contains("<svg") && chart.contains("</svg>"));
}

/// A hand-written export: 2 MB/min on 100 MB for 10 minutes, one spike at t = 300 s.
fn synthetic_leak(path: &std::path::Path) {
    let samples: Vec<Value> = (0..600)
        .map(|i| {
            let t = i as f64;
            let mut mb = 100.0 + 2.0 * t / 60.0 + 0.3 * (t * 1.3).sin();
            if i == 300 {
                mb += 80.0;
            }
            let b = (mb * 1048576.0) as u64;
            serde_json::json!({"t": t, "unix_ms": 1_700_000_000_000u64 + i * 1000, "current_bytes": b, "peak_bytes": b, "limit_bytes": 512u64 << 20})
        })
        .collect();
    let doc = serde_json::json!({
        "memwarden_monitor": 1,
        "meta": {"target": "pid 42", "interval": 1.0, "limit_bytes": 512u64 << 20, "limit_origin": "cgroup_v2",
                 "threshold": 80.0, "started_unix_ms": 1_700_000_000_000u64, "version": "0.1.0"},
        "samples": samples,
    });
    std::fs::write(path, doc.to_string()).unwrap();
}

#[test]
fn analyze_reports_a_steady_leak_within_5_percent_and_the_spike() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("leak.json");
    synthetic_leak(&f);
    let out = memwarden(&["analyze", f.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let leak = &v["analysis"]["leak"];
    let slope = leak["slope_mb_per_min"].as_f64().unwrap();
    assert!((slope - 2.0).abs() / 2.0 < 0.05, "{leak}");
    assert_eq!(leak["steady"], true);
    let spikes = v["analysis"]["spikes"].as_array().unwrap();
    assert_eq!(spikes.len(), 1, "{spikes:?}");
    assert_eq!(spikes[0]["t"], 300.0);
    let svg = d.path().join("leak.svg");
    assert!(memwarden(&["plot", f.to_str().unwrap(), "-o", svg.to_str().unwrap()]).status.success());
    let chart = std::fs::read_to_string(svg).unwrap();
    for needle in ["<svg", "limit (cgroup_v2)", "threshold 80%", "spike", "seconds since start"] {
        assert!(chart.contains(needle), "{needle} missing from the chart");
    }
}

fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

fn is_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// Checks one exposition line: `# HELP name text`, `# TYPE name kind` or `name{k="v",...} value`.
fn check_exposition_line(line: &str) {
    if let Some(rest) = line.strip_prefix("# HELP ") {
        assert!(is_metric_name(rest.split(' ').next().unwrap()), "{line}");
    } else if let Some(rest) = line.strip_prefix("# TYPE ") {
        let (name, kind) = rest.split_once(' ').unwrap();
        assert!(is_metric_name(name) && ["gauge", "counter", "untyped"].contains(&kind), "{line}");
    } else {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        assert!(is_metric_name(name), "{line}");
        let labels = labels.strip_suffix('}').unwrap();
        // k="v" pairs, values may contain escaped quotes.
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, v) = rest.split_once("=\"").unwrap();
            assert!(is_metric_name(k.trim_start_matches(',')), "{line}");
            let mut end = None;
            let mut esc = false;
            for (i, ch) in v.char_indices() {
                match (esc, ch) {
                    (true, _) => esc = false,
                    (false, '\\') => esc = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            rest = &v[end.expect("closing quote") + 1..];
        }
    }
}

#[test]
fn serve_answers_a_prometheus_scrape_and_sigterm_ends_cleanly() {
    let mut mw = Command::new(BIN)
        .args(["monitor", "--interval", "0.1", "--quiet", "--serve", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(mw.stderr.take().unwrap());
    let line = wait_line(&rx, Duration::from_secs(10), |l| l.contains("/metrics")).expect("serving line");
    let addr = line.split("http://").nth(1).unwrap().trim_end_matches("/metrics").to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let resp = http_get(&addr, "/metrics").unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/plain; version=0.0.4"), "{head}");
        if body.contains("process_resident_memory_bytes") || Instant::now() > deadline {
            break body.to_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(http_get(&addr, "/other").unwrap().starts_with("HTTP/1.1 404"));
    Command::new("kill").args(["-TERM", &mw.id().to_string()]).status().unwrap();
    let status = mw.wait().unwrap();
    for name in ["process_resident_memory_bytes", "memwarden_memory_limit_bytes", "memwarden_memory_usage_ratio"] {
        assert!(body.contains(&format!("# TYPE {name} gauge")), "{name}:\n{body}");
    }
    body.lines().for_each(check_exposition_line);
    assert!(status.success(), "SIGTERM should end the run cleanly: {status:?}");
}

/// An HTTP receiver on loopback: every request's head and body, answered 200.
fn http_receiver() -> (String, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let (mut len, mut line) = (0usize, String::new());
            let mut head = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = tx.send((head, String::from_utf8_lossy(&body).into_owned()));
        }
    });
    (base, rx)
}

/// Any machine uses more than 0.01% of its memory: the warning threshold is crossed at once.
fn monitor_crossing(extra: &[&str]) -> Output {
    let mut args = vec!["monitor", "--interval", "0.1", "--duration", "0.2", "--threshold", "0.01", "--quiet"];
    args.extend_from_slice(extra);
    let out = memwarden(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn an_alert_reaches_a_loopback_webhook() {
    let (base, rx) = http_receiver();
    monitor_crossing(&["--webhook", &format!("{base}/hook")]);
    let (head, body) = rx.recv_timeout(Duration::from_secs(20)).expect("webhook received nothing");
    assert!(head.starts_with("POST /hook"), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(body.contains("warning") || body.contains("critical") || body.contains("emergency"), "{v}");
}

#[test]
fn an_alert_reaches_a_loopback_slack_webhook() {
    let (base, rx) = http_receiver();
    monitor_crossing(&["--slack", &format!("{base}/services/T/B/X")]);
    let (head, body) = rx.recv_timeout(Duration::from_secs(20)).expect("slack webhook received nothing");
    assert!(head.starts_with("POST /services/T/B/X"), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(v.get("text").is_some() || v.get("attachments").is_some() || v.get("blocks").is_some(), "{v}");
}

#[test]
fn an_alert_reaches_a_loopback_smtp_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Just enough SMTP for one message: greet, accept every command, collect DATA.
        for s in listener.incoming().flatten() {
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let _ = w.write_all(b"220 test ESMTP\r\n");
            let (mut line, mut data, mut in_data) = (String::new(), String::new(), false);
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let reply: &[u8] = if in_data {
                    if line == ".\r\n" {
                        in_data = false;
                        b"250 queued\r\n"
                    } else {
                        data.push_str(&line);
                        b""
                    }
                } else {
                    let cmd = line.to_ascii_uppercase();
                    if cmd.starts_with("EHLO") {
                        b"250-test\r\n250 8BITMIME\r\n"
                    } else if cmd.starts_with("DATA") {
                        in_data = true;
                        b"354 go on\r\n"
                    } else if cmd.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n");
                        break;
                    } else {
                        b"250 ok\r\n"
                    }
                };
                let _ = w.write_all(reply);
                line.clear();
            }
            let _ = tx.send(data);
        }
    });
    let out = Command::new(BIN)
        .args(["monitor", "--interval", "0.1", "--duration", "0.2", "--threshold", "0.01", "--quiet"])
        .args(["--email", "ops@example.com"])
        .env("MEMWARDEN_SMTP_HOST", "127.0.0.1")
        .env("MEMWARDEN_SMTP_PORT", &port)
        .env("MEMWARDEN_SMTP_TLS", "none")
        .env("MEMWARDEN_SMTP_FROM", "memwarden@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = rx.recv_timeout(Duration::from_secs(20)).expect("no mail");
    assert!(data.contains("ops@example.com") && data.contains("memwarden@example.com"), "{data}");
}

#[test]
fn children_sums_the_process_tree() {
    if !have_python() {
        eprintln!("skipped: python3 not found");
        return;
    }
    // sh stays the parent (a second command follows), python is its child holding 50 MB.
    let script = format!("python3 -c \"{}\"; exit 0", python_holding(50, 0));
    let mut mw = Command::new(BIN)
        .args(["monitor", "--interval", "0.1", "--format", "json", "--children", "--", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(mw.stdout.take().unwrap());
    let seen = wait_line(&rx, Duration::from_secs(30), |l| {
        serde_json::from_str::<Value>(l).ok().and_then(|v| v["current_mb"].as_f64()).is_some_and(|mb| mb >= 50.0)
    });
    drop(mw.stdin.take());
    let status = mw.wait().unwrap();
    assert!(seen.is_some(), "the child's 50 MB never showed up in the tree's sum");
    assert!(status.success());
}

fn assert_clean_failure(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{needle}: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
}

#[test]
fn bad_input_is_a_clear_message_and_exit_code_1() {
    assert_clean_failure(
        &memwarden(&["monitor", "--pid", "999999999", "--duration", "0"]),
        "no process with pid 999999999",
    );
    assert_clean_failure(&memwarden(&["monitor", "--pid", "abc"]), "--pid must be a process id");
    assert_clean_failure(
        &memwarden(&["monitor", "--", "/nonexistent/memwarden-test-cmd"]),
        "cannot start command '/nonexistent/memwarden-test-cmd'",
    );
    for iv in ["0", "-1", "-0.5", "abc", "inf"] {
        assert_clean_failure(
            &memwarden(&["monitor", &format!("--interval={iv}")]),
            &format!("--interval must be a number of seconds > 0, got '{iv}'"),
        );
    }
    assert_clean_failure(&memwarden(&["monitor", "--threshold", "150"]), "--threshold must be a percentage");
    assert_clean_failure(
        &memwarden(&["monitor", "--duration", "0", "--export", "/nonexistent-dir/run.json"]),
        "cannot write export file '/nonexistent-dir/run.json'",
    );
    assert_clean_failure(&memwarden(&["monitor", "--webhook", "not a url", "--duration", "0"]), "webhook");
    assert_clean_failure(&memwarden(&["monitor", "--pid", "1", "--", "true"]), "not both");

    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(p("empty.json"), "").unwrap();
    std::fs::write(p("foreign.json"), r#"{"name": "something else"}"#).unwrap();
    std::fs::write(p("garbage.json"), "PK\x03\x04 not json").unwrap();
    synthetic_leak(std::path::Path::new(&p("whole.json")));
    let whole = std::fs::read(p("whole.json")).unwrap();
    std::fs::write(p("truncated.json"), &whole[..whole.len() * 2 / 3]).unwrap();
    for (file, needle) in [
        ("empty.json", "is empty"),
        ("truncated.json", "is truncated"),
        ("foreign.json", "is not a memwarden monitor export"),
        ("garbage.json", "is not a memwarden monitor export"),
        ("absent.json", "cannot read"),
    ] {
        assert_clean_failure(&memwarden(&["analyze", &p(file)]), needle);
        assert_clean_failure(&memwarden(&["plot", &p(file), "-o", &p("x.svg")]), needle);
    }
    assert_clean_failure(
        &memwarden(&["plot", &p("whole.json"), "-o", "/nonexistent-dir/c.svg"]),
        "cannot write chart '/nonexistent-dir/c.svg'",
    );
}

/// Runs `memwarden monitor --pid <a process of ours>` as another user: refused, not read.
#[test]
fn a_pid_that_is_not_ours_is_refused() {
    let me = std::process::id().to_string();
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|u| u.split_whitespace().nth(1) == Some("0"));
    let out: Output = if root {
        match Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN, "monitor", "--pid", &me, "--duration", "0"])
            .output()
        {
            Ok(o) if !String::from_utf8_lossy(&o.stderr).contains("setpriv:") => o,
            _ => {
                eprintln!("skipped: running as root and setpriv cannot switch to nobody");
                return;
            }
        }
    } else {
        memwarden(&["monitor", "--pid", "1", "--duration", "0"])
    };
    assert_clean_failure(&out, "belongs to another user");
}

#[test]
fn a_killed_monitor_leaves_a_readable_export() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("run.json");
    let mut mw = Command::new(BIN)
        .args(["monitor", "--interval", "0.05", "--quiet", "--export-every", "1", "--export", f.to_str().unwrap()])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Header line, then one whole line per sample.
    let samples = |f: &std::path::Path| {
        std::fs::read_to_string(f)
            .ok()
            .map(|t| t.split_inclusive('\n').filter(|l| l.ends_with('\n')).count().max(1) - 1)
    };
    while samples(&f).unwrap_or(0) < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    mw.kill().unwrap(); // SIGKILL: no chance to finish the file
    mw.wait().unwrap();
    assert!(samples(&f).unwrap_or(0) >= 5);
    let out = memwarden(&["analyze", f.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let leftovers: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}"); // appended in place: no temp files

    // A write cut mid-line (killed in the middle of one): the reader drops that line only.
    let whole = std::fs::read(&f).unwrap();
    let whole = &whole[..whole.iter().rposition(|&b| b == b'\n').unwrap() + 1]; // whole lines only
    let n = whole.iter().filter(|&&b| b == b'\n').count() - 1;
    let cut = whole.len() - 7;
    std::fs::write(&f, &whole[..cut]).unwrap();
    let out = memwarden(&["analyze", f.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["analysis"]["samples"], n - 1);
}

#[test]
fn demo_processes_rows_and_writes_analysis_and_chart() {
    let d = tempfile::tempdir().unwrap();
    let out = memwarden(&["demo", "--rows", "30000", "--chunk-size", "1000", "--out", d.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["Rows processed", "30000 in 30 chunks", "Rows/s", "Peak memory", "States seen", "Pool", "Container"]
    {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("100.0% 30000/30000 rows"), "{err}");
    assert!(std::fs::read_to_string(d.path().join("chart.svg")).unwrap().contains("<svg"));
    assert!(std::fs::read_to_string(d.path().join("analysis.txt")).unwrap().contains("Average Usage:"));
    // Its samples are a valid export for analyze.
    let out = memwarden(&["analyze", d.path().join("monitor.json").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// PNG signature, then width and height from the decoded image.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG signature");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("PNG header decodes");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size fits in memory")];
    let frame = reader.next_frame(&mut buf).expect("PNG image data decodes");
    // Something was drawn: not a single flat colour.
    let px = &buf[..frame.buffer_size()];
    assert!(px.chunks(3).any(|p| p != &px[..3]), "the PNG is blank");
    (frame.width, frame.height)
}

#[test]
fn plot_writes_a_png_of_the_requested_size() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("leak.json");
    synthetic_leak(&f);
    let fs = f.to_str().unwrap();
    let png = d.path().join("chart.png");
    let out = memwarden(&["plot", fs, "-o", png.to_str().unwrap(), "--size", "640x320"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(png_size(&std::fs::read(&png).unwrap()), (640, 320));
    // --format png whatever the name; the default size.
    let other = d.path().join("chart.img");
    let out = memwarden(&["plot", fs, "-o", other.to_str().unwrap(), "--format", "png"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(png_size(&std::fs::read(&other).unwrap()), (1000, 500));
    // --format svg wins over a .png name.
    let svg = d.path().join("really-svg.png");
    assert!(memwarden(&["plot", fs, "-o", svg.to_str().unwrap(), "--format", "svg"]).status.success());
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let out = memwarden(&["plot", fs, "-o", png.to_str().unwrap(), "--size", "5x5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WIDTHxHEIGHT"));
}
