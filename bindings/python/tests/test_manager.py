"""MemoryManager through the Python binding: the seed's scenarios, states, callbacks,
cleanup, errors, threads and garbage collection."""

import gc
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest

import memwarden
from memwarden import (
    ConfigError,
    InvalidArgumentError,
    MemoryManager,
    MemwardenError,
)

MiB = 1024 * 1024
USAGE_KEYS = {
    "current_bytes",
    "peak_bytes",
    "limit_bytes",
    "usage_percent",
    "current_mb",
    "peak_mb",
    "limit_mb",
    "limit_origin",
    "source",
}


def host_manager(**config):
    """A manager fed with readings by the test; deterministic (no random GC, no python-gc)."""
    config.setdefault("gc_probability", 0.0)
    config.setdefault("random_seed", 1)
    return MemoryManager(source="host", **config)


def at(manager, percent, limit=1000):
    """Pushes a reading of `percent`% of `limit` bytes and checks."""
    current = percent * limit // 100
    manager.update_host_reading(current, current, limit)
    return manager.check()


# ---- the seed's Basic Usage ---------------------------------------------------------


def test_seed_basic_usage():
    memory_manager = MemoryManager(
        {
            "warning_threshold": 0.75,  # 75% of memory limit
            "critical_threshold": 0.9,  # 90% of memory limit
            "auto_gc_threshold": 0.8,  # Auto GC at 80%
            "enable_detailed_tracking": True,
        }
    )
    usage = memory_manager.get_memory_usage()
    line = f"Current: {usage['current_mb']}MB, Peak: {usage['peak_mb']}MB"
    assert usage["current_mb"] > 1, line
    assert usage["peak_mb"] >= usage["current_mb"]
    state = memory_manager.get_memory_state()
    assert state in ("normal", "warning", "critical", "emergency")
    assert memory_manager.state == state


def test_seed_basic_usage_critical_branch_runs_emergency_cleanup():
    levels = []
    memory_manager = MemoryManager(
        {"warning_threshold": 0.75, "critical_threshold": 0.9, "auto_gc_threshold": 0.8},
        source="host",
        gc_probability=0.0,
    )
    memory_manager.register_cleanup_hook("cache", lambda level: levels.append(level))
    memory_manager.update_host_reading(920 * MiB, 920 * MiB, 1000 * MiB)

    state = memory_manager.get_memory_state()
    assert state == MemoryManager.STATE_CRITICAL
    assert levels == ["normal"]  # crossing auto_gc_threshold (80%) ran one cleanup
    if state == MemoryManager.STATE_CRITICAL:
        report = memory_manager.emergency_cleanup()
    assert report["trigger"] == "emergency_manual"
    assert report["level"] == "emergency"
    assert levels == ["normal", "emergency"]


# ---- readings -------------------------------------------------------------------------


def test_usage_dict_keys_and_units_process():
    m = MemoryManager(memory_limit="64G")
    u = m.get_memory_usage()
    assert set(u) == USAGE_KEYS
    assert u["source"] == "process"
    assert u["limit_origin"] == "explicit"
    assert u["limit_bytes"] == 64 << 30
    assert isinstance(u["current_bytes"], int) and u["current_bytes"] > MiB
    assert u["current_mb"] == u["current_bytes"] / 1048576
    assert u["peak_mb"] == u["peak_bytes"] / 1048576
    assert u["limit_mb"] == 65536.0
    assert u["usage_percent"] == pytest.approx(u["current_bytes"] * 100 / (64 << 30))


def test_usage_dict_keys_and_units_host():
    m = host_manager()
    m.update_host_reading(300 * MiB, 400 * MiB, 1000 * MiB)
    u = m.get_memory_usage()
    assert u == {
        "current_bytes": 300 * MiB,
        "peak_bytes": 400 * MiB,
        "limit_bytes": 1000 * MiB,
        "usage_percent": 30.0,
        "current_mb": 300.0,
        "peak_mb": 400.0,
        "limit_mb": 1000.0,
        "limit_origin": "host",
        "source": "host",
    }
    # peak defaults to current; a host limit of -1 means "none": the system limit applies.
    m.update_host_reading(10 * MiB, limit=-1)
    u = m.get_memory_usage()
    assert u["current_bytes"] == 10 * MiB
    assert u["limit_origin"] in ("cgroup_v2", "cgroup_v1", "physical")


