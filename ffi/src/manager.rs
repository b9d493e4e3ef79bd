//! `mw_manager_*`: the MemoryManager through the C ABI.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use memwarden_core::{CleanupLevel, Error, GcReport, LimitOrigin, MemoryManager, State, config};

use crate::boundary::{
    FfiError, FfiResult, boundary, boundary_void, free_handle, get_handle, mw_status, need_out, new_handle, out_string,
    str_arg, write_out,
};

/// A memory manager. Create with `mw_manager_new`, free with `mw_manager_free`.
///
/// Thread-safe: every function may be called from any thread, also concurrently.
/// Callbacks run synchronously on the thread whose call triggered them
/// (`mw_manager_check`, `mw_manager_force_gc`, ...); the manager holds no lock while
/// they run, so they may call `mw_manager_*` functions on the same manager.
pub struct mw_manager {
    inner: MemoryManager,
}

/// Memory states, from calm to dire.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mw_state {
    /// Usage below `warning_threshold`.
    Normal = 0,
    /// Usage at or above `warning_threshold`.
    Warning = 1,
    /// Usage at or above `critical_threshold`.
    Critical = 2,
    /// Usage at or above `emergency_threshold`.
    Emergency = 3,
}

impl From<State> for mw_state {
    fn from(s: State) -> Self {
        match s {
            State::Normal => mw_state::Normal,
            State::Warning => mw_state::Warning,
            State::Critical => mw_state::Critical,
            State::Emergency => mw_state::Emergency,
        }
    }
}

/// Where a manager's limit came from, in the order they are tried.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mw_limit_origin {
    /// `memory_limit` in the config or `mw_manager_set_limit`.
    Explicit = 0,
    /// The host's own limit, pushed with `mw_manager_update_host_reading`.
    Host = 1,
    /// cgroup v2 `memory.max`.
    CgroupV2 = 2,
    /// cgroup v1 `memory.limit_in_bytes`.
    CgroupV1 = 3,
    /// Physical memory.
    Physical = 4,
}

impl From<LimitOrigin> for mw_limit_origin {
    fn from(o: LimitOrigin) -> Self {
        match o {
            LimitOrigin::Explicit => mw_limit_origin::Explicit,
            LimitOrigin::Host => mw_limit_origin::Host,
            LimitOrigin::CgroupV2 => mw_limit_origin::CgroupV2,
            LimitOrigin::CgroupV1 => mw_limit_origin::CgroupV1,
            LimitOrigin::Physical => mw_limit_origin::Physical,
        }
    }
}

/// One reading. Sizes in bytes; `usage_percent` is 0–100 of `limit_bytes`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct mw_usage {
    pub current_bytes: u64,
    pub peak_bytes: u64,
    pub limit_bytes: u64,
    pub usage_percent: f64,
}

/// Frees a callback's `user_data` when the manager no longer needs it (when the manager is
/// freed). May be NULL.
pub type mw_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// Called once per state change with the old and the new state. Return 0 on success;
/// any other value makes the triggering call return `MW_STATUS_CALLBACK` (after every
/// other callback has run and the state has been updated).
pub type mw_state_change_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, old_state: mw_state, new_state: mw_state) -> i32>;

/// A hook with no arguments (`onBeforeGC`). Return 0 on success.
pub type mw_hook_fn = Option<unsafe extern "C" fn(user_data: *mut c_void) -> i32>;

/// A cleanup hook; `emergency` is true during `mw_manager_emergency_cleanup` and automatic
/// emergency cleanups. Return 0 on success.
pub type mw_cleanup_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, emergency: bool) -> i32>;

/// Called after every cleanup run with its report as JSON; `report_json` is valid only
/// during the call. Return 0 on success.
pub type mw_gc_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, report_json: *const c_char) -> i32>;

/// Asked for a fresh host reading: write current and peak usage in bytes and the host's
/// limit (-1 when it has none) and return 0; any other return fails the triggering call
/// with `MW_STATUS_CALLBACK`. The out-pointers are never NULL.
pub type mw_host_reader_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        current_bytes: *mut u64,
        peak_bytes: *mut u64,
        limit_bytes: *mut i64,
    ) -> i32,
