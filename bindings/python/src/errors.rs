//! One exception class per core `ErrorKind`, the same mapping in every binding, and the
//! slot where a Python callback's own exception waits while the core unwinds.

use std::cell::{Cell, RefCell};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyLookupError, PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use memwarden_core::{Error, ErrorKind};

create_exception!(memwarden, MemwardenError, PyException, "Base class of every memwarden error.");
create_exception!(memwarden, ExhaustedError, MemwardenError, "A bounded resource has nothing left.");
create_exception!(memwarden, CircularDependencyError, MemwardenError, "A dependency cycle, with its path.");
create_exception!(memwarden, DatabaseError, MemwardenError, "A database reported an error.");
create_exception!(
    memwarden,
    CallbackError,
    MemwardenError,
    "A callback failed in a way that left no Python exception to re-raise."
);
create_exception!(memwarden, ClosedError, MemwardenError, "The object was closed and cannot be used any more.");
create_exception!(
    memwarden,
    UnsupportedError,
    MemwardenError,
    "The operation is not available on this system or in this mode."
);

/// A class with two bases (`MemwardenError` and a builtin). `create_exception!` takes one
/// base, so these are made once with `type(name, bases, dict)` at module init.
struct DualException {
    name: &'static str,
    doc: &'static str,
    builtin: fn(Python<'_>) -> Bound<'_, PyType>,
    cell: PyOnceLock<Py<PyType>>,
}

impl DualException {
    const fn new(name: &'static str, doc: &'static str, builtin: fn(Python<'_>) -> Bound<'_, PyType>) -> Self {
        DualException { name, doc, builtin, cell: PyOnceLock::new() }
    }

    fn get<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyType>> {
        self.cell
            .get_or_try_init(py, || {
                let dict = PyDict::new(py);
                dict.set_item("__module__", "memwarden")?;
                dict.set_item("__doc__", self.doc)?;
                let bases = PyTuple::new(py, [py.get_type::<MemwardenError>(), (self.builtin)(py)])?;
                let ty = py.get_type::<PyType>().call1((self.name, bases, dict))?;
                Ok::<_, PyErr>(ty.cast_into::<PyType>()?.unbind())
            })
            .map(|t| t.bind(py))
    }
}

static INVALID_ARGUMENT: DualException =
    DualException::new("InvalidArgumentError", "A value passed to a call is out of range or malformed.", |py| {
        py.get_type::<PyValueError>()
    });
static CONFIG: DualException = DualException::new(
    "ConfigError",
    "A configuration key is unknown or its value is wrong; the message names the key and the value.",
    |py| py.get_type::<PyValueError>(),
);
static TIMEOUT: DualException =
    DualException::new("AcquireTimeout", "Waiting for something took longer than allowed.", |py| {
        py.get_type::<PyTimeoutError>()
    });
static NOT_FOUND: DualException =
    DualException::new("NotFoundError", "A named thing does not exist.", |py| py.get_type::<PyLookupError>());
static IO: DualException =
    DualException::new("MemwardenIOError", "The operating system refused a read or write.", |py| {
        py.get_type::<PyOSError>()
    });

/// Adds every exception class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MemwardenError", py.get_type::<MemwardenError>())?;
    for d in [&INVALID_ARGUMENT, &CONFIG, &TIMEOUT, &NOT_FOUND, &IO] {
        m.add(d.name, d.get(py)?)?;
    }
    m.add("ExhaustedError", py.get_type::<ExhaustedError>())?;
    m.add("CircularDependencyError", py.get_type::<CircularDependencyError>())?;
    m.add("DatabaseError", py.get_type::<DatabaseError>())?;
    m.add("CallbackError", py.get_type::<CallbackError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("UnsupportedError", py.get_type::<UnsupportedError>())?;
    Ok(())
}

fn new_err(py: Python<'_>, d: &DualException, msg: String) -> PyErr {
    match d.get(py) {
        Ok(ty) => PyErr::from_type(ty.clone(), msg),
        Err(e) => e,
    }
}

/// A `ConfigError` with `msg`.
pub fn config_error(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    new_err(py, &CONFIG, msg.into())
}

/// An `InvalidArgumentError` with `msg`.
pub fn invalid_argument(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    new_err(py, &INVALID_ARGUMENT, msg.into())
}

/// The Python exception for a core error. For a callback failure, `pending` (the callback's
/// own exception) is raised as it was, so the caller sees `ValueError("boom")`, not a wrapper.
pub fn to_pyerr(py: Python<'_>, e: Error, pending: Option<PyErr>) -> PyErr {
    let msg = e.message().to_owned();
    match e.kind() {
        ErrorKind::Callback => match pending {
            Some(original) => original,
            None => CallbackError::new_err(msg),
        },
        ErrorKind::InvalidArgument => new_err(py, &INVALID_ARGUMENT, msg),
        ErrorKind::InvalidConfig => new_err(py, &CONFIG, msg),
        ErrorKind::Timeout => new_err(py, &TIMEOUT, msg),
        ErrorKind::NotFound => new_err(py, &NOT_FOUND, msg),
        ErrorKind::Io => new_err(py, &IO, msg),
        ErrorKind::Exhausted => ExhaustedError::new_err(msg),
        ErrorKind::Cycle => CircularDependencyError::new_err(msg),
        ErrorKind::Database => DatabaseError::new_err(msg),
        ErrorKind::Closed => ClosedError::new_err(msg),
        ErrorKind::Unsupported => UnsupportedError::new_err(msg),
    }
}

thread_local! {
    /// The first exception a Python callback raised during the current core call on this
    /// thread. Core callbacks run on the calling thread, so a thread-local is enough.
    static PENDING: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// Keeps a callback's exception for the binding call that is running on this thread.
/// Only the first one is kept: it is the one the core reports.
pub fn stash(err: PyErr) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_none() {
            *p = Some(err);
        }
    });
}

