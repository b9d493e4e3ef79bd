//! `memwarden.RequestTracker` over `memwarden_core::RequestTracker`: the per-request
//! measurement that `memwarden.wsgi` and `memwarden.asgi` call (begin, a snapshot for the
//! headers, end), plus the high-usage handler and the per-route analytics.

use std::cell::RefCell;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{PyTraverseError, intern};
use serde_json::{Map, Value};

use memwarden_core::{self as mw, HeaderCache, RequestReport, RequestToken, RequestTracker};

use crate::convert::{json_to_py, py_to_json_for, type_name};
use crate::errors::{run_attached, to_pyerr};

const MIB: f64 = 1_048_576.0;

thread_local! {
    /// The request object (WSGI environ, ASGI scope) of the `end` running on this thread, for
    /// the high-usage handler the core calls synchronously inside it.
    static CURRENT_REQUEST: RefCell<Option<Py<PyAny>>> = const { RefCell::new(None) };
}

/// The high-usage handler, visible to the garbage collector through the tracker.
#[derive(Default)]
struct HandlerSlot {
    f: Mutex<Option<(Py<PyAny>, usize)>>,
}

/// A request in flight, from `begin` to `end`. Ending it twice ends it once.
#[pyclass(name = "RequestToken", module = "memwarden", frozen)]
pub struct PyRequestToken {
    token: Mutex<Option<RequestToken>>,
    route: String,
}

#[pymethods]
impl PyRequestToken {
    /// The route template the request is counted under.
    #[getter]
    fn route(&self) -> &str {
        &self.route
    }

    /// False once `end` has run.
    #[getter]
    fn active(&self) -> bool {
        self.token.lock().is_some()
    }
}

/// The figures of one request (or of one still in flight, from `snapshot`).
#[pyclass(name = "RequestReport", module = "memwarden", frozen)]
pub struct PyRequestReport {
    #[pyo3(get)]
    route: String,
    #[pyo3(get)]
    start_bytes: u64,
    #[pyo3(get)]
    end_bytes: u64,
    #[pyo3(get)]
    peak_bytes: u64,
    #[pyo3(get)]
    delta_bytes: i64,
    #[pyo3(get)]
    duration_ms: f64,
    #[pyo3(get)]
    overlapped: u32,
    #[pyo3(get)]
    high_usage: bool,
    /// False for a `snapshot` (the request was still running).
    #[pyo3(get)]
    is_final: bool,
    inner: RequestReport,
}

impl PyRequestReport {
    fn new(r: RequestReport, final_: bool) -> Self {
        PyRequestReport {
            route: r.route.clone(),
            start_bytes: r.start_bytes,
            end_bytes: r.end_bytes,
            peak_bytes: r.peak_bytes,
            delta_bytes: r.delta_bytes,
            duration_ms: r.duration_ms,
            overlapped: r.overlapped,
            high_usage: r.high_usage,
            is_final: final_,
            inner: r,
        }
    }
}

fn report_dict<'py>(py: Python<'py>, r: &RequestReport, final_: bool) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("route", &r.route)?;
    d.set_item("start_bytes", r.start_bytes)?;
    d.set_item("end_bytes", r.end_bytes)?;
    d.set_item("peak_bytes", r.peak_bytes)?;
    d.set_item("delta_bytes", r.delta_bytes)?;
    d.set_item("usage_mb", r.end_bytes as f64 / MIB)?;
    d.set_item("peak_mb", r.peak_bytes as f64 / MIB)?;
    d.set_item("delta_mb", r.delta_bytes as f64 / MIB)?;
    d.set_item("duration_ms", r.duration_ms)?;
    d.set_item("overlapped", r.overlapped)?;
    d.set_item("high_usage", r.high_usage)?;
    d.set_item("is_final", final_)?;
    Ok(d)
}

#[pymethods]
impl PyRequestReport {
    /// Memory at the end (or now, for a snapshot) in MiB: the seed's ``X-Memory-Usage``.
    #[getter]
    fn usage_mb(&self) -> f64 {
        self.end_bytes as f64 / MIB
    }

    /// Peak during the request in MiB: ``X-Memory-Peak``.
    #[getter]
    fn peak_mb(&self) -> f64 {
        self.peak_bytes as f64 / MIB
    }

    /// End minus start in MiB (negative when memory was returned).
    #[getter]
    fn delta_mb(&self) -> f64 {
        self.delta_bytes as f64 / MIB
    }

