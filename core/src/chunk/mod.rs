//! The ChunkedDatabaseProcessor: walks a query's rows in chunks by keyset pagination, with
//! progress, retries, an error policy, parallel key ranges, a per-chunk memory budget and
//! resumable checkpoints (DESIGN §4 "Chunk processor").
//!
//! The query is wrapped as `SELECT * FROM (<query>) mw_t WHERE key > ? ORDER BY key LIMIT n`,
//! so a callback that updates or deletes rows never makes a row be skipped or seen twice;
//! rows inserted during the run ahead of the current key are processed, those behind it are not.
//!
//! Guarantee with a checkpoint: no row is lost, a finished chunk is not repeated, and the
//! chunks in flight when the process died (at most `parallel_chunks`) may be seen again —
//! callbacks should be idempotent.
//!
//! With `checkpoint_table` (the same-transaction mode) each chunk runs in one database
//! transaction on the processor's connection: BEGIN, the callback (writing through the
//! [`ChunkTx`] it is given, or a host's own connection, which is the same one), the upsert of
//! the run's checkpoint row, COMMIT. A crash at any instant keeps both the chunk's writes and
//! its checkpoint, or neither: on resume every row's writes are applied exactly once.

mod backend;
mod batch;
mod checkpoint;
mod drivers;
mod shared_file;
mod txcheckpoint;
mod url;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

pub use backend::{Backend, Dialect, ParamStyle, SqlBuilder, main_table, strip_query};
pub use batch::{Batch, ChunkInfo, RowFormat, Value};
pub use checkpoint::{Checkpoint, RangeState};
pub use drivers::{NativeConnector, missing_key};
pub use txcheckpoint::{ChunkTx, Locked, TxCheckpoint, TxState, valid_table_name};
pub use url::{ConnSpec, mask_password};

use crate::config::ConfigReader;
use crate::error::{Error, ErrorKind, Result};
use crate::manager::MemoryManager;
use crate::probe::ProcessProbe;
use crate::size::parse_size;

/// How the processor pages through the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pagination {
    /// `WHERE key > last ORDER BY key LIMIT n` (the default; correct under modification).
    Keyset,
    /// A server-side cursor in a read-only transaction (PostgreSQL; no checkpoint).
    Cursor,
    /// `LIMIT n OFFSET m`: skips or repeats rows when the data changes, and slows down with
    /// every page. Only when asked for, with a warning.
    Offset,
}

impl Pagination {
    pub fn as_str(self) -> &'static str {
        match self {
            Pagination::Keyset => "keyset",
            Pagination::Cursor => "cursor",
            Pagination::Offset => "offset",
        }
    }
}

/// The processor's options, with the seed's keys.
#[derive(Debug, Clone)]
pub struct ChunkConfig {
    pub chunk_size: usize,
    /// Budget for one chunk's rows, in bytes; a bigger chunk runs cleanup and halves the size.
    pub memory_limit: Option<u64>,
    /// Per query.
    pub timeout: Option<Duration>,
    pub retry_attempts: u32,
    /// First retry waits this long; each further retry twice as long (capped at 5 s).
    pub retry_delay: Duration,
    pub parallel_chunks: usize,
    pub key_column: Option<String>,
    pub pagination: Pagination,
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_fsync: bool,
    /// The same-transaction mode: a table (created if missing) holding the run's checkpoint,
    /// written in each chunk's transaction together with the callback's writes.
    pub checkpoint_table: Option<String>,
    /// Count the rows exactly (`COUNT(*)`) instead of asking the planner for an estimate.
    pub exact_count: bool,
    /// Read the next chunk while the callback handles the current one (faster; but a row the
    /// callback inserts or deletes inside the prefetched chunk is not seen as changed).
    pub prefetch: bool,
    pub row_format: RowFormat,
    pub user: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// Open a SQLite file that this process also holds open outside memwarden (through
    /// another SQLite library): off by default, see `shared_file`.
    pub allow_shared_sqlite_file: bool,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            chunk_size: 1000,
            memory_limit: Some(128 * 1024 * 1024),
            timeout: Some(Duration::from_secs(300)),
            retry_attempts: 3,
            retry_delay: Duration::from_millis(100),
            parallel_chunks: 1,
            key_column: None,
            pagination: Pagination::Keyset,
            checkpoint: None,
            checkpoint_fsync: false,
            checkpoint_table: None,
            exact_count: false,
            prefetch: false,
            row_format: RowFormat::Dict,
            user: None,
            password: None,
            connect_timeout: Duration::from_secs(10),
            allow_shared_sqlite_file: false,
        }
    }
}

/// Config keys the processor knows. `progress_callback` and `error_callback` are host
/// functions: the bindings take them out before the rest reaches the core.
pub const CHUNK_KEYS: &[&str] = &[
    "chunk_size",
    "memory_limit",
    "timeout",
    "retry_attempts",
    "retry_delay",
    "parallel_chunks",
    "key_column",
    "pagination",
    "checkpoint",
    "checkpoint_fsync",
    "checkpoint_table",
    "exact_count",
    "prefetch",
    "row_format",
    "user",
    "password",
    "connect_timeout",
    "allow_shared_sqlite_file",
];

fn seconds(r: &ConfigReader<'_>, key: &str, default: Option<Duration>) -> Result<Option<Duration>> {
    match r.get(key) {
        None => Ok(default),
        Some(v) => match v.as_f64() {
            Some(0.0) => Ok(None),
            Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(r.bad(key, "a number of seconds > 0 (0 = no limit)")),
        },
    }
}

