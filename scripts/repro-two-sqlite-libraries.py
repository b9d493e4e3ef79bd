#!/usr/bin/env python3
"""Reproduces what two SQLite libraries in one process do to each other's writes.

memwarden reads a file by URL (sqlite:///path) through its bundled SQLite while the callback
writes the same file through Python's sqlite3 (the system's libsqlite3). POSIX locks belong to
the process, so neither library sees the other's: memwarden's counting connection (started by a
progress callback) takes sqlite3's live journal for a hot one and rolls it back. Run with the
Python binding installed (scripts/test python builds it into target/py-venv):

    target/py-venv/bin/python scripts/repro-two-sqlite-libraries.py 10 url    # guard off: losses
    target/py-venv/bin/python scripts/repro-two-sqlite-libraries.py 10 host   # sqlite3 conn: clean
    target/py-venv/bin/python scripts/repro-two-sqlite-libraries.py 1 guard   # default: refused

Seen on a 2-core machine: 'url' lost committed updates or failed with "sqlite: disk I/O error"
in 6 to 29 of 34 to 84 runs within 10 to 15 s; 'host' had 0 failures in 54 runs.
"""
import os
import sqlite3
import sys
import tempfile
import time

from memwarden import ChunkedDatabaseProcessor, InvalidArgumentError

ROWS = 1000
secs, mode = float(sys.argv[1]), sys.argv[2]
started, runs, failures = time.time(), 0, 0
while time.time() - started < secs:
    runs += 1
    path = os.path.join(tempfile.mkdtemp(), "t.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")  # speed only: the race is in the locks, not in fsync
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, active INTEGER, visits INTEGER)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO t VALUES (?, 1, 0)", [(i,) for i in range(1, ROWS + 1)])
    db.execute("COMMIT")
    try:
        if mode == "host":
            p = ChunkedDatabaseProcessor(db, chunk_size=100, progress_callback=lambda a, b: None)
        else:
            extra = {"allow_shared_sqlite_file": True} if mode == "url" else {}
            p = ChunkedDatabaseProcessor(f"sqlite:///{path}", chunk_size=100,
                                         progress_callback=lambda a, b: None, **extra)
        p.process("SELECT * FROM t WHERE active = 1",
                  lambda row: db.execute("UPDATE t SET active = 0, visits = visits + 1 WHERE id = ?", (row["id"],)))
        updated = db.execute("SELECT COUNT(*) FROM t WHERE visits = 1").fetchone()[0]
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        if updated != ROWS or integrity != "ok":
            failures += 1
            print(f"run {runs}: {ROWS - updated} committed updates lost, integrity_check: {integrity}")
    except InvalidArgumentError as e:
        print(f"run {runs}: refused: {e}")
        failures += 1
    except Exception as e:  # noqa: BLE001
        failures += 1
        print(f"run {runs}: {type(e).__name__}: {e}")
    db.close()
print(f"{mode}: {runs} runs, {failures} failed, {time.time() - started:.1f} s")
