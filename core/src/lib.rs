//! memwarden-core: every behaviour of memwarden, in safe Rust.
//!
//! Floors, each using only those below it:
//! `error`, `size`, `config`, `stats`, `cleanup` at the bottom; `probe` above them;
//! `manager` above `probe`. Later components (pool, container, tracker, iterators,
//! alerting, chunk processing, monitoring) stack on top and never import a module on
//! their own floor or above.

#[cfg(feature = "alert")]
pub mod alert;
pub mod chunk;
pub mod cleanup;
pub mod config;
pub mod container;
pub mod error;
pub mod iter;
pub mod manager;
pub mod monitor;
pub mod pool;
pub mod probe;
pub mod request;
pub mod size;
pub mod stats;
pub mod stream;
pub mod tracker;

#[cfg(feature = "alert")]
pub use alert::{AlertConfig, AlertEvent, MemoryAlertingService};
pub use chunk::{ChunkConfig, ChunkedDatabaseProcessor};
pub use cleanup::{Cleanup, CleanupLevel};
pub use container::{Container, ContainerConfig, Lifetime, Scope};
pub use error::{Error, ErrorKind, Result};
pub use iter::{
    ChunkSource, ErrorHandling, FilterStats, FilteredIterator, IterConfig, IterStats, Key, LazyIterator, Loader, Page,
    PageMode, StreamingIterator,
};
pub use manager::{GcReport, ManagerConfig, MemoryManager, Source, State, Usage};
pub use pool::{Lease, Pool, PoolBuilder, PoolConfig, PoolStats};
pub use probe::LimitOrigin;
pub use request::{HeaderCache, RequestConfig, RequestReport, RequestToken, RequestTracker};
pub use size::{Size, format_size, parse_size};
pub use stream::{ChunkFailure, ChunkTicket, StreamChunk, StreamConfig, StreamProcessor};
pub use tracker::{CleanupReport, ResourceStats, ResourceTracker, TrackerConfig, TrackerEvent};

/// The crate version, as `mw_version()` and every binding report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
