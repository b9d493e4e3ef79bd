//! `memwarden.ResourceTracker` over `memwarden_core::ResourceTracker` (Streamflow's resource
//! tracking, seed 004). Resources Python collects without a release are released through
//! `weakref.finalize` and counted as leaked (`collected_unreleased`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::{PyTraverseError, intern};
use serde_json::{Map, Number, Value};

use memwarden_core::{ResourceStats, ResourceTracker, TrackerConfig, TrackerEvent};

use crate::convert::{config_entries, json_to_py, py_to_json_for, type_name};
use crate::errors::{capture, config_error, finish, invalid_argument, report, to_pyerr};

const BINDING_KEYS: [&str; 3] = ["gc_callback", "gcCallback", "report_at_exit"];
const CORE_KEYS: [&str; 9] = TrackerConfig::KEYS;

/// The Python callables a tracker holds: event listeners, before-GC hooks, the gcCallback.
#[derive(Default)]
struct Callbacks {
    listeners: Mutex<Vec<(&'static str, Py<PyAny>)>>,
    before_gc: Mutex<Vec<Py<PyAny>>>,
    gc_callback: Mutex<Option<Py<PyAny>>>,
    verbose: AtomicBool,
}

impl Callbacks {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(l) = self.listeners.try_lock() {
            for (_, f) in l.iter() {
                visit.call(f)?;
            }
        }
        if let Some(l) = self.before_gc.try_lock() {
            for f in l.iter() {
                visit.call(f)?;
            }
        }
        if let Some(g) = self.gc_callback.try_lock()
            && let Some(f) = g.as_ref()
        {
            visit.call(f)?;
        }
        Ok(())
    }

    fn clear(&self) -> Vec<Py<PyAny>> {
        let mut out: Vec<Py<PyAny>> = self.listeners.lock().drain(..).map(|(_, f)| f).collect();
        out.extend(self.before_gc.lock().drain(..));
        out.extend(self.gc_callback.lock().take());
        out
    }

    /// Calls every listener of `e` with the event as a dict. An exception goes to the call
    /// running on this thread (re-raised after it) or, elsewhere, to `sys.unraisablehook`.
    fn emit(&self, e: &TrackerEvent) {
        Python::attach(|py| {
            let fs: Vec<Py<PyAny>> =
                self.listeners.lock().iter().filter(|(n, _)| *n == e.name).map(|(_, f)| f.clone_ref(py)).collect();
            if self.verbose.load(Ordering::Relaxed) {
                log(py, &format!("memwarden ResourceTracker: {}", e.to_json()));
            }
            if fs.is_empty() {
                return;
            }
            let event = match json_to_py(py, &e.to_json()) {
                Ok(ev) => ev,
                Err(err) => return report(py, err),
            };
            for f in fs {
                if let Err(err) = f.call1(py, (&event,)) {
                    report(py, err);
                }
            }
        })
    }

    fn call_hook(py: Python<'_>, f: Option<Py<PyAny>>) {
        if let Some(f) = f
            && let Err(err) = f.call0(py)
        {
            report(py, err);
        }
    }
}

/// A line for `logging.getLogger("memwarden.tracker")` at INFO (with `debug(verbose=True)`).
fn log(py: Python<'_>, msg: &str) {
    let r = py
        .import(intern!(py, "logging"))
        .and_then(|l| l.call_method1(intern!(py, "getLogger"), ("memwarden.tracker",)))
        .and_then(|l| l.call_method1(intern!(py, "info"), ("%s", msg)));
    if let Err(e) = r {
        e.write_unraisable(py, None);
    }
}

struct Inner {
    /// Shared with the StreamProcessors it was handed to (`tracker=`).
    core: Arc<ResourceTracker>,
    callbacks: Arc<Callbacks>,
    /// id -> its `weakref.finalize`, detached on release.
    finalizers: Mutex<HashMap<u64, Py<PyAny>>>,
    report_at_exit: AtomicBool,
}

impl Inner {
    fn detach(&self, py: Python<'_>, ids: impl IntoIterator<Item = u64>) {
        let fs: Vec<Py<PyAny>> = {
            let mut m = self.finalizers.lock();
            ids.into_iter().filter_map(|id| m.remove(&id)).collect()
        };
        for f in fs {
            let _ = f.call_method0(py, intern!(py, "detach"));
        }
    }

