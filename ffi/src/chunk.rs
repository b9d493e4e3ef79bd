//! `mw_chunk_*`, `mw_batch_*`, `mw_host_result_*`: the ChunkedDatabaseProcessor through the C ABI.

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use memwarden_core::chunk::{
    Backend, Batch, ChunkConfig, ChunkInfo, ChunkTx, ChunkedDatabaseProcessor, Dialect, Handlers, ParamStyle, Progress,
    QueryOptions, RowFormat, Value,
};
use memwarden_core::{Error, ErrorKind, config};
use parking_lot::Mutex;
use serde_json::Value as Json;

use crate::boundary::{
    FfiError, FfiResult, boundary, boundary_void, free_handle, get_handle, mw_status, need_out, new_handle, out_string,
    str_arg, write_out,
};
use crate::manager::{manager_handle, mw_manager};

/// A ChunkedDatabaseProcessor. Create with `mw_chunk_open` (a connection string) or
/// `mw_chunk_new_host` (queries run by your own callback), free with `mw_chunk_free`.
///
/// One run at a time: a call while a run is in progress (from another thread, or from inside
/// one of the run's callbacks) returns `MW_STATUS_INVALID_ARGUMENT` ("busy").
pub struct mw_chunk {
    inner: Mutex<ChunkedDatabaseProcessor>,
}

/// One chunk of rows, valid only during the callback it is passed to.
pub struct mw_batch {
    batch: *const Batch,
    names: Vec<CString>,
}

/// The transaction of one chunk in the same-transaction mode (config `checkpoint_table`),
/// valid only during the `on_batch_tx` callback it is passed to. What you run through
/// `mw_chunk_tx_execute` / `mw_chunk_tx_query` commits together with the chunk's checkpoint,
/// or not at all.
pub struct mw_tx {
    tx: *mut c_void,
}

/// The type of one value of a batch.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mw_value_type {
    Null = 0,
    Int = 1,
    Real = 2,
    Text = 3,
    Blob = 4,
    Bool = 5,
}

/// Handles one chunk; return 0, or any other value to fail the chunk (it is retried
/// `retry_attempts` times, then the error callback decides), reported as
/// `MW_STATUS_CALLBACK` "batch callback failed with status N".
pub type mw_batch_fn = Option<unsafe extern "C" fn(user: *mut c_void, batch: *const mw_batch) -> i32>;
/// Handles one chunk in the same-transaction mode (config `checkpoint_table`): the rows and
/// the chunk's transaction. Return 0 to commit, non-zero to roll the chunk back and fail it
/// (retried, then the error callback decides), as `mw_batch_fn`.
pub type mw_batch_tx_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, batch: *const mw_batch, tx: *mut mw_tx) -> i32>;
/// Handles one row (`mw_chunk_process`); as `mw_batch_fn`, for the row's whole chunk.
pub type mw_row_fn = Option<unsafe extern "C" fn(user: *mut c_void, batch: *const mw_batch, row: usize) -> i32>;
/// After every chunk, with the progress as JSON (`processed`, `total`, `memory_usage` (MB),
/// `estimated_remaining` (s), `rows_per_second`, ...); non-zero stops the run.
pub type mw_progress_fn = Option<unsafe extern "C" fn(user: *mut c_void, stats_json: *const c_char) -> i32>;
/// A chunk failed after its retries: `message` is the error, `chunk_json` the chunk
/// (`index`, `first_key`, `last_key`, `rows`, `attempts`). Return 1 to skip it and go on,
/// 0 to stop the run with that error, a negative value to stop with a callback error.
pub type mw_chunk_error_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, message: *const c_char, chunk_json: *const c_char) -> i32>;

/// The callbacks of one run. Unused ones may be NULL; `on_batch` (or, with `checkpoint_table`,
/// `on_batch_tx`) is required by `mw_chunk_process_query`, `on_row` by `mw_chunk_process`. All
/// run on the calling thread, one at a time, with `user`. With `checkpoint_table`,
/// `on_batch_tx` is called instead of `on_batch` when set; otherwise `on_batch` / `on_row`
/// still run inside the chunk's transaction (a host connection's own writes commit with it).
#[repr(C)]
pub struct mw_chunk_callbacks {
    pub on_batch: mw_batch_fn,
    pub on_row: mw_row_fn,
    pub on_progress: mw_progress_fn,
    pub on_error: mw_chunk_error_fn,
    pub user: *mut c_void,
    pub on_batch_tx: mw_batch_tx_fn,
}

