//! The guard against a SQLite file that this process also holds open outside memwarden.
//!
//! memwarden reads SQLite through its own bundled copy of the library. A host that writes the
//! same file through its own SQLite (Python's `sqlite3`, PHP's PDO, better-sqlite3, a C
//! program's libsqlite3) puts two SQLite libraries in one process. POSIX `fcntl` locks belong
//! to the process, so neither library sees the other's locks: a reader takes the writer's live
//! rollback journal for a hot one and rolls it back (committed writes vanish, or "disk I/O
//! error"), and closing one library's descriptor drops the other's locks (sqlite.org, "How To
//! Corrupt An SQLite Database File", §2.2). Connections of one SQLite library share their lock
//! state, so memwarden's own connections to one file are safe together.
//!
//! So when memwarden opens a SQLite file (and when a run starts), it looks in `/proc/self/fd`
//! for descriptors on the same file (same device and inode) that memwarden's own connections
//! did not open, and refuses with an invalid-argument error that says why and what to do;
//! `allow_shared_sqlite_file: true` turns the check off. Other systems than Linux skip it.
//! A host that opens the file only after memwarden's last check, inside a callback, is not
//! seen.

use crate::error::{Error, Result};

/// The device and inode of a file.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
type FileId = (u64, u64);

/// Keeps a connection's file known as memwarden's own while the connection lives.
#[derive(Debug)]
pub struct Registration {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    id: FileId,
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::{BTreeMap, BTreeSet};
    use std::os::unix::fs::MetadataExt;
    use std::sync::{Mutex, MutexGuard};

    use super::{FileId, Registration};

    /// memwarden's open connections to a file and the descriptors they opened. The
    /// descriptors stay listed until the last connection closes: SQLite may keep a closed
    /// connection's descriptor open while another connection of the same library holds a
    /// lock on the file, and closes it with the last one.
    #[derive(Default)]
    pub struct Own {
        pub conns: usize,
        pub fds: BTreeSet<i32>,
    }

    static OWN: Mutex<BTreeMap<FileId, Own>> = Mutex::new(BTreeMap::new());

    pub fn own() -> MutexGuard<'static, BTreeMap<FileId, Own>> {
        OWN.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The regular file at `path`, if there is one (not `:memory:`, not a `file:` URI).
    pub fn file_id(path: &str) -> Option<FileId> {
        let m = std::fs::metadata(path).ok()?;
        m.is_file().then(|| (m.dev(), m.ino()))
    }

    /// This process's descriptors on the file `id`.
    pub fn fds_on(id: FileId) -> BTreeSet<i32> {
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return BTreeSet::new() };
        dir.flatten()
            .filter_map(|e| {
                let fd: i32 = e.file_name().to_str()?.parse().ok()?;
                let m = std::fs::metadata(e.path()).ok()?;
                ((m.dev(), m.ino()) == id).then_some(fd)
            })
            .collect()
    }

    /// Descriptors on `id` that memwarden's connections did not open.
    pub fn foreign(own: &BTreeMap<FileId, Own>, id: FileId) -> Vec<i32> {
        let mine = own.get(&id).map(|o| &o.fds);
        fds_on(id).into_iter().filter(|fd| !mine.is_some_and(|m| m.contains(fd))).collect()
    }

    impl Drop for Registration {
        fn drop(&mut self) {
            let mut own = own();
            if let Some(o) = own.get_mut(&self.id) {
                o.conns = o.conns.saturating_sub(1);
                if o.conns == 0 {
                    own.remove(&self.id);
                }
            }
        }
    }
}

/// The refusal: names the file, says why, says what to do.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn conflict(path: &str, fds: &[i32]) -> Error {
    let fds: Vec<String> = fds.iter().map(i32::to_string).collect();
    Error::invalid_argument(format!(
        "the SQLite file '{path}' is already open in this process outside memwarden (file descriptor {}), \
         for example through Python's sqlite3, PHP's PDO, better-sqlite3 or node:sqlite. memwarden reads it \
         through its own bundled SQLite, and two SQLite libraries in one process do not see each other's locks: \
         one can roll back the other's writes or corrupt the database. Pass your own connection instead (a \
         DB-API connection in Python, a PDO object in PHP), or close the other connection and open the file only \
         through memwarden; if nothing writes the file during the run, allow_shared_sqlite_file: true turns this \
         check off",
        fds.join(", ")
    ))
}

/// Fails when the process holds `path` open outside memwarden (unless `allow`).
pub fn check(path: &str, allow: bool) -> Result<()> {
    #[cfg(target_os = "linux")]
    if !allow && let Some(id) = imp::file_id(path) {
        let theirs = imp::foreign(&imp::own(), id);
        if !theirs.is_empty() {
            return Err(conflict(path, &theirs));
        }
    }
    let _ = (path, allow);
    Ok(())
}

