//! `NativeRequestTracker`: the core's per-request measurement for `memoryTracking()` of
//! `lib/index.js`.
//!
//! The JS middleware holds only a small integer per request; the core's token stays here in
//! a table, so a request costs no JS object of ours beyond the middleware's closure. Handlers
//! (high usage, analytics) are called by the JS layer, which has the request object; when one
//! throws it reports the failure with `handlerFailed`, and the core logs and counts it.

use std::ffi::CStr;
use std::sync::Arc;

use memwarden_core::request::{HeaderCache, RequestReport as CoreReport, RequestToken, RequestTracker};
use napi::bindgen_prelude::*;
use napi::{Env, sys};
use napi_derive::napi;
use parking_lot::Mutex;
use serde_json::Value;

use crate::fast;
use crate::{CoreResult, guarded, normalize_numbers, type_error};

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

use memwarden_core::request::UNMATCHED;

/// The requests in flight by handle: a slot array with a free list (a request costs no
/// search and no allocation once the array has grown to the most requests ever in flight at
/// once). A handle is the slot's index + 1 in its low [`SLOT_BITS`] bits and the slot's
/// generation above them, so a handle of an ended request does not reach the next request
/// in its slot (until the 2,048th reuse of that slot), and every handle is a small integer
/// (below 2^31, which V8 keeps unboxed).
struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

struct Slot<T> {
    generation: u32,
    token: Option<T>,
}

const SLOT_BITS: u32 = 20;
/// Requests in flight at once that get a handle; those above are not measured.
const MAX_IN_FLIGHT: usize = (1 << SLOT_BITS) - 1;
const GENERATIONS: u32 = 1 << (31 - SLOT_BITS);

impl<T> Slots<T> {
    fn new() -> Self {
        Slots { slots: Vec::new(), free: Vec::new() }
    }

    /// A handle for `token`; the token back when [`MAX_IN_FLIGHT`] requests are in flight.
    fn insert(&mut self, token: T) -> std::result::Result<u32, T> {
        let index = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < MAX_IN_FLIGHT => {
                self.slots.push(Slot { generation: 0, token: None });
                (self.slots.len() - 1) as u32
            }
            None => return Err(token),
        };
        let slot = &mut self.slots[index as usize];
        slot.token = Some(token);
        Ok(slot.generation << SLOT_BITS | (index + 1))
    }

    fn slot(&self, handle: u32) -> Option<usize> {
        let index = (handle & ((1 << SLOT_BITS) - 1)).checked_sub(1)? as usize;
        let slot = self.slots.get(index)?;
        (slot.generation == handle >> SLOT_BITS && slot.token.is_some()).then_some(index)
    }

    fn get(&self, handle: u32) -> Option<&T> {
        self.slot(handle).and_then(|i| self.slots[i].token.as_ref())
    }

    fn remove(&mut self, handle: u32) -> Option<T> {
        let i = self.slot(handle)?;
        let slot = &mut self.slots[i];
        slot.generation = (slot.generation + 1) % GENERATIONS;
        self.free.push(i as u32);
        slot.token.take()
    }
}

struct Tokens {
    live: Slots<RequestToken>,
    /// The last header block the plain `headers` function handed over.
    last_block: HeaderCache,
    /// The route the plain `finish` function was last given: a `finish(handle)` without one
    /// ends the request under it (the JS layer passes the route only when it changed, which
    /// saves reading the same string from JS for every request).
    last_route: String,
}

/// What the class and its plain functions share.
struct ReqCore {
    inner: RequestTracker,
    tokens: Mutex<Tokens>,
}

impl ReqCore {
    /// A new request's handle, 0 when disabled or not sampled.
    fn begin(&self) -> CoreResult<u32> {
        let Some(token) = self.inner.begin(UNMATCHED)? else { return Ok(0) };
        let inserted = self.tokens.lock().live.insert(token);
        match inserted {
            Ok(handle) => Ok(handle),
            // More requests in flight than handles: this one is not measured.
            Err(token) => {
                self.inner.abandon(token);
                Ok(0)
            }
        }
    }