/// The result a host query callback fills in (see `mw_chunk_new_host`).
pub struct mw_host_result {
    batch: Option<Batch>,
}

/// Runs `sql` for the processor on your own connection. `params_json` is a JSON array of the
/// parameters (integers, strings, null); `key_column` is NULL or the key column whose first
/// and last values the result must report. Fill `result` with `mw_host_result_set_json`, or,
/// when `meta` is false, keep the rows on your side and report them with
/// `mw_host_result_set_host_rows` (your batch callback then uses your own copy). Return 0,
/// or non-zero for a failed query (retried like any failed read).
pub type mw_host_query_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        sql: *const c_char,
        params_json: *const c_char,
        key_column: *const c_char,
        meta: bool,
        result: *mut mw_host_result,
    ) -> i32,
>;

struct HostBackend {
    f: unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *const c_char, bool, *mut mw_host_result) -> i32,
    user: *mut c_void,
    dialect: Dialect,
    style: ParamStyle,
}

// Safety: a host backend is only called from the thread that runs `mw_chunk_process*` (host
// connections never go to worker threads), under the processor's lock.
unsafe impl Send for HostBackend {}

fn cstring(s: &str, what: &str) -> memwarden_core::Result<CString> {
    CString::new(s).map_err(|_| Error::invalid_argument(format!("{what} contains a NUL byte")))
}

impl Backend for HostBackend {
    fn dialect(&self) -> Dialect {
        self.dialect
    }
    fn param_style(&self) -> ParamStyle {
        self.style
    }
    fn query(&mut self, sql: &str, params: &[Value], key: Option<&str>, meta: bool) -> memwarden_core::Result<Batch> {
        let sql_c = cstring(sql, "query")?;
        let params_c = cstring(&Json::Array(params.iter().map(Value::to_json).collect()).to_string(), "parameters")?;
        let key_c = key.map(|k| cstring(k, "key column")).transpose()?;
        let mut result = mw_host_result { batch: None };
        // Safety: the host's callback with its user pointer and strings/result valid for the call.
        let rc = unsafe {
            (self.f)(
                self.user,
                sql_c.as_ptr(),
                params_c.as_ptr(),
                key_c.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
                meta,
                &mut result,
            )
        };
        if rc != 0 {
            return Err(Error::new(ErrorKind::Database, format!("host query callback failed with status {rc}")));
        }
        let batch = result.batch.ok_or_else(|| {
            Error::callback("host query callback returned 0 without setting a result (mw_host_result_set_*)")
        })?;
        if meta && batch.host_rows {
            return Err(Error::callback("this query's rows are needed by memwarden: use mw_host_result_set_json"));
        }
        if let Some(k) = key
            && batch.column_index(k).is_none()
            && !batch.columns.is_empty()
        {
            return Err(memwarden_core::chunk::missing_key(k, &batch.columns));
        }
        Ok(batch)
    }
}

fn chunk(p: *const mw_chunk) -> FfiResult<Arc<mw_chunk>> {
    get_handle(p, "chunk")
}

fn read_config(json: *const c_char) -> FfiResult<ChunkConfig> {
    let v = if json.is_null() {
        Json::Null
    } else {
        // Safety: NUL-terminated per the contract.
        config::parse_json("ChunkedDatabaseProcessor", unsafe { str_arg(json, "config_json") }?)?
    };
    Ok(ChunkConfig::from_json(&v)?)
}

