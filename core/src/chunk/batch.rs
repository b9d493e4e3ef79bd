//! What a chunk holds: column names and typed values, row-major.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

/// One cell. Every driver's types map onto these; anything else (dates, decimals, JSON,
/// UUIDs) arrives as its text form.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    /// Bytes this value occupies in a chunk, including its slot.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Value>()
            + match self {
                Value::Text(s) => s.capacity(),
                Value::Blob(b) => b.capacity(),
                _ => 0,
            }
    }

    /// The value as JSON: blobs become arrays of bytes, non-finite reals null.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Real(r) => serde_json::Number::from_f64(*r).map(Json::Number).unwrap_or(Json::Null),
            Value::Text(s) => Json::String(s.clone()),
            Value::Blob(b) => Json::Array(b.iter().map(|x| Json::from(*x)).collect()),
        }
    }

    /// A key read back from a checkpoint or a host: integers and strings only.
    pub fn key_from_json(v: &Json) -> Option<Value> {
        match v {
            Json::Number(n) => n.as_i64().map(Value::Int),
            Json::String(s) => Some(Value::Text(s.clone())),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Real(r) => write!(f, "{r}"),
            Value::Text(s) => write!(f, "'{s}'"),
            Value::Blob(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

/// One chunk of rows as a driver returned it.
///
/// A host connection (PDO, a DB-API connection) may keep the rows on its own side and
/// hand the core only their count and keys: then `values` is empty and `host_rows` is set.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub columns: Arc<[String]>,
    /// Row-major: `rows * columns.len()` values.
    pub values: Vec<Value>,
    pub rows: usize,
    pub first_key: Option<Value>,
    pub last_key: Option<Value>,
    /// Bytes the rows occupy (as held by the core, or as the host estimated them).
    pub bytes: usize,
    /// True when the rows stay with the host and `values` is empty.
    pub host_rows: bool,
}

impl Batch {
    /// Builds a batch from values, finding the first and last key in column `key_index`.
    pub fn from_values(columns: Arc<[String]>, values: Vec<Value>, key_index: Option<usize>) -> Batch {
        let width = columns.len().max(1);
        let rows = if columns.is_empty() { 0 } else { values.len() / width };
        let bytes = values.iter().map(Value::approx_bytes).sum::<usize>();
        let (first_key, last_key) = match key_index {
            Some(k) if rows > 0 => (Some(values[k].clone()), Some(values[(rows - 1) * width + k].clone())),
            _ => (None, None),
        };
        Batch { columns, values, rows, first_key, last_key, bytes, host_rows: false }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Row `i` as a slice of values (empty for host-held rows).
    pub fn row(&self, i: usize) -> &[Value] {
        let w = self.columns.len();
        if self.host_rows || i >= self.rows {
            return &[];
        }
        &self.values[i * w..(i + 1) * w]
    }

    /// Every row as a slice of values.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[Value]> {
        (0..if self.host_rows { 0 } else { self.rows }).map(move |i| self.row(i))
    }

    /// Index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The rows as JSON text, written straight from the values (no intermediate tree): an
    /// array of objects (`dict`) or of arrays (`tuple`).
    pub fn write_json(&self, format: RowFormat, out: &mut String) {
        use std::fmt::Write;
        let names: Vec<String> =
            self.columns.iter().map(|c| serde_json::to_string(c).unwrap_or_else(|_| "\"\"".into())).collect();
        out.reserve(self.bytes + self.rows * 16);
        out.push('[');
        for (i, row) in self.iter_rows().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push(if format == RowFormat::Dict { '{' } else { '[' });
            for (j, v) in row.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                if format == RowFormat::Dict {
                    out.push_str(&names[j]);
                    out.push(':');
                }
                match v {
                    Value::Null => out.push_str("null"),
                    Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    Value::Int(x) => {
                        let _ = write!(out, "{x}");
                    }
                    Value::Real(r) if r.is_finite() => {
                        let _ = write!(out, "{r:?}");
                    }
                    Value::Real(_) => out.push_str("null"),
                    Value::Text(t) => write_json_str(out, t),
                    Value::Blob(b) => {
                        out.push('[');
                        for (k, x) in b.iter().enumerate() {
                            if k > 0 {
                                out.push(',');
                            }
                            let _ = write!(out, "{x}");
                        }
                        out.push(']');
                    }
                }
            }
            out.push(if format == RowFormat::Dict { '}' } else { ']' });
        }
        out.push(']');
    }

    /// The rows as a JSON array of objects (`dict`) or of arrays (`tuple`).
    pub fn to_json(&self, format: RowFormat) -> Json {
        Json::Array(
            self.iter_rows()
                .map(|row| match format {
                    RowFormat::Dict => {
                        let mut m = Map::with_capacity(row.len());
                        for (c, v) in self.columns.iter().zip(row) {
                            m.insert(c.clone(), v.to_json());
                        }
                        Json::Object(m)
                    }
                    RowFormat::Tuple => Json::Array(row.iter().map(Value::to_json).collect()),
                })
                .collect(),
        )
    }
}

fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            use std::fmt::Write;
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(esc);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// How rows reach a host callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// Column name to value (Python dict, Node object, PHP associative array).
    Dict,
    /// Values in column order.
    Tuple,
}

/// Which chunk failed or is being reported, for error callbacks and failed-chunk lists.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkInfo {
    /// 1-based chunk number in this run.
    pub index: u64,
    /// The key the chunk starts after (None: the start of its range).
    pub after_key: Option<Value>,
    pub first_key: Option<Value>,
    pub last_key: Option<Value>,
    pub rows: usize,
    /// How many times the chunk was tried.
    pub attempts: u32,
}

impl ChunkInfo {
    pub fn to_json(&self) -> Json {
        let k = |v: &Option<Value>| v.as_ref().map(Value::to_json).unwrap_or(Json::Null);
        serde_json::json!({
            "index": self.index,
            "after_key": k(&self.after_key),
            "first_key": k(&self.first_key),
            "last_key": k(&self.last_key),
            "rows": self.rows,
            "attempts": self.attempts,
        })
    }
}

impl fmt::Display for ChunkInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.index)?;
        match (&self.first_key, &self.last_key) {
            (Some(a), Some(b)) => write!(f, " (keys {a}..{b}, {} rows)", self.rows),
            _ => match &self.after_key {
                Some(k) => write!(f, " (after key {k})"),
                None => write!(f, " (from the start)"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_json_matches_the_json_tree() {
        let columns: Arc<[String]> = vec!["id".to_string(), "te\"xt".to_string(), "r".into(), "b".into()].into();
        let values = vec![
            Value::Int(-7),
            Value::Text("a\"b\\c\nd\te\u{1}é😀".into()),
            Value::Real(1.5e-7),
            Value::Blob(vec![0, 255]),
            Value::Null,
            Value::Bool(true),
            Value::Real(f64::NAN),
            Value::Text(String::new()),
        ];
        let b = Batch::from_values(columns, values, Some(0));
        for fmt in [RowFormat::Dict, RowFormat::Tuple] {
            let mut s = String::new();
            b.write_json(fmt, &mut s);
            let parsed: Json = serde_json::from_str(&s).unwrap();
            assert_eq!(parsed, b.to_json(fmt), "{s}");
        }
    }
}
