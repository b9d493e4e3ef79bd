//! `memwarden demo`: the README's main job on the embedded default, nothing installed.
//!
//! Creates an SQLite table of N rows in a temporary folder and walks it with the
//! ChunkedDatabaseProcessor; each chunk borrows a scratch buffer from a Pool and a scoring
//! table from a Container while a MemoryManager checks memory and a monitor samples this
//! process. Ends with a summary, an analysis and an SVG chart of the run.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use memwarden_core::chunk::{Batch, ChunkConfig, ChunkedDatabaseProcessor, Handlers, Progress, QueryOptions, Value};
use memwarden_core::monitor::{Export, Exporter, Meta, Sample, Sampler, Target, analyze, mb};
use memwarden_core::{Container, Lifetime, MemoryManager, Pool, PoolConfig};
use serde_json::json;

use crate::Fail;

#[derive(Args)]
pub struct DemoArgs {
    /// Rows in the demo table.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Folder for the database, the export, the analysis and the chart (default: a new temporary folder).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Rows per chunk.
    #[arg(long, default_value_t = 10_000)]
    chunk_size: usize,
}

fn fail(what: &str) -> impl Fn(memwarden_core::Error) -> Fail + '_ {
    move |e| Fail::new(format!("demo: {what}: {}", e.message()))
}

