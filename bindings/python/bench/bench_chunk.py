"""memwarden's ChunkedDatabaseProcessor against plain DB-API walks, from one run.

    python bindings/python/bench/bench_chunk.py [--rows N] [--offset-rows N] [--repeat N] [--postgres]

A SQLite file table of --rows rows (default 1,000,000): id INTEGER PRIMARY KEY, name (~20
chars), score, active. Every scenario sums `score` over the whole table in Python:

  (a) tuples: memwarden process_query(row_format='tuple') vs sqlite3 cursor.fetchmany(1000);
  (b) dicts:  memwarden (default dict rows) vs sqlite3 with a dict row_factory;
  (c) memwarden vs a Laravel-style OFFSET walk (LIMIT 1000 OFFSET n), on a smaller table of
      --offset-rows rows (default 100,000) because the OFFSET walk is quadratic;
  (d) with --postgres: memwarden on the postgres URL vs a psycopg server-side (named) cursor
      with fetchmany(1000), on a table of --rows rows created and dropped by the run.

memwarden runs with the core's default (`prefetch: false`: the next chunk is read once the
callback is done, so the callback's own inserts ahead are seen) and with `prefetch: true`
(the worker thread reads the next chunk while Python handles this one). Each figure is the
minimum over --repeat runs; ratios are anchor time / memwarden time (above 1.0: memwarden faster).
"""

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid

import memwarden

CHUNK = 1000


def build_sqlite(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score INTEGER, active INTEGER)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        ((i, f"customer-name-{i:06d}", i % 1000, i & 1) for i in range(1, rows + 1)),
    )
    conn.commit()
    conn.close()


