//! `memwarden.MemoryManager` over `memwarden_core::MemoryManager`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyString};
use pyo3::{PyTraverseError, intern};
use serde_json::{Map, Value};

use memwarden_core::{self as mw, CleanupLevel, GcReport, ManagerConfig, State};

use crate::convert::{config_entries, json_to_py, py_to_json, to_py, type_name};
use crate::errors::{config_error, invalid_argument, run, run_attached, stash, to_pyerr};

/// Keys only the Python binding knows; they never reach the core.
const BINDING_KEYS: [&str; 4] = ["gc_callback", "gcCallback", "on_state_change", "host_gc"];

/// Name and priority of the cleanup hook that runs Python's `gc.collect()`: last, after
/// the hooks that drop caches and trim pools, so the collector sees what they let go.
const PYTHON_GC_HOOK: &str = "python-gc";
const PYTHON_GC_PRIORITY: i32 = -1000;

/// The Python callables a manager holds. The core's closures capture this store and a
/// slot index, never a callable, so the garbage collector sees every callable through
/// the manager's `__traverse__` and `__clear__` can drop them all.
#[derive(Default)]
struct CallbackStore {
    slots: Mutex<Vec<Option<Py<PyAny>>>>,
}

impl CallbackStore {
    fn add(&self, f: Py<PyAny>) -> usize {
        let mut slots = self.slots.lock();
        slots.push(Some(f));
        slots.len() - 1
    }

    fn get(&self, py: Python<'_>, slot: usize) -> Option<Py<PyAny>> {
        self.slots.lock().get(slot).and_then(|f| f.as_ref().map(|f| f.clone_ref(py)))
    }

    /// Takes a callable out; the caller drops it once no lock is held (a decref may run
    /// arbitrary Python code).
    fn take(&self, slot: usize) -> Option<Py<PyAny>> {
        self.slots.lock().get_mut(slot).and_then(Option::take)
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The lock is only ever held for a push or an incref, during which no Python code
        // runs; try_lock keeps a collection that starts anyway from deadlocking (the
        // callables are then just not visited this time, which only delays collection).
        if let Some(slots) = self.slots.try_lock() {
            for f in slots.iter().flatten() {
                visit.call(f)?;
            }
        }
        Ok(())
    }

    fn clear(&self) -> Vec<Py<PyAny>> {
        self.slots.lock().iter_mut().filter_map(Option::take).collect()
    }
}

/// Calls the callable in `slot` with the GIL. A Python exception is kept for the binding
/// call running on this thread (re-raised as it was) and reported to the core as a
/// callback error with the exception's text. A cleared slot is a no-op.
fn call_back(
    store: &CallbackStore,
    slot: usize,
    call: impl for<'py> FnOnce(&Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>,
) -> mw::Result<()> {
    Python::attach(|py| {
        let Some(f) = store.get(py, slot) else { return Ok(()) };
        call(f.bind(py)).map(drop).map_err(|e| {
            let msg = e.to_string();
            stash(e);
            mw::Error::callback(msg)
        })
    })
}

fn state_str(py: Python<'_>, s: State) -> Bound<'_, PyString> {
    match s {
        State::Normal => intern!(py, "normal"),
        State::Warning => intern!(py, "warning"),
        State::Critical => intern!(py, "critical"),
        State::Emergency => intern!(py, "emergency"),
    }
    .clone()
}

fn require_callable(f: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    if f.is_callable() {
        Ok(())
    } else {
        Err(PyTypeError::new_err(format!("{what} must be callable, got {}", type_name(f))))
    }
}

/// Whether `f` is called with one argument (true) or none (false), decided once from
/// `inspect.signature`: one when a single positional argument binds, else none when an
/// empty call binds. A callable without a readable signature (some builtins) is called
/// with none.
fn takes_one_arg(f: &Bound<'_, PyAny>, what: &str) -> PyResult<bool> {
    let py = f.py();
    require_callable(f, what)?;
    let inspect = py.import(intern!(py, "inspect"))?;
    let sig = match inspect.call_method1(intern!(py, "signature"), (f,)) {
        Ok(sig) => sig,
        Err(e) if e.is_instance_of::<PyValueError>(py) || e.is_instance_of::<PyTypeError>(py) => return Ok(false),
        Err(e) => return Err(e),
    };
    if sig.call_method1(intern!(py, "bind"), (py.None(),)).is_ok() {
        return Ok(true);
    }
    if sig.call_method0(intern!(py, "bind")).is_ok() {
        return Ok(false);
    }
    Err(PyTypeError::new_err(format!("{what} must accept one argument or none, but its signature is {}", sig.str()?)))
}

/// A byte count argument: an int >= 0.
fn byte_count(py: Python<'_>, func: &str, arg: &str, v: &Bound<'_, PyAny>) -> PyResult<u64> {
    if !v.is_instance_of::<PyInt>() || v.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{func}() argument '{arg}' must be an int number of bytes, got {}",
            type_name(v)
        )));
    }
    v.extract::<u64>()
        .map_err(|_| invalid_argument(py, format!("{func}(): '{arg}' must be a number of bytes >= 0, got {v}")))
}

