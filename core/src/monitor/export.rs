//! The export file: `{"memwarden_monitor": 1, "meta": {...}, "samples": [...]}`, rewritten
//! atomically (temp file in the same directory, then rename) so a monitor killed at any
//! moment leaves the previous complete file, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Sample;
use crate::error::{Error, ErrorKind, Result};

/// The format version written in `memwarden_monitor`.
pub const EXPORT_VERSION: u64 = 1;

/// What was watched and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// `pid 123`, `pid 123 and children`, `system`, or the command line started.
    pub target: String,
    /// Seconds between samples.
    pub interval: f64,
    pub limit_bytes: u64,
    /// `cgroup_v2`, `cgroup_v1`, `physical`, ...
    pub limit_origin: String,
    /// Alert threshold, percent of the limit.
    pub threshold: f64,
    /// Start, ms since the epoch.
    pub started_unix_ms: u64,
    /// memwarden version that wrote the file.
    pub version: String,
}

/// A whole export, as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub memwarden_monitor: u64,
    pub meta: Meta,
    pub samples: Vec<Sample>,
}

/// Collects samples and rewrites the file every `every` samples (and on [`Exporter::write`]).
pub struct Exporter {
    path: PathBuf,
    data: Export,
    every: usize,
    pending: usize,
}

impl Exporter {
    /// Writes the (empty) file at once, so an unwritable path fails before monitoring starts.
    pub fn create(path: impl Into<PathBuf>, meta: Meta, every: usize) -> Result<Self> {
        let mut e = Exporter {
            path: path.into(),
            data: Export { memwarden_monitor: EXPORT_VERSION, meta, samples: Vec::new() },
            every: every.max(1),
            pending: 0,
        };
        e.write()?;
        Ok(e)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a sample; rewrites the file when `every` samples have come since the last write.
    pub fn push(&mut self, s: Sample) -> Result<()> {
        self.data.samples.push(s);
        self.pending += 1;
        if self.pending >= self.every { self.write() } else { Ok(()) }
    }

    /// Rewrites the file now (temp file + rename).
    pub fn write(&mut self) -> Result<()> {
        let text = serde_json::to_vec(&self.data).expect("export serializes");
        write_atomic(&self.path, &text)?;
        self.pending = 0;
        Ok(())
    }

    pub fn export(&self) -> &Export {
        &self.data
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |e: std::io::Error| Error::io(&format!("cannot write export file '{}'", path.display()), &e);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| fail(std::io::Error::other("not a file name")))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// Reads an export back. Empty, truncated, non-JSON and foreign files are refused with a
/// message that names the file and what is wrong with it.
pub fn read_export(path: impl AsRef<Path>) -> Result<Export> {
    let path = path.as_ref();
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| Error::io(&format!("cannot read '{shown}'"), &e))?;
    let bad = |why: String| Error::new(ErrorKind::InvalidArgument, format!("'{shown}' {why}"));
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("is empty: not a memwarden monitor export".into()));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        // A cut inside a string is reported at the trailing newline, not as an early end.
        let cut = e.is_eof() || serde_json::from_slice::<Value>(bytes.trim_ascii_end()).is_err_and(|e| e.is_eof());
        if cut {
            bad(format!(
                "is truncated: the JSON ends early (line {}), so this is not a whole memwarden monitor export",
                e.line()
            ))
        } else {
            bad(format!("is not a memwarden monitor export: not JSON ({e})"))
        }
    })?;
    let version = match v.get("memwarden_monitor") {
        Some(n) => n.as_u64().ok_or_else(|| bad("has a bad 'memwarden_monitor' version (expected a number)".into()))?,
        None => return Err(bad("is not a memwarden monitor export (no \"memwarden_monitor\" key)".into())),
    };
    if version != EXPORT_VERSION {
        return Err(bad(format!(
            "is a memwarden monitor export of format {version}; this memwarden reads format {EXPORT_VERSION}"
        )));
    }
    serde_json::from_value(v).map_err(|e| bad(format!("is a damaged memwarden monitor export: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            target: "pid 1".into(),
            interval: 0.5,
            limit_bytes: 1 << 30,
            limit_origin: "physical".into(),
            threshold: 80.0,
            started_unix_ms: 1_700_000_000_000,
            version: crate::VERSION.into(),
        }
    }

    fn sample(i: u64) -> Sample {
        Sample {
            t: i as f64 * 0.5,
            unix_ms: 1_700_000_000_000 + i * 500,
            current_bytes: i << 20,
            peak_bytes: i << 20,
            limit_bytes: 1 << 30,
        }
    }

    #[test]
    fn round_trip_and_write_every_n() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run.json");
        let mut e = Exporter::create(&p, meta(), 3).unwrap();
        assert!(read_export(&p).unwrap().samples.is_empty());
        for i in 1..=4 {
            e.push(sample(i)).unwrap();
        }
        // Written after the third sample; the fourth is pending.
        assert_eq!(read_export(&p).unwrap().samples.len(), 3);
        e.write().unwrap();
        let back = read_export(&p).unwrap();
        assert_eq!(back.samples, (1..=4).map(sample).collect::<Vec<_>>());
        assert_eq!(back.meta, meta());
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        let mut e = Exporter::create(&p, meta(), 1).unwrap();
        e.push(sample(1)).unwrap();
        let whole = std::fs::read(&p).unwrap();
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "is empty"),
            (b"  \n", "is empty"),
            (&whole[..whole.len() / 2], "is truncated"),
            (
                br#"{"memwarden_monitor": 1, "meta": {"tar
"#,
                "is truncated",
            ),
            (b"hello", "not JSON"),
            (br#"{"samples": []}"#, "no \"memwarden_monitor\" key"),
            (br#"{"memwarden_monitor": 9, "meta": {}, "samples": []}"#, "format 9"),
            (br#"{"memwarden_monitor": 1, "meta": {}, "samples": []}"#, "damaged"),
        ];
        for (bytes, why) in cases {
            std::fs::write(&p, bytes).unwrap();
            let err = read_export(&p).unwrap_err();
            assert!(err.message().contains(why) && err.message().contains("f.json"), "{why}: {err}");
        }
        let err = read_export(d.path().join("absent.json")).unwrap_err();
        assert!(err.message().contains("cannot read") && err.message().contains("absent.json"), "{err}");
    }

    #[test]
    fn unwritable_path_fails_at_create() {
        let err = Exporter::create("/nonexistent-dir/x/run.json", meta(), 1).err().unwrap();
        assert!(err.message().contains("cannot write export file '/nonexistent-dir/x/run.json'"), "{err}");
    }
}
