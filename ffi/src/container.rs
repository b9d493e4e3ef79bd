//! `mw_container_*` and `mw_scope_*`: the LazyContainer through the C ABI. Instances are `void *`.

use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_void};
use std::sync::Arc;

use memwarden_core::{Container, Error, Lifetime, Scope, config};

use crate::boundary::{
    FfiError, FfiResult, boundary, boundary_void, free_handle, get_handle, last_error_ptr, mw_status, need_out,
    new_handle, out_string, str_arg, write_out,
};
use crate::manager::{mw_free_fn, mw_manager};

/// A lazy service container. Create with `mw_container_new`, free with `mw_container_free`.
///
/// Thread-safe; `mw_container_get` of a cached instance takes no lock. Factories run on the
/// thread that called `mw_container_get` (or `mw_scope_get`) and may call
/// `mw_container_get` for their dependencies: the container follows the chain on that
/// thread for cycle paths and scopes.
pub struct mw_container {
    inner: Container<Instance>,
}

/// One request's scoped instances. Create with `mw_container_create_scope`, free with
/// `mw_scope_free` (which disposes it).
pub struct mw_scope {
    inner: Scope<Instance>,
}

/// How long an instance lives.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mw_lifetime {
    /// Created on first get, cached when `cache_instances`.
    Lazy = 0,
    /// Created on first get, always cached, built exactly once.
    Singleton = 1,
    /// New on every get; the caller owns each instance.
    Factory = 2,
    /// One per scope.
    Scoped = 3,
}

/// Builds an instance: write it to `*out_instance` (not NULL) and return 0. Non-zero fails the
/// get with `MW_STATUS_CALLBACK`; the message names the service and the status, followed by
/// the message of the last `mw_container_get` / `mw_scope_get` that failed inside the factory
/// (its cause). `container` is the container being resolved, for getting dependencies.
pub type mw_container_factory_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, container: *mut mw_container, out_instance: *mut *mut c_void) -> i32,
>;
/// Tears down a cached or scoped instance when the container or its scope is disposed.
pub type mw_container_destroy_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, instance: *mut c_void)>;

/// A `void *` instance; shared between threads as the C caller allows.
#[derive(Clone)]
struct Instance(*mut c_void);
// Safety: the container only hands the pointer around; the C caller that registered the
// factory promises its instances may be used from the threads that get them.
unsafe impl Send for Instance {}
unsafe impl Sync for Instance {}

struct UserData {
    ptr: *mut c_void,
    free: mw_free_fn,
}
// Safety: as for Instance: the caller's user_data is used from the threads that resolve.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}
impl UserData {
    fn ptr(&self) -> *mut c_void {
        self.ptr
    }
}
impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(f) = self.free {
            // Safety: the finalizer was given for exactly this pointer; called once.
            unsafe { f(self.ptr) };
        }
    }
}

thread_local! {
    /// One slot per C factory running on this thread (innermost last): the message of the
    /// last `mw_container_get` / `mw_scope_get` that failed inside it, so the factory's own
    /// failure can carry its cause instead of only its status.
    static NESTED_FAILURES: RefCell<Vec<Option<String>>> = const { RefCell::new(Vec::new()) };
}

/// Pops this factory's slot, also when the factory unwinds.
struct NestedSlot;
impl NestedSlot {
    fn push() -> Self {
        NESTED_FAILURES.with(|n| n.borrow_mut().push(None));
        NestedSlot
    }
    fn take(&self) -> Option<String> {
        NESTED_FAILURES.with(|n| n.borrow_mut().last_mut().and_then(Option::take))
    }
}
impl Drop for NestedSlot {
    fn drop(&mut self) {
        NESTED_FAILURES.with(|n| n.borrow_mut().pop());
    }
}

/// After a get: when it failed inside a factory, remembers its message for that factory.
fn note_nested(status: mw_status) -> mw_status {
    if status != mw_status::Ok {
        NESTED_FAILURES.with(|n| {
            if let Some(slot) = n.borrow_mut().last_mut() {
                // Safety: the thread's last-error string, NUL-terminated and alive here.
                *slot = Some(unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned());
            }
        });
    }
    status
}

fn container(c: *const mw_container) -> FfiResult<Arc<mw_container>> {
    get_handle(c, "container")
}

fn lifetime(v: i32) -> FfiResult<Lifetime> {
    Ok(match v {
        0 => Lifetime::Lazy,
        1 => Lifetime::Singleton,
        2 => Lifetime::Transient,
        3 => Lifetime::Scoped,
        other => {
            return Err(FfiError::new(
                mw_status::InvalidArgument,
                format!("invalid lifetime {other}: expected MW_LIFETIME_LAZY (0) .. MW_LIFETIME_SCOPED (3)"),
            ));
        }
    })
}

