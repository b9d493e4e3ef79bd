"""ChunkedDatabaseProcessor: SQLite (URL and sqlite3 connection), PostgreSQL and MariaDB (URL and
psycopg / pymysql connections), callbacks, retries, checkpoints, parallel chunks."""

import json
import os
import sqlite3
import urllib.parse
import uuid
import warnings

import pytest

from memwarden import ChunkedDatabaseProcessor, ConfigError, DatabaseError, InvalidArgumentError

N = 2500
REQUIRE = os.environ.get("MEMWARDEN_REQUIRE_SERVICES") == "1"
PG_URL = os.environ.get("MEMWARDEN_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
MY_URL = os.environ.get("MEMWARDEN_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


class Boom(Exception):
    pass


def unavailable(what, err):
    msg = f"{what} is not reachable: {err}"
    if REQUIRE:
        pytest.fail(msg + " (MEMWARDEN_REQUIRE_SERVICES=1)")
    pytest.skip(msg)


# ---- SQLite fixtures ---------------------------------------------------------------------


def fill(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, score INTEGER, active INTEGER)")
    conn.executemany(
        "INSERT INTO items VALUES (?, ?, ?, 1)", [(i, f"name-{i:05d}", i % 100) for i in range(1, N + 1)]
    )
    conn.commit()
    return conn


@pytest.fixture
def db_path(tmp_path):
    """A filled SQLite file that no connection of this process holds open: memwarden may read
    it by URL (Python's sqlite3 is another SQLite library, whose locks memwarden's does not see)."""
    path = tmp_path / "chunks.db"
    fill(path).close()
    return path


@pytest.fixture
def db(tmp_path):
    """A filled SQLite file and a sqlite3 connection on it, for the processor to run through."""
    path = tmp_path / "chunks.db"
    conn = fill(path)
    yield path, conn
    conn.close()


class Writer:
    """Runs SQL on a SQLite file from a child process, one statement at a time, committed.

    A callback that writes the file memwarden reads by URL must not use this process's sqlite3:
    that would put two SQLite libraries in one process, which do not see each other's locks.
    Another process is what a URL is for."""

    CHILD = (
        "import json, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
        "db.execute('PRAGMA synchronous=OFF')\n"
        "for line in sys.stdin:\n"
        "    db.execute(*json.loads(line))\n"
        "    print('ok', flush=True)\n"
    )

    def __init__(self, path):
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.CHILD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def execute(self, sql, params=()):
        self.proc.stdin.write(json.dumps([sql, list(params)]) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "ok\n", "the writer process failed"

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture(params=["url", "connection"])
def sqlite_target(request, tmp_path):
    """(connection argument for the processor, something with execute(sql, params) for the
    callback's writes, the file's path). By URL, the writes go through another process."""
    path = tmp_path / "chunks.db"
    conn = fill(path)
    if request.param == "url":
        conn.close()
        writer = Writer(path)
        yield f"sqlite:///{path}", writer, path
        writer.close()
    else:
        yield conn, conn, path
        conn.close()


def test_every_row_once_while_the_callback_updates_the_filtered_column(sqlite_target):
    target, writer, path = sqlite_target
    seen = []

    def on_row(row):
        seen.append(row["id"])
        writer.execute("UPDATE items SET active = 0 WHERE id = ?", (row["id"],))

    proc = ChunkedDatabaseProcessor(target, chunk_size=300)
    stats = proc.process("SELECT * FROM items WHERE active = 1", on_row)
    if target is writer:
        writer.commit()
    assert sorted(seen) == list(range(1, N + 1))
    assert len(seen) == len(set(seen))
    assert stats["processed"] == N and stats["key_column"] == "id" and stats["pagination"] == "keyset"
    assert proc.get_stats()["processed"] == N
    check = sqlite3.connect(path)
    assert check.execute("SELECT COUNT(*) FROM items WHERE active = 1").fetchone()[0] == 0
    check.close()


def test_process_query_batches_and_tuple_rows(sqlite_target):
    target, _, _ = sqlite_target
    sizes, ids = [], []

    def on_batch(rows):
        sizes.append(len(rows))
        assert all(type(r) is tuple and len(r) == 4 for r in rows)
        ids.extend(r[0] for r in rows)

    proc = ChunkedDatabaseProcessor(target, {"chunk_size": 1000, "row_format": "tuple"})
    stats = proc.process_query("SELECT id, name, score, active FROM items", on_batch, {"batch_size": 700})
    assert sizes == [700, 700, 700, 400]
    assert ids == list(range(1, N + 1))
    assert stats["chunks"] == 4

    rows = []
    ChunkedDatabaseProcessor(target, chunk_size=10).process_query(
        "SELECT * FROM items WHERE id <= 3", rows.extend, batch_size=2
    )
    assert rows == [{"id": i, "name": f"name-{i:05d}", "score": i % 100, "active": 1} for i in (1, 2, 3)]


def test_both_progress_callbacks_fire(sqlite_target):
    target, _, _ = sqlite_target
    pairs, dicts = [], []
    proc = ChunkedDatabaseProcessor(target, chunk_size=1000, progress_callback=lambda p, t: pairs.append((p, t)))
    proc.set_progress_callback(dicts.append)
    proc.process("SELECT * FROM items", lambda row: None)
    assert pairs == [(1000, N), (2000, N), (N, N)]
    assert [d["processed"] for d in dicts] == [1000, 2000, N]
    last = dicts[-1]
    for key in ("total", "memory_usage", "estimated_remaining", "rows_per_second", "percent"):
        assert key in last
    assert last["percent"] == 100.0 and last["memory_usage"] > 0


def test_retry_then_error_callback_continue_or_stop(sqlite_target):
    target, _, _ = sqlite_target
    attempts = {}

    def flaky(rows):
        first = rows[0]["id"]
        attempts[first] = attempts.get(first, 0) + 1
        if first == 501 and attempts[first] < 3:
            raise Boom("transient")

    proc = ChunkedDatabaseProcessor(target, chunk_size=500, retry_attempts=3, retry_delay=0)
    stats = proc.process_query("SELECT * FROM items", flaky)
    assert attempts[501] == 3 and stats["retries"] == 2 and stats["processed"] == N

    exc = Boom("permanent")
    calls = []

    def always(rows):
        if rows[0]["id"] == 1001:
            raise exc

    def on_error(error, chunk):
        calls.append((error, chunk))
        return True

    proc = ChunkedDatabaseProcessor(target, chunk_size=500, retry_attempts=1, retry_delay=0, error_callback=on_error)
    stats = proc.process_query("SELECT * FROM items", always)
    assert len(calls) == 1
    error, chunk = calls[0]
    assert error is exc
    assert (chunk["first_key"], chunk["last_key"], chunk["rows"], chunk["attempts"]) == (1001, 1500, 500, 2)
    assert stats["failed_chunks"] == 1 and stats["processed"] == N - 500
    assert stats["failures"][0]["error"].endswith("permanent")

    proc.set_error_callback(lambda error, chunk: False)
    with pytest.raises(Boom) as info:
        proc.process_query("SELECT * FROM items", always)
    assert info.value is exc


def test_callback_exception_is_reraised_as_the_same_object(sqlite_target):
    target, _, _ = sqlite_target
    exc = Boom("stop here")

    def on_row(row):
        if row["id"] == 42:
            raise exc

    proc = ChunkedDatabaseProcessor(target, retry_attempts=0)
    with pytest.raises(Boom) as info:
        proc.process("SELECT * FROM items", on_row)
    assert info.value is exc

    def bad_progress(p, t):
        raise exc

    with pytest.raises(Boom) as info:
        ChunkedDatabaseProcessor(target, progress_callback=bad_progress).process("SELECT * FROM items", lambda r: None)
    assert info.value is exc


def test_checkpoint_resumes_after_the_last_finished_chunk(sqlite_target, tmp_path):
    target, _, _ = sqlite_target
    checkpoint = str(tmp_path / "walk.checkpoint")
    seen = []

    def dies_on_third_chunk(rows):
        if rows[0]["id"] == 201:
            raise Boom("crash")
        seen.extend(r["id"] for r in rows)

    proc = ChunkedDatabaseProcessor(target, chunk_size=100, retry_attempts=0, checkpoint=checkpoint)
    with pytest.raises(Boom):
        proc.process_query("SELECT * FROM items", dies_on_third_chunk)
    assert seen == list(range(1, 201))

    rest = []
    stats = proc.process_query("SELECT * FROM items", lambda rows: rest.extend(r["id"] for r in rows))
    assert stats["resumed"] is True
    assert rest == list(range(201, N + 1)), "finished chunks are not repeated, nothing is lost"
    assert not os.path.exists(checkpoint), "a finished run removes its checkpoint"


def test_parallel_chunks_cover_each_id_once(db_path):
    path = db_path
    ids = []
    proc = ChunkedDatabaseProcessor(f"sqlite:///{path}", chunk_size=128, parallel_chunks=3)
    stats = proc.process_query("SELECT * FROM items", lambda rows: ids.extend(r["id"] for r in rows))
    assert sorted(ids) == list(range(1, N + 1))
    assert stats["workers"] == 3

    ids.clear()
    stats = ChunkedDatabaseProcessor(f"sqlite:///{path}", chunk_size=128).process_query(
        "SELECT * FROM items", lambda rows: ids.extend(r["id"] for r in rows), parallel=True
    )
    assert sorted(ids) == list(range(1, N + 1)) and stats["workers"] == 2


def test_connection_object_warns_that_it_runs_on_one_thread(db):
    _, conn = db
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = ChunkedDatabaseProcessor(conn, parallel_chunks=3).process_query("SELECT * FROM items", lambda r: None)
    assert stats["workers"] == 1
    assert any("host connection object serves one thread" in str(w.message) for w in caught)


def test_offset_pagination_warns(db_path):
    path = db_path
    with pytest.warns(UserWarning, match="keyset pagination"):
        ChunkedDatabaseProcessor(f"sqlite:///{path}", pagination="offset").process("SELECT * FROM items", lambda r: None)


def test_a_url_on_a_file_that_sqlite3_holds_open_is_refused(db):
    # Python's sqlite3 and memwarden are two SQLite libraries: their locks do not see each other.
    path, conn = db
    with pytest.raises(InvalidArgumentError) as info:
        ChunkedDatabaseProcessor(f"sqlite:///{path}")
    msg = str(info.value)
    for part in (str(path), "two SQLite libraries in one process", "DB-API connection", "allow_shared_sqlite_file"):
        assert part in msg
    # The way out it names: the sqlite3 connection itself.
    ids = []
    ChunkedDatabaseProcessor(conn).process_query("SELECT id FROM items", lambda rows: ids.extend(r["id"] for r in rows))
    assert ids == list(range(1, N + 1))


def test_a_file_that_sqlite3_opens_after_the_processor_is_refused_when_the_run_starts(db_path):
    proc = ChunkedDatabaseProcessor(f"sqlite:///{db_path}")
    conn = sqlite3.connect(db_path)
    with pytest.raises(InvalidArgumentError, match="two SQLite libraries"):
        proc.process("SELECT * FROM items", lambda row: None)
    conn.close()
    assert proc.process("SELECT * FROM items", lambda row: None)["processed"] == N


def test_allow_shared_sqlite_file_lets_a_reader_open_it_anyway(db):
    path, _ = db
    ids = []
    proc = ChunkedDatabaseProcessor(f"sqlite:///{path}", allow_shared_sqlite_file=True, chunk_size=1000)
    proc.process_query("SELECT id FROM items", lambda rows: ids.extend(r["id"] for r in rows))
    assert ids == list(range(1, N + 1))
    with pytest.raises(ConfigError, match="allow_shared_sqlite_file"):
        ChunkedDatabaseProcessor(f"sqlite:///{path}", allow_shared_sqlite_file="yes")


def test_bad_input():
    with pytest.raises(ConfigError, match="did you mean 'chunk_size'"):
        ChunkedDatabaseProcessor("sqlite://:memory:", chunk_sise=5)
    with pytest.raises(ConfigError, match="chunk_size"):
        ChunkedDatabaseProcessor("sqlite://:memory:", chunk_size=0)
    with pytest.raises(ConfigError, match="progress_callback"):
        ChunkedDatabaseProcessor("sqlite://:memory:", progress_callback=3)
    with pytest.raises(TypeError, match="DB-API connection"):
        ChunkedDatabaseProcessor(object())
    conn = sqlite3.connect(":memory:")
    with pytest.raises(DatabaseError, match="no such table") as info:
        ChunkedDatabaseProcessor(conn).process("SELECT * FROM missing", print)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


def test_a_percent_sign_in_the_query_survives_format_style(db):
    # sqlite3 uses qmark; the escaping is exercised for real by the PostgreSQL/MariaDB tests.
    _, conn = db
    rows = []
    ChunkedDatabaseProcessor(conn).process_query("SELECT * FROM items WHERE name LIKE 'name-0000%'", rows.extend)
    assert [r["id"] for r in rows] == list(range(1, 10))


# ---- PostgreSQL and MariaDB -------------------------------------------------------------------


def pg_connect():
    try:
        import psycopg
    except ImportError as e:
        unavailable("psycopg", e)
    try:
        return psycopg.connect(PG_URL, connect_timeout=5)
    except Exception as e:  # noqa: BLE001
        unavailable(f"PostgreSQL at {PG_URL}", e)


def my_connect():
    try:
        import pymysql
    except ImportError as e:
        unavailable("pymysql", e)
    u = urllib.parse.urlparse(MY_URL)
    try:
        return pymysql.connect(
            host=u.hostname,
            port=u.port or 3306,
            user=urllib.parse.unquote(u.username or "root"),
            password=urllib.parse.unquote(u.password or ""),
            database=u.path.lstrip("/"),
            connect_timeout=5,
        )
    except Exception as e:  # noqa: BLE001
        unavailable(f"MariaDB at {MY_URL}", e)


@pytest.fixture(params=["postgres-url", "postgres-psycopg", "mysql-url", "mysql-pymysql"])
def server_table(request):
    kind, how = request.param.split("-")
    conn = pg_connect() if kind == "postgres" else my_connect()
    table = f"mw_chunk_{uuid.uuid4().hex[:12]}"
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40), score INTEGER, active INTEGER)")
    cur.executemany(
        f"INSERT INTO {table} VALUES (%s, %s, %s, 1)", [(i, f"name-{i:05d}%", i % 100) for i in range(1, N + 1)]
    )
    conn.commit()
    target = (PG_URL if kind == "postgres" else MY_URL) if how == "url" else conn
    try:
        yield target, conn, table
    finally:
        conn.rollback()
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        conn.close()


def test_server_every_row_once_while_the_callback_updates(server_table):
    target, conn, table = server_table
    seen = []

    def on_batch(rows):
        cur = conn.cursor()
        for row in rows:
            seen.append(row["id"])
            cur.execute(f"UPDATE {table} SET active = 0 WHERE id = %s", (row["id"],))
        if target is not conn:
            conn.commit()

    proc = ChunkedDatabaseProcessor(target, chunk_size=400)
    stats = proc.process_query(f"SELECT * FROM {table} WHERE active = 1 AND name LIKE 'name-%'", on_batch)
    conn.commit()
    assert sorted(seen) == list(range(1, N + 1)) and len(seen) == N
    assert stats["processed"] == N and stats["key_column"] == "id"
    cur = conn.cursor()
    cur.execute(f"SELECT COUNT(*) FROM {table} WHERE active = 1")
    assert cur.fetchone()[0] == 0

    got = []
    ChunkedDatabaseProcessor(target, row_format="tuple").process(
        f"SELECT id, name FROM {table} WHERE id <= 2", got.append
    )
    assert got == [(1, "name-00001%"), (2, "name-00002%")]


# ---- the seed's snippets ---------------------------------------------------------------------


def test_seed_snippets_processor(db):
    path, connection = db
    printed = []
    processor = ChunkedDatabaseProcessor(
        connection,
        {
            "chunk_size": 1000,
            "memory_limit": "128M",
            "progress_callback": lambda processed, total: printed.append(f"Processed: {processed}/{total}"),
        },
    )

    updated = []

    def update_user_record(row):
        updated.append(row["id"])

    processor.process("SELECT * FROM items WHERE active = 1", lambda row: update_user_record(row))
    assert len(updated) == N and printed[-1] == f"Processed: {N}/{N}"
    # The URLs below open the file through memwarden's own SQLite: sqlite3's must be closed.
    connection.close()

    notified = []

    def send_notification(user):
        notified.append(user["id"])

    ChunkedDatabaseProcessor(f"sqlite:///{path}").process_query(
        "SELECT * FROM items WHERE score > 50",
        lambda batch: [send_notification(user) for user in batch],
        {"batch_size": 500, "parallel": True},
    )
    assert sorted(notified) == [i for i in range(1, N + 1) if i % 100 > 50]

    config = {
        "chunk_size": 1000,
        "memory_limit": "128M",
        "timeout": 300,
        "retry_attempts": 3,
        "parallel_chunks": 1,
        "progress_callback": None,
        "error_callback": None,
    }
    processor = ChunkedDatabaseProcessor(f"sqlite:///{path}", config)
    lines = []

    def on_progress(stats):
        percentage = (stats["processed"] / stats["total"]) * 100
        lines.append(f"Progress: {percentage}% ({stats['processed']}/{stats['total']})")
        lines.append(f"Memory: {stats['memory_usage']}MB")
        lines.append(f"ETA: {stats['estimated_remaining']} seconds")

    processor.set_progress_callback(on_progress)
    logged = []

    def on_error(error, chunk):
        logged.append(f"Error processing chunk {chunk}: {error}")
        return True

    processor.set_error_callback(on_error)

    def sometimes_fails(row):
        if row["id"] == 1500:
            raise Boom("bad row")

    stats = processor.process("SELECT * FROM items", sometimes_fails)
    assert lines[-3] == f"Progress: 100.0% ({N - 1000}/{N})" or lines[-3].startswith("Progress:")
    assert len(logged) == 1 and "bad row" in logged[0]
    assert stats["failed_chunks"] == 1 and stats["processed"] == N - 1000


# ---- the same-transaction mode (checkpoint_table) --------------------------------------------


class _OpenWhenUsed:
    """A sqlite3 connection opened on use and closed by commit(): memwarden refuses a SQLite file
    this process holds open through another SQLite library while it opens or runs on it."""

    def __init__(self, path):
        self.path, self.conn = path, None

    def cursor(self):
        if self.conn is None:
            self.conn = sqlite3.connect(self.path)
        return self.conn.cursor()

    def commit(self):
        if self.conn is not None:
            self.conn.commit()
            self.conn.close()
            self.conn = None

    def rollback(self):
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None

    close = commit


@pytest.fixture(
    params=["sqlite-url", "sqlite-connection", "postgres-url", "postgres-psycopg", "mysql-url", "mysql-pymysql"]
)
def tx_target(request, tmp_path):
    """(processor connection, a DB-API connection, input table, output table, placeholder)."""
    kind, how = request.param.split("-")
    if kind == "sqlite":
        path = tmp_path / "tx.db"
        conn = _OpenWhenUsed(path) if how == "url" else sqlite3.connect(path)
        url, mark = f"sqlite:///{path}", "?"
    else:
        conn = pg_connect() if kind == "postgres" else my_connect()
        url, mark = (PG_URL, "$") if kind == "postgres" else (MY_URL, "?")
    table, out = f"mw_tx_{uuid.uuid4().hex[:12]}", f"mw_txo_{uuid.uuid4().hex[:12]}"
    q = "?" if kind == "sqlite" else "%s"
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40))")
    cur.executemany(f"INSERT INTO {table} VALUES ({q}, {q})", [(i, f"name-{i}") for i in range(1, 1001)])
    # No key on the output: a write applied twice would show as two rows.
    cur.execute(f"CREATE TABLE {out} (id INTEGER NOT NULL, v INTEGER NOT NULL)")
    conn.commit()
    if how == "connection":
        url, mark = conn, q
    try:
        yield url, conn, table, out, mark
    finally:
        conn.rollback()
        cur = conn.cursor()
        for t in (table, out, f"{table}_ck"):
            cur.execute(f"DROP TABLE IF EXISTS {t}")
        conn.commit()
        conn.close()