    /// The figures as a dict (also ``usage_mb``, ``peak_mb``, ``delta_mb`` and ``is_final``).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        report_dict(py, &self.inner, self.is_final)
    }

    fn __repr__(&self) -> String {
        format!(
            "<memwarden.RequestReport route={:?} usage_mb={:.1} peak_mb={:.1} delta_mb={:.2} duration_ms={:.3} \
             overlapped={} high_usage={} is_final={}>",
            self.route,
            self.usage_mb(),
            self.peak_mb(),
            self.delta_mb(),
            self.duration_ms,
            self.overlapped,
            if self.high_usage { "True" } else { "False" },
            if self.is_final { "True" } else { "False" },
        )
    }
}

/// Per-request memory measurement for middlewares, aggregated per route template.
#[pyclass(name = "RequestTracker", module = "memwarden", frozen, weakref)]
pub struct PyRequestTracker {
    core: Arc<RequestTracker>,
    handler: Arc<HandlerSlot>,
    headers: Mutex<HeaderMemo>,
}

/// The last header block of `response_headers` and its two Python forms, made on demand and
/// handed out again while the figures stay the same (they change at most once per reading).
#[derive(Default)]
struct HeaderMemo {
    cache: HeaderCache,
    text: Option<Py<PyTuple>>,
    raw: Option<Py<PyTuple>>,
}

/// One header as WSGI wants it, `(str, str)`, or with `raw` as ASGI does, lower-case
/// `(bytes, bytes)`.
fn header_pair<'py>(py: Python<'py>, name: &str, value: &str, raw: bool) -> PyResult<Bound<'py, PyTuple>> {
    if raw {
        PyTuple::new(py, [PyBytes::new(py, name.to_ascii_lowercase().as_bytes()), PyBytes::new(py, value.as_bytes())])
    } else {
        PyTuple::new(py, [PyString::new(py, name), PyString::new(py, value)])
    }
}

fn as_token<'a, 'py>(t: &'a Bound<'py, PyAny>, func: &str) -> PyResult<&'a Bound<'py, PyRequestToken>> {
    t.cast::<PyRequestToken>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{func}() argument 'token' must be a RequestToken from begin(), got {}",
            type_name(t)
        ))
    })
}

/// How many positional arguments the handler takes (2 or 3), from `inspect.signature`.
fn handler_arity(f: &Bound<'_, PyAny>) -> PyResult<usize> {
    let py = f.py();
    let inspect = py.import(intern!(py, "inspect"))?;
    let Ok(sig) = inspect.call_method1(intern!(py, "signature"), (f,)) else { return Ok(2) };
    let none = py.None();
    if sig.call_method1(intern!(py, "bind"), (&none, &none, &none)).is_ok() {
        return Ok(3);
    }
    if sig.call_method1(intern!(py, "bind"), (&none, &none)).is_ok() {
        return Ok(2);
    }
    Err(PyTypeError::new_err(format!(
        "the high-usage handler must accept (usage_mb, request) or (usage_mb, request, report), but its signature \
         is {}",
        sig.str()?
    )))
}

/// Logs a handler's exception through `logging.getLogger("memwarden")`, with its traceback.
pub fn log_handler_error(py: Python<'_>, what: &str, e: &PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py.import(intern!(py, "logging"))?.call_method1(intern!(py, "getLogger"), ("memwarden",))?;
        let exc_info = PyTuple::new(
            py,
            [
                e.get_type(py).into_any(),
                e.value(py).clone().into_any(),
                e.traceback(py).map_or(py.None().into_bound(py), |t| t.into_any()),
            ],
        )?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", exc_info)?;
        logger.call_method(
            intern!(py, "error"),
            (format!("memwarden: {what} raised %r; the request goes on"), e.value(py)),
            Some(&kwargs),
        )?;
        Ok(())
    })();
    if let Err(le) = logged {
        le.write_unraisable(py, None);
    }
}