    /// The headers so far as `name:value` lines; empty for an unknown handle.
    fn headers(&self, handle: u32) -> CoreResult<String> {
        let t = self.tokens.lock();
        let Some(token) = t.live.get(handle) else { return Ok(String::new()) };
        let report = self.inner.peek(token)?;
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

    /// The header block (`Name: value\n` lines, the core's) of a request in flight, or
    /// `None` when it is the same as the last block this returned: the figures change at
    /// most once per reading, so consecutive requests mostly send the same block, whose split
    /// the JS layer keeps.
    fn header_block_if_changed(&self, handle: u32) -> CoreResult<Option<String>> {
        let mut guard = self.tokens.lock();
        let t = &mut *guard;
        let Some(token) = t.live.get(handle) else { return Ok(Some(String::new())) };
        if self.inner.peek_header_block(token, &mut t.last_block)? {
            return Ok(Some(t.last_block.block.clone()));
        }
        Ok(None)
    }

    /// Ends the request under `route`; `None` for an unknown or already ended handle.
    fn end(&self, handle: u32, route: &str) -> CoreResult<Option<CoreReport>> {
        let Some(mut token) = self.tokens.lock().live.remove(handle) else { return Ok(None) };
        token.set_route(route);
        self.inner.end(token).map(Some)
    }

    /// As `end` without a report: whether the request was high-usage (`None` for an unknown
    /// or already ended handle); `route` `None` is the route the last call gave, and `Some`
    /// becomes it. The route is not copied per request: the core reads the remembered one.
    fn end_remembering(&self, handle: u32, route: Option<&str>) -> CoreResult<Option<bool>> {
        let mut t = self.tokens.lock();
        if let Some(r) = route {
            r.clone_into(&mut t.last_route);
        }
        let Some(token) = t.live.remove(handle) else { return Ok(None) };
        let route = if t.last_route.is_empty() { UNMATCHED } else { &t.last_route };
        // Under the lock (the route is borrowed from it); the core takes no lock of ours.
        self.inner.end_quiet(token, route).map(Some)
    }
}

/// The native request tracker. Use `memoryTracking()` from `lib/index.js`.
#[napi(js_name = "NativeRequestTracker")]
pub struct NativeRequestTracker {
    core: Arc<ReqCore>,
}

#[napi]
impl NativeRequestTracker {
    /// `config`: the core's keys (`enabled`, `track_peak`, `threshold_mb`, `sample_rate`, ...).
    #[napi(constructor)]
    pub fn new(env: Env, config: Option<Value>) -> Result<Self> {
        let cfg = normalize_numbers(config.unwrap_or(Value::Null));
        let inner = guarded(&env, || RequestTracker::from_json(&cfg))?;
        let tokens =
            Mutex::new(Tokens { live: Slots::new(), last_block: HeaderCache::default(), last_route: String::new() });
        Ok(NativeRequestTracker { core: Arc::new(ReqCore { inner, tokens }) })
    }

    /// `{ begin, headers, finish }` as plain functions, the middleware's per-request calls (a
    /// class method costs napi-rs' borrow and identity checks, more than these calls' work).
    /// This `headers(handle)` gives the core's header block (`Name: value` lines, empty for an
    /// unknown handle or with `include_headers` off), or `true` when it is the same block as
    /// its last answer; `finish(handle)` without a route ends the request under the route the
    /// last `finish` was given.
    #[napi(
        ts_return_type = "{ begin: () => number; headers: (handle: number) => string | true; finish: (handle: number, route?: string) => boolean | null }"
    )]
    pub fn fast_paths(&self, env: Env) -> Result<Object<'_>> {
        let fns: [(&CStr, sys::napi_callback); 3] =
            [(c"begin", Some(fast_begin)), (c"headers", Some(fast_headers)), (c"finish", Some(fast_finish))];
        let obj = fast::functions(&env, &self.core, "the request tracker's functions", &fns)?;
        Ok(Object::from_raw(env.raw(), obj))
    }

    /// Starts measuring a request whose route is not known yet (`end` names it); returns the
    /// request's handle, or 0 when disabled or not sampled.
    #[napi]
    pub fn begin(&self, env: Env) -> Result<u32> {
        guarded(&env, || self.core.begin())
    }

    /// The headers so far as one string of `name:value` lines (one JS string is much cheaper
    /// to hand over than eight); empty when `include_headers` is off or the handle is unknown.
    #[napi]
    pub fn headers(&self, env: Env, handle: u32) -> Result<String> {
        guarded(&env, || self.core.headers(handle))
    }

    /// Ends the request under `route` (the template known by now): records it in the
    /// analytics, logs it when high-usage. `null` for an unknown or already ended handle.
    #[napi]
    pub fn end(&self, env: Env, handle: u32, route: String) -> Result<Option<RequestReport>> {
        guarded(&env, || self.core.end(handle, &route)).map(|r| r.map(Into::into))
    }

    /// As `end` without building the report (no handler wants it): whether it was high-usage;
    /// `null` for an unknown or already ended handle.
    #[napi]
    pub fn finish(&self, env: Env, handle: u32, route: String) -> Result<Option<bool>> {
        guarded(&env, || self.core.end(handle, &route)).map(|r| r.map(|r| r.high_usage))
    }

    /// A handler of the JS layer threw for a request of `route`: counted and logged by the core.
    #[napi]
    pub fn handler_failed(&self, route: String, error: String) {
        self.core.inner.handler_failed(&route, &error);
    }

    /// Per-route aggregates (see the core's `RequestTracker::analytics`).
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn analytics(&self) -> Value {
        self.core.inner.analytics()
    }

    /// Requests begun and not yet ended.
    #[napi(getter)]
    pub fn in_flight(&self) -> f64 {
        self.core.inner.in_flight() as f64
    }

    /// `X-Memory-Limit` in bytes.
    #[napi(getter)]
    pub fn limit_bytes(&self) -> f64 {
        self.core.inner.limit_bytes() as f64
    }
}

