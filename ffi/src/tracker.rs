//! `mw_tracker_*`: Streamflow's ResourceTracker (core::tracker) through the C ABI.

use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::Arc;

use memwarden_core::tracker::TrackerEvent;
use memwarden_core::{ResourceTracker, config};
use serde_json::Value;

use crate::boundary::{
    FfiError, FfiResult, boundary, boundary_void, free_handle, get_handle, mw_status, need_out, new_handle, out_string,
    str_arg, write_out,
};
use crate::manager::mw_free_fn;
use crate::request::CallbackData;

/// Receives each tracker event as JSON `{type, usage, threshold, detail}` (`type` is
/// `memoryWarning`, `memoryCritical` or `cleanup`); `event_json` is valid only during the call.
///
/// Thread: the thread whose call caused the event — the caller of `mw_tracker_track`,
/// `mw_tracker_release`, `mw_tracker_mark_collected` or `mw_tracker_cleanup`, or of
/// `mw_stream_admit` / `mw_stream_process_file` of a stream made with
/// `mw_stream_new_with_tracker` (the thread that reads the chunks) — or, with
/// `enableAutoCleanup` and `cleanupInterval` > 0, the library's own cleanup thread
/// (`memwarden-tracker`). It must not block for long and must not call `mw_tracker_free` on
/// its tracker. Events are also queued for `mw_tracker_poll` either way.
pub type mw_tracker_event_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, event_json: *const c_char)>;

/// A resource tracker. Create with `mw_tracker_new`, free with `mw_tracker_free`. Thread-safe.
pub struct mw_tracker {
    pub(crate) inner: Arc<ResourceTracker>,
}

impl Drop for mw_tracker {
    fn drop(&mut self) {
        // A stream made with `mw_stream_new_with_tracker` may keep the core tracker alive; the
        // host's callback (and its user_data finalizer) ends with the handle all the same.
        self.inner.set_event_callback(None);
    }
}

pub(crate) fn tracker(p: *const mw_tracker) -> FfiResult<Arc<mw_tracker>> {
    get_handle(p, "tracker")
}

unsafe fn json_arg(p: *const c_char, arg: &str, component: &str) -> FfiResult<Value> {
    if p.is_null() {
        return Ok(Value::Null);
    }
    // Safety: NUL-terminated per the contract.
    Ok(config::parse_json(component, unsafe { str_arg(p, arg) }?)?)
}

/// Creates a tracker. `config_json` (NULL or `""` for defaults) has Streamflow's keys:
/// `maxMemoryUsage` (bytes, 100 MiB), `cleanupInterval` (ms, 30000), `enableAutoCleanup`
/// (false), `thresholds` `{warning: 0.7, critical: 0.9}` (fractions of maxMemoryUsage),
/// `resourceTracking` `{enabled, detailed, metadata}`; snake_case aliases accepted. The
/// cleanup thread runs only with `enableAutoCleanup` and `cleanupInterval` > 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_tracker_new(config_json: *const c_char, out: *mut *mut mw_tracker) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        // Safety: NULL or NUL-terminated per the contract.
        let v = unsafe { json_arg(config_json, "config_json", "ResourceTracker") }?;
        let h = new_handle(mw_tracker { inner: Arc::new(ResourceTracker::from_json(&v)?) });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Stops the cleanup thread and frees the tracker. NULL is a no-op. A tracker handed to
/// `mw_stream_new_with_tracker` goes on tracking that stream's chunks (and its cleanup thread,
/// if any, runs) until the stream is freed too; its event callback is removed at once.
#[unsafe(no_mangle)]
pub extern "C" fn mw_tracker_free(tracker: *mut mw_tracker) {
    boundary_void(|| free_handle(tracker));
}

/// Tracks a resource of `type` and `size` bytes with `metadata_json` (a JSON value; NULL for
/// `{}`); writes its id (>= 1; 0 when `resourceTracking.enabled` is false) to `*id_out`.
/// Malformed metadata returns `MW_STATUS_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_tracker_track(
    t: *mut mw_tracker,
    type_: *const c_char,
    size: u64,
    metadata_json: *const c_char,
    id_out: *mut u64,
) -> mw_status {
    boundary(|| {
        need_out(id_out, "id_out")?;
        let t = tracker(t)?;
        // Safety: NUL-terminated per the contract.
        let kind = unsafe { str_arg(type_, "type") }?;
        let meta = if metadata_json.is_null() {
            Value::Object(Default::default())
        } else {
            // Safety: NUL-terminated per the contract.
            let text = unsafe { str_arg(metadata_json, "metadata_json") }?;
            serde_json::from_str(text).map_err(|e| {
                FfiError::new(mw_status::InvalidArgument, format!("metadata_json is not valid JSON: {e}"))
            })?
        };
        let id = t.inner.track_resource(kind, size, meta)?;
        // Safety: checked non-NULL above.
        unsafe { write_out(id_out, "id_out", id) }
    })
}

/// Releases a resource. An unknown or already released id returns `MW_STATUS_NOT_FOUND` and
/// changes nothing.
#[unsafe(no_mangle)]
pub extern "C" fn mw_tracker_release(t: *mut mw_tracker, id: u64) -> mw_status {
    boundary(|| {
        tracker(t)?.inner.release_resource(id)?;
        Ok(())
    })
}