/// Watches this process's memory (or readings the host pushes) against a limit, with
/// warning / critical / emergency states, callbacks, cleanup hooks and "garbage collection".
#[pyclass(name = "MemoryManager", module = "memwarden", frozen, weakref)]
pub struct PyMemoryManager {
    core: Arc<mw::MemoryManager>,
    store: Arc<CallbackStore>,
    /// Cleanup hook name -> its callable's slot, so that replacing or unregistering a hook
    /// lets its callable go.
    hook_slots: Mutex<HashMap<String, usize>>,
}

impl PyMemoryManager {
    /// The core manager, shared with the iterators and the chunk processor that run its cleanup.
    pub fn core_arc(&self) -> Arc<mw::MemoryManager> {
        self.core.clone()
    }

    fn add_state_callback(&self, f: &Bound<'_, PyAny>) {
        let slot = self.store.add(f.clone().unbind());
        let store = self.store.clone();
        self.core.on_state_change(Arc::new(move |old: State, new: State| {
            call_back(&store, slot, |f| {
                let py = f.py();
                f.call1((state_str(py, old), state_str(py, new)))
            })
        }));
    }

    fn add_after_gc(&self, f: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
        let with_report = takes_one_arg(f, what)?;
        let slot = self.store.add(f.clone().unbind());
        let store = self.store.clone();
        self.core.on_after_gc(Arc::new(move |report: &GcReport| {
            call_back(&store, slot, |f| {
                if with_report { f.call1((to_py(f.py(), serde_json::to_value(report))?,)) } else { f.call0() }
            })
        }));
        Ok(())
    }

    fn add_python_gc_hook(&self) -> mw::Result<()> {
        self.core.register_cleanup(
            PYTHON_GC_HOOK,
            PYTHON_GC_PRIORITY,
            Arc::new(|_level: CleanupLevel| -> mw::Result<()> {
                Python::attach(|py| {
                    py.import(intern!(py, "gc"))
                        .and_then(|gc| gc.call_method0(intern!(py, "collect")))
                        .map(drop)
                        .map_err(|e| {
                            let msg = e.to_string();
                            stash(e);
                            mw::Error::callback(msg)
                        })
                })
            }),
        )
    }
}

#[pymethods]
impl PyMemoryManager {
    #[classattr]
    const STATE_NORMAL: &'static str = "normal";
    #[classattr]
    const STATE_WARNING: &'static str = "warning";
    #[classattr]
    const STATE_CRITICAL: &'static str = "critical";
    #[classattr]
    const STATE_EMERGENCY: &'static str = "emergency";

