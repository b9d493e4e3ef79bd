//! Pool acquire+release round trip against a bare `parking_lot::Mutex<Vec<T>>` (the
//! floor: goal <= 1.5x with statistics on), 1 thread and 2 threads contended.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use memwarden_core::{Pool, PoolConfig};
use parking_lot::Mutex;
use serde_json::json;

fn memwarden_pool() -> Pool<Vec<u8>> {
    let cfg = PoolConfig::from_json(&json!({"max_size": 16, "min_size": 16, "auto_cleanup": false})).unwrap();
    Pool::builder(cfg, || Ok(vec![0u8; 64])).build().unwrap()
}

fn bare() -> Arc<Mutex<Vec<Vec<u8>>>> {
    Arc::new(Mutex::new((0..16).map(|_| vec![0u8; 64]).collect()))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool");
    let p = memwarden_pool();
    g.bench_function("memwarden acquire+release", |b| {
        b.iter(|| {
            let l = p.acquire().unwrap();
            p.release(l).unwrap();
        })
    });
    let m = bare();
    g.bench_function("anchor: Mutex<Vec> pop+push", |b| {
        b.iter(|| {
            let v = m.lock().pop().unwrap();
            m.lock().push(std::hint::black_box(v));
        })
    });

    // Two threads: one measured here, one hammering the same pool in the background.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let p2 = p.clone();
    let s2 = stop.clone();
    let bg = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let l = p2.acquire().unwrap();
            p2.release(l).unwrap();
        }
    });
    g.bench_function("memwarden acquire+release, 2 threads", |b| {
        b.iter(|| {
            let l = p.acquire().unwrap();
            p.release(l).unwrap();
        })
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    bg.join().unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let m2 = m.clone();
    let s2 = stop.clone();
    let bg = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let v = m2.lock().pop().unwrap();
            m2.lock().push(v);
        }
    });
    g.bench_function("anchor: Mutex<Vec> pop+push, 2 threads", |b| {
        b.iter(|| {
            let v = m.lock().pop().unwrap();
            m.lock().push(std::hint::black_box(v));
        })
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    bg.join().unwrap();
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