def placeholders(mark, n):
    return ", ".join(f"${i}" for i in range(1, n + 1)) if mark == "$" else ", ".join([mark] * n)


def test_tx_mode_writes_commit_with_the_checkpoint_exactly_once(tx_target):
    target, conn, table, out, mark = tx_target
    own = target is conn
    insert = f"INSERT INTO {out} (id, v) VALUES ({placeholders(mark, 2)})"
    kept = []

    def write(rows, tx, fail_at=None):
        kept.append(tx)
        for row in rows:
            if own and row["id"] % 2 == 0:
                # With a DB-API connection the callback may just use it: it is the same
                # connection, inside the same transaction.
                conn.cursor().execute(insert, (row["id"], row["id"] * 2))
            else:
                tx.execute(insert, (row["id"], row["id"] * 2))
        if rows[0]["id"] == fail_at:
            raise Boom("dies after writing chunk 3")

    opts = dict(chunk_size=100, retry_attempts=0, checkpoint_table=f"{table}_ck")
    proc = ChunkedDatabaseProcessor(target, **opts)
    with pytest.raises(Boom):
        proc.process_query(f"SELECT * FROM {table}", lambda rows, tx: write(rows, tx, fail_at=201))

    def out_counts():
        conn.commit()
        cur = conn.cursor()
        cur.execute(f"SELECT id, COUNT(*), SUM(v) FROM {out} GROUP BY id ORDER BY id")
        got = [tuple(int(x) for x in r) for r in cur.fetchall()]
        conn.commit()
        return got

    assert out_counts() == [(i, 1, 2 * i) for i in range(1, 201)], "chunk 3's writes were rolled back"
    with pytest.raises(Exception, match="transaction has ended"):
        kept[-1].execute(insert, (0, 0))

    # The rerun resumes after the last committed chunk: every row written exactly once.
    seen = []
    stats = ChunkedDatabaseProcessor(target, **opts).process_query(
        f"SELECT * FROM {table}", lambda rows, tx: (seen.append(rows[0]["id"]), write(rows, tx))
    )
    assert stats["resumed"] is True and stats["processed"] == 1000
    assert seen[0] == 201
    assert out_counts() == [(i, 1, 2 * i) for i in range(1, 1001)]
    cur = conn.cursor()
    cur.execute(f"SELECT COUNT(*) FROM {table}_ck")
    assert cur.fetchone()[0] == 0, "a finished run deletes its checkpoint row"
    conn.commit()

    # process() hands (row, tx); tx.query reads inside the transaction.
    counts = []
    ChunkedDatabaseProcessor(target, **opts).process(
        f"SELECT * FROM {table} WHERE id <= 1",
        lambda row, tx: counts.append(tx.query(f"SELECT COUNT(*) AS n FROM {out}")[0]["n"]),
    )
    assert counts == [1000]
    assert kept[0].dialect in ("sqlite", "postgres", "mysql")


