//! Node.js binding of memwarden (napi-rs 3).
//!
//! This crate is a thin translation layer: host values in, core calls, host values out.
//! The idiomatic JavaScript surface (`MemoryManager extends EventEmitter`, the `v8-heap`
//! readings, the `v8-gc` hook, `MemoryPool`) lives in `lib/index.js`; this file exposes the
//! `NativeMemoryManager` class it wraps, plus `parseSize`, `formatSize` and `version`;
//! `pool.rs` exposes `NativeMemoryPool`, `container.rs` `NativeLazyContainer`.
//!
//! Errors: every core error is thrown as a JS error whose `code` is `MW_<KIND>` (the
//! `MemwardenError` class once `lib/index.js` registered it with [`set_error_class`]).
//! An exception thrown by a JS callback is caught, reported to the core as a callback
//! error, and the *original* JS value is rethrown to the caller once the core returns.

use std::cell::{Cell, RefCell};
use std::ffi::c_char;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::ThreadId;

use memwarden_core::{
    CleanupLevel, Error as CoreError, ErrorKind, GcReport, ManagerConfig, MemoryManager, Size, State,
};
use napi::bindgen_prelude::*;
use napi::{Env, JsValue, sys};
use napi_derive::napi;
use serde_json::Value;

mod alert;
mod bridge;
mod chunk;
mod container;
mod fast;
mod iter;
mod monitor;
mod pool;
mod request;
mod tracker;

// Exported by `#[napi]`; re-exported so the lib test build sees it used.
pub use monitor::analyze_file;
mod stream;

type CoreResult<T> = memwarden_core::Result<T>;

// ---- errors ----------------------------------------------------------------------------

thread_local! {
    /// The exceptions thrown by JS callbacks during the current native call, in order. Raw
    /// `napi_value`s stay valid until the native call that created them returns, and
    /// [`guarded`] rethrows the first (and clears the list) before that happens. An exception
    /// handed to someone else (a pool's async waiter rejected with it) is marked claimed and
    /// is not rethrown to the caller.
    static PENDING_JS_ERRORS: Cell<Vec<PendingJsError>> = const { Cell::new(Vec::new()) };
    /// The `MemwardenError` constructor registered by `lib/index.js`, with its env.
    static ERROR_CLASS: RefCell<Option<(sys::napi_env, sys::napi_ref)>> = const { RefCell::new(None) };
}

/// `MW_` + the core error kind in SCREAMING_SNAKE: `MW_INVALID_CONFIG`, `MW_CALLBACK`, ...
fn error_code(kind: ErrorKind) -> String {
    format!("MW_{}", kind.as_str().to_ascii_uppercase())
}

fn js_string(env: sys::napi_env, s: &str) -> sys::napi_value {
    let mut out = ptr::null_mut();
    // Safety: `env` is the live env of the current native call; `s` is valid UTF-8 of the given length.
    unsafe { sys::napi_create_string_utf8(env, s.as_ptr().cast::<c_char>(), s.len() as isize, &mut out) };
    out
}

/// Throws `value` and returns the napi-rs error that tells the generated glue the
/// exception is already pending (so it does not throw a second one).
fn throw_value(env: sys::napi_env, value: sys::napi_value) -> napi::Error {
    // Safety: called on the JS thread during a native call, with a value from this env.
    unsafe { sys::napi_throw(env, value) };
    napi::Error::new(Status::PendingException, "exception pending")
}

/// Builds the JS error for a core error: `new MemwardenError(message, code)` when the JS
/// layer registered its class, else a plain `Error` with `code`.
fn core_error_value(env: sys::napi_env, e: &CoreError) -> sys::napi_value {
    let code = error_code(e.kind());
    let (msg_v, code_v) = (js_string(env, e.message()), js_string(env, &code));
    let ctor = ERROR_CLASS.with(|c| {
        c.borrow().and_then(|(cenv, r)| {
            if cenv != env {
                return None;
            }
            let mut ctor = ptr::null_mut();
            // Safety: `r` is a strong reference created in this env on this thread.
            let ok = unsafe { sys::napi_get_reference_value(env, r, &mut ctor) } == sys::Status::napi_ok;
            (ok && !ctor.is_null()).then_some(ctor)
        })
    });
    let mut err = ptr::null_mut();
    if let Some(ctor) = ctor {
        let argv = [msg_v, code_v];
        // Safety: `ctor` is a function value of this env; argv holds two live values.
        let st = unsafe { sys::napi_new_instance(env, ctor, 2, argv.as_ptr(), &mut err) };
        if st == sys::Status::napi_ok {
            return err;
        }
        clear_pending(env);
    }
    // Safety: plain error creation in the current env.
    unsafe { sys::napi_create_error(env, code_v, msg_v, &mut err) };
    err
}

