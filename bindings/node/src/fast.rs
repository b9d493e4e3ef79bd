//! Plain JS functions over a shared native core: the hot paths of the pool, the container and
//! the request tracker. A class method costs napi-rs' borrow and identity checks, several times
//! the work of these calls; a function made by `napi_create_function` with the core as its data
//! costs one `napi_get_cb_info`.

use std::ffi::{CStr, c_char, c_void};
use std::ptr;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::{Env, sys};

/// A JS number from an `i32`.
pub(crate) fn js_i32(env: sys::napi_env, v: i32) -> sys::napi_value {
    let mut out = ptr::null_mut();
    // Safety: plain value creation in the live env of the current call.
    unsafe { sys::napi_create_int32(env, v, &mut out) };
    out
}

/// A JS number from a `u32`.
pub(crate) fn js_u32(env: sys::napi_env, v: u32) -> sys::napi_value {
    let mut out = ptr::null_mut();
    // Safety: as above.
    unsafe { sys::napi_create_uint32(env, v, &mut out) };
    out
}

/// A JS boolean.
pub(crate) fn js_bool(env: sys::napi_env, v: bool) -> sys::napi_value {
    let mut out = ptr::null_mut();
    // Safety: as above.
    unsafe { sys::napi_get_boolean(env, v, &mut out) };
    out
}

/// JS `null`.
pub(crate) fn js_null(env: sys::napi_env) -> sys::napi_value {
    let mut out = ptr::null_mut();
    // Safety: as above.
    unsafe { sys::napi_get_null(env, &mut out) };
    out
}

unsafe extern "C" fn drop_arc<T>(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // Safety: `data` is the `Arc<T>` given to the function this finalizer belongs to.
    drop(unsafe { Arc::from_raw(data as *const T) });
}

/// `{ name: function, ... }`: each function holds a reference to `core`, released when the
/// function is collected. `what` names the owner in the error when the functions cannot be
/// made ("the pool's functions").
pub(crate) fn functions<T: 'static>(
    env: &Env,
    core: &Arc<T>,
    what: &str,
    fns: &[(&CStr, sys::napi_callback)],
) -> Result<sys::napi_value> {
    let raw = env.raw();
    let mut obj = ptr::null_mut();
    // Safety: plain object creation in the env of this call.
    check_status!(unsafe { sys::napi_create_object(raw, &mut obj) })?;
    for &(name, cb) in fns {
        let data = Arc::into_raw(core.clone()) as *mut c_void;
        let mut f = ptr::null_mut();
        // Safety: `data` is an `Arc<T>` the function owns; the finalizer added right after
        // releases it when the function is collected.
        unsafe {
            let st = sys::napi_create_function(raw, name.as_ptr(), name.count_bytes() as isize, cb, data, &mut f);
            if st != sys::Status::napi_ok {
                drop(Arc::from_raw(data as *const T));
                return Err(napi::Error::new(Status::GenericFailure, format!("cannot create {what}")));
            }
            check_status!(sys::napi_add_finalizer(
                raw,
                f,
                data,
                Some(drop_arc::<T>),
                ptr::null_mut(),
                ptr::null_mut()
            ))?;
            check_status!(sys::napi_set_named_property(raw, obj, name.as_ptr(), f))?;
        }
    }
    Ok(obj)
}

/// The core of a function made by [`functions`] and its first `N` arguments (`undefined`
/// for those not passed), with how many were passed.
///
/// Safety: `info` is the callback info of a call of a function made by [`functions`] with a
/// core of type `T` (the function's reference keeps it alive for the call).
pub(crate) unsafe fn args<'a, T, const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> (&'a T, [sys::napi_value; N], usize) {
    let mut argc = N;
    let mut argv = [ptr::null_mut(); N];
    let mut data = ptr::null_mut();
    // Safety: per the contract; napi fills missing arguments with `undefined`.
    unsafe {
        sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data);
        (&*(data as *const T), argv, argc)
    }
}

/// A string argument read without allocating when it fits `buf` (short names, routes);
/// `None` when `v` is not a string.
pub(crate) fn str_arg<'b>(
    env: sys::napi_env,
    v: sys::napi_value,
    buf: &'b mut [u8; 256],
    owned: &'b mut String,
) -> Option<&'b str> {
    let mut len = 0usize;
    // Safety: `v` is a live argument of the current call; the buffer holds `buf.len()` bytes
    // including the terminating NUL.
    let st = unsafe { sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr().cast::<c_char>(), buf.len(), &mut len) };
    if st != sys::Status::napi_ok {
        return None;
    }
    if len < buf.len() - 1 {
        // Safety: napi wrote valid UTF-8 (it never splits a character).
        return Some(unsafe { std::str::from_utf8_unchecked(&buf[..len]) });
    }
    // Possibly truncated: read it in full.
    // Safety: as above; a string value.
    *owned = unsafe { String::from_napi_value(env, v) }.ok()?;
    Some(owned.as_str())
}
