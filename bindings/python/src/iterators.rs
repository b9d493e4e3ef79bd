//! `memwarden.StreamingIterator`, `LazyIterator` and `FilteredIterator` over `memwarden_core::iter`.
//!
//! Items are Python objects ([`Item`]). Sources, loaders and filters are Python callables or
//! iterables; their exceptions are kept in an [`ErrSlot`] and the core gets a callback error
//! with the exception's text. When the core gives up because of one (`error_handling: 'stop'`,
//! retries used up), the binding re-raises the original exception object.
//!
//! The streaming and filtered iterators run with the GIL held: every step calls Python.
//! A `LazyIterator` with `prefetch=True` runs the loader on the core's background thread,
//! which takes the GIL for each call; the consuming thread waits for a batch with the GIL
//! released, so a loader that does I/O overlaps with the consumer's work.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyIterator, PyList, PyString};
use serde_json::{Map, Value};

use memwarden_core::iter::{Items, StreamingIterator};
use memwarden_core::{self as mw, ChunkSource, FilteredIterator, IterConfig, Key, LazyIterator, Loader, Page};

use crate::convert::{config_entries, py_to_json_for, to_py, type_name};
use crate::errors::{config_error, to_pyerr};
use crate::manager::PyMemoryManager;

/// A Python object as an iterator item. Copying one (for `cache_chunks`) takes the GIL.
pub struct Item(pub Py<PyAny>);

impl Clone for Item {
    fn clone(&self) -> Self {
        Python::attach(|py| Item(self.0.clone_ref(py)))
    }
}

fn copy_items(items: &[Item]) -> Vec<Item> {
    Python::attach(|py| items.iter().map(|i| Item(i.0.clone_ref(py))).collect())
}

/// The latest exception raised by a source, loader or filter, waiting to be re-raised.
pub type ErrSlot = Arc<Mutex<Option<PyErr>>>;

/// Keeps `e` (the latest wins) and describes it to the core.
fn fail(slot: &ErrSlot, e: PyErr) -> mw::Error {
    let msg = e.to_string();
    *slot.lock() = Some(e);
    mw::Error::callback(msg)
}

fn shutting_down() -> mw::Error {
    mw::Error::new(mw::ErrorKind::Closed, "the Python interpreter is shutting down")
}

/// The core error as a Python exception: the source's own exception when it is what failed.
fn raise(py: Python<'_>, slot: &ErrSlot, e: mw::Error) -> PyErr {
    let pending = if e.kind() == mw::ErrorKind::Callback { slot.lock().take() } else { None };
    to_pyerr(py, e, pending)
}

fn busy(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "{what} is already running (in another thread, or its own source, loader or filter called it)"
    ))
}

/// The binding's own config entries, by name.
type OwnEntries<'py> = Vec<(String, Bound<'py, PyAny>)>;

/// Splits `config` + keyword arguments into the core's JSON and the binding's own keys.
fn split_config<'py>(
    py: Python<'py>,
    component: &'static str,
    config: Option<&Bound<'py, PyAny>>,
    kwargs: Option<&Bound<'py, PyDict>>,
    core_keys: &[&str],
    binding_keys: &[&str],
) -> PyResult<(Value, OwnEntries<'py>)> {
    let mut known: Vec<&str> = core_keys.to_vec();
    known.extend(binding_keys);
    let entries = config_entries(py, component, config, kwargs, &known)?;
    let mut core = Map::new();
    let mut own = Vec::new();
    for (k, v) in entries {
        if binding_keys.contains(&k.as_str()) {
            own.push((k, v));
        } else {
            core.insert(k.clone(), py_to_json_for(component, &k, &v)?);
        }
    }
    Ok((Value::Object(core), own))
}

fn manager_of(py: Python<'_>, component: &str, v: &Bound<'_, PyAny>) -> PyResult<Option<Arc<mw::MemoryManager>>> {
    if v.is_none() {
        return Ok(None);
    }
    match v.cast::<PyMemoryManager>() {
        Ok(m) => Ok(Some(m.get().core_arc())),
        Err(_) => Err(config_error(
            py,
            format!(
                "{component} config: invalid value for 'manager': expected a memwarden.MemoryManager, got {}",
                type_name(v)
            ),
        )),
    }
}

// ---- sources ----------------------------------------------------------------------