fn clear_pending(env: sys::napi_env) {
    let mut pending = false;
    // Safety: querying and clearing the env's exception state on its own thread.
    unsafe {
        sys::napi_is_exception_pending(env, &mut pending);
        if pending {
            let mut ignored = ptr::null_mut();
            sys::napi_get_and_clear_last_exception(env, &mut ignored);
        }
    }
}

fn throw_core(env: &Env, e: &CoreError) -> napi::Error {
    throw_value(env.raw(), core_error_value(env.raw(), e))
}

fn invalid_argument(env: &Env, msg: impl Into<String>) -> napi::Error {
    throw_core(env, &CoreError::invalid_argument(msg))
}

fn type_error(env: &Env, msg: &str) -> napi::Error {
    let raw = env.raw();
    let (code, m) = (js_string(raw, "ERR_INVALID_ARG_TYPE"), js_string(raw, msg));
    let mut err = ptr::null_mut();
    // Safety: plain error creation in the current env.
    unsafe { sys::napi_create_type_error(raw, code, m, &mut err) };
    throw_value(raw, err)
}

#[derive(Clone, Copy)]
struct PendingJsError {
    value: sys::napi_value,
    /// Already delivered elsewhere (see [`claim_pending_js_error`]): not rethrown.
    claimed: bool,
}

/// Keeps `exc`, thrown by a JS callback, for [`guarded`] or a waiter to claim.
fn set_pending_js_error(exc: sys::napi_value) {
    PENDING_JS_ERRORS.with(|p| {
        let mut v = p.take();
        v.push(PendingJsError { value: exc, claimed: false });
        p.set(v);
    });
}

/// The exception a JS callback threw most recently during the current core call (the
/// factory that failed to create a waiter's object), marked as delivered: [`guarded`] will
/// not rethrow it to the caller.
fn claim_pending_js_error() -> Option<sys::napi_value> {
    PENDING_JS_ERRORS.with(|p| {
        let mut v = p.take();
        let last = v.last_mut().map(|e| {
            e.claimed = true;
            e.value
        });
        p.set(v);
        last
    })
}

/// Runs a core call; afterwards rethrows the original exception of a JS callback that
/// threw during it, or throws the core's own error. The slot is saved and restored around
/// the call so that a callback calling back in cannot consume an outer call's exception.
fn guarded<T>(env: &Env, f: impl FnOnce() -> CoreResult<T>) -> Result<T> {
    guarded_with(env, false, f)
}

/// As [`guarded`]; with `success_wins`, a successful result is returned even when a JS
/// callback that ran on the side (maintenance due on this call: eviction, leak reports)
/// threw, so that an object taken out of a pool is never lost to an unrelated exception.
fn guarded_with<T>(env: &Env, success_wins: bool, f: impl FnOnce() -> CoreResult<T>) -> Result<T> {
    let saved = PENDING_JS_ERRORS.with(Cell::take);
    let result = f();
    let thrown = PENDING_JS_ERRORS.with(|p| p.replace(saved)).into_iter().find(|e| !e.claimed).map(|e| e.value);
    match (thrown, result) {
        (Some(_), Ok(v)) if success_wins => Ok(v),
        (Some(js), _) => Err(throw_value(env.raw(), js)),
        (None, Ok(v)) => Ok(v),
        (None, Err(e)) => Err(throw_core(env, &e)),
    }
}

/// A short description of a thrown JS value for the core's records (hook reports).
fn describe_exception(env: sys::napi_env, exc: sys::napi_value) -> String {
    // Safety: `exc` is a live value of this env; coercion may run JS (`toString`), whose own
    // exception, if any, is cleared below.
    let text = unsafe { Unknown::from_raw_unchecked(env, exc) }
        .coerce_to_string()
        .and_then(|s| s.into_utf8())
        .and_then(|s| s.into_owned());
    clear_pending(env);
    text.unwrap_or_else(|_| "a JavaScript callback threw".to_owned())
}

// ---- callbacks -------------------------------------------------------------------------

