//! `NativeMemoryPool`: the core's `Pool` for JavaScript objects.
//!
//! JS values are not `Send`, the core's pool values must be: the pool holds `u32` ids into
//! a table of JS objects that `lib/index.js` keeps (id -> object, object -> id). The hooks
//! `lib/index.js` passes in translate: its factory stores the user's object and returns the
//! new id, its destroy forgets the id, reset / validate / onLeak look the object up.
//!
//! Every hook runs on the JS thread: the pool is built with `background_hooks(false)`, so
//! maintenance runs on the next call into the pool (and from `maintain()`, which
//! `lib/index.js` calls from an unref'd interval), and async waiters are handed their object
//! inside the `release` (or `close`, `trim`, ...) that frees it, which only JS calls.
//!
//! The core releases by lease id. This class remembers the lease of every object out of the
//! pool, by object id, so that `release(id)` is one native call with no allocation.

use std::ffi::CStr;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use memwarden_core::{Cleanup, CleanupLevel, Error as CoreError, ErrorKind, Lease, Pool, PoolConfig};
use napi::bindgen_prelude::*;
use napi::{Env, sys};
use napi_derive::napi;
use parking_lot::Mutex;
use serde_json::Value;

use crate::fast::{self, js_i32, js_u32};
use crate::{
    CoreResult, JsCallback, claim_pending_js_error, core_error_value, guarded, guarded_with, invalid_argument,
    keep_alive, normalize_numbers, throw_core, to_json, type_error,
};

/// A lease id the core never hands out (slot index 2^32 - 1): releasing it is the core's
/// "not in use from this pool" error.
const NO_LEASE: u64 = u64::MAX;

/// What the hooks share with the class.
struct PoolCtx {
    /// Lease id of each object id while the object is out of the pool, else [`NO_LEASE`].
    leases: Mutex<Vec<u64>>,
    /// Cleared when the native object is finalized: hooks then no longer call JS (the core
    /// may destroy its remaining objects from a finalizer, where JS must not run).
    alive: AtomicBool,
}

impl PoolCtx {
    fn set_lease(&self, value: u32, lease: u64) {
        let mut l = self.leases.lock();
        let i = value as usize;
        if i >= l.len() {
            l.resize(i + 1, NO_LEASE);
        }
        l[i] = lease;
    }

    fn take_lease(&self, value: u32) -> u64 {
        match self.leases.lock().get_mut(value as usize) {
            Some(l) => std::mem::replace(l, NO_LEASE),
            None => NO_LEASE,
        }
    }

    /// The object id held under `lease`, for leak reports (rare; a scan is fine).
    fn value_of(&self, lease: u64) -> Option<u32> {
        self.leases.lock().iter().position(|&l| l == lease).map(|i| i as u32)
    }

    fn alive(&self) -> CoreResult<()> {
        if self.alive.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(CoreError::new(ErrorKind::Closed, "MemoryPool: the pool's JavaScript object was collected"))
        }
    }
}

fn js_f64(env: sys::napi_env, v: f64) -> sys::napi_value {
    let mut out = std::ptr::null_mut();
    // Safety: as above.
    unsafe { sys::napi_create_double(env, v, &mut out) };
    out
}

fn js_null(env: sys::napi_env) -> sys::napi_value {
    let mut out = std::ptr::null_mut();
    // Safety: as above.
    unsafe { sys::napi_get_null(env, &mut out) };
    out
}

/// Reads the hook `name` of `hooks`: `None` when absent, a TypeError when not a function.
fn hook<'a>(env: &Env, hooks: &'a Object, name: &str, required: bool) -> Result<Option<Unknown<'a>>> {
    let v: Option<Unknown> = hooks.get(name)?;
    match v {
        Some(v) if v.get_type()? == ValueType::Function => Ok(Some(v)),
        Some(v) if v.get_type()? != ValueType::Undefined => {
            Err(type_error(env, &format!("new MemoryPool(): '{name}' must be a function, got {}", v.get_type()?)))
        }
        _ if required => Err(type_error(env, &format!("new MemoryPool(): '{name}' must be a function, got undefined"))),
        _ => Ok(None),
    }
}

/// The native pool. Use `MemoryPool` / `TypedMemoryPool` from `lib/index.js`, which own the
/// table of pooled objects this class hands out ids of.
#[napi(js_name = "NativeMemoryPool")]
pub struct NativeMemoryPool {
    core: Arc<PoolCore>,
}

