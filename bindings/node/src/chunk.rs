//! `NativeChunkedDatabaseProcessor`: the core's chunk processor for JavaScript.
//!
//! `run` walks a query on the JS thread, calling `dispatch` (from `lib/index.js`) with each
//! batch of rows, with progress, and with failed chunks; `runAsync` does the same on a worker
//! thread and returns a Promise, each batch reaching the JS thread through a thread-safe
//! function while the worker waits for the JS callback (and its Promise) to finish.

use std::sync::Arc;

use memwarden_core::chunk::{Batch, ChunkTx, Handlers, Progress, QueryOptions, RowFormat, Value as CellValue};
use memwarden_core::{ChunkConfig, ChunkedDatabaseProcessor, Error as CoreError};
use napi::bindgen_prelude::*;
use napi::{Env, sys};
use napi_derive::napi;
use parking_lot::Mutex;
use serde_json::Value;

use crate::bridge::{Port, Reply, Request, Settle, Shape, json_value, spawn_step};
use crate::{CoreResult, NativeMemoryManager, expect_function, guarded, normalize_numbers, throw_core, throw_value};

/// A processor opened from a connection string.
struct Proc(ChunkedDatabaseProcessor);

// Safety: `ChunkedDatabaseProcessor` is not `Send` only because a host connection object
// (`with_backend`, a `Box<dyn Backend>`) may be tied to its thread. This binding opens every
// processor with `open` (a connection string): its native connections are `Send`, and so are
// the manager, the probe and the statistics.
unsafe impl Send for Proc {}

/// What the JS layer wants called during a run.
#[napi(object)]
pub struct RunFlags {
    /// Call `dispatch(3, processed, total, stats?)` after every chunk.
    pub progress: bool,
    /// Pass the stats object as well (`setProgressCallback`).
    pub progress_stats: bool,
    /// Ask `dispatch(4, error, chunk)` about a chunk that failed after its retries.
    pub on_error: bool,
}

/// The native processor. Use `ChunkedDatabaseProcessor` from `lib/index.js`.
#[napi(js_name = "NativeChunkedDatabaseProcessor")]
pub struct NativeChunkedDatabaseProcessor {
    inner: Arc<Mutex<Option<Proc>>>,
    port: Arc<Port>,
    /// The progress of the running (or last) call, for `stats` while a run holds the processor.
    snapshot: Arc<Mutex<Progress>>,
    row_format: RowFormat,
    describe: String,
    /// The same-transaction mode (`checkpoint_table`): the address of the running chunk's
    /// `ChunkTx` while its batch callback runs (0 otherwise), for `txExecute`.
    tx_slot: Option<Arc<Mutex<usize>>>,
}

fn busy(env: &Env) -> napi::Error {
    throw_core(
        env,
        &CoreError::invalid_argument(
            "ChunkedDatabaseProcessor: a run is in progress on this processor; wait for it to finish",
        ),
    )
}

/// One run of the core with `port` as its way into JS.
fn run_core(
    p: &mut ChunkedDatabaseProcessor,
    port: &Port,
    snapshot: &Mutex<Progress>,
    sql: &str,
    opts: &QueryOptions,
    flags: (bool, bool),
    tx_slot: Option<&Mutex<usize>>,
) -> CoreResult<Progress> {
    let (progress, on_error) = flags;
    let mut on_batch = |b: &memwarden_core::chunk::Batch| port.request(Request::Batch(b)).map(|_| ());
    let mut on_batch_tx = |b: &Batch, tx: &mut ChunkTx<'_>| {
        let slot = tx_slot.expect("set in the same-transaction mode");
        *slot.lock() = tx as *mut ChunkTx<'_> as usize;
        let r = port.request(Request::Batch(b)).map(|_| ());
        *slot.lock() = 0;
        r
    };
    let mut on_progress = |s: &Progress| {
        *snapshot.lock() = s.clone();
        if progress { port.request(Request::Progress(s)).map(|_| ()) } else { Ok(()) }
    };
    let mut on_err = |e: &CoreError, info: &memwarden_core::chunk::ChunkInfo| match port
        .request(Request::Failed { error: e.clone(), chunk: info.clone() })?
    {
        Reply::Bool(b) => Ok(b),
        _ => Ok(false),
    };
    let mut h = Handlers {
        on_batch: &mut on_batch,
        on_batch_tx: if tx_slot.is_some() { Some(&mut on_batch_tx) } else { None },
        // No progress callback: the core then skips counting the rows up front.
        on_progress: if progress { Some(&mut on_progress) } else { None },
        on_error: if on_error { Some(&mut on_err) } else { None },
    };
    let r = p.process_query(sql, opts, &mut h);
    *snapshot.lock() = p.stats().clone();
    r
}

