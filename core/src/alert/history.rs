//! The alert history in SQLite (in memory unless `history_path` is set): every raised alert
//! written before delivery, every delivery attempt appended, dropped alerts recorded.

use parking_lot::Mutex;
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use super::clock::rfc3339;
use crate::config::ConfigReader;
use crate::error::{Error, ErrorKind, Result};

pub(crate) struct History {
    conn: Mutex<Connection>,
}

fn db(context: &str, e: rusqlite::Error) -> Error {
    Error::new(ErrorKind::Database, format!("alert history: {context}: {e}"))
}

/// What the history keeps about one alert.
pub(crate) struct AlertRow<'a> {
    pub raised_ms: i64,
    pub kind: &'a str,
    pub level: &'a str,
    pub message: &'a str,
    pub usage_percent: Option<f64>,
    pub status: &'a str,
    pub escalation_level: Option<u32>,
}

impl History {
    pub fn open(path: Option<&str>) -> Result<Self> {
        let conn = match path {
            Some(p) => Connection::open(p).map_err(|e| db(&format!("cannot open '{p}'"), e))?,
            None => Connection::open_in_memory().map_err(|e| db("cannot open", e))?,
        };
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;
             CREATE TABLE IF NOT EXISTS mw_alerts (
               id INTEGER PRIMARY KEY AUTOINCREMENT, raised_ms INTEGER NOT NULL, kind TEXT NOT NULL,
               level TEXT NOT NULL, message TEXT NOT NULL, usage_percent REAL, status TEXT NOT NULL,
               escalation_level INTEGER);
             CREATE TABLE IF NOT EXISTS mw_alert_deliveries (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               alert_id INTEGER NOT NULL REFERENCES mw_alerts(id) ON DELETE CASCADE,
               channel TEXT NOT NULL, at_ms INTEGER NOT NULL, attempt INTEGER NOT NULL, outcome TEXT NOT NULL,
               error TEXT);
             CREATE INDEX IF NOT EXISTS mw_alerts_raised ON mw_alerts(raised_ms);
             CREATE INDEX IF NOT EXISTS mw_alert_deliveries_alert ON mw_alert_deliveries(alert_id);",
        )
        .map_err(|e| db("cannot create tables", e))?;
        Ok(History { conn: Mutex::new(conn) })
    }

    pub fn insert_alert(&self, a: &AlertRow<'_>) -> Result<i64> {
        let c = self.conn.lock();
        c.execute(
            "INSERT INTO mw_alerts (raised_ms, kind, level, message, usage_percent, status, escalation_level)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![a.raised_ms, a.kind, a.level, a.message, a.usage_percent, a.status, a.escalation_level],
        )
        .map_err(|e| db("cannot record an alert", e))?;
        Ok(c.last_insert_rowid())
    }

    pub fn set_status(&self, id: i64, status: &str) -> Result<()> {
        self.conn
            .lock()
            .execute("UPDATE mw_alerts SET status = ?1 WHERE id = ?2", params![status, id])
            .map_err(|e| db("cannot update an alert", e))?;
        Ok(())
    }

    pub fn insert_delivery(
        &self,
        alert_id: i64,
        channel: &str,
        at_ms: i64,
        attempt: u32,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn
            .lock()
            .execute(
                "INSERT INTO mw_alert_deliveries (alert_id, channel, at_ms, attempt, outcome, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![alert_id, channel, at_ms, attempt, outcome, error],
            )
            .map_err(|e| db("cannot record a delivery", e))?;
        Ok(())
    }

    /// Deletes alerts (and their deliveries) raised before `before_ms`.
    pub fn prune(&self, before_ms: i64) -> Result<usize> {
        self.conn
            .lock()
            .execute("DELETE FROM mw_alerts WHERE raised_ms < ?1", params![before_ms])
            .map_err(|e| db("cannot prune", e))
    }

    /// Filter keys: `level`, `channel`, `kind`, `since` (epoch seconds), `limit`. Newest first.
    pub fn query(&self, filter: &Value) -> Result<Value> {
        let r = ConfigReader::new("alert history filter", filter, &["level", "channel", "kind", "since", "limit"])?;
        let level = r.str("level")?;
        let channel = r.str("channel")?;
        let kind = r.str("kind")?;
        let since = r.f64("since", f64::NEG_INFINITY.max(-1e15), "epoch seconds", |_| true)?;
        let limit = r.u64("limit")?.unwrap_or(1000).min(i64::MAX as u64) as i64;
        let c = self.conn.lock();
        let mut stmt = c
            .prepare_cached(
                "SELECT id, raised_ms, kind, level, message, usage_percent, status, escalation_level FROM mw_alerts a
                 WHERE (?1 IS NULL OR level = ?1) AND (?2 IS NULL OR kind = ?2) AND raised_ms >= ?3
                   AND (?4 IS NULL OR EXISTS (SELECT 1 FROM mw_alert_deliveries d WHERE d.alert_id = a.id
                                              AND d.channel = ?4))
                 ORDER BY raised_ms DESC, id DESC LIMIT ?5",
            )
            .map_err(|e| db("query", e))?;
        let since_ms = (since * 1000.0) as i64;
        let rows = stmt
            .query_map(params![level, kind, since_ms, channel, limit], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<f64>>(5)?,
                    row.get::<_, String>(6)?,
                    row.get::<_, Option<i64>>(7)?,
                ))
            })
            .map_err(|e| db("query", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| db("query", e))?;
        let mut dstmt = c
            .prepare_cached(
                "SELECT channel, at_ms, attempt, outcome, error FROM mw_alert_deliveries WHERE alert_id = ?1 ORDER BY id",
            )
            .map_err(|e| db("query", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, raised, kind, level, message, pct, status, esc) in rows {
            let deliveries: Vec<Value> = dstmt
                .query_map(params![id], |row| {
                    let at: i64 = row.get(1)?;
                    Ok(json!({
                        "channel": row.get::<_, String>(0)?,
                        "time": rfc3339(at),
                        "timestamp": at as f64 / 1000.0,
                        "attempt": row.get::<_, i64>(2)?,
                        "outcome": row.get::<_, String>(3)?,
                        "error": row.get::<_, Option<String>>(4)?,
                    }))
                })
                .map_err(|e| db("query", e))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| db("query", e))?;
            out.push(json!({
                "id": id, "kind": kind, "level": level, "message": message, "usage_percent": pct,
                "status": status, "escalation_level": esc, "time": rfc3339(raised),
                "timestamp": raised as f64 / 1000.0, "deliveries": deliveries,
            }));
        }
        Ok(Value::Array(out))
    }
}
