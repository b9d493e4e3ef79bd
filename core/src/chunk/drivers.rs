//! Native connections: SQLite (rusqlite, bundled), PostgreSQL (postgres), MySQL/MariaDB (mysql).

use std::sync::Arc;
use std::time::Duration;

use super::backend::{Backend, Dialect, ParamStyle};
use super::batch::{Batch, Value};
use super::url::ConnSpec;
use crate::error::{Error, ErrorKind, Result};

/// Opens native connections for one connection string; parallel workers each get their own.
#[derive(Debug, Clone)]
pub struct NativeConnector {
    spec: ConnSpec,
    connect_timeout: Duration,
    allow_shared_sqlite_file: bool,
}

impl NativeConnector {
    pub fn new(spec: ConnSpec, connect_timeout: Duration) -> Self {
        NativeConnector { spec, connect_timeout, allow_shared_sqlite_file: false }
    }

    /// Opens a SQLite file even when the process holds it open outside memwarden (see
    /// `shared_file`); only safe when nothing writes the file during the run.
    pub fn allow_shared_sqlite_file(mut self, allow: bool) -> Self {
        self.allow_shared_sqlite_file = allow;
        self
    }

    /// Fails when this process holds the SQLite file open through another SQLite library
    /// (see `shared_file`); a no-op for servers and `:memory:`.
    pub fn check_shared_file(&self) -> Result<()> {
        match &self.spec {
            ConnSpec::Sqlite { path } => super::shared_file::check(path, self.allow_shared_sqlite_file),
            _ => Ok(()),
        }
    }

    pub fn spec(&self) -> &ConnSpec {
        &self.spec
    }

    pub fn dialect(&self) -> Dialect {
        match self.spec {
            ConnSpec::Sqlite { .. } => Dialect::Sqlite,
            ConnSpec::Postgres { .. } => Dialect::Postgres,
            ConnSpec::Mysql { .. } => Dialect::Mysql,
        }
    }

    /// Whether a second connection sees the same data (not so for SQLite's `:memory:`).
    pub fn shareable(&self) -> bool {
        !matches!(&self.spec, ConnSpec::Sqlite { path } if path.starts_with(":memory:") || path.is_empty())
    }

    pub fn connect(&self) -> Result<Box<dyn Backend + Send>> {
        let fail = |e: &dyn std::fmt::Display| {
            Error::new(ErrorKind::Database, format!("could not connect to {}: {e}", self.spec.describe()))
        };
        match &self.spec {
            #[cfg(feature = "sqlite")]
            ConnSpec::Sqlite { path } => {
                let (backend, guard) = super::shared_file::open(path, self.allow_shared_sqlite_file, || {
                    sqlite::SqliteBackend::open(path).map_err(|e| fail(&e))
                })?;
                Ok(Box::new(backend.guarded(guard)))
            }
            #[cfg(feature = "postgres")]
            ConnSpec::Postgres { config, .. } => {
                let mut cfg: postgres::Config = config.parse().map_err(|e| fail(&e))?;
                cfg.connect_timeout(self.connect_timeout);
                let client = cfg.connect(postgres::NoTls).map_err(|e| fail(&e))?;
                Ok(Box::new(pg::PgBackend::new(client).reconnecting(cfg)))
            }
            #[cfg(feature = "mysql")]
            ConnSpec::Mysql { url, .. } => {
                let opts = mysql::Opts::from_url(url).map_err(|e| fail(&e))?;
                let opts = mysql::OptsBuilder::from_opts(opts)
                    .tcp_connect_timeout(Some(self.connect_timeout))
                    .prefer_socket(false);
                let conn = mysql::Conn::new(opts.clone()).map_err(|e| fail(&e))?;
                Ok(Box::new(my::MyBackend { conn, mariadb: None, opts: Some(opts), timeout: None }))
            }
            #[allow(unreachable_patterns)]
            _ => Err(Error::new(
                ErrorKind::Unsupported,
                format!("{} support was not compiled into this build of memwarden", self.dialect().as_str()),
            )),
        }
    }
}

fn db_error(context: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Database, format!("{context}: {e}"))
}