def test_host_source_without_reading_is_not_found():
    m = host_manager()
    with pytest.raises(memwarden.NotFoundError, match="update_host_reading"):
        m.check()
    with pytest.raises(LookupError):
        m.get_memory_usage()


def test_update_host_reading_on_process_manager_is_invalid_argument():
    m = MemoryManager()
    with pytest.raises(InvalidArgumentError, match="source 'host'"):
        m.update_host_reading(1, 1, None)


def test_update_host_reading_bad_arguments():
    m = host_manager()
    with pytest.raises(InvalidArgumentError, match="'current'.*-5"):
        m.update_host_reading(-5)
    with pytest.raises(TypeError, match="'peak'"):
        m.update_host_reading(5, 5.5)
    with pytest.raises(TypeError, match="'current'"):
        m.update_host_reading("5")


# ---- states ---------------------------------------------------------------------------


def test_state_constants_are_plain_strings():
    assert MemoryManager.STATE_NORMAL == "normal"
    assert MemoryManager.STATE_WARNING == "warning"
    assert MemoryManager.STATE_CRITICAL == "critical"
    assert MemoryManager.STATE_EMERGENCY == "emergency"
    assert type(MemoryManager.STATE_CRITICAL) is str


def test_states_through_host_readings():
    m = host_manager(hysteresis=0.0)
    assert m.state == MemoryManager.STATE_NORMAL
    assert at(m, 10) == MemoryManager.STATE_NORMAL
    assert at(m, 75) == MemoryManager.STATE_WARNING
    assert at(m, 90) == MemoryManager.STATE_CRITICAL
    assert at(m, 96) == MemoryManager.STATE_EMERGENCY
    assert m.state == "emergency"
    # `state` does not sample: a new reading changes nothing until the next check.
    m.update_host_reading(100, 100, 1000)
    assert m.state == "emergency"
    assert m.get_memory_state() == "normal"
    assert m.state == "normal"


def test_hysteresis_wobble_around_75_percent_fires_one_callback():
    m = host_manager()  # hysteresis 0.02
    changes = []
    m.on_state_change(lambda old, new: changes.append((old, new)))
    for i in range(200):
        m.update_host_reading(749 if i % 2 == 0 else 751, 751, 1000)
        m.check()
    assert changes == [("normal", "warning")]
    assert at(m, 74) == "warning"  # within the margin: stays
    assert at(m, 72) == "normal"  # 2% below the threshold: leaves
    assert changes == [("normal", "warning"), ("warning", "normal")]


def test_on_state_change_gets_old_and_new_strings():
    from_config = []
    m = host_manager(hysteresis=0.0, on_state_change=lambda o, n: from_config.append((o, n)))
    decorated = []

    @m.on_state_change
    def record(old, new):
        assert type(old) is str and type(new) is str
        decorated.append((old, new))

    assert callable(record)  # the decorator returns the function
    at(m, 80)
    at(m, 80)  # no change, no call
    at(m, 99)
    at(m, 10)
    expected = [("normal", "warning"), ("warning", "emergency"), ("emergency", "normal")]
    assert from_config == expected
    assert decorated == expected
    assert m.get_detailed_stats()["state_changes"] == 3


def test_callback_raising_value_error_surfaces_and_state_is_updated():
    m = host_manager()
    later = []

    @m.on_state_change
    def boom(old, new):
        raise ValueError("boom")

    m.on_state_change(lambda o, n: later.append(n))
    m.update_host_reading(760, 760, 1000)
    with pytest.raises(ValueError, match="^boom$") as info:
        m.check()
    assert type(info.value) is ValueError  # the user's own exception, not a wrapper
    assert m.state == "warning"
    assert later == ["warning"]  # the other callback still ran
    assert m.check() == "warning"  # no change, no callback, nothing stale re-raised


