//! `mw_streaming_*`, `mw_lazy_*`, `mw_filtered_*`: the iterators through the C ABI. Items are
//! `mw_item`s, pointer-sized integers: ids, or pointers cast to an integer.

use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use memwarden_core::iter::{Items, Loader};
use memwarden_core::{
    ChunkSource, Error, FilteredIterator, IterConfig, Key, LazyIterator, Page, StreamingIterator, config,
};
use parking_lot::Mutex;
use serde_json::Value;

use crate::boundary::{
    FfiError, FfiResult, boundary, boundary_void, free_handle, get_handle, mw_status, need_out, new_handle, out_string,
    str_arg, write_out,
};
use crate::manager::{manager_handle, mw_manager};

/// One item: a pointer-sized unsigned integer (`size_t`, as wide as `uintptr_t` on every
/// supported platform). Store an id, or a pointer cast with `(mw_item)(uintptr_t)ptr`.
pub type mw_item = usize;

/// Fills `items` with up to `max` items and writes how many to `*n` (0 = the end), returning
/// 0; any other return is a failure, handled by `error_handling` as a `MW_STATUS_CALLBACK`
/// error "source callback failed with status N". Runs on the thread that called
/// `mw_streaming_next` / `mw_filtered_next_batch`. `items` and `n` are never NULL.
pub type mw_chunk_source_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, max: usize, items: *mut mw_item, n: *mut usize) -> i32>;

/// What a keyset key holds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mw_key_kind {
    /// No key (written by a loader in offset mode, or for an empty page).
    None = 0,
    /// `int_value` holds the key.
    Int = 1,
    /// `text` holds the key, a NUL-terminated UTF-8 string.
    Text = 2,
}

/// A keyset pagination key.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mw_key {
    pub kind: mw_key_kind,
    pub int_value: i64,
    /// For `MW_KEY_KIND_TEXT`. A key the library passes in is valid during the call; a key the
    /// loader writes out must stay valid until the loader returns (the library copies it).
    pub text: *const c_char,
}

/// Loads a page for a lazy iterator: fill `items` with up to `limit` items, write how many to
/// `*n` (0 = the end) and return 0; any other return is a failure (`MW_STATUS_CALLBACK`).
///
/// In offset mode `offset` is the index of the first item and `after` is NULL. In keyset mode
/// `offset` is 0 and `after` is NULL for the first page, else the key of the previous page's
/// last item; the loader must then write the key of its own last item to `*last_key` when
/// `*n > 0`. Runs on the thread that called `mw_lazy_next_batch`. `items`, `n` and
/// `last_key` are never NULL.
pub type mw_lazy_load_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        offset: u64,
        after: *const mw_key,
        limit: usize,
        items: *mut mw_item,
        n: *mut usize,
        last_key: *mut mw_key,
    ) -> i32,
>;

/// Decides about one item: 1 (or any positive value) keeps it, 0 rejects it, a negative value
/// is an error that ends the iteration with `MW_STATUS_CALLBACK`. Runs on the thread that
/// called `mw_filtered_next_batch`.
pub type mw_filter_fn = Option<unsafe extern "C" fn(user: *mut c_void, item: mw_item) -> i32>;

// ---- shared pieces -------------------------------------------------------------

/// One iterator's state behind a lock, refusing a call from inside its own callback (which
/// would otherwise deadlock) with an error instead.
struct Guarded<T> {
    lock: Mutex<T>,
    owner: AtomicUsize,
}

fn thread_token() -> usize {
    thread_local!(static TOKEN: u8 = const { 0 });
    TOKEN.with(|t| t as *const u8 as usize)
}

struct Owner<'a>(&'a AtomicUsize);
impl Drop for Owner<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