/// Connects to `connection`: `sqlite:///path.db`, `sqlite::memory:`, `postgres://user@host/db`,
/// `mysql://user@host/db`, or a PDO DSN (`sqlite:/path`, `pgsql:host=..;dbname=..`,
/// `mysql:host=..;dbname=..`; with `user` / `password` in the config).
///
/// `config_json` (NULL or `""` for defaults): `chunk_size` (1000), `memory_limit` (`"128M"`
/// per chunk), `timeout` (300 s per query), `retry_attempts` (3), `retry_delay` (0.1 s,
/// doubled per retry), `parallel_chunks` (1), `key_column` (the table's primary key),
/// `pagination` (`"keyset"`, `"cursor"` (PostgreSQL), `"offset"`), `checkpoint` (a file path),
/// `checkpoint_fsync`, `checkpoint_table` (the same-transaction mode: a table name; each
/// chunk's writes through `on_batch_tx`'s `mw_tx` and the run's checkpoint row commit in one
/// transaction, so a resume after a crash applies every row exactly once), `exact_count`,
/// `prefetch`, `row_format`, `user`, `password`, `connect_timeout` (10 s),
/// `allow_shared_sqlite_file` (false: a SQLite file this process already holds open outside
/// memwarden, through another SQLite library, is refused with `MW_STATUS_INVALID_ARGUMENT`,
/// because the two libraries do not see each other's locks).
///
/// Returns `MW_STATUS_INVALID_ARGUMENT` for a malformed connection string,
/// `MW_STATUS_DATABASE` when the server cannot be reached, `MW_STATUS_INVALID_CONFIG` for a bad
/// config; the message names what was wrong (passwords masked).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_chunk_open(
    connection: *const c_char,
    config_json: *const c_char,
    out: *mut *mut mw_chunk,
) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        // Safety: NUL-terminated per the contract.
        let conn = unsafe { str_arg(connection, "connection") }?;
        let cfg = read_config(config_json)?;
        let p = ChunkedDatabaseProcessor::open(conn, cfg)?;
        let h = new_handle(mw_chunk { inner: Mutex::new(p) });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// A processor whose queries run through `query` on your own connection (PHP's PDO, say).
/// `dialect` is `"sqlite"`, `"postgres"` or `"mysql"`; `param_style` is `"qmark"` (`?`),
/// `"format"` (`%s`) or `"numeric_dollar"` (`$1`). Such a connection serves one thread, so
/// `parallel_chunks` above 1 is reduced to 1 with a warning in the stats. `user` is passed
/// to `query` and not freed by the library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_chunk_new_host(
    dialect: *const c_char,
    param_style: *const c_char,
    query: mw_host_query_fn,
    user: *mut c_void,
    config_json: *const c_char,
    out: *mut *mut mw_chunk,
) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let f = query.ok_or_else(|| FfiError::null("query"))?;
        // Safety: NUL-terminated per the contract.
        let dialect = Dialect::parse(unsafe { str_arg(dialect, "dialect") }?)?;
        // Safety: as above.
        let style = ParamStyle::parse(unsafe { str_arg(param_style, "param_style") }?)?;
        let cfg = read_config(config_json)?;
        let p = ChunkedDatabaseProcessor::with_backend(Box::new(HostBackend { f, user, dialect, style }), cfg)?;
        let h = new_handle(mw_chunk { inner: Mutex::new(p) });
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", h) }
    })
}

/// Sets the rows of a host query from JSON: `{"columns": ["id", ...], "rows": [[1, ...], ...]}`
/// (values: null, booleans, numbers, strings).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_host_result_set_json(result: *mut mw_host_result, json: *const c_char) -> mw_status {
    boundary(|| {
        if result.is_null() {
            return Err(FfiError::null("result"));
        }
        // Safety: NUL-terminated per the contract.
        let text = unsafe { str_arg(json, "json") }?;
        let v: Json = serde_json::from_str(text)
            .map_err(|e| FfiError::new(mw_status::InvalidArgument, format!("host result is not JSON: {e}")))?;
        let bad = |why: &str| FfiError::new(mw_status::InvalidArgument, format!("host result: {why}"));
        let columns: Arc<[String]> = v["columns"]
            .as_array()
            .ok_or_else(|| bad("no 'columns' array"))?
            .iter()
            .map(|c| c.as_str().map(String::from).ok_or_else(|| bad("a column name is not a string")))
            .collect::<FfiResult<Vec<_>>>()?
            .into();
        let mut values = Vec::new();
        for row in v["rows"].as_array().ok_or_else(|| bad("no 'rows' array"))? {
            let row = row.as_array().ok_or_else(|| bad("a row is not an array"))?;
            if row.len() != columns.len() {
                return Err(bad(&format!("a row has {} values for {} columns", row.len(), columns.len())));
            }
            values.extend(row.iter().map(json_value));
        }
        // Safety: non-NULL; the library passed it to the callback that is calling us.
        let r = unsafe { &mut *result };
        r.batch = Some(Batch::from_values(columns, values, None));
        Ok(())
    })
}

