//! `memwarden.LazyContainer` over `memwarden_core::Container<Arc<Py<PyAny>>>`.
//!
//! The core holds the instances (`Arc<Py<PyAny>>`: a clone is an Arc bump, the caller gets a
//! `clone_ref`). Factories and dispose hooks live in a [`Store`] of slots that the core's
//! closures capture by index, so the garbage collector sees every callable through the
//! container's `__traverse__`. A factory that takes the container gets it through a weak
//! reference, so a container whose factories refer to it is collectable.
//!
//! The GIL and the core's "build once" wait: a `get` holds the GIL (the fast path: a cached
//! instance is one registry lookup and an incref), but a thread that waits for another
//! thread's build must not hold it, or the builder (which needs the GIL to run its Python
//! factory) never finishes. [`BUSY`] counts the threads that are building a service or are
//! in a core call with the GIL released; a `get` runs attached only while no other thread is
//! counted there. A thread becomes counted while it holds the GIL (an attached build counts
//! itself before its factory can release the GIL), so no other thread can be building
//! uncounted when the check passes.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::c_char;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyList, PyString, PyTuple, PyType, PyWeakrefReference};
use pyo3::{PyTraverseError, intern};
use serde_json::{Map, Value};

use memwarden_core::{self as mw, Cleanup, Container, ContainerConfig, ErrorKind, Lifetime, Scope};

use crate::convert::{config_entries, json_to_py, py_to_json_for, type_name};
use crate::errors::{capture, finish, report, run_attached, stash, to_pyerr};

type Inst = Arc<Py<PyAny>>;

// ---- the GIL and the core's waits -------------------------------------------

/// Threads building a service or inside a detached core call (see the module docs).
static BUSY: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's share of [`BUSY`].
    static MINE: Cell<usize> = const { Cell::new(0) };
}

struct Busy;

