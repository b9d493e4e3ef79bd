//! `StreamProcessor`: the core's chunked stream processing (`memwarden_core::stream`) for Python.
//!
//! The whole loop runs in the core with the GIL released; the reading of a file object or an
//! iterable, the handler calls and the `performance` listeners take the GIL. With
//! `concurrent_streams` > 1 handlers run on the core's worker threads (each holding the GIL
//! while it runs Python), so a handler that waits on I/O lets the others run.

use std::io::Read;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict};
use serde_json::Value;

use memwarden_core::{Error, StreamProcessor};

use crate::convert::{json_to_py, py_to_json_for, type_name};
use crate::errors::{capture, invalid_argument, to_pyerr};
use crate::tracker::PyResourceTracker;

/// Keys handled here, never sent to the core.
const BINDING_KEYS: &[&str] = &["performance_callback", "performanceCallback", "tracker"];

/// The events a StreamProcessor emits (as Node's does), with their snake_case aliases.
fn event_name(py: Python<'_>, event: &str) -> PyResult<&'static str> {
    Ok(match event {
        "performance" => "performance",
        "memoryWarning" | "memory_warning" => "memoryWarning",
        "memoryCritical" | "memory_critical" => "memoryCritical",
        other => {
            return Err(invalid_argument(
                py,
                format!(
                    "StreamProcessor.on(): unknown event '{other}'; the events are 'performance', \
                     'memoryWarning' (or 'memory_warning') and 'memoryCritical' (or 'memory_critical')"
                ),
            ));
        }
    })
}

type Listeners = Arc<Mutex<Vec<(&'static str, Py<PyAny>)>>>;

/// Exceptions raised by Python code during one run (handler, reader, listener): the first is
/// re-raised when the run returns.
#[derive(Clone, Default)]
struct Slot(Arc<Mutex<Option<PyErr>>>);

impl Slot {
    fn keep(&self, e: PyErr) {
        let mut s = self.0.lock();
        if s.is_none() {
            *s = Some(e);
        }
    }
    fn take(&self) -> Option<PyErr> {
        self.0.lock().take()
    }
}

/// Reads chunks of a file object (`read(n)`) or an iterable of bytes-like items, with the GIL.
struct PyReader {
    source: Py<PyAny>,
    is_file: bool,
    leftover: Vec<u8>,
    pos: usize,
    slot: Slot,
}

fn bytes_of(item: &Bound<'_, PyAny>, what: &str) -> PyResult<PyBackedBytes> {
    item.extract::<PyBackedBytes>().map_err(|_| {
        PyTypeError::new_err(format!(
            "StreamProcessor.process(): {what} gave a {}, expected bytes or bytearray",
            item.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
        ))
    })
}

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.leftover.len() {
            let n = buf.len().min(self.leftover.len() - self.pos);
            buf[..n].copy_from_slice(&self.leftover[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        let got: PyResult<Option<Vec<u8>>> = Python::attach(|py| {
            let src = self.source.bind(py);
            if self.is_file {
                let item = src.call_method1("read", (buf.len(),))?;
                let b = bytes_of(&item, "read()")?;
                Ok(if b.is_empty() { None } else { Some(b.to_vec()) })
            } else {
                loop {
                    match src.call_method0("__next__") {
                        Ok(item) => {
                            let b = bytes_of(&item, "the iterable")?;
                            if !b.is_empty() {
                                return Ok(Some(b.to_vec()));
                            }
                        }
                        Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
            }
        });
        match got {
            Ok(None) => Ok(0),
            Ok(Some(v)) => {
                self.leftover = v;
                self.pos = 0;
                self.read(buf)
            }
            Err(e) => {
                let msg = e.to_string();
                self.slot.keep(e);
                Err(std::io::Error::other(msg))
            }
        }
    }
}

/// Chunked processing with backpressure (Streamflow's uploads): `chunk_size`,
/// `concurrent_streams`, `compression_enabled`, `max_memory_usage`, `thresholds`.
#[pyclass(name = "StreamProcessor", module = "memwarden", frozen)]
pub struct PyStreamProcessor {
    core: Arc<StreamProcessor>,
    listeners: Listeners,
    slot: Slot,
    /// The caller's tracker (`tracker=`), kept alive while the processor uses it.
    tracker: Option<Py<PyResourceTracker>>,
}

fn info<'py>(py: Python<'py>, index: u64, offset: u64, size: u64) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("index", index)?;
    d.set_item("offset", offset)?;
    d.set_item("size", size)?;
    Ok(d)
}

/// True when `handler` takes a second positional argument (the chunk's info).
fn wants_info(handler: &Bound<'_, PyAny>) -> bool {
    let py = handler.py();
    let Ok(sig) = py.import("inspect").and_then(|m| m.call_method1("signature", (handler,))) else {
        return false;
    };
    sig.call_method1("bind", (py.None(), py.None())).is_ok()
}

impl PyStreamProcessor {
    fn run(
        &self,
        py: Python<'_>,
        handler: &Bound<'_, PyAny>,
        go: impl FnOnce(
            &StreamProcessor,
            &(dyn Fn(&memwarden_core::StreamChunk<'_>) -> memwarden_core::Result<()> + Sync),
        ) -> memwarden_core::Result<Value>
        + Send,
    ) -> PyResult<Py<PyAny>> {
        if !handler.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "StreamProcessor: 'handler' must be callable, got {}",
                handler.get_type().name()?
            )));
        }
        let two = wants_info(handler);
        let h = handler.clone().unbind();
        let slot = self.slot.clone();
        slot.take();
        let core = self.core.clone();
        let call = |c: &memwarden_core::StreamChunk<'_>| -> memwarden_core::Result<()> {
            Python::attach(|py| {
                let data = PyBytes::new(py, c.data);
                let r = if two {
                    info(py, c.index, c.offset, c.raw_len).and_then(|i| h.call1(py, (data, i)))
                } else {
                    h.call1(py, (data,))
                };
                r.map(|_| ()).map_err(|e| {
                    let msg = e.to_string();
                    slot.keep(e);
                    Error::callback(msg)
                })
            })
        };
        // Listeners of the caller's tracker run on this thread (the one that reads the chunks):
        // their first exception is re-raised after the run, as the tracker's own calls do.
        let (result, tracker_err) = capture(|| py.detach(|| go(&core, &call)));
        if let Some(e) = tracker_err {
            self.slot.keep(e);
        }
        let pending = self.slot.take();
        match result {
            Ok(summary) => match pending {
                Some(e) => Err(e),
                None => Ok(json_to_py(py, &summary)?.unbind()),
            },
            Err(e) => {
                let failure = self.core.last_failure();
                match pending {
                    Some(err) => {
                        if let Some(f) = failure {
                            // Which chunk failed: `err.chunk` and a note on the exception.
                            let v = err.value(py);
                            let _ = v.setattr("chunk", info(py, f.index, f.offset, f.size)?);
                            if v.hasattr("add_note")? {
                                let note = format!(
                                    "memwarden.StreamProcessor: in the handler of chunk {} (offset {})",
                                    f.index, f.offset
                                );
                                let _ = v.call_method1("add_note", (note,));
                            }
                        }
                        Err(err)
                    }
                    None => Err(to_pyerr(py, e, None)),
                }
            }
        }
    }
}

