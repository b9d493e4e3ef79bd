//! ChunkedDatabaseProcessor on SQLite against its anchors, one run, side by side:
//!
//! - raw rusqlite iteration of the same SELECT, each row's values read into owned values as
//!   memwarden does (goal: memwarden >= 0.9x its speed), and the same summing only `score`;
//! - a Laravel-style OFFSET walk (`LIMIT 1000 OFFSET n`) (goal: memwarden >= 30x faster);
//! - peak resident memory walking 10x the rows (goal: <= 1.1x the peak at 1x), each in a
//!   child process so peaks do not mix.
//!
//! `MW_BENCH_ROWS` sets the table size (default 1,000,000); `MW_BENCH_OFFSET_ROWS` the OFFSET
//! walk's (default the same). Run with `cargo bench -p memwarden-core --bench chunk`.

use std::time::{Duration, Instant};

use memwarden_core::chunk::{Batch, ChunkConfig, ChunkedDatabaseProcessor, Handlers, QueryOptions, Value};

fn env_rows(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn make_table(path: &std::path::Path, rows: u64) {
    if path.exists() {
        return;
    }
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score INTEGER, active INTEGER);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
         INSERT INTO t SELECT x, printf('user-%015d', x), x % 1000, x % 2 FROM c;"
    ))
    .unwrap();
}

fn memwarden_sum(url: &str, prefetch: bool) -> i64 {
    let cfg = ChunkConfig::from_json(&serde_json::json!({"chunk_size": 1000, "prefetch": prefetch})).unwrap();
    let mut p = ChunkedDatabaseProcessor::open(url, cfg).unwrap();
    let mut sum = 0i64;
    let mut f = |b: &Batch| {
        for row in b.iter_rows() {
            if let Value::Int(s) = row[2] {
                sum += s;
            }
        }
        Ok(())
    };
    let mut h = Handlers { on_batch: &mut f, on_batch_tx: None, on_progress: None, on_error: None };
    p.process_query("SELECT id, name, score, active FROM t", &QueryOptions::default(), &mut h).unwrap();
    sum
}

