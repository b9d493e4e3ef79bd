//! `mw_stream_*`: the StreamProcessor (core::stream) through the C ABI: the whole loop in the
//! library (`mw_stream_process_file`) or the host's own loop (`mw_stream_admit` /
//! `mw_stream_finish` / `mw_stream_cancel`).

use std::ffi::{CStr, c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use memwarden_core::{ChunkTicket, Error, StreamProcessor, config};
use serde_json::Value;

use crate::boundary::{
    FfiError, FfiResult, boundary, boundary_void, free_handle, get_handle, mw_status, need_out, new_handle, out_string,
    str_arg, write_out,
};
use crate::tracker::mw_tracker;

/// A stream processor. Create with `mw_stream_new`, free with `mw_stream_free`. Thread-safe.
pub struct mw_stream {
    inner: StreamProcessor,
}

/// A chunk admitted by `mw_stream_admit`; give it back exactly once to `mw_stream_finish` or
/// `mw_stream_cancel`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mw_chunk_ticket {
    /// 0, 1, 2, ... in reading order within the run.
    pub index: u64,
    /// Byte offset of the chunk in the input.
    pub offset: u64,
    /// Bytes admitted (tracked in the processor's tracker).
    pub size: u64,
    /// The chunk's id in the tracker.
    pub resource_id: u64,
}

impl From<ChunkTicket> for mw_chunk_ticket {
    fn from(t: ChunkTicket) -> Self {
        mw_chunk_ticket { index: t.index, offset: t.offset, size: t.size, resource_id: t.resource_id }
    }
}

impl From<mw_chunk_ticket> for ChunkTicket {
    fn from(t: mw_chunk_ticket) -> Self {
        ChunkTicket { index: t.index, offset: t.offset, size: t.size, resource_id: t.resource_id }
    }
}

/// A chunk handler: `data`/`len` are the chunk's bytes (gzip when `compressionEnabled`), valid
/// only during the call; `index` its number (its offset is `index * chunkSize`). Return 0, or
/// non-zero to stop the run; then `*error_out` may be set to a NUL-terminated message, which the
/// library copies when the handler returns and never frees (a static string, or one you keep).
pub type mw_stream_chunk_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        data: *const u8,
        len: usize,
        index: u64,
        error_out: *mut *mut c_char,
    ) -> i32,
>;

fn stream(p: *const mw_stream) -> FfiResult<Arc<mw_stream>> {
    get_handle(p, "stream")
}

fn write_json(out: *mut *mut c_char, arg: &str, v: &Value) -> FfiResult<()> {
    // Safety: callers checked `out` non-NULL.
    unsafe { write_out(out, arg, out_string(v.to_string())) }
}

/// Creates a processor. `config_json` (NULL or `""` for defaults) has the seed's keys:
/// `chunkSize` (bytes or a size such as `"1M"`; default 1 MiB), `concurrentStreams` (>= 1;
/// default 3), `compressionEnabled` (false), and for its tracker `maxMemoryUsage` (bytes or
/// `"100M"`; default 100 MiB, at least `chunkSize`), `thresholds` `{warning, critical}`,
/// `cleanupInterval` (ms); snake_case aliases accepted. Reading pauses while `concurrentStreams`
/// chunks are in flight or the tracker would pass `thresholds.warning` of `maxMemoryUsage`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_stream_new(config_json: *const c_char, out: *mut *mut mw_stream) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let v = if config_json.is_null() {
            Value::Null
        } else {
            // Safety: NUL-terminated per the contract.
            config::parse_json("StreamProcessor", unsafe { str_arg(config_json, "config_json") }?)?
        };
        let h = new_handle(mw_stream { inner: StreamProcessor::from_json(&v)? });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Creates a processor that tracks its chunks in `tracker` (from `mw_tracker_new`) instead of a
