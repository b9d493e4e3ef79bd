"""Native core of memwarden (PyO3). Import from ``memwarden``, not from here."""

import os
from typing import Any, Callable, ClassVar, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union, final

__all__ = [
    "__version__",
    "MemwardenError",
    "InvalidArgumentError",
    "ConfigError",
    "AcquireTimeout",
    "NotFoundError",
    "MemwardenIOError",
    "ExhaustedError",
    "CircularDependencyError",
    "DatabaseError",
    "CallbackError",
    "ClosedError",
    "UnsupportedError",
    "MemoryManager",
    "MemoryAlertingService",
    "MemoryPool",
    "PoolUse",
    "LazyContainer",
    "Scope",
    "StreamingIterator",
    "LazyIterator",
    "LazyBatches",
    "FilteredIterator",
    "ChunkedDatabaseProcessor",
    "ChunkTransaction",
    "RequestTracker",
    "RequestToken",
    "RequestReport",
    "ResourceTracker",
    "Monitor",
    "analyze",
    "StreamProcessor",
    "parse_size",
    "format_size",
]

__version__: str

_F = TypeVar("_F", bound=Callable[..., Any])

class MemwardenError(Exception):
    """Base class of every memwarden error."""

class InvalidArgumentError(MemwardenError, ValueError):
    """A value passed to a call is out of range or malformed."""

class ConfigError(MemwardenError, ValueError):
    """A configuration key is unknown or its value is wrong; the message names the key and the value."""

class AcquireTimeout(MemwardenError, TimeoutError):
    """Waiting for something took longer than allowed."""

class ExhaustedError(MemwardenError):
    """A bounded resource has nothing left."""

class CircularDependencyError(MemwardenError):
    """A dependency cycle, with its path."""

class NotFoundError(MemwardenError, LookupError):
    """A named thing does not exist."""

class MemwardenIOError(MemwardenError, OSError):
    """The operating system refused a read or write."""

class DatabaseError(MemwardenError):
    """A database reported an error."""

class CallbackError(MemwardenError):
    """A callback failed in a way that left no Python exception to re-raise."""

class ClosedError(MemwardenError):
    """The object was closed and cannot be used any more."""

class UnsupportedError(MemwardenError):
    """The operation is not available on this system or in this mode."""

def parse_size(text: str) -> Optional[int]:
    """Parses ``"512M"``, ``"1g"``, ``"128K"`` or plain bytes; ``"-1"`` (no limit) gives ``None``.

    Suffixes are binary (K = 1024) and case-insensitive, as in PHP's ``memory_limit``.
    Raises ``InvalidArgumentError`` (a ``ValueError``) quoting the text otherwise.
    """

def format_size(bytes: int) -> str:
    """Formats bytes in the largest unit that divides them exactly: ``536870912`` -> ``"512M"``."""

