"""MemoryPool and TypedMemoryPool through the Python binding: the seed's scenarios, sizes,
reuse, waiting, hooks and their exceptions, close, leaks, statistics, the manager, bad
config, threads and garbage collection."""

import gc
import threading
import time
import weakref

import pytest

import memwarden
from memwarden import (
    AcquireTimeout,
    ClosedError,
    ConfigError,
    InvalidArgumentError,
    MemoryManager,
    MemoryPool,
    MemwardenError,
    TypedMemoryPool,
)

# Pools in these tests do their own maintenance: no background thread changes them.
QUIET = {"auto_cleanup": False}


class DatabaseConnection:
    """A fake connection: counts what the pool does to it."""

    opened = 0

    def __init__(self, config=None):
        DatabaseConnection.opened += 1
        self.config = config
        self.connected = True
        self.in_transaction = False
        self.cache = {}
        self.closed = False

    def query(self, sql):
        self.in_transaction = True
        self.cache[sql] = [{"id": 1, "name": "ada"}]
        return self.cache[sql]

    def rollback(self):
        self.in_transaction = False

    def clear_cache(self):
        self.cache.clear()

    def is_connected(self):
        return self.connected

    def close(self):
        self.closed = True


def counting_pool(**config):
    """A pool of plain objects with every hook recording its calls."""
    calls = {"created": [], "reset": [], "validate": [], "destroy": []}

    class Obj:
        pass

    def factory():
        o = Obj()
        calls["created"].append(o)
        return o

    config.setdefault("reset", lambda o: calls["reset"].append(o))
    config.setdefault("destroy", lambda o: calls["destroy"].append(o))
    for k, v in QUIET.items():
        config.setdefault(k, v)
    return MemoryPool(factory=factory, **config), calls


def invariant(stats):
    return stats["total_created"] - stats["total_destroyed"] == stats["active"] + stats["idle"]


# ---- the seed's snippets -----------------------------------------------------------------


def test_seed_basic_usage():
    config = {"dsn": "sqlite://"}
    connection_pool = MemoryPool(
        {
            "factory": lambda: DatabaseConnection(config),
            "max_size": 10,
            "min_size": 2,
            "max_idle_time": 300,  # 5 minutes
        }
    )
    connection = connection_pool.acquire()
    assert isinstance(connection, DatabaseConnection)
    result = connection.query("SELECT * FROM users")
    assert result == [{"id": 1, "name": "ada"}]
    connection_pool.release(connection)

    stats = connection_pool.get_statistics()
    line = f"Active: {stats['active']}, Idle: {stats['idle']} Hit Rate: {stats['hit_rate']}%"
    assert (stats["active"], stats["idle"]) == (0, 2), line
    assert stats["hit_rate"] == 100.0
    assert (stats["total_created"], stats["total_destroyed"]) == (2, 0)
    connection_pool.close()


class DatabaseConnectionPool(TypedMemoryPool[DatabaseConnection]):
    def create_object(self) -> DatabaseConnection:
        return DatabaseConnection(self.config)

    def reset_object(self, obj: DatabaseConnection) -> None:
        obj.rollback()  # Reset state
        obj.clear_cache()

    def validate_object(self, obj: DatabaseConnection) -> bool:
        return obj.is_connected()


def test_seed_typed_pool():
    pool = DatabaseConnectionPool({"max_size": 15}, auto_cleanup=False)
    assert pool.config == {"max_size": 15, "auto_cleanup": False}
    stats = pool.get_statistics()
    assert (stats["max_size"], stats["min_size"], stats["idle"]) == (15, 2, 2)

    conn = pool.acquire()
    assert conn.config == pool.config
    conn.query("SELECT 1")
    assert conn.in_transaction and conn.cache
    pool.release(conn)
    assert not conn.in_transaction and not conn.cache  # reset_object ran

    with pool.use() as conn2:
        assert conn2 is conn  # the most recently released object comes back first
    assert pool.get_statistics()["active"] == 0
    assert isinstance(pool.pool, MemoryPool)
    assert "DatabaseConnectionPool" in repr(pool)
    pool.close()
    assert pool.closed