fn json_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n.as_i64().map(Value::Int).unwrap_or_else(|| Value::Real(n.as_f64().unwrap_or(f64::NAN))),
        Json::String(s) => Value::Text(s.clone()),
        other => Value::Text(other.to_string()),
    }
}

fn key_arg(json: *const c_char, arg: &str) -> FfiResult<Option<Value>> {
    if json.is_null() {
        return Ok(None);
    }
    // Safety: NUL-terminated per the contract.
    let text = unsafe { str_arg(json, arg) }?;
    let v: Json = serde_json::from_str(text)
        .map_err(|e| FfiError::new(mw_status::InvalidArgument, format!("'{arg}' is not JSON: {e}")))?;
    match v {
        Json::Null => Ok(None),
        other => Value::key_from_json(&other).map(Some).ok_or_else(|| {
            FfiError::new(mw_status::InvalidArgument, format!("'{arg}' must be an integer or a string, got {other}"))
        }),
    }
}

/// Reports rows you keep on your side: how many, the column names (JSON array), the first and
/// last key (JSON integer or string; NULL when there are no rows) and about how many bytes
/// they take (for `memory_limit`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_host_result_set_host_rows(
    result: *mut mw_host_result,
    columns_json: *const c_char,
    rows: usize,
    first_key_json: *const c_char,
    last_key_json: *const c_char,
    bytes: usize,
) -> mw_status {
    boundary(|| {
        if result.is_null() {
            return Err(FfiError::null("result"));
        }
        // Safety: NUL-terminated per the contract.
        let text = unsafe { str_arg(columns_json, "columns_json") }?;
        let columns: Vec<String> = serde_json::from_str(text).map_err(|e| {
            FfiError::new(mw_status::InvalidArgument, format!("'columns_json' must be a JSON array of strings: {e}"))
        })?;
        let first_key = key_arg(first_key_json, "first_key_json")?;
        let last_key = key_arg(last_key_json, "last_key_json")?;
        if rows > 0 && last_key.is_none() {
            return Err(FfiError::new(mw_status::InvalidArgument, "'last_key_json' is needed when rows > 0"));
        }
        // Safety: non-NULL; the library passed it to the callback that is calling us.
        let r = unsafe { &mut *result };
        r.batch = Some(Batch {
            columns: columns.into(),
            values: Vec::new(),
            rows,
            first_key,
            last_key,
            bytes,
            host_rows: true,
        });
        Ok(())
    })
}

/// Makes the manager's cleanup hooks run when a chunk exceeds `memory_limit` (the chunk size is
/// halved either way). NULL detaches it. The processor keeps the manager alive.
#[unsafe(no_mangle)]
pub extern "C" fn mw_chunk_set_manager(chunk_: *mut mw_chunk, manager: *const mw_manager) -> mw_status {
    boundary(|| {
        let h = chunk(chunk_)?;
        let cleanup = if manager.is_null() {
            None
        } else {
            let m = manager_handle(manager)?;
            Some(Box::new(move || m.core().force_garbage_collection().map(|_| ())) as memwarden_core::chunk::CleanupFn)
        };
        let mut p = h.inner.try_lock().ok_or_else(busy)?;
        p.set_cleanup(cleanup);
        Ok(())
    })
}

fn busy() -> FfiError {
    FfiError::new(mw_status::InvalidArgument, "the processor is busy: a run is in progress")
}

/// The batch's column names as C strings (NULs dropped), made once per column set: the core
/// hands every batch of a query the same `Arc` of names.
fn column_names(cache: &mut Option<(Arc<[String]>, Vec<CString>)>, b: &Batch) -> Vec<CString> {
    match cache {
        Some((cols, names)) if Arc::ptr_eq(cols, &b.columns) => names.clone(),
        _ => {
            let names: Vec<CString> =
                b.columns.iter().map(|c| CString::new(c.replace('\0', "")).unwrap_or_default()).collect();
            *cache = Some((b.columns.clone(), names.clone()));
            names
        }
    }
}