impl ChunkConfig {
    pub fn from_json(value: &Json) -> Result<Self> {
        let r = ConfigReader::new("ChunkedDatabaseProcessor", value, CHUNK_KEYS)?;
        let mut c = ChunkConfig::default();
        if let Some(n) = r.u64("chunk_size")? {
            if n == 0 || n > 10_000_000 {
                return Err(r.bad("chunk_size", "a whole number from 1 to 10000000"));
            }
            c.chunk_size = n as usize;
        }
        c.memory_limit = match r.get("memory_limit") {
            None => c.memory_limit,
            Some(Json::String(s)) => match parse_size(s) {
                Ok(crate::size::Size::Bytes(b)) => Some(b),
                Ok(crate::size::Size::Unlimited) => None,
                Err(_) => return Err(r.bad("memory_limit", "a size such as '128M', a number of bytes, or -1")),
            },
            Some(v) => match v.as_i64() {
                Some(-1) => None,
                Some(b) if b > 0 => Some(b as u64),
                _ => return Err(r.bad("memory_limit", "a size such as '128M', a number of bytes, or -1")),
            },
        };
        c.timeout = seconds(&r, "timeout", c.timeout)?;
        c.connect_timeout = seconds(&r, "connect_timeout", Some(c.connect_timeout))?.unwrap_or(c.connect_timeout);
        if let Some(n) = r.u64("retry_attempts")? {
            if n > 100 {
                return Err(r.bad("retry_attempts", "a whole number from 0 to 100"));
            }
            c.retry_attempts = n as u32;
        }
        c.retry_delay =
            Duration::from_secs_f64(r.f64("retry_delay", 0.1, "seconds >= 0", |x| (0.0..=60.0).contains(&x))?);
        if let Some(n) = r.u64("parallel_chunks")? {
            if n == 0 || n > 64 {
                return Err(r.bad("parallel_chunks", "a whole number from 1 to 64"));
            }
            c.parallel_chunks = n as usize;
        }
        c.key_column = r.str("key_column")?.map(String::from);
        c.pagination = match r.choice("pagination", "keyset", &["keyset", "cursor", "offset"])? {
            "cursor" => Pagination::Cursor,
            "offset" => Pagination::Offset,
            _ => Pagination::Keyset,
        };
        c.checkpoint = r.str("checkpoint")?.filter(|s| !s.is_empty()).map(PathBuf::from);
        c.checkpoint_fsync = r.bool("checkpoint_fsync", false)?;
        c.exact_count = r.bool("exact_count", false)?;
        c.prefetch = r.bool("prefetch", false)?;
        c.row_format = match r.choice("row_format", "dict", &["dict", "tuple"])? {
            "tuple" => RowFormat::Tuple,
            _ => RowFormat::Dict,
        };
        c.user = r.str("user")?.map(String::from);
        c.password = r.str("password")?.map(String::from);
        c.allow_shared_sqlite_file = r.bool("allow_shared_sqlite_file", false)?;
        if c.checkpoint.is_some() && c.pagination != Pagination::Keyset {
            return Err(Error::invalid_config(format!(
                "ChunkedDatabaseProcessor config: 'checkpoint' needs keyset pagination, not '{}'",
                c.pagination.as_str()
            )));
        }
        c.checkpoint_table = r.str("checkpoint_table")?.map(String::from);
        if let Some(t) = &c.checkpoint_table {
            if !valid_table_name(t) {
                return Err(r.bad(
                    "checkpoint_table",
                    "a table name: letters, digits and '_' (not starting with a digit), optionally 'schema.table'",
                ));
            }
            let refuse = |why: String| {
                Err(Error::invalid_config(format!("ChunkedDatabaseProcessor config: 'checkpoint_table' {why}")))
            };
            if c.checkpoint.is_some() {
                return refuse(
                    "and 'checkpoint' exclude each other: 'checkpoint' is a file (at-least-once), \
                     'checkpoint_table' the same-transaction mode (exactly once); set one"
                        .into(),
                );
            }
            if c.pagination != Pagination::Keyset {
                return refuse(format!("needs keyset pagination, not '{}'", c.pagination.as_str()));
            }
            if c.parallel_chunks > 1 {
                return refuse(format!(
                    "runs each chunk in one transaction on one connection: 'parallel_chunks' must be 1, not {}",
                    c.parallel_chunks
                ));
            }
            if c.prefetch {
                return refuse(
                    "reads and writes each chunk on one connection: 'prefetch' (reading ahead on another \
                     connection) cannot be used with it"
                        .into(),
                );
            }
        }
        Ok(c)
    }
}

/// Per-call options of `process_query` (the seed's trailing array).
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Overrides `chunk_size` for this call.
    pub batch_size: Option<usize>,
    /// Overrides `parallel_chunks` for this call (the seed's `'parallel' => true` means
    /// `parallel_chunks`, or 2 when that is 1).
    pub parallel: Option<usize>,
}

impl QueryOptions {
    pub fn from_json(value: &Json) -> Result<Self> {
        let r = ConfigReader::new("processQuery options", value, &["batch_size", "parallel", "chunk_size"])?;
        let mut o = QueryOptions::default();
        for key in ["batch_size", "chunk_size"] {
            if let Some(n) = r.u64(key)? {
                if n == 0 || n > 10_000_000 {
                    return Err(r.bad(key, "a whole number from 1 to 10000000"));
                }
                o.batch_size = Some(n as usize);
            }
        }
        o.parallel = match r.get("parallel") {
            None | Some(Json::Bool(false)) => None,
            Some(Json::Bool(true)) => Some(0),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=64).contains(&n) => Some(n as usize),
                _ => return Err(r.bad("parallel", "true, false or a number of workers from 1 to 64")),
            },
        };
        Ok(o)
    }
}

/// Runs when a chunk exceeds `memory_limit`: a manager's cleanup hooks, or the host's own.
pub type CleanupFn = Box<dyn FnMut() -> Result<()> + Send>;

/// Where the processor's rows come from.
enum Conn {
    Native { connector: NativeConnector, main: Box<dyn Backend + Send> },
    Host(Box<dyn Backend + Send>),
}

