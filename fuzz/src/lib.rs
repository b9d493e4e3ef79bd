//! The fuzz targets' bodies. `core_targets.rs` uses only memwarden-core and is also compiled
//! into `core/tests/fuzz_corpus.rs`, which replays the committed corpora in the test command;
//! `ffi_target.rs` drives the C ABI and is replayed by `tests/c/replay_corpus.c` under valgrind.

mod core_targets;
mod ffi_target;

pub use core_targets::*;
pub use ffi_target::ffi_config;
