//! `memwarden.ChunkedDatabaseProcessor` over `memwarden_core::chunk`.
//!
//! A connection string opens the core's native drivers; a DB-API connection object becomes a
//! core [`Backend`] ([`DbApiBackend`]) that runs the core's keyset queries through it. The
//! rows of a DB-API page stay Python objects: the core gets their count, first and last key
//! and an estimate of their size (`host_rows`), and the callback gets the rows themselves.
//!
//! `process` / `process_query` run the core with the GIL released; every callback takes it
//! again. Native fetching runs on the core's worker threads, so with `prefetch: true` (or
//! `parallel_chunks` > 1) the next chunk is read while Python handles the current one.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::{ffi, intern};
use serde_json::{Map, Value as Json};

use memwarden_core::chunk::{
    Backend, Batch, CHUNK_KEYS, ChunkConfig, ChunkInfo, ChunkTx, ChunkedDatabaseProcessor, Dialect, Handlers,
    ParamStyle, Progress, QueryOptions, RowFormat, Value, missing_key,
};
use memwarden_core::{self as mw, ErrorKind};

use crate::convert::{config_entries, json_to_py, py_to_json_for, type_name};
use crate::errors::{config_error, to_pyerr};
use crate::manager::PyMemoryManager;

const COMPONENT: &str = "ChunkedDatabaseProcessor";
/// Keys only the Python binding knows; they never reach the core.
const BINDING_KEYS: [&str; 3] = ["progress_callback", "error_callback", "manager"];

// ---- values ------------------------------------------------------------------------

fn value_to_py<'py>(py: Python<'py>, v: &Value) -> Bound<'py, PyAny> {
    match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        // SAFETY: PyLong_FromLongLong returns a new reference or NULL with an exception set;
        // NULL (out of memory) is turned into None by `from_owned_ptr_or_opt`.
        Value::Int(i) => unsafe {
            Bound::from_owned_ptr_or_opt(py, ffi::PyLong_FromLongLong(*i)).unwrap_or_else(|| py.None().into_bound(py))
        },
        Value::Real(r) => PyFloat::new(py, *r).into_any(),
        Value::Text(s) => PyString::new(py, s).into_any(),
        Value::Blob(b) => PyBytes::new(py, b).into_any(),
    }
}

/// A Python value as a core value (keys, counts, parameters).
fn py_to_value(obj: &Bound<'_, PyAny>) -> Value {
    if obj.is_none() {
        return Value::Null;
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Value::Bool(b.is_true());
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Value::Int(i);
        }
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        return Value::Real(f.value());
    } else if let Ok(s) = obj.cast::<PyString>() {
        return Value::Text(s.to_cow().map(|c| c.into_owned()).unwrap_or_default());
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        return Value::Blob(b.as_bytes().to_vec());
    } else if let Ok(b) = obj.cast::<PyByteArray>() {
        return Value::Blob(b.to_vec());
    }
    Value::Text(obj.str().map(|s| s.to_string()).unwrap_or_default())
}

/// One row of a core batch as a tuple or a dict (keys: the batch's column names, made once).
fn core_row<'py>(
    py: Python<'py>,
    row: &[Value],
    names: Option<&[Bound<'py, PyString>]>,
) -> PyResult<Bound<'py, PyAny>> {
    match names {
        None => {
            // Straight into a new tuple: no iterator adapter, no length checks per item.
            // SAFETY: PyTuple_New returns a new tuple of row.len() NULL slots (or NULL with an
            // exception set); PyTuple_SetItem steals each new reference into a fresh slot.
            unsafe {
                let t = ffi::PyTuple_New(row.len() as ffi::Py_ssize_t);
                let t = Bound::from_owned_ptr_or_err(py, t)?;
                for (i, v) in row.iter().enumerate() {
                    ffi::PyTuple_SetItem(t.as_ptr(), i as ffi::Py_ssize_t, value_to_py(py, v).into_ptr());
                }
                Ok(t)
            }
        }
        Some(names) => {
            let d = PyDict::new(py);
            for (n, v) in names.iter().zip(row) {
                d.set_item(n, value_to_py(py, v))?;
            }
            Ok(d.into_any())
        }
    }
}

/// Every row of a core batch, in a list built in place.
fn core_rows<'py>(
    py: Python<'py>,
    batch: &Batch,
    names: Option<&[Bound<'py, PyString>]>,
) -> PyResult<Bound<'py, PyList>> {
    // SAFETY: PyList_New returns a list of `rows` NULL slots (or NULL with an exception set);
    // every slot is filled with a stolen new reference before the list is used, and on an
    // error the partly filled list is dropped (list_dealloc skips NULL slots).
    unsafe {
        let l = ffi::PyList_New(batch.len() as ffi::Py_ssize_t);
        let l = Bound::from_owned_ptr_or_err(py, l)?;
        for (i, row) in batch.iter_rows().enumerate() {
            ffi::PyList_SetItem(l.as_ptr(), i as ffi::Py_ssize_t, core_row(py, row, names)?.into_ptr());
        }
        Ok(l.cast_into_unchecked())
    }
}