fn run(
    chunk_: *mut mw_chunk,
    sql: *const c_char,
    options_json: *const c_char,
    cb: *const mw_chunk_callbacks,
    rows: bool,
    stats_out: *mut *mut c_char,
) -> FfiResult<()> {
    let h = chunk(chunk_)?;
    if cb.is_null() {
        return Err(FfiError::null("callbacks"));
    }
    // Safety: non-NULL; valid for the call per the contract.
    let cb = unsafe { &*cb };
    // Safety: NUL-terminated per the contract.
    let sql = unsafe { str_arg(sql, "sql") }?;
    let opts = if options_json.is_null() {
        QueryOptions::default()
    } else {
        // Safety: as above.
        let v = config::parse_json("processQuery options", unsafe { str_arg(options_json, "options_json") }?)?;
        QueryOptions::from_json(&v)?
    };
    let on_batch = cb.on_batch;
    let on_row = cb.on_row;
    let on_batch_tx = if rows { None } else { cb.on_batch_tx };
    if rows && on_row.is_none() {
        return Err(FfiError::null("callbacks->on_row"));
    }
    if !rows && on_batch.is_none() && on_batch_tx.is_none() {
        return Err(FfiError::null("callbacks->on_batch"));
    }
    let user = cb.user;
    let mut names_cache: Option<(Arc<[String]>, Vec<CString>)> = None;
    let mut batch_fn = |b: &Batch| -> memwarden_core::Result<()> {
        let mb = mw_batch { batch: b, names: column_names(&mut names_cache, b) };
        if rows {
            let f = on_row.expect("checked above");
            for i in 0..b.len() {
                // Safety: the caller's callback; `mb` lives for the call.
                let rc = unsafe { f(user, &mb, i) };
                if rc != 0 {
                    return Err(Error::callback(format!("row callback failed with status {rc}")));
                }
            }
            Ok(())
        } else {
            let Some(f) = on_batch else {
                return Err(Error::invalid_argument(
                    "callbacks->on_batch is NULL and on_batch_tx is only called with checkpoint_table set",
                ));
            };
            // Safety: as above.
            let rc = unsafe { f(user, &mb) };
            if rc != 0 { Err(Error::callback(format!("batch callback failed with status {rc}"))) } else { Ok(()) }
        }
    };
    let mut names_cache_tx: Option<(Arc<[String]>, Vec<CString>)> = None;
    let mut tx_fn = on_batch_tx.map(|f| {
        move |b: &Batch, tx: &mut ChunkTx<'_>| -> memwarden_core::Result<()> {
            let mb = mw_batch { batch: b, names: column_names(&mut names_cache_tx, b) };
            let mut handle = mw_tx { tx: tx as *mut ChunkTx<'_> as *mut c_void };
            // Safety: the caller's callback; `mb` and `handle` live for the call.
            let rc = unsafe { f(user, &mb, &mut handle) };
            if rc != 0 { Err(Error::callback(format!("batch callback failed with status {rc}"))) } else { Ok(()) }
        }
    });
    let mut progress_fn = cb.on_progress.map(|f| {
        move |p: &Progress| -> memwarden_core::Result<()> {
            let s = CString::new(p.to_json().to_string()).unwrap_or_default();
            // Safety: the caller's callback with a string valid for the call.
            let rc = unsafe { f(user, s.as_ptr()) };
            if rc != 0 { Err(Error::callback(format!("progress callback failed with status {rc}"))) } else { Ok(()) }
        }
    });
    let mut error_fn = cb.on_error.map(|f| {
        move |e: &Error, c: &ChunkInfo| -> memwarden_core::Result<bool> {
            let m = CString::new(e.message().replace('\0', "")).unwrap_or_default();
            let j = CString::new(c.to_json().to_string()).unwrap_or_default();
            // Safety: as above.
            match unsafe { f(user, m.as_ptr(), j.as_ptr()) } {
                0 => Ok(false),
                rc if rc > 0 => Ok(true),
                rc => Err(Error::callback(format!("error callback failed with status {rc}"))),
            }
        }
    });
    let mut handlers = Handlers {
        on_batch: &mut batch_fn,
        on_batch_tx: tx_fn
            .as_mut()
            .map(|f| f as &mut dyn FnMut(&Batch, &mut ChunkTx<'_>) -> memwarden_core::Result<()>),
        on_progress: progress_fn.as_mut().map(|f| f as &mut dyn FnMut(&Progress) -> memwarden_core::Result<()>),
        on_error: error_fn.as_mut().map(|f| f as &mut dyn FnMut(&Error, &ChunkInfo) -> memwarden_core::Result<bool>),
    };
    let mut p = h.inner.try_lock().ok_or_else(busy)?;
    let result = p.process_query(sql, &opts, &mut handlers);
    if !stats_out.is_null() {
        // Safety: non-NULL and writable per the contract.
        unsafe { stats_out.write(out_string(p.stats().to_json().to_string())) };
    }
    result?;
    Ok(())
}

/// Hands every chunk of `sql` to `callbacks->on_batch` (the seed's `processQuery`).
/// `options_json`: NULL, or `{"batch_size": n, "parallel": true | n}`. When `stats_json_out`
/// is not NULL it receives the run's statistics as JSON, also when the run fails (free with
/// `mw_string_free`).
///
/// `sql` must be a single SELECT whose output includes the key column; it is wrapped as
/// `SELECT * FROM (<sql>) mw_t WHERE key > ? ORDER BY key LIMIT n`, so a callback that updates
/// or deletes rows never makes one be skipped or seen twice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_chunk_process_query(
    chunk: *mut mw_chunk,
    sql: *const c_char,
    options_json: *const c_char,
    callbacks: *const mw_chunk_callbacks,
    stats_json_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| run(chunk, sql, options_json, callbacks, false, stats_json_out))
}