def test_failing_cleanup_hook_raises_its_exception_and_is_reported():
    m = host_manager(host_gc=False)
    m.update_host_reading(1, 1, None)
    ran = []

    def bad(level):
        raise KeyError("no cache")

    m.register_cleanup_hook("bad", bad, priority=5)
    m.register_cleanup_hook("good", lambda: ran.append(1), priority=1)
    with pytest.raises(KeyError, match="no cache"):
        m.force_garbage_collection()
    assert ran == [1]
    last = m.get_detailed_stats()["last_cleanup"]
    assert [(h["name"], h["ok"]) for h in last["hooks"]] == [("bad", False), ("good", True)]
    assert "KeyError" in last["hooks"][0]["error"] and "no cache" in last["hooks"][0]["error"]


def test_automatic_cleanup_when_crossing_auto_gc_threshold():
    triggers = []
    m = host_manager(gc_callback=lambda report: triggers.append(report["trigger"]))
    at(m, 50)
    assert triggers == []
    at(m, 81)
    assert triggers == ["auto"]
    at(m, 85)
    assert triggers == ["auto"]  # gc_probability 0: only the crossing
    at(m, 97)
    assert triggers == ["auto", "emergency"]


def test_reentrant_state_change_callback_calls_the_manager():
    m = host_manager()
    seen = []

    @m.on_state_change
    def inspect_manager(old, new):
        usage = m.get_memory_usage()
        seen.append((old, new, usage["usage_percent"], m.state, m.get_detailed_stats()["state"]))

    at(m, 91)
    assert seen == [("normal", "critical", 91.0, "critical", "critical")]


def test_cleanup_hook_may_not_start_another_cleanup():
    m = host_manager(host_gc=False)
    m.update_host_reading(1, 1, None)
    m.register_cleanup_hook("again", lambda: m.force_garbage_collection())
    with pytest.raises(InvalidArgumentError, match="already in progress"):
        m.force_garbage_collection()


# ---- garbage collection ---------------------------------------------------------------


def test_force_garbage_collection_order_and_report():
    m = host_manager()
    m.update_host_reading(500, 500, 1000)
    order = []
    m.on_before_gc(lambda: order.append("before"))
    m.register_cleanup_hook("low", lambda level: order.append("low:" + level), priority=-5)
    m.register_cleanup_hook("high", lambda level: order.append("high:" + level), priority=10)
    m.register_cleanup_hook("mid", lambda: order.append("mid"))

    @m.on_after_gc
    def after(report):
        order.append(("after", [h["name"] for h in report["hooks"]]))

    assert m.cleanup_hooks() == [("high", 10), ("mid", 0), ("low", -5), ("python-gc", -1000)]
    report = m.force_garbage_collection()
    hook_names = ["before_gc#0", "high", "mid", "low", "python-gc"]
    assert order == ["before", "high:normal", "mid", "low:normal", ("after", hook_names)]
    assert set(report) == {
        "trigger",
        "level",
        "before_bytes",
        "after_bytes",
        "freed_bytes",
        "freed_mb",
        "duration_ms",
        "hooks",
        "malloc_trim",
    }
    assert report["trigger"] == "manual" and report["level"] == "normal"
    assert report["before_bytes"] == 500
    assert [h["name"] for h in report["hooks"]] == hook_names
    assert all(h["ok"] and h["error"] is None for h in report["hooks"])
    assert report["duration_ms"] >= 0

    order.clear()
    assert m.emergency_cleanup()["level"] == "emergency"
    assert "high:emergency" in order and "low:emergency" in order

    assert m.unregister_cleanup_hook("low") is True
    assert m.unregister_cleanup_hook("low") is False
    assert [n for n, _ in m.cleanup_hooks()] == ["high", "mid", "python-gc"]
    assert m.get_detailed_stats()["cleanup_runs"] == 2


def test_python_gc_hook_present_by_default_and_absent_with_host_gc_false():
    assert MemoryManager().cleanup_hooks() == [("python-gc", -1000)]
    assert MemoryManager(host_gc=False).cleanup_hooks() == []
    with pytest.raises(ConfigError, match="host_gc"):
        MemoryManager(host_gc="yes")


class _Node:
    pass


