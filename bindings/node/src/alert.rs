//! `NativeMemoryAlertingService`: the core's alerting service for JavaScript.
//!
//! Events born on the core's delivery thread (DESIGN §5) reach JS through one thread-safe
//! function per service, created unref'd (it never keeps the process alive) and called
//! non-blocking (the delivery thread never waits for JS). The function holds only a *weak*
//! reference to the JS handler, which is kept alive by a hidden property of the native object,
//! so a handler that captures its EventEmitter does not keep it from being collected; an event
//! that arrives after collection is dropped.
//!
//! Events born on the caller's thread that the core records only in its poll queue
//! (`alert_dropped`, `alert_suppressed`) are taken from that queue after each call and sent
//! through the same function, so JS sees them asynchronously as well. Every event the core
//! queued is kept in this binding's own buffer for `pollEvents()`.
//!
//! Dropping a service waits (bounded) for queued deliveries; to keep that wait off the JS
//! thread, `close()` and the finalizer hand the service to a short-lived thread to drop.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use memwarden_core::alert::AlertEvent;
use memwarden_core::{Error as CoreError, ErrorKind, MemoryAlertingService};
use napi::bindgen_prelude::*;
use napi::{Env, sys};
use napi_derive::napi;
use parking_lot::Mutex;
use serde_json::Value;

use crate::{
    NativeMemoryManager, expect_function, guarded, invalid_argument, js_string, keep_alive, normalize_numbers,
    throw_core, to_json,
};

/// Events kept for `pollEvents()` (oldest discarded first), as the core does.
const POLL_CAPACITY: usize = 1024;

/// What travels through the thread-safe function.
enum Msg {
    Event(AlertEvent),
    /// Settle a `flush()` Promise; sent after every event queued before it.
    Settle(sys::napi_deferred, bool),
}

/// The thread-safe function's address. `None` once Node finalized it (environment teardown)
/// or [`Tsfn`] released it: never touched after that.
struct Slot(Mutex<Option<usize>>);

/// This side's use of the thread-safe function (held by the core's callback, the service and
/// pending flushes); released when the last holder goes.
struct Tsfn {
    slot: Arc<Slot>,
}

impl Tsfn {
    /// Queues `msg` without blocking; false when the function is gone or closing.
    fn send(&self, msg: Msg) -> bool {
        let g = self.slot.0.lock();
        let Some(f) = *g else { return false };
        let data = Box::into_raw(Box::new(msg));
        // Safety: `f` is a live thread-safe function (checked under the lock that finalize
        // and release take); `data` is reclaimed by `call_js` or right here on failure.
        let st = unsafe {
            sys::napi_call_threadsafe_function(
                f as sys::napi_threadsafe_function,
                data.cast(),
                sys::ThreadsafeFunctionCallMode::nonblocking,
            )
        };
        if st != sys::Status::napi_ok {
            // Safety: not queued, so still ours.
            drop(unsafe { Box::from_raw(data) });
            return false;
        }
        true
    }
}

impl Drop for Tsfn {
    fn drop(&mut self) {
        if let Some(f) = self.slot.0.lock().take() {
            // Safety: releases this side's use of a live function; any thread may.
            unsafe {
                sys::napi_release_threadsafe_function(
                    f as sys::napi_threadsafe_function,
                    sys::ThreadsafeFunctionReleaseMode::release,
                )
            };
        }
    }
}

/// The JS-thread side of the thread-safe function.
struct Ctx {
    /// Weak reference to the JS handler `(event) => void`.
    handler: sys::napi_ref,
    slot: Arc<Slot>,
}

