//! The export file, JSON Lines: a header line `{"memwarden_monitor": 2, "meta": {...}}`, then one
//! line per sample. A running monitor appends each sample as one line (one `write`), and
//! fsyncs every few samples, so a monitor killed at any moment leaves a readable file: every
//! whole line is kept, a last line cut short is ignored by the reader. [`write_export`] writes a
//! whole series at once (temp file, then rename). Format 1 (one JSON object) is still read.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Sample;
use crate::error::{Error, ErrorKind, Result};

/// The format version written in `memwarden_monitor`.
pub const EXPORT_VERSION: u64 = 2;

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

#[derive(Serialize)]
struct Header<'a> {
    memwarden_monitor: u64,
    meta: &'a Meta,
}

fn header_line(meta: &Meta) -> Vec<u8> {
    let mut v = serde_json::to_vec(&Header { memwarden_monitor: EXPORT_VERSION, meta }).expect("header serializes");
    v.push(b'\n');
    v
}

fn sample_line(s: &Sample) -> Vec<u8> {
    let mut v = serde_json::to_vec(s).expect("sample serializes");
    v.push(b'\n');
    v
}

/// Appends samples to an export file as they come: each sample is one line written with one
/// `write` call (so a killed process leaves whole lines), and the file is fsynced every
/// `sync_every` samples and on [`Exporter::write`], which bounds the fsync rate.
pub struct Exporter {
    path: PathBuf,
    file: File,
    data: Export,
    every: usize,
    pending: usize,
}

