//! The one thing a database must do for the chunk processor: run a SELECT with
//! parameters and return its rows. The SQL the processor sends is built here, per dialect.

use std::time::Duration;

use super::batch::{Batch, Value};
use crate::error::{Error, Result};

/// The SQL spoken by a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }

    pub fn parse(text: &str) -> Result<Dialect> {
        match text.to_ascii_lowercase().as_str() {
            "sqlite" | "sqlite3" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" | "pgsql" | "pg" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::Mysql),
            other => Err(Error::invalid_argument(format!(
                "unknown SQL dialect '{other}': expected 'sqlite', 'postgres' or 'mysql'"
            ))),
        }
    }

    /// Quotes an identifier (a key column name); rejects names that cannot be quoted safely.
    pub fn quote(self, ident: &str) -> Result<String> {
        let q = if self == Dialect::Mysql { '`' } else { '"' };
        if ident.is_empty() || ident.contains(q) || ident.contains('\0') {
            return Err(Error::invalid_argument(format!("invalid key column name '{ident}'")));
        }
        Ok(format!("{q}{ident}{q}"))
    }
}

/// How a connection writes parameter placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamStyle {
    /// `?` (SQLite, MySQL, PDO)
    Question,
    /// `$1` (PostgreSQL native)
    Dollar,
    /// `%s` (psycopg, PyMySQL)
    Format,
}

impl ParamStyle {
    pub fn parse(text: &str) -> Result<ParamStyle> {
        match text {
            "qmark" | "?" => Ok(ParamStyle::Question),
            "numeric_dollar" | "$" => Ok(ParamStyle::Dollar),
            "format" | "pyformat" | "%s" => Ok(ParamStyle::Format),
            other => Err(Error::invalid_argument(format!(
                "unsupported parameter style '{other}': expected 'qmark', 'format' or 'numeric_dollar'"
            ))),
        }
    }
}

/// A connection the processor can run queries on.
pub trait Backend {
    fn dialect(&self) -> Dialect;
    fn param_style(&self) -> ParamStyle;
    /// Runs `sql` with `params` and returns every row. `key` names the key column, whose
    /// first and last values the batch must carry; with `meta` true the values are needed
    /// by the core (counts, key lookups), otherwise a host may keep the rows on its side.
    fn query(&mut self, sql: &str, params: &[Value], key: Option<&str>, meta: bool) -> Result<Batch>;
    /// Sets the per-query timeout (None: no limit). Backends that cannot enforce one ignore it.
    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let _ = timeout;
        Ok(())
    }
    /// Runs a statement whose result is not needed (BEGIN, DECLARE, CLOSE, ...).
    fn execute(&mut self, sql: &str) -> Result<()> {
        self.query(sql, &[], None, true).map(|_| ())
    }
    /// Starts the transaction of one chunk (the same-transaction mode, `checkpoint_table`).
    /// SQLite takes the write lock at once (`BEGIN IMMEDIATE`), so a second writer waits
    /// instead of failing halfway through the chunk.
    fn begin(&mut self) -> Result<()> {
        self.execute(match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
            Dialect::Mysql => "START TRANSACTION",
        })
    }
    fn commit(&mut self) -> Result<()> {
        self.execute("COMMIT")
    }
    fn rollback(&mut self) -> Result<()> {
        self.execute("ROLLBACK")
    }
    /// Whether `cursor` is available.
    fn supports_cursor(&self) -> bool {
        false
    }
    /// Streams `sql` through a server-side cursor in a read-only transaction, handing each
    /// chunk of `chunk()` rows to `sink` until it returns false or the rows run out.
    fn cursor(
        &mut self,
        sql: &str,
        key: Option<&str>,
        chunk: &dyn Fn() -> usize,
        sink: &mut dyn FnMut(Batch) -> Result<bool>,
    ) -> Result<()> {
        let _ = (sql, key, chunk, sink);
        Err(Error::new(
            crate::error::ErrorKind::Unsupported,
            format!("pagination 'cursor' is available on PostgreSQL only, not on {}", self.dialect().as_str()),
        ))
    }
    /// Called before a retry. When the server has closed the connection (the backend was
    /// killed, the server restarted, the network cut it), opens a new one with the same
    /// settings so the retry can succeed; a live connection is left alone. Backends that
    /// cannot reconnect (a host's own connection) do nothing.
    fn recover(&mut self) -> Result<()> {
        Ok(())
    }
    /// Estimated rows of `sql` from the planner, when the database offers one cheaply.
    fn estimate_rows(&mut self, sql: &str) -> Result<Option<u64>> {
        let _ = sql;
        Ok(None)
    }
}