/// A Python iterable as the core's chunk source. With `flatten`, each element is itself an
/// iterable of items (a `StreamingIterator`'s chunks).
pub struct PySource {
    iter: Py<PyIterator>,
    flatten: bool,
    buffer: VecDeque<Item>,
    /// An exception met after some items of a chunk were collected: those items are
    /// delivered first, the exception on the next pull.
    pending: Option<PyErr>,
    ended: bool,
    slot: ErrSlot,
}

impl PySource {
    fn new(source: &Bound<'_, PyAny>, flatten: bool, slot: ErrSlot) -> PyResult<Self> {
        let iter = source.try_iter().map_err(|_| {
            PyTypeError::new_err(format!(
                "the source must be an iterable (a list, a generator, ...), got {}",
                type_name(source)
            ))
        })?;
        Ok(PySource { iter: iter.unbind(), flatten, buffer: VecDeque::new(), pending: None, ended: false, slot })
    }
}

impl ChunkSource<Item> for PySource {
    fn next_chunk(&mut self, max: usize) -> mw::Result<Vec<Item>> {
        Python::try_attach(|py| {
            if let Some(e) = self.pending.take() {
                return Err(fail(&self.slot, e));
            }
            let mut out = Vec::with_capacity(max.min(4096));
            while out.len() < max {
                match self.buffer.pop_front() {
                    Some(x) => out.push(x),
                    None => break,
                }
            }
            let mut it = self.iter.bind(py).clone();
            while out.len() < max && !self.ended {
                match it.next() {
                    None => self.ended = true,
                    Some(Ok(x)) if self.flatten => {
                        let inner = match x.try_iter() {
                            Ok(i) => i,
                            Err(e) => return Err(fail(&self.slot, e)),
                        };
                        for y in inner {
                            match y {
                                Ok(y) if out.len() < max => out.push(Item(y.unbind())),
                                Ok(y) => self.buffer.push_back(Item(y.unbind())),
                                Err(e) => return Err(fail(&self.slot, e)),
                            }
                        }
                    }
                    Some(Ok(x)) => out.push(Item(x.unbind())),
                    Some(Err(e)) if out.is_empty() => return Err(fail(&self.slot, e)),
                    Some(Err(e)) => {
                        self.pending = Some(e);
                        break;
                    }
                }
            }
            Ok(out)
        })
        .unwrap_or_else(|| Err(shutting_down()))
    }
}

type Stream = StreamingIterator<Item, PySource>;

fn build_stream(
    py: Python<'_>,
    component: &'static str,
    source: &Bound<'_, PyAny>,
    flatten: bool,
    cfg: &IterConfig,
    manager: Option<Arc<mw::MemoryManager>>,
    slot: &ErrSlot,
) -> PyResult<Stream> {
    let src = PySource::new(source, flatten, slot.clone())?;
    let mut it = StreamingIterator::with_cloner(src, cfg, copy_items).map_err(|e| to_pyerr(py, e, None))?;
    if let Some(m) = manager {
        it.set_manager(m);
    }
    let _ = component;
    Ok(it)
}

// ---- StreamingIterator ------------------------------------------------------------

/// `StreamingIterator(source, config=None, /, **options)`: lists of `chunk_size` items from
/// any iterable (generators too), with memory checks between chunks.
///
/// Options (the seed's keys): `chunk_size` (1000), `memory_limit` ('128M': allowed growth
/// over the reading taken when iteration starts; above it cleanup runs, then the chunk size
/// halves), `auto_gc`, `cache_chunks` (keep chunks so that `rewind()` replays them without
/// reading the source again), `error_handling` ('continue', 'stop', 'retry'),
/// `retry_attempts`, `manager` (a `MemoryManager` whose cleanup runs above `memory_limit`).
/// `prefetch` and `parallel_processing` are accepted and have no effect here: a Python
/// source can only be read with the GIL, one item after another.
///
/// An exception raised by the source follows `error_handling`: 'stop' re-raises it (the
/// original object), 'continue' records it in `stats` and goes on, 'retry' asks the source
/// again (a generator that raised is finished, so that ends the iteration).
#[pyclass(name = "StreamingIterator", module = "memwarden", frozen)]
pub struct PyStreamingIterator {
    core: Mutex<Stream>,
    slot: ErrSlot,
}

impl PyStreamingIterator {
    fn lock(&self) -> PyResult<MutexGuard<'_, Stream>> {
        self.core.try_lock().ok_or_else(|| busy("StreamingIterator"))
    }
}