impl<T> Guarded<T> {
    fn new(value: T) -> Self {
        Guarded { lock: Mutex::new(value), owner: AtomicUsize::new(0) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> FfiResult<R>) -> FfiResult<R> {
        let me = thread_token();
        if self.owner.load(Ordering::Acquire) == me {
            return Err(FfiError::new(
                mw_status::InvalidArgument,
                "the iterator is busy: it was called from inside one of its own callbacks",
            ));
        }
        let mut g = self.lock.lock();
        self.owner.store(me, Ordering::Release);
        let _owner = Owner(&self.owner);
        f(&mut g)
    }
}

fn read_config(component: &'static str, json: *const c_char) -> FfiResult<IterConfig> {
    let v = if json.is_null() {
        Value::Null
    } else {
        // Safety: NUL-terminated per the contract.
        config::parse_json(component, unsafe { str_arg(json, "config_json") }?)?
    };
    Ok(IterConfig::from_json(component, &v)?)
}

/// Hands out a batch: keeps it alive in `slot` and points `*items` at it.
///
/// # Safety
/// `items` and `n` were checked non-NULL and are writable.
unsafe fn hand_out(slot: &mut Vec<mw_item>, batch: Vec<mw_item>, items: *mut *const mw_item, n: *mut usize) {
    *slot = batch;
    // Safety: per the function's contract.
    unsafe {
        items.write(if slot.is_empty() { std::ptr::null() } else { slot.as_ptr() });
        n.write(slot.len());
    }
}

fn stats_out(v: Value, out: *mut *mut c_char) -> FfiResult<()> {
    // Safety: NULL-checked inside; writable per the contract.
    unsafe { write_out(out, "json_out", out_string(v.to_string())) }
}

fn manager_cleanup(manager: *const mw_manager) -> FfiResult<memwarden_core::iter::CleanupFn> {
    let m = manager_handle(manager)?;
    Ok(Box::new(move || m.core().force_garbage_collection().map(|_| ())))
}

/// A C chunk source and its `user` pointer.
struct CSource {
    f: unsafe extern "C" fn(*mut c_void, usize, *mut mw_item, *mut usize) -> i32,
    user: *mut c_void,
}
// Safety: the source is only called under the iterator's lock, on the thread that called in;
// the C caller promises `user` may be used from the threads it calls the iterator from.
unsafe impl Send for CSource {}

fn buffer(max: usize) -> memwarden_core::Result<Vec<mw_item>> {
    let mut v = Vec::new();
    v.try_reserve_exact(max)
        .map_err(|_| Error::invalid_argument(format!("cannot allocate a buffer for {max} items")))?;
    v.resize(max, 0);
    Ok(v)
}

fn count_checked(what: &str, n: usize, max: usize) -> memwarden_core::Result<()> {
    if n > max {
        return Err(Error::callback(format!("{what} callback reported {n} items, more than the {max} allowed")));
    }
    Ok(())
}

impl ChunkSource<mw_item> for CSource {
    fn next_chunk(&mut self, max: usize) -> memwarden_core::Result<Vec<mw_item>> {
        let mut buf = buffer(max)?;
        let mut n = 0usize;
        // Safety: the caller's callback with its user pointer, a buffer of `max` items and a
        // live count.
        let rc = unsafe { (self.f)(self.user, max, buf.as_mut_ptr(), &mut n) };
        if rc != 0 {
            return Err(Error::callback(format!("source callback failed with status {rc}")));
        }
        count_checked("source", n, max)?;
        buf.truncate(n);
        Ok(buf)
    }
}

// ---- streaming -----------------------------------------------------------------

/// A streaming iterator over a C chunk source. Create with `mw_streaming_new`, free with
/// `mw_streaming_free`.
///
/// Calls on one iterator are serialised by a lock, so it may be used from several threads,
/// but the array `mw_streaming_next` hands out is only valid until the next call on the
/// iterator: share it between threads only with your own coordination. The source callback
/// runs on the calling thread; calling the same iterator from inside it returns
/// `MW_STATUS_INVALID_ARGUMENT`.
pub struct mw_streaming {
    inner: Guarded<StreamState>,
}

struct StreamState {
    it: StreamingIterator<mw_item, CSource>,
    last: Vec<mw_item>,
}

fn streaming(p: *const mw_streaming) -> FfiResult<Arc<mw_streaming>> {
    get_handle(p, "it")
}

/// Creates a streaming iterator that pulls chunks of `chunk_size` items from `source`.
///
/// `config_json` (NULL or `""` for the defaults): `chunk_size` (1000), `memory_limit`
/// (`"128M"` or bytes, -1 = none: allowed growth of resident memory over the start of
/// iteration), `auto_gc` (true: above the limit run the manager set with
/// `mw_streaming_set_manager`, then halve the chunk size if still above), `cache_chunks`
/// (false: keep chunks for `mw_streaming_rewind` while memory allows), `error_handling`
/// (`"continue"`, `"stop"`, `"retry"`), `retry_attempts` (3); `prefetch` and
/// `parallel_processing` are accepted and have no effect on a C source, which is only ever
/// called on the calling thread. `user` is passed to `source` and not freed by the library.
///
/// Returns `MW_STATUS_NULL_ARGUMENT` when `source` or `out` is NULL, `MW_STATUS_INVALID_CONFIG`
/// for a bad config (the message names the key).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_streaming_new(
    config_json: *const c_char,
    source: mw_chunk_source_fn,
    user: *mut c_void,
    out: *mut *mut mw_streaming,
) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let f = source.ok_or_else(|| FfiError::null("source"))?;
        let cfg = read_config("StreamingIterator", config_json)?;
        let it = StreamingIterator::new(CSource { f, user }, &cfg)?;
        let h = new_handle(mw_streaming { inner: Guarded::new(StreamState { it, last: Vec::new() }) });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// The next chunk: `*items` points to `*n` items, valid until the next call on this iterator