def test_typed_pool_validation_failure_replaces_the_object():
    pool = DatabaseConnectionPool(max_size=2, min_size=1, validation_interval=0, auto_cleanup=False)
    conn = pool.acquire()
    pool.release(conn)
    conn.connected = False  # the server went away while it sat idle
    time.sleep(0.05)  # idle longer than validation_interval on the pool's coarse clock
    fresh = pool.acquire()
    assert fresh is not conn and fresh.connected
    assert pool.get_statistics()["validation_failures"] == 1
    pool.release(fresh)


def test_typed_pool_needs_create_object_and_rejects_hook_keys():
    class NoFactory(TypedMemoryPool):
        pass

    with pytest.raises(TypeError, match="create_object"):
        NoFactory()
    with pytest.raises(ConfigError, match="override reset_object"):
        DatabaseConnectionPool(reset=lambda o: None)
    with pytest.raises(ConfigError, match="did you mean 'max_size'"):
        DatabaseConnectionPool(max_sise=3)


def test_typed_pool_only_passes_overridden_hooks():
    validated = []

    class Plain(TypedMemoryPool[list]):
        def create_object(self):
            return []

    class Validating(Plain):
        def validate_object(self, obj):
            validated.append(obj)
            return True

    plain = Plain(validation_interval=0, **QUIET)
    time.sleep(0.05)
    plain.release(plain.acquire())
    checked = Validating(validation_interval=0, **QUIET)
    time.sleep(0.05)
    checked.release(checked.acquire())
    assert len(validated) == 1


# ---- sizes and reuse ---------------------------------------------------------------------


def test_min_size_prefilled_and_max_size_never_exceeded():
    pool, calls = counting_pool(max_size=3, min_size=2, acquire_timeout=0.05)
    assert len(calls["created"]) == 2
    assert pool.get_statistics()["idle"] == 2
    held = [pool.acquire() for _ in range(3)]
    assert len(set(map(id, held))) == 3
    with pytest.raises(AcquireTimeout):
        pool.acquire()
    s = pool.get_statistics()
    assert (s["size"], s["active"], s["idle"], s["total_created"]) == (3, 3, 0, 3)
    for o in held:
        pool.release(o)


def test_reuse_returns_the_same_object_and_counts_hits():
    pool, calls = counting_pool(max_size=2, min_size=0)
    a = pool.acquire()
    pool.release(a)
    for _ in range(9):
        b = pool.acquire()
        assert b is a
        pool.release(b)
    s = pool.get_statistics()
    assert len(calls["created"]) == 1
    assert s["total_acquired"] == 10
    assert s["hit_rate"] == pytest.approx(90.0)
    assert len(calls["reset"]) == 10


def test_acquire_timeout_is_a_timeout_error_and_counted():
    pool, _ = counting_pool(max_size=1, min_size=1, acquire_timeout=0.05)
    held = pool.acquire()
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        pool.acquire()
    assert isinstance(info.value, AcquireTimeout) and isinstance(info.value, MemwardenError)
    assert "acquire_timeout" in str(info.value)
    assert time.monotonic() - started >= 0.04
    assert pool.get_statistics()["timeouts"] == 1
    pool.release(held)


def test_blocked_acquire_is_served_by_a_release_from_another_thread():
    pool, _ = counting_pool(max_size=1, min_size=1, acquire_timeout=10)
    held = pool.acquire()
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire()))
    waiter.start()
    deadline = time.monotonic() + 5
    while pool.get_statistics()["waiting"] == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    # The waiter waits with the GIL released: this thread keeps running Python.
    counted = 0
    end = time.monotonic() + 0.05
    while time.monotonic() < end:
        counted += 1
    assert counted > 1000
    assert waiter.is_alive() and not got
    releaser = threading.Thread(target=pool.release, args=(held,))
    releaser.start()
    releaser.join(5)
    waiter.join(5)
    assert got == [held]
    s = pool.get_statistics()
    assert (s["waiting"], s["active"], s["timeouts"]) == (0, 1, 0)
    pool.release(held)


