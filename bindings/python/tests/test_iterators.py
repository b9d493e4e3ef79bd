"""StreamingIterator, LazyIterator and FilteredIterator: real behaviour through the binding."""

import threading

import pytest

import memwarden
from memwarden import ConfigError, FilteredIterator, LazyIterator, StreamingIterator, UnsupportedError


class Boom(Exception):
    pass


# ---- StreamingIterator ----------------------------------------------------------------


def test_chunk_sizes_from_a_list_and_a_dict_config():
    it = StreamingIterator(list(range(25)), {"chunk_size": 10})
    chunks = list(it)
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert [x for c in chunks for x in c] == list(range(25))
    s = it.stats
    assert (s["chunks"], s["items"], s["finished"]) == (3, 25, True)
    assert it.get_stats() == s


def test_generator_source_is_read_lazily():
    pulled = []

    def gen():
        for i in range(7):
            pulled.append(i)
            yield {"id": i}

    it = StreamingIterator(gen(), chunk_size=3)
    first = next(it)
    assert [r["id"] for r in first] == [0, 1, 2]
    assert pulled == [0, 1, 2], "only one chunk is pulled"
    assert [len(c) for c in it] == [3, 1]


class Flaky:
    """An iterator that raises on given positions and goes on afterwards."""

    def __init__(self, n, fail_at, exc=None):
        self.i = 0
        self.n = n
        self.fail_at = set(fail_at)
        self.exc = exc

    def __iter__(self):
        return self

    def __next__(self):
        if self.i in self.fail_at:
            self.fail_at.discard(self.i)
            raise self.exc or Boom(f"bad item {self.i}")
        if self.i >= self.n:
            raise StopIteration
        self.i += 1
        return self.i - 1


def test_error_handling_stop_reraises_the_original_exception():
    exc = Boom("source down")
    it = StreamingIterator(Flaky(10, [0], exc), chunk_size=4, error_handling="stop")
    with pytest.raises(Boom) as info:
        next(it)
    assert info.value is exc
    assert list(it) == [], "a stopped iterator ends"


def test_error_handling_continue_records_and_goes_on():
    it = StreamingIterator(Flaky(8, [4]), chunk_size=4)
    items = [x for c in it for x in c]
    assert items == list(range(8))
    s = it.stats
    assert s["error_count"] == 1 and "bad item 4" in s["errors"][0]["message"]
    assert s["skipped_chunks"] == 1


def test_error_handling_retry_asks_again_then_raises():
    it = StreamingIterator(Flaky(6, [0]), chunk_size=3, error_handling="retry", retry_attempts=2)
    assert [x for c in it for x in c] == list(range(6))
    assert it.stats["retries"] == 1

    class Always:
        def __iter__(self):
            return self

        def __next__(self):
            raise Boom("always")

    it = StreamingIterator(Always(), error_handling="retry", retry_attempts=2)
    with pytest.raises(Boom, match="always"):
        next(it)
    assert it.stats["retries"] == 2


def test_cache_chunks_and_rewind_do_not_read_the_source_again():
    reads = []

    def gen():
        for i in range(10):
            reads.append(i)
            yield i

    it = StreamingIterator(gen(), chunk_size=4, cache_chunks=True)
    first = list(it)
    it.rewind()
    again = list(it)
    assert first == again == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert reads == list(range(10)), "the cache answered"
    assert it.stats["replayed_chunks"] == 3

    it = StreamingIterator(iter(range(3)))
    list(it)
    with pytest.raises(UnsupportedError, match="cache_chunks"):
        it.rewind()


def test_manager_runs_when_over_memory_limit():
    calls = []
    manager = memwarden.MemoryManager(gc_callback=lambda: calls.append(1))
    blobs = (bytearray(256 * 1024) for _ in range(200))
    it = StreamingIterator(blobs, chunk_size=20, memory_limit=1024 * 1024, manager=manager)
    kept = [c for c in it]  # keep them alive so memory grows
    s = it.stats
    assert s["cleanup"] == "manager"
    assert s["cleanups"] >= 1 and calls
    assert s["chunk_size"] < 20 and s["chunk_size_reductions"] >= 1
    assert sum(len(c) for c in kept) == 200