#[napi]
impl NativeMemoryPool {
    /// `config`: the core's keys (`max_size`, `min_size`, ...); `hooks`: `factory() -> id`
    /// (required), `destroy(id)` (required), `reset(id)`, `validate(id) -> boolean`,
    /// `onLeak(leaseId, heldMs, acquiredAt, id)`. Creates the first `min_size` objects.
    #[napi(
        constructor,
        ts_args_type = "config: Record<string, any> | null, hooks: { factory: () => number; destroy: (id: number) => void; reset?: (id: number) => void; validate?: (id: number) => boolean; onLeak?: (leaseId: number, heldMs: number, acquiredAt: string | null, id: number) => void }"
    )]
    pub fn new(env: Env, this: This<Object>, config: Option<Value>, hooks: Object) -> Result<Self> {
        let cfg = normalize_numbers(config.unwrap_or(Value::Null));
        let config = guarded(&env, || PoolConfig::from_json(&cfg))?;
        let ctx = Arc::new(PoolCtx { leases: Mutex::new(Vec::new()), alive: AtomicBool::new(true) });
        let this = &this.object;
        let prepare = |name: &str, required: bool, what: &'static str| -> Result<Option<JsCallback>> {
            match hook(&env, &hooks, name, required)? {
                Some(f) => {
                    keep_alive(&env, this, &format!("pool:{name}"), Some(&f))?;
                    Ok(Some(JsCallback::new(&env, &f, what)?))
                }
                None => Ok(None),
            }
        };
        let factory = prepare("factory", true, "pool factory")?.expect("required");
        let destroy = prepare("destroy", true, "pool destroy hook")?.expect("required");
        let reset = prepare("reset", false, "pool reset hook")?;
        let validate = prepare("validate", false, "pool validate hook")?;
        let on_leak = prepare("onLeak", false, "pool onLeak callback")?;

        let c = ctx.clone();
        let mut builder = Pool::builder(config, move || {
            c.alive()?;
            factory
                .call_with(
                    |_| Ok(Vec::new()),
                    |env, v| {
                        let mut id = 0u32;
                        // Safety: `v` is the live return value of the call.
                        let st = unsafe { sys::napi_get_value_uint32(env, v, &mut id) };
                        if st == sys::Status::napi_ok {
                            Ok(id)
                        } else {
                            Err(CoreError::callback("MemoryPool: the factory wrapper did not return an object id"))
                        }
                    },
                )?
                .ok_or_else(|| CoreError::callback("MemoryPool: the factory was collected"))
        })
        .background_hooks(false);

        let c = ctx.clone();
        builder = builder.destroy(move |id: u32| {
            if c.alive.load(Ordering::Acquire) {
                // An exception is kept and rethrown to the caller once the core returns.
                let _ = destroy.call(|env| Ok(vec![js_u32(env, id)]));
            }
        });
        if let Some(reset) = reset {
            let c = ctx.clone();
            builder = builder.reset(move |id: &mut u32| {
                c.alive()?;
                reset.call(|env| Ok(vec![js_u32(env, *id)]))
            });
        }
        if let Some(validate) = validate {
            let c = ctx.clone();
            builder = builder.validate(move |id: &u32| {
                c.alive()?;
                let ok = validate.call_with(
                    |env| Ok(vec![js_u32(env, *id)]),
                    |env, v| {
                        let mut b = false;
                        // Safety: `v` is the live return value of the call.
                        let st = unsafe { sys::napi_get_value_bool(env, v, &mut b) };
                        if st == sys::Status::napi_ok {
                            Ok(b)
                        } else {
                            Err(CoreError::callback("MemoryPool: the validate wrapper did not return a boolean"))
                        }
                    },
                )?;
                // Collected with its owner: nothing to check against.
                Ok(ok.unwrap_or(true))
            });
        }
        if let Some(on_leak) = on_leak {
            let c = ctx.clone();
            builder = builder.on_leak(move |report| {
                if !c.alive.load(Ordering::Acquire) {
                    return;
                }
                let value = c.value_of(report.id).map_or(-1.0, f64::from);
                let _ = on_leak.call(|env| {
                    let at = match &report.acquired_at {
                        Some(s) => crate::js_string(env, s),
                        None => js_null(env),
                    };
                    Ok(vec![js_f64(env, report.id as f64), js_f64(env, report.held_ms as f64), at, js_f64(env, value)])
                });
            });
        }
        let pool = guarded(&env, || builder.build())?;
        Ok(NativeMemoryPool { core: Arc::new(PoolCore { pool, ctx }) })
    }

    /// `{ acquire, tryAcquire, release }`: the hot paths as plain functions (a class method
    /// costs napi-rs' borrow and identity checks, several times the pool's own work).
    /// `acquire(label?) -> id` throws `MW_EXHAUSTED` when all `max_size` objects are in use
    /// (it never waits), `MW_CLOSED` after `close()`, or the factory's / validator's own
    /// exception; `tryAcquire(label?)` returns `-1` instead of `MW_EXHAUSTED`;
    /// `release(id)` (`-1`: an object this pool does not know) throws `MW_INVALID_ARGUMENT`,
    /// changing nothing, when the object is not out of the pool.
    #[napi(
        ts_return_type = "{ acquire: (label?: string) => number; tryAcquire: (label?: string) => number; release: (id: number) => void }"
    )]
    pub fn fast_paths(&self, env: Env) -> Result<Object<'_>> {
        let fns: [(&CStr, sys::napi_callback); 3] = [
            (c"acquire", Some(fast_acquire)),
            (c"tryAcquire", Some(fast_try_acquire)),
            (c"release", Some(fast_release)),
        ];
        let obj = fast::functions(&env, &self.core, "the pool's functions", &fns)?;
        Ok(Object::from_raw(env.raw(), obj))
    }

    /// Queues an acquire: `settle(id)` when an object is handed over, `settle(error)` when the
    /// wait ends otherwise (close, a failing factory). Returns the ticket for `cancelWaiter`,
    /// or `-1` when `settle` already ran.
    #[napi(ts_args_type = "label: string | undefined | null, settle: (result: number | Error) => void")]
    pub fn acquire_async(&self, env: Env, label: Option<String>, settle: Unknown) -> Result<f64> {
        if settle.get_type()? != ValueType::Function {
            return Err(type_error(&env, "acquireAsync(): 'settle' must be a function"));
        }
        let cb = JsCallback::new_strong(&env, &settle, "acquireAsync settle callback")?;
        let ctx = self.core.ctx.clone();
        let deliver = move |r: CoreResult<Lease<u32>>| match r {
            Ok(lease) => {
                ctx.set_lease(lease.value, lease.id);
                let _ = cb.call(|env| Ok(vec![js_u32(env, lease.value)]));
            }
            Err(e) => {
                let _ = cb.call(|env| {
                    // A factory that threw for this waiter: the waiter gets the exception itself.
                    let err = match e.kind() {
                        ErrorKind::Callback => claim_pending_js_error(),
                        _ => None,
                    };
                    Ok(vec![err.unwrap_or_else(|| core_error_value(env, &e))])
                });
            }
        };
        let ticket = guarded(&env, || Ok(self.core.pool.acquire_async(label.as_deref(), deliver)))?;
        Ok(ticket.map_or(-1.0, |t| t as f64))
    }

    /// Removes a queued waiter whose time is up (counted in `timeouts`); `false` when it
    /// was served or removed already.
    #[napi]
    pub fn cancel_waiter(&self, ticket: f64) -> bool {
        ticket >= 0.0 && self.core.pool.cancel_waiter(ticket as u64)
    }

    /// Evicts, reports leaks and refills to `min_size`.
    #[napi]
    pub fn maintain(&self, env: Env) -> Result<()> {
        guarded(&env, || self.core.pool.maintain())
    }

    /// Destroys idle objects down to `keep`; returns how many went.
    #[napi]
    pub fn trim(&self, env: Env, keep: u32) -> Result<u32> {
        guarded(&env, || Ok(self.core.pool.trim(keep as usize) as u32))
    }

    /// The pool's cleanup: `'normal'` trims idle objects to `min_size`, `'emergency'` to 0.
    #[napi]
    pub fn cleanup(&self, env: Env, level: String) -> Result<()> {
        let level = match level.as_str() {
            "normal" => CleanupLevel::Normal,
            "emergency" => CleanupLevel::Emergency,
            other => {
                return Err(invalid_argument(
                    &env,
                    format!("cleanup(): unknown level '{other}'; expected 'normal' or 'emergency'"),
                ));
            }
        };
        guarded(&env, || self.core.pool.cleanup(level))
    }

    /// No new acquires; idle objects destroyed now, objects in use when released; queued
    /// waiters get `MW_CLOSED`. Idempotent.
    #[napi]
    pub fn close(&self, env: Env) -> Result<()> {
        guarded(&env, || {
            self.core.pool.close();
            Ok(())
        })
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.core.pool.is_closed()
    }

    /// The core's `PoolStats`: `active`, `idle`, `waiting`, `size`, `hit_rate`, ...
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn statistics(&self, env: Env) -> Result<Value> {
        to_json(&env, serde_json::to_value(self.core.pool.statistics()))
    }

    /// The effective configuration, defaults filled in.
    #[napi(ts_return_type = "Record<string, number | boolean>")]
    pub fn config(&self) -> Value {
        let c = self.core.pool.config();
        serde_json::json!({
            "max_size": c.max_size,
            "min_size": c.min_size,
            "max_idle_time": c.max_idle_time,
            "max_lifetime": c.max_lifetime,
            "validation_interval": c.validation_interval,
            "acquire_timeout": c.acquire_timeout,
            "leak_detection_threshold": c.leak_detection_threshold,
            "auto_cleanup": c.auto_cleanup,
            "statistics": c.statistics,
        })
    }
}