    #[new]
    #[pyo3(signature = (config = None, /, **kwargs))]
    fn new(py: Python<'_>, config: Option<&Bound<'_, PyAny>>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut known: Vec<&str> = ManagerConfig::KEYS.to_vec();
        known.extend(BINDING_KEYS);
        let entries = config_entries(py, "MemoryManager", config, kwargs, &known)?;

        let mut core_cfg = Map::new();
        let mut gc_callback: Option<(String, Bound<'_, PyAny>)> = None;
        let mut state_callback = None;
        let mut host_gc = true;
        for (k, v) in entries {
            match k.as_str() {
                _ if v.is_none() && BINDING_KEYS.contains(&k.as_str()) => {}
                "gc_callback" | "gcCallback" => {
                    if let Some((first, _)) = &gc_callback {
                        return Err(config_error(
                            py,
                            format!("MemoryManager config: '{first}' and '{k}' are the same option; give one"),
                        ));
                    }
                    if !v.is_callable() {
                        return Err(config_error(
                            py,
                            format!(
                                "MemoryManager config: invalid value for '{k}': expected a callable, got {}",
                                type_name(&v)
                            ),
                        ));
                    }
                    gc_callback = Some((k, v));
                }
                "on_state_change" => {
                    if !v.is_callable() {
                        return Err(config_error(
                            py,
                            format!(
                                "MemoryManager config: invalid value for 'on_state_change': expected a callable, got {}",
                                type_name(&v)
                            ),
                        ));
                    }
                    state_callback = Some(v);
                }
                "host_gc" => {
                    host_gc = v.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
                        config_error(
                            py,
                            format!(
                                "MemoryManager config: invalid value for 'host_gc': expected True or False, got {}",
                                v
                            ),
                        )
                    })?;
                }
                _ => {
                    let value = py_to_json(&k, &v)?;
                    core_cfg.insert(k, value);
                }
            }
        }
        if core_cfg.get("source").and_then(Value::as_str) == Some("v8-heap") {
            return Err(config_error(
                py,
                "MemoryManager config: invalid value for 'source': 'v8-heap' is Node-only (V8's heap); in Python use \
                 'process' (this process's resident memory, the default) or 'host' (readings pushed with \
                 update_host_reading())",
            ));
        }
        let cfg = ManagerConfig::from_json(&Value::Object(core_cfg)).map_err(|e| to_pyerr(py, e, None))?;
        let core = mw::MemoryManager::new(cfg).map_err(|e| to_pyerr(py, e, None))?;
        let manager = PyMemoryManager {
            core: Arc::new(core),
            store: Arc::new(CallbackStore::default()),
            hook_slots: Mutex::new(HashMap::new()),
        };
        if host_gc {
            manager.add_python_gc_hook().map_err(|e| to_pyerr(py, e, None))?;
        }
        if let Some(f) = state_callback {
            manager.add_state_callback(&f);
        }
        if let Some((key, f)) = gc_callback {
            manager.add_after_gc(&f, &format!("MemoryManager config '{key}'"))?;
        }
        Ok(manager)
    }

    /// A fresh reading as a dict: current_bytes, peak_bytes, limit_bytes, usage_percent
    /// (0-100), current_mb, peak_mb, limit_mb (MiB), limit_origin, source. Does not change
    /// the state.
    fn get_memory_usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let usage = run_attached(py, || self.core.get_memory_usage())?;
        to_py(py, serde_json::to_value(usage))
    }

    /// Samples, updates the state and fires callbacks (like check()); returns the state.
    fn get_memory_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        self.check(py)
    }

    /// Samples, updates the state (with hysteresis), fires on_state_change(old, new) once per
    /// change and runs automatic cleanup; returns the state. Runs with the GIL released.
    fn check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let state = run(py, || self.core.check())?;
        Ok(state_str(py, state))
    }

    /// The state the last check() arrived at, without a new reading.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        state_str(py, self.core.state())
    }

    /// Sets an explicit limit: "512M", "1G", a number of bytes, or -1 / "-1" to clear it.
    fn set_memory_limit(&self, py: Python<'_>, limit: &Bound<'_, PyAny>) -> PyResult<()> {
        let result = if let Ok(s) = limit.cast::<PyString>() {
            self.core.set_memory_limit_str(&s.to_cow()?)
        } else if limit.is_instance_of::<PyInt>() && !limit.is_instance_of::<PyBool>() {
            match (limit.extract::<i64>(), limit.extract::<u64>()) {
                (Ok(i), _) => mw::size::size_from_i64(i).and_then(|s| self.core.set_memory_limit(s)),
                (_, Ok(u)) => self.core.set_memory_limit(mw::Size::Bytes(u)),
                _ => return Err(invalid_argument(py, format!("invalid memory limit {limit}: out of range"))),
            }
        } else {
            return Err(PyTypeError::new_err(format!(
                "set_memory_limit() argument 'limit' must be a str like '512M' or an int number of bytes, got {}",
                type_name(limit)
            )));
        };
        result.map_err(|e| to_pyerr(py, e, None))
    }

    /// The limit in bytes and its origin: "explicit", "host", "cgroup_v2", "cgroup_v1" or
    /// "physical".
    fn get_memory_limit(&self) -> (u64, &'static str) {
        let (bytes, origin) = self.core.limit();
        (bytes, origin.as_str())
    }

    /// Runs on_before_gc hooks, the cleanup hooks by priority (Python's gc.collect() among
    /// them), malloc_trim, then the after-GC callbacks; returns the report as a dict.
    fn force_garbage_collection<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let report = run(py, || self.core.force_garbage_collection())?;
        to_py(py, serde_json::to_value(report))
    }

    /// force_garbage_collection() with hooks asked to release all they can (level
    /// "emergency").
    fn emergency_cleanup<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let report = run(py, || self.core.emergency_cleanup())?;
        to_py(py, serde_json::to_value(report))
    }

    /// Usage, state, limit, thresholds, PSI, counters, the last cleanup and (with
    /// enable_detailed_tracking) history and growth rate.
    fn get_detailed_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stats = run(py, || self.core.get_detailed_stats())?;
        json_to_py(py, &stats)
    }

    /// Registers callback(old, new), called once per state change; returns callback.
    fn on_state_change<'py>(&self, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        require_callable(&callback, "on_state_change() argument 'callback'")?;
        self.add_state_callback(&callback);
        Ok(callback)
    }

    /// Registers callback(), run first in every cleanup run; returns callback.
    fn on_before_gc<'py>(&self, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        require_callable(&callback, "on_before_gc() argument 'callback'")?;
        let slot = self.store.add(callback.clone().unbind());
        let store = self.store.clone();
        self.core.on_before_gc(Arc::new(move || call_back(&store, slot, |f| f.call0())));
        Ok(callback)
    }

    /// Registers callback(report) (or callback()), run last in every cleanup run; returns
    /// callback.
    fn on_after_gc<'py>(&self, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.add_after_gc(&callback, "on_after_gc() argument 'callback'")?;
        Ok(callback)
    }

    /// Registers a named cleanup hook, called as callback(level) or callback(); higher
    /// priorities run first. A name registered again replaces its hook. A MemoryPool (or
    /// TypedMemoryPool) registers the pool itself: cleanup trims its idle objects. A
    /// LazyContainer registers the container: with release_lazy_on_cleanup, cleanup drops
    /// its cached lazy instances.
    #[pyo3(signature = (name, callback, priority = 0))]
    fn register_cleanup_hook(
        &self,
        py: Python<'_>,
        name: &str,
        callback: &Bound<'_, PyAny>,
        priority: i32,
    ) -> PyResult<()> {
        // A pool (MemoryPool or TypedMemoryPool) registers the core pool itself: a cleanup
        // run trims its idle objects to min_size (emergency: all of them), without Python.
        // A LazyContainer registers the core container: with release_lazy_on_cleanup, a
        // cleanup run drops its cached lazy instances.
        let native = match crate::container::as_container_cleanup(callback) {
            Some(c) => Some(c),
            None => crate::pool::as_pool_cleanup(callback)?,
        };
        if let Some(pool) = native {
            let released = {
                let mut slots = self.hook_slots.lock();
                self.core.register_cleanup(name, priority, pool).map_err(|e| to_pyerr(py, e, None))?;
                slots.remove(name).and_then(|old| self.store.take(old))
            };
            drop(released);
            return Ok(());
        }
        let with_level = takes_one_arg(callback, "register_cleanup_hook() argument 'callback'")?;
        let slot = self.store.add(callback.clone().unbind());
        let store = self.store.clone();
        let hook = Arc::new(move |level: CleanupLevel| {
            call_back(&store, slot, |f| if with_level { f.call1((level.as_str(),)) } else { f.call0() })
        });
        let released = {
            let mut slots = self.hook_slots.lock();
            match self.core.register_cleanup(name, priority, hook) {
                Ok(()) => slots.insert(name.to_owned(), slot).and_then(|old| self.store.take(old)),
                Err(e) => {
                    drop(slots);
                    drop(self.store.take(slot));
                    return Err(to_pyerr(py, e, None));
                }
            }
        };
        drop(released);
        Ok(())
    }

    /// Removes a cleanup hook by name; False when there was none.
    fn unregister_cleanup_hook(&self, name: &str) -> bool {
        let (removed, released) = {
            let mut slots = self.hook_slots.lock();
            let removed = self.core.unregister_cleanup(name);
            (removed, slots.remove(name).and_then(|s| self.store.take(s)))
        };
        drop(released);
        removed
    }

    /// (name, priority) of every cleanup hook, in the order they run.
    fn cleanup_hooks(&self) -> Vec<(String, i32)> {
        self.core.cleanup_hooks()
    }

    /// For source="host": the host's current and peak usage in bytes (peak defaults to
    /// current) and its own limit (None or -1: none).
    #[pyo3(signature = (current, peak = None, limit = None))]
    fn update_host_reading(
        &self,
        py: Python<'_>,
        current: &Bound<'_, PyAny>,
        peak: Option<&Bound<'_, PyAny>>,
        limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let f = "update_host_reading";
        let current = byte_count(py, f, "current", current)?;
        let peak = match peak {
            Some(p) => byte_count(py, f, "peak", p)?,
            None => current,
        };
        let limit = match limit {
            Some(l) if l.extract::<i64>().ok() == Some(-1) => None,
            Some(l) => Some(byte_count(py, f, "limit", l)?),
            None => None,
        };
        run_attached(py, || self.core.update_host_reading(current, peak, limit))
    }

    /// Resets the peak to the current reading.
    fn reset_peak(&self, py: Python<'_>) -> PyResult<()> {
        run(py, || self.core.reset_peak())
    }

    /// Reads the cgroup and physical limits again (they are read once, at construction).
    fn refresh_limit(&self, py: Python<'_>) {
        py.detach(|| self.core.refresh_limit());
    }

    fn __repr__(&self) -> String {
        let (limit, origin) = self.core.limit();
        format!(
            "<memwarden.MemoryManager source='{}' state='{}' limit={} ({})>",
            self.core.config().source.as_str(),
            self.core.state().as_str(),
            mw::format_size(limit),
            origin.as_str()
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.store.traverse(&visit)
    }

    fn __clear__(&self) {
        let released = self.store.clear();
        drop(released);
    }
}
