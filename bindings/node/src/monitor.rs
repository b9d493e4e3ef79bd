//! `NativeMonitor` and `analyzeFile` over `memwarden_core::monitor`; `lib/index.js` wraps them as
//! `Monitor` and `analyze(path)`. The sampler runs on the core's own thread and never calls JS.

use memwarden_core::monitor::{self as mon, Monitor};
use napi::Env;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::Value;

use crate::{guarded, normalize_numbers, to_json};

/// A memory monitor (see `Monitor` in lib/index.js).
#[napi(js_name = "NativeMonitor")]
pub struct NativeMonitor {
    inner: Monitor,
}

#[napi]
impl NativeMonitor {
    /// `config`: `pid`, `children`, `system`, `interval` (seconds), `threshold` (percent),
    /// `export` (a path), `export_sync_every`.
    #[napi(constructor, ts_args_type = "config: Record<string, any> | null | undefined")]
    pub fn new(env: Env, config: Option<Value>) -> Result<Self> {
        let cfg = normalize_numbers(config.unwrap_or(Value::Null));
        Ok(NativeMonitor { inner: guarded(&env, || Monitor::from_json(&cfg))? })
    }

    #[napi]
    pub fn start(&self, env: Env) -> Result<()> {
        guarded(&env, || self.inner.start())
    }

    #[napi]
    pub fn stop(&self, env: Env) -> Result<()> {
        guarded(&env, || self.inner.stop())
    }

    #[napi(getter)]
    pub fn running(&self) -> bool {
        self.inner.is_running()
    }

    #[napi(getter)]
    pub fn ended(&self) -> Option<String> {
        self.inner.ended()
    }

    #[napi(getter)]
    pub fn skipped_ticks(&self) -> f64 {
        self.inner.skipped_ticks() as f64
    }

    #[napi(getter, ts_return_type = "Record<string, any>")]
    pub fn meta(&self, env: Env) -> Result<Value> {
        to_json(&env, serde_json::to_value(self.inner.meta()))
    }

    #[napi(ts_return_type = "Record<string, any>")]
    pub fn sample_now(&self, env: Env) -> Result<Value> {
        let s = guarded(&env, || self.inner.sample_now())?;
        to_json(&env, serde_json::to_value(s))
    }

    #[napi(ts_return_type = "Array<Record<string, any>>")]
    pub fn samples(&self, env: Env) -> Result<Value> {
        to_json(&env, serde_json::to_value(self.inner.samples()))
    }

    #[napi(ts_return_type = "Record<string, any>")]
    pub fn analyze(&self, env: Env) -> Result<Value> {
        to_json(&env, serde_json::to_value(self.inner.analyze()))
    }

    #[napi]
    pub fn export(&self, env: Env, path: String) -> Result<()> {
        guarded(&env, || self.inner.export(&path))
    }
}

/// The analysis of an export file.
#[napi(ts_return_type = "Record<string, any>")]
pub fn analyze_file(env: Env, path: String) -> Result<Value> {
    let a = guarded(&env, || mon::analyze_file(&path))?;
    to_json(&env, serde_json::to_value(a))
}