# ---- release errors ----------------------------------------------------------------------


def test_release_twice_or_foreign_object_is_invalid_argument_and_changes_nothing():
    pool, calls = counting_pool(max_size=2, min_size=1)
    obj = pool.acquire()
    pool.release(obj)
    before = pool.get_statistics()
    with pytest.raises(InvalidArgumentError, match="released twice"):
        pool.release(obj)
    with pytest.raises(ValueError, match="not in use from this pool"):
        pool.release(object())
    other, _ = counting_pool(max_size=1, min_size=1)
    stranger = other.acquire()
    with pytest.raises(InvalidArgumentError):
        pool.release(stranger)
    assert pool.get_statistics() == before
    assert len(calls["reset"]) == 1 and calls["destroy"] == []
    other.release(stranger)


# ---- hooks and their exceptions ----------------------------------------------------------


class Boom(Exception):
    pass


def test_raising_reset_propagates_and_destroys_the_object():
    destroyed = []

    def reset(o):
        if getattr(o, "bad", False):
            raise Boom("rollback failed")

    class Obj:
        pass

    pool = MemoryPool(factory=Obj, reset=reset, destroy=destroyed.append, max_size=2, min_size=0, **QUIET)
    a, b = pool.acquire(), pool.acquire()
    b.bad = True
    pool.release(a)
    with pytest.raises(Boom, match="rollback failed"):
        pool.release(b)
    assert destroyed == [b]
    s = pool.get_statistics()
    assert (s["idle"], s["active"], s["size"], s["total_destroyed"]) == (1, 0, 1, 1)
    assert invariant(s)
    assert pool.acquire() is a


def test_validate_runs_only_after_validation_interval():
    seen = []
    pool, _ = counting_pool(max_size=2, min_size=1, validate=lambda o: seen.append(o) or True)
    for _ in range(50):
        pool.release(pool.acquire())
    assert seen == []  # a hot pool with the default 60 s interval never validates

    quick, _ = counting_pool(max_size=2, min_size=1, validation_interval=0, validate=lambda o: seen.append(o) or True)
    time.sleep(0.05)
    obj = quick.acquire()
    assert seen == [obj]
    quick.release(obj)


def test_failing_validation_destroys_and_serves_the_next():
    pool, calls = counting_pool(max_size=3, min_size=2, validation_interval=0, validate=lambda o: not getattr(o, "stale", False))
    first, second = calls["created"]
    first.stale = second.stale = True
    time.sleep(0.05)
    obj = pool.acquire()
    assert obj is not first and obj is not second
    assert set(map(id, calls["destroy"])) == {id(first), id(second)}
    s = pool.get_statistics()
    assert (s["validation_failures"], s["total_created"], s["active"], s["idle"]) == (2, 3, 1, 0)
    pool.release(obj)


def test_raising_validator_propagates_and_the_object_is_destroyed():
    def validate(o):
        raise Boom("validator exploded")

    pool, calls = counting_pool(max_size=2, min_size=1, validation_interval=0, validate=validate)
    time.sleep(0.05)
    with pytest.raises(Boom, match="validator exploded"):
        pool.acquire()
    s = pool.get_statistics()
    assert (s["size"], s["active"], s["total_destroyed"]) == (0, 0, 1)
    assert len(calls["destroy"]) == 1


def test_raising_factory_propagates_and_pool_stays_consistent():
    fail = [False]

    class Obj:
        pass

    def factory():
        if fail[0]:
            raise Boom("database is down")
        return Obj()

    pool = MemoryPool(factory=factory, max_size=2, min_size=1, acquire_timeout=0.05, **QUIET)
    held = pool.acquire()
    fail[0] = True
    with pytest.raises(Boom, match="database is down"):
        pool.acquire()
    s = pool.get_statistics()
    assert (s["size"], s["active"], s["idle"], s["waiting"]) == (1, 1, 0, 0)
    fail[0] = False
    second = pool.acquire()
    assert second is not held
    pool.release(held)
    pool.release(second)
    assert invariant(pool.get_statistics())

    with pytest.raises(Boom):
        MemoryPool(factory=lambda: (_ for _ in ()).throw(Boom("at prefill")), min_size=1)


