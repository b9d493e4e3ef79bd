//! `memwarden.MemoryAlertingService` over `memwarden_core::MemoryAlertingService`.
//!
//! Config is the seed's nested dict, turned into JSON and checked by the core at
//! construction. Delivery runs on the core's own thread; events born there (alert raised,
//! delivery failed, ...) reach Python callbacks on that thread with the GIL taken (DESIGN §5),
//! and every call that may wait on the delivery thread (`flush`, history, checks) runs with
//! the GIL released, so a callback waiting for the GIL can never deadlock against it.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{PyTraverseError, intern};
use serde_json::{Map, Value};

use memwarden_core::{self as mw, AlertEvent, State};

use crate::convert::{json_to_py, py_to_json_for, to_py, type_name};
use crate::errors::{config_error, invalid_argument, run, to_pyerr};
use crate::manager::PyMemoryManager;

const C: &str = "MemoryAlertingService";

/// How long `__exit__` waits for queued deliveries.
const EXIT_FLUSH: Duration = Duration::from_secs(30);

thread_local! {
    /// Set while an alerting callback runs on this (delivery) thread: a `flush()` there would
    /// wait for the very delivery that is calling it.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

struct CallbackGuard;

impl CallbackGuard {
    fn enter() -> Self {
        IN_CALLBACK.with(|c| c.set(true));
        CallbackGuard
    }
}

impl Drop for CallbackGuard {
    fn drop(&mut self) {
        IN_CALLBACK.with(|c| c.set(false));
    }
}

/// Which events a handler wants.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    /// `alert_raised`.
    Raised,
    /// `delivery_failed`.
    Failed,
    /// Every event.
    All,
}

impl Filter {
    fn wants(self, kind: &str) -> bool {
        match self {
            Filter::Raised => kind == "alert_raised",
            Filter::Failed => kind == "delivery_failed",
            Filter::All => true,
        }
    }
}

/// The Python callables registered on a service. The core's event callback captures this
/// store, never a callable, so the service's `__traverse__` sees them all and `__clear__`
/// can drop them.
#[derive(Default)]
struct Handlers {
    list: Mutex<Vec<(Filter, Py<PyAny>)>>,
}

impl Handlers {
    /// On the delivery thread: calls every handler that wants `e`, with the GIL. An exception
    /// goes to `sys.unraisablehook` and the thread carries on.
    fn dispatch(&self, e: &AlertEvent) {
        if !self.list.lock().iter().any(|(f, _)| f.wants(e.kind)) {
            return;
        }
        let _guard = CallbackGuard::enter();
        Python::attach(|py| {
            let wanted: Vec<Py<PyAny>> =
                self.list.lock().iter().filter(|(f, _)| f.wants(e.kind)).map(|(_, cb)| cb.clone_ref(py)).collect();
            let event = match to_py(py, serde_json::to_value(e)) {
                Ok(ev) => ev,
                Err(err) => {
                    err.write_unraisable(py, None);
                    return;
                }
            };
            for cb in wanted {
                let cb = cb.bind(py);
                if let Err(err) = cb.call1((&event,)) {
                    err.write_unraisable(py, Some(cb));
                }
            }
        });
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // See manager.rs: the lock is held only for a push or increfs; try_lock keeps a
        // collection that starts meanwhile from deadlocking.
        if let Some(list) = self.list.try_lock() {
            for (_, f) in list.iter() {
                visit.call(f)?;
            }
        }
        Ok(())
    }
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

/// A dict argument and keyword arguments merged into one JSON object; a key given both ways
/// is an error. `what` names the call in messages.
fn merge_dict_and_kwargs(
    py: Python<'_>,
    what: &str,
    arg_name: &str,
    dict: Option<&Bound<'_, PyAny>>,
    kwargs: Option<&Bound<'_, PyDict>>,
    make_err: fn(Python<'_>, String) -> PyErr,
) -> PyResult<Map<String, Value>> {
    let mut out = Map::new();
    if let Some(d) = dict.filter(|d| !d.is_none()) {
        let d = d.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!("{what} argument '{arg_name}' must be a dict or None, got {}", type_name(d)))
        })?;
        for (k, v) in d.iter() {
            let k: String = k
                .extract()
                .map_err(|_| make_err(py, format!("{what}: keys must be strings, got {} {k}", type_name(&k))))?;
            let v = py_to_json_for(C, &k, &v)?;
            out.insert(k, v);
        }
    }
    if let Some(kw) = kwargs {
        for (k, v) in kw.iter() {
            let k: String = k.extract()?;
            if out.contains_key(&k) {
                return Err(make_err(
                    py,
                    format!("{what}: '{k}' is given both in '{arg_name}' and as a keyword argument"),
                ));
            }
            let v = py_to_json_for(C, &k, &v)?;
            out.insert(k, v);
        }
    }
    Ok(out)
}