#[pymethods]
impl PyStreamingIterator {
    #[new]
    #[pyo3(signature = (source, config = None, /, **options))]
    fn new(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        config: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        const C: &str = "StreamingIterator";
        let (json, own) = split_config(py, C, config, options, IterConfig::STREAMING_KEYS, &["manager"])?;
        let cfg = IterConfig::from_json(C, &json).map_err(|e| to_pyerr(py, e, None))?;
        let mut manager = None;
        for (_, v) in &own {
            manager = manager_of(py, C, v)?;
        }
        let slot = ErrSlot::default();
        let core = build_stream(py, C, source, false, &cfg, manager, &slot)?;
        Ok(PyStreamingIterator { core: Mutex::new(core), slot })
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let mut core = self.lock()?;
        match core.next_chunk() {
            Ok(c) if c.is_empty() => Ok(None),
            Ok(c) => {
                *self.slot.lock() = None;
                PyList::new(py, c.into_iter().map(|i| i.0)).map(Some)
            }
            Err(e) => Err(raise(py, &self.slot, e)),
        }
    }

    /// Starts again from the first chunk: replays the cached chunks (`cache_chunks=True`)
    /// without reading the source. Without a cache (or after memory pressure dropped it) a
    /// forward-only source cannot be replayed and this raises `UnsupportedError`.
    fn rewind(&self, py: Python<'_>) -> PyResult<()> {
        self.lock()?.rewind().map_err(|e| to_pyerr(py, e, None))
    }

    /// Chunks, items, chunk size (and its reductions), cleanups, errors, cache and memory figures.
    #[getter(stats)]
    fn stats_property<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.stats_dict(py)
    }

    #[pyo3(name = "get_stats")]
    fn stats_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = self.lock()?.stats().to_json();
        to_py(py, Ok(json))
    }
}

// ---- LazyIterator -----------------------------------------------------------------

/// How a keyset loader finds an item's key.
enum KeyFn {
    None,
    /// A dict key, else an attribute.
    Name(Py<PyString>),
    Call(Py<PyAny>),
}

/// Keys kept as the original Python objects (datetimes, tuples, ...), so that the loader
/// gets back exactly what it returned. Ints and strings round-trip through the core as they are.
const KEPT_KEYS: usize = 16;
const KEY_TOKEN: &str = "\u{0}memwarden-key:";

pub struct PyLoader {
    f: Py<PyAny>,
    key: KeyFn,
    slot: ErrSlot,
    kept: VecDeque<(String, Py<PyAny>)>,
    counter: u64,
}

impl PyLoader {
    fn key_to_py<'py>(&self, py: Python<'py>, k: &Key) -> PyResult<Bound<'py, PyAny>> {
        match k {
            Key::Int(i) => Ok(i.into_pyobject(py)?.into_any()),
            Key::Text(t) if t.starts_with(KEY_TOKEN) => match self.kept.iter().find(|(n, _)| n == t) {
                Some((_, o)) => Ok(o.bind(py).clone()),
                None => Err(PyRuntimeError::new_err("LazyIterator: a keyset key was lost (internal error)")),
            },
            Key::Text(t) => Ok(PyString::new(py, t).into_any()),
        }
    }

    fn key_object<'py>(&self, item: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = item.py();
        match &self.key {
            KeyFn::None => {
                Err(config_error(py, "LazyIterator: mode 'keyset' needs 'key' (a field name or a callable)"))
            }
            KeyFn::Call(f) => f.bind(py).call1((item,)),
            KeyFn::Name(n) => {
                let n = n.bind(py);
                if let Ok(d) = item.cast::<PyDict>() {
                    if let Some(v) = d.get_item(n)? {
                        return Ok(v);
                    }
                } else if let Ok(v) = item.getattr(n) {
                    return Ok(v);
                } else if let Ok(v) = item.get_item(n) {
                    return Ok(v);
                }
                Err(mw_err_key(n, item))
            }
        }
    }
}

fn mw_err_key(n: &Bound<'_, PyString>, item: &Bound<'_, PyAny>) -> pyo3::PyErr {
    pyo3::exceptions::PyKeyError::new_err(format!(
        "LazyIterator: the loader returned a {} without the key field '{}' (key=...: a dict key, an attribute \
         name, or a callable)",
        type_name(item),
        n
    ))
}