def test_factory_returning_none_or_the_same_object_is_an_error():
    with pytest.raises(TypeError, match="factory returned None"):
        MemoryPool(factory=lambda: None, min_size=1)
    pool = MemoryPool(factory=lambda: None, min_size=0, **QUIET)
    with pytest.raises(TypeError, match="factory returned None"):
        pool.acquire()
    assert pool.get_statistics()["size"] == 0

    singleton = object()
    same = MemoryPool(factory=lambda: singleton, min_size=0, max_size=2, **QUIET)
    assert same.acquire() is singleton
    with pytest.raises(InvalidArgumentError, match="already in the pool"):
        same.acquire()
    s = same.get_statistics()
    assert (s["size"], s["active"]) == (1, 1)
    same.release(singleton)


def test_factory_taking_the_pool_gets_the_pool():
    seen = []

    def factory(pool):
        seen.append(pool)
        return bytearray()

    pool = MemoryPool(factory=factory, min_size=1, **QUIET)
    assert seen == [pool]
    # Builtins whose argument is optional are called without one.
    buffers = MemoryPool(factory=bytearray, min_size=1, **QUIET)
    assert buffers.acquire() == bytearray()


# ---- close ---------------------------------------------------------------------------


def test_close_refuses_acquires_and_destroys_in_use_objects_when_released():
    pool, calls = counting_pool(max_size=3, min_size=3)
    held = pool.acquire()
    held2 = pool.acquire()
    idle = [o for o in calls["created"] if o is not held and o is not held2]
    pool.close()
    assert pool.closed
    assert calls["destroy"] == idle  # idle objects go at once
    with pytest.raises(ClosedError, match="closed"):
        pool.acquire()
    with pytest.raises(ClosedError):
        with pool.use():
            pass
    pool.release(held)
    pool.release(held2)
    assert calls["destroy"] == idle + [held, held2]  # in-use ones when they come back
    s = pool.get_statistics()
    assert s["closed"] and (s["active"], s["idle"], s["size"]) == (0, 0, 0)
    assert invariant(s)
    pool.close()  # idempotent


def test_close_wakes_a_waiting_acquire_with_closed_error():
    pool, calls = counting_pool(max_size=1, min_size=1, acquire_timeout=10)
    held = pool.acquire()
    errors = []

    def wait():
        try:
            pool.acquire()
        except ClosedError as e:
            errors.append(e)

    t = threading.Thread(target=wait)
    t.start()
    while pool.get_statistics()["waiting"] == 0:
        time.sleep(0.001)
    pool.close()
    t.join(5)
    assert len(errors) == 1
    pool.release(held)
    assert calls["destroy"] == [held]


def test_pool_as_context_manager_closes():
    destroyed = []
    with MemoryPool(factory=list, destroy=destroyed.append, min_size=2, **QUIET) as pool:
        with pool.use() as obj:
            obj.append(1)
    assert pool.closed
    assert len(destroyed) == 2
    assert "closed" in repr(pool)


def test_destroy_exception_is_reraised_after_close_and_a_second_is_unraisable(monkeypatch):
    unraisable = []
    monkeypatch.setattr("sys.unraisablehook", unraisable.append)

    def destroy(o):
        raise Boom(f"close failed {len(o)}")

    pool = MemoryPool(factory=list, destroy=destroy, min_size=2, **QUIET)
    a, b = pool.acquire(), pool.acquire()
    a.append(1)
    pool.release(a)
    pool.release(b)
    with pytest.raises(Boom, match="close failed"):
        pool.close()
    assert [type(u.exc_value) for u in unraisable] == [Boom]  # the second, not lost
    s = pool.get_statistics()
    assert s["closed"] and s["size"] == 0


# ---- use() ---------------------------------------------------------------------------


