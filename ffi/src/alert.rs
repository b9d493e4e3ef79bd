//! `mw_alert_*`: the MemoryAlertingService through the C ABI.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use memwarden_core::alert::{SystemClock, UsageSource};
use memwarden_core::{AlertConfig, AlertEvent, MemoryAlertingService, State, config};

use crate::boundary::{
    FfiError, boundary, boundary_void, free_handle, get_handle, mw_status, need_out, new_handle, out_string, str_arg,
    write_out,
};
use crate::manager::{manager_handle, mw_manager, mw_state};

/// An alerting service. Create with `mw_alert_new`, free with `mw_alert_free`.
///
/// Thread-safe. Deliveries run on one background thread of the library; events (alert raised,
/// delivery ok / failed, dropped) are queued for `mw_alert_poll` on the caller's thread and,
/// when set, also given to the `mw_alert_set_event_callback` callback ON THAT BACKGROUND THREAD.
pub struct mw_alert {
    inner: MemoryAlertingService,
}

/// Called on the library's delivery thread with one event as a JSON object; `event_json` is
/// valid only during the call. Must not call `mw_alert_free` on the same service.
pub type mw_alert_event_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, event_json: *const c_char)>;

struct ManagerSource(Arc<mw_manager>);

impl UsageSource for ManagerSource {
    fn usage_percent(&self) -> memwarden_core::Result<f64> {
        Ok(self.0.core().get_memory_usage()?.usage_percent)
    }
}

struct CallbackData(*mut c_void);
// Safety: the header documents that the callback runs on the library's delivery thread; the
// caller who sets it promises user_data is usable there.
unsafe impl Send for CallbackData {}
unsafe impl Sync for CallbackData {}
impl CallbackData {
    fn ptr(&self) -> *mut c_void {
        self.0
    }
}

fn level_from_state(s: mw_state) -> State {
    match s {
        mw_state::Normal => State::Normal,
        mw_state::Warning => State::Warning,
        mw_state::Critical => State::Critical,
        mw_state::Emergency => State::Emergency,
    }
}

/// Creates an alerting service.
///
/// `config_json` has the seed's keys (`channels` {`email`, `slack`, `webhook`,
/// `alertmanager`}, `thresholds`, `escalation`, `history_retention_days`, `history_path`,
/// `alert_cooldown_minutes`, `batch_alerts`, `include_system_info`, `custom_metrics`,
/// `queue_capacity`, `hysteresis`, `templates`); NULL or `""` means defaults (no channels).
/// `manager` is the manager whose readings are judged (NULL: a default one reading this
/// process); the service keeps it alive. Returns `MW_STATUS_INVALID_CONFIG` naming an unknown
/// channel, a bad URL (shown redacted), a bad e-mail address, an unknown threshold name, an
/// escalation level naming an unknown or disabled channel, or a negative interval.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_alert_new(
    config_json: *const c_char,
    manager: *const mw_manager,
    out: *mut *mut mw_alert,
) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let cfg = if config_json.is_null() {
            serde_json::Value::Null
        } else {
            // Safety: non-NULL, NUL-terminated per the contract.
            let text = unsafe { str_arg(config_json, "config_json") }?;
            config::parse_json("MemoryAlertingService", text)?
        };
        let cfg = AlertConfig::from_json(&cfg)?;
        let inner = if manager.is_null() {
            MemoryAlertingService::new(cfg, None)?
        } else {
            let m = manager_handle(manager)?;
            MemoryAlertingService::with_source(cfg, Arc::new(ManagerSource(m)), Arc::new(SystemClock))?
        };
        let h = new_handle(mw_alert { inner });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Frees the service: queued deliveries get up to 2 seconds to finish, the rest are recorded
/// as failed; a delivery stuck in a network call is abandoned. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn mw_alert_free(alert: *mut mw_alert) {
    boundary_void(|| free_handle(alert));
}

fn alert(a: *const mw_alert) -> Result<Arc<mw_alert>, FfiError> {
    get_handle(a, "alert")
}

/// Reads the manager, decides (thresholds with hysteresis, throttle, cooldown, escalation,
/// resolve) and queues deliveries; never waits on the network. Writes the current level to
/// `*level_out` (may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_alert_check(a: *mut mw_alert, level_out: *mut mw_state) -> mw_status {
    boundary(|| {
        let s = alert(a)?.inner.check_and_alert()?;
        if !level_out.is_null() {
            // Safety: non-NULL and writable per the contract.
            unsafe { level_out.write(s.into()) };
        }
        Ok(())
    })
}