/// Progress and the statistics of the last run. Every number the seed prints is here
/// under its name (`processed`, `total`, `memory_usage` in MB, `estimated_remaining` in s).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub processed: u64,
    pub total: u64,
    pub total_is_exact: bool,
    pub memory_usage_bytes: u64,
    pub elapsed: f64,
    pub chunks: u64,
    pub failed_chunks: u64,
    pub failed_rows: u64,
    pub retries: u64,
    pub chunk_size: usize,
    pub chunk_size_reductions: u64,
    pub cleanups: u64,
    pub max_chunk_bytes: usize,
    pub resumed: bool,
    pub key_column: Option<String>,
    pub pagination: &'static str,
    pub workers: usize,
    pub failures: Vec<(ChunkInfo, String)>,
    pub warnings: Vec<String>,
}

impl Progress {
    pub fn rows_per_second(&self) -> f64 {
        if self.elapsed > 0.0 { self.processed as f64 / self.elapsed } else { 0.0 }
    }
    pub fn memory_usage_mb(&self) -> f64 {
        self.memory_usage_bytes as f64 / 1048576.0
    }
    /// Seconds left at the current rate (0 when done or unknown).
    pub fn estimated_remaining(&self) -> f64 {
        let rate = self.rows_per_second();
        let left = self.total.saturating_sub(self.processed + self.failed_rows);
        if rate > 0.0 { left as f64 / rate } else { 0.0 }
    }
    pub fn percent(&self) -> f64 {
        if self.total == 0 { 0.0 } else { (self.processed as f64 * 100.0 / self.total as f64).min(100.0) }
    }
    pub fn to_json(&self) -> Json {
        json!({
            "processed": self.processed,
            "total": self.total,
            "total_is_exact": self.total_is_exact,
            "percent": self.percent(),
            "memory_usage": self.memory_usage_mb(),
            "memory_usage_bytes": self.memory_usage_bytes,
            "estimated_remaining": self.estimated_remaining(),
            "rows_per_second": self.rows_per_second(),
            "elapsed": self.elapsed,
            "chunks": self.chunks,
            "failed_chunks": self.failed_chunks,
            "failed_rows": self.failed_rows,
            "retries": self.retries,
            "chunk_size": self.chunk_size,
            "chunk_size_reductions": self.chunk_size_reductions,
            "cleanups": self.cleanups,
            "max_chunk_bytes": self.max_chunk_bytes,
            "resumed": self.resumed,
            "key_column": self.key_column,
            "pagination": self.pagination,
            "workers": self.workers,
            "failures": self.failures.iter().map(|(c, m)| {
                let mut j = c.to_json();
                j["error"] = Json::String(m.clone());
                j
            }).collect::<Vec<_>>(),
            "warnings": self.warnings,
        })
    }
}

/// Called after every chunk with the run's progress.
pub type ProgressFn<'a> = &'a mut dyn FnMut(&Progress) -> Result<()>;
/// Asked about a chunk that failed after its retries: Ok(true) skips it, Ok(false) stops.
pub type ErrorFn<'a> = &'a mut dyn FnMut(&Error, &ChunkInfo) -> Result<bool>;

/// A chunk callback of the same-transaction mode: the rows and the chunk's transaction.
pub type TxBatchFn<'a> = &'a mut dyn FnMut(&Batch, &mut ChunkTx<'_>) -> Result<()>;

/// The host's callbacks for one run. All run on the calling thread, one at a time.
pub struct Handlers<'a> {
    /// Gets each chunk; an error fails the chunk (retried, then the error policy decides).
    /// In the same-transaction mode it runs inside the chunk's transaction (a host connection's
    /// own writes commit with it) unless `on_batch_tx` is set.
    pub on_batch: &'a mut dyn FnMut(&Batch) -> Result<()>,
    /// The same-transaction mode's callback, given the chunk's transaction; used instead of
    /// `on_batch` when `checkpoint_table` is set (ignored otherwise).
    pub on_batch_tx: Option<TxBatchFn<'a>>,
    /// After every chunk.
    pub on_progress: Option<ProgressFn<'a>>,
    /// A chunk failed after its retries: Ok(true) skips it (recorded), Ok(false) stops.
    pub on_error: Option<ErrorFn<'a>>,
}

/// What a fetcher hands the calling thread.
enum Msg {
    Batch { worker: usize, range: usize, after: Option<Value>, batch: Batch },
    Done { range: usize },
    Failed { range: usize, after: Option<Value>, error: Error, attempts: u32 },
}

pub struct ChunkedDatabaseProcessor {
    config: ChunkConfig,
    conn: Conn,
    cleanup: Option<CleanupFn>,
    probe: Option<ProcessProbe>,
    last: Progress,
    describe: String,
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(Duration::from_secs(5))
}

impl ChunkedDatabaseProcessor {
    /// Connects to a URL or PDO DSN (`sqlite:///path.db`, `postgres://...`, `mysql://...`,
    /// `sqlite:/path`, `pgsql:host=..`, `mysql:host=..`).
    pub fn open(connection: &str, config: ChunkConfig) -> Result<Self> {
        let spec = ConnSpec::parse(connection, config.user.as_deref(), config.password.as_deref())?;
        let describe = spec.describe();
        let connector = NativeConnector::new(spec, config.connect_timeout)
            .allow_shared_sqlite_file(config.allow_shared_sqlite_file);
        let mut main = connector.connect()?;
        main.set_timeout(config.timeout)?;
        Ok(Self::build(config, Conn::Native { connector, main }, describe))
    }

    /// Runs the keyset queries through the host's own connection (PDO, a DB-API connection).
    /// Such a connection serves one thread: `parallel_chunks` above 1 is reduced to 1 with a warning.
    pub fn with_backend(mut backend: Box<dyn Backend + Send>, config: ChunkConfig) -> Result<Self> {
        backend.set_timeout(config.timeout)?;
        let describe = format!("host {} connection", backend.dialect().as_str());
        Ok(Self::build(config, Conn::Host(backend), describe))
    }

