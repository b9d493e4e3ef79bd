//! `mw_monitor_*` and `mw_analyze_file`: the monitor's series, analysis and export (core::monitor)
//! through the C ABI.

use std::ffi::c_char;
use std::sync::Arc;

use memwarden_core::config;
use memwarden_core::monitor::{Monitor, analyze_file};
use serde_json::Value;

use crate::boundary::{
    FfiResult, boundary, boundary_void, free_handle, get_handle, mw_status, need_out, new_handle, out_string, str_arg,
    write_out,
};

/// A memory monitor: a series of samples of a process, its tree or the whole system. Create with
/// `mw_monitor_new`, free with `mw_monitor_free`. Thread-safe.
pub struct mw_monitor {
    inner: Monitor,
}

fn monitor(p: *const mw_monitor) -> FfiResult<Arc<mw_monitor>> {
    get_handle(p, "monitor")
}

fn write_json(out: *mut *mut c_char, v: Value) -> FfiResult<()> {
    let text = v.to_string();
    // Safety: callers checked `out` non-NULL.
    unsafe { write_out(out, "json_out", out_string(text)) }
}

/// Core results are plain data; serializing them cannot fail.
macro_rules! to_json {
    ($v:expr) => {
        serde_json::to_value($v).expect("monitor results serialize")
    };
}

/// Creates a monitor. `config_json` (NULL or `""`: the whole system, every second) has the keys
/// `pid` (watch this process; it must exist and be yours), `children` (with `pid`: the sum over
/// its process tree), `system` (true: the whole machine; the default without `pid`), `interval`
/// (seconds, fractions allowed, > 0; default 1), `threshold` (percent of the limit, default 80),
/// `export` (a file that every sample is appended to, one JSON line each, while sampling) and
/// `export_sync_every` (fsync the export every N samples; default about once a second).
/// A pid that does not exist is `MW_STATUS_NOT_FOUND`; another user's pid is
/// `MW_STATUS_INVALID_ARGUMENT`; an export path that cannot be written is `MW_STATUS_IO`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_monitor_new(config_json: *const c_char, out: *mut *mut mw_monitor) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let v = if config_json.is_null() {
            Value::Null
        } else {
            // Safety: NUL-terminated per the contract.
            config::parse_json("Monitor", unsafe { str_arg(config_json, "config_json") }?)?
        };
        let h = new_handle(mw_monitor { inner: Monitor::from_json(&v)? });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Stops the background sampler if it runs and frees the monitor. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn mw_monitor_free(monitor: *mut mw_monitor) {
    boundary_void(|| {
        if let Ok(m) = get_handle(monitor, "monitor") {
            let _ = m.inner.stop();
        }
        free_handle(monitor)
    });
}

/// Starts sampling on a background thread: at once, then every `interval` (a tick missed while the
/// machine stalled is skipped, not caught up). `MW_STATUS_INVALID_ARGUMENT` when already running.
#[unsafe(no_mangle)]
pub extern "C" fn mw_monitor_start(monitor: *mut mw_monitor) -> mw_status {
    boundary(|| Ok(self::monitor(monitor)?.inner.start()?))
}

/// Stops the background sampler (returns once it has stopped) and fsyncs the export. A no-op
/// when it is not running.
#[unsafe(no_mangle)]
pub extern "C" fn mw_monitor_stop(monitor: *mut mw_monitor) -> mw_status {
    boundary(|| Ok(self::monitor(monitor)?.inner.stop()?))
}

/// Writes 1 to `*running_out` while the background sampler runs, else 0 (also after it ended on
/// its own, e.g. because the process exited; `mw_monitor_status` says why).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_monitor_running(monitor: *mut mw_monitor, running_out: *mut i32) -> mw_status {
    boundary(|| {
        need_out(running_out, "running_out")?;
        let r = self::monitor(monitor)?.inner.is_running();
        // Safety: checked non-NULL above.
        unsafe { write_out(running_out, "running_out", i32::from(r)) }
    })
}

/// `{running, samples, skipped_ticks, ended, meta}`: `ended` is why the sampler stopped on its
/// own (`"process 123 has exited"`) or null; `meta` is the export header's (target, interval,
/// limit_bytes, limit_origin, threshold, started_unix_ms, version).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_monitor_status(monitor: *mut mw_monitor, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        let m = self::monitor(monitor)?;
        let m = &m.inner;
        write_json(
            json_out,
            serde_json::json!({
                "running": m.is_running(),
                "samples": m.samples().len(),
                "skipped_ticks": m.skipped_ticks(),
                "ended": m.ended(),
                "meta": m.meta(),
            }),
        )
    })
}

/// Takes one sample now, adds it to the series (and the export) and writes it to `*json_out` as
/// `{t, unix_ms, current_bytes, peak_bytes, limit_bytes}`. A process that has exited is
/// `MW_STATUS_NOT_FOUND`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_monitor_sample_now(monitor: *mut mw_monitor, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        let s = self::monitor(monitor)?.inner.sample_now()?;
        write_json(json_out, to_json!(s))
    })
}

/// The series so far as a JSON array of samples (see `mw_monitor_sample_now`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_monitor_samples(monitor: *mut mw_monitor, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        write_json(json_out, to_json!(self::monitor(monitor)?.inner.samples()))
    })
}

/// The analysis of the series so far: `{samples, duration_s, average_mb, min_mb, peak_mb,
/// limit_mb, efficiency_percent, spikes: [{t, mb, jump_mb}], leak: {slope_mb_per_min, r2, steady,
/// sentence} | null}` (efficiency = average / peak in percent; leak is null with fewer than 3 samples).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_monitor_analyze(monitor: *mut mw_monitor, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        write_json(json_out, to_json!(self::monitor(monitor)?.inner.analyze()))
    })
}

/// Writes the series so far to `path` as an export file (atomically: temp file, then rename),
/// which `mw_analyze_file` and `memwarden analyze` / `plot` read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_monitor_export(monitor: *mut mw_monitor, path: *const c_char) -> mw_status {
    boundary(|| {
        let m = self::monitor(monitor)?;
        // Safety: NUL-terminated per the contract.
        let p = unsafe { str_arg(path, "path") }?;
        Ok(m.inner.export(p)?)
    })
}

/// The analysis (as `mw_monitor_analyze`) of an export file written by `memwarden monitor
/// --export`, a monitor's `export` key or `mw_monitor_export`. A file that cannot be read is
/// `MW_STATUS_IO`; an empty, truncated or foreign file is `MW_STATUS_INVALID_ARGUMENT` with a
/// message naming the file and the problem. A last line cut short (a killed monitor) is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_analyze_file(path: *const c_char, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        // Safety: NUL-terminated per the contract.
        let p = unsafe { str_arg(path, "path") }?;
        write_json(json_out, to_json!(analyze_file(p)?))
    })
}