impl Busy {
    fn enter() -> Self {
        BUSY.fetch_add(1, Ordering::SeqCst);
        MINE.with(|m| m.set(m.get() + 1));
        Busy
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        MINE.with(|m| m.set(m.get() - 1));
        BUSY.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs a core call that may build services: holding the GIL when no other thread is
/// building (the fast path), else with the GIL released, so that waiting for another
/// thread's build cannot block that build. A factory's own exception is re-raised.
fn resolve<R: Send>(py: Python<'_>, f: impl FnOnce() -> mw::Result<R> + Send) -> PyResult<R> {
    if BUSY.load(Ordering::SeqCst) == MINE.with(Cell::get) {
        return run_attached(py, f);
    }
    let _busy = Busy::enter();
    let (result, pending) = capture(|| py.detach(f));
    finish(py, result, pending)
}

// ---- callables ----------------------------------------------------------------

/// The container's Python callables. Slot 0 is a weak reference to the container itself.
#[derive(Default)]
struct Store {
    slots: Mutex<Vec<Option<Py<PyAny>>>>,
}

const SELF_REF: usize = 0;

impl Store {
    fn add(&self, f: Py<PyAny>) -> usize {
        let mut slots = self.slots.lock();
        slots.push(Some(f));
        slots.len() - 1
    }

    fn get(&self, py: Python<'_>, slot: usize) -> Option<Py<PyAny>> {
        self.slots.lock().get(slot).and_then(|f| f.as_ref().map(|f| f.clone_ref(py)))
    }

    fn take(&self, slot: usize) -> Option<Py<PyAny>> {
        self.slots.lock().get_mut(slot).and_then(Option::take)
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

    /// The container object, while it lives.
    fn container<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyLazyContainer>> {
        let w = self.get(py, SELF_REF)?;
        let obj = w.bind(py).cast::<PyWeakrefReference>().ok()?.upgrade()?;
        obj.cast_into::<PyLazyContainer>().ok()
    }
}

fn hook_error(py: Python<'_>, e: PyErr) -> mw::Error {
    let msg = e.to_string();
    report(py, e);
    mw::Error::callback(msg)
}

/// A factory's exception: kept for the `get` running on this thread (factories only run
/// inside one), which re-raises it as it was.
fn factory_error(e: PyErr) -> mw::Error {
    let msg = e.to_string();
    stash(e);
    mw::Error::callback(msg)
}

fn gone() -> mw::Error {
    mw::Error::new(ErrorKind::Closed, "LazyContainer is gone: it was cleared by the garbage collector")
}

fn shutting_down() -> mw::Error {
    mw::Error::new(ErrorKind::Closed, "LazyContainer: the Python interpreter is shutting down")
}

/// One constructor parameter of an auto-wired class.
struct Param {
    name: Py<PyString>,
    name_str: String,
    /// `__name__` of its type hint, when the hint is a class.
    hint: Option<String>,
    has_default: bool,
    positional_only: bool,
}

/// How a factory is called.
enum Call {
    NoArg,
    WithContainer,
    AutoWire(Vec<Param>),
}

/// The constructor parameters of `cls`, for auto-wiring. A class without a readable
/// signature has none.
fn wire_plan(cls: &Bound<'_, PyAny>) -> PyResult<Vec<Param>> {
    let py = cls.py();
    let inspect = py.import(intern!(py, "inspect"))?;
    let sig = match inspect.call_method1(intern!(py, "signature"), (cls,)) {
        Ok(sig) => sig,
        Err(e) if e.is_instance_of::<PyValueError>(py) || e.is_instance_of::<PyTypeError>(py) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    // Resolved hints (string annotations too); the raw annotation when that fails.
    let hints = py
        .import(intern!(py, "typing"))?
        .call_method1(intern!(py, "get_type_hints"), (cls.getattr(intern!(py, "__init__"))?,))
        .ok();
    let empty = inspect.getattr(intern!(py, "Parameter"))?.getattr(intern!(py, "empty"))?;
    let mut out = Vec::new();
    for p in sig.getattr(intern!(py, "parameters"))?.call_method0(intern!(py, "values"))?.try_iter()? {
        let p = p?;
        let kind: String = p.getattr(intern!(py, "kind"))?.getattr(intern!(py, "name"))?.extract()?;
        if kind == "VAR_POSITIONAL" || kind == "VAR_KEYWORD" {
            continue;
        }
        let name = p.getattr(intern!(py, "name"))?.cast_into::<PyString>()?;
        let mut hint = hints.as_ref().and_then(|h| h.get_item(&name).ok());
        if hint.is_none() {
            let a = p.getattr(intern!(py, "annotation"))?;
            if !a.is(&empty) {
                hint = Some(a);
            }
        }
        let hint = match hint {
            Some(h) if h.is_instance_of::<PyType>() => Some(h.getattr(intern!(py, "__name__"))?.extract::<String>()?),
            _ => None,
        };
        out.push(Param {
            name_str: name.to_cow()?.into_owned(),
            name: name.unbind(),
            hint,
            has_default: !p.getattr(intern!(py, "default"))?.is(&empty),
            positional_only: kind == "POSITIONAL_ONLY",
        });
    }
    Ok(out)
}

/// Builds `cls` with its parameters resolved from the container.
fn auto_wire<'py>(
    c: &Bound<'py, PyLazyContainer>,
    cls: &Bound<'py, PyAny>,
    params: &[Param],
    service: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let py = c.py();
    let this = c.get();
    let mut args = Vec::new();
    let kwargs = PyDict::new(py);
    for p in params {
        let source = if this.core.has(&p.name_str) {
            Some(p.name_str.as_str())
        } else {
            p.hint.as_deref().filter(|h| this.core.has(h))
        };
        match source {
            Some(s) => {
                let v = this.get_obj(py, s)?;
                if p.positional_only {
                    args.push(v);
                } else {
                    kwargs.set_item(p.name.bind(py), v)?;
                }
            }
            None if p.has_default => {}
            None => {
                let hint = match &p.hint {
                    Some(h) => format!(", its type hint names no registered service ('{h}')"),
                    None => ", it has no type hint naming one".into(),
                };
                return Err(to_pyerr(
                    py,
                    mw::Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "cannot auto-wire service '{service}': parameter '{}' of {}() is not a registered \
                             service{hint}, and it has no default",
                            p.name_str,
                            cls.getattr(intern!(py, "__qualname__")).map(|n| n.to_string()).unwrap_or_default()
                        ),
                    ),
                    None,
                ));
            }
        }
    }
    cls.call(PyTuple::new(py, args)?, Some(&kwargs))
}

fn make_factory(store: Arc<Store>, slot: usize, call: Call, name: String) -> mw::container::Factory<Inst> {
    Arc::new(move || {
        Python::try_attach(|py| {
            // Counted while holding the GIL, before the factory can release it.
            let _busy = Busy::enter();
            let Some(f) = store.get(py, slot) else { return Err(gone()) };
            let f = f.bind(py);
            let made = match &call {
                Call::NoArg => f.call0(),
                Call::WithContainer => match store.container(py) {
                    Some(c) => f.call1((c,)),
                    None => return Err(gone()),
                },
                Call::AutoWire(params) => match store.container(py) {
                    Some(c) => auto_wire(&c, f, params, &name),
                    None => return Err(gone()),
                },
            };
            let obj = made.map_err(factory_error)?;
            if obj.is_none() {
                return Err(factory_error(PyTypeError::new_err(format!(
                    "LazyContainer: the factory of service '{name}' returned None; it must return the instance"
                ))));
            }
            Ok(Arc::new(obj.unbind()))
        })
        .unwrap_or_else(|| Err(shutting_down()))
    })
}

fn make_teardown(store: Arc<Store>, slot: usize) -> mw::container::Teardown<Inst> {
    Arc::new(move |obj: &Inst| {
        Python::try_attach(|py| {
            let Some(f) = store.get(py, slot) else { return Ok(()) };
            f.bind(py).call1((obj.bind(py),)).map(drop).map_err(|e| hook_error(py, e))
        })
        .unwrap_or(Ok(()))
    })
}

/// Whether a (non-class) factory takes the container, decided once from its signature: no
/// argument wins when both bind; a callable without a readable signature gets none.
fn takes_container(f: &Bound<'_, PyAny>, name: &str) -> PyResult<bool> {
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
    Err(PyTypeError::new_err(format!(
        "the factory of service '{name}' must accept no argument or one (the container), but its signature is {}",
        sig.str()?
    )))
}

fn out<'py>(py: Python<'py>, v: Inst) -> Bound<'py, PyAny> {
    v.clone_ref(py).into_bound(py)
}

