//! `MemoryManager::check()` against its anchors, in one run:
//! a bare `pread` of /proc/self/statm on a kept descriptor (goal: check() <= 1.3x),
//! and sysinfo's refresh of this process (what most Rust code would reach for).

use std::os::unix::fs::FileExt;

use criterion::{Criterion, criterion_group, criterion_main};
use memwarden_core::MemoryManager;
use serde_json::json;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("reading");
    let m = MemoryManager::from_json(&json!({"gc_probability": 0.0})).unwrap();
    g.bench_function("memwarden check()", |b| b.iter(|| m.check().unwrap()));

    let f = std::fs::File::open("/proc/self/statm").unwrap();
    g.bench_function("anchor: bare pread /proc/self/statm", |b| {
        b.iter(|| {
            let mut buf = [0u8; 256];
            let n = f.read_at(&mut buf, 0).unwrap();
            std::hint::black_box(&buf[..n]);
        })
    });

    let pid = sysinfo::get_current_pid().unwrap();
    let mut sys = sysinfo::System::new().expect("sysinfo");
    g.bench_function("anchor: sysinfo refresh_processes_specifics", |b| {
        b.iter(|| {
            sys.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                true,
                sysinfo::ProcessRefreshKind::nothing().with_memory(),
            );
            std::hint::black_box(sys.process(pid).map(|p| p.memory()));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