/// Creates a container. `config_json`: `auto_wire`, `circular_detection` (true),
/// `cache_instances` (true), `debug_mode` (false), `release_lazy_on_cleanup` (false); NULL
/// or `""` for defaults. `MW_STATUS_INVALID_CONFIG` names a bad key or value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_container_new(config_json: *const c_char, out: *mut *mut mw_container) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let cfg = if config_json.is_null() {
            serde_json::Value::Null
        } else {
            // Safety: NUL-terminated per the contract.
            config::parse_json("LazyContainer", unsafe { str_arg(config_json, "config_json") }?)?
        };
        let h = new_handle(mw_container { inner: Container::from_json(&cfg)? });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Disposes (if not yet) and frees a container: cached instances are torn down in reverse
/// creation order through their `destroy`. Factories' `free_user_data` run once nothing
/// refers to them (a manager holding the container keeps them). NULL is a no-op. Must not be
/// called twice.
#[unsafe(no_mangle)]
pub extern "C" fn mw_container_free(container: *mut mw_container) {
    boundary_void(|| {
        if let Ok(c) = get_handle::<mw_container>(container, "container") {
            let _ = c.inner.dispose();
        }
        free_handle(container)
    });
}

/// Registers service `name` with a factory and an optional `destroy` (run for cached and
/// scoped instances at disposal, in reverse creation order). `lifetime` is an `mw_lifetime`.
/// A name already registered is `MW_STATUS_INVALID_ARGUMENT` unless `replace`.
/// `free_user_data` (may be NULL) runs when the service is no longer referenced, also when
/// this call fails.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_container_register(
    container: *mut mw_container,
    name: *const c_char,
    lifetime_kind: i32,
    factory: mw_container_factory_fn,
    destroy: mw_container_destroy_fn,
    user_data: *mut c_void,
    free_user_data: mw_free_fn,
    replace: bool,
) -> mw_status {
    let ud = Arc::new(UserData { ptr: user_data, free: free_user_data });
    boundary(|| {
        let c = self::container(container)?;
        // Safety: NUL-terminated per the contract.
        let name = unsafe { str_arg(name, "name") }?;
        let lt = lifetime(lifetime_kind)?;
        let f = factory.ok_or_else(|| FfiError::null("factory"))?;
        // The address only: factories get it back to resolve their dependencies.
        let handle = container as usize;
        let fud = ud.clone();
        let service = name.to_string();
        let make = Arc::new(move || {
            let mut out: *mut c_void = std::ptr::null_mut();
            let nested = NestedSlot::push();
            // Safety: the caller's factory with its user_data, the container handle it was
            // registered on (live while this runs) and a live out-pointer.
            let rc = unsafe { f(fud.ptr(), handle as *mut mw_container, &mut out) };
            if rc != 0 {
                let mut msg = format!("factory of '{service}' failed with status {rc}");
                if let Some(cause) = nested.take() {
                    msg.push_str("; caused by: ");
                    msg.push_str(&cause);
                }
                return Err(Error::callback(msg));
            }
            if out.is_null() {
                return Err(Error::callback(format!("factory of '{service}' returned 0 but wrote a NULL instance")));
            }
            Ok(Instance(out))
        });
        let teardown = destroy.map(|d| {
            let dud = ud.clone();
            // Safety: the caller's destroy with its user_data and an instance of this service.
            Arc::new(move |i: &Instance| -> memwarden_core::Result<()> {
                unsafe { d(dud.ptr(), i.0) };
                Ok(())
            }) as memwarden_core::container::Teardown<Instance>
        });
        Ok(c.inner.register(name, lt, make, teardown, replace)?)
    })
}

/// Resolves `name` (or an alias of it), creating it if needed. `MW_STATUS_NOT_FOUND` for an
/// unknown service, `MW_STATUS_CYCLE` for a cycle (the message has its path),
/// `MW_STATUS_CALLBACK` when a factory failed (the message names the service and the chain),
/// `MW_STATUS_CLOSED` after `mw_container_dispose`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_container_get(
    container: *mut mw_container,
    name: *const c_char,
    out_instance: *mut *mut c_void,
) -> mw_status {
    note_nested(boundary(|| {
        let c = self::container(container)?;
        need_out(out_instance, "out_instance")?;
        // Safety: NUL-terminated per the contract.
        let name = unsafe { str_arg(name, "name") }?;
        let v = c.inner.get(name)?;
        // Safety: checked non-NULL above.
        unsafe { write_out(out_instance, "out_instance", v.0) }
    }))
}

/// Whether `name` (or an alias of it) is registered.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_container_has(
    container: *const mw_container,
    name: *const c_char,
    out: *mut bool,
) -> mw_status {
    boundary(|| {
        let c = self::container(container)?;
        need_out(out, "out")?;
        // Safety: NUL-terminated per the contract.
        let name = unsafe { str_arg(name, "name") }?;
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", c.inner.has(name)) }
    })
}

/// `get(alias)` resolves `target`. An alias cycle is `MW_STATUS_CYCLE` with its path.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_container_alias(
    container: *mut mw_container,
    alias: *const c_char,
    target: *const c_char,
) -> mw_status {
    boundary(|| {
        let c = self::container(container)?;
        // Safety: NUL-terminated per the contract.
        let (a, t) = unsafe { (str_arg(alias, "alias")?, str_arg(target, "target")?) };
        Ok(c.inner.alias(a, t)?)
    })
}