#[pymethods]
impl PyRequestTracker {
    /// See the stub for the options.
    #[new]
    #[pyo3(signature = (config = None, /, **options))]
    fn new(py: Python<'_>, config: Option<&Bound<'_, PyAny>>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let kwargs = options;
        let mut cfg = Map::new();
        let mut add = |k: String, v: &Bound<'_, PyAny>| -> PyResult<()> {
            if cfg.contains_key(&k) {
                return Err(crate::errors::config_error(
                    py,
                    format!(
                        "MemoryTrackingMiddleware config: '{k}' is given both in the config dict and as a keyword argument"
                    ),
                ));
            }
            let value = py_to_json_for("MemoryTrackingMiddleware", &k, v)?;
            cfg.insert(k, value);
            Ok(())
        };
        if let Some(c) = config.filter(|c| !c.is_none()) {
            let d = c.cast::<PyDict>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "RequestTracker() argument 'config' must be a dict or None, got {}",
                    type_name(c)
                ))
            })?;
            for (k, v) in d.iter() {
                add(k.extract()?, &v)?;
            }
        }
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                add(k.extract()?, &v)?;
            }
        }
        let core = RequestTracker::from_json(&Value::Object(cfg)).map_err(|e| to_pyerr(py, e, None))?;
        Ok(PyRequestTracker {
            core: Arc::new(core),
            handler: Arc::new(HandlerSlot::default()),
            headers: Mutex::new(HeaderMemo::default()),
        })
    }

    /// ``enabled`` as configured.
    #[getter]
    fn enabled(&self) -> bool {
        self.core.config().enabled
    }

    /// ``include_headers`` as configured.
    #[getter]
    fn include_headers(&self) -> bool {
        self.core.config().include_headers
    }

    /// ``sample_rate`` as configured.
    #[getter]
    fn sample_rate(&self) -> f64 {
        self.core.config().sample_rate
    }

    /// ``threshold_mb`` as configured.
    #[getter]
    fn threshold_mb(&self) -> f64 {
        self.core.config().threshold_mb
    }

    /// The ``detailed_tracking`` options: ``enabled``, ``track_allocations``,
    /// ``track_deallocations``, ``include_stack_traces``.
    #[getter]
    fn detailed_tracking<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::convert::to_py(py, serde_json::to_value(&self.core.config().detailed_tracking))
    }

    /// The limit reported as ``X-Memory-Limit``, in bytes.
    #[getter]
    fn limit_bytes(&self) -> u64 {
        self.core.limit_bytes()
    }

    /// Requests begun and not yet ended.
    #[getter]
    fn in_flight(&self) -> u64 {
        self.core.in_flight()
    }

    /// Starts measuring a request counted under ``route`` (a template such as
    /// ``"GET /users/{id}"``, never the raw path). None when disabled or not sampled.
    fn begin(&self, py: Python<'_>, route: &str) -> PyResult<Option<PyRequestToken>> {
        let token = run_attached(py, || self.core.begin(route))?;
        Ok(token.map(|t| PyRequestToken { route: t.route().to_owned(), token: Mutex::new(Some(t)) }))
    }

    /// The figures so far of a request still in flight (for the response headers); records
    /// nothing. Raises ``ValueError`` for a token that has ended.
    fn snapshot(&self, py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<PyRequestReport> {
        let token = as_token(token, "snapshot")?.get();
        let guard = token.token.lock();
        let t =
            guard.as_ref().ok_or_else(|| crate::errors::invalid_argument(py, "snapshot(): the request has ended"))?;
        let r = run_attached(py, || self.core.peek(t))?;
        Ok(PyRequestReport::new(r, false))
    }

    /// The response headers of a request still in flight, as ``snapshot`` then ``headers``
    /// give them, in one call: a tuple of ``(str, str)`` pairs, or with ``raw=True`` of
    /// lower-case ``(bytes, bytes)`` pairs. While the figures stay the same (they change at
    /// most once per reading) the same tuple is returned. Empty with ``include_headers=False``;
    /// ``ValueError`` for a token that has ended.
    #[pyo3(signature = (token, raw = false))]
    fn response_headers<'py>(
        &self,
        py: Python<'py>,
        token: &Bound<'py, PyAny>,
        raw: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let token = as_token(token, "response_headers")?.get();
        let guard = token.token.lock();
        let t = guard
            .as_ref()
            .ok_or_else(|| crate::errors::invalid_argument(py, "response_headers(): the request has ended"))?;
        let mut memo = self.headers.lock();
        let m = &mut *memo;
        if run_attached(py, || self.core.peek_header_block(t, &mut m.cache))? {
            m.text = None;
            m.raw = None;
        }
        let slot = if raw { &mut m.raw } else { &mut m.text };
        if let Some(tuple) = slot {
            return Ok(tuple.bind(py).clone());
        }
        let mut pairs = Vec::with_capacity(4);
        for line in m.cache.block.lines() {
            let Some((name, value)) = line.split_once(": ") else { continue };
            pairs.push(header_pair(py, name, value, raw)?);
        }
        let tuple = PyTuple::new(py, pairs)?;
        *slot = Some(tuple.clone().unbind());
        Ok(tuple)
    }

    /// Ends a request: reads memory, records it in the analytics and, when it is high-usage,
    /// calls the high-usage handler (with ``request``, the WSGI environ or ASGI scope) and
    /// writes the log line. Returns the final report, or None when the token had ended already.
    /// ``route``, when given, replaces the template passed to ``begin`` (frameworks route a
    /// request only after it began).
    #[pyo3(signature = (token, request = None, route = None))]
    fn end(
        &self,
        py: Python<'_>,
        token: &Bound<'_, PyAny>,
        request: Option<Py<PyAny>>,
        route: Option<&str>,
    ) -> PyResult<Option<PyRequestReport>> {
        let Some(mut t) = as_token(token, "end")?.get().token.lock().take() else { return Ok(None) };
        if let Some(route) = route {
            t.set_route(route);
        }
        let previous = CURRENT_REQUEST.with(|c| c.replace(request));
        let result = run_attached(py, || self.core.end(t));
        let mine = CURRENT_REQUEST.with(|c| c.replace(previous));
        drop(mine);
        Ok(Some(PyRequestReport::new(result?, true)))
    }

    /// The seed's response headers for a report, as ``[(name, value), ...]`` of str (WSGI), or
    /// with ``raw=True`` as lower-case ``bytes`` pairs (ASGI). Empty with ``include_headers=False``.
    #[pyo3(signature = (report, raw = false))]
    fn headers<'py>(
        &self,
        py: Python<'py>,
        report: &Bound<'py, PyRequestReport>,
        raw: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (name, value) in self.core.headers(&report.get().inner) {
            list.append(header_pair(py, name, &value, raw)?)?;
        }
        Ok(list)
    }

    /// Sets the high-usage handler, called as ``handler(usage_mb, request)`` or
    /// ``handler(usage_mb, request, report)`` on the thread that ends the request; None
    /// removes it. An exception it raises is logged (``logging.getLogger("memwarden")``),
    /// counted in ``analytics()["handler_errors"]`` and written to the log; the request goes on.
    fn set_high_usage_handler(&self, handler: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(f) = handler.filter(|h| !h.is_none()) else {
            self.core.set_high_usage_handler(None);
            let old = self.handler.f.lock().take();
            drop(old);
            return Ok(());
        };
        if !f.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "the high-usage handler must be callable, got {}",
                type_name(&f)
            )));
        }
        let arity = handler_arity(&f)?;
        let old = self.handler.f.lock().replace((f.unbind(), arity));
        drop(old);
        let slot = self.handler.clone();
        self.core.set_high_usage_handler(Some(Arc::new(move |r: &RequestReport| -> Result<(), String> {
            Python::attach(|py| {
                let Some((f, arity)) = slot.f.lock().as_ref().map(|(f, a)| (f.clone_ref(py), *a)) else {
                    return Ok(());
                };
                let request =
                    CURRENT_REQUEST.with(|c| c.borrow().as_ref().map(|r| r.clone_ref(py))).unwrap_or_else(|| py.None());
                let usage = r.end_bytes as f64 / MIB;
                let called = if arity == 3 {
                    report_dict(py, r, true).and_then(|d| f.call1(py, (usage, request, d)))
                } else {
                    f.call1(py, (usage, request))
                };
                called.map(drop).map_err(|e| {
                    log_handler_error(py, "the high-usage handler", &e);
                    e.to_string()
                })
            })
        })));
        Ok(())
    }

    /// Per-route aggregates: ``routes`` (by template: ``count``, ``high_usage``, ``overlapped``,
    /// ``overlapped_share``, ``delta_bytes`` / ``peak_bytes`` ``{p50, p95, max}``,
    /// ``duration_ms`` ``{avg, max}``), ``in_flight``, ``sampled_out``, ``handler_errors``,
    /// ``max_routes``, ``overflowed_routes``, ``sample_rate`` and a ``note`` on attribution.
    fn analytics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.core.analytics())
    }

    fn __repr__(&self) -> String {
        let c = self.core.config();
        format!(
            "<memwarden.RequestTracker enabled={} sample_rate={} threshold_mb={} limit={}>",
            if c.enabled { "True" } else { "False" },
            c.sample_rate,
            c.threshold_mb,
            mw::format_size(self.core.limit_bytes())
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(g) = self.handler.f.try_lock()
            && let Some((f, _)) = g.as_ref()
        {
            visit.call(f)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.core.set_high_usage_handler(None);
        let old = self.handler.f.lock().take();
        drop(old);
    }
}