fn raw_owned_sum(path: &std::path::Path) -> i64 {
    use rusqlite::types::ValueRef;
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c.prepare("SELECT id, name, score, active FROM t ORDER BY id").unwrap();
    let mut rows = st.query([]).unwrap();
    let mut sum = 0;
    let mut values: Vec<Value> = Vec::with_capacity(4000);
    while let Some(r) = rows.next().unwrap() {
        for i in 0..4 {
            values.push(match r.get_ref(i).unwrap() {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(x) => Value::Int(x),
                ValueRef::Real(x) => Value::Real(x),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        if values.len() == 4000 {
            for row in values.chunks(4) {
                if let Value::Int(s) = row[2] {
                    sum += s;
                }
            }
            values.clear();
        }
    }
    for row in values.chunks(4) {
        if let Value::Int(s) = row[2] {
            sum += s;
        }
    }
    sum
}

fn raw_score_sum(path: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c.prepare("SELECT id, name, score, active FROM t ORDER BY id").unwrap();
    let mut rows = st.query([]).unwrap();
    let mut sum = 0;
    while let Some(r) = rows.next().unwrap() {
        sum += r.get::<_, i64>(2).unwrap();
    }
    sum
}

fn offset_walk(path: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut sum = 0;
    let mut offset = 0;
    loop {
        let mut st = c.prepare_cached("SELECT id, name, score, active FROM t ORDER BY id LIMIT 1000 OFFSET ?").unwrap();
        let mut rows = st.query([offset]).unwrap();
        let mut n = 0;
        while let Some(r) = rows.next().unwrap() {
            let _name: String = r.get(1).unwrap();
            sum += r.get::<_, i64>(2).unwrap();
            n += 1;
        }
        if n == 0 {
            return sum;
        }
        offset += n;
    }
}

fn best_of(n: usize, mut f: impl FnMut() -> i64) -> (Duration, i64) {
    let mut best = Duration::MAX;
    let mut v = 0;
    for _ in 0..n {
        let t = Instant::now();
        v = f();
        best = best.min(t.elapsed());
    }
    (best, v)
}

fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().split(' ').next()?.parse().ok()).unwrap()
}

fn main() {
    // Child mode: walk a table and print the peak RSS.
    if let Ok(url) = std::env::var("MW_BENCH_CHILD_URL") {
        let sum = memwarden_sum(&url, false);
        println!("{} {sum}", peak_rss_kib());
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_rows("MW_BENCH_ROWS", 1_000_000);
    let dir = std::env::temp_dir().join("memwarden-bench-chunk");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("t{rows}.db"));
    make_table(&path, rows);
    let url = format!("sqlite://{}", path.display());
    let rate = |d: Duration| rows as f64 / d.as_secs_f64() / 1e6;

    println!("ChunkedDatabaseProcessor on SQLite, {rows} rows, chunks of 1000, best of 3");
    let (mw, s1) = best_of(3, || memwarden_sum(&url, false));
    let (mwp, s2) = best_of(3, || memwarden_sum(&url, true));
    let (raw, s3) = best_of(3, || raw_owned_sum(&path));
    let (raw_score, s4) = best_of(3, || raw_score_sum(&path));
    assert!(s1 == s2 && s2 == s3 && s3 == s4, "sums differ");
    println!("  memwarden process_query (keyset)             {:>8.2} M rows/s", rate(mw));
    println!("  memwarden process_query (keyset, prefetch)   {:>8.2} M rows/s", rate(mwp));
    println!("  anchor: rusqlite iteration, owned values     {:>8.2} M rows/s", rate(raw));
    println!("  anchor: rusqlite iteration, score only       {:>8.2} M rows/s", rate(raw_score));
    println!(
        "  ratio memwarden / rusqlite owned (goal >= 0.9x):           {:.2}x",
        raw.as_secs_f64() / mw.as_secs_f64()
    );
    println!(
        "  ratio memwarden prefetch / rusqlite owned:                 {:.2}x",
        raw.as_secs_f64() / mwp.as_secs_f64()
    );
    println!(
        "  ratio memwarden / rusqlite score only:                     {:.2}x",
        raw_score.as_secs_f64() / mw.as_secs_f64()
    );

    let offset_rows = env_rows("MW_BENCH_OFFSET_ROWS", rows);
    let opath = dir.join(format!("t{offset_rows}.db"));
    make_table(&opath, offset_rows);
    let ourl = format!("sqlite://{}", opath.display());
    let (ow, a) = best_of(1, || offset_walk(&opath));
    let (om, b) = best_of(1, || memwarden_sum(&ourl, false));
    assert_eq!(a, b);
    println!();
    println!("OFFSET walk (LIMIT 1000 OFFSET n), {offset_rows} rows");
    println!("  anchor: OFFSET walk                          {:>8.2} s", ow.as_secs_f64());
    println!("  memwarden keyset                             {:>8.2} s", om.as_secs_f64());
    println!(
        "  ratio (goal >= 30x faster):                                {:.1}x",
        ow.as_secs_f64() / om.as_secs_f64()
    );

    if std::env::var("MW_BENCH_RSS").as_deref() != Ok("0") {
        let big = rows * 10;
        let bpath = dir.join(format!("t{big}.db"));
        make_table(&bpath, big);
        let peak = |p: &std::path::Path| -> u64 {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .env("MW_BENCH_CHILD_URL", format!("sqlite://{}", p.display()))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).split(' ').next().unwrap().parse().unwrap()
        };
        let (p1, p10) = (peak(&path), peak(&bpath));
        println!();
        println!("Peak RSS walking the table (child processes)");
        println!("  {rows} rows: {:.1} MiB; {big} rows: {:.1} MiB", p1 as f64 / 1024.0, p10 as f64 / 1024.0);
        println!("  ratio 10x rows / 1x rows (goal <= 1.1x):                  {:.2}x", p10 as f64 / p1 as f64);
    }
}
