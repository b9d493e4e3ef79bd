"""memwarden.ResourceTracker: Streamflow's resource tracking (seed 004) with Python's own
collection counted as leaks. Nothing here asserts a duration; the timer test polls with a
deadline."""

import gc
import json
import logging
import subprocess
import sys
import threading
import time

import pytest

from memwarden import ClosedError, ConfigError, NotFoundError, ResourceTracker

DEADLINE = 20.0


class Chunk:
    """A weakly referenceable resource."""

    def __init__(self, n=0):
        self.data = bytearray(n)


KEPT = []


def kept(n=0):
    """A Chunk that stays alive for the whole run (a temporary would be collected at once)."""
    c = Chunk(n)
    KEPT.append(c)
    return c


def test_track_release_and_stats_with_streamflow_names():
    t = ResourceTracker(max_memory_usage=1000)
    a = t.track_resource(kept(), "chunk", {"size": 100, "type": "image"})
    b = t.track_resource(kept(), "chunk", size=50)
    c = t.track_resource(b"x" * 30, "buffer")  # size from the bytes
    assert (a, b, c) == (1, 2, 3)
    s = t.get_memory_stats()
    assert s["totalAllocated"] == 180 and s["activeResources"] == 3 and s["peakMemoryUsage"] == 180
    assert s["byType"] == {"chunk": 2, "buffer": 1}
    r = t.get_resource(a)
    assert r["type"] == "chunk" and r["size"] == 100 and r["metadata"] == {"size": 100, "type": "image"}
    assert abs(r["createdAt"] / 1000 - time.time()) < 3600
    released = t.release_resource(a)
    assert released["size"] == 100
    s = t.get_memory_stats()
    assert s["totalAllocated"] == 80 and s["activeResources"] == 2 and s["peakMemoryUsage"] == 180
    assert t.get_resource(a) is None
    assert t.leak_report()["chunk"] == {"live": 1, "released": 1, "collected_unreleased": 0, "cleaned_up": 0}


def test_size_of_buffers_and_bad_sizes():
    import array

    t = ResourceTracker()
    arr = array.array("d", [0.0] * 10)
    i = t.track_resource(arr, "array")
    assert t.get_resource(i)["size"] == 80
    view = memoryview(b"abcd")
    j = t.track_resource(view, "view")
    assert t.get_resource(j)["size"] == 4
    k = t.track_resource(object(), "opaque")
    assert t.get_resource(k)["size"] == 0
    with pytest.raises(ValueError, match="size"):
        t.track_resource(kept(), "x", size=-1)
    with pytest.raises(TypeError, match="size"):
        t.track_resource(kept(), "x", size="big")
    with pytest.raises(ValueError, match=r"metadata\['size'\]"):
        t.track_resource(kept(), "x", {"size": -5})
    assert t.get_memory_stats()["activeResources"] == 3


def test_collected_without_release_is_counted_as_leaked():
    t = ResourceTracker()
    obj = Chunk()
    alive = Chunk()
    i = t.track_resource(obj, "chunk", size=10)
    t.track_resource(alive, "chunk", size=5)
    del obj
    gc.collect()
    assert t.get_resource(i) is None
    s = t.get_memory_stats()
    assert s["activeResources"] == 1 and s["totalAllocated"] == 5
    assert t.leak_report()["chunk"] == {"live": 1, "released": 0, "collected_unreleased": 1, "cleaned_up": 0}
    # released first, collected later: a release, not a leak
    obj2 = Chunk()
    j = t.track_resource(obj2, "chunk", size=1)
    t.release_resource(j)
    del obj2
    gc.collect()
    assert t.leak_report()["chunk"]["collected_unreleased"] == 1
    assert t.leak_report()["chunk"]["released"] == 1


def test_objects_without_weak_references_are_tracked_until_released():
    t = ResourceTracker()
    data = b"y" * 64
    i = t.track_resource(data, "bytes")
    del data
    gc.collect()
    assert t.get_resource(i)["size"] == 64
    t.release_resource(i)
    assert t.get_memory_stats()["activeResources"] == 0


def test_double_release_is_an_error_and_changes_nothing():
    t = ResourceTracker()
    i = t.track_resource(kept(), "chunk", size=10)
    t.track_resource(kept(), "chunk", size=20)
    t.release_resource(i)
    before = t.get_memory_stats()
    with pytest.raises(NotFoundError, match=str(i)) as e:
        t.release_resource(i)
    assert isinstance(e.value, LookupError)
    with pytest.raises(NotFoundError):
        t.release_resource(999)
    assert t.get_memory_stats() == before