/// Builds the SQL the processor sends.
pub struct SqlBuilder {
    pub dialect: Dialect,
    pub style: ParamStyle,
}

impl SqlBuilder {
    fn placeholder(&self, n: usize, v: &Value) -> String {
        match self.style {
            ParamStyle::Question => "?".into(),
            ParamStyle::Format => "%s".into(),
            // PostgreSQL infers a parameter's type from the column it is compared with; a
            // cast lets an i64 key compare with int4 columns (and text with varchar).
            ParamStyle::Dollar => match v {
                Value::Int(_) => format!("${n}::int8"),
                Value::Text(_) => format!("${n}::text"),
                _ => format!("${n}"),
            },
        }
    }

    /// `SELECT * FROM (<query>) mw_t [WHERE key > ? [AND key <= ?]] ORDER BY key LIMIT n`
    pub fn keyset(
        &self,
        query: &str,
        key: &str,
        after: Option<&Value>,
        upto: Option<&Value>,
        limit: usize,
    ) -> Result<(String, Vec<Value>)> {
        let k = format!("mw_t.{}", self.dialect.quote(key)?);
        let mut sql = format!("SELECT * FROM ({}) mw_t", strip_query(query)?);
        let mut params = Vec::new();
        let mut conds = Vec::new();
        if let Some(a) = after {
            params.push(a.clone());
            conds.push(format!("{k} > {}", self.placeholder(params.len(), a)));
        }
        if let Some(u) = upto {
            params.push(u.clone());
            conds.push(format!("{k} <= {}", self.placeholder(params.len(), u)));
        }
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY {k} LIMIT {limit}"));
        Ok((sql, params))
    }

    /// The OFFSET walk: only when asked for, and with a warning.
    pub fn offset(&self, query: &str, key: Option<&str>, offset: u64, limit: usize) -> Result<String> {
        let mut sql = format!("SELECT * FROM ({}) mw_t", strip_query(query)?);
        if let Some(k) = key {
            sql.push_str(&format!(" ORDER BY mw_t.{}", self.dialect.quote(k)?));
        }
        sql.push_str(&format!(" LIMIT {limit} OFFSET {offset}"));
        Ok(sql)
    }

    /// One row with the columns of `query` and no data, to learn its column names.
    pub fn probe_columns(&self, query: &str) -> Result<String> {
        Ok(format!("SELECT * FROM ({}) mw_t LIMIT 0", strip_query(query)?))
    }

    pub fn count(&self, query: &str) -> Result<String> {
        Ok(format!("SELECT COUNT(*) FROM ({}) mw_t", strip_query(query)?))
    }

    pub fn min_max(&self, query: &str, key: &str) -> Result<String> {
        let k = format!("mw_t.{}", self.dialect.quote(key)?);
        Ok(format!("SELECT MIN({k}), MAX({k}) FROM ({}) mw_t", strip_query(query)?))
    }

    /// The query that lists a table's primary key column(s).
    pub fn primary_key(&self, table: &str) -> (String, Vec<Value>) {
        let (schema, name) = match table.rsplit_once('.') {
            Some((s, n)) => (Some(s.to_string()), n.to_string()),
            None => (None, table.to_string()),
        };
        let p = |n: usize| self.placeholder(n, &Value::Text(String::new()));
        match self.dialect {
            Dialect::Sqlite => {
                let quoted = name.replace('\'', "''");
                (format!("SELECT name FROM pragma_table_info('{quoted}') WHERE pk > 0 ORDER BY pk"), vec![])
            }
            Dialect::Postgres => {
                let target = match &schema {
                    Some(s) => format!("{s}.{name}"),
                    None => name.clone(),
                };
                (
                    format!(
                        "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
                         AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass({}) AND i.indisprimary \
                         ORDER BY array_position(i.indkey, a.attnum)",
                        p(1)
                    ),
                    vec![Value::Text(target)],
                )
            }
            Dialect::Mysql => {
                let mut params = vec![Value::Text(name)];
                let schema_cond = match schema {
                    Some(s) => {
                        params.push(Value::Text(s));
                        format!("TABLE_SCHEMA = {}", p(2))
                    }
                    None => "TABLE_SCHEMA = DATABASE()".into(),
                };
                (
                    format!(
                        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_NAME = {} \
                         AND {schema_cond} AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                        p(1)
                    ),
                    params,
                )
            }
        }
    }
}