>;

/// A C callback's `user_data` and its finalizer.
struct UserData {
    ptr: *mut c_void,
    free: mw_free_fn,
}

// Safety: the header documents that callbacks (and so their user_data) run on whichever
// thread calls into the manager; a C caller that shares a manager between threads
// promises user_data is usable from all of them.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

impl UserData {
    /// Through a method, so closures capture the whole `UserData` (Send), not its raw field.
    fn ptr(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(f) = self.free {
            // Safety: the finalizer was supplied for exactly this pointer, called once.
            unsafe { f(self.ptr) };
        }
    }
}

fn callback_result(what: &str, rc: i32) -> memwarden_core::Result<()> {
    if rc == 0 { Ok(()) } else { Err(Error::callback(format!("{what} returned {rc}"))) }
}

fn manager(m: *const mw_manager) -> FfiResult<Arc<mw_manager>> {
    get_handle(m, "manager")
}

pub(crate) fn manager_handle(m: *const mw_manager) -> FfiResult<Arc<mw_manager>> {
    manager(m)
}

impl mw_manager {
    pub(crate) fn core(&self) -> &MemoryManager {
        &self.inner
    }
}

/// Creates a manager.
///
/// `config_json` is a JSON object with the seed's keys (`warning_threshold`,
/// `critical_threshold`, `auto_gc_threshold`, `enable_detailed_tracking`, `gc_probability`,
/// `emergency_threshold`, `memory_limit`, `source`, `hysteresis`, `random_seed`); NULL or
/// `""` means all defaults. On success writes the new handle to `*out`; on failure leaves
/// `*out` untouched.
///
/// Returns `MW_STATUS_NULL_ARGUMENT` when `out` is NULL, `MW_STATUS_INVALID_CONFIG` for
/// malformed JSON, an unknown key or a bad value (the message names it), `MW_STATUS_IO`
/// when /proc cannot be read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_new(config_json: *const c_char, out: *mut *mut mw_manager) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let cfg = if config_json.is_null() {
            serde_json::Value::Null
        } else {
            // Safety: non-NULL, NUL-terminated per the contract.
            let text = unsafe { str_arg(config_json, "config_json") }?;
            config::parse_json("MemoryManager", text)?
        };
        let inner = MemoryManager::from_json(&cfg)?;
        let h = new_handle(mw_manager { inner });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Frees a manager and the `user_data` of its callbacks (through their finalizers).
/// NULL is a no-op. Must not be called twice for the same handle; a second call is
/// detected and ignored, but the address may by then belong to a new manager.
#[unsafe(no_mangle)]
pub extern "C" fn mw_manager_free(manager: *mut mw_manager) {
    boundary_void(|| free_handle(manager));
}

/// Takes a reading, updates the state (with hysteresis), fires state-change callbacks once
/// per change and runs automatic cleanup. Writes the new state to `*out_state`.
///
/// Returns `MW_STATUS_CALLBACK` when a callback or hook returned non-zero (the state is
/// still updated and written), `MW_STATUS_NOT_FOUND` for a host source with no reading
/// pushed yet, `MW_STATUS_INVALID_ARGUMENT` for a freed handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_check(manager: *mut mw_manager, out_state: *mut mw_state) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        need_out(out_state, "out_state")?;
        let result = m.inner.check();
        // Safety: checked non-NULL above.
        unsafe { write_out(out_state, "out_state", m.inner.state().into()) }?;
        result.map(|_| ()).map_err(FfiError::from)
    })
}

/// The state the last `mw_manager_check` arrived at, without taking a reading.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_state(manager: *const mw_manager, out: *mut mw_state) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        // Safety: write_out checks for NULL; otherwise writable per the contract.
        unsafe { write_out(out, "out", m.inner.state().into()) }
    })
}