/// Sends the caller's own `message` at `level` (WARNING, CRITICAL or EMERGENCY) to every
/// channel whose threshold it meets. Writes the alert's history id to `*id_out` (may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_alert_send(
    a: *mut mw_alert,
    message: *const c_char,
    level: mw_state,
    id_out: *mut i64,
) -> mw_status {
    boundary(|| {
        let svc = alert(a)?;
        // Safety: NUL-terminated per the contract.
        let msg = unsafe { str_arg(message, "message") }?;
        let id = svc.inner.send_alert(msg, level_from_state(level))?;
        if !id_out.is_null() {
            // Safety: non-NULL and writable per the contract.
            unsafe { id_out.write(id) };
        }
        Ok(())
    })
}

/// Waits until every queued delivery has been attempted, at most `timeout_seconds` (negative:
/// no limit). `*drained` (may be NULL) tells whether the queue drained in time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_alert_flush(a: *mut mw_alert, timeout_seconds: f64, drained: *mut bool) -> mw_status {
    boundary(|| {
        let svc = alert(a)?;
        if timeout_seconds.is_nan() {
            return Err(FfiError::new(mw_status::InvalidArgument, "timeout_seconds is NaN"));
        }
        let t = (timeout_seconds >= 0.0).then(|| Duration::from_secs_f64(timeout_seconds.min(1e9)));
        let ok = svc.inner.flush(t);
        if !drained.is_null() {
            // Safety: non-NULL and writable per the contract.
            unsafe { drained.write(ok) };
        }
        Ok(())
    })
}

/// The history as a JSON array (newest first) in `*json_out` (free with `mw_string_free`).
/// `filter_json` (NULL or `""`: everything) may have `level`, `channel`, `kind`, `since`
/// (epoch seconds) and `limit`. Each alert has `deliveries`, one per attempt.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_alert_history(
    a: *const mw_alert,
    filter_json: *const c_char,
    json_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        let svc = alert(a)?;
        let filter = if filter_json.is_null() {
            serde_json::Value::Null
        } else {
            // Safety: NUL-terminated per the contract.
            config::parse_json("alert history filter", unsafe { str_arg(filter_json, "filter_json") }?)?
        };
        let v = svc.inner.get_alert_history(&filter)?;
        // Safety: checked non-NULL above.
        unsafe { write_out(json_out, "json_out", out_string(v.to_string())) }
    })
}

/// Every event since the last poll as a JSON array in `*events_json_out` (free with
/// `mw_string_free`): objects with `kind` (`alert_raised`, `alert_resolved`,
/// `alert_suppressed`, `alert_dropped`, `delivery_ok`, `delivery_failed`), `alert_id`,
/// `level`, `channel`, `message`, `error`, `time`, `timestamp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_alert_poll(a: *mut mw_alert, events_json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(events_json_out, "events_json_out")?;
        let ev = alert(a)?.inner.poll_events();
        let text = serde_json::to_string(&ev).unwrap_or_else(|_| "[]".into());
        // Safety: checked non-NULL above.
        unsafe { write_out(events_json_out, "events_json_out", out_string(text)) }
    })
}

/// Sets (or with a NULL `callback` clears) a callback that gets every event ON THE LIBRARY'S
/// DELIVERY THREAD, in addition to the queue `mw_alert_poll` drains. `user_data` is passed
/// through and never freed by the library; it must stay valid until the callback is cleared
/// or the service freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_alert_set_event_callback(
    a: *mut mw_alert,
    callback: mw_alert_event_fn,
    user_data: *mut c_void,
) -> mw_status {
    boundary(|| {
        let svc = alert(a)?;
        let cb = callback.map(|f| {
            let data = CallbackData(user_data);
            Box::new(move |e: &AlertEvent| {
                let text = out_string(serde_json::to_string(e).unwrap_or_default());
                // Safety: a C function pointer the caller supplied for this purpose; the string
                // is ours and freed right after.
                unsafe {
                    f(data.ptr(), text);
                    drop(std::ffi::CString::from_raw(text));
                }
            }) as Box<dyn Fn(&AlertEvent) + Send + Sync>
        });
        svc.inner.set_event_callback(cb);
        Ok(())
    })
}