fn timeout_arg(py: Python<'_>, what: &str, t: Option<f64>) -> PyResult<Option<Duration>> {
    match t {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s.min(1e9)))),
        Some(s) => Err(invalid_argument(py, format!("{what}: timeout_seconds must be a number >= 0 or None, got {s}"))),
    }
}

/// Judges a MemoryManager's readings against warning / critical / emergency thresholds and
/// delivers alerts by e-mail, Slack, a generic webhook and Prometheus Alertmanager from a
/// background thread, with per-channel thresholds, throttling, cooldown, escalation,
/// resolve notices and a history.
#[pyclass(name = "MemoryAlertingService", module = "memwarden", frozen, weakref)]
pub struct PyMemoryAlertingService {
    /// `Some` until the object is dropped (then taken, to be dropped with the GIL released).
    core: Option<Arc<mw::MemoryAlertingService>>,
    handlers: Arc<Handlers>,
    /// Whether the core's event callback is installed (on the first handler).
    hooked: Mutex<bool>,
}

impl PyMemoryAlertingService {
    fn core(&self) -> &Arc<mw::MemoryAlertingService> {
        self.core.as_ref().expect("the core service lives as long as the Python object")
    }

    fn add_handler<'py>(&self, filter: Filter, what: &str, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "{what}() argument 'callback' must be callable, got {}",
                type_name(&callback)
            )));
        }
        self.handlers.list.lock().push((filter, callback.clone().unbind()));
        let mut hooked = self.hooked.lock();
        if !*hooked {
            let handlers = self.handlers.clone();
            self.core().set_event_callback(Some(Box::new(move |e: &AlertEvent| handlers.dispatch(e))));
            *hooked = true;
        }
        Ok(callback)
    }
}

#[pymethods]
impl PyMemoryAlertingService {
    #[classattr]
    const LEVEL_NORMAL: &'static str = "normal";
    #[classattr]
    const LEVEL_WARNING: &'static str = "warning";
    #[classattr]
    const LEVEL_CRITICAL: &'static str = "critical";
    #[classattr]
    const LEVEL_EMERGENCY: &'static str = "emergency";

    /// `MemoryAlertingService(config=None, manager=None, /, **options)`: `config` is the
    /// seed's dict (`channels`, `thresholds`, `escalation`, `history_retention_days`, ...),
    /// keyword options add to it. `manager` is the MemoryManager whose readings are judged
    /// (a default one watching this process when None). Bad config raises ConfigError
    /// naming what was wrong.
    #[new]
    #[pyo3(signature = (config = None, manager = None, /, **options))]
    fn new(
        py: Python<'_>,
        config: Option<&Bound<'_, PyAny>>,
        manager: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        // `manager=` as a keyword names the manager too (DESIGN §2 writes `manager=None`).
        let keyword_manager = match options {
            Some(o) => match o.get_item(intern!(py, "manager"))? {
                Some(m) => {
                    if manager.is_some_and(|m| !m.is_none()) {
                        return Err(PyTypeError::new_err(
                            "MemoryAlertingService() got 'manager' both as a positional and as a keyword argument",
                        ));
                    }
                    let rest = o.copy()?;
                    rest.del_item(intern!(py, "manager"))?;
                    Some((m, rest))
                }
                None => None,
            },
            None => None,
        };
        let (manager, options) = match &keyword_manager {
            Some((m, rest)) => (Some(m), Some(rest)),
            None => (manager, options),
        };
        let cfg = merge_dict_and_kwargs(py, "MemoryAlertingService()", "config", config, options, |py, m| {
            config_error(py, m)
        })?;
        let manager = match manager.filter(|m| !m.is_none()) {
            None => None,
            Some(m) => Some(
                m.cast::<PyMemoryManager>()
                    .map_err(|_| {
                        PyTypeError::new_err(format!(
                            "MemoryAlertingService() argument 'manager' must be a MemoryManager or None, got {}",
                            type_name(m)
                        ))
                    })?
                    .get()
                    .core_arc(),
            ),
        };
        let text = Value::Object(cfg).to_string();
        let core =
            py.detach(|| mw::MemoryAlertingService::from_json(&text, manager)).map_err(|e| to_pyerr(py, e, None))?;
        Ok(PyMemoryAlertingService {
            core: Some(Arc::new(core)),
            handlers: Arc::new(Handlers::default()),
            hooked: Mutex::new(false),
        })
    }

