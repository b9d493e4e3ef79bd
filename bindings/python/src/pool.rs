//! `memwarden.MemoryPool` over `memwarden_core::Pool`.
//!
//! The core pools [`ObjPtr`]s: the addresses of the Python objects, which are their
//! identities (`release(obj)` finds the object itself). The references are owned by the
//! binding's [`Objects`] table, one per live pooled object, idle or in use, so that:
//! - an object the caller drops without releasing it stays alive (its address is not
//!   reused by another object while the pool still counts it as in use);
//! - the garbage collector sees every pooled object through `__traverse__`, so an object
//!   that refers back to its pool (a factory given the pool) does not make an uncollectable
//!   cycle;
//! - handing an object out is one incref, with no lookup.
//!
//! The fast path of `acquire` runs holding the GIL (`try_acquire`); only a wait for a free
//! object releases it. Hooks (factory, reset, validate, destroy, on_leak) take the GIL
//! themselves, so they also run on the pool's maintenance thread.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType, PyWeakrefReference};
use pyo3::{PyTraverseError, ffi, intern};
use serde_json::{Map, Value};

use memwarden_core::pool::LeakReport;
use memwarden_core::{self as mw, Cleanup, CleanupLevel, ErrorKind, Pool, PoolConfig};

use crate::convert::{config_entries, py_to_json_for, to_py, type_name};
use crate::errors::{capture, config_error, finish, invalid_argument, report, to_pyerr};

/// Keys only the Python binding knows; they never reach the core.
const BINDING_KEYS: [&str; 5] = ["factory", "reset", "validate", "destroy", "on_leak"];

/// The address of a pooled Python object. Borrowed: the [`Objects`] table owns the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ObjPtr(usize);

impl ObjPtr {
    fn of(obj: &Bound<'_, PyAny>) -> Self {
        ObjPtr(obj.as_ptr() as usize)
    }
}

/// One strong reference per live pooled object, keyed by address. Only touched with the
/// GIL held; a reference is dropped only after the lock is released (a decref may run any
/// Python code, which may call back into the pool).
#[derive(Default)]
struct Objects {
    map: Mutex<HashMap<usize, Py<PyAny>>>,
}

impl Objects {
    fn get(&self, py: Python<'_>, p: ObjPtr) -> Option<Py<PyAny>> {
        self.map.lock().get(&p.0).map(|o| o.clone_ref(py))
    }

    fn remove(&self, p: ObjPtr) -> Option<Py<PyAny>> {
        self.map.lock().remove(&p.0)
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(map) = self.map.try_lock() {
            for o in map.values() {
                visit.call(o)?;
            }
        }
        Ok(())
    }

    fn clear(&self) -> Vec<Py<PyAny>> {
        self.map.lock().drain().map(|(_, o)| o).collect()
    }
}

/// The pool's Python callables, in fixed slots. The core's closures capture this store,
/// never a callable, so `__traverse__` shows them all and `__clear__` can drop them.
const FACTORY: usize = 0;
const RESET: usize = 1;
const VALIDATE: usize = 2;
const DESTROY: usize = 3;
const ON_LEAK: usize = 4;
/// A weak reference to the pool itself, for a factory that takes the pool.
const SELF_REF: usize = 5;

#[derive(Default)]
struct Hooks {
    slots: Mutex<[Option<Py<PyAny>>; 6]>,
}

impl Hooks {
    fn get(&self, py: Python<'_>, slot: usize) -> Option<Py<PyAny>> {
        self.slots.lock()[slot].as_ref().map(|f| f.clone_ref(py))
    }

