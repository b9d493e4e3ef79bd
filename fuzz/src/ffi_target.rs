// `ffi_config`: the config JSON through the real `mw_*_new` C functions, then the free.
// The first input byte picks the function (the same table as tests/c/replay_corpus.c, which
// replays this target's corpus under valgrind); the rest, up to a NUL, is the config text
// (invalid UTF-8 included: the ABI must refuse it with a status). Every call must return a
// status (never MW_STATUS_PANIC), a failed call must leave a message, a successful one a handle.

use std::ffi::{CStr, CString, c_char, c_void};

use memwarden::*;

unsafe extern "C" fn create(_u: *mut c_void, out: *mut *mut c_void) -> i32 {
    static OBJECT: u8 = 0;
    // Safety: the pool passes a live out-pointer.
    unsafe { *out = &OBJECT as *const u8 as *mut c_void };
    0
}

unsafe extern "C" fn source(_u: *mut c_void, _max: usize, _items: *mut mw_item, n: *mut usize) -> i32 {
    // Safety: the iterator passes a live out-pointer.
    unsafe { *n = 0 };
    0
}

unsafe extern "C" fn load(
    _u: *mut c_void,
    _offset: u64,
    _after: *const mw_key,
    _limit: usize,
    _items: *mut mw_item,
    n: *mut usize,
    _last: *mut mw_key,
) -> i32 {
    // Safety: as above.
    unsafe { *n = 0 };
    0
}

unsafe extern "C" fn query(
    _u: *mut c_void,
    _sql: *const c_char,
    _params: *const c_char,
    _key: *const c_char,
    _meta: bool,
    _result: *mut mw_host_result,
) -> i32 {
    1
}

/// The functions `ffi_config` calls, by the first input byte modulo this length.
pub const FFI_FUNCTIONS: &[&str] = &[
    "mw_manager_new",
    "mw_pool_new",
    "mw_container_new",
    "mw_tracker_new",
    "mw_request_new",
    "mw_chunk_new_host",
    "mw_streaming_new",
    "mw_lazy_new",
    "mw_filtered_new",
    "mw_alert_new",
    "mw_size_parse",
];

/// Configs that ask for real work (many pooled objects, a history file on disk) are skipped:
/// they are valid requests, not bad input. The same rule is in tests/c/replay_corpus.c.
fn expensive(text: &[u8]) -> bool {
    let t = String::from_utf8_lossy(text);
    t.contains("min_size") || t.contains("history_path")
}

pub fn ffi_config(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = rest.split(|&b| b == 0).next().unwrap_or(&[]);
    if expensive(text) {
        return;
    }
    let c = CString::new(text).expect("no NUL inside");
    let cfg = c.as_ptr();
    let mut handle: *mut c_void = std::ptr::null_mut();
    let out = &mut handle as *mut *mut c_void;
    // Safety: every pointer is live for the call and each handle is freed with its own free.
    let (status, free): (mw_status, Option<fn(*mut c_void)>) = unsafe {
        match which as usize % FFI_FUNCTIONS.len() {
            0 => (mw_manager_new(cfg, out.cast()), Some(|h| mw_manager_free(h.cast()))),
            1 => {
                let cb = mw_pool_callbacks {
                    user_data: std::ptr::null_mut(),
                    free_user_data: None,
                    create: Some(create),
                    reset: None,
                    validate: None,
                    destroy: None,
                    on_leak: None,
                    background_hooks: false,
                };
                (mw_pool_new(cfg, &cb, out.cast()), Some(|h| mw_pool_free(h.cast())))
            }
            2 => (mw_container_new(cfg, out.cast()), Some(|h| mw_container_free(h.cast()))),
            3 => (mw_tracker_new(cfg, out.cast()), Some(|h| mw_tracker_free(h.cast()))),
            4 => (mw_request_new(cfg, out.cast()), Some(|h| mw_request_free(h.cast()))),
            5 => (
                mw_chunk_new_host(
                    c"sqlite".as_ptr(),
                    c"qmark".as_ptr(),
                    Some(query),
                    std::ptr::null_mut(),
                    cfg,
                    out.cast(),
                ),
                Some(|h| mw_chunk_free(h.cast())),
            ),
            6 => (
                mw_streaming_new(cfg, Some(source), std::ptr::null_mut(), out.cast()),
                Some(|h| mw_streaming_free(h.cast())),
            ),
            7 => (mw_lazy_new(cfg, Some(load), std::ptr::null_mut(), out.cast()), Some(|h| mw_lazy_free(h.cast()))),
            8 => (
                mw_filtered_new(
                    cfg,
                    Some(source),
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    out.cast(),
                ),
                Some(|h| mw_filtered_free(h.cast())),
            ),
            9 => (mw_alert_new(cfg, std::ptr::null(), out.cast()), Some(|h| mw_alert_free(h.cast()))),
            _ => {
                let mut bytes = 0i64;
                (mw_size_parse(cfg, &mut bytes), None)
            }
        }
    };
    assert_ne!(status, mw_status::Panic, "{}: a panic reached the boundary", FFI_FUNCTIONS[which as usize % 11]);
    if status == mw_status::Ok {
        if let Some(free) = free {
            assert!(!handle.is_null(), "MW_STATUS_OK without a handle");
            free(handle);
        }
    } else {
        // Safety: the library's own thread-local string.
        let msg = unsafe { CStr::from_ptr(mw_last_error_message()) };
        assert!(!msg.to_bytes().is_empty(), "status {status:?} without a message");
    }
}