    /// Reads the manager, decides, queues deliveries and returns the level at once
    /// ('normal', 'warning', 'critical' or 'emergency'); delivery never blocks it.
    fn check_and_alert<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let core = self.core();
        let s = run(py, || core.check_and_alert())?;
        Ok(state_str(py, s))
    }

    /// Sends your own message at `level` ('warning', 'critical' or 'emergency') to every
    /// channel whose threshold it meets; returns the alert's id in the history.
    #[pyo3(signature = (message, level = "warning"))]
    fn send_alert(&self, py: Python<'_>, message: &str, level: &str) -> PyResult<i64> {
        let core = self.core();
        run(py, || core.send_alert_str(message, level))
    }

    /// Waits (with the GIL released) until every queued delivery has been attempted, at
    /// most `timeout_seconds` (None: no limit). True when everything was attempted.
    #[pyo3(signature = (timeout_seconds = None))]
    fn flush(&self, py: Python<'_>, timeout_seconds: Option<f64>) -> PyResult<bool> {
        let t = timeout_arg(py, "flush()", timeout_seconds)?;
        if IN_CALLBACK.with(Cell::get) {
            return Err(PyRuntimeError::new_err(
                "MemoryAlertingService.flush() cannot be called from an alerting callback: the callback runs on \
                 the delivery thread, which would wait for itself",
            ));
        }
        let core = self.core();
        Ok(py.detach(|| core.flush(t)))
    }

    /// The history, newest first: a list of dicts (id, kind, level, message, usage_percent,
    /// status, escalation_level, time, timestamp, deliveries=[{channel, time, timestamp,
    /// attempt, outcome, error}]). Filters: level, channel, kind ('alert', 'resolved',
    /// 'escalation', 'custom'), since (epoch seconds), limit.
    #[pyo3(signature = (filters = None, /, **kwargs))]
    fn get_alert_history<'py>(
        &self,
        py: Python<'py>,
        filters: Option<&Bound<'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let f = merge_dict_and_kwargs(py, "get_alert_history()", "filters", filters, kwargs, |py, m| {
            invalid_argument(py, m)
        })?;
        let f = Value::Object(f);
        let core = self.core();
        let hist = run(py, || core.get_alert_history(&f)).map_err(|e| {
            // The core reports a bad filter as a config error of "alert history filter".
            if e.is_instance(py, &py.get_type::<pyo3::exceptions::PyValueError>()) {
                invalid_argument(py, e.value(py).to_string())
            } else {
                e
            }
        })?;
        json_to_py(py, &hist)
    }

    /// Every event since the last call, oldest first, as dicts (kind, alert_id, level,
    /// channel, message, error, time, timestamp). Kinds: alert_raised, alert_resolved,
    /// alert_suppressed, alert_dropped, delivery_ok, delivery_failed.
    fn poll_events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events = self.core().poll_events();
        to_py(py, serde_json::to_value(events))
    }

    /// Events lost because nobody polled (at most 1024 are kept).
    #[getter]
    fn events_dropped(&self) -> u64 {
        self.core().events_dropped()
    }

    /// Deletes history older than history_retention_days now; returns how many alerts went.
    fn prune_history(&self, py: Python<'_>) -> PyResult<usize> {
        let core = self.core();
        run(py, || core.prune_history())
    }

    /// The level the last check arrived at.
    #[getter]
    fn level<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        state_str(py, self.core().level())
    }

    /// Registers callback(event) for every raised alert; runs on the delivery thread with
    /// the GIL. Returns callback (usable as a decorator).
    fn on_alert<'py>(&self, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.add_handler(Filter::Raised, "on_alert", callback)
    }

    /// Registers callback(event) for every failed delivery attempt (error text redacted);
    /// runs on the delivery thread with the GIL. Returns callback.
    fn on_delivery_failed<'py>(&self, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.add_handler(Filter::Failed, "on_delivery_failed", callback)
    }

    /// Registers callback(event) for every event (see poll_events for the kinds); runs on
    /// the delivery thread with the GIL. Returns callback.
    fn on_event<'py>(&self, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.add_handler(Filter::All, "on_event", callback)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Flushes queued deliveries, waiting at most 30 seconds.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        if IN_CALLBACK.with(Cell::get) {
            return false;
        }
        let core = self.core();
        py.detach(|| core.flush(Some(EXIT_FLUSH)));
        false
    }

    fn __repr__(&self) -> String {
        format!("<memwarden.MemoryAlertingService level='{}'>", self.core().level().as_str())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.handlers.traverse(&visit)
    }

    fn __clear__(&self) {
        let released: Vec<(Filter, Py<PyAny>)> = std::mem::take(&mut *self.handlers.list.lock());
        drop(released);
    }
}

impl Drop for PyMemoryAlertingService {
    fn drop(&mut self) {
        let Some(core) = self.core.take() else { return };
        // No more Python calls from the delivery thread; then let the core wind down (it
        // gives queued deliveries a short grace) with the GIL released, so a delivery-thread
        // callback already waiting for the GIL can finish.
        core.set_event_callback(None);
        // Without an interpreter to attach to, the closure (and the core) is dropped anyway.
        let _ = Python::try_attach(move |py| py.detach(move || drop(core)));
    }
}