impl Exporter {
    /// Creates (truncates) the file and writes the header line at once, so an unwritable path
    /// fails before monitoring starts.
    pub fn create(path: impl Into<PathBuf>, meta: Meta, sync_every: usize) -> Result<Self> {
        let path = path.into();
        let fail = |e: std::io::Error| Error::io(&format!("cannot write export file '{}'", path.display()), &e);
        let mut file = File::create(&path).map_err(fail)?;
        file.write_all(&header_line(&meta)).map_err(fail)?;
        file.sync_data().map_err(fail)?;
        Ok(Exporter {
            path: path.clone(),
            file,
            data: Export { memwarden_monitor: EXPORT_VERSION, meta, samples: Vec::new() },
            every: sync_every.max(1),
            pending: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a sample as one line; fsyncs when `sync_every` samples have come since the last sync.
    pub fn push(&mut self, s: Sample) -> Result<()> {
        self.data.samples.push(s);
        self.file.write_all(&sample_line(&s)).map_err(|e| self.fail(e))?;
        self.pending += 1;
        if self.pending >= self.every { self.write() } else { Ok(()) }
    }

    /// Makes everything appended so far durable now (fsync).
    pub fn write(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| self.fail(e))?;
        self.pending = 0;
        Ok(())
    }

    /// Samples appended since the last fsync.
    pub fn unsynced(&self) -> usize {
        self.pending
    }

    /// Everything written so far.
    pub fn export(&self) -> &Export {
        &self.data
    }

    fn fail(&self, e: std::io::Error) -> Error {
        Error::io(&format!("cannot write export file '{}'", self.path.display()), &e)
    }
}

/// Writes a whole series as an export file, atomically (temp file in the same directory,
/// then rename): a reader sees the previous file or the new one, never half of one.
pub fn write_export(path: impl AsRef<Path>, meta: &Meta, samples: &[Sample]) -> Result<()> {
    let mut bytes = header_line(meta);
    for s in samples {
        bytes.extend(sample_line(s));
    }
    write_atomic(path.as_ref(), &bytes)
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
        let mut f = File::create(&tmp)?;
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
/// message that names the file and what is wrong with it. A last sample line cut short (a
/// monitor killed mid-write) is ignored; a damaged line before the last is an error.
pub fn read_export(path: impl AsRef<Path>) -> Result<Export> {
    let path = path.as_ref();
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| Error::io(&format!("cannot read '{shown}'"), &e))?;
    let bad = |why: String| Error::new(ErrorKind::InvalidArgument, format!("'{shown}' {why}"));
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("is empty: not a memwarden monitor export".into()));
    }
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
    let first_end = bytes[start..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| start + i);
    let first = &bytes[start..first_end];
    // Format 1 files are one object that may span lines; a format 2 header is one line.
    let head: Value = match serde_json::from_slice(first) {
        Ok(v) => v,
        Err(_) if serde_json::from_slice::<Value>(&bytes).is_ok() => serde_json::from_slice(&bytes).expect("checked"),
        Err(e) => {
            let whole = serde_json::from_slice::<Value>(&bytes).err();
            // A cut inside a string is reported at the trailing newline, not as an early end.
            let cut = e.is_eof()
                || whole.is_some_and(|w| w.is_eof())
                || serde_json::from_slice::<Value>(first.trim_ascii_end()).is_err_and(|e| e.is_eof());
            return Err(if cut {
                bad(format!(
                    "is truncated: the JSON ends early (line {}), so this is not a whole memwarden monitor export",
                    e.line()
                ))
            } else {
                bad(format!("is not a memwarden monitor export: not JSON ({e})"))
            });
        }
    };
    let version = match head.get("memwarden_monitor") {
        Some(n) => n.as_u64().ok_or_else(|| bad("has a bad 'memwarden_monitor' version (expected a number)".into()))?,
        None => return Err(bad("is not a memwarden monitor export (no \"memwarden_monitor\" key)".into())),
    };
    match version {
        1 => {
            return serde_json::from_value(head)
                .map_err(|e| bad(format!("is a damaged memwarden monitor export: {e}")));
        }
        EXPORT_VERSION => {}
        _ => {
            return Err(bad(format!(
                "is a memwarden monitor export of format {version}; this memwarden reads formats 1 and {EXPORT_VERSION}"
            )));
        }
    }
    let meta: Meta = match head.get("meta") {
        Some(m) => serde_json::from_value(m.clone())
            .map_err(|e| bad(format!("is a damaged memwarden monitor export (header meta): {e}")))?,
        None => return Err(bad("is a damaged memwarden monitor export: the header has no \"meta\"".into())),
    };
    let rest = bytes.get(first_end + 1..).unwrap_or(&[]);
    let mut samples = Vec::new();
    let mut lines = rest.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let last = lines.peek().is_none();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Sample>(line) {
            Ok(s) => samples.push(s),
            // The last line without its newline: a write cut short by a kill. Ignored.
            Err(_) if last => {}
            Err(e) => {
                let n = bytes[..start].iter().filter(|&&b| b == b'\n').count() + i + 2;
                return Err(bad(format!("is a damaged memwarden monitor export: line {n} is not a sample ({e})")));
            }
        }
    }
    Ok(Export { memwarden_monitor: version, meta, samples })
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
    fn appends_one_line_per_sample_and_syncs_every_n() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run.json");
        let mut e = Exporter::create(&p, meta(), 3).unwrap();
        assert!(read_export(&p).unwrap().samples.is_empty());
        let mut sizes = vec![std::fs::metadata(&p).unwrap().len()];
        for i in 1..=4 {
            e.push(sample(i)).unwrap();
            sizes.push(std::fs::metadata(&p).unwrap().len());
            // Every sample is on disk (in the file) as soon as it is pushed: the file only grows.
            assert_eq!(read_export(&p).unwrap().samples.len(), i as usize);
        }
        assert!(sizes.windows(2).all(|w| w[1] > w[0]), "{sizes:?}");
        // Synced after the third sample; the fourth is not yet fsynced.
        assert_eq!(e.unsynced(), 1);
        e.write().unwrap();
        assert_eq!(e.unsynced(), 0);
        let back = read_export(&p).unwrap();
        assert_eq!(back.samples, (1..=4).map(sample).collect::<Vec<_>>());
        assert_eq!(back.meta, meta());
        assert_eq!(back.memwarden_monitor, EXPORT_VERSION);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.lines().next().unwrap().starts_with(r#"{"memwarden_monitor":2,"meta":{"#), "{text}");
    }

    #[test]
    fn a_file_cut_mid_line_keeps_every_whole_sample() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("killed.json");
        let mut e = Exporter::create(&p, meta(), 100).unwrap();
        for i in 1..=3 {
            e.push(sample(i)).unwrap();
        }
        drop(e);
        let whole = std::fs::read(&p).unwrap();
        let last_line_start = whole[..whole.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        // Cut at every byte inside the last sample line: two whole samples remain.
        for cut in last_line_start..whole.len() - 1 {
            std::fs::write(&p, &whole[..cut]).unwrap();
            let back = read_export(&p).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(back.samples, vec![sample(1), sample(2)], "cut at {cut}");
        }
        // Only the final newline missing: the line is whole JSON and counts.
        std::fs::write(&p, &whole[..whole.len() - 1]).unwrap();
        assert_eq!(read_export(&p).unwrap().samples.len(), 3);
        // A damaged line that is not the last is an error naming the line.
        let mut bad = whole[..last_line_start].to_vec();
        bad.extend_from_slice(b"{\"t\": oops}\n");
        bad.extend_from_slice(&whole[last_line_start..]);
        std::fs::write(&p, &bad).unwrap();
        let err = read_export(&p).unwrap_err();
        assert!(err.message().contains("line 4 is not a sample"), "{err}");
    }

    #[test]
    fn write_export_is_whole_and_format_1_is_still_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("all.json");
        let samples: Vec<Sample> = (1..=5).map(sample).collect();
        write_export(&p, &meta(), &samples).unwrap();
        assert_eq!(read_export(&p).unwrap().samples, samples);
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let v1 = serde_json::json!({"memwarden_monitor": 1, "meta": meta(), "samples": samples});
        std::fs::write(&p, serde_json::to_string_pretty(&v1).unwrap()).unwrap();
        let back = read_export(&p).unwrap();
        assert_eq!((back.memwarden_monitor, back.samples.len()), (1, 5));
        let err = write_export(d.path().join("no/such/dir.json"), &meta(), &samples).unwrap_err();
        assert!(err.message().contains("cannot write export file"), "{err}");
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        let e = Exporter::create(&p, meta(), 1).unwrap();
        drop(e);
        let header = std::fs::read(&p).unwrap();
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "is empty"),
            (b"  \n", "is empty"),
            (&header[..header.len() / 2], "is truncated"),
            (
                br#"{"memwarden_monitor": 1, "meta": {"tar
"#,
                "is truncated",
            ),
            (b"hello", "not JSON"),
            (br#"{"samples": []}"#, "no \"memwarden_monitor\" key"),
            (br#"{"memwarden_monitor": 9, "meta": {}, "samples": []}"#, "format 9"),
            (br#"{"memwarden_monitor": 1, "meta": {}, "samples": []}"#, "damaged"),
            (br#"{"memwarden_monitor": 2}"#, "damaged"),
            (br#"{"memwarden_monitor": 2, "meta": {"target": 1}}"#, "damaged"),
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
