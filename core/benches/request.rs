//! `RequestTracker` begin+end per request against a bare `ProcessProbe` read pair (two `pread`s
//! of /proc/self/statm on the kept descriptor), in one run. Goal: begin+end <= 2 µs.

use criterion::{Criterion, criterion_group, criterion_main};
use memwarden_core::RequestTracker;
use memwarden_core::probe::ProcessProbe;
use serde_json::json;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    let probe = ProcessProbe::new().unwrap();
    g.bench_function("anchor: ProcessProbe current_bytes x2", |b| {
        b.iter(|| std::hint::black_box(probe.current_bytes().unwrap() + probe.current_bytes().unwrap()))
    });
    let t =
        RequestTracker::from_json(&json!({"track_peak": true, "random_seed": 1, "sampler_interval_ms": 0})).unwrap();
    g.bench_function("memwarden begin+end (track_peak)", |b| {
        b.iter(|| std::hint::black_box(t.end(t.begin("GET /users/{id}").unwrap().unwrap()).unwrap()))
    });
    let t =
        RequestTracker::from_json(&json!({"track_peak": false, "random_seed": 1, "sampler_interval_ms": 0})).unwrap();
    g.bench_function("memwarden begin+end (no peak)", |b| {
        b.iter(|| std::hint::black_box(t.end(t.begin("GET /users/{id}").unwrap().unwrap()).unwrap()))
    });
    let t = RequestTracker::from_json(&json!({"random_seed": 1, "sampler_interval_ms": 1})).unwrap();
    g.bench_function("memwarden begin+end (sampler thread, 1 ms)", |b| {
        b.iter(|| std::hint::black_box(t.end(t.begin("GET /users/{id}").unwrap().unwrap()).unwrap()))
    });
    drop(t);
    let t = RequestTracker::from_json(&json!({"random_seed": 1})).unwrap();
    g.bench_function("memwarden begin+end (default: auto)", |b| {
        b.iter(|| std::hint::black_box(t.end(t.begin("GET /users/{id}").unwrap().unwrap()).unwrap()))
    });
    g.bench_function("memwarden begin_with+end_with (host readings)", |b| {
        b.iter(|| std::hint::black_box(t.end_with(t.begin_with("GET /users/{id}", 1000).unwrap(), 2000, 3000)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