// ---- the container ------------------------------------------------------------

/// Lazily created services: `lazy`, `singleton`, transient `factory` and `scoped`, with
/// aliases, tags, cycle detection, disposal in reverse creation order and statistics.
#[pyclass(name = "LazyContainer", module = "memwarden", frozen, weakref)]
pub struct PyLazyContainer {
    core: Container<Inst>,
    store: Arc<Store>,
    /// Service name -> the slots of its factory and dispose hook, so that replacing a
    /// service lets its callables go.
    service_slots: Mutex<HashMap<String, (usize, Option<usize>)>>,
    /// `get`'s memo of created singletons by name (exact `str` keys only): a singleton never
    /// changes once created, so this only forgets on replacement and on `dispose`. Lazy,
    /// scoped and transient services always go to the core.
    hot: Py<PyDict>,
}

unsafe extern "C" {
    /// In CPython's exported symbols since 3.3, in the limited API only from 3.10: the UTF-8
    /// of a str without a copy (cached in the object; an ASCII str is its own UTF-8).
    /// `PyUnicode_AsUTF8String`, which the 3.9 limited API offers instead, allocates a bytes
    /// object on every call, which the fast path of `get` cannot afford.
    fn PyUnicode_AsUTF8AndSize(unicode: *mut pyo3::ffi::PyObject, size: *mut pyo3::ffi::Py_ssize_t) -> *const c_char;
}