unsafe extern "C" fn call_js(env: sys::napi_env, _func: sys::napi_value, context: *mut c_void, data: *mut c_void) {
    // Safety: `data` is a `Msg` boxed by `Tsfn::send`; `context` is the `Ctx`.
    let msg = unsafe { Box::from_raw(data as *mut Msg) };
    if env.is_null() {
        return;
    }
    let ctx = unsafe { &*(context as *const Ctx) };
    match *msg {
        Msg::Event(e) => {
            let mut handler = ptr::null_mut();
            // Safety: on the JS thread; the weak reference belongs to `env`.
            unsafe { sys::napi_get_reference_value(env, ctx.handler, &mut handler) };
            if handler.is_null() {
                // The service's JS object was collected: nobody listens.
                return;
            }
            let Ok(v) = serde_json::to_value(&e) else { return };
            // Safety: converting into the live env of this call.
            let Ok(arg) = (unsafe { Value::to_napi_value(env, v) }) else { return };
            let (mut recv, mut result) = (ptr::null_mut(), ptr::null_mut());
            // Safety: plain calls on the JS thread. A listener's exception becomes an uncaught
            // exception ('uncaughtException'), as for any listener of an asynchronous event.
            unsafe {
                sys::napi_get_undefined(env, &mut recv);
                if sys::napi_call_function(env, recv, handler, 1, &arg, &mut result) != sys::Status::napi_ok {
                    let mut pending = false;
                    sys::napi_is_exception_pending(env, &mut pending);
                    if pending {
                        let mut exc = ptr::null_mut();
                        sys::napi_get_and_clear_last_exception(env, &mut exc);
                        sys::napi_fatal_exception(env, exc);
                    }
                }
            }
        }
        Msg::Settle(deferred, drained) => {
            let mut v = ptr::null_mut();
            // Safety: the deferred is settled exactly once, here, on the JS thread.
            unsafe {
                sys::napi_get_boolean(env, drained, &mut v);
                sys::napi_resolve_deferred(env, deferred, v);
            }
        }
    }
}

unsafe extern "C" fn finalize_ctx(env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // Safety: the context boxed in `set_event_handler`; finalized once, on the JS thread.
    let ctx = unsafe { Box::from_raw(data as *mut Ctx) };
    // From here on nobody may call or release the function.
    ctx.slot.0.lock().take();
    if !env.is_null() {
        // Safety: the weak reference of this env.
        unsafe { sys::napi_delete_reference(env, ctx.handler) };
    }
}

/// The service and its event function. Queued deliveries still report through the function
/// while the core's `Drop` gives them their grace period.
struct Inner {
    svc: Arc<MemoryAlertingService>,
    tsfn: Option<Arc<Tsfn>>,
}

/// The native alerting service. Use `MemoryAlertingService` from `lib/index.js`.
#[napi(js_name = "NativeMemoryAlertingService")]
pub struct NativeMemoryAlertingService {
    inner: Mutex<Option<Arc<Inner>>>,
    polled: Arc<Mutex<VecDeque<AlertEvent>>>,
}

fn closed(env: &Env) -> napi::Error {
    throw_core(env, &CoreError::new(ErrorKind::Closed, "MemoryAlertingService is closed"))
}

fn secs(env: &Env, method: &str, t: Option<f64>) -> Result<Option<Duration>> {
    match t {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s.min(1e9)))),
        Some(s) => Err(invalid_argument(env, format!("{method}(): 'timeoutSeconds' must be a number >= 0, got {s}"))),
    }
}

