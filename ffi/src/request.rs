//! `mw_request_*`: per-request memory measurement (core::request) through the C ABI.

use std::collections::BTreeMap;
use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use memwarden_core::Error;
use memwarden_core::request::{HighUsageHandler, RequestConfig, RequestReport, RequestToken, RequestTracker};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::boundary::{
    FfiResult, boundary, boundary_void, free_handle, get_handle, mw_status, need_out, new_handle, out_string,
    panic_message, str_arg, write_out,
};
use crate::manager::mw_free_fn;

/// Called for every request whose growth (peak minus start) is above `threshold_mb`, on the
/// thread that called `mw_request_end` / `mw_request_end_with`, before that call returns.
/// `report_json` is the request's report (as `mw_request_end` writes it, without `headers`),
/// valid only during the call. Return 0 on success; any other value is logged by the library
/// (to `log_file`, else stderr) and counted as `handler_errors` in the analytics — the
/// request's own call still succeeds. To explain a failure, write a NUL-terminated message of
/// at most `error_len` bytes (NUL included) into `error_buf`, which the library owns and
/// which is valid only during the call; leave it untouched to get "returned N".
pub type mw_request_high_usage_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        report_json: *const c_char,
        error_buf: *mut c_char,
        error_len: usize,
    ) -> i32,
>;

/// A C callback's `user_data` and its finalizer, run once when the callback is replaced or
/// its object freed.
pub(crate) struct CallbackData {
    ptr: *mut c_void,
    free: mw_free_fn,
}

// Safety: each callback's doc says on which threads it runs; a caller that registers one
// promises its user_data is usable there.
unsafe impl Send for CallbackData {}
unsafe impl Sync for CallbackData {}

impl CallbackData {
    pub(crate) fn new(ptr: *mut c_void, free: mw_free_fn) -> Self {
        CallbackData { ptr, free }
    }
    /// Through a method, so closures capture the whole `CallbackData` (Send), not its raw field.
    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for CallbackData {
    fn drop(&mut self) {
        if let Some(f) = self.free {
            // Safety: the finalizer was supplied for exactly this pointer, called once.
            unsafe { f(self.ptr) };
        }
    }
}

/// Bytes of the message buffer a high-usage callback may fill.
const ERROR_BUF: usize = 512;

/// A request tracker. Create with `mw_request_new`, free with `mw_request_free`. Thread-safe:
/// requests may begin and end on any threads.
pub struct mw_request {
    inner: RequestTracker,
    /// Tokens in flight by id; ids only grow, so a BTreeMap (no SipHash per begin and end).
    tokens: Mutex<(u64, BTreeMap<u64, RequestToken>)>,
    /// Made by `mw_request_shared`: kept for the life of the process, `mw_request_free` ignores it.
    shared: bool,
}

/// The trackers of `mw_request_shared`, by config text (handle addresses; never freed).
static SHARED: Mutex<Vec<(Box<str>, usize)>> = Mutex::new(Vec::new());
/// Distinct config texts `mw_request_shared` keeps trackers for.
const SHARED_MAX: usize = 64;

fn tracker(p: *const mw_request) -> FfiResult<Arc<mw_request>> {
    get_handle(p, "tracker")
}

/// Creates a request tracker from the seed's options (`enabled`, `track_peak`,
/// `log_high_usage`, `threshold_mb`, `detailed_tracking`, `include_headers`, `log_file`,
/// `sample_rate` in [0, 1], `random_seed`, `max_routes`, `memory_limit`, `sampler_interval_ms`
/// (> 0: a library thread reads memory every that many ms and begin/end use its last value,
/// ~0.16 µs instead of ~2.9 µs per request; 0: a read per reading; `"auto"`, the default: reads
/// until requests come faster than 1000/s, then the thread every 5 ms)); NULL or `""` for
/// defaults. A bad value returns `MW_STATUS_INVALID_CONFIG` naming the key.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_new(config_json: *const c_char, out: *mut *mut mw_request) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        // Safety: NUL-terminated per the contract. Parsed once per distinct text (cached).
        let text = if config_json.is_null() { "" } else { unsafe { str_arg(config_json, "config_json") }? };
        let cfg = RequestConfig::from_json_text(text)?;
        let inner = RequestTracker::new(cfg)?;
        let h = new_handle(mw_request { inner, tokens: Mutex::new((1, BTreeMap::new())), shared: false });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// The process's tracker for this config text (options as for `mw_request_new`; NULL or `""`
/// for defaults): made on the first call with the text, the same one on every later call. It
/// lives as long as the process, so its analytics span requests where a host keeps nothing
/// between them (PHP under php-fpm or php -S, one request per process at a time), and it is
/// shared by every caller that passes the same text. `mw_request_free` leaves it alone. At most
/// 64 distinct texts per process: one more returns `MW_STATUS_INVALID_ARGUMENT`. A bad option
/// returns `MW_STATUS_INVALID_CONFIG` naming the key, and no tracker is kept.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_shared(config_json: *const c_char, out: *mut *mut mw_request) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        // Safety: NUL-terminated per the contract.
        let text = if config_json.is_null() { "" } else { unsafe { str_arg(config_json, "config_json") }? };
        let mut shared = SHARED.lock();
        let h = match shared.iter().find(|(t, _)| **t == *text) {
            Some(&(_, h)) => h as *mut mw_request,
            None => {
                if shared.len() >= SHARED_MAX {
                    return Err(Error::invalid_argument(format!(
                        "mw_request_shared: this process already has trackers for {SHARED_MAX} distinct configs; \
                         reuse a config (or use mw_request_new)"
                    ))
                    .into());
                }
                let inner = RequestTracker::new(RequestConfig::from_json_text(text)?)?;
                let h = new_handle(mw_request { inner, tokens: Mutex::new((1, BTreeMap::new())), shared: true });
                shared.push((text.into(), h as usize));
                h
            }
        };
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Frees the tracker (and any requests begun and never ended). NULL, and a tracker of
/// `mw_request_shared`, are a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn mw_request_free(tracker: *mut mw_request) {
    boundary_void(|| {
        if get_handle(tracker, "tracker").is_ok_and(|t| !t.shared) {
            free_handle(tracker);
        }
    });
}

