//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) and the inputs of fixed
//! findings (`fuzz/regressions/<target>/`) through the fuzz targets' own bodies, without
//! libFuzzer: every input must pass the same invariants as under the fuzzer. The C ABI target
//! (`ffi_config`) is replayed by tests/c/replay_corpus.c under valgrind instead.

#[path = "../../fuzz/src/core_targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in [root.join("corpus").join(target), root.join("regressions").join(target)] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files
}

fn replay(target: &str, f: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} is empty or missing");
    for path in &files {
        let data = std::fs::read(path).unwrap();
        // On a thread with the fuzzer's (main-thread) stack: unoptimised, minijinja's recursive
        // parser at its nesting limit needs more than a test thread's 2 MiB (release builds fit).
        let r = std::thread::Builder::new().stack_size(8 << 20).spawn(move || f(&data)).unwrap().join();
        assert!(r.is_ok(), "{target}: {} fails the target's checks", path.display());
    }
    println!("{target}: {} inputs replayed", files.len());
}

#[test]
fn size_string() {
    replay("size_string", targets::size_string);
}

#[test]
fn json_config() {
    replay("json_config", targets::json_config);
}

#[test]
fn db_url() {
    replay("db_url", targets::db_url);
}

#[test]
fn analyze_input() {
    replay("analyze_input", targets::analyze_input);
}

#[test]
fn alert_template() {
    replay("alert_template", targets::alert_template);
}