#[napi]
impl NativeMemoryAlertingService {
    /// `config`: the seed's keys (`channels`, `thresholds`, `escalation`, ...); `manager`: the
    /// manager whose readings are judged (`null`: a default process manager).
    #[napi(
        constructor,
        ts_args_type = "config: Record<string, any> | null | undefined, manager?: NativeMemoryManager | null"
    )]
    pub fn new(env: Env, config: Option<Value>, manager: Option<&NativeMemoryManager>) -> Result<Self> {
        let cfg = normalize_numbers(config.unwrap_or(Value::Null));
        let m = manager.map(|m| m.inner.clone());
        let svc =
            guarded(&env, || MemoryAlertingService::new(memwarden_core::alert::AlertConfig::from_json(&cfg)?, m))?;
        Ok(NativeMemoryAlertingService {
            inner: Mutex::new(Some(Arc::new(Inner { svc: Arc::new(svc), tsfn: None }))),
            polled: Arc::new(Mutex::new(VecDeque::new())),
        })
    }

    /// `handler(event)` gets every event, asynchronously on the JS thread. Once only.
    #[napi(ts_args_type = "handler: (event: Record<string, any>) => void")]
    pub fn set_event_handler(&self, env: Env, this: This<Object>, handler: Unknown) -> Result<()> {
        expect_function(&env, &handler, "setEventHandler", "handler")?;
        let mut guard = self.inner.lock();
        let Some(inner) = guard.as_ref() else { return Err(closed(&env)) };
        if inner.tsfn.is_some() {
            return Err(invalid_argument(&env, "setEventHandler(): the handler is already set"));
        }
        keep_alive(&env, &this.object, "events", Some(&handler))?;
        let raw = env.raw();
        let mut weak = ptr::null_mut();
        // Safety: `handler` is a live function of this env.
        check_status!(unsafe { sys::napi_create_reference(raw, handler.raw(), 0, &mut weak) })?;
        let slot = Arc::new(Slot(Mutex::new(None)));
        let ctx = Box::into_raw(Box::new(Ctx { handler: weak, slot: slot.clone() }));
        let mut f = ptr::null_mut();
        // Safety: on the JS thread; the context is freed by `finalize_ctx` (or below on failure).
        unsafe {
            let st = sys::napi_create_threadsafe_function(
                raw,
                ptr::null_mut(),
                ptr::null_mut(),
                js_string(raw, "memwarden-alert"),
                0,
                1,
                ctx.cast(),
                Some(finalize_ctx),
                ctx.cast(),
                Some(call_js),
                &mut f,
            );
            if st != sys::Status::napi_ok {
                let ctx = Box::from_raw(ctx);
                sys::napi_delete_reference(raw, ctx.handler);
                return Err(napi::Error::new(Status::GenericFailure, "cannot create a thread-safe function"));
            }
            sys::napi_unref_threadsafe_function(raw, f);
        }
        *slot.0.lock() = Some(f as usize);
        let shared = Arc::new(Tsfn { slot });
        let t2 = shared.clone();
        inner.svc.set_event_callback(Some(Box::new(move |e: &AlertEvent| {
            t2.send(Msg::Event(e.clone()));
        })));
        let svc = inner.svc.clone();
        *guard = Some(Arc::new(Inner { svc, tsfn: Some(shared) }));
        Ok(())
    }

    /// Reads the manager, decides, queues deliveries; returns the level at once.
    #[napi]
    pub fn check_and_alert(&self, env: Env) -> Result<String> {
        let inner = self.get(&env)?;
        let r = guarded(&env, || inner.svc.check_and_alert());
        self.collect(&inner);
        r.map(|s| s.as_str().to_owned())
    }

    /// The user's own message at `level`; returns the alert's id.
    #[napi]
    pub fn send_alert(&self, env: Env, message: String, level: String) -> Result<i64> {
        let inner = self.get(&env)?;
        let r = guarded(&env, || inner.svc.send_alert_str(&message, &level));
        self.collect(&inner);
        r
    }

    /// Waits on this thread until queued deliveries were attempted; true when drained.
    #[napi]
    pub fn flush_sync(&self, env: Env, timeout_seconds: Option<f64>) -> Result<bool> {
        let t = secs(&env, "flushSync", timeout_seconds)?;
        let inner = self.get(&env)?;
        Ok(inner.svc.flush(t))
    }

    /// Waits on a thread of its own; the Promise settles through the event function, after
    /// every event queued before it. The JS layer keeps the event loop alive meanwhile.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn flush(&self, env: Env, timeout_seconds: Option<f64>) -> Result<Unknown<'_>> {
        let t = secs(&env, "flush", timeout_seconds)?;
        let inner = self.get(&env)?;
        let raw = env.raw();
        let (mut deferred, mut promise) = (ptr::null_mut(), ptr::null_mut());
        // Safety: on the JS thread.
        check_status!(unsafe { sys::napi_create_promise(raw, &mut deferred, &mut promise) })?;
        let Some(tsfn) = inner.tsfn.clone() else {
            // No event function: wait here (only possible before the JS layer set it).
            let drained = inner.svc.flush(t);
            let mut v = ptr::null_mut();
            // Safety: on the JS thread; settled once.
            unsafe {
                sys::napi_get_boolean(raw, drained, &mut v);
                sys::napi_resolve_deferred(raw, deferred, v);
            }
            // Safety: `promise` is a live value of this env.
            return Ok(unsafe { Unknown::from_raw_unchecked(raw, promise) });
        };
        let d = deferred as usize;
        std::thread::Builder::new()
            .name("memwarden-flush".into())
            .spawn(move || {
                let drained = inner.svc.flush(t);
                // If the function is gone (teardown), the Promise can no longer settle.
                tsfn.send(Msg::Settle(d as sys::napi_deferred, drained));
            })
            .map_err(|e| napi::Error::new(Status::GenericFailure, format!("cannot start a thread: {e}")))?;
        // Safety: as above.
        Ok(unsafe { Unknown::from_raw_unchecked(raw, promise) })
    }

    /// History, newest first. Filters: `level`, `channel`, `kind`, `since`, `limit`.
    #[napi(ts_return_type = "Array<Record<string, any>>")]
    pub fn get_alert_history(&self, env: Env, filters: Option<Value>) -> Result<Value> {
        let inner = self.get(&env)?;
        let f = normalize_numbers(filters.unwrap_or(Value::Null));
        guarded(&env, || inner.svc.get_alert_history(&f))
    }

    /// Every event since the last call, oldest first.
    #[napi(ts_return_type = "Array<Record<string, any>>")]
    pub fn poll_events(&self, env: Env) -> Result<Value> {
        if let Some(inner) = self.inner.lock().clone() {
            self.collect(&inner);
        }
        let events: Vec<AlertEvent> = self.polled.lock().drain(..).collect();
        to_json(&env, serde_json::to_value(events))
    }

    /// The level the last check arrived at.
    #[napi(getter)]
    pub fn level(&self, env: Env) -> Result<String> {
        Ok(self.get(&env)?.svc.level().as_str().to_owned())
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.lock().is_none()
    }

    /// Stops the service: queued deliveries get a short grace period on a background
    /// thread; the call itself returns at once. Idempotent.
    #[napi]
    pub fn close(&self) {
        let taken = self.inner.lock().take();
        if let Some(inner) = taken {
            self.collect(&inner);
            drop_off_thread(inner);
        }
    }
}

impl NativeMemoryAlertingService {
    fn get(&self, env: &Env) -> Result<Arc<Inner>> {
        self.inner.lock().clone().ok_or_else(|| closed(env))
    }

    /// Moves the core's poll queue into ours; forwards the events the core gives no callback.
    fn collect(&self, inner: &Inner) {
        let events = inner.svc.poll_events();
        if events.is_empty() {
            return;
        }
        let mut q = self.polled.lock();
        for e in events {
            if matches!(e.kind, "alert_dropped" | "alert_suppressed")
                && let Some(t) = &inner.tsfn
            {
                t.send(Msg::Event(e.clone()));
            }
            if q.len() >= POLL_CAPACITY {
                q.pop_front();
            }
            q.push_back(e);
        }
    }
}

/// The core's `Drop` waits (bounded) for queued deliveries: never on the JS thread.
/// Should no thread be had, the closure (and the service) is dropped here instead.
fn drop_off_thread(inner: Arc<Inner>) {
    let _ = std::thread::Builder::new().name("memwarden-alert-close".into()).spawn(move || drop(inner));
}

impl Drop for NativeMemoryAlertingService {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.get_mut().take() {
            drop_off_thread(inner);
        }
    }
}