/// tracker of its own: the chunks in flight show in `mw_tracker_stats` (type `chunk`, metadata
/// `index` and `offset`), the tracker's `maxMemoryUsage` and `thresholds` decide when reading
/// pauses (together with what else is tracked in it), and the `memoryWarning` /
/// `memoryCritical` events an admission causes go to the tracker's event callback and poll
/// queue and to this stream's poll queue (`mw_stream_poll`, with the chunk's `index`).
/// `config_json` is as for `mw_stream_new` without the tracker's keys (`maxMemoryUsage`,
/// `thresholds` and `cleanupInterval` return `MW_STATUS_INVALID_CONFIG`, since the tracker's
/// own apply); `chunkSize` may not exceed the tracker's `maxMemoryUsage`. The stream keeps the
/// tracker alive: free them in either order.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_stream_new_with_tracker(
    config_json: *const c_char,
    tracker: *mut mw_tracker,
    out: *mut *mut mw_stream,
) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let t = crate::tracker::tracker(tracker)?;
        let v = if config_json.is_null() {
            Value::Null
        } else {
            // Safety: NUL-terminated per the contract.
            config::parse_json("StreamProcessor", unsafe { str_arg(config_json, "config_json") }?)?
        };
        let p = StreamProcessor::from_json_with_tracker(&v, t.inner.clone())?;
        let h = new_handle(mw_stream { inner: p });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Frees the processor. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn mw_stream_free(stream: *mut mw_stream) {
    boundary_void(|| free_handle(stream));
}

struct Handler {
    f: unsafe extern "C" fn(*mut c_void, *const u8, usize, u64, *mut *mut c_char) -> i32,
    user: *mut c_void,
}

// Safety: the contract of `mw_stream_process_file` says the handler and `user` may be used from
// the library's worker threads (concurrentStreams > 1).
unsafe impl Sync for Handler {}

impl Handler {
    fn call(&self, data: &[u8], index: u64, msg: &mut *mut c_char) -> i32 {
        // Safety: the host's handler with its user pointer; data valid for the call.
        unsafe { (self.f)(self.user, data.as_ptr(), data.len(), index, msg) }
    }
}

/// Reads the file at `path` in chunks and calls `handler(user, ...)` for each. With
/// `concurrentStreams` 1 the handler runs on the calling thread, chunks in order; with more it
/// runs on that many library worker threads at once (chunks may finish out of order; the handler
/// must be thread-safe). A non-zero return stops the run: no further chunk is read, the call
/// returns `MW_STATUS_CALLBACK` with a message naming the chunk (index, offset) and the
/// handler's `*error_out`. `summary_json_out` (may be NULL) gets the summary `performance` event:
/// `speed` (bytes/s), `memoryUsage` (most bytes tracked at once), `processingTime` (ms),
/// `chunks`, `bytes`, `peakInFlight`, `pauses`, ... (free with `mw_string_free`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_stream_process_file(
    s: *mut mw_stream,
    path: *const c_char,
    handler: mw_stream_chunk_fn,
    user: *mut c_void,
    summary_json_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| {
        let s = stream(s)?;
        // Safety: NUL-terminated per the contract.
        let path = unsafe { str_arg(path, "path") }?;
        let f = handler.ok_or_else(|| FfiError::null("handler"))?;
        let h = Handler { f, user };
        let summary = s.inner.process_file(path, |c| {
            let mut msg: *mut c_char = std::ptr::null_mut();
            let rc = h.call(c.data, c.index, &mut msg);
            if rc == 0 {
                return Ok(());
            }
            let text = if msg.is_null() {
                format!("the handler returned {rc}")
            } else {
                // Safety: the handler set a NUL-terminated string that outlives the call.
                unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned()
            };
            Err(Error::callback(text))
        })?;
        if !summary_json_out.is_null() {
            write_json(summary_json_out, "summary_json_out", &summary)?;
        }
        Ok(())
    })
}

/// Starts a new run of the host's own loop: index, offset and counters start at 0. Fails with
/// `MW_STATUS_INVALID_ARGUMENT` while chunks are in flight.
#[unsafe(no_mangle)]
pub extern "C" fn mw_stream_begin(s: *mut mw_stream) -> mw_status {
    boundary(|| Ok(stream(s)?.inner.begin()?))
}

/// Asks to read a chunk of `size` bytes. `timeout_ms` 0 answers at once, > 0 waits up to that
/// long for a chunk in flight to finish, -1 waits without limit. `*admitted` is true and
/// `*ticket_out` filled when the chunk may be read now; false means pause reading
/// (backpressure). A size of 0 or above `maxMemoryUsage` returns `MW_STATUS_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_stream_admit(
    s: *mut mw_stream,
    size: u64,
    timeout_ms: i64,
    ticket_out: *mut mw_chunk_ticket,
    admitted: *mut bool,
) -> mw_status {
    boundary(|| {
        need_out(ticket_out, "ticket_out")?;
        need_out(admitted, "admitted")?;
        let s = stream(s)?;
        let t = match timeout_ms {
            0 => s.inner.admit(size)?,
            -1 => s.inner.wait_admit(size, None)?,
            ms if ms > 0 => s.inner.wait_admit(size, Some(Duration::from_millis(ms as u64)))?,
            ms => {
                return Err(FfiError::new(
                    mw_status::InvalidArgument,
                    format!("timeout_ms {ms} is not a time: give 0 (no wait), > 0 ms, or -1 (no limit)"),
                ));
            }
        };
        // Safety: both checked non-NULL above.
        unsafe {
            if let Some(t) = t {
                write_out(ticket_out, "ticket_out", t.into())?;
            }
            write_out(admitted, "admitted", t.is_some())
        }
    })
}

