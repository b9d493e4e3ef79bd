//! StreamProcessor::process_file peak RSS against reading the whole file with `std::fs::read`,
//! in one run: a file of MW_BENCH_STREAM_MIB MiB (default 1024) is written in a temp dir, then
//! processed with 1 MiB chunks (3 handlers, maxMemoryUsage 64 MiB), then read whole. VmHWM only
//! grows, so memwarden runs first and each figure is the peak after that step.

use std::io::Write;
use std::time::Instant;

use memwarden_core::StreamProcessor;
use serde_json::json;

fn vm_hwm() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn checksum(data: &[u8]) -> u64 {
    data.chunks(8).fold(0u64, |acc, c| acc.rotate_left(5) ^ c.iter().fold(0u64, |a, b| (a << 8) | *b as u64))
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let size_mib: u64 = std::env::var("MW_BENCH_STREAM_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stream-bench.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let block: Vec<u8> = (0..1048576u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for _ in 0..size_mib {
            f.write_all(&block).expect("write");
        }
    }
    let base = vm_hwm();
    let max = 64u64 << 20;
    let p = StreamProcessor::from_json(&json!({"chunkSize": "1M", "concurrentStreams": 3, "maxMemoryUsage": max}))
        .expect("config");
    let sums = parking_lot::Mutex::new(Vec::new());
    let t = Instant::now();
    let summary = p
        .process_file(&path, |c| {
            sums.lock().push((c.index, checksum(c.data)));
            Ok(())
        })
        .expect("process_file");
    let mw_secs = t.elapsed().as_secs_f64();
    let mw_peak = vm_hwm();
    let t = Instant::now();
    let whole = std::fs::read(&path).expect("read");
    let anchor_sum = whole.chunks(1 << 20).map(checksum).fold(0u64, |a, s| a.wrapping_add(s));
    let anchor_secs = t.elapsed().as_secs_f64();
    drop(whole);
    let anchor_peak = vm_hwm();
    let mw_sum = sums.lock().iter().fold(0u64, |a, s| a.wrapping_add(s.1));
    assert_eq!(mw_sum, anchor_sum, "both saw the same bytes");
    assert_eq!(summary["bytes"].as_u64(), Some(size_mib << 20));
    println!("stream {size_mib} MiB, chunkSize 1 MiB, concurrentStreams 3, maxMemoryUsage {} MiB", mib(max));
    println!("  peak RSS before either step:                 {:8.1} MiB", mib(base));
    println!(
        "  memwarden process_file peak RSS:             {:8.1} MiB  ({:.2} s, {:.0} MiB/s, tracker peak {:.1} MiB)",
        mib(mw_peak),
        mw_secs,
        size_mib as f64 / mw_secs,
        mib(summary["memoryUsage"].as_u64().unwrap_or(0))
    );
    println!("  anchor: std::fs::read whole file peak RSS:   {:8.1} MiB  ({:.2} s)", mib(anchor_peak), anchor_secs);
    println!("  ratio memwarden/anchor peak RSS: {:.4}", mw_peak as f64 / anchor_peak as f64);
}