/// Takes a fresh reading (like `getMemoryUsage()`); does not change the state.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_usage(manager: *const mw_manager, out: *mut mw_usage) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        need_out(out, "out")?;
        let u = m.inner.get_memory_usage()?;
        let v = mw_usage {
            current_bytes: u.current_bytes,
            peak_bytes: u.peak_bytes,
            limit_bytes: u.limit_bytes,
            usage_percent: u.usage_percent,
        };
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", v) }
    })
}

/// A fresh reading as JSON with every key the bindings show (`current_mb`, `peak_mb`,
/// `limit_mb`, `usage_percent`, `current_bytes`, ..., `limit_origin`, `source`).
/// Free `*out` with `mw_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_usage_json(manager: *const mw_manager, out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        need_out(out, "out")?;
        let u = m.inner.get_memory_usage()?;
        let s = serde_json::to_string(&u).expect("usage serializes");
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", out_string(s)) }
    })
}

/// Sets an explicit limit from text as PHP writes it (`"512M"`, `"1G"`, `"128K"`, bytes);
/// `"-1"` clears it so the next origin applies. A bad size returns
/// `MW_STATUS_INVALID_ARGUMENT` naming the text and leaves the limit unchanged.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_set_limit(manager: *mut mw_manager, size: *const c_char) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        // Safety: NULL-checked inside; NUL-terminated per the contract.
        let text = unsafe { str_arg(size, "size") }?;
        Ok(m.inner.set_memory_limit_str(text)?)
    })
}

/// Sets an explicit limit in bytes; `-1` clears it. 0 and other negatives return
/// `MW_STATUS_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn mw_manager_set_limit_bytes(manager: *mut mw_manager, bytes: i64) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        Ok(m.inner.set_memory_limit(memwarden_core::size::size_from_i64(bytes)?)?)
    })
}

/// The limit in bytes and its origin. Either out-pointer may be NULL if not wanted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_limit(
    manager: *const mw_manager,
    out_bytes: *mut u64,
    out_origin: *mut mw_limit_origin,
) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        let (bytes, origin) = m.inner.limit();
        // Safety: each pointer is NULL (skipped) or writable per the contract.
        unsafe {
            if !out_bytes.is_null() {
                out_bytes.write(bytes);
            }
            if !out_origin.is_null() {
                out_origin.write(origin.into());
            }
        }
        Ok(())
    })
}

/// Detailed statistics as a JSON object (usage, state, limit and origin, thresholds, PSI,
/// counters, last cleanup, history with `enable_detailed_tracking`). Free `*out` with
/// `mw_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_stats_json(manager: *const mw_manager, out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        need_out(out, "out")?;
        let v = m.inner.get_detailed_stats()?;
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", out_string(v.to_string())) }
    })
}

fn report_out(r: memwarden_core::Result<GcReport>, out: *mut *mut c_char, m: &MemoryManager) -> FfiResult<()> {
    let (report, err) = match r {
        Ok(rep) => (serde_json::to_value(&rep).expect("report serializes"), None),
        // A failed hook still completes the run; its report is the last cleanup.
        Err(e) => (m.get_detailed_stats().map(|s| s["last_cleanup"].clone()).unwrap_or_default(), Some(e)),
    };
    if !out.is_null() {
        // Safety: non-NULL and writable per the contract.
        unsafe { out.write(out_string(report.to_string())) };
    }
    match err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Runs a cleanup run ("garbage collection"): `onBeforeGC` hooks, cleanup hooks by
/// priority, `malloc_trim(0)` on glibc, then after-GC callbacks. If `out_report` is not
/// NULL, writes the report as JSON (free with `mw_string_free`), also when a hook failed
/// (`MW_STATUS_CALLBACK`). Called from inside one of its own hooks it returns
/// `MW_STATUS_INVALID_ARGUMENT` instead of deadlocking.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_force_gc(manager: *mut mw_manager, out_report: *mut *mut c_char) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        report_out(m.inner.force_garbage_collection(), out_report, &m.inner)
    })
}