/// The query without a trailing semicolon; only a single SELECT (or WITH ... SELECT) is accepted.
pub fn strip_query(query: &str) -> Result<&str> {
    let q = query.trim().trim_end_matches(';').trim_end();
    let lower: String = q.chars().take(8).collect::<String>().to_ascii_lowercase();
    if !(lower.starts_with("select") || lower.starts_with("with") || lower.starts_with("values")) {
        return Err(Error::invalid_argument(format!(
            "the query must be a SELECT (it is wrapped for keyset pagination), got '{}'",
            q.chars().take(60).collect::<String>()
        )));
    }
    if q.contains(';') && !q.contains('\'') && !q.contains('"') {
        return Err(Error::invalid_argument("the query must be a single SELECT statement (found ';')"));
    }
    Ok(q)
}

/// The table a simple query reads (`... FROM name ...`), to look up its primary key.
pub fn main_table(query: &str) -> Option<String> {
    let lower = query.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut i = 0;
    while let Some(pos) = lower[i..].find("from") {
        let at = i + pos;
        let before_ok = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let after = at + 4;
        let after_ok = after < bytes.len() && bytes[after].is_ascii_whitespace();
        if before_ok && after_ok {
            let rest = query[after..].trim_start();
            if rest.starts_with('(') {
                return None;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '"' | '`'))
                .filter(|c| !matches!(c, '"' | '`'))
                .collect();
            return if name.is_empty() { None } else { Some(name) };
        }
        i = at + 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_sql_per_dialect() {
        let b = SqlBuilder { dialect: Dialect::Postgres, style: ParamStyle::Dollar };
        let (sql, p) = b.keyset("SELECT * FROM t WHERE a = 1;", "id", Some(&Value::Int(5)), None, 100).unwrap();
        assert_eq!(
            sql,
            "SELECT * FROM (SELECT * FROM t WHERE a = 1) mw_t WHERE mw_t.\"id\" > $1::int8 ORDER BY mw_t.\"id\" LIMIT 100"
        );
        assert_eq!(p, vec![Value::Int(5)]);
        let b = SqlBuilder { dialect: Dialect::Mysql, style: ParamStyle::Question };
        let (sql, p) = b.keyset("select id from t", "id", Some(&Value::Int(1)), Some(&Value::Int(9)), 10).unwrap();
        assert_eq!(
            sql,
            "SELECT * FROM (select id from t) mw_t WHERE mw_t.`id` > ? AND mw_t.`id` <= ? ORDER BY mw_t.`id` LIMIT 10"
        );
        assert_eq!(p.len(), 2);
        let (sql, _) = b.keyset("select id from t", "id", None, None, 10).unwrap();
        assert!(!sql.contains("WHERE"));
    }

    #[test]
    fn rejects_non_select_and_bad_identifiers() {
        let b = SqlBuilder { dialect: Dialect::Sqlite, style: ParamStyle::Question };
        let e = b.keyset("DELETE FROM t", "id", None, None, 1).unwrap_err();
        assert!(e.message().contains("must be a SELECT"), "{e}");
        let e = b.keyset("SELECT 1; DROP TABLE t", "id", None, None, 1).unwrap_err();
        assert!(e.message().contains("single SELECT"), "{e}");
        let e = b.keyset("SELECT 1", "i\"d", None, None, 1).unwrap_err();
        assert!(e.message().contains("invalid key column"), "{e}");
    }

    #[test]
    fn finds_the_main_table() {
        assert_eq!(main_table("SELECT * FROM users WHERE x").as_deref(), Some("users"));
        assert_eq!(main_table("select a from public.items i").as_deref(), Some("public.items"));
        assert_eq!(main_table("SELECT * FROM \"Orders\"").as_deref(), Some("Orders"));
        assert_eq!(main_table("SELECT fromage FROM (SELECT 1) x"), None);
        assert_eq!(main_table("SELECT 1"), None);
    }
}