/// A whole request measured by the caller, recorded in one call (no token kept between two
/// calls): `route` (a template, as for `mw_request_begin_with`), memory at its start and end,
/// the peak during it (0 when unknown), its duration in ms and the number of other requests the
/// caller saw in flight during it. Sampling, the analytics, the log and the high-usage callback
/// work as for `mw_request_begin_with` + `mw_request_end_into`. `*report_out` (NULL: not
/// written) gets the figures and header block; `measured` is false when the request was not
/// sampled or the tracker is disabled.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_record(
    t: *mut mw_request,
    route: *const c_char,
    start_bytes: u64,
    end_bytes: u64,
    peak_bytes: u64,
    duration_ms: f64,
    overlapped: u32,
    report_out: *mut mw_request_report,
) -> mw_status {
    boundary(|| {
        let t = tracker(t)?;
        // Safety: NUL-terminated per the contract.
        let route = unsafe { str_arg(route, "route") }?;
        let r = t.inner.record_with(route, start_bytes, end_bytes, peak_bytes, duration_ms, overlapped);
        if !report_out.is_null() {
            // Safety: non-NULL; the caller gives a writable mw_request_report.
            unsafe { report_out.write(c_report(&t, r.as_ref())) };
        }
        Ok(())
    })
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

/// The body of the four calls that write a report as JSON: `null` for token 0, else the report
/// `f` makes for the tracker and the token.
fn json_report(
    t: *mut mw_request,
    token: u64,
    out: *mut *mut c_char,
    f: impl FnOnce(&mw_request, u64) -> FfiResult<memwarden_core::RequestReport>,
) -> FfiResult<()> {
    need_out(out, "report_json_out")?;
    let t = tracker(t)?;
    if token == 0 {
        // Safety: checked non-NULL above.
        return unsafe { write_out(out, "report_json_out", out_string(json!(null).to_string())) };
    }
    let r = f(&t, token)?;
    write_report(&t, &r, out)
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
    boundary(|| json_report(t, token, report_json_out, |t, token| Ok(t.inner.end(take(t, token)?)?)))
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
        json_report(t, token, report_json_out, |t, token| Ok(t.inner.end_with(take(t, token)?, bytes, peak_bytes)))
    })
}

/// Bytes of `mw_request_report.headers` (the longest header block and its NUL fit).
const HEADERS_LEN: usize = 192;
const _: () = assert!(memwarden_core::request::HEADER_BLOCK_MAX < HEADERS_LEN);