    fn set(&self, slot: usize, f: Py<PyAny>) -> Option<Py<PyAny>> {
        self.slots.lock()[slot].replace(f)
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
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

/// A Python exception from a hook, for the core: kept for the call running on this thread
/// (re-raised as it was) or reported as unraisable, and described to the core.
fn hook_error(py: Python<'_>, e: PyErr) -> mw::Error {
    let msg = e.to_string();
    report(py, e);
    mw::Error::callback(msg)
}

fn shutting_down() -> mw::Error {
    mw::Error::new(ErrorKind::Closed, "MemoryPool: the Python interpreter is shutting down")
}

fn cleared() -> mw::Error {
    mw::Error::new(ErrorKind::Closed, "MemoryPool is closed: it was cleared by the garbage collector")
}

fn make_factory(
    hooks: Arc<Hooks>,
    objects: Arc<Objects>,
    with_pool: bool,
) -> impl Fn() -> mw::Result<ObjPtr> + Send + Sync + 'static {
    move || {
        Python::try_attach(|py| {
            let Some(f) = hooks.get(py, FACTORY) else { return Err(cleared()) };
            let made = if with_pool {
                let pool = hooks
                    .get(py, SELF_REF)
                    .and_then(|w| w.bind(py).cast::<PyWeakrefReference>().ok().and_then(|w| w.upgrade()));
                match pool {
                    Some(pool) => f.bind(py).call1((pool,)),
                    None => return Err(cleared()),
                }
            } else {
                f.bind(py).call0()
            };
            let obj = made.map_err(|e| hook_error(py, e))?;
            if obj.is_none() {
                return Err(hook_error(
                    py,
                    PyTypeError::new_err("MemoryPool: factory returned None; it must return the new object to pool"),
                ));
            }
            let p = ObjPtr::of(&obj);
            let mut map = objects.map.lock();
            if map.contains_key(&p.0) {
                drop(map);
                return Err(mw::Error::invalid_argument(format!(
                    "MemoryPool: the factory returned an object that is already in the pool (a {}); it must \
                     create a new object each time",
                    type_name(&obj)
                )));
            }
            map.insert(p.0, obj.unbind());
            Ok(p)
        })
        .unwrap_or_else(|| Err(shutting_down()))
    }
}

fn make_reset(hooks: Arc<Hooks>, objects: Arc<Objects>) -> impl Fn(&mut ObjPtr) -> mw::Result<()> + Send + Sync {
    move |p: &mut ObjPtr| {
        Python::try_attach(|py| {
            let (Some(f), Some(obj)) = (hooks.get(py, RESET), objects.get(py, *p)) else { return Ok(()) };
            f.bind(py).call1((obj,)).map(drop).map_err(|e| hook_error(py, e))
        })
        .unwrap_or_else(|| Err(shutting_down()))
    }
}

fn make_validate(hooks: Arc<Hooks>, objects: Arc<Objects>) -> impl Fn(&ObjPtr) -> mw::Result<bool> + Send + Sync {
    move |p: &ObjPtr| {
        Python::try_attach(|py| {
            let (Some(f), Some(obj)) = (hooks.get(py, VALIDATE), objects.get(py, *p)) else { return Ok(false) };
            f.bind(py).call1((obj,)).and_then(|r| r.is_truthy()).map_err(|e| hook_error(py, e))
        })
        .unwrap_or_else(|| Err(shutting_down()))
    }
}

/// Forgets the object (drops the table's reference) after calling the user's destroy hook.
fn make_destroy(hooks: Arc<Hooks>, objects: Arc<Objects>) -> impl Fn(ObjPtr) + Send + Sync {
    move |p: ObjPtr| {
        let attached = Python::try_attach(|py| {
            let Some(obj) = objects.remove(p) else { return };
            if let Some(f) = hooks.get(py, DESTROY)
                && let Err(e) = f.bind(py).call1((obj.bind(py),))
            {
                report(py, e);
            }
            drop(obj);
        });
        if attached.is_none() {
            // No interpreter to decref with: keep the object alive rather than touch it.
            if let Some(obj) = objects.remove(p) {
                std::mem::forget(obj);
            }
        }
    }
}

fn make_on_leak(hooks: Arc<Hooks>) -> impl Fn(&LeakReport) + Send + Sync {
    move |leak: &LeakReport| {
        Python::try_attach(|py| {
            let Some(f) = hooks.get(py, ON_LEAK) else { return };
            let result = to_py(py, serde_json::to_value(leak)).and_then(|d| f.bind(py).call1((d,)));
            if let Err(e) = result {
                report(py, e);
            }
        });
    }
}

/// Whether the factory is called with no argument (false) or with the pool (true), decided
/// once from `inspect.signature`. No argument wins when both bind (`list`, `bytearray`); a
/// callable without a readable signature is called with none.
fn factory_takes_pool(f: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = f.py();
    let inspect = py.import(intern!(py, "inspect"))?;
    let sig = match inspect.call_method1(intern!(py, "signature"), (f,)) {
        Ok(sig) => sig,
        Err(e) if e.is_instance_of::<PyValueError>(py) || e.is_instance_of::<PyTypeError>(py) => return Ok(false),
        Err(e) => return Err(e),
    };
    if sig.call_method0(intern!(py, "bind")).is_ok() {
        return Ok(false);
    }
    if sig.call_method1(intern!(py, "bind"), (py.None(),)).is_ok() {
        return Ok(true);
    }
    Err(config_error(
        py,
        format!(
            "MemoryPool config: invalid value for 'factory': it must accept no argument or one (the pool), \
             but its signature is {}",
            sig.str()?
        ),
    ))
}

/// Where the caller acquired, for leak reports: the innermost frames of the Python stack
/// outside memwarden itself (a TypedMemoryPool's methods are skipped).
fn call_site(py: Python<'_>) -> PyResult<String> {
    let sys = py.import(intern!(py, "sys"))?;
    let mut frame = sys.call_method1(intern!(py, "_getframe"), (0,))?;
    loop {
        let module = frame.getattr(intern!(py, "f_globals"))?.get_item(intern!(py, "__name__")).ok();
        let ours = module
            .and_then(|m| m.extract::<String>().ok())
            .is_some_and(|m| m == "memwarden" || m.starts_with("memwarden."));
        let back = frame.getattr(intern!(py, "f_back"))?;
        if !ours || back.is_none() {
            break;
        }
        frame = back;
    }
    let traceback = py.import(intern!(py, "traceback"))?;
    let lines = traceback.call_method1(intern!(py, "format_stack"), (frame, 5))?;
    let text: String = PyString::new(py, "").call_method1(intern!(py, "join"), (lines,))?.extract()?;
    Ok(text.trim_end().to_owned())
}

fn parse_level(py: Python<'_>, level: &str) -> PyResult<CleanupLevel> {
    match level {
        "normal" => Ok(CleanupLevel::Normal),
        "emergency" => Ok(CleanupLevel::Emergency),
        other => Err(invalid_argument(py, format!("cleanup(): level must be 'normal' or 'emergency', got '{other}'"))),
    }
}

/// An object pool: `factory` creates objects, `acquire()` hands one out (the object itself),
/// `release(obj)` takes it back. Bounded by `max_size`, prefilled to `min_size`, with
/// reset on release, validation on acquire, idle/lifetime eviction and leak detection.
#[pyclass(name = "MemoryPool", module = "memwarden", frozen, weakref)]
pub struct PyMemoryPool {
    core: OnceLock<Pool<ObjPtr>>,
    hooks: Arc<Hooks>,
    objects: Arc<Objects>,
}

impl PyMemoryPool {
    fn core(&self) -> PyResult<&Pool<ObjPtr>> {
        self.core.get().ok_or_else(|| PyRuntimeError::new_err("MemoryPool.__init__() has not been called"))
    }