#[pymethods]
impl PyStreamProcessor {
    #[new]
    #[pyo3(signature = (config=None, /, **options))]
    fn new(py: Python<'_>, config: Option<&Bound<'_, PyDict>>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut cfg = serde_json::Map::new();
        let mut perf: Option<Py<PyAny>> = None;
        let mut tracker: Option<Py<PyResourceTracker>> = None;
        for d in [config, options].into_iter().flatten() {
            for (k, v) in d.iter() {
                let k: String = k.extract()?;
                if k == "tracker" {
                    if !v.is_none() {
                        let t = v.cast::<PyResourceTracker>().map_err(|_| {
                            PyTypeError::new_err(format!(
                                "StreamProcessor: 'tracker' must be a memwarden.ResourceTracker, got {}",
                                type_name(&v)
                            ))
                        })?;
                        tracker = Some(t.clone().unbind());
                    }
                    continue;
                }
                if BINDING_KEYS.contains(&k.as_str()) {
                    if !v.is_none() {
                        if !v.is_callable() {
                            return Err(PyTypeError::new_err(format!(
                                "StreamProcessor: '{k}' must be callable, got {}",
                                v.get_type().name()?
                            )));
                        }
                        perf = Some(v.unbind());
                    }
                    continue;
                }
                cfg.insert(k.clone(), py_to_json_for("StreamProcessor", &k, &v)?);
            }
        }
        let v = Value::Object(cfg);
        let shared = tracker.as_ref().map(|t| t.get().core());
        let core = Arc::new(
            py.detach(|| match shared {
                Some(t) => StreamProcessor::from_json_with_tracker(&v, t),
                None => StreamProcessor::from_json(&v),
            })
            .map_err(|e| to_pyerr(py, e, None))?,
        );
        let listeners: Listeners = Arc::new(Mutex::new(perf.into_iter().map(|f| ("performance", f)).collect()));
        let slot = Slot::default();
        let (l, s) = (listeners.clone(), slot.clone());
        core.set_event_callback(Some(Arc::new(move |ev: &Value| {
            let Some(ty) = ev["type"].as_str() else { return };
            if !l.lock().iter().any(|(n, _)| *n == ty) {
                return;
            }
            Python::attach(|py| {
                let cbs: Vec<Py<PyAny>> =
                    l.lock().iter().filter(|(n, _)| *n == ty).map(|(_, c)| c.clone_ref(py)).collect();
                let Ok(obj) = json_to_py(py, ev) else { return };
                for cb in cbs {
                    if let Err(e) = cb.call1(py, (obj.clone(),)) {
                        s.keep(e);
                    }
                }
            })
        })));
        Ok(PyStreamProcessor { core, listeners, slot, tracker })
    }