/// A JS function the core may call.
///
/// Holds a *weak* napi reference: the function itself is kept alive by a hidden property
/// of the `NativeMemoryManager` / `NativeMemoryPool` object (see [`keep_alive`]), so a
/// callback that captures its owner forms a cycle the JS garbage collector can reclaim.
/// One-shot callbacks (a pool's async waiter) hold a strong reference instead
/// ([`JsCallback::new_strong`]), released when the core drops them.
struct JsCallback {
    env: sys::napi_env,
    func: sys::napi_ref,
    thread: ThreadId,
    what: &'static str,
}

// Safety: the core only calls these callbacks synchronously, on the thread that called
// into it (DESIGN §5), and this binding only calls into the core from the JS main thread
// of `env`. `call` additionally compares the current thread with the creating one and
// returns an error instead of touching JS when they differ; `Drop` leaks the reference
// rather than releasing it off-thread.
unsafe impl Send for JsCallback {}
unsafe impl Sync for JsCallback {}

impl JsCallback {
    fn new(env: &Env, func: &Unknown, what: &'static str) -> Result<Self> {
        Self::with_refcount(env, func, 0, what)
    }

    /// A callback that keeps its function alive itself, until the core drops it.
    fn new_strong(env: &Env, func: &Unknown, what: &'static str) -> Result<Self> {
        Self::with_refcount(env, func, 1, what)
    }

    fn with_refcount(env: &Env, func: &Unknown, count: u32, what: &'static str) -> Result<Self> {
        let mut r = ptr::null_mut();
        // Safety: `func` is a live function value of `env` (checked by the caller).
        let st = unsafe { sys::napi_create_reference(env.raw(), func.raw(), count, &mut r) };
        if st != sys::Status::napi_ok {
            return Err(napi::Error::new(Status::GenericFailure, format!("cannot reference the {what}")));
        }
        Ok(JsCallback { env: env.raw(), func: r, thread: std::thread::current().id(), what })
    }

    /// Calls the function with the arguments `args` builds. A JS exception is cleared,
    /// kept for [`guarded`] to rethrow, and reported to the core as a callback error.
    fn call(&self, args: impl FnOnce(sys::napi_env) -> Result<Vec<sys::napi_value>>) -> CoreResult<()> {
        self.call_with(args, |_, _| Ok(())).map(|_| ())
    }

    /// As [`call`](Self::call), converting the function's return value with `ret`.
    /// `Ok(None)`: the function was collected together with its owner; nothing was called.
    fn call_with<R>(
        &self,
        args: impl FnOnce(sys::napi_env) -> Result<Vec<sys::napi_value>>,
        ret: impl FnOnce(sys::napi_env, sys::napi_value) -> CoreResult<R>,
    ) -> CoreResult<Option<R>> {
        if std::thread::current().id() != self.thread {
            return Err(CoreError::callback(format!(
                "the JavaScript {} was called on a thread other than the JS thread; refused",
                self.what
            )));
        }
        let env = self.env;
        let mut func = ptr::null_mut();
        // Safety: on the creating thread; `self.func` is a reference of `env`.
        unsafe { sys::napi_get_reference_value(env, self.func, &mut func) };
        if func.is_null() {
            // Collected together with its owner: nothing to call.
            return Ok(None);
        }
        let argv = args(env).map_err(|e| CoreError::callback(format!("{} arguments: {e}", self.what)))?;
        let (mut recv, mut result) = (ptr::null_mut(), ptr::null_mut());
        // Safety: plain calls on the JS thread with live values of `env`.
        let st = unsafe {
            sys::napi_get_undefined(env, &mut recv);
            sys::napi_call_function(env, recv, func, argv.len(), argv.as_ptr(), &mut result)
        };
        if st == sys::Status::napi_ok {
            return ret(env, result).map(Some);
        }
        let mut pending = false;
        // Safety: as above.
        unsafe { sys::napi_is_exception_pending(env, &mut pending) };
        if !pending {
            return Err(CoreError::callback(format!("calling the JavaScript {} failed (napi status {st})", self.what)));
        }
        let mut exc = ptr::null_mut();
        // Safety: as above; clears the exception so the core can go on.
        unsafe { sys::napi_get_and_clear_last_exception(env, &mut exc) };
        let message = describe_exception(env, exc);
        set_pending_js_error(exc);
        Err(CoreError::callback(message))
    }
}

