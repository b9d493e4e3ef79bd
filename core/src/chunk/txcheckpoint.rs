//! The same-transaction mode (`checkpoint_table`): the chunk's writes and its checkpoint row
//! commit in one database transaction, so a crash at any instant keeps both or neither and a
//! resume applies every row's effect exactly once.
//!
//! The table holds one row per run, keyed by a fingerprint of the query and its key column, so
//! runs of different queries sharing a table are kept apart:
//! `run_id` (16 hex digits), `query`, `key_column`, `last_key` (as text), `key_type`
//! (`int` / `text`), `processed`, `updated_at`.

use super::backend::{Backend, Dialect, ParamStyle};
use super::batch::{Batch, Value};
use crate::error::{Error, ErrorKind, Result};

/// Checks a `checkpoint_table` name: `name` or `schema.name`, each part letters, digits and
/// `_`, not starting with a digit, at most 63 characters (it is written into SQL unquoted).
pub fn valid_table_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !p.starts_with(|c: char| c.is_ascii_digit())
    };
    match name.split_once('.') {
        Some((s, n)) => part(s) && part(n),
        None => part(name),
    }
}

/// FNV-1a, 64 bits: stable across versions and platforms, so a rerun finds its row.
fn fingerprint(query: &str, key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in query.bytes().chain([0u8]).chain(key.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What `TxCheckpoint::lock` found.
#[derive(Debug)]
pub enum Locked {
    /// The row says what this run last committed (`exists`: false before the first commit).
    Row { exists: bool },
    /// The row moved under the run: the run must stop (the error says why).
    Moved(Error),
}

/// What a run resumes from.
#[derive(Debug, Clone, PartialEq)]
pub struct TxState {
    pub last: Value,
    pub processed: u64,
}

/// The checkpoint row of one run in `checkpoint_table`.
#[derive(Debug)]
pub struct TxCheckpoint {
    table: String,
    run_id: String,
    query: String,
    key: String,
}

impl TxCheckpoint {
    pub fn new(table: &str, query: &str, key: &str) -> Self {
        TxCheckpoint {
            table: table.to_string(),
            run_id: fingerprint(query, key),
            query: query.to_string(),
            key: key.to_string(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn p(b: &dyn Backend, n: usize) -> String {
        match b.param_style() {
            ParamStyle::Question => "?".into(),
            ParamStyle::Format => "%s".into(),
            ParamStyle::Dollar => format!("${n}"),
        }
    }

    fn fail(&self, what: &str, e: Error) -> Error {
        Error::new(e.kind(), format!("checkpoint_table '{}': {what}: {}", self.table, e.message()))
    }

    /// Creates the table when it is missing (outside any transaction: MySQL commits on DDL).
    pub fn ensure_table(&self, b: &mut dyn Backend) -> Result<()> {
        let (text, big) = match b.dialect() {
            Dialect::Mysql => ("VARCHAR(255)", "BIGINT"),
            _ => ("TEXT", "BIGINT"),
        };
        let long = if b.dialect() == Dialect::Mysql { "LONGTEXT" } else { "TEXT" };
        let id = if b.dialect() == Dialect::Mysql { "VARCHAR(16)" } else { "TEXT" };
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (run_id {id} NOT NULL PRIMARY KEY, query {long} NOT NULL, \
             key_column {text} NOT NULL, last_key {long} NOT NULL, key_type {text} NOT NULL, \
             processed {big} NOT NULL, updated_at TIMESTAMP NULL)",
            self.table
        );
        b.query(&sql, &[], None, true).map(|_| ()).map_err(|e| self.fail("cannot create it", e))
    }

    /// The state a previous run of the same query left, if any.
    pub fn load(&self, b: &mut dyn Backend) -> Result<Option<TxState>> {
        self.read(b, false)
    }

    /// Inside a chunk's transaction: locks the run's row (`FOR UPDATE`; SQLite's
    /// `BEGIN IMMEDIATE` already holds the database's write lock) and checks that it still says
    /// what this run last committed (`expected`; None: no row yet). A transaction of a killed
    /// process whose COMMIT reached the server after the process died holds that lock until the
    /// server has finished it, so its commit is seen here rather than overwritten; a row that
    /// moved (that, or a second run of the same query on the same table) stops the run instead
    /// of applying a chunk twice. An error reading the row is `Err`; a row that moved is
    /// `Ok(Locked::Moved)`.
    pub fn lock(&self, b: &mut dyn Backend, expected: Option<&Value>) -> Result<Locked> {
        let found = self.read(b, true)?;
        let last = found.as_ref().map(|s| &s.last);
        if last != expected {
            let show = |v: Option<&Value>| v.map_or_else(|| "no row".to_string(), |v| format!("last key {v}"));
            return Ok(Locked::Moved(Error::new(
                ErrorKind::Database,
                format!(
                    "checkpoint_table '{}' row '{}' moved under this run: it holds {}, this run last committed {} \
                     (another run of the same query on this table, or a killed run's late commit); rerun to \
                     resume from the table",
                    self.table,
                    self.run_id,
                    show(last),
                    show(expected)
                ),
            )));
        }
        Ok(Locked::Row { exists: found.is_some() })
    }

    fn read(&self, b: &mut dyn Backend, for_update: bool) -> Result<Option<TxState>> {
        let sql = format!(
            "SELECT query, key_column, last_key, key_type, processed FROM {} WHERE run_id = {}{}",
            self.table,
            Self::p(b, 1),
            if for_update && b.dialect() != Dialect::Sqlite { " FOR UPDATE" } else { "" }
        );
        let rows = b
            .query(&sql, &[Value::Text(self.run_id.clone())], None, true)
            .map_err(|e| self.fail("cannot read it", e))?;
        let Some(row) = rows.iter_rows().next() else { return Ok(None) };
        let text = |v: &Value| match v {
            Value::Text(t) => Some(t.clone()),
            Value::Blob(b) => String::from_utf8(b.clone()).ok(),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        };
        let corrupt = |why: &str| {
            Error::invalid_argument(format!(
                "checkpoint_table '{}' row '{}' is not a memwarden checkpoint ({why}); delete the row to start over",
                self.table, self.run_id
            ))
        };
        if text(&row[0]).as_deref() != Some(self.query.as_str()) || text(&row[1]).as_deref() != Some(&self.key) {
            return Err(Error::invalid_argument(format!(
                "checkpoint_table '{}' row '{}' was written for another query or key column; delete the row \
                 to start over",
                self.table, self.run_id
            )));
        }
        let last = text(&row[2]).ok_or_else(|| corrupt("no last_key"))?;
        let last = match text(&row[3]).as_deref() {
            Some("int") => Value::Int(last.parse().map_err(|_| corrupt("last_key is not an integer"))?),
            Some("text") => Value::Text(last),
            _ => return Err(corrupt("unknown key_type")),
        };
        let processed = match &row[4] {
            Value::Int(n) => *n as u64,
            other => text(other).and_then(|t| t.parse().ok()).unwrap_or(0),
        };
        Ok(Some(TxState { last, processed }))
    }

    /// Writes the run's state, inside the chunk's transaction after `lock` (`exists`: what it
    /// returned). A plain INSERT for a new row: when a killed run's first chunk commits late,
    /// the key conflict fails this chunk rather than letting it overwrite that row.
    pub fn save(&self, b: &mut dyn Backend, exists: bool, last: &Value, processed: u64) -> Result<()> {
        let (last, ty) = match last {
            Value::Int(i) => (i.to_string(), "int"),
            Value::Text(t) => (t.clone(), "text"),
            other => {
                return Err(Error::invalid_argument(format!(
                    "checkpoint_table needs an integer or text key column; '{}' holds {} values",
                    self.key,
                    other.type_name()
                )));
            }
        };
        let p: Vec<String> = (1..=6).map(|n| Self::p(b, n)).collect();
        let (sql, params) = if exists {
            (
                format!(
                    "UPDATE {} SET last_key = {}, key_type = {}, processed = {}, updated_at = CURRENT_TIMESTAMP \
                     WHERE run_id = {}",
                    self.table, p[0], p[1], p[2], p[3]
                ),
                vec![
                    Value::Text(last),
                    Value::Text(ty.into()),
                    Value::Int(processed as i64),
                    Value::Text(self.run_id.clone()),
                ],
            )
        } else {
            (
                format!(
                    "INSERT INTO {} (run_id, query, key_column, last_key, key_type, processed, updated_at) \
                     VALUES ({}, {}, {}, {}, {}, {}, CURRENT_TIMESTAMP)",
                    self.table, p[0], p[1], p[2], p[3], p[4], p[5]
                ),
                vec![
                    Value::Text(self.run_id.clone()),
                    Value::Text(self.query.clone()),
                    Value::Text(self.key.clone()),
                    Value::Text(last),
                    Value::Text(ty.into()),
                    Value::Int(processed as i64),
                ],
            )
        };
        b.query(&sql, &params, None, true).map(|_| ()).map_err(|e| self.fail("cannot save the checkpoint", e))
    }

    /// Deletes the run's row after a complete run, so the next run starts from the beginning.
    pub fn finish(&self, b: &mut dyn Backend) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE run_id = {}", self.table, Self::p(b, 1));
        b.query(&sql, &[Value::Text(self.run_id.clone())], None, true)
            .map(|_| ())
            .map_err(|e| self.fail("cannot remove the finished run's row", e))
    }
}

/// The transaction of one chunk, handed to the callback in the same-transaction mode: what it
/// runs here commits together with the chunk's checkpoint, or not at all.
pub struct ChunkTx<'a> {
    backend: &'a mut dyn Backend,
}

impl<'a> ChunkTx<'a> {
    pub(super) fn new(backend: &'a mut dyn Backend) -> Self {
        ChunkTx { backend }
    }

    /// The connection's SQL dialect (its placeholders: `?` for SQLite and MySQL, `$1` for
    /// PostgreSQL; a host connection uses its driver's own).
    pub fn dialect(&self) -> Dialect {
        self.backend.dialect()
    }

    pub fn param_style(&self) -> ParamStyle {
        self.backend.param_style()
    }

    /// Runs a statement with parameters inside the chunk's transaction.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<()> {
        self.query(sql, params).map(|_| ())
    }

    /// Runs a statement inside the chunk's transaction and returns its rows.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Batch> {
        if sql.trim().is_empty() {
            return Err(Error::invalid_argument("tx.execute: the SQL statement is empty"));
        }
        self.backend.query(sql, params, None, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_fingerprints() {
        for ok in ["mw_ckpt", "_x1", "public.mw_ckpt", "A_b_9"] {
            assert!(valid_table_name(ok), "{ok}");
        }
        for bad in ["", "1abc", "a b", "a;drop", "a.b.c", "\"q\"", "a-b", ".x", "x."] {
            assert!(!valid_table_name(bad), "{bad}");
        }
        assert_eq!(fingerprint("SELECT 1", "id"), fingerprint("SELECT 1", "id"));
        assert_ne!(fingerprint("SELECT 1", "id"), fingerprint("SELECT 2", "id"));
        assert_ne!(fingerprint("SELECT 1", "id"), fingerprint("SELECT 1", "ix"));
        assert_eq!(fingerprint("", "").len(), 16);
    }
}