def test_use_releases_on_exit_and_on_exception():
    pool, calls = counting_pool(max_size=1, min_size=1)
    with pool.use() as obj:
        assert pool.get_statistics()["active"] == 1
    assert pool.get_statistics()["active"] == 0
    with pytest.raises(Boom):
        with pool.use() as again:
            assert again is obj
            raise Boom("inside")
    s = pool.get_statistics()
    assert (s["active"], s["idle"]) == (0, 1)
    assert len(calls["reset"]) == 2
    cm = pool.use()
    cm.__enter__()
    with pytest.raises(RuntimeError, match="already entered"):
        cm.__enter__()
    cm.__exit__(None, None, None)


# ---- leaks ---------------------------------------------------------------------------


def test_leak_detection_reports_once_with_where_it_was_acquired():
    reports = []
    pool = MemoryPool(
        factory=list, max_size=2, min_size=0, leak_detection_threshold=0.05, on_leak=reports.append, **QUIET
    )
    leaked = pool.acquire()
    pool.maintain()
    assert reports == []
    time.sleep(0.15)
    pool.maintain()
    pool.maintain()
    assert len(reports) == 1
    report = reports[0]
    assert set(report) == {"id", "held_ms", "acquired_at"}
    assert report["held_ms"] >= 50
    assert "test_pool.py" in report["acquired_at"]
    assert "test_leak_detection_reports_once" in report["acquired_at"]
    s = pool.get_statistics()
    assert s["leaks"] == 1 and s["recent_leaks"] == reports
    pool.release(leaked)


def test_leak_label_given_and_through_a_typed_pool_and_use():
    reports = []

    class Typed(TypedMemoryPool):
        def create_object(self):
            return []

    pool = Typed(max_size=3, min_size=0, leak_detection_threshold=0.02, on_leak=reports.append, **QUIET)
    a = pool.acquire("worker.py:42")
    b = pool.acquire()
    cm = pool.use()
    c = cm.__enter__()
    time.sleep(0.1)
    pool.maintain()
    by_id = sorted(reports, key=lambda r: r["id"])
    assert len(by_id) == 3
    labels = [r["acquired_at"] for r in reports]
    assert "worker.py:42" in labels
    others = [x for x in labels if x != "worker.py:42"]
    # The stack skips memwarden's own frames and names this test.
    assert all("test_leak_label_given" in x and "_typed_pool.py" not in x for x in others), others
    pool.release(a)
    pool.release(b)
    cm.__exit__(None, None, None)
    assert c is not None


def test_on_leak_exception_is_reraised_by_maintain():
    def on_leak(report):
        raise Boom("pager down")

    pool = MemoryPool(factory=list, min_size=0, leak_detection_threshold=0.01, on_leak=on_leak, **QUIET)
    obj = pool.acquire()
    time.sleep(0.05)
    with pytest.raises(Boom, match="pager down"):
        pool.maintain()
    assert pool.get_statistics()["leaks"] == 1
    pool.release(obj)


# ---- statistics --------------------------------------------------------------------------


def test_statistics_off_keeps_sizes_and_zero_counters():
    pool, _ = counting_pool(max_size=3, min_size=1, statistics=False)
    a = pool.acquire()
    b = pool.acquire()
    pool.release(a)
    s = pool.get_statistics()
    assert (s["active"], s["idle"], s["size"]) == (1, 1, 2)
    assert (s["total_created"], s["total_acquired"], s["total_destroyed"], s["hit_rate"]) == (0, 0, 0, 0.0)
    assert s["statistics"] is False
    pool.release(b)


def test_statistics_keys():
    pool, _ = counting_pool()
    assert set(pool.get_statistics()) == {
        "active",
        "idle",
        "waiting",
        "size",
        "max_size",
        "min_size",
        "hit_rate",
        "total_created",
        "total_destroyed",
        "total_acquired",
        "timeouts",
        "validation_failures",
        "leaks",
        "recent_leaks",
        "closed",
        "statistics",
    }


# ---- maintenance, trim, cleanup, the manager ---------------------------------------------