def test_tx_mode_bad_input(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ConfigError, match="'checkpoint_table' and 'checkpoint' exclude each other"):
        ChunkedDatabaseProcessor(url, checkpoint_table="ck", checkpoint=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="'parallel_chunks' must be 1, not 2"):
        ChunkedDatabaseProcessor(url, checkpoint_table="ck", parallel_chunks=2)
    with pytest.raises(ConfigError, match="needs keyset pagination"):
        ChunkedDatabaseProcessor(url, checkpoint_table="ck", pagination="offset")
    with pytest.raises(ConfigError, match="invalid value for 'checkpoint_table'"):
        ChunkedDatabaseProcessor(url, checkpoint_table="ck; DROP TABLE x")
    with pytest.raises(ConfigError, match="'checkpoint_table'"):
        ChunkedDatabaseProcessor(url, checkpoint_table=5)

    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()  # memwarden refuses a file this process holds open through another SQLite
    proc = ChunkedDatabaseProcessor(url, checkpoint_table="ck", retry_attempts=0)
    errors = []

    def bad(rows, tx):
        for args in [("INSERT INTO t VALUES (?)", "12"), ("INSERT INTO t VALUES (?)", {"a": 1}), ("SELECT 1", 5)]:
            with pytest.raises(TypeError, match="params must be a sequence") as e:
                tx.execute(*args)
            errors.append(e.value)
        with pytest.raises(DatabaseError, match="no_such_table"):
            tx.execute("INSERT INTO no_such_table VALUES (1)")

    proc.process_query("SELECT * FROM t", bad)
    assert len(errors) == 3
    with pytest.raises(Exception, match="'parallel' 2 cannot be used with checkpoint_table"):
        proc.process_query("SELECT * FROM t", lambda rows, tx: None, parallel=2)