/// The text of a `str` argument, borrowed from the object, without a copy.
fn arg_str<'a>(obj: &'a Bound<'_, PyAny>, func: &str) -> PyResult<&'a str> {
    if !obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!("{func}() argument 'name' must be str, got {}", type_name(obj))));
    }
    let mut len: pyo3::ffi::Py_ssize_t = 0;
    // SAFETY: `obj` is a str; the UTF-8 buffer lives as long as the object, which `'a` borrows.
    let p = unsafe { PyUnicode_AsUTF8AndSize(obj.as_ptr(), &mut len) };
    if p.is_null() {
        return Err(PyErr::fetch(obj.py()));
    }
    // SAFETY: CPython hands out valid UTF-8 of `len` bytes.
    Ok(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(p.cast::<u8>(), len as usize)) })
}

impl PyLazyContainer {
    fn get_obj<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        // A created singleton: borrowed from the core, one incref, no factory can run.
        if let Some(obj) = self.core.peek_singleton(name, |v| v.clone_ref(py).into_bound(py)) {
            return Ok(obj);
        }
        let core = &self.core;
        resolve(py, || core.get(name)).map(|v| out(py, v))
    }

    fn register(
        slf: &Bound<'_, Self>,
        lifetime: Lifetime,
        name: &str,
        factory: &Bound<'_, PyAny>,
        dispose: Option<&Bound<'_, PyAny>>,
        replace: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let what = lifetime_method(lifetime);
        if !factory.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "{what}() argument 'factory' must be callable, got {}",
                type_name(factory)
            )));
        }
        let dispose = dispose.filter(|d| !d.is_none());
        if let Some(d) = dispose
            && !d.is_callable()
        {
            return Err(PyTypeError::new_err(format!(
                "{what}() argument 'dispose' must be callable, got {}",
                type_name(d)
            )));
        }
        let call = if factory.is_instance_of::<PyType>() {
            if this.core.config().auto_wire { Call::AutoWire(wire_plan(factory)?) } else { Call::NoArg }
        } else if takes_container(factory, name)? {
            Call::WithContainer
        } else {
            Call::NoArg
        };
        let f_slot = this.store.add(factory.clone().unbind());
        let d_slot = dispose.map(|d| this.store.add(d.clone().unbind()));
        let teardown = d_slot.map(|s| make_teardown(this.store.clone(), s));
        let released = {
            let mut slots = this.service_slots.lock();
            match this.core.register(
                name,
                lifetime,
                make_factory(this.store.clone(), f_slot, call, name.to_owned()),
                teardown,
                replace,
            ) {
                Ok(()) => slots.insert(name.to_owned(), (f_slot, d_slot)),
                Err(e) => {
                    drop(slots);
                    let a = this.store.take(f_slot);
                    let b = d_slot.and_then(|s| this.store.take(s));
                    drop((a, b));
                    return Err(to_pyerr(py, e, None));
                }
            }
        };
        // The old service's callables (its cached instance is gone with it).
        if let Some((f, d)) = released {
            this.hot.bind(py).clear();
            let a = this.store.take(f);
            let b = d.and_then(|s| this.store.take(s));
            drop((a, b));
        }
        Ok(())
    }

    /// `register` now, or (factory omitted) a decorator that registers what it decorates.
    fn register_or_decorate<'py>(
        slf: &Bound<'py, Self>,
        lifetime: Lifetime,
        name: String,
        factory: Option<&Bound<'py, PyAny>>,
        dispose: Option<&Bound<'py, PyAny>>,
        replace: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        if let Some(f) = factory.filter(|f| !f.is_none()) {
            Self::register(slf, lifetime, &name, f, dispose, replace)?;
            return Ok(f.clone());
        }
        let container = slf.clone().unbind();
        let dispose = dispose.map(|d| d.clone().unbind());
        let deco = move |args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>| -> PyResult<Py<PyAny>> {
            let py = args.py();
            if args.len() != 1 || kwargs.is_some_and(|k| !k.is_empty()) {
                return Err(PyTypeError::new_err(format!(
                    "@{}('{name}') decorates one callable",
                    lifetime_method(lifetime)
                )));
            }
            let f = args.get_item(0)?;
            let c = container.bind(py);
            Self::register(c, lifetime, &name, &f, dispose.as_ref().map(|d| d.bind(py)), replace)?;
            Ok(f.unbind())
        };
        Ok(PyCFunction::new_closure(py, Some(c"register"), None, deco)?.into_any())
    }
}