fn key_index(columns: &[String], key: Option<&str>) -> Result<Option<usize>> {
    match key {
        None => Ok(None),
        Some(k) => columns.iter().position(|c| c == k).map(Some).ok_or_else(|| missing_key(k, columns)),
    }
}

/// The error for a query whose output lacks the key column.
pub fn missing_key(key: &str, columns: &[String]) -> Error {
    Error::invalid_argument(format!(
        "the query's output has no column '{key}' (the key column); select it, or name another unique column \
         with key_column (columns are: {})",
        columns.join(", ")
    ))
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use rusqlite::types::ValueRef;

    use super::*;

    pub struct SqliteBackend {
        conn: rusqlite::Connection,
        /// Deadline of the running query as nanoseconds after `epoch`; 0 = none.
        deadline: Arc<AtomicU64>,
        epoch: Instant,
        timeout: Option<Duration>,
        /// Values in the last page, to size the next one's buffer at once.
        last_len: usize,
        /// Marks the file as memwarden's own while the connection lives (after `conn`, so
        /// it is dropped after the connection closed).
        _guard: Option<super::super::shared_file::Registration>,
    }

    impl SqliteBackend {
        pub fn open(path: &str) -> rusqlite::Result<Self> {
            let mut conn = rusqlite::Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(30))?;
            let deadline = Arc::new(AtomicU64::new(0));
            let epoch = Instant::now();
            let d = deadline.clone();
            conn.progress_handler(
                10_000,
                Some(move || {
                    let at = d.load(Ordering::Relaxed);
                    at != 0 && epoch.elapsed().as_nanos() as u64 > at
                }),
            )?;
            Ok(SqliteBackend { conn, deadline, epoch, timeout: None, last_len: 0, _guard: None })
        }

        pub fn guarded(mut self, guard: Option<super::super::shared_file::Registration>) -> Self {
            self._guard = guard;
            self
        }
    }

    fn to_sql(v: &Value) -> rusqlite::types::Value {
        use rusqlite::types::Value as S;
        match v {
            Value::Null => S::Null,
            Value::Bool(b) => S::Integer(*b as i64),
            Value::Int(i) => S::Integer(*i),
            Value::Real(r) => S::Real(*r),
            Value::Text(t) => S::Text(t.clone()),
            Value::Blob(b) => S::Blob(b.clone()),
        }
    }

    impl Backend for SqliteBackend {
        fn dialect(&self) -> Dialect {
            Dialect::Sqlite
        }
        fn param_style(&self) -> ParamStyle {
            ParamStyle::Question
        }
        fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
            self.timeout = timeout;
            Ok(())
        }
        fn query(&mut self, sql: &str, params: &[Value], key: Option<&str>, _meta: bool) -> Result<Batch> {
            if let Some(t) = self.timeout {
                self.deadline.store((self.epoch.elapsed() + t).as_nanos() as u64, Ordering::Relaxed);
            }
            let result = (|| -> rusqlite::Result<Result<Batch>> {
                let mut stmt = self.conn.prepare_cached(sql)?;
                let columns: Arc<[String]> = stmt.column_names().map(String::from).collect();
                let ki = match key_index(&columns, key) {
                    Ok(k) => k,
                    Err(e) => return Ok(Err(e)),
                };
                let width = columns.len();
                let params: Vec<rusqlite::types::Value> = params.iter().map(to_sql).collect();
                let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
                let mut values = Vec::with_capacity(self.last_len);
                while let Some(row) = rows.next()? {
                    for i in 0..width {
                        values.push(match row.get_ref(i)? {
                            ValueRef::Null => Value::Null,
                            ValueRef::Integer(i) => Value::Int(i),
                            ValueRef::Real(r) => Value::Real(r),
                            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        });
                    }
                }
                self.last_len = values.len();
                Ok(Ok(Batch::from_values(columns, values, ki)))
            })();
            self.deadline.store(0, Ordering::Relaxed);
            match result {
                Ok(r) => r,
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::OperationInterrupted => {
                    Err(Error::new(
                        ErrorKind::Timeout,
                        format!("query timed out after {:?} (timeout)", self.timeout.unwrap_or_default()),
                    ))
                }
                Err(e) => Err(db_error("sqlite", e)),
            }
        }
        fn execute(&mut self, sql: &str) -> Result<()> {
            self.conn.execute_batch(sql).map_err(|e| db_error("sqlite", e))
        }
    }
}