    fn detach_all(&self, py: Python<'_>) {
        let fs: Vec<Py<PyAny>> = self.finalizers.lock().drain().map(|(_, f)| f).collect();
        for f in fs {
            let _ = f.call_method0(py, intern!(py, "detach"));
        }
    }

    fn has_timer(&self) -> bool {
        let c = self.core.config();
        c.enable_auto_cleanup && c.cleanup_interval_ms > 0
    }
}

/// Every live tracker, for the exit hook (leak reports, stopping timers).
static LIVE: Mutex<Vec<Weak<Inner>>> = parking_lot::const_mutex(Vec::new());

/// Registered with `atexit` at module import: prints the leak report of every live tracker
/// made with `report_at_exit=True` or switched to `debug(verbose=True)`, and stops the
/// auto-cleanup timers before the interpreter goes away.
#[pyfunction]
#[pyo3(name = "_resource_trackers_at_exit")]
pub fn resource_trackers_at_exit(py: Python<'_>) -> PyResult<()> {
    let live: Vec<Arc<Inner>> = LIVE.lock().drain(..).filter_map(|w| w.upgrade()).collect();
    for inner in live {
        let verbose = inner.callbacks.verbose.load(Ordering::Relaxed);
        if inner.report_at_exit.load(Ordering::Relaxed) || verbose {
            let line = inner.core.exit_report_line();
            let sys = py.import(intern!(py, "sys"))?;
            sys.getattr(intern!(py, "stderr"))?.call_method1(intern!(py, "write"), (format!("{line}\n"),))?;
        }
        if inner.has_timer() {
            inner.detach_all(py);
            py.detach(|| inner.core.dispose());
        }
    }
    Ok(())
}

/// The callable each `weakref.finalize` holds: releases its id as collected (a leak).
#[pyclass(name = "_ResourceCollected", module = "memwarden", frozen)]
pub struct ResourceCollected {
    tracker: Weak<Inner>,
    id: u64,
}

#[pymethods]
impl ResourceCollected {
    fn __call__(&self, py: Python<'_>) {
        let Some(inner) = self.tracker.upgrade() else { return };
        inner.finalizers.lock().remove(&self.id);
        // Its own capture: a listener's exception must not surface in whatever call the
        // collection happened to run in.
        let (r, err) = capture(|| inner.core.mark_collected(self.id));
        if let Some(err) = err {
            err.write_unraisable(py, None);
        }
        if r.is_ok() && inner.callbacks.verbose.load(Ordering::Relaxed) {
            log(py, &format!("memwarden ResourceTracker: resource {} collected without a release (leak)", self.id));
        }
    }
}

fn stats_dict<'py>(py: Python<'py>, r: &ResourceStats) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &r.to_json())
}

/// Metadata as JSON; anything JSON cannot hold is a `TypeError` naming where it is.
fn metadata_json(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(PyTypeError::new_err(format!("track_resource(): {path} = {obj} does not fit in 64 bits")));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Number::from_f64(f.value()).map(Value::Number).ok_or_else(|| {
            PyTypeError::new_err(format!("track_resource(): {path} = {} is not a finite number", f.value()))
        });
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            out.push(metadata_json(&item?, &format!("{path}[{i}]"))?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut out = Map::new();
        for (k, v) in d.iter() {
            let Ok(k) = k.extract::<String>() else {
                return Err(PyTypeError::new_err(format!(
                    "track_resource(): the keys of {path} must be str, got {} {}",
                    type_name(&k),
                    k.repr()?
                )));
            };
            let v = metadata_json(&v, &format!("{path}[{k:?}]"))?;
            out.insert(k, v);
        }
        return Ok(Value::Object(out));
    }
    Err(PyTypeError::new_err(format!(
        "track_resource(): {path} is a {}, which is not JSON-serialisable (use str, int, float, bool, None, list or dict)",
        type_name(obj)
    )))
}