pub fn run(args: DemoArgs) -> Result<(), Fail> {
    if args.rows == 0 || args.chunk_size == 0 {
        return Err(Fail::new("demo: --rows and --chunk-size must be at least 1"));
    }
    let dir = match args.out {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .map_err(|e| Fail::new(format!("demo: cannot create '{}': {e}", d.display())))?;
            d
        }
        None => std::env::temp_dir().join(format!("memwarden-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Fail::new(format!("demo: cannot create '{}': {e}", dir.display())))?;
    let db = dir.join("demo.db");
    let _ = std::fs::remove_file(&db);

    // 1. The data.
    let t0 = Instant::now();
    eprint!("creating {} rows in {} ... ", args.rows, db.display());
    let conn = rusqlite::Connection::open(&db)
        .map_err(|e| Fail::new(format!("demo: cannot create '{}': {e}", db.display())))?;
    conn.execute_batch(&format!(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount INTEGER, region INTEGER);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {})
         INSERT INTO orders SELECT x, printf('customer-%09d', x % 50000), (x * 7919) % 10000, x % 8 FROM c;",
        args.rows
    ))
    .map_err(|e| Fail::new(format!("demo: cannot fill the table: {e}")))?;
    drop(conn);
    eprintln!("{:.1} s", t0.elapsed().as_secs_f64());

    // 2. The watchers: a MemoryManager, and a monitor sampling this process every 100 ms.
    let manager = Arc::new(MemoryManager::from_json(&json!({})).map_err(fail("MemoryManager"))?);
    let states: Arc<Mutex<BTreeSet<&'static str>>> = Arc::new(Mutex::new(BTreeSet::from(["normal"])));
    let seen = Arc::clone(&states);
    manager.on_state_change(Arc::new(move |_old, new| {
        seen.lock().unwrap_or_else(|e| e.into_inner()).insert(new.as_str());
        Ok(())
    }));
    let mut sampler = Sampler::new(Target::Pid { pid: std::process::id(), children: false })?;
    let (limit, origin) = sampler.limit();
    let meta = Meta {
        target: format!("memwarden demo ({} rows)", args.rows),
        interval: 0.1,
        limit_bytes: limit,
        limit_origin: origin.as_str().to_owned(),
        threshold: 80.0,
        started_unix_ms: sampler.started_unix_ms(),
        version: memwarden_core::VERSION.to_owned(),
    };
    let export_path = dir.join("monitor.json");
    let mut exporter = Exporter::create(&export_path, meta, 10)?;
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (samples, stop) = (Arc::clone(&samples), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = sampler.sample() {
                    samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // 3. The services: scratch buffers from a pool, a scoring table from a lazy container.
    let pool_cfg = PoolConfig::from_json(&json!({"max_size": 4, "min_size": 1, "statistics": true}))
        .map_err(fail("MemoryPool"))?;
    let pool: Pool<Vec<i64>> = Pool::builder(pool_cfg, || Ok(Vec::with_capacity(16_384)))
        .reset(|v| {
            v.clear();
            Ok(())
        })
        .build()
        .map_err(fail("MemoryPool"))?;
    let container: Container<Arc<Vec<i64>>> = Container::from_json(&json!({})).map_err(fail("LazyContainer"))?;
    container
        .register("region_weights", Lifetime::Singleton, Arc::new(|| Ok(Arc::new((1..=8).collect()))), None, false)
        .map_err(fail("LazyContainer"))?;
    container
        .register("unused_report", Lifetime::Lazy, Arc::new(|| Ok(Arc::new(vec![0; 1 << 20]))), None, false)
        .map_err(fail("LazyContainer"))?;

    // 4. The run.
    let cfg =
        ChunkConfig::from_json(&json!({"chunk_size": args.chunk_size})).map_err(fail("ChunkedDatabaseProcessor"))?;
    let url = format!("sqlite://{}", db.display());
    let mut processor = ChunkedDatabaseProcessor::open(&url, cfg).map_err(fail("ChunkedDatabaseProcessor"))?;
    processor.set_manager(Some(Arc::clone(&manager)));
    let mut weighted_total: i64 = 0;
    let mut on_batch = |b: &Batch| {
        let mut scratch = pool.get()?;
        let weights = container.get("region_weights")?;
        for row in b.iter_rows() {
            if let (Value::Int(amount), Value::Int(region)) = (&row[2], &row[3]) {
                scratch.push(amount * weights[*region as usize % weights.len()]);
            }
        }
        weighted_total += scratch.iter().sum::<i64>();
        let state = manager.check()?;
        states.lock().unwrap_or_else(|e| e.into_inner()).insert(state.as_str());
        Ok(())
    };
    let every = if std::io::IsTerminal::is_terminal(&std::io::stderr()) { 100 } else { 1000 };
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    let mut on_progress = |p: &Progress| {
        if last_draw.elapsed() >= Duration::from_millis(every) || p.processed >= p.total {
            last_draw = Instant::now();
            draw_progress(p);
        }
        Ok(())
    };
    let mut h =
        Handlers { on_batch: &mut on_batch, on_batch_tx: None, on_progress: Some(&mut on_progress), on_error: None };
    let progress = processor
        .process_query("SELECT id, customer, amount, region FROM orders", &QueryOptions::default(), &mut h)
        .map_err(fail("processing"))?;
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = monitor.join();

    // 5. The results.
    let taken = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    for s in taken {
        exporter.push(s)?;
    }
    exporter.write()?;
    let export: &Export = exporter.export();
    let analysis = analyze(&export.samples);
    let report = crate::analyze::report(export, &analysis, false);
    let analysis_path = dir.join("analysis.txt");
    let chart_path = dir.join("chart.svg");
    let write = |p: &PathBuf, text: &str| {
        std::fs::write(p, text).map_err(|e| Fail::new(format!("demo: cannot write '{}': {e}", p.display())))
    };
    write(&analysis_path, &report)?;
    write(&chart_path, &crate::plot::render(export)?)?;

    let ps = pool.statistics();
    let cs = container.statistics();
    let states_seen: Vec<&str> = states.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec!["memwarden demo", ""]);
    let rows: Vec<(&str, String)> = vec![
        ("Rows processed", format!("{} in {} chunks", progress.processed, progress.chunks)),
        ("Time", format!("{:.2} s", progress.elapsed)),
        ("Rows/s", format!("{:.0}", progress.rows_per_second())),
        ("Peak memory", format!("{:.1} MB (limit {:.0} MB from {})", analysis.peak_mb, mb(limit), origin.as_str())),
        ("Average memory", format!("{:.1} MB, efficiency {:.1}%", analysis.average_mb, analysis.efficiency_percent)),
        ("States seen", states_seen.join(", ")),
        (
            "Pool",
            format!(
                "{} created, {} acquired, hit rate {:.1}%, {} leaks",
                ps.total_created, ps.total_acquired, ps.hit_rate, ps.leaks
            ),
        ),
        (
            "Container",
            format!(
                "{} registered, {} created, {} never created (~{:.2} MB saved)",
                cs["registered"],
                cs["created"],
                cs["never_created"],
                cs["memory_saved"].as_f64().unwrap_or(0.0)
            ),
        ),
        ("Checksum", weighted_total.to_string()),
        ("Analysis", analysis_path.display().to_string()),
        ("Chart", chart_path.display().to_string()),
        ("Samples", export_path.display().to_string()),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    println!("{t}");
    Ok(())
}

/// A bar redrawn in place on a terminal; elsewhere (a log, a pipe) one plain line per call.
fn draw_progress(p: &Progress) {
    use std::io::IsTerminal;
    const WIDTH: usize = 30;
    let done = ((p.percent() / 100.0) * WIDTH as f64).round() as usize;
    let bar: String = "#".repeat(done.min(WIDTH)) + &"-".repeat(WIDTH - done.min(WIDTH));
    let (start, end) = if std::io::stderr().is_terminal() { ("\r", "   ") } else { ("", "\n") };
    eprint!(
        "{start}[{bar}] {:5.1}% {}/{} rows, {:.0} rows/s, {:.1} MB, ~{:.0} s left{end}",
        p.percent(),
        p.processed,
        p.total,
        p.rows_per_second(),
        p.memory_usage_mb(),
        p.estimated_remaining()
    );
    let _ = std::io::stderr().flush();
}
