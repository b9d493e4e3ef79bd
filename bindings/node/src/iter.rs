//! `NativeStreamingIterator`, `NativeLazyIterator`, `NativeFilteredIterator`: the core's
//! iterators over JavaScript items.
//!
//! JS values are not `Send` and cost a reference each; the core iterates `u64` ids instead:
//! `slot * 2^32 + index`, where `slot` names one array the JS layer (`lib/index.js`) pulled
//! from the source or got from the loader and keeps in a table. A chunk goes back to JS as
//! `[-1 - slot, count]` when it is items `0..count` of one slot (the usual case: the JS layer
//! hands out the pulled array itself), else as the list of ids.
//!
//! Synchronous steps (`next`) run the core on the JS thread and call `dispatch` directly;
//! asynchronous ones (`nextAsync`) run it on a worker thread (see `bridge.rs`), so sources
//! and loaders may return Promises.

use std::sync::Arc;

use memwarden_core::iter::{ChunkSource, Items, Loader, Page};
use memwarden_core::{
    Error as CoreError, FilteredIterator, IterConfig, Key, LazyIterator, PageMode, StreamingIterator,
};
use napi::bindgen_prelude::*;
use napi::{Env, sys};
use napi_derive::napi;
use parking_lot::Mutex;
use serde_json::Value;

use crate::bridge::{Port, Reply, Request, Settle, Shape, spawn_step};
use crate::{CoreResult, NativeMemoryManager, expect_function, guarded, normalize_numbers, throw_value};
use memwarden_core::chunk::RowFormat;

const SHAPE: Shape = Shape { row_format: RowFormat::Dict, progress_stats: false };

fn ids(slot: u32, len: usize) -> Vec<u64> {
    let base = u64::from(slot) << 32;
    (0..len as u64).map(|i| base | i).collect()
}

/// `[-1 - slot, count]` for items `0..count` of one slot, else the ids.
fn describe(chunk: &[u64]) -> Vec<f64> {
    if let Some(&first) = chunk.first() {
        let slot = first >> 32;
        if chunk.iter().enumerate().all(|(i, &id)| id == (slot << 32) | i as u64) {
            return vec![-1.0 - slot as f64, chunk.len() as f64];
        }
    }
    chunk.iter().map(|&id| id as f64).collect()
}

fn chunk_reply(r: Reply) -> CoreResult<(u32, usize, Option<Key>)> {
    match r {
        Reply::Chunk { slot, len, key } => Ok((slot, len, key)),
        _ => Err(CoreError::callback("internal: unexpected reply")),
    }
}

/// The seed's `$dataSource`: pulls from the JS iterable through `dispatch(0, max)`.
pub(crate) struct PortSource {
    port: Arc<Port>,
}

impl ChunkSource<u64> for PortSource {
    fn next_chunk(&mut self, max: usize) -> CoreResult<Vec<u64>> {
        let (slot, len, _) = chunk_reply(self.port.request(Request::Pull { max })?)?;
        Ok(ids(slot, len))
    }
}

/// The JS loader, through `dispatch(1, offsetOrAfterKey, limit)`; in keyset mode the JS
/// layer also returns the key of the page's last item.
pub(crate) struct PortLoader {
    port: Arc<Port>,
    next_key: Option<Key>,
}

impl Loader<u64> for PortLoader {
    fn load(&mut self, page: Page<'_>, limit: usize) -> CoreResult<Vec<u64>> {
        let req = match page {
            Page::Offset(o) => Request::Load { offset: Some(o), after: None, limit },
            Page::After(k) => Request::Load { offset: None, after: k.cloned(), limit },
        };
        let (slot, len, key) = chunk_reply(self.port.request(req)?)?;
        self.next_key = key;
        Ok(ids(slot, len))
    }

    fn next_key(&mut self, _batch: &[u64]) -> CoreResult<Key> {
        self.next_key.take().ok_or_else(|| CoreError::invalid_argument("keyset mode: the key function gave no key"))
    }
}

type Shared<T> = Arc<Mutex<Option<T>>>;

fn busy(env: &Env, what: &str) -> napi::Error {
    crate::throw_core(
        env,
        &CoreError::invalid_argument(format!("{what}: a step is still running (await it before the next one)")),
    )
}

