//! The resume file: the last key of every finished chunk, per key range.
//!
//! Written after every chunk whose callback returned (or whose failure the error callback
//! chose to skip), by writing a sibling temporary file and renaming it over the old one, so
//! a reader sees the old or the new state and never a torn one. Without `checkpoint_fsync`
//! this survives the process being killed (the page cache outlives it); with it, it also
//! survives power loss, at the cost of one fsync per chunk.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use super::batch::Value;
use crate::error::{Error, ErrorKind, Result};

/// One key range of a run: keys in `(lo, hi]` (open ends are None); `last` is the key of the
/// last finished chunk in it.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeState {
    pub lo: Option<Value>,
    pub hi: Option<Value>,
    pub last: Option<Value>,
    pub done: bool,
}

impl RangeState {
    pub fn whole() -> Self {
        RangeState { lo: None, hi: None, last: None, done: false }
    }
    /// The key the next chunk of this range starts after.
    pub fn after(&self) -> Option<&Value> {
        self.last.as_ref().or(self.lo.as_ref())
    }
}

#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    fsync: bool,
}

fn key_json(v: &Option<Value>) -> Json {
    v.as_ref().map(Value::to_json).unwrap_or(Json::Null)
}

impl Checkpoint {
    pub fn new(path: PathBuf, fsync: bool) -> Self {
        Checkpoint { path, fsync }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, why: &str) -> Error {
        Error::invalid_argument(format!(
            "checkpoint file {} is not a memwarden checkpoint ({why}); delete it to start over",
            self.path.display()
        ))
    }

    /// The saved ranges and processed count, if a previous run of the same query left some.
    pub fn load(&self, query: &str, key: &str) -> Result<Option<(Vec<RangeState>, u64)>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&format!("cannot read checkpoint file {}", self.path.display()), &e)),
        };
        let v: Json = serde_json::from_str(&text).map_err(|_| self.corrupt("not JSON"))?;
        if v["version"] != 1 {
            return Err(self.corrupt("unknown version"));
        }
        if v["query"].as_str() != Some(query) || v["key_column"].as_str() != Some(key) {
            return Err(Error::invalid_argument(format!(
                "checkpoint file {} was written for another query or key column; delete it to start over, \
                 or use another checkpoint path for this query",
                self.path.display()
            )));
        }
        let ranges = v["ranges"].as_array().ok_or_else(|| self.corrupt("no ranges"))?;
        let key = |j: &Json| -> Result<Option<Value>> {
            if j.is_null() {
                Ok(None)
            } else {
                Value::key_from_json(j).map(Some).ok_or_else(|| self.corrupt("bad key"))
            }
        };
        let mut out = Vec::new();
        for r in ranges {
            out.push(RangeState {
                lo: key(&r["lo"])?,
                hi: key(&r["hi"])?,
                last: key(&r["last"])?,
                done: r["done"].as_bool().unwrap_or(false),
            });
        }
        if out.is_empty() {
            return Err(self.corrupt("no ranges"));
        }
        Ok(Some((out, v["processed"].as_u64().unwrap_or(0))))
    }

    pub fn save(&self, query: &str, key: &str, ranges: &[RangeState], processed: u64) -> Result<()> {
        let doc = json!({
            "version": 1,
            "query": query,
            "key_column": key,
            "processed": processed,
            "ranges": ranges.iter().map(|r| json!({
                "lo": key_json(&r.lo), "hi": key_json(&r.hi), "last": key_json(&r.last), "done": r.done,
            })).collect::<Vec<_>>(),
        });
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let io = |e: std::io::Error| Error::io(&format!("cannot write checkpoint file {}", self.path.display()), &e);
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(doc.to_string().as_bytes()).map_err(io)?;
        if self.fsync {
            f.sync_all().map_err(io)?;
        }
        drop(f);
        fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(())
    }

    /// Removes the file after a complete run, so the next run starts from the beginning.
    pub fn finish(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::new(ErrorKind::Io, format!("cannot remove checkpoint {}: {e}", self.path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::new(dir.path().join("run.ckpt"), false);
        assert!(cp.load("q", "id").unwrap().is_none());
        let ranges = vec![
            RangeState { lo: None, hi: Some(Value::Int(50)), last: Some(Value::Int(20)), done: false },
            RangeState { lo: Some(Value::Int(50)), hi: None, last: None, done: true },
        ];
        cp.save("q", "id", &ranges, 20).unwrap();
        let (back, n) = cp.load("q", "id").unwrap().unwrap();
        assert_eq!(back, ranges);
        assert_eq!(n, 20);
        assert_eq!(back[1].after(), Some(&Value::Int(50)));
        let e = cp.load("other", "id").unwrap_err();
        assert!(e.message().contains("another query"), "{e}");
        std::fs::write(cp.path(), "garbage").unwrap();
        assert!(cp.load("q", "id").unwrap_err().message().contains("not a memwarden checkpoint"));
        cp.finish().unwrap();
        assert!(!cp.path().exists());
    }
}