    /// The core pool, for a manager to trim.
    pub fn cleanup_handle(&self) -> PyResult<Arc<dyn Cleanup>> {
        Ok(Arc::new(self.core()?.clone()))
    }

    /// The caller's label, or with leak detection on and no label the Python call site.
    fn label(&self, py: Python<'_>, core: &Pool<ObjPtr>, label: Option<String>) -> PyResult<Option<String>> {
        match label {
            Some(l) => Ok(Some(l)),
            None if core.config().leak_detection_threshold > 0.0 => call_site(py).map(Some),
            None => Ok(None),
        }
    }

    fn acquire_labeled<'py>(&self, py: Python<'py>, label: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        let core = self.core()?;
        // Fast path, holding the GIL: an idle object, or room to create one.
        let (result, pending) = capture(|| core.try_acquire(label));
        let lease = match result {
            Ok(Some(lease)) => {
                if let Some(e) = pending {
                    // A destroy hook failed on the way (a stale object); the caller still
                    // gets an object, so the exception goes to sys.unraisablehook.
                    e.write_unraisable(py, None);
                }
                lease
            }
            Ok(None) => {
                if let Some(e) = pending {
                    e.write_unraisable(py, None);
                }
                // Wait for a free object with the GIL released.
                let (result, pending) = capture(|| py.detach(|| core.acquire_labeled(label)));
                match result {
                    Ok(lease) => {
                        if let Some(e) = pending {
                            e.write_unraisable(py, None);
                        }
                        lease
                    }
                    Err(e) => return Err(to_pyerr(py, e, pending)),
                }
            }
            Err(e) => return Err(to_pyerr(py, e, pending)),
        };
        // SAFETY: the object is in use, so the table still holds its reference.
        Ok(unsafe { Bound::from_borrowed_ptr(py, lease.value.0 as *mut ffi::PyObject) })
    }

    fn release_obj(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let core = self.core()?;
        let (result, pending) = capture(|| core.release_value(ObjPtr::of(obj)));
        finish(py, result, pending)
    }
}

