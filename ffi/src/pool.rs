//! `mw_pool_*`: the MemoryPool through the C ABI. Objects are `void *`.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use memwarden_core::pool::LeakReport;
use memwarden_core::{Error, Pool, PoolConfig, config};

use crate::boundary::{
    FfiError, FfiResult, boundary, boundary_void, free_handle, get_handle, mw_status, need_out, new_handle, out_string,
    str_arg, write_out,
};
use crate::manager::{mw_free_fn, mw_manager};

/// An object pool. Create with `mw_pool_new`, free with `mw_pool_free`.
///
/// Thread-safe. `mw_pool_acquire` blocks up to `acquire_timeout` when all objects are in
/// use, waiting first come first served. The create, reset, validate and destroy
/// callbacks run on the thread that called in; with `background_hooks` set, eviction
/// (destroy), refill (create) and leak reports also run on the library's pool thread.
pub struct mw_pool {
    inner: Pool<Object>,
}

/// A pooled `void *`, sent between threads as the C caller allows (see `background_hooks`).
struct Object(*mut c_void);
// Safety: the pool only moves the pointer between threads; what it points to is used by the
// caller's callbacks, under the thread contract documented on mw_pool_callbacks.
unsafe impl Send for Object {}

/// Creates an object: write it to `*out_object` (not NULL) and return 0. Non-zero fails the
/// acquire with `MW_STATUS_CALLBACK`.
pub type mw_pool_create_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, out_object: *mut *mut c_void) -> i32>;
/// Resets an object on release. Return 0; non-zero destroys the object and the release
/// returns `MW_STATUS_CALLBACK`.
pub type mw_pool_reset_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, object: *mut c_void) -> i32>;
/// Validates an object idle longer than `validation_interval`: write true or false to
/// `*out_valid` and return 0. Invalid objects are destroyed and the next one is tried;
/// non-zero destroys the object and fails the acquire with `MW_STATUS_CALLBACK`.
pub type mw_pool_validate_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, object: *mut c_void, out_valid: *mut bool) -> i32>;
/// Destroys an object the pool no longer keeps.
pub type mw_pool_destroy_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, object: *mut c_void)>;
/// Told about an object held longer than `leak_detection_threshold`; `report_json`
/// (`{"id", "held_ms", "acquired_at"}`) is valid only during the call.
pub type mw_pool_leak_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, report_json: *const c_char)>;

/// The callbacks of a pool. `create` is required; the others may be NULL. `user_data` is
/// passed to each; `free_user_data` (may be NULL) is called with it when the pool is freed.
#[repr(C)]
pub struct mw_pool_callbacks {
    pub user_data: *mut c_void,
    pub free_user_data: mw_free_fn,
    pub create: mw_pool_create_fn,
    pub reset: mw_pool_reset_fn,
    pub validate: mw_pool_validate_fn,
    pub destroy: mw_pool_destroy_fn,
    pub on_leak: mw_pool_leak_fn,
    /// Whether the callbacks may run on the library's pool thread (eviction, refill, leak
    /// reports). When false, that work runs on the next call into the pool, or on
    /// `mw_pool_maintain`.
    pub background_hooks: bool,
}

/// `user_data` and its finalizer, shared by all of a pool's callbacks.
struct Shared {
    ptr: *mut c_void,
    free: mw_free_fn,
}
// Safety: as for Object: the C caller promises user_data is usable from the threads the
// pool documents.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}
impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(f) = self.free {
            // Safety: the finalizer was given for exactly this pointer; called once.
            unsafe { f(self.ptr) };
        }
    }
}

fn rc(what: &str, code: i32) -> memwarden_core::Result<()> {
    if code == 0 { Ok(()) } else { Err(Error::callback(format!("pool {what} callback returned {code}"))) }
}

fn pool(p: *const mw_pool) -> FfiResult<Arc<mw_pool>> {
    get_handle(p, "pool")
}