/// The size of a resource: the `size` argument, else `metadata["size"]`, else the byte length
/// of a bytes-like object (anything with the buffer protocol), else 0.
fn resource_size(
    py: Python<'_>,
    resource: &Bound<'_, PyAny>,
    metadata: &Value,
    size: Option<&Bound<'_, PyAny>>,
) -> PyResult<u64> {
    if let Some(s) = size.filter(|s| !s.is_none()) {
        if !s.is_instance_of::<PyInt>() || s.is_instance_of::<PyBool>() {
            return Err(PyTypeError::new_err(format!(
                "track_resource() argument 'size' must be an int number of bytes, got {}",
                type_name(s)
            )));
        }
        return s.extract::<u64>().map_err(|_| {
            invalid_argument(py, format!("track_resource(): 'size' must be a number of bytes >= 0, got {s}"))
        });
    }
    if let Some(v) = metadata.get("size") {
        return v.as_u64().ok_or_else(|| {
            invalid_argument(py, format!("track_resource(): metadata['size'] must be a number of bytes >= 0, got {v}"))
        });
    }
    if let Ok(b) = resource.cast::<PyBytes>() {
        return Ok(b.as_bytes().len() as u64);
    }
    if let Ok(b) = resource.cast::<PyByteArray>() {
        return Ok(b.len() as u64);
    }
    if resource.is_none() || resource.is_instance_of::<PyString>() {
        return Ok(0);
    }
    match py.import(intern!(py, "builtins"))?.getattr(intern!(py, "memoryview"))?.call1((resource,)) {
        Ok(view) => {
            let n = view.getattr(intern!(py, "nbytes"))?.extract::<u64>()?;
            view.call_method0(intern!(py, "release"))?;
            Ok(n)
        }
        Err(_) => Ok(0),
    }
}

