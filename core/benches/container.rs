//! Container resolution against a bare `RwLock<HashMap<String, ...>>` (goal: cached singleton
//! get <= 0.5x the baseline), and a transient service with two dependencies against the same
//! baseline doing the same three factory calls.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use criterion::{Criterion, criterion_group, criterion_main};
use memwarden_core::{Container, ContainerConfig, Lifetime};

type Svc = Arc<String>;
type Factory = Arc<dyn Fn(&Baseline) -> Svc + Send + Sync>;

/// The anchor: what a hand-written registry looks like.
struct Baseline {
    singletons: RwLock<HashMap<String, Svc>>,
    factories: RwLock<HashMap<String, Factory>>,
}

impl Baseline {
    fn get(&self, name: &str) -> Svc {
        if let Some(v) = self.singletons.read().unwrap().get(name) {
            return v.clone();
        }
        let f = self.factories.read().unwrap().get(name).unwrap().clone();
        f(self)
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("container");
    let mw: Container<Svc> = Container::new(ContainerConfig::default());
    mw.register("config", Lifetime::Singleton, Arc::new(|| Ok(Arc::new("config".to_string()))), None, false).unwrap();
    mw.register("logger", Lifetime::Singleton, Arc::new(|| Ok(Arc::new("logger".to_string()))), None, false).unwrap();
    let m2 = mw.clone();
    mw.register(
        "handler",
        Lifetime::Transient,
        Arc::new(move || Ok(Arc::new(format!("{}{}", m2.get("config")?.len(), m2.get("logger")?.len())))),
        None,
        false,
    )
    .unwrap();
    mw.get("config").unwrap();
    mw.get("logger").unwrap();

    let base = Arc::new(Baseline { singletons: RwLock::new(HashMap::new()), factories: RwLock::new(HashMap::new()) });
    base.singletons.write().unwrap().insert("config".into(), Arc::new("config".into()));
    base.singletons.write().unwrap().insert("logger".into(), Arc::new("logger".into()));
    let f: Factory = Arc::new(|b: &Baseline| Arc::new(format!("{}{}", b.get("config").len(), b.get("logger").len())));
    base.factories.write().unwrap().insert("handler".into(), f);

    g.bench_function("memwarden cached singleton get", |b| b.iter(|| mw.get("config").unwrap()));
    g.bench_function("anchor: RwLock<HashMap> get", |b| b.iter(|| base.get("config")));
    g.bench_function("memwarden transient with 2 deps", |b| b.iter(|| mw.get("handler").unwrap()));
    g.bench_function("anchor: RwLock<HashMap> transient with 2 deps", |b| b.iter(|| base.get("handler")));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