/// The host collected the resource without releasing it: removed and counted as leaked
/// (`collected_unreleased`). Errors as `mw_tracker_release`.
#[unsafe(no_mangle)]
pub extern "C" fn mw_tracker_mark_collected(t: *mut mw_tracker, id: u64) -> mw_status {
    boundary(|| {
        tracker(t)?.inner.mark_collected(id)?;
        Ok(())
    })
}

fn write_json(out: *mut *mut c_char, v: &Value) -> FfiResult<()> {
    // Safety: callers checked `out` non-NULL.
    unsafe { write_out(out, "json_out", out_string(v.to_string())) }
}

/// One resource as `{type, size, createdAt, metadata}`; `MW_STATUS_NOT_FOUND` when not tracked.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_tracker_get(t: *mut mw_tracker, id: u64, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        let r = tracker(t)?.inner.get_resource(id).ok_or_else(|| {
            FfiError::new(mw_status::NotFound, format!("resource {id} is not tracked (unknown or already released)"))
        })?;
        write_json(json_out, &r.to_json())
    })
}

/// Statistics: `totalAllocated`, `activeResources`, `peakMemoryUsage`, `totalTracked`,
/// `maxMemoryUsage`, `usageRatio`, `level`, `byType`, `leaks` (per type: `live`, `released`,
/// `collected_unreleased`, `cleaned_up`), `droppedEvents`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_tracker_stats(t: *mut mw_tracker, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        write_json(json_out, &tracker(t)?.inner.get_memory_stats())
    })
}

/// The leak report line the bindings write to stderr at exit, without a trailing newline:
/// `memwarden: ResourceTracker leak report at exit: {"activeResources":N,"totalAllocated":N,"leaks":{...}}`
/// (`leaks` as in `mw_tracker_stats`, `{}` when nothing was tracked). `*line_out` is freed with
/// `mw_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_tracker_exit_report_line(t: *mut mw_tracker, line_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(line_out, "line_out")?;
        let line = tracker(t)?.inner.exit_report_line();
        // Safety: checked non-NULL above.
        unsafe { write_out(line_out, "line_out", out_string(line)) }
    })
}

/// The line to write at exit instead when taking the report failed:
/// `memwarden: ResourceTracker leak report at exit failed: <message>`, without a trailing
/// newline. Bytes of `message` that are not UTF-8 are replaced with U+FFFD. `*line_out` is
/// freed with `mw_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_tracker_exit_report_failed_line(
    message: *const c_char,
    line_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| {
        need_out(line_out, "line_out")?;
        if message.is_null() {
            return Err(FfiError::null("message"));
        }
        // Safety: non-NULL and NUL-terminated per the contract.
        let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        let line = memwarden_core::tracker::exit_report_failed_line(&message);
        // Safety: checked non-NULL above.
        unsafe { write_out(line_out, "line_out", out_string(line)) }
    })
}

/// Events since the last poll as a JSON array of `{type, usage, threshold, detail}`; `type` is
/// `memoryWarning`, `memoryCritical` (once per crossing) or `cleanup`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_tracker_poll(t: *mut mw_tracker, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        let ev: Vec<Value> = tracker(t)?.inner.poll_events().iter().map(|e| e.to_json()).collect();
        write_json(json_out, &Value::Array(ev))
    })
}

/// Cleanup: with `enableAutoCleanup`, releases the oldest resources until usage is below the
/// warning threshold. `*json_out` gets `{released_ids, freed_bytes}`: drop those resources.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_tracker_cleanup(t: *mut mw_tracker, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        let r = tracker(t)?.inner.cleanup()?;
        write_json(json_out, &serde_json::json!({"released_ids": r.released_ids, "freed_bytes": r.freed_bytes}))
    })
}

/// Sets the event callback (see `mw_tracker_event_fn`, which names the threads it runs on);
/// NULL `callback` removes it. `free_user_data` (may be NULL) is called with `user_data` when
/// the callback is replaced or removed, or the tracker freed — also when this call fails.
/// A panic inside the library's side of a delivery is caught; the event stays in the poll queue.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_tracker_set_event_callback(
    t: *mut mw_tracker,
    callback: mw_tracker_event_fn,
    user_data: *mut c_void,
    free_user_data: mw_free_fn,
) -> mw_status {
    let ud = CallbackData::new(user_data, free_user_data);
    boundary(|| {
        let t = tracker(t)?;
        let Some(cb) = callback else {
            drop(ud);
            t.inner.set_event_callback(None);
            return Ok(());
        };
        t.inner.set_event_callback(Some(Arc::new(move |e: &TrackerEvent| {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let Ok(text) = CString::new(e.to_json().to_string()) else { return };
                // Safety: the caller supplied `cb` for `ud.ptr()` and keeps both valid until the
                // finalizer runs; `text` outlives the call.
                unsafe { cb(ud.ptr(), text.as_ptr()) }
            }));
        })));
        Ok(())
    })
}

/// Disposes the tracker: stops the cleanup thread and forgets every resource; writes the final
/// leak report (per type `live`, `released`, `collected_unreleased`, `cleaned_up`) to
/// `*json_out` (free with `mw_string_free`). Later calls on the tracker return
/// `MW_STATUS_CLOSED`, except a second dispose, which writes the same report. Free the handle
/// with `mw_tracker_free` as usual.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_tracker_dispose(t: *mut mw_tracker, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        write_json(json_out, &tracker(t)?.inner.dispose())
    })
}
