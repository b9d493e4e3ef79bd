//! `NativeResourceTracker`: the core's ResourceTracker (Streamflow's, seed 004) for
//! `ResourceTracker` of `lib/index.js`.
//!
//! Everything here runs on the JS thread. The core's own cleanup thread is never started: the
//! JS layer passes `cleanupInterval: 0` and runs the schedule from an unref'd timer through
//! `scheduledCleanup()`, because `onBeforeGC` hooks and the `gcCallback` are JS functions that
//! must run on the JS thread. Events are taken from the core's poll queue after each call and
//! emitted by the JS layer.

use memwarden_core::tracker::{CleanupReport, ResourceStats, ResourceTracker, TrackerEvent};
use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::{Value, json};

use crate::{guarded, invalid_argument, normalize_numbers};

fn id_arg(env: &Env, method: &str, id: f64) -> Result<u64> {
    if !id.is_finite() || id < 0.0 || id.fract() != 0.0 || id > 9_007_199_254_740_992.0 {
        return Err(invalid_argument(
            env,
            format!("{method}(): 'id' must be a resource id (a whole number >= 0), got {id}"),
        ));
    }
    Ok(id as u64)
}

fn cleanup_json(r: CleanupReport) -> Value {
    json!({"releasedIds": r.released_ids, "freedBytes": r.freed_bytes})
}

fn stats_json(s: ResourceStats) -> Value {
    s.to_json()
}

/// The native tracker. Use `ResourceTracker` from `lib/index.js`.
#[napi(js_name = "NativeResourceTracker")]
pub struct NativeResourceTracker {
    /// Shared with the StreamProcessors it was handed to (`tracker` option).
    pub(crate) inner: Arc<ResourceTracker>,
}

#[napi]
impl NativeResourceTracker {
    /// `config`: Streamflow's keys as the core reads them (`maxMemoryUsage`, `thresholds`, ...).
    #[napi(constructor)]
    pub fn new(env: Env, config: Option<Value>) -> Result<Self> {
        let cfg = normalize_numbers(config.unwrap_or(Value::Null));
        let inner = guarded(&env, || ResourceTracker::from_json(&cfg))?;
        Ok(NativeResourceTracker { inner: Arc::new(inner) })
    }

    /// Tracks a resource; `metadata` is its JSON text (the JS layer stringifies it so that
    /// BigInt and cycles fail there). Returns the id (0 when tracking is disabled).
    #[napi]
    pub fn track_resource(&self, env: Env, kind: String, size: f64, metadata: Option<String>) -> Result<f64> {
        if !size.is_finite() || size < 0.0 {
            return Err(invalid_argument(
                &env,
                format!("trackResource(): 'size' must be a number of bytes >= 0, got {size}"),
            ));
        }
        let meta = match metadata {
            None => Value::Object(Default::default()),
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| invalid_argument(&env, format!("trackResource(): 'metadata' is not valid JSON: {e}")))?,
        };
        guarded(&env, || self.inner.track_resource(&kind, size as u64, meta)).map(|id| id as f64)
    }

    /// Releases a resource; returns its `ResourceStats`. Unknown or released ids throw and change nothing.
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn release_resource(&self, env: Env, id: f64) -> Result<Value> {
        let id = id_arg(&env, "releaseResource", id)?;
        guarded(&env, || self.inner.release_resource(id)).map(stats_json)
    }

    /// The resource was collected by the garbage collector unreleased: counted as leaked.
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn mark_collected(&self, env: Env, id: f64) -> Result<Value> {
        let id = id_arg(&env, "markCollected", id)?;
        guarded(&env, || self.inner.mark_collected(id)).map(stats_json)
    }

    /// `{ type, size, createdAt, metadata }`, or `null` when not tracked.
    #[napi(ts_return_type = "Record<string, any> | null")]
    pub fn get_resource(&self, env: Env, id: f64) -> Result<Option<Value>> {
        let id = id_arg(&env, "getResource", id)?;
        Ok(self.inner.get_resource(id).map(stats_json))
    }

    #[napi(ts_return_type = "Record<string, any>")]
    pub fn get_memory_stats(&self) -> Value {
        self.inner.get_memory_stats()
    }

    #[napi(ts_return_type = "Record<string, any>")]
    pub fn leak_report(&self) -> Value {
        self.inner.leak_report()
    }

    /// The line `reportAtExit` writes to stderr at exit, without a newline:
    /// `memwarden: ResourceTracker leak report at exit: {"activeResources":..,"totalAllocated":..,"leaks":{...}}`.
    #[napi]
    pub fn exit_report_line(&self) -> String {
        self.inner.exit_report_line()
    }

    /// The line written at exit instead when taking the report failed, without a newline:
    /// `memwarden: ResourceTracker leak report at exit failed: <message>`.
    #[napi]
    pub fn exit_report_failed_line(message: String) -> String {
        memwarden_core::tracker::exit_report_failed_line(&message)
    }

    /// Events since the last poll, oldest first: `{ type, usage, threshold, detail }`.
    #[napi(ts_return_type = "Array<Record<string, any>>")]
    pub fn poll_events(&self) -> Vec<Value> {
        self.inner.poll_events().iter().map(TrackerEvent::to_json).collect()
    }

    /// With `enableAutoCleanup`, releases the oldest resources until usage is below the warning
    /// threshold: `{ releasedIds, freedBytes }`.
    #[napi(ts_return_type = "{ releasedIds: number[], freedBytes: number }")]
    pub fn cleanup(&self, env: Env) -> Result<Value> {
        guarded(&env, || self.inner.cleanup()).map(cleanup_json)
    }

    /// One run of the schedule (always reported by a `cleanup` event).
    #[napi(ts_return_type = "{ releasedIds: number[], freedBytes: number }")]
    pub fn scheduled_cleanup(&self, env: Env) -> Result<Value> {
        guarded(&env, || self.inner.scheduled_cleanup()).map(cleanup_json)
    }

    /// Forgets every resource and returns the final leak report; later calls throw `MW_CLOSED`.
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn dispose(&self) -> Value {
        self.inner.dispose()
    }
}