def test_bad_config():
    with pytest.raises(ConfigError, match="chunk_size"):
        StreamingIterator([], chunk_size=0)
    with pytest.raises(ConfigError, match="did you mean 'chunk_size'"):
        StreamingIterator([], chunk_sise=10)
    with pytest.raises(ConfigError, match="error_handling"):
        StreamingIterator([], error_handling="ignore")
    with pytest.raises(ConfigError, match="manager"):
        StreamingIterator([], manager=object())
    with pytest.raises(TypeError, match="iterable"):
        StreamingIterator(42)
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        LazyIterator(lambda o, n: [], batch_sise=3)


# ---- LazyIterator -------------------------------------------------------------------------


def make_rows(n):
    return [{"id": i * 10, "name": f"row{i}"} for i in range(1, n + 1)]


def test_lazy_offset_loader_yields_items_and_batches():
    rows = make_rows(10)
    calls = []

    def loader(offset, limit):
        calls.append((offset, limit))
        return rows[offset : offset + limit]

    it = LazyIterator(loader, batch_size=4)
    assert list(it) == rows
    assert calls == [(0, 4), (4, 4), (8, 4), (12, 4)]
    assert it.stats["items"] == 10

    it.rewind()
    assert [len(b) for b in it.batches()] == [4, 4, 2]


def test_lazy_keyset_with_a_key_name_an_attribute_and_a_callable():
    rows = make_rows(7)

    def loader(after, limit):
        return [r for r in rows if after is None or r["id"] > after][:limit]

    assert list(LazyIterator(loader, mode="keyset", key="id", batch_size=3)) == rows

    class Obj:
        def __init__(self, id):
            self.id = id

    objs = [Obj(i) for i in range(5)]
    got = LazyIterator(lambda a, n: [o for o in objs if a is None or o.id > a][:n], mode="keyset", key="id", batch_size=2)
    assert [o.id for o in got] == list(range(5))

    # A callable key returning a non-int, non-str key (a tuple) gets the same object back.
    seen_keys = []

    def tloader(after, limit):
        seen_keys.append(after)
        return [r for r in rows if after is None or (r["name"], r["id"]) > after][:limit]

    got = list(LazyIterator(tloader, mode="keyset", key=lambda r: (r["name"], r["id"]), batch_size=3))
    assert sorted(got, key=lambda r: r["name"]) == got and len(got) == 7
    assert seen_keys[1] == (got[2]["name"], got[2]["id"])


def test_keyset_with_deletes_during_iteration_does_not_skip():
    table = make_rows(20)

    def keyset(after, limit):
        return [r for r in table if after is None or r["id"] > after][:limit]

    def offset(o, limit):
        return table[o : o + limit]

    def walk(it):
        seen = []
        for row in it:
            seen.append(row["id"])
            table.remove(row)  # processed rows are deleted, as a queue consumer does
        return seen

    assert walk(LazyIterator(keyset, mode="keyset", key="id", batch_size=5)) == [i * 10 for i in range(1, 21)]
    table[:] = make_rows(20)
    skipped = walk(LazyIterator(offset, batch_size=5))
    assert len(skipped) < 20, "OFFSET skips rows when the data changes; keyset does not"


def test_lazy_error_handling_and_key_config():
    exc = Boom("db down")

    def failing(offset, limit):
        if offset == 3:
            raise exc
        return list(range(offset, min(offset + limit, 9)))

    it = LazyIterator(failing, batch_size=3)
    assert list(it) == [0, 1, 2, 6, 7, 8]
    assert it.stats["skipped_chunks"] == 1

    it = LazyIterator(failing, batch_size=3, error_handling="stop")
    assert next(it) == 0
    with pytest.raises(Boom) as info:
        list(it)
    assert info.value is exc

    with pytest.raises(ConfigError, match="needs 'key'"):
        LazyIterator(failing, mode="keyset")
    with pytest.raises(ConfigError, match="mode='keyset'"):
        LazyIterator(failing, key="id")
    with pytest.raises(KeyError, match="'id'"):
        list(LazyIterator(lambda a, n: [{"x": 1}] if a is None else [], mode="keyset", key="id", error_handling="stop"))