/// or its free. At the end returns `MW_STATUS_OK` with `*n == 0` (and `*items == NULL`).
/// A source failure returns `MW_STATUS_CALLBACK` with `error_handling` `"stop"`, or
/// `"retry"` after `retry_attempts` more tries; with `"continue"` it is recorded in the stats
/// and the next chunk is pulled (100 failures in a row end the iteration with the error).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_streaming_next(
    it: *mut mw_streaming,
    items: *mut *const mw_item,
    n: *mut usize,
) -> mw_status {
    boundary(|| {
        let h = streaming(it)?;
        need_out(items, "items")?;
        need_out(n, "n")?;
        h.inner.with(|s| {
            let batch = s.it.next_chunk()?;
            // Safety: both checked non-NULL above.
            unsafe { hand_out(&mut s.last, batch, items, n) };
            Ok(())
        })
    })
}

/// Starts again from the first chunk by replaying the chunks kept with `cache_chunks`.
/// Returns `MW_STATUS_UNSUPPORTED` when `cache_chunks` is off or the cache was dropped because
/// `memory_limit` was exceeded (a C source cannot be restarted).
#[unsafe(no_mangle)]
pub extern "C" fn mw_streaming_rewind(it: *mut mw_streaming) -> mw_status {
    boundary(|| streaming(it)?.inner.with(|s| Ok(s.it.rewind()?)))
}

/// Statistics as JSON: `chunks`, `items`, `chunk_size`, `initial_chunk_size`,
/// `chunk_size_reductions`, `cleanups`, `memory_checks`, `peak_memory_growth_bytes`, `errors`
/// (`[{chunk, message}]`), `skipped_chunks`, `retries`, `cached_chunks`, `cache_dropped`, ...
/// Free `*json_out` with `mw_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_streaming_stats(it: *const mw_streaming, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        let h = streaming(it)?;
        need_out(json_out, "json_out")?;
        let v = h.inner.with(|s| Ok(s.it.stats().to_json()))?;
        stats_out(v, json_out)
    })
}

/// Makes the cleanup above `memory_limit` run `manager`'s collection (`mw_manager_force_gc`).
/// The iterator keeps the manager alive until it is freed.
#[unsafe(no_mangle)]
pub extern "C" fn mw_streaming_set_manager(it: *mut mw_streaming, manager: *const mw_manager) -> mw_status {
    boundary(|| {
        let h = streaming(it)?;
        let f = manager_cleanup(manager)?;
        h.inner.with(|s| {
            s.it.set_cleanup(f);
            Ok(())
        })
    })
}

/// Frees a streaming iterator (and the last chunk it handed out). NULL is a no-op. Must not
/// be called twice, nor from inside its own source callback.
#[unsafe(no_mangle)]
pub extern "C" fn mw_streaming_free(it: *mut mw_streaming) {
    boundary_void(|| free_handle(it));
}

// ---- lazy --------------------------------------------------------------------

