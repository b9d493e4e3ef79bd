//! Python binding of memwarden: `memwarden._memwarden`, re-exported by `memwarden/__init__.py`.
//!
//! A thin shell over `memwarden-core`: Python values become JSON config or core arguments,
//! core results become dicts, core errors become one exception class per `ErrorKind`.
//! Long core work runs with the GIL released; Python callbacks take it again.

mod alert;
mod chunk;
mod container;
mod convert;
mod errors;
mod iterators;
mod manager;
mod monitor;
mod pool;
mod request;
mod stream;
mod tracker;

use pyo3::prelude::*;

use memwarden_core as mw;

/// Parses `"512M"`, `"1g"`, `"128K"` or plain bytes; `"-1"` (no limit) gives `None`.
#[pyfunction]
fn parse_size(py: Python<'_>, text: &str) -> PyResult<Option<u64>> {
    match mw::parse_size(text) {
        Ok(mw::Size::Bytes(b)) => Ok(Some(b)),
        Ok(mw::Size::Unlimited) => Ok(None),
        Err(e) => Err(errors::to_pyerr(py, e, None)),
    }
}

/// Formats bytes in the largest unit that divides them exactly: `536870912` -> `"512M"`.
#[pyfunction]
fn format_size(bytes: u64) -> String {
    mw::format_size(bytes)
}

#[pymodule]
#[pyo3(name = "_memwarden")]
fn memwarden_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", mw::VERSION)?;
    errors::register(m)?;
    m.add_class::<manager::PyMemoryManager>()?;
    m.add_class::<pool::PyMemoryPool>()?;
    m.add_class::<pool::PoolUse>()?;
    m.add_class::<container::PyLazyContainer>()?;
    container::install_fast_get(m.py())?;
    m.add_class::<container::PyScope>()?;
    m.add_class::<iterators::PyStreamingIterator>()?;
    m.add_class::<iterators::PyLazyIterator>()?;
    m.add_class::<iterators::LazyBatches>()?;
    m.add_class::<iterators::PyFilteredIterator>()?;
    m.add_class::<chunk::PyChunkedDatabaseProcessor>()?;
    m.add_class::<chunk::PyChunkTx>()?;
    m.add_class::<alert::PyMemoryAlertingService>()?;
    m.add_class::<request::PyRequestTracker>()?;
    m.add_class::<request::PyRequestToken>()?;
    m.add_class::<request::PyRequestReport>()?;
    m.add_class::<tracker::PyResourceTracker>()?;
    let at_exit = wrap_pyfunction!(tracker::resource_trackers_at_exit, m)?;
    m.py().import("atexit")?.call_method1("register", (&at_exit,))?;
    m.add_class::<monitor::PyMonitor>()?;
    m.add_function(wrap_pyfunction!(monitor::analyze, m)?)?;
    m.add_class::<stream::PyStreamProcessor>()?;
    m.add_function(wrap_pyfunction!(parse_size, m)?)?;
    m.add_function(wrap_pyfunction!(format_size, m)?)?;
    Ok(())
}
