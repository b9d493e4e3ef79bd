"""memwarden's MemoryPool acquire+release round trip against other Python pools, from one run.

    python bindings/python/bench/bench_pool.py [--check] [--repeat N]

Anchors, each configured as a bounded pool of trivial objects (no hooks):
  - a hand-written pool: a deque of idle objects under a threading.Lock, with a Condition
    to wait on when max_size are out (the baseline; goal: memwarden <= 0.5x its time);
  - pondpond (``pond.Pond``), which validates on every borrow by design;
  - SQLAlchemy's ``QueuePool`` with a dummy DBAPI connection and reset_on_return=None.

Scenarios: one thread; two threads contended on max_size=2 (lock contention only: each
thread holds one object at a time); two threads sharing one object, max_size=1 (an acquire
waits whenever the GIL switched threads while the other one held the object; pond does not
bound its pool, so it is left out there).
Single-thread figures are the minimum over --repeat timeit repeats; threaded figures the
minimum wall time over --repeat runs divided by the round trips of both threads.

pondpond and SQLAlchemy are installed with pip into this interpreter when missing.
With --check the script exits 1 when memwarden's one-thread time is above 0.5x the
baseline's.
"""

import argparse
import importlib
import importlib.metadata
import subprocess
import sys
import threading
import time
import timeit
from collections import deque

GOAL = 0.5


def ensure(module, package):
    try:
        return importlib.import_module(module)
    except ImportError:
        print(f"(installing {package} for the benchmark)", file=sys.stderr)
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", package]
        )
        importlib.invalidate_caches()
        return importlib.import_module(module)


pond = ensure("pond", "pondpond")
sqlalchemy = ensure("sqlalchemy", "sqlalchemy")
import sqlalchemy.pool  # noqa: E402

import memwarden  # noqa: E402


class Thing:
    """The pooled object."""

    __slots__ = ("n",)

    def __init__(self):
        self.n = 0


class DequePool:
    """The baseline: a bounded pool in plain Python, the way one writes it by hand."""

    def __init__(self, factory, max_size):
        self._factory = factory
        self._max = max_size
        self._idle = deque()
        self._created = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    def acquire(self, timeout=30.0):
        with self._lock:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._created < self._max:
                    self._created += 1
                    break
                if not self._cond.wait(timeout):
                    raise TimeoutError("pool exhausted")
        return self._factory()

    def release(self, obj):
        with self._lock:
            self._idle.append(obj)
            self._cond.notify()


class DummyDBAPIConnection:
    """What SQLAlchemy's pool needs from a DBAPI connection."""

    def close(self):
        pass

    def rollback(self):
        pass

    def commit(self):
        pass

    def cursor(self):  # pragma: no cover - never called
        raise NotImplementedError


class ThingFactory(pond.PooledObjectFactory):
    def createInstance(self):
        return pond.PooledObject(Thing())

    def destroy(self, pooled_object):
        del pooled_object

    def reset(self, pooled_object, **kwargs):
        return pooled_object

    def validate(self, pooled_object):
        return True


def make_pools(max_size):
    """name -> (acquire, release); each pool prefilled with max_size objects."""
    pools = {}

    mw = memwarden.MemoryPool(factory=Thing, max_size=max_size, min_size=max_size, auto_cleanup=False)
    pools["memwarden MemoryPool"] = (mw.acquire, mw.release, mw)

    base = DequePool(Thing, max_size)
    held = [base.acquire() for _ in range(max_size)]
    for o in held:
        base.release(o)
    pools["hand-written deque+Lock pool"] = (base.acquire, base.release, base)

    if max_size > 1:
        p = pond.Pond(borrowed_timeout=3600, time_between_eviction_runs=-1)
        factory = ThingFactory(pooled_maxsize=max_size)
        p.register(factory)

        def pond_acquire(p=p, f=factory):
            return p.borrow(f)

        def pond_release(o, p=p, f=factory):
            p.recycle(o, f)

        pools["pondpond Pond"] = (pond_acquire, pond_release, p)

    qp = sqlalchemy.pool.QueuePool(
        DummyDBAPIConnection, pool_size=max_size, max_overflow=0, reset_on_return=None, timeout=30
    )
    conns = [qp.connect() for _ in range(max_size)]
    for c in conns:
        c.close()

    def sa_release(conn):
        conn.close()

    pools["SQLAlchemy QueuePool"] = (qp.connect, sa_release, qp)
    return pools


def one_thread_ns(acquire, release, repeat):
    timer = timeit.Timer("release(acquire())", globals={"acquire": acquire, "release": release})
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def two_threads_ns(acquire, release, repeat, n):
    def work(start):
        start.wait()
        for _ in range(n):
            release(acquire())

    best = float("inf")
    for _ in range(repeat):
        start = threading.Barrier(3)
        threads = [threading.Thread(target=work, args=(start,)) for _ in range(2)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return best / (2 * n) * 1e9


def table(title, results):
    mw = results["memwarden MemoryPool"]
    print(f"\n{title}")
    print(f"  {'pool':<32} {'ns/round trip':>14} {'x memwarden':>12}")
    for name, ns in results.items():
        print(f"  {name:<32} {ns:14.1f} {ns / mw:11.2f}x")
    return mw / results["hand-written deque+Lock pool"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="repeats (the minimum is kept)")
    parser.add_argument("--threaded-ops", type=int, default=50_000, help="round trips per thread")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if memwarden > {GOAL:g}x the baseline")
    args = parser.parse_args()

    print(
        f"memwarden {memwarden.__version__}, pondpond {importlib.metadata.version('pondpond')}, "
        f"SQLAlchemy {sqlalchemy.__version__}, Python {sys.version.split()[0]}"
    )
    print("acquire + release of one object; lower is better")

    pools = make_pools(2)
    single = {name: one_thread_ns(a, r, args.repeat) for name, (a, r, _) in pools.items()}
    ratio = table("one thread, max_size=2", single)

    n = args.threaded_ops
    two = {name: two_threads_ns(a, r, max(3, args.repeat // 2), n) for name, (a, r, _) in pools.items()}
    ratio2 = table(f"two threads x {n} round trips, max_size=2 (per round trip, wall time)", two)

    pools1 = make_pools(1)
    n1 = max(1000, n // 10)
    waiting = {name: two_threads_ns(a, r, max(3, args.repeat // 2), n1) for name, (a, r, _) in pools1.items()}
    ratio3 = table(f"two threads x {n1} round trips sharing one object, max_size=1 (pond: unbounded, left out)", waiting)

    print()
    for label, r in (("one thread", ratio), ("two threads, max_size=2", ratio2), ("two threads, max_size=1", ratio3)):
        verdict = "met" if r <= GOAL else "NOT met"
        print(f"  memwarden / baseline, {label + ':':<26} {r:5.2f}x  (goal <= {GOAL:g}x: {verdict})")
    if args.check and ratio > GOAL:
        sys.exit(1)


if __name__ == "__main__":
    main()