impl Loader<Item> for PyLoader {
    fn load(&mut self, page: Page<'_>, limit: usize) -> mw::Result<Vec<Item>> {
        Python::try_attach(|py| {
            let first = match page {
                Page::Offset(o) => Ok::<_, PyErr>(pyo3::types::PyInt::new(py, o).into_any()),
                Page::After(None) => Ok(py.None().into_bound(py)),
                Page::After(Some(k)) => self.key_to_py(py, k),
            };
            let result = first.and_then(|first| {
                let got = self.f.bind(py).call1((first, limit))?;
                if got.is_none() {
                    return Ok(Vec::new());
                }
                let iter = got.try_iter().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "LazyIterator: the loader must return a list of items, got {}",
                        type_name(&got)
                    ))
                })?;
                iter.map(|x| x.map(|x| Item(x.unbind()))).collect::<PyResult<Vec<Item>>>()
            });
            result.map_err(|e| fail(&self.slot, e))
        })
        .unwrap_or_else(|| Err(shutting_down()))
    }

    fn key_of(&self, item: &Item) -> mw::Result<Key> {
        Python::try_attach(|py| {
            let k = self.key_object(item.0.bind(py)).map_err(|e| fail(&self.slot, e))?;
            simple_key(&k).ok_or_else(|| mw::Error::invalid_argument("LazyIterator: key is not an int or str"))
        })
        .unwrap_or_else(|| Err(shutting_down()))
    }

    fn next_key(&mut self, batch: &[Item]) -> mw::Result<Key> {
        let last = batch.last().expect("next_key gets a non-empty batch");
        Python::try_attach(|py| {
            let k = self.key_object(last.0.bind(py)).map_err(|e| fail(&self.slot, e))?;
            if let Some(key) = simple_key(&k) {
                return Ok(key);
            }
            self.counter += 1;
            let token = format!("{KEY_TOKEN}{}", self.counter);
            if self.kept.len() >= KEPT_KEYS {
                self.kept.pop_front();
            }
            self.kept.push_back((token.clone(), k.unbind()));
            Ok(Key::Text(token))
        })
        .unwrap_or_else(|| Err(shutting_down()))
    }
}

fn simple_key(k: &Bound<'_, PyAny>) -> Option<Key> {
    if k.is_instance_of::<pyo3::types::PyBool>() {
        return None;
    }
    if k.is_instance_of::<PyInt>() {
        return k.extract::<i64>().ok().map(Key::Int);
    }
    if let Ok(s) = k.cast::<PyString>() {
        let s = s.to_cow().ok()?;
        if !s.starts_with(KEY_TOKEN) {
            return Some(Key::Text(s.into_owned()));
        }
    }
    None
}

struct LazyState {
    core: LazyIterator<Item, PyLoader>,
    buffer: VecDeque<Item>,
    threaded: bool,
}

impl LazyState {
    fn next_batch(&mut self, py: Python<'_>, slot: &ErrSlot) -> PyResult<Vec<Item>> {
        let r = if self.threaded {
            // The loader runs on the core's thread and needs the GIL.
            let core = &mut self.core;
            py.detach(move || core.next_batch())
        } else {
            self.core.next_batch()
        };
        match r {
            Ok(b) => {
                if !self.threaded {
                    // A loader exception that 'continue' or 'retry' got past.
                    *slot.lock() = None;
                }
                Ok(b)
            }
            Err(e) => Err(raise(py, slot, e)),
        }
    }
}

/// `LazyIterator(loader, config=None, /, **options)`: items loaded a batch at a time.
///
/// `loader(offset, limit)` returns a list (the seed's form). With `mode='keyset'` and `key`
/// (a dict key or attribute name, or a callable taking an item), it is called
/// `loader(after_key, limit)`: `after_key` is None for the first batch, then the key of the
/// previous batch's last item. **Keyset is recommended**: with OFFSET the database reads and
/// throws away every row before the offset (quadratic over a whole table), and rows inserted
/// or deleted during the run shift the pages, so rows are skipped or seen twice.
///
/// Iterating yields single items; `batches()` yields whole batches. `prefetch=True` (or
/// `parallel_processing=True`) runs the loader on a background thread that takes the GIL for
/// each call, one batch ahead, so a loader that waits on I/O overlaps with your work; the
/// loader must then be usable from another thread (sqlite3: `check_same_thread=False`).
/// Other options: `batch_size` (1000), `memory_limit`, `auto_gc`, `cache_chunks`,
/// `error_handling` ('continue' skips a failed batch in offset mode; keyset cannot skip),
/// `retry_attempts`, `manager`.
#[pyclass(name = "LazyIterator", module = "memwarden", frozen)]
pub struct PyLazyIterator {
    state: Mutex<LazyState>,
    slot: ErrSlot,
}