#[pymethods]
impl PyMemoryPool {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        PyMemoryPool { core: OnceLock::new(), hooks: Arc::default(), objects: Arc::default() }
    }

    /// `MemoryPool(config=None, /, **kwargs)`: the core's keys plus `factory` (required),
    /// `reset`, `validate`, `destroy` and `on_leak`. Creates the first `min_size` objects.
    #[pyo3(signature = (config = None, /, **kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        config: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.core.get().is_some() {
            return Err(PyRuntimeError::new_err("MemoryPool.__init__() may only be called once"));
        }
        let mut known: Vec<&str> = PoolConfig::KEYS.to_vec();
        known.extend(BINDING_KEYS);
        let entries = config_entries(py, "MemoryPool", config, kwargs, &known)?;

        let mut core_cfg = Map::new();
        let mut callables: [Option<Bound<'_, PyAny>>; 5] = Default::default();
        for (k, v) in entries {
            if let Some(i) = BINDING_KEYS.iter().position(|b| *b == k) {
                if v.is_none() {
                    continue;
                }
                if !v.is_callable() {
                    return Err(config_error(
                        py,
                        format!(
                            "MemoryPool config: invalid value for '{k}': expected a callable, got {}",
                            type_name(&v)
                        ),
                    ));
                }
                callables[i] = Some(v);
            } else {
                let value = py_to_json_for("MemoryPool", &k, &v)?;
                core_cfg.insert(k, value);
            }
        }
        let cfg = PoolConfig::from_json(&Value::Object(core_cfg)).map_err(|e| to_pyerr(py, e, None))?;
        let [factory, reset, validate, destroy, on_leak] = callables;
        let Some(factory) = factory else {
            return Err(config_error(
                py,
                "MemoryPool config: 'factory' is required: a callable that returns a new object (called with no \
                 argument, or with the pool)",
            ));
        };
        let with_pool = factory_takes_pool(&factory)?;

        let hooks = &this.hooks;
        hooks.set(FACTORY, factory.unbind());
        if with_pool {
            hooks.set(SELF_REF, PyWeakrefReference::new(slf.as_any())?.into_any().unbind());
        }
        let objects = &this.objects;
        let mut builder = Pool::builder(cfg, make_factory(hooks.clone(), objects.clone(), with_pool))
            .identity(|p: &ObjPtr| p.0 as u64)
            .background_hooks(true)
            .destroy(make_destroy(hooks.clone(), objects.clone()));
        if let Some(f) = reset {
            hooks.set(RESET, f.unbind());
            builder = builder.reset(make_reset(hooks.clone(), objects.clone()));
        }
        if let Some(f) = validate {
            hooks.set(VALIDATE, f.unbind());
            builder = builder.validate(make_validate(hooks.clone(), objects.clone()));
        }
        if let Some(f) = destroy {
            hooks.set(DESTROY, f.unbind());
        }
        if let Some(f) = on_leak {
            hooks.set(ON_LEAK, f.unbind());
            builder = builder.on_leak(make_on_leak(hooks.clone()));
        }
        let (built, pending) = capture(|| builder.build());
        let pool = finish(py, built, pending)?;
        if this.core.set(pool).is_err() {
            return Err(PyRuntimeError::new_err("MemoryPool.__init__() may only be called once"));
        }
        Ok(())
    }

    /// Takes an object: an idle one, a new one while fewer than `max_size` exist, else waits
    /// (with the GIL released) up to `acquire_timeout` for one to be released.
    #[pyo3(signature = (label = None))]
    fn acquire<'py>(&self, py: Python<'py>, label: Option<String>) -> PyResult<Bound<'py, PyAny>> {
        let core = self.core()?;
        if label.is_none() && core.config().leak_detection_threshold <= 0.0 {
            return self.acquire_labeled(py, None);
        }
        let label = self.label(py, core, label)?;
        self.acquire_labeled(py, label.as_deref())
    }

    /// Returns an object to the pool (the reset hook runs first).
    fn release(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.release_obj(py, obj)
    }

    /// `with pool.use() as obj:` acquires on entry and releases on exit, also on an exception.
    #[pyo3(name = "use", signature = (label = None))]
    fn use_(slf: &Bound<'_, Self>, label: Option<String>) -> PyResult<PoolUse> {
        let py = slf.py();
        let this = slf.get();
        let label = this.label(py, this.core()?, label)?;
        Ok(PoolUse { pool: slf.clone().unbind(), label, obj: None })
    }

    /// The core's statistics as a dict.
    fn get_statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, serde_json::to_value(self.core()?.statistics()))
    }

    /// No new acquires; idle objects destroyed now, in-use ones when they are released.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let core = self.core()?;
        let ((), pending) = capture(|| core.close());
        finish(py, Ok(()), pending)
    }

    /// Evicts idle objects past max_idle_time / max_lifetime, reports leaks, refills to
    /// min_size. Runs by itself every second with auto_cleanup.
    fn maintain(&self, py: Python<'_>) -> PyResult<()> {
        let core = self.core()?;
        let (result, pending) = capture(|| core.maintain());
        finish(py, result, pending)
    }

    /// Destroys idle objects down to `keep`; returns how many went.
    fn trim(&self, py: Python<'_>, keep: i64) -> PyResult<usize> {
        let core = self.core()?;
        let keep = usize::try_from(keep).map_err(|_| {
            invalid_argument(py, format!("trim(): 'keep' must be a number of objects >= 0, got {keep}"))
        })?;
        let (n, pending) = capture(|| core.trim(keep));
        finish(py, Ok(n), pending)
    }

    /// What a manager's cleanup run does: "normal" trims idle objects to min_size,
    /// "emergency" destroys every idle object.
    #[pyo3(signature = (level = "normal"))]
    fn cleanup(&self, py: Python<'_>, level: &str) -> PyResult<()> {
        let core = self.core()?;
        let level = parse_level(py, level)?;
        let (result, pending) = capture(|| core.cleanup(level));
        finish(py, result, pending)
    }

    #[getter]
    fn closed(&self) -> PyResult<bool> {
        Ok(self.core()?.is_closed())
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        match self.core.get() {
            None => "<memwarden.MemoryPool (not initialised)>".into(),
            Some(core) => {
                let s = core.statistics();
                format!(
                    "<memwarden.MemoryPool size={} active={} idle={} max_size={}{}>",
                    s.size,
                    s.active,
                    s.idle,
                    s.max_size,
                    if s.closed { " closed" } else { "" }
                )
            }
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.hooks.traverse(&visit)?;
        self.objects.traverse(&visit)
    }

    fn __clear__(&self) {
        // Callables first, so that closing calls no user code; then the core forgets the
        // idle objects; then the references to every object go.
        let hooks = self.hooks.clear();
        if let Some(core) = self.core.get() {
            core.close();
        }
        let objects = self.objects.clear();
        drop(hooks);
        drop(objects);
    }
}