/// A DB-API row (tuple, list, sqlite3.Row, dict) in the requested format.
fn host_row<'py>(
    row: Bound<'py, PyAny>,
    names: &[Bound<'py, PyString>],
    format: RowFormat,
) -> PyResult<Bound<'py, PyAny>> {
    let py = row.py();
    match format {
        RowFormat::Tuple => {
            if row.is_exact_instance_of::<PyTuple>() {
                return Ok(row);
            }
            if let Ok(d) = row.cast::<PyDict>() {
                return Ok(PyTuple::new(py, d.values())?.into_any());
            }
            Ok(PyTuple::new(py, row.try_iter()?.collect::<PyResult<Vec<_>>>()?)?.into_any())
        }
        RowFormat::Dict => {
            if row.is_exact_instance_of::<PyDict>() {
                return Ok(row);
            }
            let d = PyDict::new(py);
            for (n, v) in names.iter().zip(row.try_iter()?) {
                d.set_item(n, v?)?;
            }
            Ok(d.into_any())
        }
    }
}

// ---- DB-API connections --------------------------------------------------------------

/// The rows of the last page a DB-API connection returned, for the callback.
#[derive(Default)]
struct HostRows {
    rows: Option<Py<PyList>>,
    columns: Vec<Py<PyString>>,
}

type HostSlot = Arc<Mutex<HostRows>>;

/// A DB-API 2.0 connection (sqlite3, psycopg, psycopg2, pymysql, MySQLdb, mariadb) as a core
/// backend.
struct DbApiBackend {
    conn: Py<PyAny>,
    dialect: Dialect,
    style: ParamStyle,
    rows: HostSlot,
    /// The driver's last exception, kept as the `__cause__` of the DatabaseError.
    db_error: Arc<Mutex<Option<PyErr>>>,
    /// The chunk's transaction was opened with an explicit BEGIN (an autocommit connection),
    /// so it ends with an explicit COMMIT / ROLLBACK rather than the connection's methods.
    explicit_tx: bool,
}