/// Runs one synchronous step of `inner` with `dispatch` called directly.
fn sync_step<I, R>(
    env: &Env,
    what: &str,
    inner: &Shared<I>,
    port: &Port,
    dispatch: &Unknown,
    f: impl FnOnce(&mut I) -> CoreResult<R>,
) -> Result<R> {
    let mut guard = inner.try_lock().ok_or_else(|| busy(env, what))?;
    let it = guard.as_mut().ok_or_else(|| busy(env, what))?;
    match port.direct(env, dispatch, || f(it)) {
        Ok(v) => Ok(v),
        Err(e) => Err(throw_value(env.raw(), port.error_value(env.raw(), &e))),
    }
}

/// Runs one step of `inner` on a worker thread; the Promise resolves with what `out` makes
/// of the result.
fn async_step<I: Send + 'static, R: Send + 'static>(
    env: &Env,
    what: &str,
    inner: &Shared<I>,
    port: &Arc<Port>,
    dispatch: &Unknown,
    f: impl FnOnce(&mut I) -> CoreResult<R> + Send + 'static,
    out: impl FnOnce(sys::napi_env, R) -> sys::napi_value + Send + 'static,
) -> Result<sys::napi_value> {
    let it = inner.try_lock().and_then(|mut g| g.take()).ok_or_else(|| busy(env, what))?;
    let inner = inner.clone();
    spawn_step(env, dispatch, port.clone(), move || {
        let mut it = it;
        let r = f(&mut it);
        *inner.lock() = Some(it);
        let settle: Settle = Box::new(move |env, port| match r {
            Ok(v) => Ok(out(env, v)),
            Err(e) => Err(port.error_value(env, &e)),
        });
        settle
    })
}

fn f64s(env: sys::napi_env, v: Vec<f64>) -> sys::napi_value {
    // Safety: conversion on the JS thread.
    unsafe { Vec::<f64>::to_napi_value(env, v) }.unwrap_or(std::ptr::null_mut())
}

fn config(env: &Env, component: &'static str, cfg: Option<Value>) -> Result<IterConfig> {
    let cfg = normalize_numbers(cfg.unwrap_or(Value::Null));
    guarded(env, || IterConfig::from_json(component, &cfg))
}

// ---- StreamingIterator -----------------------------------------------------------------

type Streaming = StreamingIterator<u64, PortSource>;

/// The native streaming iterator. Use `StreamingIterator` from `lib/index.js`.
#[napi(js_name = "NativeStreamingIterator")]
pub struct NativeStreamingIterator {
    inner: Shared<Streaming>,
    port: Arc<Port>,
    caching: bool,
}

#[napi]
impl NativeStreamingIterator {
    /// `config`: `chunk_size`, `memory_limit`, `auto_gc`, `cache_chunks`, `error_handling`,
    /// `retry_attempts`, ... as the core reads them.
    #[napi(constructor)]
    pub fn new(env: Env, config_json: Option<Value>) -> Result<Self> {
        let cfg = config(&env, "StreamingIterator", config_json)?;
        let port = Port::new(SHAPE);
        let it = guarded(&env, || StreamingIterator::new(PortSource { port: port.clone() }, &cfg))?;
        Ok(NativeStreamingIterator { inner: Arc::new(Mutex::new(Some(it))), port, caching: cfg.cache_chunks })
    }

    /// The next chunk (see the module doc); `[]` at the end.
    #[napi(ts_args_type = "dispatch: (...args: any[]) => any")]
    pub fn next(&self, env: Env, dispatch: Unknown) -> Result<Vec<f64>> {
        expect_function(&env, &dispatch, "next", "dispatch")?;
        let chunk = sync_step(&env, "StreamingIterator", &self.inner, &self.port, &dispatch, |it| it.next_chunk())?;
        Ok(describe(&chunk))
    }

