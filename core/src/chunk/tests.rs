//! The processor against real databases: SQLite always; PostgreSQL and MariaDB when they
//! answer (`MEMWARDEN_TEST_POSTGRES_URL`, `MEMWARDEN_TEST_MYSQL_URL`); with
//! `MEMWARDEN_REQUIRE_SERVICES=1` a missing server fails instead of skipping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use super::*;

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A table of `n` rows (`id` 1..=n, `name`, `score` = id % 100, `active` = 1) in one database,
/// plus a second connection for the callbacks' own writes. Dropping it drops the table.
struct Db {
    url: String,
    table: String,
    writer: Box<dyn Backend + Send>,
}

impl Db {
    fn exec(&mut self, sql: &str) {
        self.writer.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    fn cfg(&self, extra: serde_json::Value) -> ChunkConfig {
        let mut base = json!({"chunk_size": 100, "retry_delay": 0.0});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        ChunkConfig::from_json(&base).unwrap()
    }
    fn open(&self, extra: serde_json::Value) -> ChunkedDatabaseProcessor {
        ChunkedDatabaseProcessor::open(&self.url, self.cfg(extra)).unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.writer.execute(&format!("DROP TABLE IF EXISTS {}", self.table));
    }
}

fn fill(kind: Dialect, table: &str, n: u64) -> Vec<String> {
    let ddl = match kind {
        Dialect::Sqlite => {
            format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, score INTEGER, active INTEGER)")
        }
        _ => format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(64), score INTEGER, active INTEGER)"),
    };
    let fill = match kind {
        Dialect::Postgres => {
            format!("INSERT INTO {table} SELECT g, 'name-' || g, g % 100, 1 FROM generate_series(1, {n}) g")
        }
        Dialect::Sqlite => format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
             INSERT INTO {table} SELECT x, 'name-' || x, x % 100, 1 FROM c"
        ),
        Dialect::Mysql => format!(
            "INSERT INTO {table} WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
             SELECT x, CONCAT('name-', x), x % 100, 1 FROM c"
        ),
    };
    vec![ddl, fill]
}

fn service(var: &str, default: &str) -> Option<String> {
    let url = std::env::var(var).unwrap_or_else(|_| default.to_string());
    let spec = ConnSpec::parse(&url, None, None).unwrap();
    match NativeConnector::new(spec, Duration::from_secs(3)).connect() {
        Ok(_) => Some(url),
        Err(e) => {
            if std::env::var("MEMWARDEN_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{var}: {url} is required (MEMWARDEN_REQUIRE_SERVICES=1) but unreachable: {e}");
            }
            eprintln!("SKIPPED: {url} is unreachable ({e}); set {var} to test against it");
            None
        }
    }
}