/// As `mw_manager_force_gc`, with hooks told it is an emergency (`emergency = true`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_emergency_cleanup(
    manager: *mut mw_manager,
    out_report: *mut *mut c_char,
) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        report_out(m.inner.emergency_cleanup(), out_report, &m.inner)
    })
}

/// For a manager with `"source": "host"`: the host's current and peak usage in bytes and
/// its own limit (`limit_bytes` -1 or 0 when the host has none).
/// Returns `MW_STATUS_INVALID_ARGUMENT` for a manager that reads the process.
#[unsafe(no_mangle)]
pub extern "C" fn mw_manager_update_host_reading(
    manager: *mut mw_manager,
    current_bytes: u64,
    peak_bytes: u64,
    limit_bytes: i64,
) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        let limit = if limit_bytes > 0 { Some(limit_bytes as u64) } else { None };
        Ok(m.inner.update_host_reading(current_bytes, peak_bytes, limit)?)
    })
}

/// For a manager with `"source": "host"`: registers a function the manager calls for a
/// fresh reading whenever it needs one (`mw_manager_check`, `mw_manager_usage`, before and
/// after each cleanup run), instead of readings pushed with `mw_manager_update_host_reading`.
/// Replaces an earlier reader. Runs on the thread that called in. Ownership of `user_data`
/// as for `mw_manager_on_state_change`. `MW_STATUS_INVALID_ARGUMENT` for a manager that
/// reads the process.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_set_host_reader(
    manager: *mut mw_manager,
    callback: mw_host_reader_fn,
    user_data: *mut c_void,
    free_user_data: mw_free_fn,
) -> mw_status {
    let ud = UserData { ptr: user_data, free: free_user_data };
    boundary(|| {
        let m = self::manager(manager)?;
        let cb = callback.ok_or_else(|| FfiError::null("callback"))?;
        Ok(m.inner.set_host_reader(Arc::new(move || {
            let (mut cur, mut peak, mut limit) = (0u64, 0u64, -1i64);
            // Safety: as in mw_manager_on_state_change; the out-pointers are live locals.
            let rc = unsafe { cb(ud.ptr(), &mut cur, &mut peak, &mut limit) };
            callback_result("host reader", rc)?;
            Ok((cur, peak, u64::try_from(limit).ok().filter(|l| *l > 0)))
        }))?)
    })
}

/// Resets the peak to the current reading (through `/proc/self/clear_refs` for the process).
#[unsafe(no_mangle)]
pub extern "C" fn mw_manager_reset_peak(manager: *mut mw_manager) -> mw_status {
    boundary(|| Ok(self::manager(manager)?.inner.reset_peak()?))
}

/// Reads the cgroup and physical limits again (they are read once, at creation).
#[unsafe(no_mangle)]
pub extern "C" fn mw_manager_refresh_limit(manager: *mut mw_manager) -> mw_status {
    boundary(|| {
        self::manager(manager)?.inner.refresh_limit();
        Ok(())
    })
}

/// Registers a state-change callback. `callback` must not be NULL. `free_user_data` (may
/// be NULL) is called with `user_data` when the manager is freed — also when this call
/// fails. Runs on the thread that called `mw_manager_check`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_on_state_change(
    manager: *mut mw_manager,
    callback: mw_state_change_fn,
    user_data: *mut c_void,
    free_user_data: mw_free_fn,
) -> mw_status {
    let ud = UserData { ptr: user_data, free: free_user_data };
    boundary(|| {
        let m = self::manager(manager)?;
        let cb = callback.ok_or_else(|| FfiError::null("callback"))?;
        m.inner.on_state_change(Arc::new(move |old, new| {
            // Safety: the caller supplied `cb` for `ud.ptr` and keeps both valid until the finalizer runs.
            callback_result("state-change callback", unsafe { cb(ud.ptr(), old.into(), new.into()) })
        }));
        Ok(())
    })
}