def best(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


# ---- memwarden -----------------------------------------------------------------------------


def mw_sum(target, row_format, prefetch, **extra):
    def run():
        total = 0

        if row_format == "tuple":

            def on_batch(rows):
                nonlocal total
                for r in rows:
                    total += r[2]
        else:

            def on_batch(rows):
                nonlocal total
                for r in rows:
                    total += r["score"]

        proc = memwarden.ChunkedDatabaseProcessor(
            target, chunk_size=CHUNK, row_format=row_format, prefetch=prefetch, **extra
        )
        proc.process_query("SELECT id, name, score, active FROM t", on_batch)
        return total

    return run


# ---- anchors ---------------------------------------------------------------------------------


def sqlite_fetchmany(path, dict_rows):
    def run():
        conn = sqlite3.connect(path)
        if dict_rows:
            conn.row_factory = lambda cur, row: {d[0]: v for d, v in zip(cur.description, row)}
        cur = conn.execute("SELECT id, name, score, active FROM t")
        total = 0
        key = "score" if dict_rows else 2
        while True:
            rows = cur.fetchmany(CHUNK)
            if not rows:
                break
            for r in rows:
                total += r[key]
        conn.close()
        return total

    return run


def sqlite_dict_factory_fast(path):
    """The usual fast dict factory: column names computed once per cursor."""

    def run():
        conn = sqlite3.connect(path)
        names_cache = {}

        def factory(cur, row):
            names = names_cache.get(id(cur.description))
            if names is None:
                names = names_cache[id(cur.description)] = [d[0] for d in cur.description]
            return dict(zip(names, row))

        conn.row_factory = factory
        cur = conn.execute("SELECT id, name, score, active FROM t")
        total = 0
        while True:
            rows = cur.fetchmany(CHUNK)
            if not rows:
                break
            for r in rows:
                total += r["score"]
        conn.close()
        return total

    return run


def sqlite_offset_walk(path):
    def run():
        conn = sqlite3.connect(path)
        total, offset = 0, 0
        while True:
            rows = conn.execute(
                f"SELECT id, name, score, active FROM t ORDER BY id LIMIT {CHUNK} OFFSET {offset}"
            ).fetchall()
            if not rows:
                break
            for r in rows:
                total += r[2]
            offset += CHUNK
        conn.close()
        return total

    return run


def pg_named_cursor(url, table):
    import psycopg

    def run():
        with psycopg.connect(url) as conn:
            with conn.cursor(name=f"mw_bench_{uuid.uuid4().hex[:8]}") as cur:
                cur.itersize = CHUNK
                cur.execute(f"SELECT id, name, score, active FROM {table}")
                total = 0
                while True:
                    rows = cur.fetchmany(CHUNK)
                    if not rows:
                        break
                    for r in rows:
                        total += r[2]
        return total

    return run


def row(label, anchor_name, t_anchor, results):
    for name, t in results:
        print(f"{label:<34} {name:<24} {t * 1e3:9.1f} ms   {anchor_name:<28} {t_anchor * 1e3:9.1f} ms   ratio {t_anchor / t:5.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--offset-rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgres", action="store_true")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="mw-bench-chunk-")
    big = os.path.join(tmp, "big.db")
    small = os.path.join(tmp, "small.db")
    t = time.perf_counter()
    build_sqlite(big, args.rows)
    build_sqlite(small, args.offset_rows)
    print(f"built SQLite tables of {args.rows:,} and {args.offset_rows:,} rows in {time.perf_counter() - t:.1f} s")
    print(f"Python {sys.version.split()[0]}, memwarden {memwarden.__version__}, chunk {CHUNK}, best of {args.repeat}\n")
    url = f"sqlite:///{big}"
    expected = sum(i % 1000 for i in range(1, args.rows + 1))

    def check(total):
        assert total == expected, (total, expected)

    # (a) tuples
    ta, total = best(sqlite_fetchmany(big, False), args.repeat)
    check(total)
    res = []
    for pf in (False, True):
        tm, total = best(mw_sum(url, "tuple", pf), args.repeat)
        check(total)
        res.append((f"tuples prefetch={pf}", tm))
    row(f"(a) {args.rows:,} rows, tuples", "sqlite3 fetchmany(1000)", ta, res)

    # (b) dicts
    tb, total = best(sqlite_fetchmany(big, True), args.repeat)
    check(total)
    tb2, total = best(sqlite_dict_factory_fast(big), args.repeat)
    check(total)
    res = []
    for pf in (False, True):
        tm, total = best(mw_sum(url, "dict", pf), args.repeat)
        check(total)
        res.append((f"dicts prefetch={pf}", tm))
    row(f"(b) {args.rows:,} rows, dicts", "sqlite3 dict row_factory", tb, res)
    row(f"(b) {args.rows:,} rows, dicts", "sqlite3 cached-names factory", tb2, res)

    # (c) OFFSET walk
    small_expected = sum(i % 1000 for i in range(1, args.offset_rows + 1))
    tc, total = best(sqlite_offset_walk(small), args.repeat)
    assert total == small_expected
    res = []
    for pf in (False, True):
        tm, total = best(mw_sum(f"sqlite:///{small}", "tuple", pf), args.repeat)
        assert total == small_expected
        res.append((f"tuples prefetch={pf}", tm))
    row(f"(c) {args.offset_rows:,} rows (smaller table)", "LIMIT 1000 OFFSET n walk", tc, res)

    # (d) PostgreSQL
    if args.postgres:
        import psycopg

        pg = os.environ.get("MEMWARDEN_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
        table = f"mw_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg) as conn:
            conn.execute(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, score INTEGER, active INTEGER)"
            )
            conn.execute(
                f"INSERT INTO {table} SELECT i, 'customer-name-' || lpad(i::text, 6, '0'), i % 1000, i & 1 "
                f"FROM generate_series(1, {args.rows}) i"
            )
            conn.execute(f"ANALYZE {table}")
        try:
            td, total = best(pg_named_cursor(pg, table), args.repeat)
            check(total)
            res = []
            for pagination, pf in (("keyset", False), ("keyset", True), ("cursor", False)):

                def run(pf=pf, pagination=pagination):
                    total = 0

                    def on_batch(rows):
                        nonlocal total
                        for r in rows:
                            total += r[2]

                    memwarden.ChunkedDatabaseProcessor(
                        pg, chunk_size=CHUNK, row_format="tuple", prefetch=pf, pagination=pagination
                    ).process_query(f"SELECT id, name, score, active FROM {table}", on_batch)
                    return total

                tm, total = best(run, args.repeat)
                check(total)
                res.append((f"tuples {pagination}" + (" prefetch" if pf else ""), tm))
            row(f"(d) {args.rows:,} rows, PostgreSQL", "psycopg named cursor", td, res)
        finally:
            with psycopg.connect(pg) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}")


if __name__ == "__main__":
    main()