// ---- fast paths ------------------------------------------------------------------------

/// An `u32` argument; 0 (no request) for anything else.
fn handle_arg(env: sys::napi_env, v: sys::napi_value) -> u32 {
    let mut h = 0u32;
    // Safety: `v` is a live argument; a non-number leaves `h` at 0, an unknown handle.
    unsafe { sys::napi_get_value_uint32(env, v, &mut h) };
    h
}

unsafe extern "C" fn fast_begin(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // Safety: this is the callback of the `begin` function made by `fast_paths`.
    let (core, [], _) = unsafe { fast::args::<ReqCore, 0>(env, info) };
    match guarded(&Env::from_raw(env), || core.begin()) {
        Ok(h) => fast::js_u32(env, h),
        // The exception is pending already.
        Err(_) => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn fast_headers(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // Safety: this is the callback of the `headers` function made by `fast_paths`.
    let (core, [h], _) = unsafe { fast::args::<ReqCore, 1>(env, info) };
    match guarded(&Env::from_raw(env), || core.header_block_if_changed(handle_arg(env, h))) {
        Ok(Some(s)) => crate::js_string(env, &s),
        Ok(None) => fast::js_bool(env, true),
        Err(_) => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn fast_finish(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // Safety: this is the callback of the `finish` function made by `fast_paths`.
    let (core, [h, route], argc) = unsafe { fast::args::<ReqCore, 2>(env, info) };
    let e = Env::from_raw(env);
    let (mut buf, mut owned) = ([0u8; 256], String::new());
    // `finish(handle)`: the route of the last call.
    let route = if argc < 2 {
        None
    } else {
        let Some(r) = fast::str_arg(env, route, &mut buf, &mut owned) else {
            let _ = type_error(&e, "memoryTracking(): the route must be a string");
            return std::ptr::null_mut();
        };
        Some(r)
    };
    match guarded(&e, || core.end_remembering(handle_arg(env, h), route)) {
        Ok(Some(high_usage)) => fast::js_bool(env, high_usage),
        Ok(None) => fast::js_null(env),
        Err(_) => std::ptr::null_mut(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_give_each_request_its_own_handle_and_refuse_ended_ones() {
        let mut s = Slots::new();
        let a = s.insert("a").unwrap();
        let b = s.insert("b").unwrap();
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!((s.get(a).copied(), s.get(b).copied()), (Some("a"), Some("b")));
        assert_eq!(s.remove(a), Some("a"));
        // Ended: neither found nor removed again, also once its slot holds another request.
        assert_eq!(s.get(a), None);
        assert_eq!(s.remove(a), None);
        let c = s.insert("c").unwrap();
        assert_ne!(c, a, "the reused slot's next handle differs");
        assert_eq!(s.get(a), None);
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(c), Some(&"c"));
        // Not handles: 0, an index past the array, a generation never given.
        assert_eq!(s.get(0), None);
        assert_eq!(s.get(12345), None);
        assert_eq!(s.get(b + (5 << SLOT_BITS)), None);
        assert_eq!(s.remove(b), Some("b"));
        assert_eq!(s.remove(c), Some("c"));
    }

    #[test]
    fn handles_stay_small_integers_through_every_generation() {
        let mut s = Slots::new();
        let mut seen = std::collections::HashSet::new();
        for i in 0..(GENERATIONS + 3) {
            let h = s.insert(i).unwrap();
            assert!(h > 0 && h < 1 << 31, "{h}");
            seen.insert(h);
            assert_eq!(s.remove(h), Some(i));
        }
        // One slot, reused: a handle per generation, then the first again.
        assert_eq!(seen.len(), GENERATIONS as usize);
        assert_eq!(s.slots.len(), 1);
    }

    #[test]
    fn past_the_most_in_flight_the_token_comes_back() {
        let mut s = Slots::new();
        for i in 0..MAX_IN_FLIGHT {
            s.insert(i as u32).unwrap();
        }
        assert_eq!(s.insert(7), Err(7));
        let last = MAX_IN_FLIGHT as u32; // the last slot, generation 0
        assert_eq!(s.remove(last), Some(MAX_IN_FLIGHT as u32 - 1));
        assert!(s.insert(8).is_ok());
    }
}