def _unreachable_cycle():
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_force_garbage_collection_runs_python_gc():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        # Control: without the python-gc hook the cycle survives a cleanup run.
        ref = _unreachable_cycle()
        MemoryManager(host_gc=False).force_garbage_collection()
        assert ref() is not None
        gc.collect()

        ref = _unreachable_cycle()
        report = MemoryManager().force_garbage_collection()
        assert ref() is None
        assert [h["name"] for h in report["hooks"]] == ["python-gc"]
    finally:
        if was_enabled:
            gc.enable()


def test_gc_callback_alias_and_arity():
    calls = []
    m = host_manager(gcCallback=lambda: calls.append("ts-style"), host_gc=False)
    m.update_host_reading(1, 1, None)
    m.force_garbage_collection()
    assert calls == ["ts-style"]

    m = host_manager(gc_callback=lambda report: calls.append(report["trigger"]))
    m.update_host_reading(1, 1, None)
    m.force_garbage_collection()
    assert calls == ["ts-style", "manual"]

    with pytest.raises(ConfigError, match="gc_callback.*gcCallback|gcCallback.*gc_callback"):
        MemoryManager(gc_callback=print, gcCallback=print)


def test_callbacks_must_be_callable_with_a_fitting_signature():
    m = host_manager()
    with pytest.raises(TypeError, match="'callback'.*callable.*int"):
        m.on_state_change(5)
    with pytest.raises(TypeError, match="'callback'"):
        m.register_cleanup_hook("x", lambda a, b: None)
    with pytest.raises(TypeError, match="'callback'"):
        m.on_after_gc("not callable")
    with pytest.raises(InvalidArgumentError, match="non-empty name"):
        m.register_cleanup_hook("", lambda: None)


# ---- limits ---------------------------------------------------------------------------


def test_set_memory_limit_512M_explicit_and_minus_one_clears():
    m = MemoryManager()
    system_limit, system_origin = m.get_memory_limit()
    assert system_origin in ("cgroup_v2", "cgroup_v1", "physical")

    m.set_memory_limit("512M")
    assert m.get_memory_limit() == (512 * MiB, "explicit")
    u = m.get_memory_usage()
    assert (u["limit_bytes"], u["limit_mb"], u["limit_origin"]) == (512 * MiB, 512.0, "explicit")
    assert "limit=512M (explicit)" in repr(m)

    m.set_memory_limit(-1)
    assert m.get_memory_limit() == (system_limit, system_origin)
    m.set_memory_limit(4096)
    assert m.get_memory_limit() == (4096, "explicit")
    m.set_memory_limit("-1")
    assert m.get_memory_limit()[1] == system_origin

    assert MemoryManager(memory_limit=1 << 30).get_memory_limit() == (1 << 30, "explicit")
    assert MemoryManager(memory_limit="1G").get_memory_limit() == (1 << 30, "explicit")


def test_set_memory_limit_bad_values_leave_the_limit():
    m = MemoryManager(memory_limit="256M")
    with pytest.raises(InvalidArgumentError, match="'12X'") as info:
        m.set_memory_limit("12X")
    assert isinstance(info.value, ValueError) and isinstance(info.value, MemwardenError)
    with pytest.raises(InvalidArgumentError, match="greater than zero"):
        m.set_memory_limit(0)
    with pytest.raises(InvalidArgumentError, match="-5"):
        m.set_memory_limit(-5)
    with pytest.raises(TypeError, match="'limit'.*float"):
        m.set_memory_limit(3.5)
    assert m.get_memory_limit() == (256 * MiB, "explicit")


def test_parse_size_and_format_size():
    assert memwarden.parse_size("512M") == 512 * MiB
    assert memwarden.parse_size("1g") == 1 << 30
    assert memwarden.parse_size("128K") == 128 * 1024
    assert memwarden.parse_size("1048576") == MiB
    assert memwarden.parse_size("-1") is None
    with pytest.raises(InvalidArgumentError, match="'12X'"):
        memwarden.parse_size("12X")
    assert memwarden.format_size(512 * MiB) == "512M"
    assert memwarden.format_size(1 << 30) == "1G"
    assert memwarden.format_size(1000) == "1000"