fn lifetime_method(l: Lifetime) -> &'static str {
    match l {
        Lifetime::Lazy => "lazy",
        Lifetime::Singleton => "singleton",
        Lifetime::Transient => "factory",
        Lifetime::Scoped => "scoped",
    }
}

#[pymethods]
impl PyLazyContainer {
    #[new]
    #[pyo3(signature = (config = None, /, **kwargs))]
    fn new(py: Python<'_>, config: Option<&Bound<'_, PyAny>>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let entries = config_entries(py, "LazyContainer", config, kwargs, ContainerConfig::KEYS)?;
        let mut cfg = Map::new();
        for (k, v) in entries {
            let value = py_to_json_for("LazyContainer", &k, &v)?;
            cfg.insert(k, value);
        }
        let core = Container::from_json(&Value::Object(cfg)).map_err(|e| to_pyerr(py, e, None))?;
        let store = Store::default();
        store.slots.lock().push(None); // SELF_REF, set once the object exists.
        Ok(PyLazyContainer {
            core,
            store: Arc::new(store),
            service_slots: Mutex::new(HashMap::new()),
            hot: PyDict::new(py).unbind(),
        })
    }

    /// A lazy service: created on first `get`, cached (with `cache_instances`).
    #[pyo3(signature = (name, factory = None, *, dispose = None, r#override = false))]
    fn lazy<'py>(
        slf: &Bound<'py, Self>,
        name: String,
        factory: Option<&Bound<'py, PyAny>>,
        dispose: Option<&Bound<'py, PyAny>>,
        r#override: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        ensure_self_ref(slf)?;
        Self::register_or_decorate(slf, Lifetime::Lazy, name, factory, dispose, r#override)
    }

    /// A singleton: created on first `get`, exactly once, always cached.
    #[pyo3(signature = (name, factory = None, *, dispose = None, r#override = false))]
    fn singleton<'py>(
        slf: &Bound<'py, Self>,
        name: String,
        factory: Option<&Bound<'py, PyAny>>,
        dispose: Option<&Bound<'py, PyAny>>,
        r#override: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        ensure_self_ref(slf)?;
        Self::register_or_decorate(slf, Lifetime::Singleton, name, factory, dispose, r#override)
    }

    /// A transient service: a new instance on every `get`.
    #[pyo3(signature = (name, factory = None, *, dispose = None, r#override = false))]
    fn factory<'py>(
        slf: &Bound<'py, Self>,
        name: String,
        factory: Option<&Bound<'py, PyAny>>,
        dispose: Option<&Bound<'py, PyAny>>,
        r#override: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        ensure_self_ref(slf)?;
        Self::register_or_decorate(slf, Lifetime::Transient, name, factory, dispose, r#override)
    }

    /// A scoped service: one instance per scope (`create_scope()`).
    #[pyo3(signature = (name, factory = None, *, dispose = None, r#override = false))]
    fn scoped<'py>(
        slf: &Bound<'py, Self>,
        name: String,
        factory: Option<&Bound<'py, PyAny>>,
        dispose: Option<&Bound<'py, PyAny>>,
        r#override: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        ensure_self_ref(slf)?;
        Self::register_or_decorate(slf, Lifetime::Scoped, name, factory, dispose, r#override)
    }