impl NativeMemoryPool {
    /// The pool's cleanup, for a manager's cleanup hooks.
    pub(crate) fn cleanup_hook(&self) -> Arc<dyn Cleanup> {
        Arc::new(self.core.pool.clone())
    }
}

/// What the class and its fast-path functions share.
struct PoolCore {
    pool: Pool<u32>,
    ctx: Arc<PoolCtx>,
}

impl PoolCore {
    fn take(&self, env: &Env, label: Option<&str>) -> Result<Option<u32>> {
        // An exception from maintenance that ran on the side must not lose the object.
        match guarded_with(env, true, || self.pool.try_acquire(label))? {
            Some(lease) => {
                self.ctx.set_lease(lease.value, lease.id);
                Ok(Some(lease.value))
            }
            None => Ok(None),
        }
    }

    fn release(&self, env: &Env, id: i32) -> Result<()> {
        let (lease, value) = if id >= 0 { (self.ctx.take_lease(id as u32), id as u32) } else { (NO_LEASE, 0) };
        guarded(env, || self.pool.release_by_id(lease, value))
    }

    /// The core's try_acquire reports "would wait" as `None`; this is its exhausted error.
    fn exhausted(&self) -> CoreError {
        CoreError::new(
            ErrorKind::Exhausted,
            format!(
                "MemoryPool exhausted: all {} objects (max_size) are in use; acquireAsync() waits for one",
                self.pool.config().max_size
            ),
        )
    }
}