struct CLoader {
    f: unsafe extern "C" fn(*mut c_void, u64, *const mw_key, usize, *mut mw_item, *mut usize, *mut mw_key) -> i32,
    user: *mut c_void,
    last_key: Option<Key>,
}
// Safety: as for CSource: called only under the iterator's lock on the calling thread.
unsafe impl Send for CLoader {}

impl Loader<mw_item> for CLoader {
    fn load(&mut self, page: Page<'_>, limit: usize) -> memwarden_core::Result<Vec<mw_item>> {
        let mut text = CString::default();
        let (offset, after) = match page {
            Page::Offset(o) => (o, None),
            Page::After(None) => (0, None),
            Page::After(Some(Key::Int(i))) => {
                (0, Some(mw_key { kind: mw_key_kind::Int, int_value: *i, text: std::ptr::null() }))
            }
            Page::After(Some(Key::Text(s))) => {
                text =
                    CString::new(s.as_str()).map_err(|_| Error::invalid_argument("a text key contains a NUL byte"))?;
                (0, Some(mw_key { kind: mw_key_kind::Text, int_value: 0, text: text.as_ptr() }))
            }
        };
        let mut buf = buffer(limit)?;
        let mut n = 0usize;
        let mut last = mw_key { kind: mw_key_kind::None, int_value: 0, text: std::ptr::null() };
        let after_ptr = after.as_ref().map_or(std::ptr::null(), |k| k as *const mw_key);
        // Safety: the caller's loader with its user pointer; `after` (and the text it points
        // to) outlives the call, the buffer holds `limit` items, `n` and `last` are live.
        let rc = unsafe { (self.f)(self.user, offset, after_ptr, limit, buf.as_mut_ptr(), &mut n, &mut last) };
        drop(text);
        if rc != 0 {
            return Err(Error::callback(format!("loader callback failed with status {rc}")));
        }
        count_checked("loader", n, limit)?;
        buf.truncate(n);
        self.last_key = match last.kind {
            mw_key_kind::None => None,
            mw_key_kind::Int => Some(Key::Int(last.int_value)),
            mw_key_kind::Text => {
                if last.text.is_null() {
                    return Err(Error::callback("loader wrote a text last_key with a NULL text"));
                }
                // Safety: the loader promises a NUL-terminated string valid until it returned,
                // and it has just returned: copied at once.
                let s = unsafe { CStr::from_ptr(last.text) };
                Some(Key::Text(
                    s.to_str()
                        .map_err(|_| Error::callback("loader wrote a text last_key that is not valid UTF-8"))?
                        .to_owned(),
                ))
            }
        };
        Ok(buf)
    }

    fn next_key(&mut self, batch: &[mw_item]) -> memwarden_core::Result<Key> {
        self.last_key.take().ok_or_else(|| {
            Error::callback(format!(
                "keyset mode: the loader returned {} items but did not write the key of the last one to *last_key",
                batch.len()
            ))
        })
    }
}

/// A lazy iterator over a C loader. Create with `mw_lazy_new`, free with `mw_lazy_free`.
/// Thread contract as for `mw_streaming`.
pub struct mw_lazy {
    inner: Guarded<LazyState>,
}

struct LazyState {
    it: LazyIterator<mw_item, CLoader>,
    last: Vec<mw_item>,
}

fn lazy(p: *const mw_lazy) -> FfiResult<Arc<mw_lazy>> {
    get_handle(p, "it")
}