/// Calls `callbacks->on_row` for every row of `sql` (the seed's `process`); otherwise as
/// `mw_chunk_process_query`. A failing row fails its whole chunk, so on a retry the rows of
/// that chunk before it are handed out again: make row callbacks idempotent.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_chunk_process(
    chunk: *mut mw_chunk,
    sql: *const c_char,
    callbacks: *const mw_chunk_callbacks,
    stats_json_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| run(chunk, sql, std::ptr::null(), callbacks, true, stats_json_out))
}

fn tx_ref<'a>(tx: *mut mw_tx) -> FfiResult<&'a mut ChunkTx<'a>> {
    if tx.is_null() {
        return Err(FfiError::null("tx"));
    }
    // Safety: the library passed `tx` to the running `on_batch_tx` callback; valid for that call.
    let h = unsafe { &mut *tx };
    // Safety: `h.tx` points at the ChunkTx that lives for the same call.
    Ok(unsafe { &mut *(h.tx as *mut ChunkTx<'a>) })
}

fn params_arg(params_json: *const c_char) -> FfiResult<Vec<Value>> {
    if params_json.is_null() {
        return Ok(Vec::new());
    }
    // Safety: NUL-terminated per the contract.
    let text = unsafe { str_arg(params_json, "params_json") }?;
    let v: Json = serde_json::from_str(text)
        .map_err(|e| FfiError::new(mw_status::InvalidArgument, format!("'params_json' is not JSON: {e}")))?;
    match v {
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, j)| match j {
                Json::Array(_) | Json::Object(_) => Err(FfiError::new(
                    mw_status::InvalidArgument,
                    format!("'params_json' item {i} is {j}: parameters are null, booleans, numbers or strings"),
                )),
                other => Ok(json_value(other)),
            })
            .collect(),
        other => Err(FfiError::new(
            mw_status::InvalidArgument,
            format!("'params_json' must be a JSON array of parameters, got {other}"),
        )),
    }
}

/// Runs `sql` with `params_json` (NULL, or a JSON array of null / boolean / number / string
/// values; placeholders as the connection writes them: `?` for SQLite and MySQL, `$1` for
/// PostgreSQL) inside the chunk's transaction. Only valid during `on_batch_tx`. A failed
/// statement returns `MW_STATUS_DATABASE`; return non-zero from the callback then, so the
/// chunk is rolled back (on PostgreSQL the transaction cannot go on after an error).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_chunk_tx_execute(
    tx: *mut mw_tx,
    sql: *const c_char,
    params_json: *const c_char,
) -> mw_status {
    boundary(|| {
        let t = tx_ref(tx)?;
        // Safety: NUL-terminated per the contract.
        let sql = unsafe { str_arg(sql, "sql") }?;
        let params = params_arg(params_json)?;
        t.execute(sql, &params)?;
        Ok(())
    })
}