    fn build(config: ChunkConfig, conn: Conn, describe: String) -> Self {
        ChunkedDatabaseProcessor {
            config,
            conn,
            cleanup: None,
            probe: ProcessProbe::new().ok(),
            last: Progress::default(),
            describe,
        }
    }

    pub fn config(&self) -> &ChunkConfig {
        &self.config
    }

    /// "sqlite:/path", "postgres://user:***@host/db", "host postgres connection".
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The manager whose cleanup hooks run when a chunk exceeds `memory_limit`.
    pub fn set_manager(&mut self, manager: Option<Arc<MemoryManager>>) {
        self.cleanup = manager.map(|m| -> CleanupFn { Box::new(move || m.force_garbage_collection().map(|_| ())) });
    }

    /// What runs when a chunk exceeds `memory_limit` (instead of a manager's cleanup).
    pub fn set_cleanup(&mut self, cleanup: Option<CleanupFn>) {
        self.cleanup = cleanup;
    }

    /// Statistics of the last (or running) call.
    pub fn stats(&self) -> &Progress {
        &self.last
    }

    fn backend(&mut self) -> &mut dyn Backend {
        match &mut self.conn {
            Conn::Native { main, .. } => main.as_mut(),
            Conn::Host(b) => b.as_mut(),
        }
    }

    fn builder(&mut self) -> SqlBuilder {
        let b = self.backend();
        SqlBuilder { dialect: b.dialect(), style: b.param_style() }
    }