/// Creates a lazy iterator that loads batches of `batch_size` items from `load`.
///
/// `config_json` (NULL or `""` for the defaults): `mode` (`"offset"`, the seed's
/// `(offset, limit)`, or `"keyset"`, `(after_key, limit)`: recommended, since OFFSET rereads
/// every earlier row and skips or repeats rows when the data changes during the run),
/// `batch_size` (1000), `memory_limit`, `auto_gc`, `cache_chunks`, `error_handling`
/// (`"continue"` skips a failed page in offset mode; in keyset mode it cannot, and the call
/// fails), `retry_attempts`, `key` (accepted for the bindings). `prefetch` and
/// `parallel_processing` are accepted and have no effect: the loader is always called on the
/// thread that called `mw_lazy_next_batch`, never on a library thread. `user` is not freed by
/// the library.
///
/// Returns `MW_STATUS_NULL_ARGUMENT` when `load` or `out` is NULL, `MW_STATUS_INVALID_CONFIG`
/// for a bad config.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_lazy_new(
    config_json: *const c_char,
    load: mw_lazy_load_fn,
    user: *mut c_void,
    out: *mut *mut mw_lazy,
) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let f = load.ok_or_else(|| FfiError::null("load"))?;
        let cfg = read_config("LazyIterator", config_json)?;
        let it = LazyIterator::new(CLoader { f, user, last_key: None }, &cfg)?;
        let h = new_handle(mw_lazy { inner: Guarded::new(LazyState { it, last: Vec::new() }) });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// The next batch: `*items` points to `*n` items, valid until the next call on this iterator
/// or its free; `*n == 0` at the end. Errors as for `mw_streaming_next`; in keyset mode a
/// loader that returns items without writing `*last_key` fails with `MW_STATUS_CALLBACK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_lazy_next_batch(it: *mut mw_lazy, items: *mut *const mw_item, n: *mut usize) -> mw_status {
    boundary(|| {
        let h = lazy(it)?;
        need_out(items, "items")?;
        need_out(n, "n")?;
        h.inner.with(|s| {
            let batch = s.it.next_batch()?;
            // Safety: both checked non-NULL above.
            unsafe { hand_out(&mut s.last, batch, items, n) };
            Ok(())
        })
    })
}

/// Starts again from the first item: replays the cached batches with `cache_chunks` (without
/// calling the loader), otherwise loads again from the first page.
#[unsafe(no_mangle)]
pub extern "C" fn mw_lazy_rewind(it: *mut mw_lazy) -> mw_status {
    boundary(|| lazy(it)?.inner.with(|s| Ok(s.it.rewind()?)))
}

/// Statistics as JSON, as `mw_streaming_stats` (a chunk is a batch; `chunk_size` is the
/// current `batch_size`). Free `*json_out` with `mw_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_lazy_stats(it: *const mw_lazy, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        let h = lazy(it)?;
        need_out(json_out, "json_out")?;
        let v = h.inner.with(|s| Ok(s.it.stats().to_json()))?;
        stats_out(v, json_out)
    })
}

/// As `mw_streaming_set_manager`.
#[unsafe(no_mangle)]
pub extern "C" fn mw_lazy_set_manager(it: *mut mw_lazy, manager: *const mw_manager) -> mw_status {
    boundary(|| {
        let h = lazy(it)?;
        let f = manager_cleanup(manager)?;
        h.inner.with(|s| {
            s.it.set_cleanup(f);
            Ok(())
        })
    })
}

/// Frees a lazy iterator. NULL is a no-op. Must not be called twice.
#[unsafe(no_mangle)]
pub extern "C" fn mw_lazy_free(it: *mut mw_lazy) {
    boundary_void(|| free_handle(it));
}

// ---- filtered ----------------------------------------------------------------

type CFilter = Box<dyn FnMut(&mw_item) -> memwarden_core::Result<bool> + Send>;

/// A filtered iterator over a C chunk source. Create with `mw_filtered_new`, free with
/// `mw_filtered_free`. Thread contract as for `mw_streaming`.
pub struct mw_filtered {
    inner: Guarded<FilterState>,
}

struct FilterState {
    it: FilteredIterator<mw_item, Items<mw_item, StreamingIterator<mw_item, CSource>>, CFilter>,
    last: Vec<mw_item>,
}

fn filtered(p: *const mw_filtered) -> FfiResult<Arc<mw_filtered>> {
    get_handle(p, "it")
}

struct FilterFn {
    f: unsafe extern "C" fn(*mut c_void, mw_item) -> i32,
    user: *mut c_void,
}
// Safety: as for CSource.
unsafe impl Send for FilterFn {}

impl FilterFn {
    fn call(&self, i: usize, item: mw_item) -> memwarden_core::Result<bool> {
        // Safety: the caller's filter with its user pointer.
        match unsafe { (self.f)(self.user, item) } {
            0 => Ok(false),
            rc if rc > 0 => Ok(true),
            rc => Err(Error::callback(format!("filter {i} failed with status {rc}"))),
        }
    }
}