def test_idle_eviction_and_refill_by_maintain():
    pool, calls = counting_pool(max_size=4, min_size=1, max_idle_time=0.05)
    held = [pool.acquire() for _ in range(4)]
    for o in held:
        pool.release(o)
    assert pool.get_statistics()["idle"] == 4
    time.sleep(0.15)
    pool.maintain()
    s = pool.get_statistics()
    assert (s["idle"], s["total_destroyed"]) == (1, 3)
    assert len(calls["destroy"]) == 3
    assert invariant(s)


def test_trim_and_cleanup_levels():
    pool, calls = counting_pool(max_size=5, min_size=2)
    held = [pool.acquire() for _ in range(5)]
    for o in held:
        pool.release(o)
    assert pool.trim(4) == 1
    pool.cleanup()
    assert pool.get_statistics()["idle"] == 2
    pool.cleanup("emergency")
    assert pool.get_statistics()["idle"] == 0
    assert len(calls["destroy"]) == 5
    with pytest.raises(InvalidArgumentError, match="'normal' or 'emergency'"):
        pool.cleanup("gentle")
    with pytest.raises(InvalidArgumentError, match="keep"):
        pool.trim(-1)


def test_manager_force_garbage_collection_trims_registered_pools():
    manager = MemoryManager(host_gc=False)
    pool, calls = counting_pool(max_size=5, min_size=1)
    typed = DatabaseConnectionPool(max_size=4, min_size=1, **QUIET)
    for p in (pool, typed):
        held = [p.acquire() for _ in range(4)]
        for o in held:
            p.release(o)
    manager.register_cleanup_hook("pool", pool, priority=5)
    manager.register_cleanup_hook("connections", typed)
    assert manager.cleanup_hooks() == [("pool", 5), ("connections", 0)]
    report = manager.force_garbage_collection()
    assert [h["name"] for h in report["hooks"]] == ["pool", "connections"]
    assert all(h["ok"] for h in report["hooks"])
    assert pool.get_statistics()["idle"] == 1
    assert typed.get_statistics()["idle"] == 1
    assert len(calls["destroy"]) == 3
    manager.emergency_cleanup()
    assert pool.get_statistics()["idle"] == 0
    assert manager.unregister_cleanup_hook("pool")


# ---- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"max_size": 0}, "'max_size'"),
        ({"max_size": 2, "min_size": 3}, "min_size (3) must not exceed max_size (2)"),
        ({"max_idle_time": -1}, "'max_idle_time'"),
        ({"acquire_timeout": -0.5}, "'acquire_timeout'"),
        ({"leak_detection_threshold": "soon"}, "'leak_detection_threshold'"),
        ({"max_size": 2.5}, "'max_size'"),
        ({"max_lifetime": float("inf")}, "MemoryPool config: invalid value for 'max_lifetime'"),
        ({"max_sise": 3}, "did you mean 'max_size'?"),
        ({"fatcory": list}, "did you mean 'factory'?"),
        ({"statistics": "yes"}, "'statistics'"),
        ({"factory": 42}, "invalid value for 'factory': expected a callable, got int"),
        ({"reset": "no"}, "invalid value for 'reset': expected a callable"),
        ({"factory": None}, "'factory' is required"),
    ],
)
def test_bad_config_is_a_config_error(config, needle):
    config = dict(config)
    config.setdefault("factory", list)
    if config["factory"] is None:
        del config["factory"]
    with pytest.raises(ConfigError) as info:
        MemoryPool(config)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_factory_and_other_config_forms():
    with pytest.raises(ConfigError, match="'factory' is required"):
        MemoryPool()
    with pytest.raises(ConfigError, match="both in the config dict and as a keyword"):
        MemoryPool({"max_size": 2}, max_size=3, factory=list)
    with pytest.raises(TypeError, match="must be a dict"):
        MemoryPool([("factory", list)])
    with pytest.raises(ConfigError, match="no argument or one"):
        MemoryPool(factory=lambda a, b: None)
    pool = MemoryPool({"factory": list}, max_size=3, min_size=0)
    s = pool.get_statistics()
    assert (s["max_size"], s["min_size"], s["size"]) == (3, 0, 0)