    /// The key column: configured, or the single-column primary key of the query's table.
    fn resolve_key(&mut self, query: &str, columns: &[String]) -> Result<String> {
        let key = match &self.config.key_column {
            Some(k) => k.clone(),
            None => {
                let table = main_table(query).ok_or_else(|| {
                    Error::invalid_argument(
                        "cannot tell which column to page by: the query does not read a single table by name; \
                         set key_column to a unique column of the query's output (usually the primary key)",
                    )
                })?;
                let (sql, params) = self.builder().primary_key(&table);
                let pk = self.backend().query(&sql, &params, None, true)?;
                let names: Vec<String> = pk
                    .iter_rows()
                    .filter_map(|r| match &r[0] {
                        Value::Text(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                match names.len() {
                    1 => names.into_iter().next().unwrap_or_default(),
                    0 => {
                        return Err(Error::invalid_argument(format!(
                            "table '{table}' has no primary key to page by; set key_column to a unique, \
                             indexed column of the query's output"
                        )));
                    }
                    _ => {
                        return Err(Error::invalid_argument(format!(
                            "table '{table}' has a composite primary key ({}); set key_column to a single \
                             unique column of the query's output",
                            names.join(", ")
                        )));
                    }
                }
            }
        };
        if !columns.iter().any(|c| c == &key) {
            return Err(missing_key(&key, columns));
        }
        Ok(key)
    }

    /// Calls `on_row` for every row of `query`, chunk by chunk.
    pub fn process(
        &mut self,
        query: &str,
        on_row: &mut dyn FnMut(&Batch, usize) -> Result<()>,
        on_progress: Option<ProgressFn<'_>>,
        on_error: Option<ErrorFn<'_>>,
    ) -> Result<Progress> {
        let mut per_batch = |b: &Batch| -> Result<()> {
            for i in 0..b.len() {
                on_row(b, i)?;
            }
            Ok(())
        };
        let mut h = Handlers {
            on_batch: &mut per_batch,
            on_batch_tx: None,
            on_progress: on_progress.map(|f| -> &mut dyn FnMut(&Progress) -> Result<()> { f }),
            on_error: on_error.map(|f| -> &mut dyn FnMut(&Error, &ChunkInfo) -> Result<bool> { f }),
        };
        self.process_query(query, &QueryOptions::default(), &mut h)
    }

    /// Hands `query`'s rows to `handlers.on_batch`, one chunk at a time.
    pub fn process_query(&mut self, query: &str, opts: &QueryOptions, h: &mut Handlers<'_>) -> Result<Progress> {
        let started = Instant::now();
        let query = strip_query(query)?.to_string();
        let chunk_size = Arc::new(AtomicUsize::new(opts.batch_size.unwrap_or(self.config.chunk_size)));
        let mut stats = Progress {
            chunk_size: chunk_size.load(Ordering::Relaxed),
            pagination: self.config.pagination.as_str(),
            ..Progress::default()
        };
        let mut workers = match opts.parallel {
            Some(0) => self.config.parallel_chunks.max(2),
            Some(n) => n,
            None => self.config.parallel_chunks,
        };
        if workers > 1 && self.config.checkpoint_table.is_some() {
            return Err(Error::invalid_argument(format!(
                "'parallel' {workers} cannot be used with checkpoint_table: the same-transaction mode runs each \
                 chunk in one transaction on one connection"
            )));
        }
        if workers > 1 && matches!(self.conn, Conn::Host(_)) {
            stats.warnings.push(format!(
                "parallel_chunks {workers} needs a connection string: a host connection object serves one \
                 thread, so this run used 1"
            ));
            workers = 1;
        }

        // A SQLite file the host opened through its own SQLite after this processor did.
        if let Conn::Native { connector, .. } = &self.conn {
            connector.check_shared_file()?;
        }
        // The query's columns, which also checks its syntax before anything runs.
        let probe = self.builder().probe_columns(&query)?;
        let columns = self
            .backend()
            .query(&probe, &[], None, true)
            .map_err(|e| Error::new(e.kind(), format!("the query failed: {}", e.message())))?
            .columns;
        let key = match self.config.pagination {
            Pagination::Keyset => Some(self.resolve_key(&query, &columns)?),
            Pagination::Offset => self.resolve_key(&query, &columns).ok(),
            Pagination::Cursor => self.config.key_column.clone().filter(|k| columns.contains(k)),
        };
        stats.key_column = key.clone();
        // The total only feeds progress: on a connection string it is counted on a connection
        // of its own while the first chunks are read, and waited for at the first progress call.
        // Without a progress callback nobody looks at the total before the end, where the walk
        // itself knows it: no count query at all (unless an exact count is asked for).
        let exact = self.config.exact_count;
        let needs_total = h.on_progress.is_some() || exact;
        let pending_total = match &mut self.conn {
            _ if !needs_total => None,
            Conn::Native { connector, .. } if connector.shareable() => {
                let (connector, q, timeout) = (connector.clone(), query.clone(), self.config.timeout);
                Some(std::thread::spawn(move || {
                    let mut b = connector.connect()?;
                    b.set_timeout(timeout)?;
                    count_rows(b.as_mut(), &q, exact)
                }))
            }
            _ => {
                (stats.total, stats.total_is_exact) = count_rows(self.backend(), &query, exact)?;
                None
            }
        };

        // Where to start: a checkpoint, else the whole key space (split for parallel workers).
        let checkpoint = self.config.checkpoint.clone().map(|p| Checkpoint::new(p, self.config.checkpoint_fsync));
        let mut ranges = vec![RangeState::whole()];
        let txcp = match (&self.config.checkpoint_table, &key) {
            (Some(t), Some(k)) => {
                let cp = TxCheckpoint::new(t, &query, k);
                cp.ensure_table(self.backend())?;
                if let Some(state) = cp.load(self.backend())? {
                    ranges[0].last = Some(state.last);
                    stats.resumed = true;
                    stats.processed = state.processed;
                }
                Some(cp)
            }
            _ => None,
        };
        if txcp.is_some() {
        } else if let (Some(cp), Some(k)) = (&checkpoint, &key)
            && let Some((saved, processed)) = cp.load(&query, k)?
        {
            ranges = saved;
            stats.resumed = true;
            stats.processed = processed;
        } else if workers > 1 && self.config.pagination == Pagination::Keyset {
            ranges = self.split(&query, key.as_deref().unwrap_or_default(), workers, &mut stats)?;
        }
        if self.config.pagination != Pagination::Keyset && workers > 1 {
            stats
                .warnings
                .push(format!("pagination '{}' reads on one connection; parallel_chunks ignored", stats.pagination));
            workers = 1;
        }
        if self.config.pagination == Pagination::Offset {
            stats.warnings.push(
                "pagination 'offset' skips or repeats rows when the data changes during the run and slows down \
                 with every page; keyset pagination (the default) has neither problem"
                    .into(),
            );
        }
        let pending: Vec<usize> = (0..ranges.len()).filter(|&i| !ranges[i].done).collect();
        stats.workers = pending.len().min(workers.max(1)).max(1);
        self.last = stats.clone();
        let builder = self.builder();

        let mut run = Run {
            query: &query,
            key: key.as_deref(),
            ranges,
            stats,
            checkpoint: checkpoint.as_ref(),
            txcp: txcp.as_ref(),
            config: &self.config,
            chunk_size: chunk_size.clone(),
            started,
            cleanup: self.cleanup.as_mut(),
            probe: self.probe.as_ref(),
            index: 0,
            pending_total,
        };
        let result = match &mut self.conn {
            // Worker threads only pay off when they read ahead: parallel ranges or prefetch.
            Conn::Native { connector, main }
                if connector.shareable() && (workers > 1 || self.config.prefetch) && txcp.is_none() =>
            {
                run.threaded(connector, main, &builder, &pending, workers, h)
            }
            Conn::Native { main, .. } => run.inline(main.as_mut(), &builder, &pending, h),
            Conn::Host(b) => run.inline(b.as_mut(), &builder, &pending, h),
        };
        let total = run.resolve_total();
        let final_key = run.ranges.first().and_then(|r| r.last.clone());
        if !needs_total && result.is_ok() {
            (run.stats.total, run.stats.total_is_exact) = (run.stats.processed + run.stats.failed_rows, true);
        }
        run.stats.elapsed = started.elapsed().as_secs_f64();
        self.last = run.stats.clone();
        result?;
        total?;
        if let Some(cp) = &checkpoint {
            cp.finish()?;
        }
        if let Some(cp) = &txcp {
            // In a transaction of its own (a host connection, DB-API or PDO, may not
            // autocommit), after checking the row still holds this run's last commit.
            let b = self.backend();
            b.begin()?;
            let r = cp.lock(b, final_key.as_ref()).and_then(|l| match l {
                txcheckpoint::Locked::Row { .. } => cp.finish(b).and_then(|_| b.commit()),
                txcheckpoint::Locked::Moved(e) => Err(e),
            });
            if let Err(e) = r {
                let _ = b.rollback();
                return Err(e);
            }
        }
        Ok(self.last.clone())
    }

    /// Splits the integer key space into `n` ranges `(lo, hi]`; the last is open-ended so rows
    /// inserted beyond the current maximum are still processed.
    fn split(&mut self, query: &str, key: &str, n: usize, stats: &mut Progress) -> Result<Vec<RangeState>> {
        let sql = self.builder().min_max(query, key)?;
        let b = self.backend().query(&sql, &[], None, true)?;
        let (lo, hi) = match (b.row(0).first(), b.row(0).get(1)) {
            (Some(Value::Int(a)), Some(Value::Int(z))) => (*a as i128, *z as i128),
            (Some(Value::Null), _) | (None, _) => return Ok(vec![RangeState::whole()]),
            (Some(other), _) => {
                stats.warnings.push(format!(
                    "parallel_chunks needs an integer key column; '{key}' holds {} values, so this run used 1 worker",
                    other.type_name()
                ));
                return Ok(vec![RangeState::whole()]);
            }
        };
        let span = hi - lo + 1;
        let n = (n as i128).min(span.max(1));
        let bound = |i: i128| Value::Int((lo - 1 + span * i / n) as i64);
        Ok((0..n)
            .map(|i| RangeState {
                lo: if i == 0 { None } else { Some(bound(i)) },
                hi: if i == n - 1 { None } else { Some(bound(i + 1)) },
                last: None,
                done: false,
            })
            .collect())
    }
}

/// The query's row count: the planner's estimate when the database has one and an exact
/// count is not asked for, else `COUNT(*)`.
fn count_rows(backend: &mut dyn Backend, query: &str, exact: bool) -> Result<(u64, bool)> {
    if !exact && let Ok(Some(n)) = backend.estimate_rows(query) {
        return Ok((n, false));
    }
    let sql = SqlBuilder { dialect: backend.dialect(), style: backend.param_style() }.count(query)?;
    let b = backend.query(&sql, &[], None, true)?;
    let n = match b.row(0).first() {
        Some(Value::Int(n)) => *n as u64,
        Some(Value::Text(t)) => t.parse().unwrap_or(0),
        Some(Value::Real(r)) => *r as u64,
        _ => 0,
    };
    Ok((n, true))
}

/// The state of one `process_query` call.
struct Run<'r> {
    query: &'r str,
    key: Option<&'r str>,
    ranges: Vec<RangeState>,
    stats: Progress,
    checkpoint: Option<&'r Checkpoint>,
    txcp: Option<&'r TxCheckpoint>,
    config: &'r ChunkConfig,
    chunk_size: Arc<AtomicUsize>,
    started: Instant,
    cleanup: Option<&'r mut CleanupFn>,
    probe: Option<&'r ProcessProbe>,
    index: u64,
    pending_total: Option<std::thread::JoinHandle<Result<(u64, bool)>>>,
}

/// Fetches one page of a range, retrying with backoff. Returns the error and attempts on failure.
#[allow(clippy::too_many_arguments)]
fn fetch(
    backend: &mut dyn Backend,
    builder: &SqlBuilder,
    query: &str,
    key: Option<&str>,
    range: &RangeState,
    offset: u64,
    pagination: Pagination,
    limit: usize,
    retry_attempts: u32,
    retry_delay: Duration,
    retries: &AtomicUsize,
) -> std::result::Result<Batch, (Error, u32)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = match pagination {
            Pagination::Offset => {
                builder.offset(query, key, offset, limit).and_then(|sql| backend.query(&sql, &[], key, false))
            }
            _ => {
                let k = key.unwrap_or_default();
                builder
                    .keyset(query, k, range.after(), range.hi.as_ref(), limit)
                    .and_then(|(sql, params)| backend.query(&sql, &params, key, false))
            }
        };
        match r {
            Ok(b) => return Ok(b),
            Err(e) if attempt <= retry_attempts && e.kind() != ErrorKind::InvalidArgument => {
                retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(backoff(retry_delay, attempt));
                // A connection the server dropped is replaced before the retry; when that fails
                // too, the retry reports why.
                if let Err(e) = backend.recover()
                    && attempt == retry_attempts
                {
                    return Err((e, attempt + 1));
                }
            }
            Err(e) => return Err((e, attempt)),
        }
    }
}