def test_metadata_that_is_not_json_is_a_type_error_naming_the_key():
    import datetime

    t = ResourceTracker()
    with pytest.raises(TypeError, match=r"metadata\[.when.\].*datetime"):
        t.track_resource(kept(), "chunk", {"ok": 1, "when": datetime.datetime.now()})
    with pytest.raises(TypeError, match=r"metadata\[.tags.\]\[1\]"):
        t.track_resource(kept(), "chunk", {"tags": ["a", {1, 2}]})
    with pytest.raises(TypeError, match="keys"):
        t.track_resource(kept(), "chunk", {1: "x"})
    with pytest.raises(TypeError, match="finite"):
        t.track_resource(kept(), "chunk", {"ratio": float("nan")})
    with pytest.raises(TypeError, match="metadata"):
        t.track_resource(kept(), "chunk", ["not", "a", "dict"])
    s = t.get_memory_stats()
    assert s["activeResources"] == 0 and s["totalTracked"] == 0


def test_events_fire_once_per_crossing_with_both_spellings():
    t = ResourceTracker(maxMemoryUsage=1000, thresholds={"warning": 0.7, "critical": 0.9})
    warnings, criticals = [], []
    t.on("memoryWarning", warnings.append)
    t.on("memory_critical", criticals.append)
    ids = [t.track_resource(kept(), "chunk", size=100) for _ in range(6)]
    assert warnings == [] and criticals == []
    ids.append(t.track_resource(kept(), "chunk", size=100))  # 700: warning
    assert len(warnings) == 1 and warnings[0]["usage"] == 700 and warnings[0]["threshold"] == 0.7
    assert warnings[0]["type"] == "memoryWarning"
    ids.append(t.track_resource(kept(), "chunk", size=100))  # 800: still warning, no new event
    ids.append(t.track_resource(kept(), "chunk", size=100))  # 900: critical
    assert len(warnings) == 1 and len(criticals) == 1 and criticals[0]["usage"] == 900
    for i in ids[-4:]:
        t.release_resource(i)  # down to 500: below warning by more than the hysteresis
    ids2 = [t.track_resource(kept(), "chunk", size=100) for _ in range(2)]  # 700 again
    assert len(warnings) == 2
    assert t.get_memory_stats()["level"] == "warning"
    with pytest.raises(ValueError, match="memoryWarning"):
        t.on("memory_warn", print)
    del ids2