def test_lazy_prefetch_runs_the_loader_on_another_thread_and_overlaps():
    rows = make_rows(30)
    threads = set()
    main = threading.get_ident()

    def loader(after, limit):
        threads.add(threading.get_ident())
        return [r for r in rows if after is None or r["id"] > after][:limit]

    it = LazyIterator(loader, mode="keyset", key="id", batch_size=4, prefetch=True)
    assert list(it) == rows
    s = it.stats
    assert s["prefetch_active"] is True
    assert s["prefetched"] >= 6
    assert threads and main not in threads

    exc = Boom("late")

    def bad(offset, limit):
        if offset >= 6:
            raise exc
        return list(range(offset, offset + limit))

    it = LazyIterator(bad, batch_size=3, prefetch=True, error_handling="stop")
    with pytest.raises(Boom) as info:
        list(it)
    assert info.value is exc


# ---- FilteredIterator ---------------------------------------------------------------------


def test_filters_with_early_exit_and_without():
    items = [{"status": "active" if i % 2 == 0 else "off", "score": i * 10} for i in range(10)]
    filters = [lambda it: it["status"] == "active", lambda it: it["score"] > 50]

    f = FilteredIterator(items, filters=filters, early_exit=True)
    assert [i["score"] for i in f] == [60, 80]
    s = f.stats
    assert (s["items_seen"], s["passed"], s["rejected"]) == (10, 2, 8)
    assert s["filters"] == [{"evaluated": 10, "rejected": 5}, {"evaluated": 5, "rejected": 3}]

    f = FilteredIterator(items, {"filters": filters, "early_exit": False})
    assert [i["score"] for i in f] == [60, 80]
    s = f.stats
    assert s["filters"] == [{"evaluated": 10, "rejected": 5}, {"evaluated": 10, "rejected": 6}]
    assert s["early_exit"] is False and s["source"]["items"] == 10


def test_filtered_over_a_streaming_iterator_and_filter_errors():
    stream = StreamingIterator(range(20), chunk_size=6)
    f = FilteredIterator(stream, filters=[lambda x: x % 5 == 0])
    assert list(f) == [0, 5, 10, 15]

    exc = Boom("filter broke")

    def bad(x):
        if x == 3:
            raise exc
        return True

    f = FilteredIterator(range(10), filters=[bad])
    assert [next(f), next(f), next(f)] == [0, 1, 2]
    with pytest.raises(Boom) as info:
        next(f)
    assert info.value is exc
    with pytest.raises(ConfigError, match=r"filters\[1\]"):
        FilteredIterator([], filters=[bad, 3])


# ---- the seed's snippets ------------------------------------------------------------------


def test_seed_snippets_iterators():
    data_source = ({"id": i, "status": "active", "score": i} for i in range(2500))
    processed = []
    iterator = StreamingIterator(data_source, {"chunk_size": 1000, "memory_limit": "128M", "auto_gc": True})
    for chunk in iterator:
        for item in chunk:
            processed.append(item["id"])
        del chunk
    assert len(processed) == 2500

    database = [{"id": i} for i in range(1234)]
    lazy_iterator = LazyIterator(lambda offset, limit: database[offset : offset + limit], {"batch_size": 500, "prefetch": True})
    assert sum(1 for _ in lazy_iterator) == 1234

    source_iterator = iter([{"status": "active", "score": 60}, {"status": "active", "score": 10}, {"status": "x", "score": 99}])
    filtered_iterator = FilteredIterator(
        source_iterator,
        {
            "filters": [lambda item: item["status"] == "active", lambda item: item["score"] > 50],
            "early_exit": True,
        },
    )
    assert list(filtered_iterator) == [{"status": "active", "score": 60}]

    config = {
        "chunk_size": 1000,
        "memory_limit": "128M",
        "auto_gc": True,
        "prefetch": False,
        "cache_chunks": False,
        "parallel_processing": False,
        "error_handling": "continue",
    }
    assert [len(c) for c in StreamingIterator(range(1500), config)] == [1000, 500]