/// One request's figures, filled by `mw_request_end_into` (no JSON, nothing to free).
#[repr(C)]
pub struct mw_request_report {
    /// false when the request was not measured (token 0: disabled or sampled out); then every
    /// other field is zero and `headers` is empty.
    pub measured: bool,
    /// Growth (peak minus start) above `threshold_mb`. The library has logged it (when
    /// `log_high_usage`) and called the callback set with `mw_request_set_high_usage_callback`,
    /// if any; a host that calls its own handler instead reports a failure of it with
    /// `mw_request_handler_failed`.
    pub high_usage: bool,
    /// Other requests in flight at some time during this one (their memory is in these figures).
    pub overlapped: u32,
    pub start_bytes: u64,
    pub end_bytes: u64,
    /// The highest reading known during the request (at least max(start, end)).
    pub peak_bytes: u64,
    pub delta_bytes: i64,
    pub duration_ms: f64,
    /// The limit `X-Memory-Limit` shows (`memory_limit`, else the cgroup's, else physical memory).
    pub limit_bytes: u64,
    /// The response headers as one NUL-terminated block, a `Name: value` line each ended by
    /// `\n`: `X-Memory-Usage`, `X-Memory-Peak`, `X-Memory-Limit` (MiB, one decimal) and
    /// `X-Memory-Efficiency` (end / peak, percent). Empty when `include_headers` is false.
    pub headers: [c_char; 192],
}

/// As `mw_request_end_with` (your own readings: memory now and the peak during the request, 0
/// when unknown), writing the figures into `*report_out` instead of JSON: nothing to parse or
/// free, for hosts where every call counts (PHP, one tracker per request). Token 0 sets
/// `measured` to false. The route is the one given to `mw_request_begin_with`. An unknown or
/// already ended token returns `MW_STATUS_INVALID_ARGUMENT` and leaves `*report_out` untouched.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_end_into(
    t: *mut mw_request,
    token: u64,
    bytes: u64,
    peak_bytes: u64,
    report_out: *mut mw_request_report,
) -> mw_status {
    boundary(|| {
        need_out(report_out, "report_out")?;
        let t = tracker(t)?;
        let r = if token == 0 { None } else { Some(t.inner.end_with(take(&t, token)?, bytes, peak_bytes)) };
        // Safety: checked non-NULL above; the caller gives a writable mw_request_report.
        unsafe { report_out.write(c_report(&t, r.as_ref())) };
        Ok(())
    })
}

/// The `mw_request_report` of a report, or of an unmeasured request (`None`).
fn c_report(t: &mw_request, r: Option<&RequestReport>) -> mw_request_report {
    let mut rep = mw_request_report {
        measured: false,
        high_usage: false,
        overlapped: 0,
        start_bytes: 0,
        end_bytes: 0,
        peak_bytes: 0,
        delta_bytes: 0,
        duration_ms: 0.0,
        limit_bytes: 0,
        headers: [0; HEADERS_LEN],
    };
    if let Some(r) = r {
        let block = t.inner.header_block(r);
        for (dst, src) in rep.headers.iter_mut().zip(block.as_bytes().iter().take(HEADERS_LEN - 1)) {
            *dst = *src as c_char;
        }
        rep.measured = true;
        rep.high_usage = r.high_usage;
        rep.overlapped = r.overlapped;
        rep.start_bytes = r.start_bytes;
        rep.end_bytes = r.end_bytes;
        rep.peak_bytes = r.peak_bytes;
        rep.delta_bytes = r.delta_bytes;
        rep.duration_ms = r.duration_ms;
        rep.limit_bytes = t.inner.limit_bytes();
    }
    rep
}

/// A copy of a request still in flight (it stays in flight).
fn in_flight(t: &mw_request, token: u64) -> FfiResult<RequestToken> {
    Ok(t.tokens.lock().1.get(&token).cloned().ok_or_else(|| {
        Error::invalid_argument(format!("request token {token} is not in flight (unknown or already ended)"))
    })?)
}

/// The figures so far of a request still in flight, read from the process as `mw_request_end`
/// does: for response headers that must go out before the request ends (a streamed body).
/// Writes the same JSON as `mw_request_end` (`route`, `start_bytes`, `end_bytes` = now,
/// `peak_bytes`, `delta_bytes`, `duration_ms` so far, `overlapped`, `high_usage`, `headers`);
/// token 0 writes `null`. Nothing is recorded, no high-usage callback runs, nothing is logged,
/// and the token stays valid: end it with `mw_request_end*` as usual. An unknown or already
/// ended token returns `MW_STATUS_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_peek(
    t: *mut mw_request,
    token: u64,
    report_json_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| json_report(t, token, report_json_out, |t, token| Ok(t.inner.peek(&in_flight(t, token)?)?)))
}