// ---- fast paths ------------------------------------------------------------------------

/// The first argument (null when none was passed) and the function's `PoolCore`.
///
/// Safety: `info` is the callback info of a call of a function made by `fast_paths`.
unsafe fn fast_args<'a>(env: sys::napi_env, info: sys::napi_callback_info) -> (&'a PoolCore, sys::napi_value) {
    // Safety: per the contract, the function's data is an `Arc<PoolCore>`.
    let (core, [arg], argc) = unsafe { fast::args::<PoolCore, 1>(env, info) };
    (core, if argc == 0 { ptr::null_mut() } else { arg })
}

/// A string argument, `None` for anything else (the JS layer checks types).
fn opt_string(env: sys::napi_env, v: sys::napi_value) -> Option<String> {
    if v.is_null() {
        return None;
    }
    let mut ty = 0;
    // Safety: `v` is a live argument of the current call.
    unsafe { sys::napi_typeof(env, v, &mut ty) };
    if ty != sys::ValueType::napi_string {
        return None;
    }
    // Safety: as above; `v` is a string.
    unsafe { String::from_napi_value(env, v) }.ok()
}

unsafe fn fast_take(env: sys::napi_env, info: sys::napi_callback_info, or_throw: bool) -> sys::napi_value {
    // Safety: called only as the callback of a fast-path function.
    let (core, arg) = unsafe { fast_args(env, info) };
    let label = opt_string(env, arg);
    let e = Env::from_raw(env);
    match core.take(&e, label.as_deref()) {
        Ok(Some(id)) => js_u32(env, id),
        Ok(None) if or_throw => {
            throw_core(&e, &core.exhausted());
            ptr::null_mut()
        }
        Ok(None) => js_i32(env, -1),
        // The exception is pending already.
        Err(_) => ptr::null_mut(),
    }
}

unsafe extern "C" fn fast_acquire(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // Safety: this is the callback of the `acquire` function made by `fast_paths`.
    unsafe { fast_take(env, info, true) }
}

unsafe extern "C" fn fast_try_acquire(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // Safety: this is the callback of the `tryAcquire` function made by `fast_paths`.
    unsafe { fast_take(env, info, false) }
}

unsafe extern "C" fn fast_release(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // Safety: this is the callback of the `release` function made by `fast_paths`.
    let (core, arg) = unsafe { fast_args(env, info) };
    let mut id = -1i32;
    if !arg.is_null() {
        // Safety: `arg` is a live argument; a non-number leaves `id` at -1 (an unknown object).
        unsafe { sys::napi_get_value_int32(env, arg, &mut id) };
    }
    let _ = core.release(&Env::from_raw(env), id);
    ptr::null_mut()
}

impl Drop for NativeMemoryPool {
    fn drop(&mut self) {
        self.core.ctx.alive.store(false, Ordering::Release);
    }
}