# ---- bad config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"warning_treshold": 0.5}, "unknown key 'warning_treshold'; did you mean 'warning_threshold'?"),
        ({"gc_calback": print}, "did you mean 'gc_callback'?"),
        ({"warning_threshold": "high"}, "invalid value for 'warning_threshold': expected a number in (0, 1], got 'high'"),
        ({"critical_threshold": 1.5}, "'critical_threshold'"),
        ({"gc_probability": -0.1}, "-0.1"),
        ({"enable_detailed_tracking": "yes"}, "'enable_detailed_tracking'"),
        ({"warning_threshold": 0.95, "critical_threshold": 0.9}, "must be ordered warning_threshold < critical_threshold"),
        ({"memory_limit": "12X"}, "invalid value for 'memory_limit'"),
        ({"memory_limit": "12X"}, "'12X'"),
        ({"memory_limit": 0}, "'memory_limit'"),
        ({"source": "heap"}, "'heap'"),
        ({"hysteresis": 0.7}, "'hysteresis'"),
        ({"random_seed": -1}, "'random_seed'"),
        ({"random_seed": {1, 2}}, "'random_seed': a Python set cannot be used"),
        ({"warning_threshold": float("nan")}, "'warning_threshold'"),
        ({"gc_callback": 42}, "'gc_callback': expected a callable, got int"),
        ({"on_state_change": "print"}, "'on_state_change': expected a callable, got str"),
    ],
)
def test_bad_config_raises_config_error_naming_key_and_value(config, needle):
    for make in (lambda: MemoryManager(config), lambda: MemoryManager(**config)):
        with pytest.raises(ConfigError) as info:
            make()
        assert needle in str(info.value)
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, MemwardenError)


def test_config_dict_and_kwargs_mix_and_conflict():
    m = MemoryManager({"warning_threshold": 0.5}, critical_threshold=0.6, source="host")
    m.update_host_reading(1, 1, None)
    thresholds = m.get_detailed_stats()["thresholds"]
    assert (thresholds["warning_threshold"], thresholds["critical_threshold"]) == (0.5, 0.6)
    with pytest.raises(ConfigError, match="'warning_threshold' is given both"):
        MemoryManager({"warning_threshold": 0.5}, warning_threshold=0.6)
    with pytest.raises(TypeError, match="'config'"):
        MemoryManager(["warning_threshold"])
    with pytest.raises(ConfigError, match="keys must be strings"):
        MemoryManager({1: 2})


def test_v8_heap_source_is_rejected_as_node_only():
    with pytest.raises(ConfigError, match="'v8-heap' is Node-only"):
        MemoryManager(source="v8-heap")


# ---- threads and the GIL --------------------------------------------------------------

# Thread A holds the manager's cleanup lock from inside a hook that waits for `go`.
# Thread C calls check() at 85%: crossing auto_gc_threshold makes check() wait for that
# lock. Only if check() waits with the GIL released can this main thread keep running and
# set `go`; otherwise the script hangs and the subprocess times out.
GIL_SCRIPT = textwrap.dedent(
    """
    import threading, time
    from memwarden import MemoryManager

    m = MemoryManager(source="host", hysteresis=0.0, gc_probability=0.0, host_gc=False)
    m.update_host_reading(100, 100, 1000)
    inside, go, first, triggers, result = threading.Event(), threading.Event(), [True], [], []

    def hook():
        if first[0]:
            first[0] = False
            inside.set()
            go.wait(30)

    m.register_cleanup_hook("block", hook)
    m.on_after_gc(lambda report: triggers.append(report["trigger"]))
    a = threading.Thread(target=m.force_garbage_collection)
    a.start()
    assert inside.wait(30)
    m.update_host_reading(850, 850, 1000)
    c = threading.Thread(target=lambda: result.append(m.check()))
    c.start()
    counted, deadline = 0, time.monotonic() + 0.5
    while time.monotonic() < deadline:
        counted += 1
    blocked = c.is_alive() and not result
    go.set()
    a.join(30)
    c.join(30)
    print(blocked, counted > 1000, result, triggers)
    """
)


