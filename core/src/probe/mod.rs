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

/// How long [`default_limit`] keeps its answer before reading the cgroup files again.
pub const DEFAULT_LIMIT_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// The limit that applies when none is configured: the cgroup's (v2, else v1), else physical
/// memory. Cached process-wide and read again at most every [`DEFAULT_LIMIT_TTL`] (5 s): working
/// it out reads `/proc/self/cgroup`, `/proc/self/mountinfo` and the cgroup files (~0.4 ms), which
/// a host that builds a short-lived object per request (PHP under php-fpm or php -S, one
/// `RequestTracker` per request) must not pay every time. A limit changed at runtime
/// (`docker update --memory`) is seen within those 5 s.
pub fn default_limit() -> (u64, LimitOrigin) {
    static CACHE: parking_lot::Mutex<Option<(std::time::Instant, u64, LimitOrigin)>> = parking_lot::Mutex::new(None);
    let now = std::time::Instant::now();
    if let Some((at, bytes, origin)) = *CACHE.lock()
        && now.duration_since(at) < DEFAULT_LIMIT_TTL
    {
        return (bytes, origin);
    }
    // Worked out outside the lock: two threads may both read the files once; both are right.
    let (bytes, origin) = cgroup_limit().unwrap_or_else(|| (physical_memory(), LimitOrigin::Physical));
    *CACHE.lock() = Some((now, bytes, origin));
    (bytes, origin)
}

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