/// `%` doubled everywhere except in the last `n` `%s` placeholders (the core's, which come
/// after the caller's query), so a `LIKE 'a%'` in the query survives `format` parameter style.
fn escape_percent(sql: &str, n: usize) -> String {
    let mut keep = Vec::with_capacity(n);
    let mut end = sql.len();
    while keep.len() < n {
        match sql[..end].rfind("%s") {
            Some(at) => {
                keep.push(at);
                end = at;
            }
            None => break,
        }
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if keep.contains(&i) {
                out.push_str("%s");
                i += 2;
                continue;
            }
            out.push_str("%%");
            i += 1;
            continue;
        }
        let ch = sql[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

impl DbApiBackend {
    fn detect(conn: &Bound<'_, PyAny>) -> PyResult<(Dialect, ParamStyle)> {
        let py = conn.py();
        let module: String = conn.get_type().getattr(intern!(py, "__module__"))?.extract()?;
        let root = module.split('.').next().unwrap_or_default().to_owned();
        let (dialect, default_style) = match root.as_str() {
            "sqlite3" | "_sqlite3" => (Dialect::Sqlite, ParamStyle::Question),
            "psycopg" | "psycopg2" => (Dialect::Postgres, ParamStyle::Format),
            "pymysql" | "MySQLdb" | "mariadb" | "mysql" => (Dialect::Mysql, ParamStyle::Format),
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "ChunkedDatabaseProcessor: connection must be a URL or DSN string (sqlite:///path.db, \
                     postgres://..., mysql://..., pgsql:host=...) or a DB-API connection from sqlite3, psycopg, \
                     psycopg2, pymysql, MySQLdb or mariadb; got a {} from module '{module}'",
                    type_name(conn)
                )));
            }
        };
        let style = py
            .import(if root == "_sqlite3" { "sqlite3" } else { root.as_str() })
            .and_then(|m| m.getattr(intern!(py, "paramstyle")))
            .and_then(|s| s.extract::<String>())
            .ok()
            .and_then(|s| ParamStyle::parse(&s).ok())
            .unwrap_or(default_style);
        Ok((dialect, style))
    }

    fn run<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: &[Value],
    ) -> PyResult<(Bound<'py, PyList>, Vec<Bound<'py, PyString>>)> {
        let cur = self.conn.bind(py).call_method0(intern!(py, "cursor"))?;
        let result = (|| {
            if params.is_empty() {
                cur.call_method1(intern!(py, "execute"), (sql,))?;
            } else {
                let sql = if self.style == ParamStyle::Format { escape_percent(sql, params.len()) } else { sql.into() };
                let args = PyTuple::new(py, params.iter().map(|v| value_to_py(py, v)))?;
                cur.call_method1(intern!(py, "execute"), (sql, args))?;
            }
            let desc = cur.getattr(intern!(py, "description"))?;
            let mut names = Vec::new();
            if !desc.is_none() {
                for d in desc.try_iter()? {
                    let name = d?.get_item(0)?;
                    names.push(match name.cast_into::<PyString>() {
                        Ok(s) => s,
                        Err(e) => e.into_inner().str()?,
                    });
                }
            }
            let rows = if names.is_empty() {
                PyList::empty(py)
            } else {
                let got = cur.call_method0(intern!(py, "fetchall"))?;
                match got.cast_into::<PyList>() {
                    Ok(l) => l,
                    Err(e) => PyList::new(py, e.into_inner().try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
                }
            };
            Ok((rows, names))
        })();
        let _ = cur.call_method0(intern!(py, "close"));
        result
    }

    fn query_py(
        &mut self,
        py: Python<'_>,
        sql: &str,
        params: &[Value],
        key: Option<&str>,
        meta: bool,
    ) -> mw::Result<Batch> {
        let (rows, names) = self.run(py, sql, params).map_err(|e| {
            let msg = format!("{} query failed: {e}", self.dialect.as_str());
            *self.db_error.lock() = Some(e);
            mw::Error::new(ErrorKind::Database, msg)
        })?;
        let columns: Arc<[String]> = names.iter().map(|n| n.to_string()).collect();
        let ki = match key {
            None => None,
            Some(k) => Some(columns.iter().position(|c| c == k).ok_or_else(|| missing_key(k, &columns))?),
        };
        let cell = |row: &Bound<'_, PyAny>, i: usize| -> mw::Result<Value> {
            let v = match row.cast::<PyDict>() {
                Ok(d) => d.get_item(&names[i]).ok().flatten(),
                Err(_) => row.get_item(i).ok(),
            };
            v.map(|v| py_to_value(&v))
                .ok_or_else(|| mw::Error::new(ErrorKind::Database, format!("a row has no column '{}'", columns[i])))
        };
        if meta {
            let mut values = Vec::with_capacity(rows.len() * columns.len());
            for row in rows.iter() {
                for i in 0..columns.len() {
                    values.push(cell(&row, i)?);
                }
            }
            return Ok(Batch::from_values(columns, values, ki));
        }
        let n = rows.len();
        let (mut first_key, mut last_key, mut bytes) = (None, None, 0);
        if n > 0 {
            let first = rows.get_item(0).map_err(|e| mw::Error::callback(e.to_string()))?;
            let last = rows.get_item(n - 1).map_err(|e| mw::Error::callback(e.to_string()))?;
            if let Some(k) = ki {
                first_key = Some(cell(&first, k)?);
                last_key = Some(cell(&last, k)?);
            }
            bytes = n * estimate_row_bytes(&first);
        }
        let mut slot = self.rows.lock();
        slot.rows = Some(rows.unbind());
        slot.columns = names.into_iter().map(Bound::unbind).collect();
        Ok(Batch { columns, values: Vec::new(), rows: n, first_key, last_key, bytes, host_rows: true })
    }
}

/// `sys.getsizeof` of a row and its values (shared small ints and interned strings counted too).
fn estimate_row_bytes(row: &Bound<'_, PyAny>) -> usize {
    let py = row.py();
    let Ok(getsizeof) = py.import(intern!(py, "sys")).and_then(|s| s.getattr(intern!(py, "getsizeof"))) else {
        return 0;
    };
    let size = |o: &Bound<'_, PyAny>| getsizeof.call1((o,)).and_then(|n| n.extract::<usize>()).unwrap_or(0);
    let mut total = size(row);
    let values = match row.cast::<PyDict>() {
        Ok(d) => d.values().into_any(),
        Err(_) => row.clone(),
    };
    if let Ok(it) = values.try_iter() {
        for v in it.flatten() {
            total += size(&v);
        }
    }
    total
}

/// Whether a DB-API connection commits every statement by itself (then BEGIN is explicit).
fn autocommit_on(conn: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = conn.py();
    if let Ok(sqlite_in_tx) = conn.getattr(intern!(py, "in_transaction"))
        && conn.get_type().getattr(intern!(py, "__module__"))?.extract::<String>()?.contains("sqlite3")
    {
        // sqlite3 begins implicitly only before writes: outside a transaction, BEGIN ourselves.
        return Ok(!sqlite_in_tx.is_truthy()?);
    }
    if let Ok(f) = conn.getattr(intern!(py, "get_autocommit")) {
        return f.call0()?.is_truthy(); // pymysql, MySQLdb
    }
    match conn.getattr(intern!(py, "autocommit")) {
        Ok(v) if v.is_instance_of::<PyBool>() => v.is_truthy(), // psycopg, psycopg2, mariadb
        _ => Ok(false),
    }
}