impl Drop for JsCallback {
    fn drop(&mut self) {
        if std::thread::current().id() == self.thread {
            // Safety: on the owning thread; the reference belongs to `env`.
            unsafe { sys::napi_delete_reference(self.env, self.func) };
        }
    }
}

fn string_args(env: sys::napi_env, items: &[&str]) -> Result<Vec<sys::napi_value>> {
    Ok(items.iter().map(|s| js_string(env, s)).collect())
}

const KEEP_KEY: &std::ffi::CStr = c"__memwardenCallbacks";

/// Stores `func` under `key` in a hidden (non-enumerable) object on `this`, so the function
/// lives exactly as long as the native object; `None` removes the entry for `key`.
fn keep_alive(env: &Env, this: &Object, key: &str, func: Option<&Unknown>) -> Result<()> {
    let raw = env.raw();
    let this_raw = this.raw();
    let mut store = ptr::null_mut();
    let mut ty = 0;
    // Safety: `this` is the live receiver of the current native call; all values belong to `env`.
    unsafe {
        sys::napi_get_named_property(raw, this_raw, KEEP_KEY.as_ptr(), &mut store);
        sys::napi_typeof(raw, store, &mut ty);
        if ty != sys::ValueType::napi_object {
            if func.is_none() {
                return Ok(());
            }
            sys::napi_create_object(raw, &mut store);
            let desc = sys::napi_property_descriptor {
                utf8name: KEEP_KEY.as_ptr(),
                name: ptr::null_mut(),
                method: None,
                getter: None,
                setter: None,
                value: store,
                attributes: sys::PropertyAttributes::default,
                data: ptr::null_mut(),
            };
            check_status!(sys::napi_define_properties(raw, this_raw, 1, &desc))?;
        }
        let k = js_string(raw, key);
        match func {
            Some(f) => check_status!(sys::napi_set_property(raw, store, k, f.raw()))?,
            None => {
                let mut deleted = false;
                check_status!(sys::napi_delete_property(raw, store, k, &mut deleted))?;
            }
        }
    }
    Ok(())
}

fn expect_function(env: &Env, value: &Unknown, method: &str, arg: &str) -> Result<()> {
    if value.get_type()? != ValueType::Function {
        return Err(type_error(env, &format!("{method}(): '{arg}' must be a function, got {}", value.get_type()?)));
    }
    Ok(())
}

// ---- config ----------------------------------------------------------------------------

/// JS numbers arrive as floats once they exceed u32; the core reads sizes and seeds as
/// integers, so integral floats within 2^53 become JSON integers again.
fn normalize_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                if f >= 0.0 { Value::from(f as u64) } else { Value::from(f as i64) }
            } else {
                Value::Number(n)
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(normalize_numbers).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize_numbers(v))).collect()),
        other => other,
    }
}

fn to_json(env: &Env, v: serde_json::Result<Value>) -> Result<Value> {
    v.map_err(|e| throw_core(env, &CoreError::new(ErrorKind::Io, e.to_string())))
}

fn bytes_arg(env: &Env, method: &str, arg: &str, v: f64) -> Result<u64> {
    if !v.is_finite() || v < 0.0 {
        return Err(invalid_argument(env, format!("{method}(): '{arg}' must be a number of bytes >= 0, got {v}")));
    }
    Ok(v as u64)
}

fn parse_state(env: &Env, s: &str) -> Result<State> {
    State::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
        invalid_argument(env, format!("unknown state '{s}'; expected 'normal', 'warning', 'critical' or 'emergency'"))
    })
}

// ---- the class -------------------------------------------------------------------------

/// `{ name, priority }` of a registered cleanup hook.
#[napi(object)]
pub struct CleanupHookInfo {
    pub name: String,
    pub priority: i32,
}

/// The effective memory limit and where it came from.
#[napi(object)]
pub struct MemoryLimit {
    /// Bytes.
    pub bytes: f64,
    /// `'explicit'`, `'host'`, `'cgroup_v2'`, `'cgroup_v1'` or `'physical'`.
    pub origin: String,
}

/// The native memory manager. Use `MemoryManager` from `lib/index.js`, which adds the
/// EventEmitter, the `v8-heap` source and the `v8-gc` hook on top of this class.
#[napi(js_name = "NativeMemoryManager")]
pub struct NativeMemoryManager {
    inner: Arc<MemoryManager>,
    next_key: AtomicU64,
}

