"""memwarden: memory management for Python, on a Rust core.

``MemoryManager`` watches this process's memory (or readings the host pushes) against a
limit, moves through the states ``"normal"``, ``"warning"``, ``"critical"`` and
``"emergency"`` with hysteresis, calls your callbacks on every change and runs cleanup hooks
(Python's ``gc.collect()`` among them) when asked or when usage crosses a threshold.

    >>> from memwarden import MemoryManager
    >>> manager = MemoryManager(warning_threshold=0.75, critical_threshold=0.9)
    >>> if manager.get_memory_state() == MemoryManager.STATE_CRITICAL:
    ...     manager.emergency_cleanup()

``MemoryPool`` reuses expensive objects: a factory creates them, ``acquire()`` hands one
out (the object itself), ``release(obj)`` takes it back, ``with pool.use() as obj:`` does
both. ``TypedMemoryPool`` is the same with the hooks as methods of a subclass.

    >>> from memwarden import MemoryPool
    >>> pool = MemoryPool(factory=bytearray, max_size=10, min_size=2, max_idle_time=300)
    >>> with pool.use() as buf:
    ...     buf.extend(b"data")

``StreamingIterator``, ``LazyIterator`` and ``FilteredIterator`` walk large data in chunks;
``ChunkedDatabaseProcessor`` walks a query's rows by keyset pagination (a URL, or your own
DB-API connection), so a callback that updates the rows never skips or repeats one.

    >>> from memwarden import ChunkedDatabaseProcessor
    >>> proc = ChunkedDatabaseProcessor("sqlite:///app.db", chunk_size=1000)
    >>> proc.process("SELECT * FROM users WHERE active = 1", handle_user)  # doctest: +SKIP

``memwarden.wsgi.MemoryTrackingMiddleware`` and ``memwarden.asgi.MemoryTrackingMiddleware``
measure memory per request (headers ``X-Memory-*``, analytics per route template);
``ResourceTracker`` tracks resources by type against a budget, with events and a leak report.
"""

from ._memwarden import (
    AcquireTimeout,
    CallbackError,
    ChunkedDatabaseProcessor,
    ChunkTransaction,
    CircularDependencyError,
    ClosedError,
    ConfigError,
    DatabaseError,
    ExhaustedError,
    FilteredIterator,
    InvalidArgumentError,
    LazyBatches,
    LazyContainer,
    LazyIterator,
    MemoryAlertingService,
    MemoryManager,
    MemoryPool,
    MemwardenError,
    MemwardenIOError,
    Monitor,
    NotFoundError,
    PoolUse,
    RequestReport,
    RequestToken,
    RequestTracker,
    ResourceTracker,
    Scope,
    StreamingIterator,
    StreamProcessor,
    UnsupportedError,
    __version__,
    analyze,
    format_size,
    parse_size,
)
from ._typed_pool import TypedMemoryPool

__all__ = [
    "AcquireTimeout",
    "CallbackError",
    "ChunkedDatabaseProcessor",
    "ChunkTransaction",
    "CircularDependencyError",
    "ClosedError",
    "ConfigError",
    "DatabaseError",
    "ExhaustedError",
    "FilteredIterator",
    "InvalidArgumentError",
    "LazyBatches",
    "LazyContainer",
    "LazyIterator",
    "MemoryAlertingService",
    "MemoryManager",
    "MemoryPool",
    "MemwardenError",
    "MemwardenIOError",
    "Monitor",
    "NotFoundError",
    "PoolUse",
    "RequestReport",
    "RequestToken",
    "RequestTracker",
    "ResourceTracker",
    "Scope",
    "StreamingIterator",
    "StreamProcessor",
    "TypedMemoryPool",
    "UnsupportedError",
    "__version__",
    "analyze",
    "format_size",
    "parse_size",
]
