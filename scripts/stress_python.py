"""Python threads hammering one MemoryPool and one LazyContainer (run by scripts/stress).

The binding releases the GIL inside its core calls (acquire waits, container resolution), so
the threads really contend in the core. Invariants, checked on every operation: an object is
never handed to two threads at once, at most max_size objects are out, the singleton is built
once and is always the same object, a transient is built once per get. Exits non-zero on a
violation; prints what it did.

    python scripts/stress_python.py [OPS_PER_THREAD] [THREADS]
"""

import sys
import threading
import time

import memwarden

OPS = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
THREADS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
MAX = 3


class Obj:
    def __init__(self, n):
        self.n = n
        self.busy = False


created = []
lock = threading.Lock()
out = [0]
failures = []


def factory():
    with lock:
        o = Obj(len(created))
        created.append(o)
    return o


pool = memwarden.MemoryPool(factory=factory, max_size=MAX, min_size=0, acquire_timeout=60)
container = memwarden.LazyContainer()
builds = {"db": 0, "req": 0}


def counted(name):
    def make(_c=None):
        with lock:
            builds[name] += 1
        return object()

    return make


container.singleton("db", counted("db"))
container.factory("req", counted("req"))
first = container.get("db")
req_gets = [0] * THREADS


def worker(t):
    try:
        for i in range(OPS):
            o = pool.acquire()
            with lock:
                if o.busy:
                    raise AssertionError(f"object {o.n} handed out twice")
                o.busy = True
                out[0] += 1
                if out[0] > MAX:
                    raise AssertionError(f"{out[0]} objects out, max_size is {MAX}")
            if container.get("db") is not first:
                raise AssertionError("a second singleton")
            if i % 3 == 0:
                container.get("req")
                req_gets[t] += 1
            with lock:
                o.busy = False
                out[0] -= 1
            pool.release(o)
    except BaseException as e:  # noqa: BLE001 - report any failure from the thread
        failures.append(f"thread {t}: {e!r}")


start = time.monotonic()
threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
for th in threads:
    th.start()
for th in threads:
    th.join()
elapsed = time.monotonic() - start
stats = pool.get_statistics()
if builds["db"] != 1:
    failures.append(f"singleton built {builds['db']} times")
if builds["req"] != sum(req_gets):
    failures.append(f"transient built {builds['req']} times for {sum(req_gets)} gets")
if stats["active"] != 0:
    failures.append(f"objects still out: {stats}")
if len(created) > MAX:
    failures.append(f"{len(created)} objects created, max_size is {MAX}")
print(
    f"python: {THREADS} threads x {OPS} acquire/get/release in {elapsed:.1f}s; "
    f"{len(created)} pooled objects, {stats['total_acquired']} acquires; singleton 1x, transient {builds['req']}x"
)
if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