impl Drop for PyMemoryPool {
    fn drop(&mut self) {
        // The pool object is gone, so nobody can acquire any more: destroy the idle objects
        // now (with the destroy hook). A manager may still hold the (closed) core.
        if let Some(core) = self.core.get() {
            core.close();
        }
    }
}

/// `pool.use()`: a context manager that acquires on entry and releases on exit.
#[pyclass(name = "PoolUse", module = "memwarden")]
pub struct PoolUse {
    pool: Py<PyMemoryPool>,
    label: Option<String>,
    obj: Option<Py<PyAny>>,
}

#[pymethods]
impl PoolUse {
    fn __enter__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.obj.is_some() {
            return Err(PyRuntimeError::new_err("pool.use() is already entered; call use() again for another object"));
        }
        let obj = self.pool.get().acquire_labeled(py, self.label.as_deref())?;
        self.obj = Some(obj.clone().unbind());
        Ok(obj)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        if let Some(obj) = self.obj.take() {
            self.pool.get().release_obj(py, obj.bind(py))?;
        }
        Ok(false)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.pool)?;
        if let Some(o) = &self.obj {
            visit.call(o)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.obj = None;
    }
}

/// The cleanup a manager registers for `obj` when it is a pool (a `MemoryPool`, or a
/// `TypedMemoryPool` through its `pool` property); `None` for anything else.
pub fn as_pool_cleanup(obj: &Bound<'_, PyAny>) -> PyResult<Option<Arc<dyn Cleanup>>> {
    if let Ok(pool) = obj.cast::<PyMemoryPool>() {
        return pool.get().cleanup_handle().map(Some);
    }
    if obj.is_callable() {
        return Ok(None);
    }
    let py = obj.py();
    let typed = py.import(intern!(py, "memwarden._typed_pool"))?.getattr(intern!(py, "TypedMemoryPool"))?;
    if obj.is_instance(typed.cast::<PyType>()?)? {
        let inner = obj.getattr(intern!(py, "pool"))?;
        if let Ok(pool) = inner.cast::<PyMemoryPool>() {
            return pool.get().cleanup_handle().map(Some);
        }
    }
    Ok(None)
}