/// A new connection for a parallel worker, with `retry_attempts` retries and backoff; the
/// last error and the attempts made when none could be made.
fn connect_retrying(
    connector: &NativeConnector,
    timeout: Option<Duration>,
    retry_attempts: u32,
    retry_delay: Duration,
    retries: &AtomicUsize,
) -> std::result::Result<Box<dyn Backend + Send>, (Error, u32)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match connector.connect().and_then(|mut b| b.set_timeout(timeout).map(|_| b)) {
            Ok(b) => return Ok(b),
            Err(_) if attempt <= retry_attempts => {
                retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(backoff(retry_delay, attempt));
            }
            Err(e) => return Err((e, attempt)),
        }
    }
}

impl Run<'_> {
    fn resolve_total(&mut self) -> Result<()> {
        if let Some(h) = self.pending_total.take() {
            let (n, exact) = h.join().map_err(|_| Error::new(ErrorKind::Database, "counting the rows panicked"))??;
            (self.stats.total, self.stats.total_is_exact) = (n, exact);
        }
        Ok(())
    }

    /// Pages on the calling thread (host connections, SQLite `:memory:`).
    fn inline(
        &mut self,
        backend: &mut dyn Backend,
        builder: &SqlBuilder,
        pending: &[usize],
        h: &mut Handlers<'_>,
    ) -> Result<()> {
        let retries = AtomicUsize::new(0);
        if self.config.pagination == Pagination::Cursor {
            let (query, key) = (self.query, self.key);
            let cs = self.chunk_size.clone();
            let mut failure = None;
            let r = backend.cursor(query, key, &|| cs.load(Ordering::Relaxed), &mut |batch| match self
                .deliver(0, None, batch, h, None)
            {
                Ok(()) => Ok(true),
                Err(e) => {
                    failure = Some(e);
                    Ok(false)
                }
            });
            return match failure {
                Some(e) => Err(e),
                None => r,
            };
        }
        for &ri in pending {
            let mut offset = 0u64;
            loop {
                let limit = self.chunk_size.load(Ordering::Relaxed);
                let r = fetch(
                    backend,
                    builder,
                    self.query,
                    self.key,
                    &self.ranges[ri],
                    offset,
                    self.config.pagination,
                    limit,
                    self.config.retry_attempts,
                    self.config.retry_delay,
                    &retries,
                );
                self.stats.retries += retries.swap(0, Ordering::Relaxed) as u64;
                let after = self.ranges[ri].after().cloned();
                match r {
                    Ok(b) if b.is_empty() => break,
                    Ok(b) => {
                        offset += b.len() as u64;
                        self.deliver(ri, after, b, h, Some(&mut *backend))?
                    }
                    Err((e, attempts)) => return Err(self.fetch_failed(after, e, attempts)),
                }
            }
            self.range_done(ri)?;
        }
        Ok(())
    }

    /// Pages on worker threads, one connection each; callbacks stay on the calling thread.
    fn threaded(
        &mut self,
        connector: &NativeConnector,
        main: &mut Box<dyn Backend + Send>,
        builder: &SqlBuilder,
        pending: &[usize],
        workers: usize,
        h: &mut Handlers<'_>,
    ) -> Result<()> {
        if self.config.pagination == Pagination::Cursor || self.config.pagination == Pagination::Offset {
            return self.inline(main.as_mut(), builder, pending, h);
        }
        let workers = workers.clamp(1, pending.len().max(1));
        let stop = AtomicBool::new(false);
        let retries = AtomicUsize::new(0);
        let next_range = AtomicUsize::new(0);
        let (tx, rx) = mpsc::sync_channel::<Msg>(workers);
        // Without prefetch a worker reads its next chunk only once the callback is done with
        // the last one, so the callback's own inserts and deletes ahead of it are seen.
        let prefetch = self.config.prefetch;
        let mut acks = Vec::new();
        let mut ack_rxs = Vec::new();
        for _ in 0..workers {
            let (a, b) = mpsc::sync_channel::<()>(1);
            acks.push(a);
            ack_rxs.push(Some(b));
        }
        let ranges = self.ranges.clone();
        let (query, key, cfg, cs) = (self.query, self.key, self.config, self.chunk_size.clone());
        let timeout = cfg.timeout;
        let (stop, retries, next_range, ranges) = (&stop, &retries, &next_range, &ranges);
        std::thread::scope(|scope| -> Result<()> {
            let mut mains = Some(main);
            for (w, ack_slot) in ack_rxs.iter_mut().enumerate() {
                let tx = tx.clone();
                let cs = cs.clone();
                let lent = if w == 0 { mains.take() } else { None };
                let ack = ack_slot.take();
                scope.spawn(move || {
                    let mut own;
                    let backend: &mut dyn Backend = match lent {
                        Some(m) => m.as_mut(),
                        // A connection refused or dropped while it is made (a restarting
                        // server, a killed session) is retried as a failed chunk is.
                        None => {
                            match connect_retrying(connector, timeout, cfg.retry_attempts, cfg.retry_delay, retries) {
                                Ok(b) => {
                                    own = b;
                                    own.as_mut()
                                }
                                Err((error, attempts)) => {
                                    let _ = tx.send(Msg::Failed { range: usize::MAX, after: None, error, attempts });
                                    return;
                                }
                            }
                        }
                    };
                    loop {
                        let i = next_range.fetch_add(1, Ordering::Relaxed);
                        let Some(&ri) = pending.get(i) else { return };
                        let mut range = ranges[ri].clone();
                        loop {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            let limit = cs.load(Ordering::Relaxed);
                            let after = range.after().cloned();
                            let r = fetch(
                                backend,
                                builder,
                                query,
                                key,
                                &range,
                                0,
                                Pagination::Keyset,
                                limit,
                                cfg.retry_attempts,
                                cfg.retry_delay,
                                retries,
                            );
                            match r {
                                Ok(b) if b.is_empty() => {
                                    if tx.send(Msg::Done { range: ri }).is_err() {
                                        return;
                                    }
                                    break;
                                }
                                Ok(batch) => {
                                    range.last = batch.last_key.clone();
                                    if tx.send(Msg::Batch { worker: w, range: ri, after, batch }).is_err() {
                                        return;
                                    }
                                    if !prefetch && ack.as_ref().is_some_and(|a| a.recv().is_err()) {
                                        return;
                                    }
                                }
                                Err((error, attempts)) => {
                                    let _ = tx.send(Msg::Failed { range: ri, after, error, attempts });
                                    return;
                                }
                            }
                        }
                    }
                });
            }
            drop(tx);
            let result = (|| -> Result<()> {
                for msg in rx.iter() {
                    self.stats.retries += retries.swap(0, Ordering::Relaxed) as u64;
                    match msg {
                        Msg::Batch { worker, range, after, batch } => {
                            self.deliver(range, after, batch, h, None)?;
                            if !prefetch {
                                let _ = acks[worker].send(());
                            }
                        }
                        Msg::Done { range } => self.range_done(range)?,
                        Msg::Failed { range: usize::MAX, error, .. } => return Err(error),
                        Msg::Failed { after, error, attempts, .. } => {
                            return Err(self.fetch_failed(after, error, attempts));
                        }
                    }
                }
                Ok(())
            })();
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            drop(rx);
            drop(acks);
            result
        })
    }

    fn fetch_failed(&mut self, after: Option<Value>, e: Error, attempts: u32) -> Error {
        let info =
            ChunkInfo { index: self.index + 1, after_key: after, first_key: None, last_key: None, rows: 0, attempts };
        Error::new(
            e.kind(),
            format!(
                "reading chunk {info} failed after {attempts} attempt(s): {}; a chunk that could not be read \
                 cannot be skipped, so the run stopped{}",
                e.message(),
                if self.checkpoint.is_some() { " (rerun to resume from the checkpoint)" } else { "" }
            ),
        )
    }

    fn range_done(&mut self, ri: usize) -> Result<()> {
        self.ranges[ri].done = true;
        self.save()
    }

    fn save(&self) -> Result<()> {
        match (self.checkpoint, self.key) {
            (Some(cp), Some(k)) => cp.save(self.query, k, &self.ranges, self.stats.processed),
            _ => Ok(()),
        }
    }

    /// One attempt at a chunk in the same-transaction mode: BEGIN, lock and check the run's
    /// checkpoint row, the callback, the new checkpoint, COMMIT; on any failure ROLLBACK. The
    /// outer error stops the run at once (the row moved: see `TxCheckpoint::lock`); the inner
    /// one fails the attempt (retried, then the error policy). A COMMIT that fails may still
    /// have committed (the connection died on the way back): the checkpoint row then tells.
    #[allow(clippy::too_many_arguments)]
    fn tx_attempt(
        &self,
        cp: &TxCheckpoint,
        b: &mut dyn Backend,
        after: Option<&Value>,
        batch: Option<&Batch>,
        h: &mut Handlers<'_>,
        processed: u64,
        last: &Value,
    ) -> Result<Result<()>> {
        if let Err(e) = b.begin() {
            return Ok(Err(Error::new(e.kind(), format!("starting the chunk's transaction: {}", e.message()))));
        }
        let exists = match cp.lock(b, after) {
            Ok(txcheckpoint::Locked::Row { exists }) => exists,
            Ok(txcheckpoint::Locked::Moved(e)) => {
                let _ = b.rollback();
                return Err(e);
            }
            Err(e) => {
                let _ = b.rollback();
                return Ok(Err(e));
            }
        };
        let r = (|| {
            if let Some(batch) = batch {
                let mut tx = ChunkTx::new(&mut *b);
                match h.on_batch_tx.as_mut() {
                    Some(f) => f(batch, &mut tx)?,
                    None => (h.on_batch)(batch)?,
                }
            }
            cp.save(b, exists, last, processed)
        })();
        if let Err(e) = r {
            let _ = b.rollback();
            return Ok(Err(e));
        }
        Ok(match b.commit() {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = b.rollback();
                let _ = b.recover();
                match cp.load(b) {
                    Ok(Some(s)) if &s.last == last => Ok(()),
                    _ => Err(Error::new(e.kind(), format!("committing the chunk: {}", e.message()))),
                }
            }
        })
    }

    /// Hands one chunk to the host: retries, the error policy, checkpoint, memory budget, progress.
    /// `backend` is the connection the chunk was read on (the same-transaction mode writes there).
    fn deliver(
        &mut self,
        ri: usize,
        after: Option<Value>,
        batch: Batch,
        h: &mut Handlers<'_>,
        backend: Option<&mut dyn Backend>,
    ) -> Result<()> {
        self.index += 1;
        // A NULL key cannot be paged past (`key > NULL` matches nothing): stop rather than
        // silently end the walk early.
        if matches!(batch.last_key, Some(Value::Null)) && self.config.pagination == Pagination::Keyset {
            return Err(Error::invalid_argument(format!(
                "the key column '{}' holds NULL values; page by a unique NOT NULL column (key_column)",
                self.key.unwrap_or_default()
            )));
        }
        let tx = match (self.txcp, backend) {
            (Some(cp), Some(b)) => {
                if !matches!(batch.last_key, Some(Value::Int(_) | Value::Text(_))) {
                    return Err(Error::invalid_argument(format!(
                        "checkpoint_table needs an integer or text key column; '{}' holds {} values",
                        self.key.unwrap_or_default(),
                        batch.last_key.as_ref().map_or("no", Value::type_name)
                    )));
                }
                Some((cp, b))
            }
            _ => None,
        };
        let mut tx = tx;
        let mut attempts = 0;
        let ok = loop {
            attempts += 1;
            let r = match tx.as_mut() {
                Some((cp, b)) => {
                    let processed = self.stats.processed + batch.len() as u64;
                    let last = batch.last_key.clone().unwrap_or(Value::Null);
                    self.tx_attempt(cp, &mut **b, after.as_ref(), Some(&batch), h, processed, &last)?
                }
                None => (h.on_batch)(&batch),
            };
            match r {
                Ok(()) => break true,
                Err(e) if attempts <= self.config.retry_attempts => {
                    let _ = e;
                    self.stats.retries += 1;
                    std::thread::sleep(backoff(self.config.retry_delay, attempts));
                }
                Err(e) => {
                    let info = ChunkInfo {
                        index: self.index,
                        after_key: after.clone(),
                        first_key: batch.first_key.clone(),
                        last_key: batch.last_key.clone(),
                        rows: batch.len(),
                        attempts,
                    };
                    let go_on = match h.on_error.as_mut() {
                        Some(cb) => cb(&e, &info)?,
                        None => false,
                    };
                    if !go_on {
                        return Err(e);
                    }
                    self.stats.failed_chunks += 1;
                    self.stats.failed_rows += batch.len() as u64;
                    self.stats.failures.push((info, e.message().to_string()));
                    break false;
                }
            }
        };
        if ok {
            self.stats.processed += batch.len() as u64;
        } else if let (Some((cp, b)), Some(last)) = (tx.as_mut(), batch.last_key.as_ref()) {
            // A skipped chunk: its writes were rolled back; the checkpoint moves past it.
            self.tx_attempt(cp, &mut **b, after.as_ref(), None, h, self.stats.processed, last)??;
        }
        self.stats.chunks += 1;
        if let Some(k) = &batch.last_key {
            self.ranges[ri].last = Some(k.clone());
        }
        self.save()?;
        // The per-chunk memory budget.
        self.stats.max_chunk_bytes = self.stats.max_chunk_bytes.max(batch.bytes);
        if let Some(limit) = self.config.memory_limit
            && batch.bytes as u64 > limit
        {
            if let Some(cleanup) = self.cleanup.as_mut() {
                cleanup()?;
                self.stats.cleanups += 1;
            }
            let cur = self.chunk_size.load(Ordering::Relaxed);
            let next = (cur / 2).max(1);
            if next < cur {
                self.chunk_size.store(next, Ordering::Relaxed);
                self.stats.chunk_size_reductions += 1;
            }
        }
        drop(batch);
        self.stats.chunk_size = self.chunk_size.load(Ordering::Relaxed);
        self.stats.elapsed = self.started.elapsed().as_secs_f64();
        self.stats.memory_usage_bytes = self.probe.and_then(|p| p.current_bytes().ok()).unwrap_or(0);
        if let Some(cb) = h.on_progress.as_mut() {
            self.resolve_total()?;
            cb(&self.stats)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