impl DbApiBackend {
    fn tx_step(&mut self, step: &str) -> mw::Result<()> {
        let r = Python::try_attach(|py| -> PyResult<()> {
            let conn = self.conn.bind(py);
            let sql_step = |sql: &str| -> PyResult<()> {
                let cur = conn.call_method0(intern!(py, "cursor"))?;
                let r = cur.call_method1(intern!(py, "execute"), (sql,)).map(drop);
                let _ = cur.call_method0(intern!(py, "close"));
                r
            };
            match step {
                "begin" => {
                    // Ends the transaction the reads may have opened (psycopg opens one on
                    // SELECT), so the chunk's writes start a transaction of their own.
                    conn.call_method0(intern!(py, "commit"))?;
                    self.explicit_tx = autocommit_on(conn)?;
                    if self.explicit_tx {
                        sql_step(match self.dialect {
                            Dialect::Sqlite => "BEGIN IMMEDIATE",
                            Dialect::Postgres => "BEGIN",
                            Dialect::Mysql => "START TRANSACTION",
                        })?;
                    }
                    Ok(())
                }
                "commit" if self.explicit_tx => sql_step("COMMIT"),
                "rollback" if self.explicit_tx => sql_step("ROLLBACK"),
                _ => conn.call_method0(step).map(drop),
            }
        });
        match r {
            None => Err(mw::Error::new(ErrorKind::Closed, "the Python interpreter is shutting down")),
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                let msg = format!("{} {step} failed: {e}", self.dialect.as_str());
                *self.db_error.lock() = Some(e);
                Err(mw::Error::new(ErrorKind::Database, msg))
            }
        }
    }
}

impl Backend for DbApiBackend {
    fn dialect(&self) -> Dialect {
        self.dialect
    }
    fn param_style(&self) -> ParamStyle {
        self.style
    }
    fn begin(&mut self) -> mw::Result<()> {
        self.tx_step("begin")
    }
    fn commit(&mut self) -> mw::Result<()> {
        self.tx_step("commit")
    }
    fn rollback(&mut self) -> mw::Result<()> {
        self.tx_step("rollback")
    }
    fn query(&mut self, sql: &str, params: &[Value], key: Option<&str>, meta: bool) -> mw::Result<Batch> {
        Python::try_attach(|py| self.query_py(py, sql, params, key, meta))
            .unwrap_or_else(|| Err(mw::Error::new(ErrorKind::Closed, "the Python interpreter is shutting down")))
    }
}

// ---- the chunk's transaction -------------------------------------------------------------

/// Where a `ChunkTx` handle finds the core's transaction: the address of the running
/// `ChunkTx` while its callback runs, 0 afterwards.
type TxSlot = Arc<Mutex<usize>>;

/// `tx` of the same-transaction mode (`checkpoint_table`): the transaction of one chunk, valid
/// during the callback it is passed to. What runs through it commits together with the
/// chunk's checkpoint, or not at all.
#[pyclass(name = "ChunkTransaction", module = "memwarden", frozen)]
pub struct PyChunkTx {
    slot: TxSlot,
    dialect: Dialect,
}

impl PyChunkTx {
    fn run<'py>(&self, py: Python<'py>, sql: &str, params: Option<&Bound<'py, PyAny>>) -> PyResult<Batch> {
        let params: Vec<Value> = match params.filter(|p| !p.is_none()) {
            None => Vec::new(),
            Some(p)
                if p.is_instance_of::<PyString>() || p.is_instance_of::<PyDict>() || p.is_instance_of::<PyBytes>() =>
            {
                return Err(PyTypeError::new_err(format!(
                    "ChunkTransaction.execute(): params must be a sequence (list or tuple) of values, got {}",
                    type_name(p)
                )));
            }
            Some(p) => p
                .try_iter()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "ChunkTransaction.execute(): params must be a sequence (list or tuple) of values, got {}",
                        type_name(p)
                    ))
                })?
                .map(|v| v.map(|v| py_to_value(&v)))
                .collect::<PyResult<_>>()?,
        };
        let slot = self.slot.clone();
        let r = py.detach(move || {
            let g = slot.lock();
            if *g == 0 {
                return Err(mw::Error::new(
                    ErrorKind::Closed,
                    "ChunkTransaction: this chunk's transaction has ended (use tx only inside its callback)",
                ));
            }
            // SAFETY: a non-zero slot holds the address of the ChunkTx of the callback that is
            // running; it is reset to 0 (under this lock) before that ChunkTx goes away, and the
            // lock keeps two threads from using it at once.
            let tx = unsafe { &mut *(*g as *mut ChunkTx<'static>) };
            tx.query(sql, &params)
        });
        r.map_err(|e| to_pyerr(py, e, None))
    }
}