/// Runs `open` (which opens a connection to `path`) after the same check as [`check`], and
/// records the descriptors it opened as memwarden's own for as long as the registration lives.
pub fn open<T>(path: &str, allow: bool, open: impl FnOnce() -> Result<T>) -> Result<(T, Option<Registration>)> {
    #[cfg(target_os = "linux")]
    {
        // Held across the open, so that memwarden's connections opening at once on several
        // threads never take each other's descriptors for foreign ones.
        let mut own = imp::own();
        let before = imp::file_id(path).map(|id| (id, imp::fds_on(id)));
        if let (Some((id, _)), false) = (&before, allow) {
            let theirs = imp::foreign(&own, *id);
            if !theirs.is_empty() {
                return Err(conflict(path, &theirs));
            }
        }
        let conn = open()?;
        let Some(id) = imp::file_id(path) else { return Ok((conn, None)) };
        let old = before.filter(|(b, _)| *b == id).map(|(_, fds)| fds).unwrap_or_default();
        let entry = own.entry(id).or_default();
        entry.conns += 1;
        entry.fds.extend(imp::fds_on(id).difference(&old));
        Ok((conn, Some(Registration { id })))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (path, allow);
        Ok((open()?, None))
    }
}

#[cfg(all(test, target_os = "linux", feature = "sqlite"))]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use serde_json::json;

    use super::super::{ChunkConfig, ChunkedDatabaseProcessor};
    use crate::error::ErrorKind;

    static SEQ: AtomicU64 = AtomicU64::new(0);

    /// A fresh file with a table `t` of `n` rows, written and closed by memwarden's own SQLite.
    fn table(n: u64) -> (String, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "mw-shared-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) INSERT INTO t SELECT x, x FROM c;"
        ))
        .unwrap();
        drop(conn);
        (format!("sqlite://{}", path.display()), path)
    }

    fn cfg(extra: serde_json::Value) -> ChunkConfig {
        let mut base = json!({"chunk_size": 10});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        ChunkConfig::from_json(&base).unwrap()
    }

    fn count(p: &mut ChunkedDatabaseProcessor) -> crate::error::Result<u64> {
        let mut seen = 0;
        let mut progress = |_: &super::super::Progress| Ok(());
        let mut on_row = |_: &super::super::Batch, _: usize| {
            seen += 1;
            Ok(())
        };
        p.process("SELECT * FROM t", &mut on_row, Some(&mut progress), None)?;
        Ok(seen)
    }

    #[test]
    fn a_file_the_process_holds_open_elsewhere_is_refused_with_the_reason_and_the_way_out() {
        let (url, path) = table(50);
        // Any descriptor not opened by memwarden stands for the host's SQLite library.
        let foreign = std::fs::File::open(&path).unwrap();
        let err = ChunkedDatabaseProcessor::open(&url, cfg(json!({}))).err().expect("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let msg = err.message();
        for part in [
            path.to_str().unwrap(),
            "already open in this process outside memwarden",
            "two SQLite libraries in one process do not see each other's locks",
            "a PDO object in PHP",
            "a DB-API connection in Python",
            "allow_shared_sqlite_file: true",
        ] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
        drop(foreign);
        let mut p = ChunkedDatabaseProcessor::open(&url, cfg(json!({}))).unwrap();
        assert_eq!(count(&mut p).unwrap(), 50);
    }

    #[test]
    fn a_file_opened_elsewhere_after_the_processor_is_refused_when_the_run_starts() {
        let (url, path) = table(50);
        let mut p = ChunkedDatabaseProcessor::open(&url, cfg(json!({}))).unwrap();
        let foreign = std::fs::File::open(&path).unwrap();
        let err = count(&mut p).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{}", err.message());
        assert!(err.message().contains("two SQLite libraries"), "{}", err.message());
        drop(foreign);
        assert_eq!(count(&mut p).unwrap(), 50);
    }

    #[test]
    fn allow_shared_sqlite_file_turns_the_check_off() {
        let (url, path) = table(50);
        let _foreign = std::fs::File::open(&path).unwrap();
        let mut p = ChunkedDatabaseProcessor::open(&url, cfg(json!({"allow_shared_sqlite_file": true}))).unwrap();
        assert_eq!(count(&mut p).unwrap(), 50);
        let bad = ChunkConfig::from_json(&json!({"allow_shared_sqlite_file": "yes"})).unwrap_err();
        assert!(bad.message().contains("allow_shared_sqlite_file"), "{}", bad.message());
    }

    #[test]
    fn memwardens_own_connections_to_one_file_never_trip_the_check() {
        let (url, _path) = table(200);
        // Two processors, parallel workers and the counting connection all share one file.
        let mut a = ChunkedDatabaseProcessor::open(&url, cfg(json!({"parallel_chunks": 4}))).unwrap();
        let mut b = ChunkedDatabaseProcessor::open(&url, cfg(json!({"prefetch": true}))).unwrap();
        for _ in 0..3 {
            assert_eq!(count(&mut a).unwrap(), 200);
            assert_eq!(count(&mut b).unwrap(), 200);
        }
        drop(a);
        assert_eq!(count(&mut b).unwrap(), 200);
        drop(b);
        // Every registration is gone once the processors are: a fresh one opens as before.
        let mut c = ChunkedDatabaseProcessor::open(&url, cfg(json!({}))).unwrap();
        assert_eq!(count(&mut c).unwrap(), 200);
    }

    #[test]
    fn memory_databases_and_missing_files_are_not_checked() {
        assert!(super::check(":memory:", false).is_ok());
        assert!(super::check("/nonexistent/dir/t.db", false).is_ok());
    }
}