#[cfg(feature = "postgres")]
mod pg {
    use std::collections::HashMap;

    use postgres::types::{ToSql, Type};

    use super::*;

    pub struct PgBackend {
        client: postgres::Client,
        statements: HashMap<String, (postgres::Statement, Arc<[String]>)>,
        /// How to open a new connection when the server closed this one (see `recover`).
        config: Option<postgres::Config>,
        /// The last `set_timeout`, applied again to a new connection.
        timeout: Option<Option<Duration>>,
    }

    impl PgBackend {
        pub fn new(client: postgres::Client) -> Self {
            PgBackend { client, statements: HashMap::new(), config: None, timeout: None }
        }

        /// Lets `recover` open a new connection with `config`.
        pub fn reconnecting(mut self, config: postgres::Config) -> Self {
            self.config = Some(config);
            self
        }

        fn supported(t: &Type) -> bool {
            matches!(
                *t,
                Type::BOOL
                    | Type::INT2
                    | Type::INT4
                    | Type::INT8
                    | Type::OID
                    | Type::FLOAT4
                    | Type::FLOAT8
                    | Type::TEXT
                    | Type::VARCHAR
                    | Type::BPCHAR
                    | Type::NAME
                    | Type::BYTEA
            )
        }

        /// Prepares `sql`; a column of a type without a native mapping is read as its text
        /// form by rewriting the wrapper's `SELECT *` into a list with `::text` casts.
        fn prepare(&mut self, sql: &str) -> Result<(postgres::Statement, Arc<[String]>)> {
            if let Some(s) = self.statements.get(sql) {
                return Ok(s.clone());
            }
            let stmt = self.client.prepare(sql).map_err(|e| pg_error(&e))?;
            let mut prepared = stmt.clone();
            if stmt.columns().iter().any(|c| !Self::supported(c.type_())) && sql.starts_with("SELECT * FROM (") {
                let list: Vec<String> = stmt
                    .columns()
                    .iter()
                    .map(|c| {
                        let q = format!("mw_t.\"{}\"", c.name().replace('"', "\"\""));
                        if Self::supported(c.type_()) {
                            q
                        } else {
                            format!("{q}::text AS \"{}\"", c.name().replace('"', "\"\""))
                        }
                    })
                    .collect();
                let rewritten = format!("SELECT {}{}", list.join(", "), &sql["SELECT *".len()..]);
                prepared = self.client.prepare(&rewritten).map_err(|e| pg_error(&e))?;
            }
            let columns: Arc<[String]> = prepared.columns().iter().map(|c| c.name().to_string()).collect();
            if self.statements.len() > 64 {
                self.statements.clear();
            }
            self.statements.insert(sql.to_string(), (prepared.clone(), columns.clone()));
            Ok((prepared, columns))
        }
    }

    pub(super) fn pg_error(e: &postgres::Error) -> Error {
        if let Some(db) = e.as_db_error() {
            let kind = if db.code() == &postgres::error::SqlState::QUERY_CANCELED {
                ErrorKind::Timeout
            } else {
                ErrorKind::Database
            };
            return Error::new(kind, format!("postgres: {} ({})", db.message(), db.code().code()));
        }
        db_error("postgres", e)
    }