#[pymethods]
impl PyChunkTx {
    /// Runs `sql` with `params` (a sequence; placeholders as the connection writes them: `?`
    /// for SQLite and MySQL URLs, `$1` for PostgreSQL URLs, the driver's own for a DB-API
    /// connection) inside the chunk's transaction.
    #[pyo3(signature = (sql, params = None))]
    fn execute(&self, py: Python<'_>, sql: &str, params: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.run(py, sql, params).map(drop)
    }

    /// As `execute`, and returns the rows as a list of dicts.
    #[pyo3(signature = (sql, params = None))]
    fn query<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let b = self.run(py, sql, params)?;
        let names: Vec<Bound<'_, PyString>> = b.columns.iter().map(|c| PyString::intern(py, c)).collect();
        core_rows(py, &b, Some(&names))
    }

    /// The connection's SQL dialect: 'sqlite', 'postgres' or 'mysql'.
    #[getter]
    fn dialect(&self) -> &'static str {
        self.dialect.as_str()
    }

    fn __repr__(&self) -> String {
        let open = *self.slot.lock() != 0;
        format!("<memwarden.ChunkTransaction {} ({})>", self.dialect.as_str(), if open { "open" } else { "ended" })
    }
}

// ---- the processor ---------------------------------------------------------------------

/// The core processor, movable to the thread that releases the GIL.
struct SendProc(ChunkedDatabaseProcessor);

// SAFETY: the only part of a ChunkedDatabaseProcessor that is not `Send` is a host backend
// (`Box<dyn Backend>`, whose trait object carries no `Send` bound). Here that backend is
// always a `DbApiBackend`, which holds only `Py<...>` handles and `Arc<Mutex<...>>`s (all
// `Send`) and touches Python only after taking the GIL. Native backends are `Send`.
unsafe impl Send for SendProc {}

/// The Python callables set on a processor.
#[derive(Default)]
struct Callbacks {
    /// The constructor's `progress_callback(processed, total)`.
    progress: Option<Py<PyAny>>,
    /// `set_progress_callback(fn(stats))`.
    progress_stats: Option<Py<PyAny>>,
    /// `error_callback(error, chunk) -> bool`, from the constructor or `set_error_callback`.
    error: Option<Py<PyAny>>,
}

thread_local! {
    static THREAD_MARK: u8 = const { 0 };
}

fn thread_id() -> usize {
    THREAD_MARK.with(|m| m as *const u8 as usize)
}

/// `ChunkedDatabaseProcessor(connection, config=None, /, **options)`: walks a query's rows in
/// chunks by keyset pagination (`WHERE key > last ORDER BY key LIMIT n`), so a callback
/// that updates or deletes rows never makes a row be skipped or seen twice.
///
/// `connection`: a URL or PDO DSN (`sqlite:///path.db`, `postgres://user@host/db`,
/// `mysql://user@host/db`, `pgsql:host=...;dbname=...`), read with the native drivers on
/// worker threads; or a DB-API connection (sqlite3, psycopg, psycopg2, pymysql, MySQLdb,
/// mariadb): the same keyset queries then run through it, on the calling thread.
///
/// Options: the core's (`chunk_size`, `memory_limit` per chunk, `timeout`, `retry_attempts`,
/// `retry_delay`, `parallel_chunks`, `key_column`, `pagination`, `checkpoint`,
/// `checkpoint_fsync`, `exact_count`, `prefetch`, `row_format` 'dict' or 'tuple', `user`,
/// `password`, `connect_timeout`, `allow_shared_sqlite_file`) plus `progress_callback(processed, total)`,
/// `error_callback(error, chunk) -> bool` and `manager` (a `MemoryManager` whose cleanup runs
/// when a chunk exceeds `memory_limit`).
///
/// A failing callback's chunk is retried `retry_attempts` times; then `error_callback` decides
/// (True: skip it and go on; False or none set: stop). When the run stops because of a Python
/// exception, that exception object is raised. Warnings (OFFSET pagination, reduced
/// parallelism) are emitted with `warnings.warn`.
#[pyclass(name = "ChunkedDatabaseProcessor", module = "memwarden", frozen)]
pub struct PyChunkedDatabaseProcessor {
    core: Mutex<SendProc>,
    callbacks: Mutex<Callbacks>,
    host: Option<HostSlot>,
    db_error: Arc<Mutex<Option<PyErr>>>,
    row_format: RowFormat,
    /// `checkpoint_table` is set: callbacks get `(rows, tx)`.
    tx_mode: bool,
    /// The thread running `process`/`process_query` (0: none), to refuse a re-entrant call.
    running: AtomicUsize,
    /// The latest progress of a running call, for `get_stats()` from inside a callback.
    snapshot: Arc<Mutex<Option<Json>>>,
}