    /// Registers `callback(event)` for `"performance"` (per chunk, and the summary with `final`
    /// True), `"memoryWarning"` / `"memory_warning"` or `"memoryCritical"` / `"memory_critical"`
    /// (the chunk tracker crossed a threshold when a chunk was admitted). Returns the callback,
    /// so it works as a decorator factory's result.
    fn on(&self, py: Python<'_>, event: &str, callback: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let name = event_name(py, event)?;
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "StreamProcessor.on() argument 'callback' must be callable, got {}",
                type_name(&callback)
            )));
        }
        let c = callback.unbind();
        self.listeners.lock().push((name, c.clone_ref(py)));
        Ok(c)
    }

    /// The ResourceTracker given as `tracker=`, or None when the processor has its own.
    #[getter]
    fn tracker(&self, py: Python<'_>) -> Option<Py<PyResourceTracker>> {
        self.tracker.as_ref().map(|t| t.clone_ref(py))
    }

    /// Reads the file at `path` in chunks and calls `handler(chunk)` (or `handler(chunk, info)`
    /// with `info = {"index", "offset", "size"}`) on each. Returns the summary.
    fn process_file(&self, py: Python<'_>, path: std::path::PathBuf, handler: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.run(py, &handler, move |core, call| core.process_file(&path, call))
    }

    /// Like `process_file`, for a binary file object (anything with `read(n)`) or an iterable of
    /// bytes / bytearray (re-cut into chunks of `chunk_size`).
    fn process(&self, py: Python<'_>, source: Bound<'_, PyAny>, handler: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let is_file = source.hasattr("read")?;
        let src = if is_file {
            source.clone().unbind()
        } else {
            source.try_iter().map_err(|_| {
                PyTypeError::new_err(format!(
                    "StreamProcessor.process(): 'source' must be a binary file object or an iterable of bytes, got {}",
                    source.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                ))
            })?.into_any().unbind()
        };
        let reader = PyReader { source: src, is_file, leftover: Vec::new(), pos: 0, slot: self.slot.clone() };
        self.run(py, &handler, move |core, call| core.process_reader(reader, call))
    }

    /// Config, the last run's counters (`chunks`, `bytes`, `peakInFlight`, `pauses`, ...) and
    /// `tracker` (the chunk tracker's statistics).
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(json_to_py(py, &self.core.stats())?.unbind())
    }

    /// Events since the last poll: `performance` events and the tracker's `memoryWarning` /
    /// `memoryCritical`.
    fn poll_events(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(json_to_py(py, &Value::Array(self.core.poll_events()))?.unbind())
    }

    /// Gzip, as the processor compresses chunks with `compression_enabled`.
    fn compress(&self, py: Python<'_>, data: PyBackedBytes) -> PyResult<Py<PyBytes>> {
        let core = self.core.clone();
        let z = py.detach(move || core.compress(&data)).map_err(|e| to_pyerr(py, e, None))?;
        Ok(PyBytes::new(py, &z).unbind())
    }

    #[getter]
    fn chunk_size(&self) -> u64 {
        self.core.config().chunk_size
    }

    #[getter]
    fn concurrent_streams(&self) -> usize {
        self.core.config().concurrent_streams
    }

    #[getter]
    fn compression_enabled(&self) -> bool {
        self.core.config().compression_enabled
    }
}