impl PyLazyIterator {
    fn lock(&self) -> PyResult<MutexGuard<'_, LazyState>> {
        self.state.try_lock().ok_or_else(|| busy("LazyIterator"))
    }

    fn next_whole_batch<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let mut st = self.lock()?;
        let batch: Vec<Item> =
            if st.buffer.is_empty() { st.next_batch(py, &self.slot)? } else { st.buffer.drain(..).collect() };
        if batch.is_empty() {
            return Ok(None);
        }
        PyList::new(py, batch.into_iter().map(|i| i.0)).map(Some)
    }
}

#[pymethods]
impl PyLazyIterator {
    #[new]
    #[pyo3(signature = (loader, config = None, /, **options))]
    fn new(
        py: Python<'_>,
        loader: &Bound<'_, PyAny>,
        config: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        const C: &str = "LazyIterator";
        if !loader.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "LazyIterator: loader must be a callable (offset, limit) -> list, got {}",
                type_name(loader)
            )));
        }
        let (mut json, own) = split_config(py, C, config, options, IterConfig::LAZY_KEYS, &["manager", "key"])?;
        // A callable key stays with the binding; a name also goes to the core.
        let mut key = KeyFn::None;
        let mut manager = None;
        for (k, v) in &own {
            if k == "manager" {
                manager = manager_of(py, C, v)?;
            } else if let Ok(s) = v.cast::<PyString>() {
                key = KeyFn::Name(s.clone().unbind());
                if let Value::Object(m) = &mut json {
                    m.insert("key".into(), Value::String(s.to_cow()?.into_owned()));
                }
            } else if v.is_callable() {
                key = KeyFn::Call(v.clone().unbind());
            } else if !v.is_none() {
                return Err(config_error(
                    py,
                    format!(
                        "LazyIterator config: invalid value for 'key': expected a field name or a callable, got {}",
                        type_name(v)
                    ),
                ));
            }
        }
        let cfg = IterConfig::from_json(C, &json).map_err(|e| to_pyerr(py, e, None))?;
        match (cfg.mode, &key) {
            (mw::PageMode::Keyset, KeyFn::None) => {
                return Err(config_error(
                    py,
                    "LazyIterator config: mode 'keyset' needs 'key': the name of the items' key field (a dict key or \
                     attribute) or a callable that returns an item's key",
                ));
            }
            (mw::PageMode::Offset, KeyFn::Name(_) | KeyFn::Call(_)) => {
                return Err(config_error(
                    py,
                    "LazyIterator config: 'key' is only used with mode='keyset'; add mode='keyset' (recommended) \
                     and write the loader as loader(after_key, limit)",
                ));
            }
            _ => {}
        }
        let slot = ErrSlot::default();
        let pl = PyLoader { f: loader.clone().unbind(), key, slot: slot.clone(), kept: VecDeque::new(), counter: 0 };
        let threaded = cfg.prefetch || cfg.parallel_processing;
        let mut core = if threaded { LazyIterator::with_prefetch(pl, &cfg) } else { LazyIterator::new(pl, &cfg) }
            .map_err(|e| to_pyerr(py, e, None))?;
        if let Some(m) = manager {
            core.set_manager(m);
        }
        Ok(PyLazyIterator { state: Mutex::new(LazyState { core, buffer: VecDeque::new(), threaded }), slot })
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let mut st = self.lock()?;
        if let Some(x) = st.buffer.pop_front() {
            return Ok(Some(x.0));
        }
        let batch = st.next_batch(py, &self.slot)?;
        st.buffer.extend(batch);
        Ok(st.buffer.pop_front().map(|i| i.0))
    }

    /// Whole batches (lists) instead of single items, from where the iteration is.
    fn batches(slf: Bound<'_, Self>) -> LazyBatches {
        LazyBatches { parent: slf.unbind() }
    }

    /// Starts again from the first item: replays the cache (`cache_chunks=True`), else
    /// loads again from the first page.
    fn rewind(&self, py: Python<'_>) -> PyResult<()> {
        let mut st = self.lock()?;
        st.buffer.clear();
        *self.slot.lock() = None;
        st.core.rewind().map_err(|e| to_pyerr(py, e, None))
    }

    /// Batches, items, batch size (`chunk_size`), errors, retries, prefetch figures.
    #[getter(stats)]
    fn stats_property<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.stats_dict(py)
    }

    #[pyo3(name = "get_stats")]
    fn stats_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = self.lock()?.core.stats().to_json();
        to_py(py, Ok(json))
    }
}