    /// Whether `name` (or an alias of it) is registered.
    fn has(&self, name: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.core.has(arg_str(name, "has")?))
    }

    fn __contains__(&self, name: &Bound<'_, PyAny>) -> PyResult<bool> {
        if name.is_instance_of::<PyString>() { Ok(self.core.has(arg_str(name, "__contains__")?)) } else { Ok(false) }
    }

    /// `get(alias)` resolves `name`.
    fn alias(&self, py: Python<'_>, alias: &str, name: &str) -> PyResult<()> {
        self.core.alias(alias, name).map_err(|e| to_pyerr(py, e, None))
    }

    /// Adds tags (a str or a list of str) to a registered service.
    fn tag(&self, py: Python<'_>, name: &str, tags: &Bound<'_, PyAny>) -> PyResult<()> {
        let tags: Vec<String> = if let Ok(s) = tags.cast::<PyString>() {
            vec![s.to_cow()?.into_owned()]
        } else {
            tags.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "tag() argument 'tags' must be a str or a list of str, got {}",
                    type_name(tags)
                ))
            })?
        };
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        self.core.tag(name, &refs).map_err(|e| to_pyerr(py, e, None))
    }

    /// The instances of every service tagged `tag`, in registration order.
    fn get_by_tag<'py>(&self, py: Python<'py>, tag: &str) -> PyResult<Bound<'py, PyList>> {
        let core = &self.core;
        let items = resolve(py, || core.get_by_tag(tag))?;
        PyList::new(py, items.into_iter().map(|v| out(py, v)))
    }

    /// Registered service names, in registration order.
    fn names(&self) -> Vec<String> {
        self.core.names()
    }

    /// A new scope for `scoped` services; `with container.create_scope() as scope:`.
    fn create_scope(slf: &Bound<'_, Self>) -> PyResult<PyScope> {
        let py = slf.py();
        let scope = slf.get().core.create_scope().map_err(|e| to_pyerr(py, e, None))?;
        Ok(PyScope { core: scope, container: slf.clone().unbind() })
    }

    /// Disposes open scopes, then runs the dispose hooks of every cached instance in reverse
    /// creation order. Later calls raise ClosedError. Idempotent.
    fn dispose(&self, py: Python<'_>) -> PyResult<()> {
        self.hot.bind(py).clear();
        let (result, pending) = capture(|| self.core.dispose());
        finish(py, result, pending)
    }

    /// Drops cached lazy instances (not singletons), running their dispose hooks; returns how
    /// many went.
    fn release_lazy(&self, py: Python<'_>) -> PyResult<usize> {
        let (n, pending) = capture(|| self.core.release_lazy());
        finish(py, Ok(n), pending)
    }

    /// created, cached, avg_creation_time (ms), memory_saved (MB), registered,
    /// never_created, aliases, tags (and per-service figures with debug_mode).
    fn get_statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.core.statistics())
    }

    fn __repr__(&self) -> String {
        format!("<memwarden.LazyContainer services={}>", self.core.names().len())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.store.traverse(&visit)
    }

    fn __clear__(&self) {
        // Callables first (the dispose hooks then run no user code), then the instances.
        let released = self.store.clear();
        let _ = self.core.dispose();
        drop(released);
    }
}

impl Drop for PyLazyContainer {
    fn drop(&mut self) {
        // Nobody can get from it any more: dispose the instances (a manager may still hold
        // the core) and let the callables go.
        let _ = Python::try_attach(|py| {
            let (result, pending) = capture(|| self.core.dispose());
            if let Err(e) = finish(py, result, pending) {
                e.write_unraisable(py, None);
            }
            drop(self.store.clear());
        });
    }
}

fn ensure_self_ref(slf: &Bound<'_, PyLazyContainer>) -> PyResult<()> {
    let store = &slf.get().store;
    let mut slots = store.slots.lock();
    if slots[SELF_REF].is_none() {
        slots[SELF_REF] = Some(PyWeakrefReference::new(slf.as_any())?.into_any().unbind());
    }
    Ok(())
}