#[napi]
impl NativeMemoryManager {
    /// `config`: the core's keys (`warning_threshold`, `memory_limit`, `source`, ...);
    /// `null`/`undefined` for the defaults.
    #[napi(constructor)]
    pub fn new(env: Env, config: Option<Value>) -> Result<Self> {
        let cfg = normalize_numbers(config.unwrap_or(Value::Null));
        let inner = guarded(&env, || MemoryManager::new(ManagerConfig::from_json(&cfg)?))?;
        Ok(NativeMemoryManager { inner: Arc::new(inner), next_key: AtomicU64::new(0) })
    }

    /// Samples, updates the state (firing state-change callbacks) and returns it.
    #[napi]
    pub fn check(&self, env: Env) -> Result<String> {
        guarded(&env, || self.inner.check()).map(|s| s.as_str().to_owned())
    }

    /// The state the last check arrived at, without sampling.
    #[napi(getter)]
    pub fn state(&self) -> String {
        self.inner.state().as_str().to_owned()
    }

    /// A fresh reading: `current_bytes`, `peak_bytes`, `limit_bytes`, `usage_percent`,
    /// `current_mb`, `peak_mb`, `limit_mb`, `limit_origin`, `source`.
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn get_memory_usage(&self, env: Env) -> Result<Value> {
        let usage = guarded(&env, || self.inner.get_memory_usage())?;
        to_json(&env, serde_json::to_value(usage))
    }

    /// `'512M'`, a number of bytes, or `-1` / `'-1'` to clear the explicit limit.
    #[napi]
    pub fn set_memory_limit(&self, env: Env, limit: Either<String, f64>) -> Result<()> {
        match limit {
            Either::A(text) => guarded(&env, || self.inner.set_memory_limit_str(&text)),
            Either::B(n) => {
                if !n.is_finite() || n.fract() != 0.0 {
                    return Err(invalid_argument(
                        &env,
                        format!(
                            "invalid memory limit {n}: expected a whole number of bytes, a size like '512M', or -1"
                        ),
                    ));
                }
                guarded(&env, || {
                    let size = memwarden_core::size::size_from_i64(n as i64)?;
                    self.inner.set_memory_limit(size)
                })
            }
        }
    }

    #[napi]
    pub fn get_memory_limit(&self) -> MemoryLimit {
        let (bytes, origin) = self.inner.limit();
        MemoryLimit { bytes: bytes as f64, origin: origin.as_str().to_owned() }
    }

    /// Runs onBeforeGC hooks, cleanup hooks by priority, malloc_trim, after-GC callbacks.
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn force_garbage_collection(&self, env: Env) -> Result<Value> {
        let report = guarded(&env, || self.inner.force_garbage_collection())?;
        to_json(&env, serde_json::to_value(report))
    }

    /// Like `forceGarbageCollection`, with hooks asked to release all they can.
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn emergency_cleanup(&self, env: Env) -> Result<Value> {
        let report = guarded(&env, || self.inner.emergency_cleanup())?;
        to_json(&env, serde_json::to_value(report))
    }

    #[napi(ts_return_type = "Record<string, any>")]
    pub fn get_detailed_stats(&self, env: Env) -> Result<Value> {
        guarded(&env, || self.inner.get_detailed_stats())
    }

    /// `callback(oldState, newState)`, once per change.
    #[napi(ts_args_type = "callback: (oldState: string, newState: string) => void")]
    pub fn on_state_change(&self, env: Env, this: This<Object>, callback: Unknown) -> Result<()> {
        expect_function(&env, &callback, "onStateChange", "callback")?;
        let cb = self.prepare(&env, &this.object, None, &callback, "onStateChange callback")?;
        self.inner.on_state_change(Arc::new(move |old: State, new: State| {
            cb.call(|env| string_args(env, &[old.as_str(), new.as_str()]))
        }));
        Ok(())
    }

    /// `callback()` first in every cleanup run.
    #[napi(js_name = "onBeforeGC", ts_args_type = "callback: () => void")]
    pub fn on_before_gc(&self, env: Env, this: This<Object>, callback: Unknown) -> Result<()> {
        expect_function(&env, &callback, "onBeforeGC", "callback")?;
        let cb = self.prepare(&env, &this.object, None, &callback, "onBeforeGC callback")?;
        self.inner.on_before_gc(Arc::new(move || cb.call(|_| Ok(Vec::new()))));
        Ok(())
    }