/// The chunk's handler is done with `bytes` of input (at most the admitted size), handed over
/// as `compressed_bytes` of gzip (0 when not compressed), in `processing_ms`. Releases the
/// chunk, wakes a waiting `mw_stream_admit`, and writes the chunk's `performance` event
/// (`speed`, `memoryUsage`, `processingTime`, `chunks`, `bytes`, `index`, `offset`, ...) to
/// `event_json_out` when it is not NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_stream_finish(
    s: *mut mw_stream,
    ticket: mw_chunk_ticket,
    bytes: u64,
    compressed_bytes: u64,
    processing_ms: f64,
    event_json_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| {
        let compressed = (compressed_bytes > 0).then_some(compressed_bytes);
        let ev = stream(s)?.inner.finish_compressed(ticket.into(), bytes, compressed, processing_ms)?;
        if !event_json_out.is_null() {
            write_json(event_json_out, "event_json_out", &ev)?;
        }
        Ok(())
    })
}

/// Gives an admitted chunk back without counting it (input ended, read failed, handler failed).
/// `counted` false means the chunk was only admitted to find the end of the input.
#[unsafe(no_mangle)]
pub extern "C" fn mw_stream_cancel(s: *mut mw_stream, ticket: mw_chunk_ticket, counted: bool) -> mw_status {
    boundary(|| {
        let s = stream(s)?;
        if counted {
            s.inner.cancel(ticket.into())?
        } else {
            s.inner.unused(ticket.into())?
        }
        Ok(())
    })
}

/// Ends the run and writes the summary `performance` event (`final: true`) to `summary_json_out`.
/// Fails while chunks are in flight.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_stream_end(s: *mut mw_stream, summary_json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(summary_json_out, "summary_json_out")?;
        let v = stream(s)?.inner.end()?;
        write_json(summary_json_out, "summary_json_out", &v)
    })
}

/// Gzip-compresses `len` bytes at `data` (one gzip member; members concatenated form a valid
/// gzip stream) into a new buffer: `*out` / `*out_len`, freed with `mw_bytes_free(*out, *out_len)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_stream_compress(
    s: *mut mw_stream,
    data: *const u8,
    len: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        need_out(out_len, "out_len")?;
        let s = stream(s)?;
        if data.is_null() && len > 0 {
            return Err(FfiError::null("data"));
        }
        // Safety: `data` is valid for `len` bytes per the contract (or len is 0).
        let input = if len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(data, len) } };
        let z = s.inner.compress(input)?.into_boxed_slice();
        let n = z.len();
        let p = Box::into_raw(z) as *mut u8;
        // Safety: both checked non-NULL above.
        unsafe {
            write_out(out_len, "out_len", n)?;
            write_out(out, "out", p)
        }
    })
}

/// Frees a buffer the library returned with its length (`mw_stream_compress`). NULL is a no-op.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_bytes_free(data: *mut u8, len: usize) {
    boundary_void(|| {
        if !data.is_null() {
            // Safety: `data`/`len` came from Box<[u8]>::into_raw in this library, per the contract.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) });
        }
    })
}

/// Config, the current run's counters (`inFlight`, `chunks`, `bytes`, `peakInFlight`, `pauses`,
/// ...) and `tracker` (the tracker's statistics) as JSON.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_stream_stats(s: *mut mw_stream, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        write_json(json_out, "json_out", &stream(s)?.inner.stats())
    })
}

/// Events since the last poll as a JSON array: `performance` events (per chunk, and the summary
/// with `final: true`) and the tracker's `memoryWarning` / `memoryCritical`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_stream_poll(s: *mut mw_stream, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        write_json(json_out, "json_out", &Value::Array(stream(s)?.inner.poll_events()))
    })
}
