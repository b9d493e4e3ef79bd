"""The short version of scripts/stress's Python run: 4 threads on one MemoryPool and one
LazyContainer (the core calls release the GIL), every invariant checked on every operation
by scripts/stress_python.py, which exits non-zero on a violation."""

import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "scripts", "stress_python.py")


def test_threads_hammering_a_pool_and_a_container_keep_the_invariants():
    r = subprocess.run([sys.executable, SCRIPT, "5000", "4"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 threads x 5000" in r.stdout, r.stdout