    fn get(row: &postgres::Row, i: usize, t: &Type) -> std::result::Result<Value, postgres::Error> {
        Ok(match *t {
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map_or(Value::Null, Value::Bool),
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map_or(Value::Null, |v| Value::Int(v as i64)),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map_or(Value::Null, |v| Value::Int(v as i64)),
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int),
            Type::OID => row.try_get::<_, Option<u32>>(i)?.map_or(Value::Null, |v| Value::Int(v as i64)),
            Type::FLOAT4 => row.try_get::<_, Option<f32>>(i)?.map_or(Value::Null, |v| Value::Real(v as f64)),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map_or(Value::Null, Value::Real),
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map_or(Value::Null, Value::Blob),
            _ => row.try_get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text),
        })
    }

    /// The parameters as the types the statement declares, so a caller's `$1` may be an int4,
    /// an int2 or a float4 column (the statements of `ChunkTx::execute`), not only int8/text.
    fn to_params(params: &[Value], types: &[Type]) -> Result<Vec<Box<dyn ToSql + Sync>>> {
        params
            .iter()
            .enumerate()
            .map(|(i, v)| -> Result<Box<dyn ToSql + Sync>> {
                let t = types.get(i).cloned().unwrap_or(Type::UNKNOWN);
                let range = |what: &str| {
                    Error::invalid_argument(format!("parameter {} ({v}) does not fit a {what} column", i + 1))
                };
                Ok(match (v, t) {
                    (Value::Null, _) => Box::new(Option::<String>::None),
                    (Value::Int(n), Type::INT2) => Box::new(i16::try_from(*n).map_err(|_| range("smallint"))?),
                    (Value::Int(n), Type::INT4) => Box::new(i32::try_from(*n).map_err(|_| range("integer"))?),
                    (Value::Int(n), Type::FLOAT8) => Box::new(*n as f64),
                    (Value::Int(n), Type::FLOAT4) => Box::new(*n as f32),
                    (Value::Int(n), Type::TEXT | Type::VARCHAR | Type::BPCHAR) => Box::new(n.to_string()),
                    (Value::Int(n), Type::BOOL) => Box::new(*n != 0),
                    (Value::Real(r), Type::FLOAT4) => Box::new(*r as f32),
                    (Value::Real(r), Type::TEXT | Type::VARCHAR | Type::BPCHAR) => Box::new(r.to_string()),
                    (Value::Bool(b), Type::INT2) => Box::new(*b as i16),
                    (Value::Bool(b), Type::INT4) => Box::new(*b as i32),
                    (Value::Bool(b), Type::INT8) => Box::new(*b as i64),
                    (Value::Bool(b), _) => Box::new(*b),
                    (Value::Int(n), _) => Box::new(*n),
                    (Value::Real(r), _) => Box::new(*r),
                    (Value::Text(t), _) => Box::new(t.clone()),
                    (Value::Blob(b), _) => Box::new(b.clone()),
                })
            })
            .collect()
    }

    fn rows_to_batch(
        stmt: &postgres::Statement,
        columns: Arc<[String]>,
        rows: &[postgres::Row],
        ki: Option<usize>,
    ) -> Result<Batch> {
        let types: Vec<&Type> = stmt.columns().iter().map(|c| c.type_()).collect();
        let mut values = Vec::with_capacity(rows.len() * types.len());
        for row in rows {
            for (i, t) in types.iter().enumerate() {
                values.push(get(row, i, t).map_err(|e| pg_error(&e))?);
            }
        }
        Ok(Batch::from_values(columns, values, ki))
    }

    impl Backend for PgBackend {
        fn dialect(&self) -> Dialect {
            Dialect::Postgres
        }
        fn param_style(&self) -> ParamStyle {
            ParamStyle::Dollar
        }
        fn supports_cursor(&self) -> bool {
            true
        }
        fn recover(&mut self) -> Result<()> {
            let Some(config) = &self.config else { return Ok(()) };
            // `is_closed` turns true only once the client has read the end of the stream,
            // which can come after the error that brought us here (a terminated backend's
            // FATAL arrives first): ask the server, as the MySQL backend pings.
            if !self.client.is_closed() && self.client.is_valid(Duration::from_secs(5)).is_ok() {
                return Ok(());
            }
            self.client = config.connect(postgres::NoTls).map_err(|e| db_error("postgres: reconnecting", e))?;
            // Prepared statements belong to the old session.
            self.statements.clear();
            match self.timeout {
                Some(t) => self.set_timeout(t),
                None => Ok(()),
            }
        }
        fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
            self.timeout = Some(timeout);
            let ms = timeout.map_or(0, |t| t.as_millis().max(1));
            self.client.batch_execute(&format!("SET statement_timeout = {ms}")).map_err(|e| pg_error(&e))
        }
        fn execute(&mut self, sql: &str) -> Result<()> {
            self.client.batch_execute(sql).map_err(|e| pg_error(&e))
        }
        fn estimate_rows(&mut self, sql: &str) -> Result<Option<u64>> {
            // EXPLAIN's json column has no binary mapping here; the simple protocol gives its text.
            let msgs = self.client.simple_query(&format!("EXPLAIN (FORMAT JSON) {sql}")).map_err(|e| pg_error(&e))?;
            let plan: serde_json::Value = msgs
                .iter()
                .find_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|t| serde_json::from_str(t).ok()),
                    _ => None,
                })
                .unwrap_or_default();
            Ok(plan[0]["Plan"]["Plan Rows"].as_f64().map(|r| r as u64))
        }
        fn query(&mut self, sql: &str, params: &[Value], key: Option<&str>, _meta: bool) -> Result<Batch> {
            let (stmt, columns) = self.prepare(sql)?;
            let ki = key_index(&columns, key)?;
            let owned = to_params(params, stmt.params())?;
            let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref()).collect();
            let rows = self.client.query(&stmt, &refs).map_err(|e| pg_error(&e))?;
            rows_to_batch(&stmt, columns, &rows, ki)
        }
        fn cursor(
            &mut self,
            sql: &str,
            key: Option<&str>,
            chunk: &dyn Fn() -> usize,
            sink: &mut dyn FnMut(Batch) -> Result<bool>,
        ) -> Result<()> {
            let (stmt, columns) = self.prepare(sql)?;
            let ki = key_index(&columns, key)?;
            let mut tx = self.client.transaction().map_err(|e| pg_error(&e))?;
            tx.batch_execute("SET TRANSACTION READ ONLY").map_err(|e| pg_error(&e))?;
            let portal = tx.bind(&stmt, &[]).map_err(|e| pg_error(&e))?;
            loop {
                let n = chunk().clamp(1, i32::MAX as usize) as i32;
                let rows = tx.query_portal(&portal, n).map_err(|e| pg_error(&e))?;
                let done = rows.len() < n as usize;
                if !rows.is_empty() && !sink(rows_to_batch(&stmt, columns.clone(), &rows, ki)?)? {
                    break;
                }
                if done {
                    break;
                }
            }
            tx.commit().map_err(|e| pg_error(&e))
        }
    }
}