/// Creates a pool and its first `min_size` objects.
///
/// `config_json`: `max_size` (10), `min_size` (2, at most `max_size`), `max_idle_time` (300 s),
/// `max_lifetime` (0 = none), `validation_interval` (60 s), `acquire_timeout` (30 s),
/// `leak_detection_threshold` (0 = off), `auto_cleanup` (true), `statistics` (true); NULL or
/// `""` for the defaults. Returns `MW_STATUS_INVALID_CONFIG` for a bad config,
/// `MW_STATUS_NULL_ARGUMENT` when `callbacks`, `callbacks->create` or `out` is NULL,
/// `MW_STATUS_CALLBACK` when creating the first objects failed. `free_user_data` runs when
/// the pool is freed, or at once when this call fails.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_pool_new(
    config_json: *const c_char,
    callbacks: *const mw_pool_callbacks,
    out: *mut *mut mw_pool,
) -> mw_status {
    boundary(|| {
        if callbacks.is_null() {
            return Err(FfiError::null("callbacks"));
        }
        // Safety: non-NULL and valid for the call per the contract.
        let cb = unsafe { &*callbacks };
        let shared = Arc::new(Shared { ptr: cb.user_data, free: cb.free_user_data });
        need_out(out, "out")?;
        let create = cb.create.ok_or_else(|| FfiError::null("callbacks->create"))?;
        let cfg = if config_json.is_null() {
            serde_json::Value::Null
        } else {
            // Safety: NUL-terminated per the contract.
            config::parse_json("MemoryPool", unsafe { str_arg(config_json, "config_json") }?)?
        };
        let cfg = PoolConfig::from_json(&cfg)?;
        let ud = shared.clone();
        let mut b = Pool::builder(cfg, move || {
            let mut obj: *mut c_void = std::ptr::null_mut();
            // Safety: the caller's create callback, with its user_data and a live out-pointer.
            rc("create", unsafe { create(ud.ptr, &mut obj) })?;
            if obj.is_null() {
                return Err(Error::callback("pool create callback returned 0 but wrote a NULL object"));
            }
            Ok(Object(obj))
        })
        .identity(|o: &Object| o.0 as u64)
        .background_hooks(cb.background_hooks);
        if let Some(reset) = cb.reset {
            let ud = shared.clone();
            // Safety: the caller's callback with its user_data and an object of this pool.
            b = b.reset(move |o: &mut Object| rc("reset", unsafe { reset(ud.ptr, o.0) }));
        }
        if let Some(validate) = cb.validate {
            let ud = shared.clone();
            b = b.validate(move |o: &Object| {
                let mut valid = false;
                // Safety: as above; `valid` is a live local.
                rc("validate", unsafe { validate(ud.ptr, o.0, &mut valid) })?;
                Ok(valid)
            });
        }
        if let Some(destroy) = cb.destroy {
            let ud = shared.clone();
            // Safety: as above; the pool gives up the object here.
            b = b.destroy(move |o: Object| unsafe { destroy(ud.ptr, o.0) });
        }
        if let Some(on_leak) = cb.on_leak {
            let ud = shared.clone();
            b = b.on_leak(move |l: &LeakReport| {
                let json =
                    std::ffi::CString::new(serde_json::to_string(l).expect("report serializes")).unwrap_or_default();
                // Safety: as above; `json` outlives the call.
                unsafe { on_leak(ud.ptr, json.as_ptr()) }
            });
        }
        drop(shared);
        let h = new_handle(mw_pool { inner: b.build()? });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Frees a pool: idle objects are destroyed (through `destroy`), then `free_user_data` runs.
/// Objects still acquired are not destroyed; release them first (a release after the free
/// returns `MW_STATUS_INVALID_ARGUMENT`). NULL is a no-op. Must not be called twice.
#[unsafe(no_mangle)]
pub extern "C" fn mw_pool_free(pool: *mut mw_pool) {
    boundary_void(|| {
        if let Ok(p) = get_handle(pool, "pool") {
            p.inner.close();
        }
        free_handle(pool)
    });
}

/// Takes an object, waiting up to `acquire_timeout` (first come first served) when all
/// `max_size` are in use. `label` (may be NULL) is kept for leak reports: where it was
/// acquired. Returns `MW_STATUS_TIMEOUT` when none became free, `MW_STATUS_CLOSED` after
/// `mw_pool_close`, `MW_STATUS_CALLBACK` when create or validate failed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_pool_acquire(
    pool: *mut mw_pool,
    label: *const c_char,
    out_object: *mut *mut c_void,
) -> mw_status {
    boundary(|| {
        let p = self::pool(pool)?;
        need_out(out_object, "out_object")?;
        // Safety: NULL or NUL-terminated per the contract.
        let label = if label.is_null() { None } else { Some(unsafe { str_arg(label, "label") }?) };
        let lease = p.inner.acquire_labeled(label)?;
        // Safety: checked non-NULL above.
        unsafe { write_out(out_object, "out_object", lease.value.0) }
    })
}

/// Takes an object only if one is idle or can be created now; never waits. Writes whether
/// it did to `*out_acquired`, and the object to `*out_object` when it did.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_pool_try_acquire(
    pool: *mut mw_pool,
    label: *const c_char,
    out_object: *mut *mut c_void,
    out_acquired: *mut bool,
) -> mw_status {
    boundary(|| {
        let p = self::pool(pool)?;
        need_out(out_object, "out_object")?;
        need_out(out_acquired, "out_acquired")?;
        // Safety: NULL or NUL-terminated per the contract.
        let label = if label.is_null() { None } else { Some(unsafe { str_arg(label, "label") }?) };
        let got = p.inner.try_acquire(label)?;
        // Safety: both checked non-NULL above.
        unsafe {
            out_acquired.write(got.is_some());
            if let Some(l) = got {
                out_object.write(l.value.0);
            }
        }
        Ok(())
    })
}

/// Returns an object to the pool (its `reset` runs). Releasing an object twice, or one this
/// pool did not hand out, returns `MW_STATUS_INVALID_ARGUMENT` and changes nothing. A failing
/// `reset` destroys the object and returns `MW_STATUS_CALLBACK`.
#[unsafe(no_mangle)]
pub extern "C" fn mw_pool_release(pool: *mut mw_pool, object: *mut c_void) -> mw_status {
    boundary(|| {
        let p = self::pool(pool)?;
        if object.is_null() {
            return Err(FfiError::null("object"));
        }
        Ok(p.inner.release_value(Object(object))?)
    })
}

/// Evicts idle objects past `max_idle_time` / `max_lifetime`, reports leaks, and refills to
/// `min_size`, on this thread. `auto_cleanup` does this by itself about once a second.
#[unsafe(no_mangle)]
pub extern "C" fn mw_pool_maintain(pool: *mut mw_pool) -> mw_status {
    boundary(|| Ok(self::pool(pool)?.inner.maintain()?))
}

/// Destroys idle objects until at most `keep` remain; writes how many went to
/// `*out_destroyed` (may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_pool_trim(pool: *mut mw_pool, keep: usize, out_destroyed: *mut usize) -> mw_status {
    boundary(|| {
        let n = self::pool(pool)?.inner.trim(keep);
        if !out_destroyed.is_null() {
            // Safety: non-NULL and writable per the contract.
            unsafe { out_destroyed.write(n) };
        }
        Ok(())
    })
}