/// Creates an iterator over the items of `source` (pulled in chunks as by `mw_streaming_new`)
/// that `filters` all keep, applied in order.
///
/// `filters` holds `n_filters` functions; `filter_users` (may be NULL: every filter gets NULL)
/// the `user` pointer of each. `config_json`: `early_exit` (true: stop at the first filter that
/// rejects an item; false: every filter sees every item), `filters` (accepted for the
/// bindings, ignored here) and the `mw_streaming_new` keys for the source. No `user` pointer is
/// freed by the library.
///
/// Returns `MW_STATUS_NULL_ARGUMENT` when `source`, `out`, `filters` (with `n_filters > 0`) or
/// one of the filters is NULL, `MW_STATUS_INVALID_CONFIG` for a bad config.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_filtered_new(
    config_json: *const c_char,
    source: mw_chunk_source_fn,
    user: *mut c_void,
    filters: *const mw_filter_fn,
    filter_users: *const *mut c_void,
    n_filters: usize,
    out: *mut *mut mw_filtered,
) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let f = source.ok_or_else(|| FfiError::null("source"))?;
        if filters.is_null() && n_filters > 0 {
            return Err(FfiError::null("filters"));
        }
        let mut list: Vec<CFilter> = Vec::with_capacity(n_filters);
        for i in 0..n_filters {
            // Safety: `filters` holds `n_filters` entries per the contract.
            let fi = unsafe { *filters.add(i) }.ok_or_else(|| FfiError::null(&format!("filters[{i}]")))?;
            // Safety: `filter_users`, when not NULL, holds `n_filters` entries.
            let ui = if filter_users.is_null() { std::ptr::null_mut() } else { unsafe { *filter_users.add(i) } };
            let filter = FilterFn { f: fi, user: ui };
            list.push(Box::new(move |item: &mw_item| filter.call(i, *item)));
        }
        let cfg = read_config("FilteredIterator", config_json)?;
        let stream = StreamingIterator::new(CSource { f, user }, &cfg)?;
        let it = FilteredIterator::new(stream.items(), list, &cfg);
        let h = new_handle(mw_filtered { inner: Guarded::new(FilterState { it, last: Vec::new() }) });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Up to `max` items that passed every filter: `*items` points to `*n` items, valid until the
/// next call on this iterator or its free; fewer than `max` only at the end, `*n == 0` after
/// it. A filter error (or a source error under `error_handling` `"stop"`) returns
/// `MW_STATUS_CALLBACK` and ends the iteration; when items had been collected before it, they
/// are returned first and the error comes with the next call. `max == 0` is
/// `MW_STATUS_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_filtered_next_batch(
    it: *mut mw_filtered,
    max: usize,
    items: *mut *const mw_item,
    n: *mut usize,
) -> mw_status {
    boundary(|| {
        let h = filtered(it)?;
        need_out(items, "items")?;
        need_out(n, "n")?;
        if max == 0 {
            return Err(FfiError::new(mw_status::InvalidArgument, "argument 'max' must be at least 1"));
        }
        h.inner.with(|s| {
            let batch = s.it.next_batch(max)?;
            // Safety: both checked non-NULL above.
            unsafe { hand_out(&mut s.last, batch, items, n) };
            Ok(())
        })
    })
}

/// Statistics as JSON: `items_seen`, `passed`, `rejected`, `filters` (`[{evaluated,
/// rejected}]` in filter order), `early_exit`, and `source` (the chunk source's statistics as
/// in `mw_streaming_stats`). Free `*json_out` with `mw_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_filtered_stats(it: *const mw_filtered, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        let h = filtered(it)?;
        need_out(json_out, "json_out")?;
        let v = h.inner.with(|s| {
            let mut v = s.it.stats().to_json();
            v["source"] = s.it.inner().inner().stats().to_json();
            Ok(v)
        })?;
        stats_out(v, json_out)
    })
}

/// Frees a filtered iterator. NULL is a no-op. Must not be called twice.
#[unsafe(no_mangle)]
pub extern "C" fn mw_filtered_free(it: *mut mw_filtered) {
    boundary_void(|| free_handle(it));
}