#[napi]
impl NativeChunkedDatabaseProcessor {
    /// `connection`: `sqlite:///path.db`, `postgres://...`, `mysql://...` or a PDO DSN;
    /// `config`: the core's keys (`chunk_size`, `memory_limit`, `retry_attempts`,
    /// `parallel_chunks`, `key_column`, `checkpoint`, `row_format`, ...).
    #[napi(constructor)]
    pub fn new(env: Env, connection: String, config_json: Option<Value>) -> Result<Self> {
        let cfg = normalize_numbers(config_json.unwrap_or(Value::Null));
        let config = guarded(&env, || ChunkConfig::from_json(&cfg))?;
        let row_format = config.row_format;
        let tx_slot = config.checkpoint_table.is_some().then(Arc::default);
        let p = guarded(&env, || ChunkedDatabaseProcessor::open(&connection, config))?;
        let describe = p.describe().to_owned();
        Ok(NativeChunkedDatabaseProcessor {
            inner: Arc::new(Mutex::new(Some(Proc(p)))),
            port: Port::new(Shape { row_format, progress_stats: false }),
            snapshot: Arc::new(Mutex::new(Progress::default())),
            row_format,
            describe,
            tx_slot,
        })
    }

    /// The connection, password masked.
    #[napi(getter)]
    pub fn connection(&self) -> String {
        self.describe.clone()
    }