/// How rows reach the user's callback.
enum Sink {
    Row(Py<PyAny>),
    Batch(Py<PyAny>),
}

fn callable(py: Python<'_>, what: &str, f: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    if f.is_callable() {
        Ok(f.clone().unbind())
    } else {
        Err(config_error(
            py,
            format!("{COMPONENT}: invalid value for '{what}': expected a callable, got {}", type_name(f)),
        ))
    }
}

impl PyChunkedDatabaseProcessor {
    fn run_query<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        sink: Sink,
        opts: QueryOptions,
    ) -> PyResult<Bound<'py, PyAny>> {
        let me = thread_id();
        if self.running.load(Ordering::Acquire) == me {
            return Err(PyRuntimeError::new_err(
                "ChunkedDatabaseProcessor: process() was called from inside one of its own callbacks; use another \
                 processor for a nested walk",
            ));
        }
        let (progress, progress_stats, on_error) = {
            let c = self.callbacks.lock();
            (
                c.progress.as_ref().map(|f| f.clone_ref(py)),
                c.progress_stats.as_ref().map(|f| f.clone_ref(py)),
                c.error.as_ref().map(|f| f.clone_ref(py)),
            )
        };
        let format = self.row_format;
        let tx_mode = self.tx_mode;
        let host = self.host.clone();
        let snapshot = self.snapshot.clone();
        *self.db_error.lock() = None;
        let (result, pending, warnings) = py.detach(|| {
            let mut core = self.core.lock();
            self.running.store(me, Ordering::Release);
            let pending: RefCell<Option<PyErr>> = RefCell::new(None);
            let keep = |e: PyErr| -> mw::Error {
                let msg = e.to_string();
                *pending.borrow_mut() = Some(e);
                mw::Error::callback(msg)
            };
            let mut on_batch = |batch: &Batch| -> mw::Result<()> {
                let r = Python::attach(|py| deliver(py, batch, &sink, format, host.as_ref(), None));
                match r {
                    Ok(()) => {
                        *pending.borrow_mut() = None;
                        Ok(())
                    }
                    Err(e) => Err(keep(e)),
                }
            };
            let mut on_batch_tx = |batch: &Batch, tx: &mut ChunkTx<'_>| -> mw::Result<()> {
                let dialect = tx.dialect();
                let slot: TxSlot = Arc::new(Mutex::new(tx as *mut ChunkTx<'_> as usize));
                let r = Python::attach(|py| -> PyResult<()> {
                    let handle = Bound::new(py, PyChunkTx { slot: slot.clone(), dialect })?;
                    deliver(py, batch, &sink, format, host.as_ref(), Some(handle.as_any()))
                });
                // The handle may outlive the callback (kept by the user): it stops working now.
                *slot.lock() = 0;
                match r {
                    Ok(()) => {
                        *pending.borrow_mut() = None;
                        Ok(())
                    }
                    Err(e) => Err(keep(e)),
                }
            };
            let mut on_progress = |p: &Progress| -> mw::Result<()> {
                let json = p.to_json();
                let r = Python::attach(|py| -> PyResult<()> {
                    if let Some(f) = &progress {
                        f.bind(py).call1((p.processed, p.total))?;
                    }
                    if let Some(f) = &progress_stats {
                        f.bind(py).call1((json_to_py(py, &json)?,))?;
                    }
                    Ok(())
                });
                *snapshot.lock() = Some(json);
                r.map_err(keep)
            };
            let mut on_err = |e: &mw::Error, info: &ChunkInfo| -> mw::Result<bool> {
                let Some(f) = &on_error else { return Ok(false) };
                let r = Python::attach(|py| -> PyResult<bool> {
                    let err = match pending.borrow().as_ref() {
                        Some(p) => p.value(py).clone().into_any(),
                        None => to_pyerr(py, e.clone(), None).value(py).clone().into_any(),
                    };
                    let chunk = json_to_py(py, &info.to_json())?;
                    f.bind(py).call1((err, chunk))?.is_truthy()
                });
                r.map_err(keep)
            };
            // No progress callback: the core then skips counting the rows up front.
            let wants_progress = progress.is_some() || progress_stats.is_some();
            let mut h = Handlers {
                on_batch: &mut on_batch,
                on_batch_tx: if tx_mode { Some(&mut on_batch_tx) } else { None },
                on_progress: if wants_progress { Some(&mut on_progress) } else { None },
                on_error: Some(&mut on_err),
            };
            let result = core.0.process_query(sql, &opts, &mut h);
            let warnings = core.0.stats().warnings.clone();
            *snapshot.lock() = None;
            self.running.store(0, Ordering::Release);
            (result, pending.into_inner(), warnings)
        });
        if !warnings.is_empty() {
            let w = py.import(intern!(py, "warnings"))?;
            for msg in &warnings {
                w.call_method1(
                    intern!(py, "warn"),
                    (format!("ChunkedDatabaseProcessor: {msg}"), py.get_type::<pyo3::exceptions::PyUserWarning>(), 3),
                )?;
            }
        }
        match result {
            Ok(stats) => json_to_py(py, &stats.to_json()),
            Err(e) => {
                if e.kind() == ErrorKind::Callback
                    && let Some(p) = pending
                {
                    return Err(p);
                }
                let cause = if e.kind() == ErrorKind::Database { self.db_error.lock().take() } else { None };
                let err = to_pyerr(py, e, None);
                if let Some(c) = cause {
                    err.set_cause(py, Some(c));
                }
                Err(err)
            }
        }
    }
}

