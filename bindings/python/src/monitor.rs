//! `memwarden.Monitor` and `memwarden.analyze(path)` over `memwarden_core::monitor`.
//!
//! The sampler runs on the core's own thread; nothing calls back into Python, so no call here
//! takes the GIL from another thread. Calls that wait (stop, sampling) run with the GIL released.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde_json::{Map, Value};

use memwarden_core::monitor::{self as mon, Monitor};

use crate::convert::{config_entries, py_to_json_for, to_py};
use crate::errors::{run, to_pyerr};

const C: &str = "Monitor";
const KEYS: &[&str] = &["pid", "children", "system", "interval", "threshold", "export", "export_sync_every"];

/// A memory monitor: samples a process (``pid``, with ``children`` its whole tree) or the
/// whole system every ``interval`` seconds on a background thread, keeps the series, appends
/// it to ``export`` as it goes, and analyzes it. ``with Monitor(...) as m:`` samples inside the block.
#[pyclass(name = "Monitor", module = "memwarden", frozen)]
pub struct PyMonitor {
    core: Monitor,
}

#[pymethods]
impl PyMonitor {
    #[new]
    #[pyo3(signature = (config = None, /, **options))]
    fn new(py: Python<'_>, config: Option<&Bound<'_, PyAny>>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut map = Map::new();
        for (k, v) in config_entries(py, C, config, options, KEYS)? {
            let value = if k == "export" && !v.is_none() {
                // A str or any os.PathLike.
                let p: PathBuf = v.extract().map_err(|_| {
                    to_pyerr(
                        py,
                        memwarden_core::Error::invalid_config(format!(
                            "Monitor config: invalid value for 'export': expected a path (str or os.PathLike), got {}",
                            crate::convert::type_name(&v)
                        )),
                        None,
                    )
                })?;
                Value::String(p.to_string_lossy().into_owned())
            } else {
                py_to_json_for(C, &k, &v)?
            };
            map.insert(k, value);
        }
        let v = Value::Object(map);
        let core = run(py, || Monitor::from_json(&v))?;
        Ok(PyMonitor { core })
    }

    /// Starts sampling on a background thread (at once, then every ``interval``; ticks missed
    /// while the machine stalled are skipped, not caught up). ``InvalidArgumentError`` when
    /// already running.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        run(py, || self.core.start())
    }

    /// Stops the background sampler (returns once it has stopped) and fsyncs the export.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        run(py, || self.core.stop())
    }

    /// Whether the background sampler runs (False once it ended on its own, see ``ended``).
    #[getter]
    fn running(&self) -> bool {
        self.core.is_running()
    }

    /// Why the sampler stopped on its own (``"process 123 has exited"``), or None.
    #[getter]
    fn ended(&self) -> Option<String> {
        self.core.ended()
    }

    /// Ticks skipped because the sampler was late.
    #[getter]
    fn skipped_ticks(&self) -> u64 {
        self.core.skipped_ticks()
    }

    /// What is watched: ``target``, ``interval``, ``limit_bytes``, ``limit_origin``,
    /// ``threshold``, ``started_unix_ms``, ``version`` (the export file's header).
    #[getter]
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, serde_json::to_value(self.core.meta()))
    }

    /// Takes a sample now, adds it to the series and returns it.
    fn sample_now<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = run(py, || self.core.sample_now())?;
        to_py(py, serde_json::to_value(s))
    }

    /// The series so far: a list of ``{t, unix_ms, current_bytes, peak_bytes, limit_bytes}``.
    fn samples<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, serde_json::to_value(self.core.samples()))
    }

    /// The analysis of the series so far (see ``memwarden.analyze``).
    fn analyze<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let a = py.detach(|| self.core.analyze());
        to_py(py, serde_json::to_value(a))
    }

    /// Writes the series so far to ``path`` as an export file (atomically), which
    /// ``memwarden.analyze`` and ``memwarden analyze`` / ``plot`` read.
    fn export(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        run(py, || self.core.export(&path))
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let py = slf.py();
        slf.get().start(py)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let m = self.core.meta();
        format!(
            "<memwarden.Monitor {} every {} s, {} samples{}>",
            m.target,
            m.interval,
            self.core.samples().len(),
            if self.core.is_running() { ", running" } else { "" }
        )
    }
}

/// The analysis of an export file (written by ``memwarden monitor --export``, a ``Monitor``'s
/// ``export`` option or ``Monitor.export``): ``samples``, ``duration_s``, ``average_mb``,
/// ``min_mb``, ``peak_mb``, ``limit_mb``, ``efficiency_percent`` (average / peak),
/// ``spikes`` [{``t``, ``mb``, ``jump_mb``}], ``leak`` {``slope_mb_per_min``, ``r2``,
/// ``steady``, ``sentence``} or None. An empty, truncated or foreign file raises
/// ``InvalidArgumentError``, a missing one ``MemwardenIOError``, each naming the file.
#[pyfunction]
pub fn analyze<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let a = run(py, || mon::analyze_file(&path))?;
    to_py(py, serde_json::to_value(a))
}