def test_a_listener_that_raises_is_re_raised_after_the_update():
    t = ResourceTracker(max_memory_usage=100)
    t.on("memoryCritical", lambda e: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        t.track_resource(kept(), "chunk", size=95)
    assert t.get_memory_stats()["totalAllocated"] == 95 and t.get_memory_stats()["level"] == "critical"


def test_cleanup_runs_hooks_and_releases_oldest():
    calls = []
    t = ResourceTracker(
        max_memory_usage=1000,
        enable_auto_cleanup=True,
        cleanup_interval=0,
        gc_callback=lambda: calls.append("gc_callback"),
    )
    t.on_before_gc(lambda: calls.append("before"))
    cleanups = []
    t.on("cleanup", cleanups.append)
    objs = [Chunk() for _ in range(9)]
    ids = [t.track_resource(o, "chunk", size=100) for o in objs]
    r = t.cleanup()
    assert r == {"released_ids": ids[:3], "freed_bytes": 300}
    assert calls == ["before", "gc_callback"]
    assert cleanups and cleanups[0]["detail"]["released_ids"] == ids[:3]
    assert t.leak_report()["chunk"]["cleaned_up"] == 3
    # the cleaned-up resources' finalizers are detached: their collection is not a leak
    del objs[:3]
    gc.collect()
    assert t.leak_report()["chunk"]["collected_unreleased"] == 0
    # without enable_auto_cleanup, cleanup releases nothing
    t2 = ResourceTracker(max_memory_usage=100, gcCallback=lambda: calls.append("t2"))
    t2.track_resource(kept(), "x", size=100)
    assert t2.cleanup()["released_ids"] == [] and calls[-1] == "t2"


def test_timer_cleans_up_on_its_own_thread():
    threads = []
    t = ResourceTracker(max_memory_usage=1000, cleanup_interval=10, enable_auto_cleanup=True)
    t.on("cleanup", lambda e: threads.append(threading.current_thread() is threading.main_thread()))
    objs = [Chunk() for _ in range(9)]
    for o in objs:
        t.track_resource(o, "chunk", size=100)
    end = time.monotonic() + DEADLINE
    # The event is delivered after the cleanup changed the figures (outside the tracker's
    # lock): wait for both, or the main thread can see 600 before the listener ran.
    while (t.get_memory_stats()["totalAllocated"] != 600 or not threads) and time.monotonic() < end:
        time.sleep(0.005)
    assert t.get_memory_stats()["totalAllocated"] == 600
    assert threads and threads[0] is False
    t.dispose()


def test_dispose_and_context_manager():
    with ResourceTracker() as t:
        keep = Chunk()
        t.track_resource(keep, "chunk", size=10)
    with pytest.raises(ClosedError):
        t.track_resource(kept(), "chunk")
    assert t.dispose()["chunk"]["live"] == 1  # the report of what was never released
    del keep
    gc.collect()  # its finalizer was detached: nothing runs against the disposed tracker


def test_debug_switches_tracking_and_logs(caplog):
    t = ResourceTracker()
    assert t.debug() == {"tracking_enabled": True, "verbose": False}
    assert t.debug(trackingEnabled=False) == {"tracking_enabled": False, "verbose": False}
    assert t.track_resource(kept(), "chunk", size=5) == 0
    t.release_resource(0)
    assert t.get_memory_stats()["activeResources"] == 0
    t.debug(tracking_enabled=True, verbose=True)
    with caplog.at_level(logging.INFO, logger="memwarden.tracker"):
        i = t.track_resource(kept(), "chunk", size=5)
        t.release_resource(i)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"tracked chunk #{i}" in text and f"released #{i}" in text
    with pytest.raises(TypeError, match="verbos"):
        t.debug(verbos=True)


def test_resource_tracking_options():
    t = ResourceTracker(resource_tracking={"enabled": True, "detailed": True, "metadata": False})
    i = t.track_resource(kept(), "chunk", {"secret": "x"}, size=3)
    assert t.get_resource(i)["metadata"] == {}
    assert t.get_memory_stats()["bytesByType"] == {"chunk": 3}
    t = ResourceTracker({"resourceTracking": {"enabled": False}})
    assert t.track_resource(kept(), "chunk") == 0


@pytest.mark.parametrize(
    "config,match",
    [
        ({"max_memory_usage": 0}, "max_memory_usage"),
        ({"thresholds": {"warning": 0.9, "critical": 0.5}}, "warning"),
        ({"thresholds": {"warning": 1.5}}, "warning"),
        ({"max_memory_usge": 10}, "did you mean 'max_memory_usage'"),
        ({"maxMemoryUsage": 10, "max_memory_usage": 10}, "same option"),
        ({"gc_callback": 3}, "gc_callback"),
        ({"report_at_exit": "yes"}, "report_at_exit"),
    ],
)
def test_bad_config_names_the_key(config, match):
    with pytest.raises(ConfigError, match=match):
        ResourceTracker(config)


def test_leak_report_at_exit():
    code = (
        "import memwarden\n"
        "class C: pass\n"
        "t = memwarden.ResourceTracker(report_at_exit=True)\n"
        "keep = C()\n"
        "t.track_resource(keep, 'chunk', size=7)\n"
        "t.track_resource(C(), 'chunk', size=1)\n"
        "quiet = memwarden.ResourceTracker()\n"
        "quiet.track_resource(keep, 'other', size=1)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "leak report at exit" in line]
    assert len(lines) == 1, out.stderr
    report = json.loads(lines[0].split("at exit: ", 1)[1])
    assert report["activeResources"] == 1 and report["totalAllocated"] == 7
    assert report["leaks"]["chunk"] == {"live": 1, "released": 0, "collected_unreleased": 1, "cleaned_up": 0}


def test_a_tracker_with_a_timer_lets_the_interpreter_exit():
    code = (
        "import memwarden\n"
        "t = memwarden.ResourceTracker(cleanup_interval=5, enable_auto_cleanup=True)\n"
        "t.on_before_gc(lambda: None)\n"
        "t.track_resource(b'x', 'chunk')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
