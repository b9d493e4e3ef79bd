//! The one trait every component implements so that a manager can trim it.
//! The pool, the container and the tracker implement it; whoever owns a
//! manager registers them with it (`MemoryManager::register_cleanup`).

use crate::error::Result;

/// How hard a cleanup should try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupLevel {
    /// Routine collection: trim to configured minimums, drop caches that are cheap to rebuild.
    Normal,
    /// Memory is nearly exhausted: release everything that can be rebuilt later.
    Emergency,
}

impl CleanupLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupLevel::Normal => "normal",
            CleanupLevel::Emergency => "emergency",
        }
    }
}

/// Something that can give memory back when asked.
pub trait Cleanup: Send + Sync {
    fn cleanup(&self, level: CleanupLevel) -> Result<()>;
}

impl<F> Cleanup for F
where
    F: Fn(CleanupLevel) -> Result<()> + Send + Sync,
{
    fn cleanup(&self, level: CleanupLevel) -> Result<()> {
        self(level)
    }
}