/// As `mw_chunk_tx_execute`, and returns the statement's rows as JSON (an array of objects;
/// free with `mw_string_free`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_chunk_tx_query(
    tx: *mut mw_tx,
    sql: *const c_char,
    params_json: *const c_char,
    rows_json_out: *mut *mut c_char,
) -> mw_status {
    boundary(|| {
        need_out(rows_json_out, "rows_json_out")?;
        let t = tx_ref(tx)?;
        // Safety: NUL-terminated per the contract.
        let sql = unsafe { str_arg(sql, "sql") }?;
        let params = params_arg(params_json)?;
        let b = t.query(sql, &params)?;
        let mut s = String::new();
        b.write_json(RowFormat::Dict, &mut s);
        // Safety: checked non-NULL.
        unsafe { write_out(rows_json_out, "rows_json_out", out_string(s)) }
    })
}

/// The statistics of the last run as JSON (free with `mw_string_free`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_chunk_stats(chunk_: *const mw_chunk, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        let h = chunk(chunk_)?;
        let p = h.inner.try_lock().ok_or_else(busy)?;
        // Safety: checked non-NULL above.
        unsafe { write_out(json_out, "json_out", out_string(p.stats().to_json().to_string())) }
    })
}

/// Frees a processor (closing its connections). NULL is ignored.
#[unsafe(no_mangle)]
pub extern "C" fn mw_chunk_free(chunk: *mut mw_chunk) {
    boundary_void(|| free_handle(chunk));
}

// ---- batch accessors -------------------------------------------------------

fn batch_ref<'a>(b: *const mw_batch) -> FfiResult<&'a mw_batch> {
    if b.is_null() {
        return Err(FfiError::null("batch"));
    }
    // Safety: the library passed it to the running callback; valid for that call.
    Ok(unsafe { &*b })
}

fn inner<'a>(b: &mw_batch) -> &'a Batch {
    // Safety: the batch outlives the callback during which `mw_batch` exists.
    unsafe { &*b.batch }
}

fn cell<'a>(b: *const mw_batch, row: usize, col: usize) -> FfiResult<&'a Value> {
    let mb = batch_ref(b)?;
    let batch = inner(mb);
    if batch.host_rows {
        return Err(FfiError::new(mw_status::InvalidArgument, "this batch's rows are kept by the host"));
    }
    if row >= batch.len() || col >= batch.columns.len() {
        return Err(FfiError::new(
            mw_status::InvalidArgument,
            format!("cell ({row}, {col}) is outside the batch ({} rows, {} columns)", batch.len(), batch.columns.len()),
        ));
    }
    Ok(&batch.row(row)[col])
}

/// Rows in the batch (0 for a NULL batch).
#[unsafe(no_mangle)]
pub extern "C" fn mw_batch_row_count(batch: *const mw_batch) -> usize {
    batch_ref(batch).map(|b| inner(b).len()).unwrap_or(0)
}

/// Columns in the batch (0 for a NULL batch).
#[unsafe(no_mangle)]
pub extern "C" fn mw_batch_column_count(batch: *const mw_batch) -> usize {
    batch_ref(batch).map(|b| inner(b).columns.len()).unwrap_or(0)
}

/// The name of column `col` (NUL-terminated, valid during the callback), or NULL when out of range.
#[unsafe(no_mangle)]
pub extern "C" fn mw_batch_column_name(batch: *const mw_batch, col: usize) -> *const c_char {
    batch_ref(batch).ok().and_then(|b| b.names.get(col)).map_or(std::ptr::null(), |n| n.as_ptr())
}

/// Whether the rows stay with the host (a host connection's `mw_host_result_set_host_rows`).
#[unsafe(no_mangle)]
pub extern "C" fn mw_batch_is_host_rows(batch: *const mw_batch) -> bool {
    batch_ref(batch).map(|b| inner(b).host_rows).unwrap_or(false)
}