fn event_name(py: Python<'_>, event: &str) -> PyResult<&'static str> {
    Ok(match event {
        "memoryWarning" | "memory_warning" => "memoryWarning",
        "memoryCritical" | "memory_critical" => "memoryCritical",
        "cleanup" => "cleanup",
        other => {
            return Err(invalid_argument(
                py,
                format!(
                    "on(): unknown event {other:?}; the events are 'memoryWarning' (or 'memory_warning'), \
                     'memoryCritical' (or 'memory_critical') and 'cleanup'"
                ),
            ));
        }
    })
}

/// Streamflow's resource tracker: see the stub for the whole contract.
#[pyclass(name = "ResourceTracker", module = "memwarden", frozen, weakref)]
pub struct PyResourceTracker {
    inner: Arc<Inner>,
}

impl PyResourceTracker {
    /// The core tracker, for a StreamProcessor that tracks its chunks here.
    pub(crate) fn core(&self) -> Arc<ResourceTracker> {
        self.inner.core.clone()
    }
}

#[pymethods]
impl PyResourceTracker {
    #[new]
    #[pyo3(signature = (config = None, /, **options))]
    fn new(py: Python<'_>, config: Option<&Bound<'_, PyAny>>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let kwargs = options;
        let mut known: Vec<&str> = CORE_KEYS.to_vec();
        known.extend(BINDING_KEYS);
        let entries = config_entries(py, "ResourceTracker", config, kwargs, &known)?;
        let mut core_cfg = Map::new();
        let mut gc_callback: Option<(String, Bound<'_, PyAny>)> = None;
        let mut report_at_exit = false;
        for (k, v) in entries {
            match k.as_str() {
                "gc_callback" | "gcCallback" => {
                    if let Some((first, _)) = &gc_callback {
                        return Err(config_error(
                            py,
                            format!("ResourceTracker config: '{first}' and '{k}' are the same option; give one"),
                        ));
                    }
                    if !v.is_none() && !v.is_callable() {
                        return Err(config_error(
                            py,
                            format!(
                                "ResourceTracker config: invalid value for '{k}': expected a callable, got {}",
                                type_name(&v)
                            ),
                        ));
                    }
                    gc_callback = Some((k, v));
                }
                "report_at_exit" => {
                    report_at_exit = v.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
                        config_error(
                            py,
                            format!("ResourceTracker config: invalid value for 'report_at_exit': expected True or False, got {v}"),
                        )
                    })?;
                }
                _ => {
                    let value = py_to_json_for("ResourceTracker", &k, &v)?;
                    core_cfg.insert(k, value);
                }
            }
        }
        let cfg = TrackerConfig::from_json(&Value::Object(core_cfg)).map_err(|e| to_pyerr(py, e, None))?;
        let core = Arc::new(ResourceTracker::new(cfg));
        let callbacks = Arc::new(Callbacks::default());
        let cb = callbacks.clone();
        core.set_event_callback(Some(Arc::new(move |e: &TrackerEvent| cb.emit(e))));
        let cb = callbacks.clone();
        core.on_before_gc(Arc::new(move || {
            Python::attach(|py| {
                let hooks: Vec<Py<PyAny>> = cb.before_gc.lock().iter().map(|f| f.clone_ref(py)).collect();
                for h in hooks {
                    Callbacks::call_hook(py, Some(h));
                }
            })
        }));
        if let Some((_, f)) = gc_callback.filter(|(_, f)| !f.is_none()) {
            *callbacks.gc_callback.lock() = Some(f.unbind());
        }
        let cb = callbacks.clone();
        core.set_gc_callback(Some(Arc::new(move || {
            Python::attach(|py| {
                let f = cb.gc_callback.lock().as_ref().map(|f| f.clone_ref(py));
                Callbacks::call_hook(py, f);
            })
        })));
        let inner = Arc::new(Inner {
            core,
            callbacks,
            finalizers: Mutex::new(HashMap::new()),
            report_at_exit: AtomicBool::new(report_at_exit),
        });
        {
            let mut live = LIVE.lock();
            live.retain(|w| w.strong_count() > 0);
            live.push(Arc::downgrade(&inner));
        }
        Ok(PyResourceTracker { inner })
    }

    /// Tracks `resource` as `type`; returns its id (0 while tracking is off).
    #[pyo3(signature = (resource, r#type = "resource", metadata = None, size = None))]
    fn track_resource(
        &self,
        py: Python<'_>,
        resource: &Bound<'_, PyAny>,
        r#type: &str,
        metadata: Option<&Bound<'_, PyAny>>,
        size: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let meta = match metadata.filter(|m| !m.is_none()) {
            None => Value::Object(Map::new()),
            Some(m) if m.is_instance_of::<PyDict>() => metadata_json(m, "metadata")?,
            Some(m) => {
                return Err(PyTypeError::new_err(format!(
                    "track_resource() argument 'metadata' must be a dict or None, got {}",
                    type_name(m)
                )));
            }
        };
        let size = resource_size(py, resource, &meta, size)?;
        let (result, err) = capture(|| self.inner.core.track_resource(r#type, size, meta));
        let id = finish(py, result, None)?;
        if id != 0 && !resource.is_none() {
            // Objects without weak references (int, str, bytes, tuple, ...) are tracked
            // without a finalizer: only an explicit release ends them.
            let weakref = py.import(intern!(py, "weakref"))?;
            if weakref.getattr(intern!(py, "ref"))?.call1((resource,)).is_ok() {
                let cb = Bound::new(py, ResourceCollected { tracker: Arc::downgrade(&self.inner), id })?;
                let f = weakref.getattr(intern!(py, "finalize"))?.call1((resource, cb))?;
                // At interpreter exit a live resource is a leak to report, not a collection.
                f.setattr(intern!(py, "atexit"), false)?;
                self.inner.finalizers.lock().insert(id, f.unbind());
            }
        }
        if self.inner.callbacks.verbose.load(Ordering::Relaxed) {
            log(py, &format!("memwarden ResourceTracker: tracked {} #{id} ({size} bytes)", r#type));
        }
        match err {
            Some(e) => Err(e),
            None => Ok(id),
        }
    }

    /// Releases a resource; returns its ResourceStats dict. An unknown or already released id
    /// raises NotFoundError and changes nothing.
    fn release_resource<'py>(&self, py: Python<'py>, id: u64) -> PyResult<Bound<'py, PyAny>> {
        let (result, err) = capture(|| self.inner.core.release_resource(id));
        let r = finish(py, result, None)?;
        self.inner.detach(py, [id]);
        if self.inner.callbacks.verbose.load(Ordering::Relaxed) {
            log(py, &format!("memwarden ResourceTracker: released #{id}"));
        }
        if let Some(e) = err {
            return Err(e);
        }
        stats_dict(py, &r)
    }

    /// The ResourceStats of a tracked resource (``type``, ``size``, ``createdAt`` in ms since
    /// the epoch, ``metadata``), or None.
    fn get_resource<'py>(&self, py: Python<'py>, id: u64) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner.core.get_resource(id).map(|r| stats_dict(py, &r)).transpose()
    }

    /// ``totalAllocated``, ``activeResources``, ``peakMemoryUsage``, ``totalTracked``,
    /// ``maxMemoryUsage``, ``usageRatio``, ``level``, ``byType``, ``leaks``, ``droppedEvents``
    /// (and ``bytesByType`` with ``resource_tracking={"detailed": True}``).
    fn get_memory_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.core.get_memory_stats())
    }

    /// Per type: ``live``, ``released``, ``collected_unreleased`` (leaked: collected by Python
    /// without a release), ``cleaned_up``.
    fn leak_report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.core.leak_report())
    }

    /// Registers ``callback(event)`` for ``"memoryWarning"`` / ``"memory_warning"``,
    /// ``"memoryCritical"`` / ``"memory_critical"`` or ``"cleanup"``; returns callback.
    fn on<'py>(&self, py: Python<'py>, event: &str, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let name = event_name(py, event)?;
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "on() argument 'callback' must be callable, got {}",
                type_name(&callback)
            )));
        }
        self.inner.callbacks.listeners.lock().push((name, callback.clone().unbind()));
        Ok(callback)
    }

    /// Registers ``callback()``, run first in every cleanup; returns callback.
    fn on_before_gc<'py>(&self, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "on_before_gc() argument 'callback' must be callable, got {}",
                type_name(&callback)
            )));
        }
        self.inner.callbacks.before_gc.lock().push(callback.clone().unbind());
        Ok(callback)
    }

    /// Runs the before-GC hooks, then (with ``enable_auto_cleanup``) releases the oldest
    /// resources until usage is below the warning threshold, then the gc_callback. Returns
    /// ``{"released_ids": [...], "freed_bytes": n}``: drop those resources.
    fn cleanup<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (result, err) = capture(|| self.inner.core.cleanup());
        let r = finish(py, result, None)?;
        self.inner.detach(py, r.released_ids.iter().copied());
        if let Some(e) = err {
            return Err(e);
        }
        let d = PyDict::new(py);
        d.set_item("released_ids", r.released_ids)?;
        d.set_item("freed_bytes", r.freed_bytes)?;
        Ok(d.into_any())
    }

    /// Stops the timer, forgets every resource and returns the final leak report; later
    /// calls raise ClosedError (a second dispose returns the same report).
    fn dispose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inner.detach_all(py);
        let report = py.detach(|| self.inner.core.dispose());
        json_to_py(py, &report)
    }

    /// The seed's ``debug({trackingEnabled, verbose})``: ``tracking_enabled`` switches tracking
    /// on or off from now on; ``verbose`` logs every track, release, collection and event to
    /// ``logging.getLogger("memwarden.tracker")`` (INFO) and prints the leak report at exit.
    /// Returns the settings now in force.
    #[pyo3(signature = (tracking_enabled = None, verbose = None, **kwargs))]
    fn debug<'py>(
        &self,
        py: Python<'py>,
        tracking_enabled: Option<bool>,
        verbose: Option<bool>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut tracking_enabled = tracking_enabled;
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                let k: String = k.extract()?;
                let b = v.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
                    PyTypeError::new_err(format!("debug() argument '{k}' must be True or False, got {}", type_name(&v)))
                })?;
                match k.as_str() {
                    "trackingEnabled" => tracking_enabled = Some(b),
                    _ => {
                        return Err(PyTypeError::new_err(format!(
                            "debug() got an unexpected keyword argument '{k}' (expected tracking_enabled / \
                             trackingEnabled, verbose)"
                        )));
                    }
                }
            }
        }
        if let Some(t) = tracking_enabled {
            self.inner.core.set_tracking_enabled(t);
        }
        if let Some(v) = verbose {
            self.inner.callbacks.verbose.store(v, Ordering::Relaxed);
        }
        let d = PyDict::new(py);
        d.set_item("tracking_enabled", self.inner.core.tracking_enabled())?;
        d.set_item("verbose", self.inner.callbacks.verbose.load(Ordering::Relaxed))?;
        Ok(d)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.dispose(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let s = self.inner.core.get_memory_stats();
        format!(
            "<memwarden.ResourceTracker active={} totalAllocated={} maxMemoryUsage={} level={}>",
            s["activeResources"], s["totalAllocated"], s["maxMemoryUsage"], s["level"]
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.inner.callbacks.traverse(&visit)
    }

    fn __clear__(&self) {
        let released = self.inner.callbacks.clear();
        drop(released);
    }
}

impl Drop for PyResourceTracker {
    fn drop(&mut self) {
        Python::attach(|py| {
            self.inner.detach_all(py);
            if self.inner.has_timer() {
                // The timer thread may be waiting for the GIL to run a hook: join it without.
                py.detach(|| self.inner.core.dispose());
            }
        });
    }
}