def test_check_releases_the_gil_while_it_waits():
    out = subprocess.run(
        [sys.executable, "-c", GIL_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True True ['warning'] ['manual', 'auto']"


def test_check_in_four_threads_while_python_keeps_running():
    m = MemoryManager(memory_limit="64G")
    changes = []
    stop = threading.Event()
    counter = [0]

    def count():
        while not stop.is_set():
            counter[0] += 1

    def checks(results):
        for _ in range(2000):
            results.append(m.check())

    counting = threading.Thread(target=count)
    counting.start()
    results = [[] for _ in range(4)]
    workers = [threading.Thread(target=checks, args=(r,)) for r in results]
    # A callback registered from another thread than the one that created the manager.
    registrar = threading.Thread(target=lambda: m.on_state_change(lambda o, n: changes.append((o, n))))
    registrar.start()
    registrar.join()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    counting.join()
    assert all(r == ["normal"] * 2000 for r in results)
    assert counter[0] > 0
    assert m.get_detailed_stats()["checks"] == 8000
    # The callback registered on the other thread fires here.
    m.set_memory_limit(m.get_memory_usage()["current_bytes"] + 1)
    assert m.check() in ("critical", "emergency")
    assert changes and changes[0][0] == "normal"


# ---- the garbage collector sees the callbacks -----------------------------------------


def _manager_in_a_cycle():
    # The callbacks close over `m`; once this frame is gone the only references to the
    # manager are its own callbacks' (a cycle through Rust that only __traverse__ reveals).
    m = host_manager()
    m.on_state_change(lambda old, new: m.get_memory_usage())
    m.on_before_gc(lambda: m.state)
    m.on_after_gc(lambda report: m.state)
    m.register_cleanup_hook("self", lambda: m.cleanup_hooks())
    return weakref.ref(m)


def test_manager_in_a_cycle_through_its_callbacks_is_collected():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        ref = _manager_in_a_cycle()
        assert ref() is not None  # reference counting alone cannot free it
        gc.collect()
        assert ref() is None
    finally:
        if was_enabled:
            gc.enable()


def test_unregistered_hook_lets_its_callable_go():
    class Hook:
        def __call__(self):
            pass

    m = host_manager()
    hook = Hook()
    ref = weakref.ref(hook)
    m.register_cleanup_hook("h", hook)
    del hook
    gc.collect()
    assert ref() is not None  # the manager keeps it
    m.unregister_cleanup_hook("h")
    gc.collect()
    assert ref() is None


# ---- statistics, repr, exports --------------------------------------------------------


def test_detailed_stats_with_tracking():
    m = host_manager(enable_detailed_tracking=True)
    for i in range(10):
        m.update_host_reading(100 + i * MiB, None, 1 << 40)
        m.check()
    s = m.get_detailed_stats()
    assert s["checks"] == 10
    assert len(s["history"]) == 10
    assert s["limit"] == {"bytes": 1 << 40, "mb": float(1 << 20), "formatted": "1024G", "origin": "host"}
    assert s["cleanup_hooks"] == [{"name": "python-gc", "priority": -1000}]
    assert s["usage"]["current_bytes"] == 100 + 9 * MiB


def test_repr_names_source_state_and_limit():
    m = host_manager(memory_limit="512M")
    assert repr(m) == "<memwarden.MemoryManager source='host' state='normal' limit=512M (explicit)>"


def test_all_exports_exist_and_exceptions_follow_the_mapping():
    for name in memwarden.__all__:
        assert hasattr(memwarden, name), name
    assert memwarden.__version__ == "0.1.0"
    assert MemoryManager.__module__ == "memwarden"
    builtin_bases = {
        "InvalidArgumentError": ValueError,
        "ConfigError": ValueError,
        "AcquireTimeout": TimeoutError,
        "NotFoundError": LookupError,
        "MemwardenIOError": OSError,
        "ExhaustedError": None,
        "CircularDependencyError": None,
        "DatabaseError": None,
        "CallbackError": None,
        "ClosedError": None,
        "UnsupportedError": None,
    }
    assert issubclass(MemwardenError, Exception)
    for name, builtin in builtin_bases.items():
        cls = getattr(memwarden, name)
        assert cls.__module__ == "memwarden"
        assert issubclass(cls, MemwardenError), name
        if builtin is not None:
            assert issubclass(cls, builtin), name