@final
class MemoryManager:
    """Watches this process's memory (or readings the host pushes) against a limit.

    ``MemoryManager(config=None, /, **kwargs)``: config keys may come in a dict, as keyword
    arguments, or both (a key given twice is a ``ConfigError``):

    - ``warning_threshold`` (0.75), ``critical_threshold`` (0.9), ``emergency_threshold``
      (0.95): fractions of the limit, strictly increasing.
    - ``auto_gc_threshold`` (0.8): crossing it runs a cleanup; while above, each check runs
      one with probability ``gc_probability`` (0.1), drawn from a generator seeded by
      ``random_seed`` when given.
    - ``enable_detailed_tracking`` (False): keep recent samples and a growth rate in
      ``get_detailed_stats()``.
    - ``memory_limit``: ``"512M"``, an int number of bytes, or -1 (none: the cgroup or
      physical limit applies).
    - ``source``: ``"process"`` (resident memory, the default) or ``"host"`` (readings pushed
      with ``update_host_reading()``). ``"v8-heap"`` is Node-only.
    - ``hysteresis`` (0.02): a state is left downward only this fraction of the limit below
      its threshold.
    - ``gc_callback`` (alias ``gcCallback``): called after every cleanup run, with the report
      dict if it takes one argument.
    - ``on_state_change``: called as ``(old, new)`` on every state change.
    - ``host_gc`` (True): register Python's ``gc.collect()`` as the cleanup hook
      ``"python-gc"`` with priority -1000 (it runs after the other hooks).

    Callbacks run on the thread that called in. An exception raised by a callback is
    re-raised by the call that ran it, after everything else (the state update, the other
    callbacks) has run. The manager holds no lock while a callback runs, so callbacks may
    call the manager. Long calls (``check``, cleanup runs) release the GIL.
    """

    STATE_NORMAL: ClassVar[str]
    STATE_WARNING: ClassVar[str]
    STATE_CRITICAL: ClassVar[str]
    STATE_EMERGENCY: ClassVar[str]

    def __new__(cls, config: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> "MemoryManager": ...
    def get_memory_usage(self) -> Dict[str, Any]:
        """A fresh reading as a dict; does not change the state.

        Keys: ``current_bytes``, ``peak_bytes``, ``limit_bytes``, ``usage_percent`` (0-100),
        ``current_mb``, ``peak_mb``, ``limit_mb`` (MiB, unrounded), ``limit_origin``,
        ``source``.
        """
    def get_memory_state(self) -> str:
        """Samples, updates the state and fires callbacks (like ``check()``); returns the state."""
    def check(self) -> str:
        """Samples, updates the state (with hysteresis), fires ``on_state_change(old, new)``
        once per change and runs automatic cleanup; returns the state. Releases the GIL."""
    @property
    def state(self) -> str:
        """The state the last ``check()`` arrived at, without a new reading."""
    def set_memory_limit(self, limit: Union[str, int]) -> None:
        """Sets an explicit limit: ``"512M"``, ``"1G"``, a number of bytes, or -1 / ``"-1"`` to
        clear it (the next origin applies). Raises ``InvalidArgumentError`` for a bad size and
        ``TypeError`` for anything but str or int."""
    def get_memory_limit(self) -> Tuple[int, str]:
        """``(bytes, origin)``; origin is ``"explicit"``, ``"host"``, ``"cgroup_v2"``,
        ``"cgroup_v1"`` or ``"physical"``."""
    def force_garbage_collection(self) -> Dict[str, Any]:
        """Runs the before-GC hooks, the cleanup hooks by priority (``gc.collect()`` among
        them), ``malloc_trim(0)`` on glibc, then the after-GC callbacks.

        Returns the report: ``trigger``, ``level``, ``before_bytes``, ``after_bytes``,
        ``freed_bytes``, ``freed_mb``, ``duration_ms``, ``hooks`` (one dict per hook with
        ``name``, ``ok``, ``error``, ``duration_ms``) and ``malloc_trim``.
        """
    def emergency_cleanup(self) -> Dict[str, Any]:
        """``force_garbage_collection()`` with hooks called at level ``"emergency"``."""
    def get_detailed_stats(self) -> Dict[str, Any]:
        """Usage, state, limit and origin, thresholds, PSI, counters (``checks``,
        ``state_changes``, ``cleanup_runs``), the last cleanup report, the cleanup hooks and,
        with ``enable_detailed_tracking``, ``history`` and ``growth_rate``."""
    def on_state_change(self, callback: _F) -> _F:
        """Registers ``callback(old, new)``, called once per state change; returns it, so it
        works as a decorator."""
    def on_before_gc(self, callback: _F) -> _F:
        """Registers ``callback()``, run first in every cleanup run; returns it."""
    def on_after_gc(self, callback: _F) -> _F:
        """Registers ``callback(report)`` (or ``callback()``), run last in every cleanup run;
        returns it."""
    def register_cleanup_hook(
        self,
        name: str,
        callback: Union[Callable[[str], Any], Callable[[], Any], "MemoryPool", "LazyContainer", Any],
        priority: int = 0,
    ) -> None:
        """Registers a named cleanup hook. It is called with the level (``"normal"`` or
        ``"emergency"``) if it takes one argument, else with none. Higher priorities run
        first, equal ones in registration order; a name registered again is replaced.

        A ``MemoryPool`` or ``TypedMemoryPool`` registers the pool itself: a cleanup run
        trims its idle objects to ``min_size`` (``"emergency"``: all idle objects). A
        ``LazyContainer`` registers the container: with ``release_lazy_on_cleanup`` a cleanup
        run drops its cached lazy (not singleton) instances, running their dispose hooks."""
    def unregister_cleanup_hook(self, name: str) -> bool:
        """Removes a cleanup hook by name; ``False`` when there was none."""
    def cleanup_hooks(self) -> List[Tuple[str, int]]:
        """``(name, priority)`` of every cleanup hook, in the order they run."""
    def update_host_reading(self, current: int, peak: Optional[int] = None, limit: Optional[int] = None) -> None:
        """For ``source="host"``: current and peak usage in bytes (peak defaults to current)
        and the host's own limit (``None`` or -1: none). ``InvalidArgumentError`` on a
        process manager."""
    def reset_peak(self) -> None:
        """Resets the peak to the current reading."""
    def refresh_limit(self) -> None:
        """Reads the cgroup and physical limits again (they are read once, at construction)."""

@final
class MemoryPool:
    """An object pool: ``factory`` creates objects, ``acquire()`` hands one out (the object
    itself), ``release(obj)`` takes it back; ``with pool.use() as obj:`` does both.

    ``MemoryPool(config=None, /, **kwargs)``: keys in a dict, as keyword arguments, or both:

    - ``factory`` (required): returns a new object; called with no argument, or with the
      pool if it only accepts one.
    - ``reset(obj)``: run on every release; if it raises, the object is destroyed and
      ``release`` re-raises the exception.
    - ``validate(obj) -> bool``: run on acquire for an object idle longer than
      ``validation_interval``; false destroys it and the next object is tried.
    - ``destroy(obj)``: run when the pool drops an object (eviction, failed validation or
      reset, ``trim``, ``close``).
    - ``on_leak(report)``: called once for an object held longer than
      ``leak_detection_threshold``, with ``id``, ``held_ms`` and ``acquired_at`` (the label
      given to ``acquire``, else the Python stack where it was acquired).
    - ``max_size`` (10), ``min_size`` (2, or ``max_size`` if smaller; created at once),
      ``max_idle_time`` (300 s; 0 = never), ``max_lifetime`` (0 = never),
      ``validation_interval`` (60 s), ``acquire_timeout`` (30 s),
      ``leak_detection_threshold`` (0 = off), ``auto_cleanup`` (True: a background thread
      evicts, reports leaks and refills every second), ``statistics`` (True: keep counters).

    An exception raised by a hook is re-raised, as it was, by the call that ran it; hooks
    that run on the background thread report theirs to ``sys.unraisablehook``. Waiting in
    ``acquire`` releases the GIL.
    """

    def __new__(cls, *_args: Any, **_kwargs: Any) -> "MemoryPool": ...
    def __init__(self, config: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> None: ...
    def acquire(self, label: Optional[str] = None) -> Any:
        """Takes an object: an idle one, a new one while fewer than ``max_size`` exist, else
        waits up to ``acquire_timeout`` (``AcquireTimeout``). ``ClosedError`` once closed.
        ``label`` is what a leak report names as ``acquired_at``."""
    def release(self, obj: Any) -> None:
        """Returns an object. Releasing it twice, or an object from elsewhere, is an
        ``InvalidArgumentError`` and changes nothing."""
    def use(self, label: Optional[str] = None) -> "PoolUse":
        """``with pool.use() as obj:`` acquires on entry and releases on exit."""
    def get_statistics(self) -> Dict[str, Any]:
        """``active``, ``idle``, ``waiting``, ``size``, ``max_size``, ``min_size``,
        ``hit_rate`` (% of acquires served by an existing object), ``total_created``,
        ``total_destroyed``, ``total_acquired``, ``timeouts``, ``validation_failures``,
        ``leaks``, ``recent_leaks``, ``closed``, ``statistics``. With ``statistics=False`` the
        counters stay 0 and the sizes are still kept."""
    def close(self) -> None:
        """No new acquires; idle objects are destroyed now, in-use ones when released;
        waiting acquires raise ``ClosedError``. Idempotent."""
    def maintain(self) -> None:
        """Evicts idle objects past ``max_idle_time`` (down to ``min_size``) or
        ``max_lifetime``, reports leaks, refills to ``min_size``."""
    def trim(self, keep: int) -> int:
        """Destroys idle objects down to ``keep``; returns how many went."""
    def cleanup(self, level: str = "normal") -> None:
        """``"normal"``: trim idle objects to ``min_size``; ``"emergency"``: all of them."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    def __enter__(self) -> "MemoryPool": ...
    def __exit__(self, *_exc: Any) -> bool: ...

@final
class PoolUse:
    """What ``MemoryPool.use()`` returns: a context manager over one acquired object."""

    def __enter__(self) -> Any: ...
    def __exit__(self, *_exc: Any) -> bool: ...

@final
class LazyContainer:
    """Services created on first use.

    ``LazyContainer(config=None, /, **kwargs)``: ``auto_wire`` (True: a class registered as a
    factory is built with its ``__init__`` parameters resolved from the container, by
    parameter name, else by the ``__name__`` of a class type hint, else their default),
    ``circular_detection`` (True), ``cache_instances`` (True: cache ``lazy`` instances),
    ``debug_mode`` (False: per-service figures in the statistics),
    ``release_lazy_on_cleanup`` (False: a MemoryManager the container is registered with
    drops cached lazy instances on cleanup).

    ``lazy``, ``singleton``, ``factory`` (transient) and ``scoped`` register a factory
    (called with the container if it takes one argument, else with none) and return it; with
    ``factory`` omitted they return a decorator. ``dispose(instance)`` runs when the
    instance is disposed. A factory's own exception is re-raised by ``get`` and nothing is
    cached. Unknown names raise ``NotFoundError``, cycles ``CircularDependencyError``
    (``circular dependency: a -> b -> a``), duplicates ``InvalidArgumentError`` (pass
    ``override=True`` to replace), use after ``dispose()`` ``ClosedError``.
    """

    def __new__(cls, config: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> "LazyContainer": ...
    def lazy(
        self,
        name: str,
        factory: Optional[Callable[..., Any]] = None,
        *,
        dispose: Optional[Callable[[Any], Any]] = None,
        override: bool = False,
    ) -> Any:
        """A lazy service: created on first ``get``, cached with ``cache_instances``."""
    def singleton(
        self,
        name: str,
        factory: Optional[Callable[..., Any]] = None,
        *,
        dispose: Optional[Callable[[Any], Any]] = None,
        override: bool = False,
    ) -> Any:
        """A singleton: created on first ``get``, exactly once even when threads race."""
    def factory(
        self,
        name: str,
        factory: Optional[Callable[..., Any]] = None,
        *,
        dispose: Optional[Callable[[Any], Any]] = None,
        override: bool = False,
    ) -> Any:
        """A transient service: a new instance on every ``get``."""
    def scoped(
        self,
        name: str,
        factory: Optional[Callable[..., Any]] = None,
        *,
        dispose: Optional[Callable[[Any], Any]] = None,
        override: bool = False,
    ) -> Any:
        """A scoped service: one instance per scope, resolved through ``create_scope()``."""
    def get(self, name: str, /) -> Any:
        """The instance of ``name`` (or of the service an alias points to)."""
    def has(self, name: str) -> bool:
        """Whether ``name`` (or an alias of it) is registered."""
    def __contains__(self, key: object, /) -> bool: ...
    def alias(self, alias: str, name: str) -> None:
        """``get(alias)`` resolves ``name``; an alias cycle is a ``CircularDependencyError``."""
    def tag(self, name: str, tags: Union[str, List[str]]) -> None:
        """Adds tags to a registered service."""
    def get_by_tag(self, tag: str) -> List[Any]:
        """The instances of every service tagged ``tag``, in the order they were tagged."""
    def names(self) -> List[str]:
        """Registered service names, in registration order."""
    def create_scope(self) -> "Scope":
        """A new scope for ``scoped`` services: ``with container.create_scope() as scope:``."""
    def dispose(self) -> None:
        """Disposes open scopes, then runs the dispose hooks of cached instances in reverse
        creation order. Later use raises ``ClosedError``."""
    def release_lazy(self) -> int:
        """Drops cached lazy (not singleton) instances, running their dispose hooks; returns
        how many went."""
    def get_statistics(self) -> Dict[str, Any]:
        """``created``, ``cached``, ``avg_creation_time`` (ms), ``memory_saved`` (MB: lazy and
        singleton services never created, times the average resident memory a first creation
        cost), ``registered``, ``never_created``, ``aliases``, ``tags``; with ``debug_mode``
        also ``services``."""

@final
class Scope:
    """One request's ``scoped`` instances."""

    def get(self, name: str) -> Any:
        """Resolves ``name`` in this scope."""
    def dispose(self) -> None:
        """Runs the dispose hooks of this scope's instances in reverse creation order."""
    @property
    def container(self) -> LazyContainer:
        """The container this scope belongs to."""
    def __enter__(self) -> "Scope": ...
    def __exit__(self, *_exc: Any) -> bool: ...

@final
class StreamingIterator:
    """Lists of ``chunk_size`` items from any iterable (generators too), with memory checks
    between chunks.

    Options (dict or keywords, the seed's keys): ``chunk_size`` (1000), ``memory_limit``
    ('128M': allowed growth over the reading taken when iteration starts; above it cleanup
    runs, then the chunk size halves), ``auto_gc``, ``cache_chunks`` (``rewind()`` replays
    the chunks without reading the source again), ``error_handling`` ('continue', 'stop',
    'retry'), ``retry_attempts``, ``manager`` (a ``MemoryManager`` whose cleanup runs above
    ``memory_limit``). ``prefetch`` and ``parallel_processing`` are accepted and have no
    effect: a Python source is read with the GIL, one item after another.

    An exception raised by the source follows ``error_handling``; 'stop' (and 'retry' once
    the retries are used up) re-raises the original exception object.
    """

    def __new__(cls, source: Iterable[Any], config: Optional[Mapping[str, Any]] = None, /, **options: Any) -> "StreamingIterator": ...
    def __iter__(self) -> "StreamingIterator": ...
    def __next__(self) -> List[Any]: ...
    def rewind(self) -> None:
        """Starts again from the first chunk by replaying the cache; ``UnsupportedError``
        without ``cache_chunks`` (a forward-only source cannot be replayed)."""
    @property
    def stats(self) -> Dict[str, Any]:
        """Chunks, items, chunk size and its reductions, cleanups, errors, cache figures."""
    def get_stats(self) -> Dict[str, Any]:
        """The same as ``stats``."""

@final
class LazyIterator:
    """Items loaded a batch at a time by ``loader(offset, limit) -> list``.

    With ``mode='keyset'`` and ``key`` (a dict key or attribute name, or a callable taking an
    item) the loader is called ``loader(after_key, limit)``, ``after_key`` None for the first
    batch. Keyset is recommended: OFFSET makes the database read and discard every row
    before the offset (quadratic over a table) and skips or repeats rows when the data
    changes during the run.

    ``prefetch=True`` runs the loader one batch ahead on a background thread (which takes the
    GIL for each call), so a loader doing I/O overlaps with your work; the loader must then
    work from another thread. Other options: ``batch_size``, ``memory_limit``, ``auto_gc``,
    ``cache_chunks``, ``parallel_processing`` (as prefetch), ``error_handling``,
    ``retry_attempts``, ``manager``.
    """

    def __new__(cls, loader: Callable[[Any, int], Iterable[Any]], config: Optional[Mapping[str, Any]] = None, /, **options: Any) -> "LazyIterator": ...
    def __iter__(self) -> "LazyIterator": ...
    def __next__(self) -> Any: ...
    def batches(self) -> "LazyBatches":
        """The remaining items a batch (list) at a time."""
    def rewind(self) -> None:
        """Starts again from the first item (replays the cache when ``cache_chunks`` kept it)."""
    @property
    def stats(self) -> Dict[str, Any]:
        """Batches, items, batch size, errors, retries, prefetch figures."""
    def get_stats(self) -> Dict[str, Any]:
        """The same as ``stats``."""

@final
class LazyBatches:
    """``LazyIterator.batches()``: lists of items."""

    def __iter__(self) -> "LazyBatches": ...
    def __next__(self) -> List[Any]: ...

@final
class FilteredIterator:
    """The items of ``source`` that pass every callable in ``filters``, in order.

    ``early_exit=True`` (default) stops at an item's first rejecting filter; False runs every
    filter on every item. A ``StreamingIterator`` source is flattened to its items. The source
    is read in chunks with a ``StreamingIterator``'s options. A filter's exception ends the
    iteration and is re-raised as it was.
    """

    def __new__(cls, source: Iterable[Any], config: Optional[Mapping[str, Any]] = None, /, **options: Any) -> "FilteredIterator": ...
    def __iter__(self) -> "FilteredIterator": ...
    def __next__(self) -> Any: ...
    @property
    def stats(self) -> Dict[str, Any]:
        """``items_seen``, ``passed``, ``rejected``, per-filter ``filters`` counts, ``early_exit``,
        and ``source`` (the chunked read's statistics)."""
    def get_stats(self) -> Dict[str, Any]:
        """The same as ``stats``."""

@final
class ChunkedDatabaseProcessor:
    """Walks a query's rows in chunks by keyset pagination, so callbacks that update or delete
    rows never make a row be skipped or seen twice.

    ``connection``: a URL or PDO DSN (``sqlite:///path.db``, ``postgres://...``,
    ``mysql://...``, ``pgsql:host=...``) read by the native drivers on worker threads, or a
    DB-API connection (sqlite3, psycopg, psycopg2, pymysql, MySQLdb, mariadb) through which the
    same queries run on the calling thread.

    Options: ``chunk_size``, ``memory_limit`` (per chunk), ``timeout``, ``retry_attempts``,
    ``retry_delay``, ``parallel_chunks``, ``key_column``, ``pagination``, ``checkpoint``,
    ``checkpoint_fsync``, ``exact_count``, ``prefetch``, ``row_format`` ('dict' or 'tuple'),
    ``user``, ``password``, ``connect_timeout``, ``checkpoint_table``, ``allow_shared_sqlite_file``
    (a URL's SQLite file that this process holds open outside memwarden, e.g. through sqlite3,
    is refused unless true: two SQLite libraries in one process do not see each other's locks;
    pass the sqlite3 connection instead), ``progress_callback(processed, total)``,
    ``error_callback(error, chunk) -> bool``, ``manager``.

    ``checkpoint_table`` (a table name, created if missing) is the same-transaction mode: the
    callbacks get ``(rows, tx)`` / ``(row, tx)``, and what they run through ``tx`` (or, with
    a DB-API connection, through that connection) commits together with the run's checkpoint
    row, so a resume after a crash applies every row exactly once.
    """

    def __new__(cls, connection: Any, config: Optional[Mapping[str, Any]] = None, /, **options: Any) -> "ChunkedDatabaseProcessor": ...
    def process(self, sql: str, row_callback: Callable[..., Any]) -> Dict[str, Any]:
        """Calls ``row_callback(row)`` (``row_callback(row, tx)`` with ``checkpoint_table``)
        for every row; returns the final statistics."""
    def process_query(
        self,
        sql: str,
        batch_callback: Callable[..., Any],
        options: Optional[Mapping[str, Any]] = None,
        /,
        *,
        batch_size: Optional[int] = None,
        parallel: Union[bool, int, None] = None,
    ) -> Dict[str, Any]:
        """Calls ``batch_callback(rows)`` (``batch_callback(rows, tx)`` with
        ``checkpoint_table``) with each chunk; returns the final statistics."""
    def set_progress_callback(self, callback: Optional[Callable[[Dict[str, Any]], Any]]) -> None:
        """``fn(stats)`` after every chunk (``processed``, ``total``, ``memory_usage``,
        ``estimated_remaining``, ``rows_per_second``, ...)."""
    def set_error_callback(self, callback: Optional[Callable[[BaseException, Dict[str, Any]], bool]]) -> None:
        """``fn(error, chunk) -> bool`` for a chunk that still fails after its retries: True
        skips it, False stops."""
    def get_stats(self) -> Dict[str, Any]:
        """Statistics of the last (or running) call."""

@final
class ChunkTransaction:
    """The transaction of one chunk in the same-transaction mode (``checkpoint_table``),
    valid while its callback runs. Placeholders as the connection writes them: ``?`` for
    SQLite and MySQL URLs, ``$1`` for PostgreSQL URLs, the driver's own for a DB-API
    connection."""

    @property
    def dialect(self) -> str:
        """'sqlite', 'postgres' or 'mysql'."""
    def execute(self, sql: str, params: Optional[Sequence[Any]] = None) -> None:
        """Runs ``sql`` with ``params`` inside the chunk's transaction."""
    def query(self, sql: str, params: Optional[Sequence[Any]] = None) -> List[Dict[str, Any]]:
        """As ``execute``, and returns the rows as dicts."""

@final
class MemoryAlertingService:
    """Judges a ``MemoryManager``'s readings against alerting thresholds (percent) and
    delivers alerts by e-mail, Slack, a generic webhook and Prometheus Alertmanager from a
    background thread: per-channel thresholds, throttling, cooldown, escalation, resolve
    notices and a history (SQLite, in memory unless ``history_path``).

    ``MemoryAlertingService(config=None, manager=None, /, **options)``: ``config`` is the
    seed's dict (``channels`` {``email``, ``slack``, ``webhook``, ``alertmanager``},
    ``thresholds``, ``escalation``, ``history_retention_days``, ``history_path``,
    ``alert_cooldown_minutes``, ``batch_alerts``, ``batch_window_seconds``,
    ``include_system_info``, ``custom_metrics``, ``queue_capacity``, ``hysteresis``,
    ``templates``); keyword options add top-level keys. ``manager``: whose readings are
    judged (a default one watching this process when None). A bad channel, URL, e-mail
    address, threshold name or interval raises ``ConfigError`` naming it.

    Callbacks (``on_alert``, ``on_delivery_failed``, ``on_event``) run on the delivery
    thread with the GIL; an exception they raise goes to ``sys.unraisablehook``.
    As a context manager, leaving the block flushes (at most 30 seconds).
    """

    LEVEL_NORMAL: ClassVar[str]
    LEVEL_WARNING: ClassVar[str]
    LEVEL_CRITICAL: ClassVar[str]
    LEVEL_EMERGENCY: ClassVar[str]

    def __new__(
        cls, config: Optional[Mapping[str, Any]] = None, manager: Optional[MemoryManager] = None, /, **options: Any
    ) -> "MemoryAlertingService": ...
    def check_and_alert(self) -> str:
        """Reads the manager, decides, queues deliveries and returns the level at once
        (``'normal'``, ``'warning'``, ``'critical'`` or ``'emergency'``)."""
    def send_alert(self, message: str, level: str = "warning") -> int:
        """Sends your own message at ``level`` to every channel whose threshold it meets;
        returns its id in the history."""
    def flush(self, timeout_seconds: Optional[float] = None) -> bool:
        """Waits (GIL released) until queued deliveries were attempted; True when drained."""
    def get_alert_history(self, filters: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> List[Dict[str, Any]]:
        """Alerts newest first, each with its ``deliveries``. Filters: ``level``, ``channel``,
        ``kind`` ('alert', 'resolved', 'escalation', 'custom'), ``since`` (epoch seconds),
        ``limit``."""
    def poll_events(self) -> List[Dict[str, Any]]:
        """Events since the last call, oldest first (``kind``, ``alert_id``, ``level``,
        ``channel``, ``message``, ``error``, ``time``, ``timestamp``)."""
    @property
    def events_dropped(self) -> int:
        """Events lost because nobody polled."""
    def prune_history(self) -> int:
        """Deletes history older than ``history_retention_days``; returns how many alerts went."""
    @property
    def level(self) -> str:
        """The level the last check arrived at."""
    def on_alert(self, callback: _F) -> _F:
        """``callback(event)`` for every raised alert, on the delivery thread."""
    def on_delivery_failed(self, callback: _F) -> _F:
        """``callback(event)`` for every failed delivery attempt, on the delivery thread."""
    def on_event(self, callback: _F) -> _F:
        """``callback(event)`` for every event, on the delivery thread."""
    def __enter__(self) -> "MemoryAlertingService": ...
    def __exit__(self, *_exc: object) -> bool: ...

@final
class RequestToken:
    """A request in flight, from ``RequestTracker.begin`` to ``end``. Ending it twice ends it once."""

    @property
    def route(self) -> str:
        """The route template the request is counted under (``end(route=...)`` may change it)."""
    @property
    def active(self) -> bool:
        """False once ``end`` has run."""

@final
class RequestReport:
    """The figures of one request, or of one still in flight (from ``snapshot``).

    Process memory is shared by every request the process serves at once: ``overlapped`` says
    how many other requests ran during this one, and their memory is in these figures too.
    """

    @property
    def route(self) -> str: ...
    @property
    def start_bytes(self) -> int: ...
    @property
    def end_bytes(self) -> int: ...
    @property
    def peak_bytes(self) -> int:
        """The highest reading during the request (the resident high-water mark when it rose)."""
    @property
    def delta_bytes(self) -> int: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def overlapped(self) -> int:
        """Other requests in flight at some time during this one."""
    @property
    def high_usage(self) -> bool:
        """Growth (peak minus start) above ``threshold_mb``."""
    @property
    def is_final(self) -> bool:
        """True for the figures at the end of the request, False for a snapshot."""
    @property
    def usage_mb(self) -> float:
        """Memory at the end (or now, for a snapshot) in MiB: the seed's ``X-Memory-Usage``."""
    @property
    def peak_mb(self) -> float:
        """Peak during the request in MiB: ``X-Memory-Peak``."""
    @property
    def delta_mb(self) -> float:
        """End minus start in MiB (negative when memory was returned)."""
    def to_dict(self) -> Dict[str, Any]:
        """The figures as a dict (with ``usage_mb``, ``peak_mb``, ``delta_mb`` and ``is_final``)."""

@final
class RequestTracker:
    """Per-request memory measurement, aggregated per route template: what
    ``memwarden.wsgi`` and ``memwarden.asgi`` call for every request.

    ``RequestTracker(config=None, /, **options)`` with the seed's middleware options:
    ``enabled`` (True), ``track_peak`` (True), ``log_high_usage`` (True), ``threshold_mb``
    (50, >= 0), ``detailed_tracking`` (False, or a dict of the three below),
    ``track_allocations``, ``track_deallocations``, ``include_stack_traces``,
    ``include_headers`` (True), ``log_file`` (JSON lines; stderr without one), ``sample_rate``
    (1.0, from 0 to 1); and ``random_seed``, ``max_routes`` (200: later templates are counted
    as ``"other"``), ``memory_limit`` (``X-Memory-Limit``; default the cgroup limit, else
    physical memory), ``sampler_interval_ms`` (``"auto"``, the default: a ``pread`` of
    ``/proc/self/statm`` per reading until requests come faster than 1000 a second, then a
    library thread every 5 ms; 0: always a ``pread`` per reading; > 0: a library thread
    refreshes one value that often and begin/end read it without a system call). A bad value raises ``ConfigError`` (a
    ``ValueError``) naming the key.
    """

    def __new__(cls, config: Optional[Mapping[str, Any]] = None, /, **options: Any) -> "RequestTracker": ...
    @property
    def enabled(self) -> bool: ...
    @property
    def include_headers(self) -> bool: ...
    @property
    def sample_rate(self) -> float: ...
    @property
    def threshold_mb(self) -> float: ...
    @property
    def detailed_tracking(self) -> Dict[str, bool]:
        """``enabled``, ``track_allocations``, ``track_deallocations``, ``include_stack_traces``."""
    @property
    def limit_bytes(self) -> int:
        """The limit reported as ``X-Memory-Limit``."""
    @property
    def in_flight(self) -> int:
        """Requests begun and not yet ended."""
    def begin(self, route: str) -> Optional[RequestToken]:
        """Starts measuring a request counted under ``route`` (a template such as
        ``"GET /users/{id}"``, never the raw path). None when disabled or not sampled."""
    def snapshot(self, token: RequestToken) -> RequestReport:
        """The figures so far of a request still in flight, for headers sent before the body
        ends; records nothing. ``InvalidArgumentError`` for a token that has ended."""
    def response_headers(self, token: RequestToken, raw: bool = False) -> Tuple[Tuple[Any, Any], ...]:
        """The response headers of a request still in flight (``snapshot`` then ``headers``
        in one call): ``(str, str)`` pairs, or with ``raw=True`` lower-case ``(bytes, bytes)``
        pairs. While the figures stay the same (they change at most once per reading) the same
        tuple is returned. Empty with ``include_headers=False``; ``InvalidArgumentError`` for a
        token that has ended."""
    def end(
        self, token: RequestToken, request: Any = None, route: Optional[str] = None
    ) -> Optional[RequestReport]:
        """Ends a request: reads memory, records it under ``route`` (when given, else the
        template from ``begin``) and, when it is high-usage, calls the high-usage handler with
        ``request`` and writes the log line. None when the token had ended already."""
    def headers(self, report: RequestReport, raw: bool = False) -> List[Tuple[Any, Any]]:
        """``X-Memory-Usage``, ``X-Memory-Peak``, ``X-Memory-Limit`` (MiB, one decimal) and
        ``X-Memory-Efficiency`` (end / peak, percent) as ``(str, str)`` pairs, or with
        ``raw=True`` as lower-case ``(bytes, bytes)`` pairs for ASGI. Empty with
        ``include_headers=False``."""
    def set_high_usage_handler(self, handler: Optional[Callable[..., Any]]) -> None:
        """``handler(usage_mb, request)`` or ``handler(usage_mb, request, report_dict)`` for every
        high-usage request, on the thread that ends it; None removes it. An exception it
        raises is logged (``logging.getLogger("memwarden")``), counted in
        ``analytics()["handler_errors"]`` and written to the log; the request goes on."""
    def analytics(self) -> Dict[str, Any]:
        """``routes`` (per template: ``count``, ``high_usage``, ``overlapped``,
        ``overlapped_share``, ``delta_bytes`` / ``peak_bytes`` ``{p50, p95, max}``,
        ``duration_ms`` ``{avg, max}``), ``in_flight``, ``sampled_out``, ``handler_errors``,
        ``max_routes``, ``overflowed_routes``, ``sample_rate``, ``note``."""

@final
class ResourceTracker:
    """Streamflow's resource tracker (seed 004): resources tracked by type and size against
    ``max_memory_usage``, ``memoryWarning`` / ``memoryCritical`` events once per crossing (with
    hysteresis), cleanup of the oldest resources, and a leak report per type.

    ``ResourceTracker(config=None, /, **options)``; keys as Streamflow writes them or in
    snake_case (same units): ``max_memory_usage`` / ``maxMemoryUsage`` (bytes, 100 MiB),
    ``thresholds`` (``{"warning": 0.7, "critical": 0.9}``, fractions), ``cleanup_interval`` /
    ``cleanupInterval`` (milliseconds, 30000), ``enable_auto_cleanup`` /
    ``enableAutoCleanup`` (False), ``resource_tracking`` / ``resourceTracking``
    (``{"enabled": True, "detailed": False, "metadata": True}``), ``gc_callback`` /
    ``gcCallback`` (called after every cleanup), ``report_at_exit`` (False: print the leak
    report to stderr when the interpreter exits).

    A resource Python collects without a release is released through ``weakref.finalize``
    and counted as leaked (``collected_unreleased``). Objects that cannot be weakly
    referenced (``int``, ``str``, ``bytes``, ``tuple``, ``dict``, ...) are tracked without a
    finalizer: only ``release_resource`` or ``cleanup`` ends them.

    Event listeners and hooks run on the thread that caused them (the timer thread for
    automatic cleanup, with the GIL). An exception they raise is re-raised by the call that
    ran them, after the tracker is updated; on the timer thread it goes to
    ``sys.unraisablehook``. As a context manager, leaving the block disposes the tracker.
    """

    def __new__(cls, config: Optional[Mapping[str, Any]] = None, /, **options: Any) -> "ResourceTracker": ...
    def track_resource(
        self, resource: Any, type: str = "resource", metadata: Optional[Mapping[str, Any]] = None, size: Optional[int] = None
    ) -> int:
        """Tracks ``resource`` as ``type``; returns its id (ids start at 1; 0 while tracking is
        off). The size is ``size``, else ``metadata["size"]``, else the byte length of a
        bytes-like object, else 0. Metadata must be JSON-serialisable: anything else raises
        ``TypeError`` naming the key."""
    def release_resource(self, id: int) -> Dict[str, Any]:
        """Releases a resource and returns its ``ResourceStats`` dict. An unknown or already
        released id raises ``NotFoundError`` (a ``LookupError``) and changes nothing."""
    def get_resource(self, id: int) -> Optional[Dict[str, Any]]:
        """``{"type", "size", "createdAt" (ms since the epoch), "metadata"}``, or None."""
    def get_memory_stats(self) -> Dict[str, Any]:
        """``totalAllocated``, ``activeResources``, ``peakMemoryUsage``, ``totalTracked``,
        ``maxMemoryUsage``, ``usageRatio``, ``level``, ``byType``, ``leaks``,
        ``droppedEvents`` (and ``bytesByType`` with ``resource_tracking={"detailed": True}``)."""
    def leak_report(self) -> Dict[str, Dict[str, int]]:
        """Per type: ``live``, ``released``, ``collected_unreleased``, ``cleaned_up``."""
    def on(self, event: str, callback: _F) -> _F:
        """``callback(event)`` for ``"memoryWarning"`` / ``"memory_warning"``,
        ``"memoryCritical"`` / ``"memory_critical"`` or ``"cleanup"``; the event is a dict
        with ``type``, ``usage``, ``threshold``, ``detail``. Returns callback."""
    def on_before_gc(self, callback: _F) -> _F:
        """``callback()`` runs first in every cleanup. Returns callback."""
    def cleanup(self) -> Dict[str, Any]:
        """Runs the before-GC hooks, then (with ``enable_auto_cleanup``) releases the oldest
        resources until usage is below the warning threshold, then the gc_callback. Returns
        ``{"released_ids": [...], "freed_bytes": n}``."""
    def dispose(self) -> Dict[str, Any]:
        """Stops the timer, forgets every resource and returns the final leak report; later
        calls raise ``ClosedError``."""
    def debug(
        self, tracking_enabled: Optional[bool] = None, verbose: Optional[bool] = None, **kwargs: bool
    ) -> Dict[str, bool]:
        """The seed's ``debug({trackingEnabled, verbose})`` (``trackingEnabled=`` is accepted
        too): ``tracking_enabled`` switches tracking on or off from now on; ``verbose`` logs
        every track, release, collection and event to ``logging.getLogger("memwarden.tracker")``
        at INFO and prints the leak report at exit. Returns the settings now in force."""
    def __enter__(self) -> "ResourceTracker": ...
    def __exit__(self, *_exc: object) -> bool: ...
_Path = Union[str, "os.PathLike[str]"]

@final
class Monitor:
    """Samples a process (``pid``; with ``children`` its whole tree) or the whole system
    every ``interval`` seconds on a background thread, keeps the series, appends every sample
    to ``export`` (one JSON line each) as it goes, and analyzes it.

    ``Monitor(config=None, /, **options)``: keys ``pid``, ``children``, ``system``,
    ``interval`` (seconds, default 1), ``threshold`` (percent, default 80), ``export`` (a
    path), ``export_sync_every`` (fsync every N samples). A pid that does not exist raises
    ``NotFoundError``, another user's ``InvalidArgumentError``, a bad key or value
    ``ConfigError``, an unwritable export path ``MemwardenIOError``.
    ``with Monitor(...) as m:`` samples inside the block.
    """

    def __new__(cls, config: Optional[Mapping[str, Any]] = None, /, **options: Any) -> "Monitor": ...
    def start(self) -> None:
        """Starts the background sampler (at once, then every interval; late ticks skipped)."""
    def stop(self) -> None:
        """Stops the background sampler and fsyncs the export."""
    @property
    def running(self) -> bool:
        """Whether the background sampler runs."""
    @property
    def ended(self) -> Optional[str]:
        """Why the sampler stopped on its own (the process exited), or None."""
    @property
    def skipped_ticks(self) -> int:
        """Ticks skipped because the sampler was late."""
    @property
    def meta(self) -> Dict[str, Any]:
        """``target``, ``interval``, ``limit_bytes``, ``limit_origin``, ``threshold``,
        ``started_unix_ms``, ``version``."""
    def sample_now(self) -> Dict[str, Any]:
        """Takes a sample now, adds it to the series and returns it."""
    def samples(self) -> List[Dict[str, Any]]:
        """``{t, unix_ms, current_bytes, peak_bytes, limit_bytes}`` for every sample so far."""
    def analyze(self) -> Dict[str, Any]:
        """The analysis of the series so far (as ``analyze(path)``)."""
    def export(self, path: _Path) -> None:
        """Writes the series so far to ``path`` as an export file (atomically)."""
    def __enter__(self) -> "Monitor": ...
    def __exit__(self, *_exc: object) -> bool: ...

def analyze(path: _Path) -> Dict[str, Any]:
    """The analysis of an export file: ``samples``, ``duration_s``, ``average_mb``,
    ``min_mb``, ``peak_mb``, ``limit_mb``, ``efficiency_percent``, ``spikes``, ``leak``
    (``slope_mb_per_min``, ``r2``, ``steady``, ``sentence``) or None."""

@final
class StreamProcessor:
    """Reads a file, a file object or an iterable of bytes in chunks of ``chunk_size`` and calls
    a handler on each, at most ``concurrent_streams`` at once, with every chunk in flight
    tracked: reading pauses while the chunks in flight would take the tracker over
    ``thresholds['warning']`` of ``max_memory_usage`` (backpressure), so memory stays bounded
    whatever the input size. ``compression_enabled`` hands the handler gzip (one member per
    chunk). Options (camelCase or snake_case): ``chunk_size`` (bytes or ``"1M"``),
    ``concurrent_streams``, ``compression_enabled``, ``max_memory_usage`` (bytes or ``"64M"``),
    ``thresholds``, ``cleanup_interval``, ``performance_callback(metrics)``, and ``tracker``: a
    ``ResourceTracker`` of yours to track the chunks in (its statistics show them, its
    ``max_memory_usage`` and ``thresholds`` give the backpressure, its listeners get the events
    admitting a chunk causes, on the thread that reads; the tracker's own keys may then not be
    given, and anything but a ResourceTracker is a ``TypeError``).
    """

    def __new__(cls, config: Optional[Mapping[str, Any]] = None, /, **options: Any) -> "StreamProcessor": ...
    def on(self, event: str, callback: _F) -> _F:
        """Registers ``callback(event)`` for ``"performance"`` (``speed``, ``memoryUsage``,
        ``processingTime``, ``chunks``, ``bytes``; per chunk, and a summary with ``final`` True),
        ``"memoryWarning"`` / ``"memory_warning"`` or ``"memoryCritical"`` /
        ``"memory_critical"`` (``usage``, ``threshold``, ``detail``, ``index``: admitting chunk
        ``index`` took the chunk tracker over a threshold). Another name raises
        ``InvalidArgumentError`` (a ``ValueError``)."""
    @property
    def tracker(self) -> Optional[ResourceTracker]:
        """The ``tracker`` option, or None when the processor tracks chunks in its own."""
    def process_file(self, path: Union[str, "os.PathLike[str]"], handler: Callable[..., Any]) -> Dict[str, Any]:
        """Calls ``handler(chunk)`` or ``handler(chunk, info)`` (``info``: ``index``, ``offset``,
        ``size``) for every chunk of the file; returns the summary."""
    def process(self, source: Any, handler: Callable[..., Any]) -> Dict[str, Any]:
        """Like ``process_file`` for a binary file object or an iterable of bytes."""
    def stats(self) -> Dict[str, Any]:
        """Config, the last run's counters and the chunk tracker's statistics."""
    def poll_events(self) -> List[Dict[str, Any]]:
        """``performance`` events and the tracker's ``memoryWarning`` / ``memoryCritical`` since the last poll."""
    def compress(self, data: bytes) -> bytes:
        """Gzip, as chunks are compressed with ``compression_enabled``."""
    @property
    def chunk_size(self) -> int: ...
    @property
    def concurrent_streams(self) -> int: ...
    @property
    def compression_enabled(self) -> bool: ...