/// `lazy.batches()`: the remaining items of a `LazyIterator`, a batch (list) at a time.
#[pyclass(name = "LazyBatches", module = "memwarden", frozen)]
pub struct LazyBatches {
    parent: Py<PyLazyIterator>,
}

#[pymethods]
impl LazyBatches {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        self.parent.get().next_whole_batch(py)
    }
}

// ---- FilteredIterator -------------------------------------------------------------

type PyFilter = Box<dyn FnMut(&Item) -> mw::Result<bool> + Send>;
type Filtered = FilteredIterator<Item, Items<Item, Stream>, PyFilter>;

/// `FilteredIterator(source, config=None, /, **options)`: the items of `source` that pass
/// every filter in `filters` (callables returning a truth value), applied in order.
///
/// `early_exit=True` (default) stops at an item's first rejecting filter; `False` runs every
/// filter on every item (for filters that count). `source` is any iterable of items; a
/// `StreamingIterator`'s chunks are flattened. The source is read in chunks of `chunk_size`
/// with the same memory checks and `error_handling` as a `StreamingIterator`. A filter's
/// exception ends the iteration and is re-raised as it was. `stats` counts items seen,
/// passed and rejected, and per filter how often it ran and rejected.
#[pyclass(name = "FilteredIterator", module = "memwarden", frozen)]
pub struct PyFilteredIterator {
    core: Mutex<Filtered>,
    slot: ErrSlot,
}

impl PyFilteredIterator {
    fn lock(&self) -> PyResult<MutexGuard<'_, Filtered>> {
        self.core.try_lock().ok_or_else(|| busy("FilteredIterator"))
    }
}

#[pymethods]
impl PyFilteredIterator {
    #[new]
    #[pyo3(signature = (source, config = None, /, **options))]
    fn new(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        config: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        const C: &str = "FilteredIterator";
        let core_keys: Vec<&str> = IterConfig::FILTERED_KEYS.iter().copied().filter(|k| *k != "filters").collect();
        let (json, own) = split_config(py, C, config, options, &core_keys, &["filters", "manager"])?;
        let cfg = IterConfig::from_json(C, &json).map_err(|e| to_pyerr(py, e, None))?;
        let slot = ErrSlot::default();
        let mut manager = None;
        let mut filters: Vec<PyFilter> = Vec::new();
        for (k, v) in &own {
            if k == "manager" {
                manager = manager_of(py, C, v)?;
                continue;
            }
            if v.is_none() {
                continue;
            }
            let iter = v.try_iter().map_err(|_| {
                config_error(
                    py,
                    format!(
                        "{C} config: invalid value for 'filters': expected a list of callables, got {}",
                        type_name(v)
                    ),
                )
            })?;
            for (i, f) in iter.enumerate() {
                let f = f?;
                if !f.is_callable() {
                    return Err(config_error(
                        py,
                        format!(
                            "{C} config: invalid value for 'filters[{i}]': expected a callable, got {}",
                            type_name(&f)
                        ),
                    ));
                }
                let f = f.unbind();
                let slot = slot.clone();
                filters.push(Box::new(move |item: &Item| {
                    Python::attach(|py| {
                        f.bind(py).call1((item.0.bind(py),)).and_then(|r| r.is_truthy()).map_err(|e| fail(&slot, e))
                    })
                }));
            }
        }
        let flatten = source.is_instance_of::<PyStreamingIterator>();
        let stream = build_stream(py, C, source, flatten, &cfg, manager, &slot)?;
        let core = FilteredIterator::new(stream.items(), filters, &cfg);
        Ok(PyFilteredIterator { core: Mutex::new(core), slot })
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let mut core = self.lock()?;
        match core.next() {
            None => Ok(None),
            Some(Ok(x)) => Ok(Some(x.0)),
            Some(Err(e)) => Err(raise(py, &self.slot, e)),
        }
    }

    /// `items_seen`, `passed`, `rejected`, `filters` (per filter: `evaluated`, `rejected`),
    /// `early_exit`, and `source`: the statistics of the chunked read under it.
    #[getter(stats)]
    fn stats_property<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.stats_dict(py)
    }

    #[pyo3(name = "get_stats")]
    fn stats_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let core = self.lock()?;
        let mut json = core.stats().to_json();
        json["source"] = core.inner().inner().stats().to_json();
        to_py(py, Ok(json))
    }
}