/// Every database the tests can reach, each with a fresh table of `n` rows.
fn databases(n: u64) -> Vec<Db> {
    let mut out = Vec::new();
    let dir = std::env::temp_dir().join(unique("mw-chunk"));
    std::fs::create_dir_all(&dir).unwrap();
    let urls = [
        Some(format!("sqlite://{}", dir.join("t.db").display())),
        service("MEMWARDEN_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"),
        service("MEMWARDEN_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
    ];
    for url in urls.into_iter().flatten() {
        let spec = ConnSpec::parse(&url, None, None).unwrap();
        let connector = NativeConnector::new(spec, Duration::from_secs(3));
        let mut writer = connector.connect().unwrap();
        let table = unique("mw_t");
        match connector.dialect() {
            Dialect::Sqlite => writer.execute("PRAGMA journal_mode=WAL").unwrap(),
            // MariaDB stops recursive CTEs at 1000 rows by default (MySQL: cte_max_recursion_depth).
            Dialect::Mysql => {
                let _ = writer.execute("SET SESSION max_recursive_iterations = 100000000");
                let _ = writer.execute("SET SESSION cte_max_recursion_depth = 100000000");
            }
            Dialect::Postgres => {}
        }
        for sql in fill(connector.dialect(), &table, n) {
            writer.execute(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        out.push(Db { url, table, writer });
    }
    out
}

fn ids(b: &Batch) -> Vec<i64> {
    let k = b.column_index("id").unwrap();
    b.iter_rows()
        .map(|r| match &r[k] {
            Value::Int(i) => *i,
            other => panic!("id is {other:?}"),
        })
        .collect()
}

fn run_collect(
    p: &mut ChunkedDatabaseProcessor,
    sql: &str,
    on: &mut dyn FnMut(&[i64]) -> Result<()>,
) -> Result<Progress> {
    let mut f = |b: &Batch| on(&ids(b));
    let mut h = Handlers { on_batch: &mut f, on_batch_tx: None, on_progress: None, on_error: None };
    p.process_query(sql, &QueryOptions::default(), &mut h)
}

fn counts(seen: &[i64]) -> HashMap<i64, usize> {
    let mut m = HashMap::new();
    for &i in seen {
        *m.entry(i).or_default() += 1;
    }
    m
}

#[test]
fn updating_the_filtered_column_skips_nothing_and_repeats_nothing() {
    for mut db in databases(1000) {
        let url = db.url.clone();
        let table = db.table.clone();
        let mut p = db.open(json!({}));
        let mut seen = Vec::new();
        let stats = run_collect(&mut p, &format!("SELECT * FROM {table} WHERE active = 1"), &mut |ids| {
            seen.extend_from_slice(ids);
            // The seed's pattern: the callback updates what the query filters on.
            let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
            db.exec(&format!("UPDATE {table} SET active = 0 WHERE id IN ({list})"));
            Ok(())
        })
        .unwrap();
        let c = counts(&seen);
        assert_eq!(c.len(), 1000, "{url}: every row once");
        assert!(c.values().all(|&n| n == 1), "{url}: no row twice");
        assert_eq!(stats.processed, 1000);
        assert_eq!(stats.key_column.as_deref(), Some("id"), "primary key detected");
        assert_eq!(stats.chunks, 10);

        // The same walk with OFFSET loses half the rows: the laravel/framework#23277 bug.
        db.exec(&format!("UPDATE {table} SET active = 1"));
        let mut p = db.open(json!({"pagination": "offset"}));
        let mut seen = Vec::new();
        let stats = run_collect(&mut p, &format!("SELECT * FROM {table} WHERE active = 1"), &mut |ids| {
            seen.extend_from_slice(ids);
            let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
            db.exec(&format!("UPDATE {table} SET active = 0 WHERE id IN ({list})"));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 500, "{url}: OFFSET walk skips rows");
        assert!(stats.warnings.iter().any(|w| w.contains("offset")), "{:?}", stats.warnings);
    }
}

#[test]
fn deletes_and_inserts_during_the_run() {
    for mut db in databases(1000) {
        let table = db.table.clone();
        let mut p = db.open(json!({}));
        let mut seen = Vec::new();
        run_collect(&mut p, &format!("SELECT id, name FROM {table}"), &mut |ids| {
            seen.extend_from_slice(ids);
            let last = *ids.last().unwrap();
            // Delete the next 10 rows ahead; insert one row ahead (beyond the end) and one
            // behind the current key.
            db.exec(&format!("DELETE FROM {table} WHERE id > {last} AND id <= {}", last + 10));
            if last <= 1000 {
                db.exec(&format!(
                    "INSERT INTO {table} (id, name, score, active) VALUES ({}, 'ahead', 1, 1), ({}, 'behind', 1, 1)",
                    100_000 + last,
                    -last
                ));
            }
            Ok(())
        })
        .unwrap();
        let c = counts(&seen);
        assert!(c.values().all(|&n| n == 1), "{}: a row seen twice", db.url);
        // The same walk simulated: chunks of 100 after the last key, the callback's deletes and
        // inserts applied before the next chunk is read.
        let mut rows: std::collections::BTreeSet<i64> = (1..=1000).collect();
        let mut expected = Vec::new();
        let mut after = i64::MIN;
        loop {
            let chunk: Vec<i64> = rows.range(after + 1..).take(100).copied().collect();
            let Some(&last) = chunk.last() else { break };
            expected.extend_from_slice(&chunk);
            for id in last + 1..=last + 10 {
                rows.remove(&id);
            }
            if last <= 1000 {
                rows.insert(100_000 + last);
                rows.insert(-last);
            }
            after = last;
        }
        assert_eq!(seen, expected, "{}", db.url);
        assert!(seen.iter().any(|&i| i > 100_000), "{}: rows inserted ahead are processed", db.url);
        assert!(seen.iter().all(|&i| i > 0), "{}: rows inserted behind are not", db.url);
    }
}

#[test]
fn parallel_ranges_cover_every_key_exactly_once() {
    for db in databases(2000) {
        let table = db.table.clone();
        // Gaps in the keys must not matter.
        let mut db = db;
        db.exec(&format!("DELETE FROM {table} WHERE id % 7 = 0"));
        let mut p = db.open(json!({"parallel_chunks": 3, "chunk_size": 64}));
        let mut seen = Vec::new();
        let stats = run_collect(&mut p, &format!("SELECT * FROM {table}"), &mut |ids| {
            seen.extend_from_slice(ids);
            Ok(())
        })
        .unwrap();
        let c = counts(&seen);
        let expected: Vec<i64> = (1..=2000).filter(|i| i % 7 != 0).collect();
        assert_eq!(c.len(), expected.len(), "{}", db.url);
        assert!(expected.iter().all(|i| c.get(i) == Some(&1)), "{}", db.url);
        assert_eq!(stats.workers, 3, "{}", db.url);
    }
}

#[test]
fn a_failing_chunk_is_retried_then_the_error_callback_decides() {
    for db in databases(500) {
        let table = db.table.clone();
        let sql = format!("SELECT * FROM {table}");
        // Fails twice on chunk 3, then succeeds: retried, nothing lost.
        let mut p = db.open(json!({"retry_attempts": 3}));
        let mut calls = 0;
        let mut seen = Vec::new();
        let stats = run_collect(&mut p, &sql, &mut |ids| {
            if ids[0] == 201 {
                calls += 1;
                if calls <= 2 {
                    return Err(Error::callback("injected failure"));
                }
            }
            seen.extend_from_slice(ids);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 500);
        assert_eq!(stats.retries, 2);

        // Always fails on chunk 3: after the retries the error callback is asked.
        let mut p = db.open(json!({"retry_attempts": 1}));
        let mut asked = Vec::new();
        let mut seen = 0;
        let mut on_batch = |b: &Batch| {
            if ids(b)[0] == 201 {
                return Err(Error::callback("always fails"));
            }
            seen += b.len();
            Ok(())
        };
        let mut on_error = |e: &Error, c: &ChunkInfo| {
            asked.push((e.message().to_string(), c.clone()));
            Ok(true)
        };
        let mut h =
            Handlers { on_batch: &mut on_batch, on_batch_tx: None, on_progress: None, on_error: Some(&mut on_error) };
        let stats = p.process_query(&sql, &QueryOptions::default(), &mut h).unwrap();
        assert_eq!(seen, 400);
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].0, "always fails");
        assert_eq!(asked[0].1.attempts, 2);
        assert_eq!(asked[0].1.first_key, Some(Value::Int(201)));
        assert_eq!(asked[0].1.last_key, Some(Value::Int(300)));
        assert_eq!(asked[0].1.to_string(), "#3 (keys 201..300, 100 rows)");
        assert_eq!((stats.failed_chunks, stats.failed_rows, stats.processed), (1, 100, 400));

        // The error callback says stop: the run fails with the chunk's error.
        let mut p = db.open(json!({"retry_attempts": 0}));
        let mut on_batch = |b: &Batch| if ids(b)[0] == 201 { Err(Error::callback("stop here")) } else { Ok(()) };
        let mut on_error = |_: &Error, _: &ChunkInfo| Ok(false);
        let mut h =
            Handlers { on_batch: &mut on_batch, on_batch_tx: None, on_progress: None, on_error: Some(&mut on_error) };
        let e = p.process_query(&sql, &QueryOptions::default(), &mut h).unwrap_err();
        assert_eq!(e.message(), "stop here");
        assert_eq!(p.stats().processed, 200);
    }
}

#[test]
fn progress_both_ways_and_the_total_estimate() {
    let db = databases(1000).into_iter().next().unwrap();
    let mut p = db.open(json!({"chunk_size": 250}));
    let mut seen = Vec::new();
    let mut on_batch = |_: &Batch| Ok(());
    let mut on_progress = |s: &Progress| {
        seen.push((s.processed, s.total, s.estimated_remaining(), s.memory_usage_mb()));
        Ok(())
    };
    let mut h =
        Handlers { on_batch: &mut on_batch, on_batch_tx: None, on_progress: Some(&mut on_progress), on_error: None };
    p.process_query(&format!("SELECT * FROM {}", db.table), &QueryOptions::default(), &mut h).unwrap();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![250, 500, 750, 1000]);
    assert!(seen.iter().all(|s| s.1 == 1000), "SQLite counts exactly: {seen:?}");
    assert_eq!(seen[3].2, 0.0);
    assert!(seen[0].3 > 1.0, "memory_usage is the process's MB");
    let j = p.stats().to_json();
    for k in ["processed", "total", "memory_usage", "estimated_remaining", "rows_per_second", "percent"] {
        assert!(j.get(k).is_some(), "{k}");
    }
}

#[test]
fn a_chunk_over_the_memory_limit_shrinks_the_chunk_size() {
    let db = databases(2000).into_iter().next().unwrap();
    // 100 rows of 4 values are ~15 KB held; a 4 KB budget must shrink the size.
    let manager = Arc::new(MemoryManager::new(Default::default()).unwrap());
    let mut p = db.open(json!({"chunk_size": 100, "memory_limit": 4096}));
    p.set_manager(Some(manager));
    let mut sizes = Vec::new();
    let stats = run_collect(&mut p, &format!("SELECT * FROM {}", db.table), &mut |ids| {
        sizes.push(ids.len());
        Ok(())
    })
    .unwrap();
    assert_eq!(stats.processed, 2000);
    assert!(stats.chunk_size_reductions >= 2, "{stats:?}");
    assert!(stats.cleanups >= 2);
    assert!(sizes.windows(2).any(|w| w[1] < w[0]), "{sizes:?}");
    assert!(stats.chunk_size < 100);
}

#[test]
fn a_checkpoint_resumes_after_the_last_finished_chunk() {
    for db in databases(1000) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ckpt");
        let sql = format!("SELECT * FROM {}", db.table);
        let cfg = json!({"checkpoint": path.to_str().unwrap(), "retry_attempts": 0});
        let mut p = db.open(cfg.clone());
        let mut first = Vec::new();
        let e = run_collect(&mut p, &sql, &mut |ids| {
            if ids[0] == 501 {
                return Err(Error::callback("crash in chunk 6"));
            }
            first.extend_from_slice(ids);
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e.message(), "crash in chunk 6");
        assert!(path.exists());
        let mut p = db.open(cfg.clone());
        let mut second = Vec::new();
        let stats = run_collect(&mut p, &sql, &mut |ids| {
            second.extend_from_slice(ids);
            Ok(())
        })
        .unwrap();
        assert!(stats.resumed);
        assert_eq!(first, (1..=500).collect::<Vec<_>>(), "{}", db.url);
        assert_eq!(second, (501..=1000).collect::<Vec<_>>(), "{}: no finished chunk repeated", db.url);
        assert_eq!(stats.processed, 1000, "the count carries over");
        assert!(!path.exists(), "a complete run removes its checkpoint");

        // A checkpoint of another query is refused, not misapplied.
        std::fs::write(&path, r#"{"version":1,"query":"SELECT 1","key_column":"id","ranges":[{}]}"#).unwrap();
        let mut p = db.open(cfg);
        let e = run_collect(&mut p, &sql, &mut |_| Ok(())).unwrap_err();
        assert!(e.message().contains("another query"), "{e}");
    }
}

/// Child half of the kill -9 test: walks the table slowly with a checkpoint, appending every
/// id it handles to a log file. Runs only when the parent test starts it.
#[test]
#[ignore]
fn kill_child() {
    let Ok(url) = std::env::var("MW_KILL_URL") else {
        // Not a test of its own: `resume_after_kill_9` and `scripts/stress` start it with the
        // variables set. Run by hand (`--ignored`), it says so instead of passing silently.
        eprintln!("kill_child: the child half of resume_after_kill_9; nothing to do without MW_KILL_URL");
        return;
    };
    let table = std::env::var("MW_KILL_TABLE").unwrap();
    let log = std::env::var("MW_KILL_LOG").unwrap();
    let parallel: u64 = std::env::var("MW_KILL_PARALLEL").ok().and_then(|p| p.parse().ok()).unwrap_or(2);
    let sleep_ms: u64 = std::env::var("MW_KILL_SLEEP_MS").ok().and_then(|p| p.parse().ok()).unwrap_or(20);
    let cfg =
        json!({"chunk_size": 50, "checkpoint": std::env::var("MW_KILL_CKPT").unwrap(), "parallel_chunks": parallel});
    let mut p = ChunkedDatabaseProcessor::open(&url, ChunkConfig::from_json(&cfg).unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    run_collect(&mut p, &format!("SELECT * FROM {table}"), &mut |ids| {
        use std::io::Write;
        let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
        f.write_all(text.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(sleep_ms));
        Ok(())
    })
    .unwrap();
}

#[test]
fn resume_after_kill_9() {
    for db in databases(2000) {
        let dir = tempfile::tempdir().unwrap();
        let (log, ckpt) = (dir.path().join("seen.log"), dir.path().join("run.ckpt"));
        let spawn = || {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "chunk::tests::kill_child", "--ignored", "--nocapture"])
                .env("MW_KILL_URL", &db.url)
                .env("MW_KILL_TABLE", &db.table)
                .env("MW_KILL_LOG", &log)
                .env("MW_KILL_CKPT", &ckpt)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut child = spawn();
        // Let it finish some chunks, then kill -9 it mid-run.
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::read_to_string(&log).map(|t| t.lines().count()).unwrap_or(0) < 600 {
            assert!(Instant::now() < deadline, "child made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        let before = std::fs::read_to_string(&log).unwrap().lines().count();
        assert!(before < 2000, "killed before the end");
        assert!(ckpt.exists(), "the checkpoint survives the kill");
        let status = spawn().wait().unwrap();
        assert!(status.success());
        let seen: Vec<i64> = std::fs::read_to_string(&log).unwrap().lines().map(|l| l.parse().unwrap()).collect();
        let c = counts(&seen);
        assert_eq!(c.len(), 2000, "{}: every row at least once", db.url);
        let twice = c.values().filter(|&&n| n > 1).count();
        assert!(c.values().all(|&n| n <= 2));
        // At most parallel_chunks (2) chunks of 50 rows are seen again.
        assert!(twice <= 2 * 50, "{}: {twice} rows seen twice", db.url);
        assert!(!ckpt.exists());
    }
}

/// The kill -9 loop of the fault tests: `kills` times, starts a child run (`spawn`), waits for 1
/// to 3 more chunks of `chunk` rows of progress (`progress()`: rows handed to the callback so
/// far, or the end), sleeps a random 0-3 ms and kills it with SIGKILL; stops early once
/// `finished()`. Then runs a child once more, which must finish. Returns the kills that hit a
/// running child.
fn random_kill_9_then_resume(
    spawn: &dyn Fn() -> std::process::Child,
    progress: &dyn Fn() -> usize,
    rows: usize,
    chunk: usize,
    kills: usize,
    finished: &mut dyn FnMut() -> bool,
) -> usize {
    // A small xorshift seeded from the clock: where each kill lands varies between runs.
    let mut rng = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut done_kills = 0;
    for _ in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let before = progress();
        let mut child = spawn();
        // Wait for 1 to 3 more chunks of progress (or the end), then kill -9.
        let want = before + chunk * (1 + (rng % 3) as usize);
        let deadline = Instant::now() + Duration::from_secs(60);
        while progress() < want.min(rows) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "child made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng % 3000));
        // Safety: a plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let st = child.wait().unwrap();
        if st.code().is_none() {
            done_kills += 1;
        }
        if finished() {
            break;
        }
    }
    let status = spawn().wait().unwrap();
    assert!(status.success(), "the final resume finishes");
    done_kills
}

/// `scripts/stress`: 20 (`MW_STRESS_KILLS`) random `kill -9` of a one-worker chunked run over
/// a checkpoint, each followed by a resume, then a run to the end: no row is lost and each
/// kill repeats at most the one chunk that was in its callback.
#[test]
#[ignore]
fn stress_random_kill_9_then_resume() {
    let kills: usize = std::env::var("MW_STRESS_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(20);
    let rows = 4000u64;
    for db in databases(rows) {
        let dir = tempfile::tempdir().unwrap();
        let (log, ckpt) = (dir.path().join("seen.log"), dir.path().join("run.ckpt"));
        let spawn = || {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "chunk::tests::kill_child", "--ignored", "--nocapture"])
                .env("MW_KILL_URL", &db.url)
                .env("MW_KILL_TABLE", &db.table)
                .env("MW_KILL_LOG", &log)
                .env("MW_KILL_CKPT", &ckpt)
                .env("MW_KILL_PARALLEL", "1")
                .env("MW_KILL_SLEEP_MS", "2")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let lines = || std::fs::read_to_string(&log).map(|t| t.lines().count()).unwrap_or(0);
        let done_kills = random_kill_9_then_resume(&spawn, &lines, rows as usize, 50, kills, &mut || {
            !ckpt.exists() && lines() >= rows as usize
        });
        let seen: Vec<i64> = std::fs::read_to_string(&log).unwrap().lines().map(|l| l.parse().unwrap()).collect();
        let c = counts(&seen);
        assert_eq!(c.len(), rows as usize, "{}: every row at least once", db.url);
        let repeated = c.values().map(|&n| n - 1).sum::<usize>();
        assert!(repeated <= done_kills * 50, "{}: {repeated} repeats after {done_kills} kills", db.url);
        println!(
            "{}: {done_kills} kill -9, {rows} rows all seen, {repeated} rows seen again (limit {})",
            db.url,
            done_kills * 50
        );
        assert!(!ckpt.exists());
    }
}

/// Runs `sql` on the writer and returns the first column of every row as text.
fn column(db: &mut Db, sql: &str) -> Vec<String> {
    let b = db.writer.query(sql, &[], None, true).unwrap_or_else(|e| panic!("{sql}: {e}"));
    b.iter_rows()
        .map(|r| match &r[0] {
            Value::Int(i) => i.to_string(),
            Value::Text(t) => t.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// The server drops the processor's connection while it runs (PostgreSQL:
/// `pg_terminate_backend` from a second connection; MariaDB: `KILL`): the chunk is retried on a
/// new connection and no row is lost or repeated. The processor connects as a user of its own,
/// so only its sessions are killed.
#[test]
fn a_connection_dropped_mid_run_is_replaced_and_no_row_is_lost() {
    for mut db in databases(1000) {
        if db.url.starts_with("sqlite") {
            continue; // no server to drop the connection
        }
        let pg = db.url.starts_with("postgres");
        let user = unique("mw_killed");
        if pg {
            db.exec(&format!("CREATE ROLE {user} LOGIN"));
            db.exec(&format!("GRANT SELECT ON {} TO {user}", db.table));
        } else {
            let schema = column(&mut db, "SELECT DATABASE()").remove(0);
            for host in ["%", "localhost", "127.0.0.1"] {
                db.exec(&format!("CREATE USER '{user}'@'{host}'"));
                db.exec(&format!("GRANT SELECT ON {schema}.* TO '{user}'@'{host}'"));
            }
        }
        let sql = format!("SELECT * FROM {}", db.table);
        for parallel in [1, 2] {
            let mut p =
                db.open(json!({"user": user, "retry_attempts": 3, "retry_delay": 0.01, "parallel_chunks": parallel}));
            let mut seen = Vec::new();
            let mut killed = 0;
            let stats = {
                let kill = |db: &mut Db| -> usize {
                    if pg {
                        column(
                            db,
                            &format!(
                                "SELECT pg_terminate_backend(pid)::int FROM pg_stat_activity WHERE usename = '{user}'"
                            ),
                        )
                        .len()
                    } else {
                        let ids =
                            column(db, &format!("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{user}'"));
                        for id in &ids {
                            let _ = db.writer.execute(&format!("KILL CONNECTION {id}"));
                        }
                        ids.len()
                    }
                };
                let url = db.url.clone();
                let db = &mut db;
                run_collect(&mut p, &sql, &mut |ids| {
                    seen.extend_from_slice(ids);
                    // Mid-run, with the processor's connections open: drop them all, twice.
                    if seen.len() == 300 || seen.len() == 700 {
                        killed += kill(db);
                    }
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{url} (parallel {parallel}): {e}"))
            };
            assert!(killed >= 2, "{}: the processor's sessions were found and killed ({killed})", db.url);
            let c = counts(&seen);
            assert_eq!(c.len(), 1000, "{} (parallel {parallel}): every row", db.url);
            assert!(c.values().all(|&n| n == 1), "{} (parallel {parallel}): no row twice", db.url);
            assert!(stats.retries >= 1, "{}: the dropped connection cost a retry", db.url);
            assert_eq!(stats.failed_chunks, 0);
        }
        if pg {
            db.exec(&format!("DROP OWNED BY {user}"));
            db.exec(&format!("DROP ROLE {user}"));
        } else {
            for host in ["%", "localhost", "127.0.0.1"] {
                db.exec(&format!("DROP USER '{user}'@'{host}'"));
            }
        }
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let e =
        ChunkedDatabaseProcessor::open("postgres://u:pw@127.0.0.1:notaport/db", ChunkConfig::default()).err().unwrap();
    assert!(e.message().contains("port 'notaport'") && !e.message().contains("pw@"), "{e}");
    let e = ChunkedDatabaseProcessor::open(
        "postgres://nobody@127.0.0.1:1/db",
        ChunkConfig::from_json(&json!({"connect_timeout": 2})).unwrap(),
    )
    .err()
    .unwrap();
    assert_eq!(e.kind(), ErrorKind::Database);
    assert!(e.message().contains("could not connect to postgres://nobody@127.0.0.1:1/db"), "{e}");
    let e = ChunkConfig::from_json(&json!({"chunk_size": 0})).unwrap_err();
    assert!(e.message().contains("'chunk_size'"), "{e}");
    let e = ChunkConfig::from_json(&json!({"chunk_sise": 10})).unwrap_err();
    assert!(e.message().contains("did you mean 'chunk_size'"), "{e}");
    let e = ChunkConfig::from_json(&json!({"checkpoint": "/tmp/x", "pagination": "offset"})).unwrap_err();
    assert!(e.message().contains("keyset"), "{e}");

    for mut db in databases(10) {
        let t = db.table.clone();
        let mut p = db.open(json!({}));
        let e = run_collect(&mut p, &format!("SELEC * FROM {t}"), &mut |_| Ok(())).unwrap_err();
        assert!(e.message().contains("must be a SELECT"), "{e}");
        let e = run_collect(&mut p, &format!("SELECT * FROM {t} WHERE"), &mut |_| Ok(())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Database, "{}: {e}", db.url);
        assert!(e.message().starts_with("the query failed:"), "{e}");
        let e = run_collect(&mut p, &format!("SELECT name FROM {t}"), &mut |_| Ok(())).unwrap_err();
        assert!(e.message().contains("no column 'id'") && e.message().contains("key_column"), "{e}");
        db.exec(&format!("CREATE TABLE {t}_nopk (a INTEGER, b INTEGER)"));
        let e = run_collect(&mut p, &format!("SELECT * FROM {t}_nopk"), &mut |_| Ok(())).unwrap_err();
        assert!(e.message().contains("no primary key") && e.message().contains("key_column"), "{}: {e}", db.url);
        db.exec(&format!("DROP TABLE {t}_nopk"));
        let e = run_collect(&mut p, &format!("SELECT * FROM {t}"), &mut |_| Err(Error::callback("boom"))).unwrap_err();
        assert_eq!(e.message(), "boom");
    }
}

#[test]
fn values_keep_their_types() {
    for db in databases(3) {
        let mut p = db.open(json!({"key_column": "id"}));
        let mut rows = Vec::new();
        let mut f = |b: &Batch| {
            rows.extend(b.iter_rows().map(|r| r.to_vec()));
            Ok(())
        };
        let mut h = Handlers { on_batch: &mut f, on_batch_tx: None, on_progress: None, on_error: None };
        p.process_query(
            &format!("SELECT id, name, score * 1.5 AS half, NULL AS nada FROM {}", db.table),
            &QueryOptions::default(),
            &mut h,
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][0], Value::Int(1), "{}", db.url);
        assert_eq!(rows[0][1], Value::Text("name-1".into()));
        match &rows[0][2] {
            Value::Real(r) => assert_eq!(*r, 1.5),
            Value::Text(t) => assert_eq!(t.parse::<f64>().unwrap(), 1.5, "{}: decimals as text", db.url),
            other => panic!("{other:?}"),
        }
        assert_eq!(rows[0][3], Value::Null);
    }
}

#[test]
fn postgres_cursor_mode_streams_read_only() {
    let Some(db) = databases(700).into_iter().find(|d| d.url.starts_with("postgres")) else { return };
    let mut p = db.open(json!({"pagination": "cursor", "chunk_size": 200}));
    let mut sizes = Vec::new();
    let stats = run_collect(&mut p, &format!("SELECT * FROM {} ORDER BY id", db.table), &mut |ids| {
        sizes.push(ids.len());
        Ok(())
    })
    .unwrap();
    assert_eq!(sizes, vec![200, 200, 200, 100]);
    assert_eq!(stats.processed, 700);
    let sqlite = databases(5).into_iter().next().unwrap();
    let mut p = sqlite.open(json!({"pagination": "cursor"}));
    let e = run_collect(&mut p, &format!("SELECT * FROM {}", sqlite.table), &mut |_| Ok(())).unwrap_err();
    assert!(e.message().contains("PostgreSQL only"), "{e}");
}

// ---- the same-transaction mode (`checkpoint_table`) -------------------------------------

/// `INSERT INTO out (id, v) VALUES (..), ..` for `ids` with v = 2 * id, in the url's placeholders.
fn insert_out(url: &str, out: &str, ids: &[i64]) -> (String, Vec<Value>) {
    let pg = url.starts_with("postgres");
    let rows: Vec<String> = (0..ids.len())
        .map(|i| if pg { format!("(${}, ${})", 2 * i + 1, 2 * i + 2) } else { "(?, ?)".into() })
        .collect();
    let params = ids.iter().flat_map(|&i| [Value::Int(i), Value::Int(2 * i)]).collect();
    (format!("INSERT INTO {out} (id, v) VALUES {}", rows.join(", ")), params)
}

/// Per id in the output table, how many rows it has; checks every v = 2 * id.
fn out_counts(db: &mut Db, out: &str) -> HashMap<i64, usize> {
    assert_eq!(column(db, &format!("SELECT COUNT(*) FROM {out} WHERE v <> 2 * id")), vec!["0"]);
    column(db, &format!("SELECT id FROM {out}")).iter().fold(HashMap::new(), |mut m, id| {
        *m.entry(id.parse::<i64>().unwrap()).or_default() += 1;
        m
    })
}

fn tx_run(
    p: &mut ChunkedDatabaseProcessor,
    sql: &str,
    on: &mut dyn FnMut(&[i64], &mut ChunkTx<'_>) -> Result<()>,
    on_error: Option<ErrorFn<'_>>,
) -> Result<Progress> {
    let mut plain = |_: &Batch| -> Result<()> { panic!("on_batch is not called when on_batch_tx is set") };
    let mut f = |b: &Batch, tx: &mut ChunkTx<'_>| on(&ids(b), tx);
    let mut h = Handlers {
        on_batch: &mut plain,
        on_batch_tx: Some(&mut f),
        on_progress: None,
        on_error: on_error.map(|f| -> &mut dyn FnMut(&Error, &ChunkInfo) -> Result<bool> { f }),
    };
    p.process_query(sql, &QueryOptions::default(), &mut h)
}

/// Child half of the same-transaction kill -9 test: writes each chunk's ids into an output
/// table through the chunk's transaction, logs them (before the commit) and sleeps, so most
/// kills land in an open transaction. Runs only when the parent test starts it.
#[test]
#[ignore]
fn tx_kill_child() {
    let Ok(url) = std::env::var("MW_TXKILL_URL") else {
        eprintln!(
            "tx_kill_child: the child half of tx_mode_exactly_once_across_kill_9; nothing to do without MW_TXKILL_URL"
        );
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap();
    let (table, out, log) = (var("MW_TXKILL_TABLE"), var("MW_TXKILL_OUT"), var("MW_TXKILL_LOG"));
    let cfg = json!({"chunk_size": 50, "checkpoint_table": var("MW_TXKILL_CKPT"), "retry_attempts": 0});
    let mut p = ChunkedDatabaseProcessor::open(&url, ChunkConfig::from_json(&cfg).unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    tx_run(
        &mut p,
        &format!("SELECT * FROM {table}"),
        &mut |ids, tx| {
            use std::io::Write;
            let (sql, params) = insert_out(&url, &out, ids);
            tx.execute(&sql, &params)?;
            let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
            f.write_all(text.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(3));
            Ok(())
        },
        None,
    )
    .unwrap();
}

/// Issue 9's fault test: `MW_TX_KILLS` (20) random `kill -9` of a run in the same-transaction
/// mode, each followed by a resume: every input row's write is in the output table exactly once,
/// on every database.
#[test]
fn tx_mode_exactly_once_across_kill_9() {
    let kills: usize = std::env::var("MW_TX_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(20);
    // Each kill moves the run on by about one chunk of 50: enough rows that every kill lands mid-run.
    let rows = 3000usize.max(kills * 100);
    for mut db in databases(rows as u64) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("handed.log");
        let (url, table) = (db.url.clone(), db.table.clone());
        let (out, ck) = (format!("{table}_out"), format!("{table}_ck"));
        // No key on the output: a repeated write would show as a second row, not as an error.
        db.exec(&format!("CREATE TABLE {out} (id BIGINT NOT NULL, v BIGINT NOT NULL)"));
        let spawn = || {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "chunk::tests::tx_kill_child", "--ignored", "--nocapture"])
                .env("MW_TXKILL_URL", &url)
                .env("MW_TXKILL_TABLE", &table)
                .env("MW_TXKILL_OUT", &out)
                .env("MW_TXKILL_CKPT", &ck)
                .env("MW_TXKILL_LOG", &log)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let handed = || std::fs::read_to_string(&log).map(|t| t.lines().count()).unwrap_or(0);
        let started = Instant::now();
        let done_kills = random_kill_9_then_resume(&spawn, &handed, rows, 50, kills, &mut || {
            let written = column(&mut db, &format!("SELECT COUNT(*) FROM {out}"));
            written == vec![rows.to_string()]
                && column(&mut db, &format!("SELECT COUNT(*) FROM {ck}")) == vec!["0".to_string()]
        });
        let c = out_counts(&mut db, &out);
        let missing: Vec<i64> = (1..=rows as i64).filter(|i| !c.contains_key(i)).collect();
        let twice: Vec<i64> = (1..=rows as i64).filter(|i| c.get(i).is_some_and(|&n| n > 1)).collect();
        assert!(
            missing.is_empty() && twice.is_empty(),
            "{url}: {} rows missing ({:?}...), {} rows written twice ({:?}...)",
            missing.len(),
            &missing[..missing.len().min(5)],
            twice.len(),
            &twice[..twice.len().min(5)]
        );
        assert_eq!(c.len(), rows, "{url}: every row written");
        assert!((1..=rows as i64).all(|i| c.get(&i) == Some(&1)), "{url}: every row written exactly once");
        assert_eq!(
            column(&mut db, &format!("SELECT COUNT(*) FROM {ck}")),
            vec!["0"],
            "{url}: finished run's row deleted"
        );
        let redone = handed() - rows;
        assert!(done_kills >= kills.min(10), "{url}: only {done_kills} kills hit a running child");
        // Some kills landed after a chunk's writes and before its commit: those writes were
        // rolled back and done again on resume (without this the test would prove nothing).
        assert!(redone > 0, "{url}: no kill hit an open transaction in {done_kills} kills");
        assert!(redone <= done_kills * 50, "{url}: {redone} rows handed again after {done_kills} kills");
        println!(
            "{url}: {done_kills} kill -9 in {:.1} s, {rows} rows each written exactly once; {redone} rows of \
             rolled-back chunks handed out again",
            started.elapsed().as_secs_f64()
        );
        db.exec(&format!("DROP TABLE {out}"));
        db.exec(&format!("DROP TABLE {ck}"));
    }
}

#[test]
fn tx_mode_rolls_back_a_failed_chunk_and_resumes_exactly_once() {
    for mut db in databases(500) {
        let (url, table) = (db.url.clone(), db.table.clone());
        let (out, ck) = (format!("{table}_out"), format!("{table}_ck"));
        db.exec(&format!("CREATE TABLE {out} (id BIGINT NOT NULL, v BIGINT NOT NULL)"));
        let sql = format!("SELECT * FROM {table}");
        let cfg = json!({"checkpoint_table": ck, "retry_attempts": 1});

        // Chunk 3 writes, then fails, twice (the try and its retry): both attempts roll back,
        // and with no error callback the run stops.
        let mut p = db.open(cfg.clone());
        let mut attempts = 0;
        let e = tx_run(
            &mut p,
            &sql,
            &mut |ids, tx| {
                let (ins, params) = insert_out(&url, &out, ids);
                tx.execute(&ins, &params)?;
                if ids[0] == 201 {
                    attempts += 1;
                    return Err(Error::callback("fails after writing"));
                }
                Ok(())
            },
            None,
        )
        .unwrap_err();
        assert_eq!(e.message(), "fails after writing");
        assert_eq!(attempts, 2);
        let c = out_counts(&mut db, &out);
        assert_eq!(c.len(), 200, "{url}: the failed chunk's writes are rolled back");
        assert!((1..=200).all(|i| c.get(&i) == Some(&1)), "{url}");
        let saved = column(&mut db, &format!("SELECT last_key, key_type, processed FROM {ck}"));
        assert_eq!(saved, vec!["200"], "{url}: the checkpoint row holds the last committed key");

        // A second query sharing the table is kept apart: it starts from its beginning.
        let mut p = db.open(cfg.clone());
        let mut first = None;
        let stats = tx_run(
            &mut p,
            &format!("SELECT * FROM {table} WHERE id <= 120"),
            &mut |ids, _| {
                first.get_or_insert(ids[0]);
                Ok(())
            },
            None,
        )
        .unwrap();
        assert_eq!((first, stats.processed, stats.resumed), (Some(1), 120, false), "{url}");

        // The rerun resumes after key 200; a statement that fails inside the transaction (an
        // aborted transaction on PostgreSQL) is rolled back and the retry succeeds.
        let mut p = db.open(cfg.clone());
        let mut bad_once = true;
        let stats = tx_run(
            &mut p,
            &sql,
            &mut |ids, tx| {
                let (ins, params) = insert_out(&url, &out, ids);
                tx.execute(&ins, &params)?;
                if ids[0] == 301 && std::mem::take(&mut bad_once) {
                    tx.execute("INSERT INTO no_such_table_mw VALUES (1)", &[])?;
                }
                Ok(())
            },
            None,
        )
        .unwrap();
        assert!(stats.resumed, "{url}");
        assert_eq!((stats.processed, stats.retries), (500, 1), "{url}");
        let c = out_counts(&mut db, &out);
        assert!(c.len() == 500 && c.values().all(|&n| n == 1), "{url}: every row exactly once: {}", c.len());
        assert_eq!(
            column(&mut db, &format!("SELECT COUNT(*) FROM {ck}")),
            vec!["0"],
            "{url}: finished run's row deleted"
        );

        // The error callback skips a chunk: its writes are rolled back and the run goes on.
        db.exec(&format!("DELETE FROM {out}"));
        let mut p = db.open(json!({"checkpoint_table": ck, "retry_attempts": 0}));
        let mut skip = |_: &Error, _: &ChunkInfo| Ok(true);
        let stats = tx_run(
            &mut p,
            &sql,
            &mut |ids, tx| {
                let (ins, params) = insert_out(&url, &out, ids);
                tx.execute(&ins, &params)?;
                if ids[0] == 101 { Err(Error::callback("skip me")) } else { Ok(()) }
            },
            Some(&mut skip),
        )
        .unwrap();
        assert_eq!((stats.processed, stats.failed_chunks), (400, 1));
        let c = out_counts(&mut db, &out);
        assert!(c.len() == 400 && (101..=200).all(|i| !c.contains_key(&i)), "{url}: {}", c.len());
        db.exec(&format!("DROP TABLE {out}"));
        db.exec(&format!("DROP TABLE {ck}"));
    }
}

/// The checkpoint row changed behind the run's back (a killed run's late commit, a second run
/// of the same query on the same table): the next chunk's lock sees it and the run stops
/// instead of applying a chunk twice; a rerun resumes from what the table says.
#[test]
fn tx_mode_stops_when_the_checkpoint_row_moves_under_it() {
    for mut db in databases(500) {
        let (url, table) = (db.url.clone(), db.table.clone());
        let ck = format!("{table}_ck");
        let sql = format!("SELECT * FROM {table}");
        let mut p = db.open(json!({"checkpoint_table": ck}));
        let mut seen = Vec::new();
        let mut chunks = 0;
        let e = {
            let db = &mut db;
            let mut on_batch = |_: &Batch| Ok(());
            let mut on_tx = |b: &Batch, _: &mut ChunkTx<'_>| {
                seen.extend(ids(b));
                Ok(())
            };
            // After chunk 2 committed (outside any transaction), another writer moves the row.
            let mut on_progress = |_: &Progress| {
                chunks += 1;
                if chunks == 2 {
                    db.exec(&format!("UPDATE {ck} SET last_key = '400'"));
                }
                Ok(())
            };
            let mut h = Handlers {
                on_batch: &mut on_batch,
                on_batch_tx: Some(&mut on_tx),
                on_progress: Some(&mut on_progress),
                on_error: None,
            };
            p.process_query(&sql, &QueryOptions::default(), &mut h).unwrap_err()
        };
        assert!(
            e.message().contains("moved under this run: it holds last key 400, this run last committed last key 200"),
            "{url}: {e}"
        );
        assert_eq!(seen, (1..=200).collect::<Vec<_>>(), "{url}: chunk 3 was not handed out");
        let mut rest = Vec::new();
        let stats = tx_run(
            &mut db.open(json!({"checkpoint_table": ck})),
            &sql,
            &mut |ids, _| {
                rest.extend_from_slice(ids);
                Ok(())
            },
            None,
        )
        .unwrap();
        assert!(stats.resumed);
        assert_eq!(rest, (401..=500).collect::<Vec<_>>(), "{url}: the rerun resumes from the table");
        db.exec(&format!("DROP TABLE {ck}"));
    }
}

#[test]
fn tx_mode_bad_config_gets_clear_errors() {
    let msg = |v: serde_json::Value| ChunkConfig::from_json(&v).unwrap_err().message().to_string();
    let m = msg(json!({"checkpoint_table": "ck", "checkpoint": "/tmp/x.ckpt"}));
    assert!(m.contains("'checkpoint_table' and 'checkpoint' exclude each other"), "{m}");
    let m = msg(json!({"checkpoint_table": "ck", "pagination": "offset"}));
    assert!(m.contains("'checkpoint_table' needs keyset pagination, not 'offset'"), "{m}");
    let m = msg(json!({"checkpoint_table": "ck", "pagination": "cursor"}));
    assert!(m.contains("not 'cursor'"), "{m}");
    let m = msg(json!({"checkpoint_table": "ck", "parallel_chunks": 2}));
    assert!(m.contains("'parallel_chunks' must be 1, not 2"), "{m}");
    let m = msg(json!({"checkpoint_table": "ck", "prefetch": true}));
    assert!(m.contains("'prefetch'"), "{m}");
    for bad in [json!("x; DROP TABLE y"), json!(""), json!("1st"), json!("a.b.c")] {
        let m = msg(json!({ "checkpoint_table": bad }));
        assert!(m.contains("invalid value for 'checkpoint_table'"), "{m}");
    }
    let m = msg(json!({"checkpoint_table": 5}));
    assert!(m.contains("'checkpoint_table'"), "{m}");
    assert!(ChunkConfig::from_json(&json!({"checkpoint_table": "public.mw_ck"})).is_ok());

    let mut db = databases(10).into_iter().next().unwrap();
    let ck = format!("{}_ck", db.table);
    let mut p = db.open(json!({"checkpoint_table": ck}));
    let mut on = |_: &Batch| Ok(());
    let mut h = Handlers { on_batch: &mut on, on_batch_tx: None, on_progress: None, on_error: None };
    let opts = QueryOptions { parallel: Some(2), ..Default::default() };
    let e = p.process_query(&format!("SELECT * FROM {}", db.table), &opts, &mut h).unwrap_err();
    assert!(e.message().contains("'parallel' 2 cannot be used with checkpoint_table"), "{e}");
    // A key of another type than integer or text cannot be checkpointed.
    let mut p = db.open(json!({"checkpoint_table": ck, "key_column": "r"}));
    let e = run_collect(&mut p, &format!("SELECT id, id * 1.5 AS r FROM {}", db.table), &mut |_| Ok(())).unwrap_err();
    assert!(e.message().contains("integer or text key column; 'r' holds real"), "{e}");
    db.exec(&format!("DROP TABLE IF EXISTS {ck}"));
}