/// Runs a core call with the GIL released and turns its error into a Python exception,
/// re-raising a callback's own exception when that is what failed. Nested calls (a
/// callback calling back in) each see only their own callbacks' exceptions.
pub fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> memwarden_core::Result<T> + Send) -> PyResult<T> {
    let outer = PENDING.with(|p| p.borrow_mut().take());
    let result = py.detach(f);
    let mine = PENDING.with(|p| std::mem::replace(&mut *p.borrow_mut(), outer));
    result.map_err(|e| to_pyerr(py, e, mine))
}

/// [`run`] without releasing the GIL, for calls too short to be worth it.
pub fn run_attached<T>(py: Python<'_>, f: impl FnOnce() -> memwarden_core::Result<T>) -> PyResult<T> {
    let outer = PENDING.with(|p| p.borrow_mut().take());
    let result = f();
    let mine = PENDING.with(|p| std::mem::replace(&mut *p.borrow_mut(), outer));
    result.map_err(|e| to_pyerr(py, e, mine))
}

thread_local! {
    /// How many pool calls ([`capture`]) are running on this thread. A callback that fails
    /// outside of one (on the pool's maintenance thread, or during a manager's cleanup run)
    /// has nobody to re-raise its exception to.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

struct DepthGuard;

impl DepthGuard {
    fn enter() -> Self {
        DEPTH.with(|d| d.set(d.get() + 1));
        DepthGuard
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Runs a core call (attached or, inside `f`, detached) and hands back the first exception
/// a callback raised during it, also when the call succeeded: hooks the core cannot report
/// a failure for (a pool's destroy and leak callbacks) are re-raised by the binding after
/// the call, or reported with `sys.unraisablehook` when the call hands out an object.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Option<PyErr>) {
    let outer = PENDING.with(|p| p.borrow_mut().take());
    let result = {
        let _depth = DepthGuard::enter();
        f()
    };
    let mine = PENDING.with(|p| std::mem::replace(&mut *p.borrow_mut(), outer));
    (result, mine)
}

/// A callback's exception: kept for the [`capture`] call running on this thread (the first
/// one only), else (another thread, or a second exception) written to `sys.unraisablehook`,
/// so that nothing vanishes silently.
pub fn report(py: Python<'_>, err: PyErr) {
    let keep = DEPTH.with(Cell::get) > 0 && PENDING.with(|p| p.borrow().is_none());
    if keep {
        stash(err);
    } else {
        err.write_unraisable(py, None);
    }
}

/// The result of a [`capture`]d core call: a core error becomes its Python exception (the
/// callback's own when that is what failed); on success, a callback's exception is raised
/// after the fact.
pub fn finish<T>(py: Python<'_>, result: memwarden_core::Result<T>, pending: Option<PyErr>) -> PyResult<T> {
    match (result, pending) {
        (Err(e), pending) => Err(to_pyerr(py, e, pending)),
        (Ok(_), Some(err)) => Err(err),
        (Ok(v), None) => Ok(v),
    }
}