    /// `callback(report)` last in every cleanup run.
    #[napi(js_name = "onAfterGC", ts_args_type = "callback: (report: Record<string, any>) => void")]
    pub fn on_after_gc(&self, env: Env, this: This<Object>, callback: Unknown) -> Result<()> {
        expect_function(&env, &callback, "onAfterGC", "callback")?;
        let cb = self.prepare(&env, &this.object, None, &callback, "after-GC callback")?;
        self.inner.on_after_gc(Arc::new(move |report: &GcReport| {
            cb.call(|env| {
                let v = serde_json::to_value(report).map_err(|e| napi::Error::from_reason(e.to_string()))?;
                // Safety: converting into the live env of the current call.
                Ok(vec![unsafe { Value::to_napi_value(env, v)? }])
            })
        }));
        Ok(())
    }

    /// `hook(level)` with level `'normal'` or `'emergency'`; higher priorities run first;
    /// a second registration under the same name replaces the first.
    #[napi(ts_args_type = "name: string, hook: (level: 'normal' | 'emergency') => void, priority?: number")]
    pub fn register_cleanup_hook(
        &self,
        env: Env,
        this: This<Object>,
        name: String,
        hook: Unknown,
        priority: Option<i32>,
    ) -> Result<()> {
        expect_function(&env, &hook, "registerCleanupHook", "hook")?;
        if name.is_empty() {
            return Err(invalid_argument(&env, "a cleanup hook needs a non-empty name"));
        }
        let cb = self.prepare(&env, &this.object, Some(&name), &hook, "cleanup hook")?;
        let hook = Arc::new(move |level: CleanupLevel| cb.call(|env| string_args(env, &[level.as_str()])));
        guarded(&env, || self.inner.register_cleanup(&name, priority.unwrap_or(0), hook))
    }

    /// Registers a pool's own cleanup (trim idle objects to `min_size`; emergency: all idle
    /// objects) as cleanup hook `name`. The pool's JS hooks (destroy) then run inside
    /// `forceGarbageCollection` / `emergencyCleanup`, on this thread.
    #[napi(ts_args_type = "name: string, pool: NativeMemoryPool, priority?: number")]
    pub fn register_pool_cleanup(
        &self,
        env: Env,
        this: This<Object>,
        name: String,
        pool: ClassInstance<pool::NativeMemoryPool>,
        priority: Option<i32>,
    ) -> Result<()> {
        if name.is_empty() {
            return Err(invalid_argument(&env, "a cleanup hook needs a non-empty name"));
        }
        // The manager keeps the JS pool object (and so its hooks) alive while registered.
        // Safety: `pool.value` is the live class instance passed to this call.
        let pool_value = unsafe { Unknown::from_raw_unchecked(env.raw(), pool.value) };
        keep_alive(&env, &this.object, &format!("hook:{name}"), Some(&pool_value))?;
        let hook = pool.cleanup_hook();
        guarded(&env, || self.inner.register_cleanup(&name, priority.unwrap_or(0), hook))
    }

    /// Registers a container's own cleanup as cleanup hook `name`: with
    /// `release_lazy_on_cleanup`, cached lazy instances are dropped (their JS dispose hooks run
    /// inside `forceGarbageCollection` / `emergencyCleanup`, on this thread).
    #[napi(ts_args_type = "name: string, container: NativeLazyContainer, priority?: number")]
    pub fn register_container_cleanup(
        &self,
        env: Env,
        this: This<Object>,
        name: String,
        container: ClassInstance<container::NativeLazyContainer>,
        priority: Option<i32>,
    ) -> Result<()> {
        if name.is_empty() {
            return Err(invalid_argument(&env, "a cleanup hook needs a non-empty name"));
        }
        // The manager keeps the JS container object (and so its hooks) alive while registered.
        // Safety: `container.value` is the live class instance passed to this call.
        let value = unsafe { Unknown::from_raw_unchecked(env.raw(), container.value) };
        keep_alive(&env, &this.object, &format!("hook:{name}"), Some(&value))?;
        let hook = container.cleanup_hook();
        guarded(&env, || self.inner.register_cleanup(&name, priority.unwrap_or(0), hook))
    }

