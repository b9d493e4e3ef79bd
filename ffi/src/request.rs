//! `mw_request_*`: per-request memory measurement (core::request) through the C ABI.

use std::collections::HashMap;
use std::ffi::c_char;
use std::sync::Arc;

use memwarden_core::request::{RequestToken, RequestTracker};
use memwarden_core::{Error, config};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::boundary::{
    FfiResult, boundary, boundary_void, free_handle, get_handle, mw_status, need_out, new_handle, out_string, str_arg,
    write_out,
};

/// A request tracker. Create with `mw_request_new`, free with `mw_request_free`. Thread-safe:
/// requests may begin and end on any threads.
pub struct mw_request {
    inner: RequestTracker,
    tokens: Mutex<(u64, HashMap<u64, RequestToken>)>,
}

fn tracker(p: *const mw_request) -> FfiResult<Arc<mw_request>> {
    get_handle(p, "tracker")
}

/// Creates a request tracker from the seed's options (`enabled`, `track_peak`,
/// `log_high_usage`, `threshold_mb`, `detailed_tracking`, `include_headers`, `log_file`,
/// `sample_rate` in [0, 1], `random_seed`, `max_routes`, `memory_limit`, `sampler_interval_ms`
/// (> 0: a library thread reads memory every that many ms and begin/end use its last value,
/// ~0.16 µs instead of ~2.9 µs per request)); NULL or `""` for
/// defaults. A bad value returns `MW_STATUS_INVALID_CONFIG` naming the key.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_new(config_json: *const c_char, out: *mut *mut mw_request) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let v = if config_json.is_null() {
            Value::Null
        } else {
            // Safety: NUL-terminated per the contract.
            config::parse_json("MemoryTrackingMiddleware", unsafe { str_arg(config_json, "config_json") }?)?
        };
        let inner = RequestTracker::from_json(&v)?;
        let h = new_handle(mw_request { inner, tokens: Mutex::new((1, HashMap::new())) });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Frees the tracker (and any requests begun and never ended). NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn mw_request_free(tracker: *mut mw_request) {
    boundary_void(|| free_handle(tracker));
}

fn keep(t: &mw_request, token: Option<RequestToken>) -> u64 {
    match token {
        None => 0,
        Some(k) => {
            let mut g = t.tokens.lock();
            let id = g.0;
            g.0 += 1;
            g.1.insert(id, k);
            id
        }
    }
}

/// Begins a request of `route` (a route TEMPLATE such as `"GET /users/{id}"`, never the raw
/// path: analytics are kept per template) with this process's resident memory. Writes the
/// token to `*token_out`: 0 when the request is not measured (disabled or not sampled); pass
/// it to `mw_request_end` either way.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_begin(t: *mut mw_request, route: *const c_char, token_out: *mut u64) -> mw_status {
    boundary(|| {
        need_out(token_out, "token_out")?;
        let t = tracker(t)?;
        // Safety: NUL-terminated per the contract.
        let route = unsafe { str_arg(route, "route") }?;
        let id = keep(&t, t.inner.begin(route)?);
        // Safety: checked non-NULL above.
        unsafe { write_out(token_out, "token_out", id) }
    })
}

/// As `mw_request_begin`, with your own reading of memory in bytes (PHP's `memory_get_usage()`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_begin_with(
    t: *mut mw_request,
    route: *const c_char,
    bytes: u64,
    token_out: *mut u64,
) -> mw_status {
    boundary(|| {
        need_out(token_out, "token_out")?;
        let t = tracker(t)?;
        // Safety: NUL-terminated per the contract.
        let route = unsafe { str_arg(route, "route") }?;
        let id = keep(&t, t.inner.begin_with(route, bytes));
        // Safety: checked non-NULL above.
        unsafe { write_out(token_out, "token_out", id) }
    })
}

fn take(t: &mw_request, token: u64) -> FfiResult<RequestToken> {
    Ok(t.tokens.lock().1.remove(&token).ok_or_else(|| {
        Error::invalid_argument(format!("request token {token} is not in flight (unknown or already ended)"))
    })?)
}

fn write_report(t: &mw_request, r: &memwarden_core::RequestReport, out: *mut *mut c_char) -> FfiResult<()> {
    let headers: serde_json::Map<String, Value> =
        t.inner.headers(r).into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["headers"] = Value::Object(headers);
    // Safety: the caller checked `out` non-NULL.
    unsafe { write_out(out, "report_json_out", out_string(v.to_string())) }
}

/// Ends a request. Token 0 (not measured) writes `null`. Otherwise `*report_json_out` gets
/// `route`, `start_bytes`, `end_bytes`, `peak_bytes`, `delta_bytes`, `duration_ms`,
/// `overlapped` (other requests in flight during it), `high_usage` and `headers`
/// (`X-Memory-Usage`, ... unless `include_headers` is false). Free it with `mw_string_free`.
/// An unknown or already ended token returns `MW_STATUS_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_end(
    t: *mut mw_request,
    token: u64,
    report_json_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| {
        need_out(report_json_out, "report_json_out")?;
        let t = tracker(t)?;
        if token == 0 {
            // Safety: checked non-NULL above.
            return unsafe { write_out(report_json_out, "report_json_out", out_string(json!(null).to_string())) };
        }
        let r = t.inner.end(take(&t, token)?)?;
        write_report(&t, &r, report_json_out)
    })
}

/// As `mw_request_end`, with your own readings: memory now and the peak during the request
/// (0 when unknown).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_end_with(
    t: *mut mw_request,
    token: u64,
    bytes: u64,
    peak_bytes: u64,
    report_json_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| {
        need_out(report_json_out, "report_json_out")?;
        let t = tracker(t)?;
        if token == 0 {
            // Safety: checked non-NULL above.
            return unsafe { write_out(report_json_out, "report_json_out", out_string(json!(null).to_string())) };
        }
        let r = t.inner.end_with(take(&t, token)?, bytes, peak_bytes);
        write_report(&t, &r, report_json_out)
    })
}

/// The analytics per route template as JSON (`routes` with `count`, `high_usage`,
/// `overlapped`, `overlapped_share`, `delta_bytes` / `peak_bytes` `{p50, p95, max}`,
/// `duration_ms`; `in_flight`, `sampled_out`, `max_routes`, `overflowed_routes`, `note`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_analytics(t: *mut mw_request, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        let text = tracker(t)?.inner.analytics().to_string();
        // Safety: checked non-NULL above.
        unsafe { write_out(json_out, "json_out", out_string(text)) }
    })
}