    /// Runs `sql` on this thread: `dispatch(2, rows)` per chunk, progress and failed chunks
    /// as `flags` say. Returns the final statistics; throws the original exception of a JS
    /// callback when the run stops because of it.
    #[napi(
        ts_args_type = "sql: string, dispatch: (...args: any[]) => any, options: Record<string, any> | null, flags: RunFlags",
        ts_return_type = "Record<string, any>"
    )]
    pub fn run(
        &self,
        env: Env,
        sql: String,
        dispatch: Unknown,
        options: Option<Value>,
        flags: RunFlags,
    ) -> Result<Value> {
        expect_function(&env, &dispatch, "processQuery", "dispatch")?;
        let opts = normalize_numbers(options.unwrap_or(Value::Null));
        let opts = guarded(&env, || QueryOptions::from_json(&opts))?;
        let mut g = self.inner.try_lock().ok_or_else(|| busy(&env))?;
        let p = g.as_mut().ok_or_else(|| busy(&env))?;
        self.port.set_shape(Shape { row_format: self.row_format, progress_stats: flags.progress_stats });
        self.port.clear_thrown();
        let (port, snap) = (&self.port, &self.snapshot);
        let slot = self.tx_slot.as_deref();
        let r = port.direct(&env, &dispatch, || {
            run_core(&mut p.0, port, snap, &sql, &opts, (flags.progress, flags.on_error), slot)
        });
        match r {
            Ok(s) => Ok(s.to_json()),
            Err(e) => Err(throw_value(env.raw(), self.port.error_value(env.raw(), &e))),
        }
    }

    /// As `run`, on a worker thread; returns a Promise of the final statistics. `dispatch`
    /// gets a `reply` function as its last argument and calls it when the callback (and the
    /// Promise it returned) is done; the core waits for it before it goes on.
    #[napi(
        ts_args_type = "sql: string, dispatch: (...args: any[]) => any, options: Record<string, any> | null, flags: RunFlags",
        ts_return_type = "Promise<Record<string, any>>"
    )]
    pub fn run_async(
        &self,
        env: Env,
        sql: String,
        dispatch: Unknown,
        options: Option<Value>,
        flags: RunFlags,
    ) -> Result<Unknown<'_>> {
        expect_function(&env, &dispatch, "processQueryAsync", "dispatch")?;
        let opts = normalize_numbers(options.unwrap_or(Value::Null));
        let opts = guarded(&env, || QueryOptions::from_json(&opts))?;
        let mut proc = self.inner.try_lock().and_then(|mut g| g.take()).ok_or_else(|| busy(&env))?;
        self.port.set_shape(Shape { row_format: self.row_format, progress_stats: flags.progress_stats });
        self.port.clear_thrown();
        let (inner, port, snap) = (self.inner.clone(), self.port.clone(), self.snapshot.clone());
        let slot = self.tx_slot.clone();
        let p = spawn_step(&env, &dispatch, self.port.clone(), move || {
            let r = run_core(&mut proc.0, &port, &snap, &sql, &opts, (flags.progress, flags.on_error), slot.as_deref());
            *inner.lock() = Some(proc);
            let settle: Settle = Box::new(move |env: sys::napi_env, port: &Port| match r {
                Ok(s) => Ok(json_value(env, s.to_json())),
                Err(e) => Err(port.error_value(env, &e)),
            });
            settle
        })?;
        // Safety: a live promise value of this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), p) })
    }

    /// Statistics of the last (or running) call: `processed`, `total`, `memory_usage` (MB),
    /// `estimated_remaining` (s), `rows_per_second`, `chunks`, `failed_chunks`, `failures`,
    /// `warnings`, ...
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn stats(&self) -> Value {
        match self.inner.try_lock() {
            Some(g) if g.is_some() => g.as_ref().map(|p| p.0.stats().to_json()).unwrap_or_default(),
            _ => self.snapshot.lock().to_json(),
        }
    }

    /// Whether `checkpoint_table` is set (callbacks get the chunk's transaction).
    #[napi(getter)]
    pub fn transactional(&self) -> bool {
        self.tx_slot.is_some()
    }

    /// Runs `sql` with `params` (an array of null, boolean, number, string values) in the
    /// transaction of the chunk whose callback is running, and returns the rows (objects).
    /// Only valid during a batch callback of the same-transaction mode.
    #[napi(ts_args_type = "sql: string, params?: any[] | null", ts_return_type = "Array<Record<string, any>>")]
    pub fn tx_execute(&self, env: Env, sql: String, params: Option<Value>) -> Result<Value> {
        let Some(slot) = &self.tx_slot else {
            return Err(throw_core(
                &env,
                &CoreError::invalid_argument("ChunkTransaction: this processor has no checkpoint_table"),
            ));
        };
        let params = match normalize_numbers(params.unwrap_or(Value::Null)) {
            Value::Null => Vec::new(),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.into_iter().enumerate() {
                    out.push(match v {
                        Value::Null => CellValue::Null,
                        Value::Bool(b) => CellValue::Bool(b),
                        Value::Number(n) => match n.as_i64() {
                            Some(i) => CellValue::Int(i),
                            None => CellValue::Real(n.as_f64().unwrap_or(f64::NAN)),
                        },
                        Value::String(s) => CellValue::Text(s),
                        other => {
                            return Err(throw_core(
                                &env,
                                &CoreError::invalid_argument(format!(
                                    "ChunkTransaction.execute(): parameter {i} is {}; parameters are null, booleans, \
                                     numbers or strings",
                                    if other.is_array() { "an array" } else { "an object" }
                                )),
                            ));
                        }
                    });
                }
                out
            }
            _ => {
                return Err(throw_core(
                    &env,
                    &CoreError::invalid_argument("ChunkTransaction.execute(): 'params' must be an array"),
                ));
            }
        };
        let g = slot.lock();
        if *g == 0 {
            return Err(throw_core(
                &env,
                &CoreError::new(
                    memwarden_core::ErrorKind::Closed,
                    "ChunkTransaction: this chunk's transaction has ended (use tx only inside its callback)",
                ),
            ));
        }
        // Safety: a non-zero slot holds the address of the ChunkTx of the batch callback that
        // is running (its thread waits for the callback's reply); it is reset to 0 under this
        // lock before the ChunkTx goes away, and the lock keeps two calls from using it at once.
        let tx = unsafe { &mut *(*g as *mut ChunkTx<'static>) };
        let batch = guarded(&env, || tx.query(&sql, &params))?;
        drop(g);
        let mut text = String::new();
        batch.write_json(RowFormat::Dict, &mut text);
        serde_json::from_str(&text).map_err(|e| napi::Error::from_reason(e.to_string()))
    }

    /// The manager whose cleanup runs when a chunk exceeds `memory_limit`; `null` for none.
    #[napi(ts_args_type = "manager: NativeMemoryManager | null")]
    pub fn set_manager(&self, env: Env, manager: Option<&NativeMemoryManager>) -> Result<()> {
        let mut g = self.inner.try_lock().ok_or_else(|| busy(&env))?;
        let p = g.as_mut().ok_or_else(|| busy(&env))?;
        p.0.set_manager(manager.map(|m| m.inner.clone()));
        Ok(())
    }
}