/// Tags service `name` with `count` tags.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_container_tag(
    container: *mut mw_container,
    name: *const c_char,
    tags: *const *const c_char,
    count: usize,
) -> mw_status {
    boundary(|| {
        let c = self::container(container)?;
        // Safety: NUL-terminated per the contract.
        let name = unsafe { str_arg(name, "name") }?;
        if tags.is_null() && count > 0 {
            return Err(FfiError::null("tags"));
        }
        let mut list = Vec::with_capacity(count);
        for i in 0..count {
            // Safety: `tags` holds `count` string pointers per the contract.
            list.push(unsafe { str_arg(*tags.add(i), "tags[i]") }?);
        }
        Ok(c.inner.tag(name, &list)?)
    })
}

/// Resolves every service tagged `tag`, in registration order. Writes up to `capacity`
/// instances to `out_instances` (may be NULL when `capacity` is 0) and the total number to
/// `*out_count`; call with capacity 0 first to learn the size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_container_get_by_tag(
    container: *mut mw_container,
    tag: *const c_char,
    out_instances: *mut *mut c_void,
    capacity: usize,
    out_count: *mut usize,
) -> mw_status {
    boundary(|| {
        let c = self::container(container)?;
        need_out(out_count, "out_count")?;
        if out_instances.is_null() && capacity > 0 {
            return Err(FfiError::null("out_instances"));
        }
        // Safety: NUL-terminated per the contract.
        let tag = unsafe { str_arg(tag, "tag") }?;
        let all = c.inner.get_by_tag(tag)?;
        // Safety: `out_instances` has room for `capacity` pointers; `out_count` checked above.
        unsafe {
            for (i, v) in all.iter().take(capacity).enumerate() {
                out_instances.add(i).write(v.0);
            }
            out_count.write(all.len());
        }
        Ok(())
    })
}

/// Tears down scopes, then cached instances in reverse creation order (through their
/// `destroy`). Later gets return `MW_STATUS_CLOSED`. Idempotent.
#[unsafe(no_mangle)]
pub extern "C" fn mw_container_dispose(container: *mut mw_container) -> mw_status {
    boundary(|| Ok(self::container(container)?.inner.dispose()?))
}

/// Statistics as JSON: `created`, `cached`, `avg_creation_time` (ms), `memory_saved` (MB),
/// `registered`, `never_created`, and with `debug_mode` per-service figures. Free `*out` with
/// `mw_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_container_stats_json(container: *const mw_container, out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        let c = self::container(container)?;
        need_out(out, "out")?;
        let s = c.inner.statistics().to_string();
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", out_string(s)) }
    })
}

/// A new scope for `scoped` services.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_container_create_scope(container: *mut mw_container, out: *mut *mut mw_scope) -> mw_status {
    boundary(|| {
        let c = self::container(container)?;
        need_out(out, "out")?;
        let h = new_handle(mw_scope { inner: c.inner.create_scope()? });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Resolves `name` in a scope: scoped services once per scope, the rest as the container does.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_scope_get(
    scope: *mut mw_scope,
    name: *const c_char,
    out_instance: *mut *mut c_void,
) -> mw_status {
    note_nested(boundary(|| {
        let s: Arc<mw_scope> = get_handle(scope, "scope")?;
        need_out(out_instance, "out_instance")?;
        // Safety: NUL-terminated per the contract.
        let name = unsafe { str_arg(name, "name") }?;
        let v = s.inner.get(name)?;
        // Safety: checked non-NULL above.
        unsafe { write_out(out_instance, "out_instance", v.0) }
    }))
}

/// Tears down the scope's instances in reverse creation order. Idempotent.
#[unsafe(no_mangle)]
pub extern "C" fn mw_scope_dispose(scope: *mut mw_scope) -> mw_status {
    boundary(|| {
        let s: Arc<mw_scope> = get_handle(scope, "scope")?;
        Ok(s.inner.dispose()?)
    })
}

/// Disposes and frees a scope. NULL is a no-op. Must not be called twice.
#[unsafe(no_mangle)]
pub extern "C" fn mw_scope_free(scope: *mut mw_scope) {
    boundary_void(|| {
        if let Ok(s) = get_handle::<mw_scope>(scope, "scope") {
            let _ = s.inner.dispose();
        }
        free_handle(scope)
    });
}

/// Registers the container as a cleanup hook of `manager`: with `release_lazy_on_cleanup`,
/// a collection drops cached lazy instances (through their `destroy`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_manager_add_container(
    manager: *mut mw_manager,
    name: *const c_char,
    priority: i32,
    container: *mut mw_container,
) -> mw_status {
    boundary(|| {
        let m = crate::manager::manager_handle(manager)?;
        let c = self::container(container)?;
        // Safety: NUL-terminated per the contract.
        let name = unsafe { str_arg(name, "name") }?;
        Ok(m.core().register_cleanup(name, priority, Arc::new(c.inner.clone()))?)
    })
}