/// Closes the pool: no new acquires (`MW_STATUS_CLOSED`), idle objects destroyed now,
/// acquired ones when released, waiters woken with `MW_STATUS_CLOSED`. Idempotent.
#[unsafe(no_mangle)]
pub extern "C" fn mw_pool_close(pool: *mut mw_pool) -> mw_status {
    boundary(|| {
        self::pool(pool)?.inner.close();
        Ok(())
    })
}

/// Statistics as JSON: `active`, `idle`, `waiting`, `size`, `hit_rate` (%), `total_created`,
/// `total_destroyed`, `total_acquired`, `timeouts`, `validation_failures`, `leaks`,
/// `recent_leaks`, ... Free `*out` with `mw_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_pool_stats_json(pool: *const mw_pool, out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        let p = self::pool(pool)?;
        need_out(out, "out")?;
        let s = serde_json::to_string(&p.inner.statistics()).expect("stats serialize");
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", out_string(s)) }
    })
}

/// Registers the pool as a cleanup hook of `manager` under `name`: a collection trims it to
/// `min_size`, an emergency cleanup empties its idle objects. The manager keeps the pool
/// alive until the hook is removed or the manager is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_add_pool(
    manager: *mut mw_manager,
    name: *const c_char,
    priority: i32,
    pool: *mut mw_pool,
) -> mw_status {
    boundary(|| {
        let m = crate::manager::manager_handle(manager)?;
        let p = self::pool(pool)?;
        // Safety: NUL-terminated per the contract.
        let name = unsafe { str_arg(name, "name") }?;
        Ok(m.core().register_cleanup(name, priority, Arc::new(p.inner.clone()))?)
    })
}