/// Registers an `onBeforeGC` hook: runs first in every cleanup run. Ownership of
/// `user_data` as for `mw_manager_on_state_change`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_on_before_gc(
    manager: *mut mw_manager,
    callback: mw_hook_fn,
    user_data: *mut c_void,
    free_user_data: mw_free_fn,
) -> mw_status {
    let ud = UserData { ptr: user_data, free: free_user_data };
    boundary(|| {
        let m = self::manager(manager)?;
        let cb = callback.ok_or_else(|| FfiError::null("callback"))?;
        m.inner.on_before_gc(Arc::new(move || {
            // Safety: as in mw_manager_on_state_change.
            callback_result("before-GC hook", unsafe { cb(ud.ptr()) })
        }));
        Ok(())
    })
}

/// Registers an after-GC callback (`gcCallback`): runs last in every cleanup run with the
/// report as JSON. Ownership of `user_data` as for `mw_manager_on_state_change`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_on_after_gc(
    manager: *mut mw_manager,
    callback: mw_gc_fn,
    user_data: *mut c_void,
    free_user_data: mw_free_fn,
) -> mw_status {
    let ud = UserData { ptr: user_data, free: free_user_data };
    boundary(|| {
        let m = self::manager(manager)?;
        let cb = callback.ok_or_else(|| FfiError::null("callback"))?;
        m.inner.on_after_gc(Arc::new(move |r: &GcReport| {
            let json =
                std::ffi::CString::new(serde_json::to_string(r).expect("report serializes")).expect("JSON has no NUL");
            // Safety: as in mw_manager_on_state_change; `json` outlives the call.
            callback_result("after-GC callback", unsafe { cb(ud.ptr(), json.as_ptr()) })
        }));
        Ok(())
    })
}

/// Registers a named cleanup hook; higher `priority` runs first, equal priorities in
/// registration order; a hook with the same name is replaced (its `user_data` freed when
/// the manager is). Ownership of `user_data` as for `mw_manager_on_state_change`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_add_cleanup_hook(
    manager: *mut mw_manager,
    name: *const c_char,
    priority: i32,
    callback: mw_cleanup_fn,
    user_data: *mut c_void,
    free_user_data: mw_free_fn,
) -> mw_status {
    let ud = UserData { ptr: user_data, free: free_user_data };
    boundary(|| {
        let m = self::manager(manager)?;
        // Safety: NULL-checked inside; NUL-terminated per the contract.
        let name = unsafe { str_arg(name, "name") }?;
        let cb = callback.ok_or_else(|| FfiError::null("callback"))?;
        let label = format!("cleanup hook '{name}'");
        let hook = move |level: CleanupLevel| {
            // Safety: as in mw_manager_on_state_change.
            callback_result(&label, unsafe { cb(ud.ptr(), level == CleanupLevel::Emergency) })
        };
        Ok(m.inner.register_cleanup(name, priority, Arc::new(hook))?)
    })
}

/// Removes a cleanup hook by name. Writes whether one was removed to `*out_removed`
/// (may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_remove_cleanup_hook(
    manager: *mut mw_manager,
    name: *const c_char,
    out_removed: *mut bool,
) -> mw_status {
    boundary(|| {
        let m = self::manager(manager)?;
        // Safety: NULL-checked inside; NUL-terminated per the contract.
        let name = unsafe { str_arg(name, "name") }?;
        let removed = m.inner.unregister_cleanup(name);
        if !out_removed.is_null() {
            // Safety: non-NULL and writable per the contract.
            unsafe { out_removed.write(removed) };
        }
        Ok(())
    })
}

/// The name of a state: `"normal"`, `"warning"`, `"critical"`, `"emergency"` (the value of
/// `STATE_*` in the other languages), or `"unknown"` for any other number. Static string;
/// do not free.
#[unsafe(no_mangle)]
pub extern "C" fn mw_state_name(state: i32) -> *const c_char {
    let s: &'static [u8] = match state {
        0 => b"normal\0",
        1 => b"warning\0",
        2 => b"critical\0",
        3 => b"emergency\0",
        _ => b"unknown\0",
    };
    s.as_ptr().cast()
}