/// The type of the value at (`row`, `col`); `MW_VALUE_TYPE_NULL` when out of range.
#[unsafe(no_mangle)]
pub extern "C" fn mw_batch_type(batch: *const mw_batch, row: usize, col: usize) -> mw_value_type {
    match cell(batch, row, col) {
        Ok(Value::Int(_)) => mw_value_type::Int,
        Ok(Value::Real(_)) => mw_value_type::Real,
        Ok(Value::Text(_)) => mw_value_type::Text,
        Ok(Value::Blob(_)) => mw_value_type::Blob,
        Ok(Value::Bool(_)) => mw_value_type::Bool,
        _ => mw_value_type::Null,
    }
}

fn wrong_type(v: &Value, want: &str) -> FfiError {
    FfiError::new(mw_status::InvalidArgument, format!("the value is {}, not {want}", v.type_name()))
}

/// An integer (or boolean as 0/1) value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_batch_int(batch: *const mw_batch, row: usize, col: usize, out: *mut i64) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let v = match cell(batch, row, col)? {
            Value::Int(i) => *i,
            Value::Bool(b) => *b as i64,
            other => return Err(wrong_type(other, "an integer")),
        };
        // Safety: checked non-NULL.
        unsafe { write_out(out, "out", v) }
    })
}

/// A real (or integer, converted) value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_batch_real(batch: *const mw_batch, row: usize, col: usize, out: *mut f64) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        let v = match cell(batch, row, col)? {
            Value::Real(r) => *r,
            Value::Int(i) => *i as f64,
            other => return Err(wrong_type(other, "a number")),
        };
        // Safety: checked non-NULL.
        unsafe { write_out(out, "out", v) }
    })
}

/// A text value as UTF-8 bytes (not NUL-terminated), valid during the callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_batch_text(
    batch: *const mw_batch,
    row: usize,
    col: usize,
    data: *mut *const c_char,
    len: *mut usize,
) -> mw_status {
    boundary(|| {
        need_out(data, "data")?;
        need_out(len, "len")?;
        let s = match cell(batch, row, col)? {
            Value::Text(s) => s,
            other => return Err(wrong_type(other, "text")),
        };
        // Safety: both checked non-NULL.
        unsafe {
            write_out(data, "data", s.as_ptr() as *const c_char)?;
            write_out(len, "len", s.len())
        }
    })
}

/// A blob value's bytes, valid during the callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_batch_blob(
    batch: *const mw_batch,
    row: usize,
    col: usize,
    data: *mut *const u8,
    len: *mut usize,
) -> mw_status {
    boundary(|| {
        need_out(data, "data")?;
        need_out(len, "len")?;
        let b = match cell(batch, row, col)? {
            Value::Blob(b) => b,
            other => return Err(wrong_type(other, "a blob")),
        };
        // Safety: both checked non-NULL.
        unsafe {
            write_out(data, "data", b.as_ptr())?;
            write_out(len, "len", b.len())
        }
    })
}

/// The batch's rows as JSON: an array of objects (`tuples` false) or of arrays (free with
/// `mw_string_free`). Blobs become arrays of byte values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_batch_json(batch: *const mw_batch, tuples: bool, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        let b = inner(batch_ref(batch)?);
        let fmt = if tuples { RowFormat::Tuple } else { RowFormat::Dict };
        let mut s = String::new();
        b.write_json(fmt, &mut s);
        // Safety: checked non-NULL.
        unsafe { write_out(json_out, "json_out", out_string(s)) }
    })
}

/// `{"rows", "first_key", "last_key", "bytes", "host_rows", "columns"}` of the batch as JSON
/// (free with `mw_string_free`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_batch_info(batch: *const mw_batch, json_out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(json_out, "json_out")?;
        let b = inner(batch_ref(batch)?);
        let k = |v: &Option<Value>| v.as_ref().map(Value::to_json).unwrap_or(Json::Null);
        let j = serde_json::json!({
            "rows": b.len(), "first_key": k(&b.first_key), "last_key": k(&b.last_key),
            "bytes": b.bytes, "host_rows": b.host_rows, "columns": &*b.columns,
        });
        // Safety: checked non-NULL.
        unsafe { write_out(json_out, "json_out", out_string(j.to_string())) }
    })
}