/// As `mw_request_peek`, with your own readings: memory now and the peak so far (0 when
/// unknown), as `mw_request_end_with` takes them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_peek_with(
    t: *mut mw_request,
    token: u64,
    bytes: u64,
    peak_bytes: u64,
    report_json_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| {
        json_report(t, token, report_json_out, |t, token| {
            Ok(t.inner.peek_with(&in_flight(t, token)?, bytes, peak_bytes))
        })
    })
}

/// As `mw_request_peek_with`, writing the figures so far and the header block into
/// `*report_out` as `mw_request_end_into` does (token 0 sets `measured` to false). The request
/// stays in flight; `high_usage` says whether the growth so far is above `threshold_mb`, and
/// nothing is logged or called for it. An unknown or already ended token returns
/// `MW_STATUS_INVALID_ARGUMENT` and leaves `*report_out` untouched.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_peek_into(
    t: *mut mw_request,
    token: u64,
    bytes: u64,
    peak_bytes: u64,
    report_out: *mut mw_request_report,
) -> mw_status {
    boundary(|| {
        need_out(report_out, "report_out")?;
        let t = tracker(t)?;
        let r = if token == 0 { None } else { Some(t.inner.peek_with(&in_flight(&t, token)?, bytes, peak_bytes)) };
        // Safety: checked non-NULL above; the caller gives a writable mw_request_report.
        unsafe { report_out.write(c_report(&t, r.as_ref())) };
        Ok(())
    })
}

/// Reports a failure of a high-usage handler the host called itself (after `mw_request_end_into`
/// said `high_usage`, instead of a C callback per request): counted in the analytics'
/// `handler_errors` and logged as a `handler_error` line with `route` and `message` (to
/// `log_file`, else stderr), as the library does for a failing callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_handler_failed(
    t: *mut mw_request,
    route: *const c_char,
    message: *const c_char,
) -> mw_status {
    boundary(|| {
        let t = tracker(t)?;
        // Safety: NUL-terminated per the contract.
        let route = unsafe { str_arg(route, "route") }?;
        // Safety: NUL-terminated per the contract.
        let message = unsafe { str_arg(message, "message") }?;
        t.inner.handler_failed(route, message);
        Ok(())
    })
}

/// Sets the high-usage callback (see `mw_request_high_usage_fn`); NULL `callback` removes it.
/// `free_user_data` (may be NULL) is called with `user_data` when the callback is replaced or
/// removed, or the tracker freed — also when this call fails. Returns `MW_STATUS_INVALID_ARGUMENT`
/// for a freed tracker.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_request_set_high_usage_callback(
    t: *mut mw_request,
    callback: mw_request_high_usage_fn,
    user_data: *mut c_void,
    free_user_data: mw_free_fn,
) -> mw_status {
    let ud = CallbackData::new(user_data, free_user_data);
    boundary(|| {
        let t = tracker(t)?;
        let Some(cb) = callback else {
            drop(ud);
            t.inner.set_high_usage_handler(None);
            return Ok(());
        };
        let handler: HighUsageHandler = Arc::new(move |r: &RequestReport| {
            let text = serde_json::to_string(r).unwrap_or_else(|_| "null".into());
            let text = CString::new(text).map_err(|_| "report contained a NUL byte".to_string())?;
            let mut buf = [0 as c_char; ERROR_BUF];
            let rc = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // Safety: the caller supplied `cb` for `ud.ptr()` and keeps both valid until the
                // finalizer runs; `text` and `buf` outlive the call.
                unsafe { cb(ud.ptr(), text.as_ptr(), buf.as_mut_ptr(), ERROR_BUF) }
            }))
            .map_err(|p| format!("high-usage callback panicked: {}", panic_message(&*p)))?;
            if rc == 0 {
                return Ok(());
            }
            buf[ERROR_BUF - 1] = 0;
            // Safety: `buf` is NUL-terminated (its last byte was just set to 0).
            let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
            Err(if msg.is_empty() { format!("high-usage callback returned {rc}") } else { msg.into_owned() })
        });
        t.inner.set_high_usage_handler(Some(handler));
        Ok(())
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