    /// As `next`, on a worker thread: `dispatch` gets a `reply` function and may await.
    #[napi(ts_args_type = "dispatch: (...args: any[]) => any", ts_return_type = "Promise<number[]>")]
    pub fn next_async(&self, env: Env, dispatch: Unknown) -> Result<Unknown<'_>> {
        expect_function(&env, &dispatch, "nextAsync", "dispatch")?;
        let p = async_step(
            &env,
            "StreamingIterator",
            &self.inner,
            &self.port,
            &dispatch,
            |it| it.next_chunk(),
            |env, c| f64s(env, describe(&c)),
        )?;
        // Safety: a live promise value of this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), p) })
    }

    /// Whether the JS layer must keep delivered chunks (the core may replay them).
    #[napi(getter)]
    pub fn retains(&self) -> bool {
        self.caching && self.inner.try_lock().and_then(|g| g.as_ref().map(|i| !i.stats().cache_dropped)).unwrap_or(true)
    }

    /// Replays the cached chunks (`cache_chunks`); an error when the source cannot be replayed.
    #[napi]
    pub fn rewind(&self, env: Env) -> Result<()> {
        let mut g = self.inner.try_lock().ok_or_else(|| busy(&env, "StreamingIterator"))?;
        let it = g.as_mut().ok_or_else(|| busy(&env, "StreamingIterator"))?;
        guarded(&env, || it.rewind())
    }

    #[napi(ts_return_type = "Record<string, any>")]
    pub fn stats(&self, env: Env) -> Result<Value> {
        let g = self.inner.try_lock().ok_or_else(|| busy(&env, "StreamingIterator"))?;
        let it = g.as_ref().ok_or_else(|| busy(&env, "StreamingIterator"))?;
        Ok(it.stats().to_json())
    }

    /// Cleanup above `memory_limit` runs this manager's collection.
    #[napi]
    pub fn set_manager(&self, env: Env, manager: &NativeMemoryManager) -> Result<()> {
        let mut g = self.inner.try_lock().ok_or_else(|| busy(&env, "StreamingIterator"))?;
        let it = g.as_mut().ok_or_else(|| busy(&env, "StreamingIterator"))?;
        it.set_manager(manager.inner.clone());
        Ok(())
    }
}

// ---- LazyIterator ----------------------------------------------------------------------

type Lazy = LazyIterator<u64, PortLoader>;

/// The native lazy iterator. Use `LazyIterator` from `lib/index.js`.
#[napi(js_name = "NativeLazyIterator")]
pub struct NativeLazyIterator {
    inner: Shared<Lazy>,
    port: Arc<Port>,
    caching: bool,
    keyset: bool,
}

#[napi]
impl NativeLazyIterator {
    /// `config`: `batch_size`, `mode` (`'offset'` / `'keyset'`), `key`, `memory_limit`,
    /// `error_handling`, `retry_attempts`, `cache_chunks`, `prefetch`, ...
    #[napi(constructor)]
    pub fn new(env: Env, config_json: Option<Value>) -> Result<Self> {
        let cfg = config(&env, "LazyIterator", config_json)?;
        let port = Port::new(SHAPE);
        // JS loaders run on the JS thread: the core's prefetch threads cannot call them
        // between steps, so `prefetch` has no effect here (the stats say prefetch_active: false).
        let it = guarded(&env, || LazyIterator::new(PortLoader { port: port.clone(), next_key: None }, &cfg))?;
        Ok(NativeLazyIterator {
            inner: Arc::new(Mutex::new(Some(it))),
            port,
            caching: cfg.cache_chunks,
            keyset: cfg.mode == PageMode::Keyset,
        })
    }

    #[napi(getter)]
    pub fn keyset(&self) -> bool {
        self.keyset
    }

    /// The next batch (see the module doc); `[]` at the end.
    #[napi(ts_args_type = "dispatch: (...args: any[]) => any")]
    pub fn next(&self, env: Env, dispatch: Unknown) -> Result<Vec<f64>> {
        expect_function(&env, &dispatch, "next", "dispatch")?;
        let b = sync_step(&env, "LazyIterator", &self.inner, &self.port, &dispatch, |it| it.next_batch())?;
        Ok(describe(&b))
    }