/// Hands one chunk to the user's callback, with the GIL; in the same-transaction mode with
/// the chunk's transaction as the second argument.
fn deliver(
    py: Python<'_>,
    batch: &Batch,
    sink: &Sink,
    format: RowFormat,
    host: Option<&HostSlot>,
    tx: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let call = |f: &Bound<'_, PyAny>, arg: Bound<'_, PyAny>| match tx {
        Some(t) => f.call1((arg, t)).map(drop),
        None => f.call1((arg,)).map(drop),
    };
    let call_row = call;
    if batch.host_rows {
        let (rows, cols) = match host {
            Some(h) => {
                let h = h.lock();
                (
                    h.rows.as_ref().map(|r| r.clone_ref(py)),
                    h.columns.iter().map(|c| c.bind(py).clone()).collect::<Vec<_>>(),
                )
            }
            None => (None, Vec::new()),
        };
        let rows = rows.ok_or_else(|| PyRuntimeError::new_err("ChunkedDatabaseProcessor: a chunk's rows were lost"))?;
        let rows = rows.bind(py);
        match sink {
            Sink::Row(f) => {
                let f = f.bind(py);
                for row in rows.iter() {
                    call_row(f, host_row(row, &cols, format)?)?;
                }
            }
            Sink::Batch(f) => {
                let out = PyList::empty(py);
                for row in rows.iter() {
                    out.append(host_row(row, &cols, format)?)?;
                }
                call(f.bind(py), out.into_any())?;
            }
        }
        return Ok(());
    }
    let names: Option<Vec<Bound<'_, PyString>>> = match format {
        RowFormat::Dict => Some(batch.columns.iter().map(|c| PyString::intern(py, c)).collect()),
        RowFormat::Tuple => None,
    };
    let names = names.as_deref();
    match sink {
        Sink::Row(f) => {
            let f = f.bind(py);
            for row in batch.iter_rows() {
                call_row(f, core_row(py, row, names)?)?;
            }
        }
        Sink::Batch(f) => {
            call(f.bind(py), core_rows(py, batch, names)?.into_any())?;
        }
    }
    Ok(())
}

#[pymethods]
impl PyChunkedDatabaseProcessor {
    #[new]
    #[pyo3(signature = (connection, config = None, /, **options))]
    fn new(
        py: Python<'_>,
        connection: &Bound<'_, PyAny>,
        config: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut known: Vec<&str> = CHUNK_KEYS.to_vec();
        known.extend(BINDING_KEYS);
        let entries = config_entries(py, COMPONENT, config, options, &known)?;
        let mut json = Map::new();
        let mut callbacks = Callbacks::default();
        let mut manager = None;
        for (k, v) in entries {
            match k.as_str() {
                "progress_callback" | "error_callback" if v.is_none() => {}
                "progress_callback" => callbacks.progress = Some(callable(py, &k, &v)?),
                "error_callback" => callbacks.error = Some(callable(py, &k, &v)?),
                "manager" if v.is_none() => {}
                "manager" => {
                    manager = Some(
                        v.cast::<PyMemoryManager>()
                            .map_err(|_| {
                                config_error(
                                    py,
                                    format!(
                                        "{COMPONENT} config: invalid value for 'manager': expected a \
                                         memwarden.MemoryManager, got {}",
                                        type_name(&v)
                                    ),
                                )
                            })?
                            .get()
                            .core_arc(),
                    )
                }
                _ => {
                    let value = py_to_json_for(COMPONENT, &k, &v)?;
                    json.insert(k, value);
                }
            }
        }
        let cfg = ChunkConfig::from_json(&Json::Object(json)).map_err(|e| to_pyerr(py, e, None))?;
        let row_format = cfg.row_format;
        let tx_mode = cfg.checkpoint_table.is_some();
        let db_error: Arc<Mutex<Option<PyErr>>> = Arc::default();
        let (mut core, host) = if let Ok(s) = connection.cast::<PyString>() {
            let url = s.to_cow()?.into_owned();
            let core = py
                .detach(move || ChunkedDatabaseProcessor::open(&url, cfg).map(SendProc))
                .map_err(|e| to_pyerr(py, e, None))?;
            (core, None)
        } else {
            let (dialect, style) = DbApiBackend::detect(connection)?;
            let host: HostSlot = Arc::default();
            let backend = DbApiBackend {
                conn: connection.clone().unbind(),
                dialect,
                style,
                rows: host.clone(),
                db_error: db_error.clone(),
                explicit_tx: false,
            };
            let core =
                ChunkedDatabaseProcessor::with_backend(Box::new(backend), cfg).map_err(|e| to_pyerr(py, e, None))?;
            (SendProc(core), Some(host))
        };
        core.0.set_manager(manager);
        Ok(PyChunkedDatabaseProcessor {
            core: Mutex::new(core),
            callbacks: Mutex::new(callbacks),
            host,
            db_error,
            row_format,
            tx_mode,
            running: AtomicUsize::new(0),
            snapshot: Arc::default(),
        })
    }