def test_uninitialised_pool_and_double_init():
    shell = MemoryPool.__new__(MemoryPool)
    with pytest.raises(RuntimeError, match="__init__"):
        shell.acquire()
    assert "not initialised" in repr(shell)
    pool = MemoryPool(factory=list)
    with pytest.raises(RuntimeError, match="only be called once"):
        pool.__init__(factory=list)


# ---- threads -------------------------------------------------------------------------


def test_two_threads_stress_keeps_the_invariant():
    pool, _ = counting_pool(max_size=2, min_size=1, acquire_timeout=10)
    errors = []

    def work():
        try:
            for _ in range(5000):
                obj = pool.acquire()
                pool.release(obj)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = pool.get_statistics()
    assert invariant(s), s
    assert s["total_acquired"] == 10000
    assert s["size"] <= 2 and s["active"] == 0 and s["waiting"] == 0


def test_hooks_run_on_the_background_thread_with_auto_cleanup():
    created = []
    pool = MemoryPool(
        factory=lambda: created.append(threading.current_thread().name) or [],
        max_size=2,
        min_size=1,
        max_lifetime=0.2,
    )
    assert created == ["MainThread"]
    deadline = time.monotonic() + 5
    while len(created) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    # The maintenance thread (a thread Python did not start: "Dummy-N") replaced the expired
    # object, taking the GIL to call the factory.
    assert len(created) >= 2 and created[1].startswith("Dummy"), created
    pool.close()


# ---- garbage collection ---------------------------------------------------------------------


def _pool_in_a_cycle():
    # Every object refers to its pool (the factory is given the pool), one of them is
    # acquired and dropped without a release: once this frame is gone the only references
    # are the pool's own (cycles through Rust that __traverse__ reveals).
    class Conn:
        def __init__(self, pool):
            self.pool = pool

    pool = MemoryPool(factory=Conn, min_size=2, max_size=3, **QUIET)
    leaked = pool.acquire()
    assert leaked.pool is pool
    return weakref.ref(pool), weakref.ref(leaked)


def _closure_pool_in_a_cycle():
    # The factory closes over the pool.
    pool = MemoryPool(factory=lambda: [pool], min_size=0, **QUIET)
    pool.release(pool.acquire())
    return weakref.ref(pool)


def _typed_pool_in_a_cycle():
    class Conns(TypedMemoryPool):
        def create_object(self):
            return [self]

        def reset_object(self, obj):
            pass

    pool = Conns(min_size=1, **QUIET)
    pool.release(pool.acquire())
    return weakref.ref(pool)


def test_pools_in_cycles_are_collected():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        ref, obj_ref = _pool_in_a_cycle()
        typed_ref = _typed_pool_in_a_cycle()
        closure_ref = _closure_pool_in_a_cycle()
        refs = [ref, obj_ref, typed_ref, closure_ref]
        assert all(r() is not None for r in refs)  # reference counting alone cannot free them
        gc.collect()
        assert [r() for r in refs] == [None] * 4
    finally:
        if was_enabled:
            gc.enable()


def test_dropped_pool_destroys_its_idle_objects_and_unreleased_ones_stay_alive():
    destroyed = []
    pool = MemoryPool(factory=list, destroy=destroyed.append, min_size=2, **QUIET)
    kept = pool.acquire()
    kept.append("still mine")
    del pool
    gc.collect()
    assert len(destroyed) == 1
    assert kept == ["still mine"]


# ---- exports -------------------------------------------------------------------------


def test_exports():
    for name in ("MemoryPool", "TypedMemoryPool", "PoolUse"):
        assert name in memwarden.__all__
    assert MemoryPool.__module__ == "memwarden"
    assert repr(MemoryPool(factory=list, max_size=3, min_size=1)) == (
        "<memwarden.MemoryPool size=1 active=0 idle=1 max_size=3>"
    )
