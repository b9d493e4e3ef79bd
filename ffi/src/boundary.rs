//! What every extern fn shares: status codes, the thread-local last error,
//! the panic boundary, handle lookup and string conversion.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char};
use std::sync::{Arc, LazyLock};

use memwarden_core::{Error, ErrorKind};
use parking_lot::RwLock;

/// The result of every fallible `mw_` function. `MW_STATUS_OK` is 0; the numbers never change.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mw_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// An argument is out of range, malformed, not valid UTF-8, or a handle that is not live.
    InvalidArgument = 2,
    /// Malformed config JSON, an unknown key or a bad value.
    InvalidConfig = 3,
    /// Waiting took longer than allowed.
    Timeout = 4,
    /// A bounded resource has nothing left.
    Exhausted = 5,
    /// A dependency cycle.
    Cycle = 6,
    /// A named thing does not exist (or has no reading yet).
    NotFound = 7,
    /// The operating system refused a read or write.
    Io = 8,
    /// A database reported an error.
    Database = 9,
    /// A callback returned non-zero.
    Callback = 10,
    /// The object was closed.
    Closed = 11,
    /// Not available on this system or in this mode.
    Unsupported = 12,
    /// The library panicked; the message says where. The handle may be left unusable.
    Panic = 99,
}

impl From<ErrorKind> for mw_status {
    fn from(k: ErrorKind) -> Self {
        match k {
            ErrorKind::InvalidArgument => mw_status::InvalidArgument,
            ErrorKind::InvalidConfig => mw_status::InvalidConfig,
            ErrorKind::Timeout => mw_status::Timeout,
            ErrorKind::Exhausted => mw_status::Exhausted,
            ErrorKind::Cycle => mw_status::Cycle,
            ErrorKind::NotFound => mw_status::NotFound,
            ErrorKind::Io => mw_status::Io,
            ErrorKind::Database => mw_status::Database,
            ErrorKind::Callback => mw_status::Callback,
            ErrorKind::Closed => mw_status::Closed,
            ErrorKind::Unsupported => mw_status::Unsupported,
        }
    }
}

/// An error on its way out through the ABI.
pub(crate) struct FfiError {
    pub status: mw_status,
    pub message: String,
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        FfiError { status: e.kind().into(), message: e.message().to_owned() }
    }
}

impl FfiError {
    pub fn new(status: mw_status, message: impl Into<String>) -> Self {
        FfiError { status, message: message.into() }
    }
    pub fn null(arg: &str) -> Self {
        Self::new(mw_status::NullArgument, format!("argument '{arg}' is NULL"))
    }
}

pub(crate) type FfiResult<T> = Result<T, FfiError>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        if !e.as_bytes().is_empty() {
            *e = CString::default();
        }
    });
}

pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Runs an extern fn's body: clears the last error, catches panics, and turns an
/// `Err` into its status with the message stored for `mw_last_error_message()`.
pub(crate) fn boundary(f: impl FnOnce() -> FfiResult<()>) -> mw_status {
    clear_last_error();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => mw_status::Ok,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(p) => {
            set_last_error(&format!("memwarden panicked: {}", panic_message(&*p)));
            mw_status::Panic
        }
    }
}

/// For the few functions that return no status (`_free`): swallow panics.
pub(crate) fn boundary_void(f: impl FnOnce()) {
    clear_last_error();
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        set_last_error(&format!("memwarden panicked: {}", panic_message(&*p)));
    }
}

// ---- handles ---------------------------------------------------------------

/// Every live handle, by address. A call with a freed or foreign pointer finds
/// nothing here and gets `MW_STATUS_INVALID_ARGUMENT` instead of touching freed
/// memory; a call racing a free keeps its own reference until it returns.
static HANDLES: LazyLock<RwLock<HashMap<usize, Arc<dyn Any + Send + Sync>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Boxes `value` behind a new handle.
pub(crate) fn new_handle<T: Send + Sync + 'static>(value: T) -> *mut T {
    let arc = Arc::new(value);
    let ptr = Arc::as_ptr(&arc) as *mut T;
    HANDLES.write().insert(ptr as usize, arc);
    ptr
}

/// The live object behind `ptr`, or an error naming the argument.
pub(crate) fn get_handle<T: Send + Sync + 'static>(ptr: *const T, arg: &str) -> FfiResult<Arc<T>> {
    if ptr.is_null() {
        return Err(FfiError::null(arg));
    }
    let found = HANDLES.read().get(&(ptr as usize)).cloned();
    found.and_then(|a| a.downcast::<T>().ok()).ok_or_else(|| {
        FfiError::new(
            mw_status::InvalidArgument,
            format!("argument '{arg}' is not a live {} (already freed, or never created)", short_type::<T>()),
        )
    })
}

/// Forgets a handle. NULL and unknown pointers are ignored.
pub(crate) fn free_handle<T: Send + Sync + 'static>(ptr: *mut T) {
    if ptr.is_null() {
        return;
    }
    let removed = HANDLES.write().remove(&(ptr as usize));
    drop(removed);
}

fn short_type<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

// ---- strings ---------------------------------------------------------------

/// Borrows a C string as UTF-8, naming the argument when it is NULL or invalid.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, arg: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::null(arg));
    }
    // Safety: the caller promises a NUL-terminated string valid for the call.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str()
        .map_err(|e| FfiError::new(mw_status::InvalidArgument, format!("argument '{arg}' is not valid UTF-8: {e}")))
}

/// Hands a string to C; the caller frees it with `mw_string_free`.
pub(crate) fn out_string(s: String) -> *mut c_char {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default().into_raw()
}

/// Writes through an out-pointer that was checked to be non-NULL.
///
/// # Safety
/// `out` must be NULL or valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, arg: &str, value: T) -> FfiResult<()> {
    if out.is_null() {
        return Err(FfiError::null(arg));
    }
    // Safety: non-NULL and, per the caller's contract, writable.
    unsafe { out.write(value) };
    Ok(())
}

/// Checks an out-pointer before any work is done, so a NULL never causes a half-done call.
pub(crate) fn need_out<T>(out: *mut T, arg: &str) -> FfiResult<()> {
    if out.is_null() { Err(FfiError::null(arg)) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_with_its_message() {
        let s = boundary(|| panic!("kaboom {}", 7));
        assert_eq!(s, mw_status::Panic);
        // Safety: the pointer is the thread's last error, valid until the next call.
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) }.to_str().unwrap().to_owned();
        assert!(msg.contains("kaboom 7"), "{msg}");
        assert_eq!(boundary(|| Ok(())), mw_status::Ok);
        // Safety: as above.
        assert_eq!(unsafe { CStr::from_ptr(last_error_ptr()) }.to_bytes(), b"");
    }

    #[test]
    fn handles_are_typed_and_forgotten_on_free() {
        let h = new_handle(5u32);
        assert_eq!(*get_handle(h, "h").ok().unwrap(), 5);
        assert!(get_handle(h as *const u64, "h").is_err(), "wrong type must not downcast");
        free_handle(h);
        let e = get_handle(h, "h").err().unwrap();
        assert_eq!(e.status, mw_status::InvalidArgument);
        assert!(e.message.contains("not a live"));
        free_handle(h); // double free is ignored
    }
}