    /// Calls `row_callback(row)` for every row of `sql` (a SELECT that includes the key
    /// column). A row is a dict (or a tuple with `row_format='tuple'`). An exception fails the
    /// row's chunk, which is retried from its first row. Returns the final statistics.
    fn process<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        row_callback: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let f = callable(py, "row_callback", row_callback)?;
        self.run_query(py, sql, Sink::Row(f), QueryOptions::default())
    }

    /// Calls `batch_callback(rows)` with each chunk (a list of rows). `options` (a dict) or the
    /// keywords: `batch_size` (this call's chunk size), `parallel` (True, or a number of
    /// workers). Returns the final statistics.
    #[pyo3(signature = (sql, batch_callback, options = None, /, *, batch_size = None, parallel = None))]
    fn process_query<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        batch_callback: &Bound<'py, PyAny>,
        options: Option<&Bound<'py, PyAny>>,
        batch_size: Option<&Bound<'py, PyAny>>,
        parallel: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let f = callable(py, "batch_callback", batch_callback)?;
        let mut json = match options.filter(|o| !o.is_none()) {
            None => Json::Object(Map::new()),
            Some(o) => {
                if !o.is_instance_of::<PyDict>() {
                    return Err(PyTypeError::new_err(format!(
                        "process_query(): options must be a dict or None, got {}",
                        type_name(o)
                    )));
                }
                py_to_json_for("processQuery options", "options", o)?
            }
        };
        for (k, v) in [("batch_size", batch_size), ("parallel", parallel)] {
            if let Some(v) = v.filter(|v| !v.is_none()) {
                if json.get(k).is_some() {
                    return Err(config_error(
                        py,
                        format!("process_query(): '{k}' is given both in options and as a keyword"),
                    ));
                }
                json[k] = py_to_json_for("processQuery options", k, v)?;
            }
        }
        let opts = QueryOptions::from_json(&json).map_err(|e| to_pyerr(py, e, None))?;
        self.run_query(py, sql, Sink::Batch(f), opts)
    }

    /// `fn(stats)` after every chunk, with `processed`, `total`, `percent`, `memory_usage` (MB),
    /// `estimated_remaining` (s), `rows_per_second`, ... (None removes it).
    fn set_progress_callback(&self, py: Python<'_>, callback: &Bound<'_, PyAny>) -> PyResult<()> {
        let f = if callback.is_none() { None } else { Some(callable(py, "callback", callback)?) };
        let old = std::mem::replace(&mut self.callbacks.lock().progress_stats, f);
        drop(old);
        Ok(())
    }

    /// `fn(error, chunk) -> bool` for a chunk that still fails after its retries: `error` is
    /// the exception, `chunk` a dict (`index`, `after_key`, `first_key`, `last_key`, `rows`,
    /// `attempts`). True skips the chunk (recorded in `failures`), False stops the run.
    fn set_error_callback(&self, py: Python<'_>, callback: &Bound<'_, PyAny>) -> PyResult<()> {
        let f = if callback.is_none() { None } else { Some(callable(py, "callback", callback)?) };
        let old = std::mem::replace(&mut self.callbacks.lock().error, f);
        drop(old);
        Ok(())
    }

    /// Statistics of the last (or running) call.
    fn get_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.running.load(Ordering::Acquire) == thread_id() {
            let snap = self.snapshot.lock().clone();
            return json_to_py(py, &snap.unwrap_or(Json::Null));
        }
        let json = py.detach(|| self.core.lock().0.stats().to_json());
        json_to_py(py, &json)
    }

    fn __repr__(&self) -> String {
        match self.core.try_lock() {
            Some(c) => format!("<memwarden.ChunkedDatabaseProcessor {}>", c.0.describe()),
            None => "<memwarden.ChunkedDatabaseProcessor (running)>".into(),
        }
    }
}