    /// As `next`, on a worker thread: the loader may return a Promise.
    #[napi(ts_args_type = "dispatch: (...args: any[]) => any", ts_return_type = "Promise<number[]>")]
    pub fn next_async(&self, env: Env, dispatch: Unknown) -> Result<Unknown<'_>> {
        expect_function(&env, &dispatch, "nextAsync", "dispatch")?;
        let p = async_step(
            &env,
            "LazyIterator",
            &self.inner,
            &self.port,
            &dispatch,
            |it| it.next_batch(),
            |env, c| f64s(env, describe(&c)),
        )?;
        // Safety: a live promise value of this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), p) })
    }

    #[napi(getter)]
    pub fn retains(&self) -> bool {
        self.caching && self.inner.try_lock().and_then(|g| g.as_ref().map(|i| !i.stats().cache_dropped)).unwrap_or(true)
    }

    /// Starts again from the first item (replays the cache, or loads again).
    #[napi]
    pub fn rewind(&self, env: Env) -> Result<()> {
        let mut g = self.inner.try_lock().ok_or_else(|| busy(&env, "LazyIterator"))?;
        let it = g.as_mut().ok_or_else(|| busy(&env, "LazyIterator"))?;
        guarded(&env, || it.rewind())
    }

    #[napi(ts_return_type = "Record<string, any>")]
    pub fn stats(&self, env: Env) -> Result<Value> {
        let g = self.inner.try_lock().ok_or_else(|| busy(&env, "LazyIterator"))?;
        let it = g.as_ref().ok_or_else(|| busy(&env, "LazyIterator"))?;
        Ok(it.stats().to_json())
    }

    #[napi]
    pub fn set_manager(&self, env: Env, manager: &NativeMemoryManager) -> Result<()> {
        let mut g = self.inner.try_lock().ok_or_else(|| busy(&env, "LazyIterator"))?;
        let it = g.as_mut().ok_or_else(|| busy(&env, "LazyIterator"))?;
        it.set_manager(manager.inner.clone());
        Ok(())
    }
}

// ---- FilteredIterator ------------------------------------------------------------------

type FilterFn = Box<dyn FnMut(&u64) -> CoreResult<bool> + Send>;
type Filtered = FilteredIterator<u64, Items<u64, Streaming>, FilterFn>;

/// The native filtered iterator over a JS iterable of items. Use `FilteredIterator` from
/// `lib/index.js`. Synchronous only: filters are called once per item, on the JS thread.
#[napi(js_name = "NativeFilteredIterator")]
pub struct NativeFilteredIterator {
    inner: Shared<Filtered>,
    port: Arc<Port>,
}

#[napi]
impl NativeFilteredIterator {
    /// `config`: `early_exit` and the chunk source's keys; `filters`: how many filters the JS
    /// layer holds (the functions stay there; the core calls filter `k` through dispatch).
    #[napi(constructor)]
    pub fn new(env: Env, config_json: Option<Value>, filters: u32) -> Result<Self> {
        let cfg = config(&env, "FilteredIterator", config_json)?;
        let port = Port::new(SHAPE);
        let source = guarded(&env, || StreamingIterator::new(PortSource { port: port.clone() }, &cfg))?;
        let fs: Vec<FilterFn> = (0..filters as usize)
            .map(|index| {
                let port = port.clone();
                Box::new(move |id: &u64| match port.request(Request::Filter { index, id: *id })? {
                    Reply::Bool(b) => Ok(b),
                    _ => Err(CoreError::callback("internal: unexpected reply")),
                }) as FilterFn
            })
            .collect();
        let it = FilteredIterator::new(source.items(), fs, &cfg);
        Ok(NativeFilteredIterator { inner: Arc::new(Mutex::new(Some(it))), port })
    }

    /// Up to `max` passing items (ids); `[]` at the end.
    #[napi(ts_args_type = "dispatch: (...args: any[]) => any, max: number")]
    pub fn next(&self, env: Env, dispatch: Unknown, max: u32) -> Result<Vec<f64>> {
        expect_function(&env, &dispatch, "next", "dispatch")?;
        let b = sync_step(&env, "FilteredIterator", &self.inner, &self.port, &dispatch, |it| {
            it.next_batch(max.max(1) as usize)
        })?;
        Ok(b.iter().map(|&id| id as f64).collect())
    }

    /// `items_seen`, `passed`, `rejected`, per-filter `filters[{evaluated, rejected}]`,
    /// `early_exit`, and the chunk source's statistics under `source`.
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn stats(&self, env: Env) -> Result<Value> {
        let g = self.inner.try_lock().ok_or_else(|| busy(&env, "FilteredIterator"))?;
        let it = g.as_ref().ok_or_else(|| busy(&env, "FilteredIterator"))?;
        let mut v = it.stats().to_json();
        v["source"] = it.inner().inner().stats().to_json();
        Ok(v)
    }
}