/// One request's `scoped` instances; `with container.create_scope() as scope:` disposes it
/// on exit.
#[pyclass(name = "Scope", module = "memwarden", frozen)]
pub struct PyScope {
    core: Scope<Inst>,
    container: Py<PyLazyContainer>,
}

#[pymethods]
impl PyScope {
    /// Resolves `name` in this scope: scoped services once per scope, others as the
    /// container does.
    fn get<'py>(&self, py: Python<'py>, name: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let name = arg_str(name, "get")?;
        let core = &self.core;
        resolve(py, || core.get(name)).map(|v| out(py, v))
    }

    /// Runs the dispose hooks of this scope's instances in reverse creation order.
    fn dispose(&self, py: Python<'_>) -> PyResult<()> {
        let (result, pending) = capture(|| self.core.dispose());
        finish(py, result, pending)
    }

    /// The container this scope belongs to.
    #[getter]
    fn container(&self, py: Python<'_>) -> Py<PyLazyContainer> {
        self.container.clone_ref(py)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.dispose(py)?;
        Ok(false)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.container)
    }
}

// ---- the fast `get` ---------------------------------------------------------------

/// `LazyContainer.get` as a `METH_O` method descriptor. Under the 3.9 limited API PyO3's
/// methods take their arguments as a tuple and a dict (the vectorcall protocol is not in it
/// before 3.10), which costs more than the whole lookup; a `METH_O` method gets its one
/// argument directly, as `dict.get` does.
unsafe extern "C" fn fast_get(
    slf: *mut pyo3::ffi::PyObject,
    arg: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    // SAFETY: CPython calls a method with the GIL held, with valid `self` and argument.
    let py = unsafe { Python::assume_attached() };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> PyResult<Bound<'_, PyAny>> {
        // SAFETY: borrowed references, valid for the call.
        let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
        let arg = unsafe { Bound::from_borrowed_ptr(py, arg) };
        let c = slf
            .cast::<PyLazyContainer>()
            .map_err(|_| PyTypeError::new_err(format!("get() requires a LazyContainer, got {}", type_name(&slf))))?;
        let this = c.get();
        let exact = arg.is_exact_instance_of::<PyString>();
        if exact && let Some(hit) = this.hot.bind(py).get_item(&arg)? {
            return Ok(hit);
        }
        let name = arg_str(&arg, "get")?;
        let obj = this.get_obj(py, name)?;
        if exact && this.core.peek_singleton(name, |_| ()).is_some() {
            this.hot.bind(py).set_item(&arg, &obj)?;
        }
        Ok(obj)
    }));
    match result {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic in LazyContainer.get".into());
            pyo3::panic::PanicException::new_err(msg).restore(py);
            std::ptr::null_mut()
        }
    }
}

/// Installs [`fast_get`] as `LazyContainer.get`.
pub fn install_fast_get(py: Python<'_>) -> PyResult<()> {
    let def = Box::leak(Box::new(pyo3::ffi::PyMethodDef {
        ml_name: c"get".as_ptr(),
        ml_meth: pyo3::ffi::PyMethodDefPointer { PyCFunction: fast_get },
        ml_flags: pyo3::ffi::METH_O,
        ml_doc: c"get($self, name, /)\n--\n\nThe instance of `name` (or of the service an alias points to).".as_ptr(),
    }));
    let ty = py.get_type::<PyLazyContainer>();
    // SAFETY: a leaked (static) method def for this type; the result is a new reference.
    let descr = unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyDescr_NewMethod(ty.as_ptr().cast(), def))? };
    ty.setattr(intern!(py, "get"), descr)
}

/// The cleanup a manager registers for a LazyContainer: with `release_lazy_on_cleanup`,
/// dropping cached lazy instances.
pub fn as_container_cleanup(obj: &Bound<'_, PyAny>) -> Option<Arc<dyn Cleanup>> {
    obj.cast::<PyLazyContainer>().ok().map(|c| Arc::new(c.get().core.clone()) as Arc<dyn Cleanup>)
}