#[cfg(feature = "mysql")]
mod my {
    use mysql::consts::ColumnType;
    use mysql::prelude::Queryable;

    use super::*;

    pub struct MyBackend {
        pub conn: mysql::Conn,
        pub mariadb: Option<bool>,
        /// How to open a new connection when the server closed this one (see `recover`).
        pub opts: Option<mysql::OptsBuilder>,
        /// The last `set_timeout`, applied again to a new connection.
        pub timeout: Option<Option<Duration>>,
    }

    fn my_error(e: &mysql::Error) -> Error {
        if let mysql::Error::MySqlError(m) = e {
            // 1969: MariaDB max_statement_time; 3024: MySQL max_execution_time.
            let kind = if m.code == 1969 || m.code == 3024 { ErrorKind::Timeout } else { ErrorKind::Database };
            return Error::new(kind, format!("mysql: {} ({})", m.message, m.code));
        }
        db_error("mysql", e)
    }

    fn to_my(v: &Value) -> mysql::Value {
        match v {
            Value::Null => mysql::Value::NULL,
            Value::Bool(b) => mysql::Value::Int(*b as i64),
            Value::Int(i) => mysql::Value::Int(*i),
            Value::Real(r) => mysql::Value::Double(*r),
            Value::Text(t) => mysql::Value::Bytes(t.as_bytes().to_vec()),
            Value::Blob(b) => mysql::Value::Bytes(b.clone()),
        }
    }

