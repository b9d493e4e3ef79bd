//! `NativeRequestTracker`: the core's per-request measurement for `memoryTracking()` of
//! `lib/index.js`.
//!
//! The JS middleware holds only a small integer per request; the core's token stays here in
//! a table, so a request costs no JS object of ours beyond the middleware's closure. Handlers
//! (high usage, analytics) are called by the JS layer, which has the request object; when one
//! throws it reports the failure with `handlerFailed`, and the core logs and counts it.

use std::collections::HashMap;

use memwarden_core::request::{RequestReport as CoreReport, RequestToken, RequestTracker};
use napi::Env;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use parking_lot::Mutex;
use serde_json::Value;

use crate::{guarded, normalize_numbers};

/// One measured request; sizes in bytes, MiB figures as the seed's headers give them.
#[napi(object)]
pub struct RequestReport {
    pub route: String,
    pub start_bytes: f64,
    pub end_bytes: f64,
    pub peak_bytes: f64,
    pub delta_bytes: f64,
    pub duration_ms: f64,
    /// Other requests in flight at some time during this one: their memory is in these figures too.
    pub overlapped: u32,
    pub high_usage: bool,
}

impl From<CoreReport> for RequestReport {
    fn from(r: CoreReport) -> Self {
        RequestReport {
            route: r.route,
            start_bytes: r.start_bytes as f64,
            end_bytes: r.end_bytes as f64,
            peak_bytes: r.peak_bytes as f64,
            delta_bytes: r.delta_bytes as f64,
            duration_ms: r.duration_ms,
            overlapped: r.overlapped,
            high_usage: r.high_usage,
        }
    }
}

/// The route of a request no route matched (yet).
const UNMATCHED: &str = "unmatched";

struct Tokens {
    next: u32,
    live: HashMap<u32, RequestToken>,
}

/// The native request tracker. Use `memoryTracking()` from `lib/index.js`.
#[napi(js_name = "NativeRequestTracker")]
pub struct NativeRequestTracker {
    inner: RequestTracker,
    tokens: Mutex<Tokens>,
}

#[napi]
impl NativeRequestTracker {
    /// `config`: the core's keys (`enabled`, `track_peak`, `threshold_mb`, `sample_rate`, ...).
    #[napi(constructor)]
    pub fn new(env: Env, config: Option<Value>) -> Result<Self> {
        let cfg = normalize_numbers(config.unwrap_or(Value::Null));
        let inner = guarded(&env, || RequestTracker::from_json(&cfg))?;
        Ok(NativeRequestTracker { inner, tokens: Mutex::new(Tokens { next: 0, live: HashMap::new() }) })
    }

    /// Starts measuring a request whose route is not known yet (`end` names it); returns the
    /// request's handle, or 0 when disabled or not sampled.
    #[napi]
    pub fn begin(&self, env: Env) -> Result<u32> {
        let Some(token) = guarded(&env, || self.inner.begin(UNMATCHED))? else { return Ok(0) };
        let mut t = self.tokens.lock();
        loop {
            t.next = t.next.wrapping_add(1).max(1);
            let id = t.next;
            if let std::collections::hash_map::Entry::Vacant(slot) = t.live.entry(id) {
                slot.insert(token);
                return Ok(id);
            }
        }
    }

    /// The headers so far as one string of `name:value` lines (one JS string is much cheaper
    /// to hand over than eight); empty when `include_headers` is off or the handle is unknown.
    #[napi]
    pub fn headers(&self, env: Env, handle: u32) -> Result<String> {
        let t = self.tokens.lock();
        let Some(token) = t.live.get(&handle) else { return Ok(String::new()) };
        let report = guarded(&env, || self.inner.peek(token))?;
        drop(t);
        let mut out = String::with_capacity(96);
        for (k, v) in self.inner.headers(&report) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(k);
            out.push(':');
            out.push_str(&v);
        }
        Ok(out)
    }

    /// Ends the request under `route` (the template known by now): records it in the
    /// analytics, logs it when high-usage. `null` for an unknown or already ended handle.
    #[napi]
    pub fn end(&self, env: Env, handle: u32, route: String) -> Result<Option<RequestReport>> {
        let Some(mut token) = self.tokens.lock().live.remove(&handle) else { return Ok(None) };
        token.set_route(&route);
        guarded(&env, || self.inner.end(token)).map(|r| Some(r.into()))
    }

    /// As `end` without building the report (no handler wants it): whether it was high-usage;
    /// `null` for an unknown or already ended handle.
    #[napi]
    pub fn finish(&self, env: Env, handle: u32, route: String) -> Result<Option<bool>> {
        let Some(mut token) = self.tokens.lock().live.remove(&handle) else { return Ok(None) };
        token.set_route(&route);
        guarded(&env, || self.inner.end(token)).map(|r| Some(r.high_usage))
    }

    /// A handler of the JS layer threw for a request of `route`: counted and logged by the core.
    #[napi]
    pub fn handler_failed(&self, route: String, error: String) {
        self.inner.handler_failed(&route, &error);
    }

    /// Per-route aggregates (see the core's `RequestTracker::analytics`).
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn analytics(&self) -> Value {
        self.inner.analytics()
    }

    /// Requests begun and not yet ended.
    #[napi(getter)]
    pub fn in_flight(&self) -> f64 {
        self.inner.in_flight() as f64
    }

    /// `X-Memory-Limit` in bytes.
    #[napi(getter)]
    pub fn limit_bytes(&self) -> f64 {
        self.inner.limit_bytes() as f64
    }
}
