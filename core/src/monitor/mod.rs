//! The monitor: a series of memory samples of a process (or its tree, or the whole system),
//! an export file that `analyze` and `plot` read back, the analysis itself, and the
//! Prometheus text rendering of a reading. The `memwarden` CLI is a thin shell over this.

mod analyze;
mod export;
#[cfg(unix)]
mod live;
mod prometheus;
// procfs and uids: Linux reads everything; other Unix systems get a clear `Unsupported`.
#[cfg(unix)]
mod sampler;
mod ticker;

pub use analyze::{
    Analysis, EFFICIENCY_DEFINITION, LEAK_DEFINITION, Leak, SPIKE_DEFINITION, Spike, SpikeParams, analyze, analyze_with,
};
pub use export::{EXPORT_VERSION, Export, Exporter, Meta, read_export, write_export};
#[cfg(unix)]
pub use live::{Monitor, MonitorConfig, analyze_file};
pub use prometheus::render_prometheus;
#[cfg(unix)]
pub use sampler::{Sampler, Target, cgroup_limit_of_pid};
pub use ticker::Ticker;

use serde::{Deserialize, Serialize};

/// One reading. `t` is seconds since the monitor started; `unix_ms` the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub t: f64,
    pub unix_ms: u64,
    pub current_bytes: u64,
    pub peak_bytes: u64,
    pub limit_bytes: u64,
}

impl Sample {
    /// `current / limit` in percent (0 when the limit is unknown).
    pub fn usage_percent(&self) -> f64 {
        if self.limit_bytes == 0 { 0.0 } else { self.current_bytes as f64 * 100.0 / self.limit_bytes as f64 }
    }
}

/// Bytes to MB (MiB, 1024 × 1024, as everywhere in memwarden).
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / crate::size::MIB as f64
}