    /// Removes a cleanup hook by name; `false` when there was none.
    #[napi(ts_args_type = "name: string")]
    pub fn unregister_cleanup_hook(&self, env: Env, this: This<Object>, name: String) -> Result<bool> {
        let removed = self.inner.unregister_cleanup(&name);
        if removed {
            keep_alive(&env, &this.object, &format!("hook:{name}"), None)?;
        }
        Ok(removed)
    }

    /// Registered cleanup hooks in the order they run.
    #[napi]
    pub fn cleanup_hooks(&self) -> Vec<CleanupHookInfo> {
        self.inner.cleanup_hooks().into_iter().map(|(name, priority)| CleanupHookInfo { name, priority }).collect()
    }

    /// For source `'host'` / `'v8-heap'`: the host's current and peak bytes and its own
    /// limit (omitted, `0` or `-1` = none).
    #[napi]
    pub fn update_host_reading(&self, env: Env, current: f64, peak: Option<f64>, limit: Option<f64>) -> Result<()> {
        let current = bytes_arg(&env, "updateHostReading", "current", current)?;
        let peak = match peak {
            Some(p) => bytes_arg(&env, "updateHostReading", "peak", p)?,
            None => current,
        };
        // -1 (like PHP's `memory_limit = -1`) means the host has no limit of its own.
        let limit =
            limit.filter(|l| *l != -1.0).map(|l| bytes_arg(&env, "updateHostReading", "limit", l)).transpose()?;
        guarded(&env, || self.inner.update_host_reading(current, peak, limit))
    }

    #[napi]
    pub fn reset_peak(&self, env: Env) -> Result<()> {
        guarded(&env, || self.inner.reset_peak())
    }

    /// Reads the cgroup and physical limits again.
    #[napi]
    pub fn refresh_limit(&self) {
        self.inner.refresh_limit();
    }

    /// The configured threshold (a fraction of the limit) at which `state` begins.
    #[napi]
    pub fn threshold_of(&self, env: Env, state: String) -> Result<f64> {
        Ok(self.inner.threshold_of(parse_state(&env, &state)?))
    }

    /// The configured source: `'process'`, `'host'` or `'v8-heap'`.
    #[napi(getter)]
    pub fn source(&self) -> String {
        self.inner.config().source.as_str().to_owned()
    }
}

impl NativeMemoryManager {
    fn prepare(
        &self,
        env: &Env,
        this: &Object,
        hook_name: Option<&str>,
        func: &Unknown,
        what: &'static str,
    ) -> Result<JsCallback> {
        let key = match hook_name {
            Some(n) => format!("hook:{n}"),
            None => format!("cb:{}", self.next_key.fetch_add(1, Ordering::Relaxed)),
        };
        keep_alive(env, this, &key, Some(func))?;
        JsCallback::new(env, func, what)
    }
}

// ---- module functions ------------------------------------------------------------------

/// Registers the class native errors are created with: `new ErrorClass(message, code)`.
#[napi(ts_args_type = "errorClass: new (message: string, code: string) => Error")]
pub fn set_error_class(env: Env, error_class: Unknown) -> Result<()> {
    expect_function(&env, &error_class, "setErrorClass", "errorClass")?;
    let mut r = ptr::null_mut();
    // Safety: a strong reference to a function of this env, kept for the env's lifetime.
    check_status!(unsafe { sys::napi_create_reference(env.raw(), error_class.raw(), 1, &mut r) })?;
    ERROR_CLASS.with(|c| *c.borrow_mut() = Some((env.raw(), r)));
    Ok(())
}

/// `'512M'` -> 536870912; `'-1'` -> null.
#[napi]
pub fn parse_size(env: Env, text: String) -> Result<Option<f64>> {
    match guarded(&env, || memwarden_core::parse_size(&text))? {
        Size::Bytes(b) => Ok(Some(b as f64)),
        Size::Unlimited => Ok(None),
    }
}

/// 536870912 -> `'512M'` (the largest unit that divides exactly).
#[napi]
pub fn format_size(env: Env, bytes: f64) -> Result<String> {
    if !bytes.is_finite() || bytes < 0.0 || bytes.fract() != 0.0 {
        return Err(invalid_argument(
            &env,
            format!("formatSize(): expected a whole number of bytes >= 0, got {bytes}"),
        ));
    }
    Ok(memwarden_core::format_size(bytes as u64))
}

/// The crate version, as every binding reports it.
#[napi]
pub fn version() -> String {
    memwarden_core::VERSION.to_owned()
}