    fn from_my(v: mysql::Value, binary: bool) -> Value {
        match v {
            mysql::Value::NULL => Value::Null,
            mysql::Value::Int(i) => Value::Int(i),
            mysql::Value::UInt(u) => i64::try_from(u).map(Value::Int).unwrap_or_else(|_| Value::Text(u.to_string())),
            mysql::Value::Float(f) => Value::Real(f as f64),
            mysql::Value::Double(d) => Value::Real(d),
            mysql::Value::Bytes(b) if binary => Value::Blob(b),
            mysql::Value::Bytes(b) => match String::from_utf8(b) {
                Ok(s) => Value::Text(s),
                Err(e) => Value::Blob(e.into_bytes()),
            },
            mysql::Value::Date(y, mo, d, h, mi, s, us) => {
                if h == 0 && mi == 0 && s == 0 && us == 0 {
                    Value::Text(format!("{y:04}-{mo:02}-{d:02}"))
                } else if us == 0 {
                    Value::Text(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
                } else {
                    Value::Text(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"))
                }
            }
            mysql::Value::Time(neg, days, h, mi, s, us) => {
                let hours = days * 24 + h as u32;
                let sign = if neg { "-" } else { "" };
                if us == 0 {
                    Value::Text(format!("{sign}{hours:02}:{mi:02}:{s:02}"))
                } else {
                    Value::Text(format!("{sign}{hours:02}:{mi:02}:{s:02}.{us:06}"))
                }
            }
        }
    }

    impl Backend for MyBackend {
        fn dialect(&self) -> Dialect {
            Dialect::Mysql
        }
        fn param_style(&self) -> ParamStyle {
            ParamStyle::Question
        }
        fn recover(&mut self) -> Result<()> {
            let Some(opts) = &self.opts else { return Ok(()) };
            if self.conn.ping().is_ok() {
                return Ok(());
            }
            self.conn = mysql::Conn::new(opts.clone()).map_err(|e| db_error("mysql: reconnecting", e))?;
            match self.timeout {
                Some(t) => self.set_timeout(t),
                None => Ok(()),
            }
        }
        fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
            self.timeout = Some(timeout);
            let secs = timeout.map_or(0.0, |t| t.as_secs_f64());
            // MariaDB knows max_statement_time (seconds); MySQL max_execution_time (ms).
            if self.conn.query_drop(format!("SET SESSION max_statement_time = {secs}")).is_ok() {
                self.mariadb = Some(true);
                return Ok(());
            }
            self.mariadb = Some(false);
            let ms = (secs * 1000.0) as u64;
            self.conn.query_drop(format!("SET SESSION max_execution_time = {ms}")).map_err(|e| my_error(&e))
        }
        fn execute(&mut self, sql: &str) -> Result<()> {
            self.conn.query_drop(sql).map_err(|e| my_error(&e))
        }
        fn estimate_rows(&mut self, sql: &str) -> Result<Option<u64>> {
            let rows: Vec<mysql::Row> = self.conn.query(format!("EXPLAIN {sql}")).map_err(|e| my_error(&e))?;
            let est = rows.first().and_then(|r| {
                let i = r.columns_ref().iter().position(|c| c.name_str().eq_ignore_ascii_case("rows"))?;
                match r.as_ref(i)? {
                    mysql::Value::Int(n) => Some(*n as u64),
                    mysql::Value::UInt(n) => Some(*n),
                    mysql::Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
                    _ => None,
                }
            });
            Ok(est)
        }
        fn query(&mut self, sql: &str, params: &[Value], key: Option<&str>, _meta: bool) -> Result<Batch> {
            let params: Vec<mysql::Value> = params.iter().map(to_my).collect();
            let params = if params.is_empty() { mysql::Params::Empty } else { mysql::Params::Positional(params) };
            let mut result = self.conn.exec_iter(sql, params).map_err(|e| my_error(&e))?;
            let cols = result.columns();
            let cols = cols.as_ref();
            let columns: Arc<[String]> = cols.iter().map(|c| c.name_str().into_owned()).collect();
            let binary: Vec<bool> = cols
                .iter()
                .map(|c| {
                    c.character_set() == 63
                        && matches!(
                            c.column_type(),
                            ColumnType::MYSQL_TYPE_BLOB
                                | ColumnType::MYSQL_TYPE_TINY_BLOB
                                | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
                                | ColumnType::MYSQL_TYPE_LONG_BLOB
                                | ColumnType::MYSQL_TYPE_STRING
                                | ColumnType::MYSQL_TYPE_VAR_STRING
                        )
                })
                .collect();
            let ki = key_index(&columns, key)?;
            let mut values = Vec::new();
            for row in result.by_ref() {
                let row = row.map_err(|e| my_error(&e))?;
                for (i, v) in row.unwrap().into_iter().enumerate() {
                    values.push(from_my(v, binary[i]));
                }
            }
            Ok(Batch::from_values(columns, values, ki))
        }
    }
}
