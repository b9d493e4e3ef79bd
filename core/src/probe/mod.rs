//! Where the numbers come from: the process (procfs fast path, sysinfo
//! elsewhere), cgroup v2/v1 limits, physical memory, PSI pressure, and
//! readings pushed by a host (PHP's `memory_get_usage()`, V8's heap).

mod cgroup;
mod process;
mod psi;
mod system;

pub use cgroup::{cgroup_limit, cgroup_limit_at, cgroup_limit_of};
pub use process::ProcessProbe;
pub use psi::{Pressure, Psi, parse_psi, read_psi};
pub use system::physical_memory;

use serde::Serialize;

/// Where a manager's limit came from, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitOrigin {
    /// `memory_limit` in the config or `set_memory_limit()`.
    Explicit,
    /// The host's own limit (PHP `memory_limit`, V8's heap limit), for a host source.
    Host,
    /// cgroup v2 `memory.max`, lowest over the process's cgroup and its ancestors.
    CgroupV2,
    /// cgroup v1 `memory.limit_in_bytes`, lowest over the cgroup and its ancestors.
    CgroupV1,
    /// The machine's physical memory.
    Physical,
}

impl LimitOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitOrigin::Explicit => "explicit",
            LimitOrigin::Host => "host",
            LimitOrigin::CgroupV2 => "cgroup_v2",
            LimitOrigin::CgroupV1 => "cgroup_v1",
            LimitOrigin::Physical => "physical",
        }
    }
}

/// Values at or above this many bytes mean "no limit" (cgroup v1 writes
/// 2^63 rounded down to a page; v2 writes `max`).
pub const UNLIMITED_FLOOR: u64 = 1 << 62;

/// Reads a limit value as cgroups write it: `max`, `0` and huge numbers are "no limit".
pub(crate) fn parse_limit_value(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    match t.parse::<u64>() {
        Ok(0) => None,
        Ok(v) if v >= UNLIMITED_FLOOR => None,
        Ok(v) => Some(v),
        Err(_) => None,
    }
}
