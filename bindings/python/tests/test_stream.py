"""memwarden.StreamProcessor: bytes once and in order, compression, backpressure, errors."""

import gzip
import hashlib
import io
import threading
import time

import pytest

import memwarden
from memwarden import StreamProcessor

DATA = bytes((i * 31) % 251 for i in range(200_000 + 77))


@pytest.fixture
def data_file(tmp_path):
    p = tmp_path / "in.bin"
    p.write_bytes(DATA)
    return p


def reassemble(chunks):
    """Joins (index, offset, bytes) in index order, checking each index and offset once."""
    out = bytearray()
    for i, (index, offset, data) in enumerate(sorted(chunks)):
        assert index == i
        assert offset == len(out)
        out += data
    return bytes(out)


@pytest.mark.parametrize("streams", [1, 3])
def test_process_file_every_byte_once_in_order(data_file, streams):
    sp = StreamProcessor(chunk_size="16K", concurrent_streams=streams, max_memory_usage="1M")
    seen = []
    lock = threading.Lock()

    def handler(chunk, info):
        assert isinstance(chunk, bytes) and len(chunk) == info["size"]
        with lock:
            seen.append((info["index"], info["offset"], chunk))

    summary = sp.process_file(data_file, handler)
    assert hashlib.sha256(reassemble(seen)).digest() == hashlib.sha256(DATA).digest()
    assert summary["final"] is True
    assert summary["chunks"] == len(seen) == -(-len(DATA) // 16384)
    assert summary["bytes"] == len(DATA)
    assert sp.stats()["tracker"]["activeResources"] == 0


def test_one_argument_handler_and_camel_case_keys(data_file):
    sp = StreamProcessor({"chunkSize": 50_000, "concurrentStreams": 1})
    parts = []
    sp.process_file(str(data_file), parts.append)
    assert b"".join(parts) == DATA
    assert (sp.chunk_size, sp.concurrent_streams, sp.compression_enabled) == (50_000, 1, False)


def test_process_file_object_and_iterables(data_file):
    sp = StreamProcessor(chunk_size=10_000, concurrent_streams=1)
    parts = []
    with open(data_file, "rb") as f:
        sp.process(f, parts.append)
    assert b"".join(parts) == DATA
    assert all(len(p) == 10_000 for p in parts[:-1])
    # an iterable of odd-sized pieces is re-cut into chunk_size chunks
    pieces = [DATA[i : i + 7777] for i in range(0, len(DATA), 7777)]
    parts.clear()
    summary = sp.process(iter(pieces), parts.append)
    assert b"".join(parts) == DATA and all(len(p) == 10_000 for p in parts[:-1])
    assert summary["chunks"] == len(parts)
    parts.clear()
    sp.process([bytearray(b"ab"), b"", b"cd"], parts.append)
    assert parts == [b"abcd"]
    parts.clear()
    sp.process(io.BytesIO(b""), parts.append)
    assert parts == []


def test_compression_round_trips(data_file):
    sp = StreamProcessor(chunk_size="32K", compression_enabled=True, concurrent_streams=2)
    seen = []
    lock = threading.Lock()

    def handler(chunk, info):
        assert chunk[:2] == b"\x1f\x8b"
        with lock:
            seen.append((info["index"], info["offset"], chunk))

    summary = sp.process_file(data_file, handler)
    seen.sort()
    gz = b"".join(c for _, _, c in seen)
    assert gzip.decompress(gz) == DATA
    assert summary["compressedBytes"] == len(gz)
    assert gzip.decompress(sp.compress(b"hello")) == b"hello"


def test_backpressure_with_a_slow_handler(data_file):
    # warning 0.5 of 160K = 80K = 5 chunks of 16K: the tracker bounds concurrency 8 to 5
    for streams, cap in [(8, 5), (2, 2)]:
        sp = StreamProcessor(
            chunk_size="16K",
            concurrent_streams=streams,
            max_memory_usage="160K",
            thresholds={"warning": 0.5, "critical": 0.9},
        )
        running = most = most_tracked = 0
        lock = threading.Lock()

        def handler(chunk):
            nonlocal running, most, most_tracked
            with lock:
                running += 1
                most = max(most, running)
                most_tracked = max(most_tracked, sp.stats()["tracker"]["totalAllocated"])
            time.sleep(0.005)  # a slow upload; releases the GIL like real I/O
            with lock:
                running -= 1

        summary = sp.process_file(data_file, handler)
        assert 2 <= most <= cap
        assert most_tracked <= cap * 16384 <= 160 * 1024
        assert summary["peakInFlight"] <= cap
        assert summary["pauses"] > 0
        assert sp.stats()["tracker"]["peakMemoryUsage"] <= 160 * 1024


@pytest.mark.parametrize("streams", [1, 4])
def test_handler_error_is_reraised_with_the_chunk(data_file, streams):
    sp = StreamProcessor(chunk_size=10_000, concurrent_streams=streams)
    calls = []
    failed_after = []

    def handler(chunk, info):
        calls.append(info["index"])
        if info["index"] == 3:
            failed_after.append(len(calls))
            raise ValueError("upload refused")

    with pytest.raises(ValueError, match="upload refused") as exc:
        sp.process_file(data_file, handler)
    assert exc.value.chunk == {"index": 3, "offset": 30_000, "size": 10_000}
    # The run stops handing out chunks once one failed: besides those already in flight (at
    # most streams - 1 others), none starts after it. (How many ran before it depends on the
    # threads' timing: under load the other workers can finish the file first.)
    assert len(calls) - failed_after[0] <= streams
    st = sp.stats()["tracker"]
    assert (st["activeResources"], st["totalAllocated"]) == (0, 0)
    # usable again
    assert sp.process_file(data_file, lambda c: None)["bytes"] == len(DATA)


def test_reader_errors_and_bad_sources(data_file):
    sp = StreamProcessor(chunk_size=100)

    def broken():
        yield b"x" * 150
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        sp.process(broken(), lambda c: None)
    with pytest.raises(TypeError, match="expected bytes"):
        sp.process(["text"], lambda c: None)
    with pytest.raises(TypeError, match="source"):
        sp.process(42, lambda c: None)
    with pytest.raises(TypeError, match="handler"):
        sp.process_file(data_file, "not callable")
    with pytest.raises(memwarden.MemwardenIOError, match="cannot open"):
        sp.process_file(data_file.parent / "missing.bin", lambda c: None)
    assert sp.stats()["tracker"]["activeResources"] == 0


def test_performance_events(data_file):
    got = []
    sp = StreamProcessor(chunk_size=100_000, concurrent_streams=1, performance_callback=got.append)
    also = []
    assert sp.on("performance", also.append) is not None
    sp.process_file(data_file, lambda c: None)
    assert len(got) == len(also) == 4  # 3 chunks + summary
    for i, e in enumerate(got[:3]):
        assert e["type"] == "performance" and e["final"] is False and e["index"] == i
        assert e["speed"] >= 0 and e["processingTime"] >= 0 and e["memoryUsage"] == 100_000
    assert got[3]["final"] is True and got[3]["bytes"] == len(DATA)
    assert [e["final"] for e in sp.poll_events() if e["type"] == "performance"] == [False] * 3 + [True]
    with pytest.raises(ValueError, match="'performance'"):
        sp.on("progress", print)

    def bad_listener(e):
        raise KeyError("listener broke")

    sp2 = StreamProcessor(chunk_size=100_000, performance_callback=bad_listener)
    with pytest.raises(KeyError, match="listener broke"):
        sp2.process_file(data_file, lambda c: None)


@pytest.mark.parametrize(
    "options, text",
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunkSize": -1}, "negative"),
        ({"concurrent_streams": 0}, "concurrent_streams"),
        ({"max_memory_usage": "-5M"}, "negative"),
        ({"chunk_sise": 1}, "did you mean 'chunk_size'"),
        ({"chunk_size": "2M", "max_memory_usage": "1M"}, "larger than maxMemoryUsage"),
        ({"thresholds": {"warning": 3}}, "warning"),
    ],
)
def test_bad_config(options, text):
    with pytest.raises(memwarden.ConfigError, match=text):
        StreamProcessor(**options)


def test_bad_performance_callback():
    with pytest.raises(TypeError, match="performance_callback"):
        StreamProcessor(performance_callback=3)


def test_memory_warning_and_critical_events_of_the_chunk_tracker(data_file):
    # 100_000 of 150_000 is 0.67: past warning (0.5), not critical (0.9). Each admission crosses
    # it, each release goes back below: 3 chunks and the end-of-input probe, 4 events.
    sp = StreamProcessor(chunk_size=100_000, concurrent_streams=1, max_memory_usage=150_000,
                         thresholds={"warning": 0.5, "critical": 0.9})
    warnings, snake, critical = [], [], []
    sp.on("memoryWarning", warnings.append)
    sp.on("memory_warning", snake.append)
    sp.on("memoryCritical", critical.append)
    sp.process_file(data_file, lambda c: None)
    assert len(warnings) == 4 and warnings == snake and critical == []
    for i, e in enumerate(warnings):
        assert e["type"] == "memoryWarning" and e["index"] == i
        assert e["usage"] == 100_000 and e["threshold"] == 0.5
    assert [e["type"] for e in sp.poll_events()].count("memoryWarning") == 4

    sp = StreamProcessor(chunk_size=100_000, concurrent_streams=1, max_memory_usage=150_000,
                         thresholds={"warning": 0.3, "critical": 0.6})
    warnings, critical, snake = [], [], []
    sp.on("memoryWarning", warnings.append)
    sp.on("memoryCritical", critical.append)
    sp.on("memory_critical", snake.append)
    sp.process_file(data_file, lambda c: None)
    assert warnings == [] and len(critical) == 4 and critical == snake
    assert all(e["threshold"] == 0.6 for e in critical)


def test_unknown_event_names_the_known_ones():
    sp = StreamProcessor()
    with pytest.raises(ValueError, match="unknown event 'progress'") as exc:
        sp.on("progress", print)
    assert isinstance(exc.value, memwarden.InvalidArgumentError)
    for name in ("'performance'", "'memoryWarning'", "'memory_warning'", "'memoryCritical'", "'memory_critical'"):
        assert name in str(exc.value)
    with pytest.raises(TypeError, match="callable"):
        sp.on("memoryWarning", 3)


def test_a_tracker_of_your_own_sees_the_chunks_and_gives_backpressure(data_file):
    tracker = memwarden.ResourceTracker(max_memory_usage=100_000,
                                        thresholds={"warning": 0.5, "critical": 0.9})
    warnings = []
    tracker.on("memoryWarning", warnings.append)
    buffer = tracker.track_resource(None, "buffer", size=40_000)
    sp = StreamProcessor(chunk_size=20_000, concurrent_streams=4, tracker=tracker)
    assert sp.tracker is tracker
    sp_warnings = []
    sp.on("memory_warning", sp_warnings.append)
    during = []

    def handler(chunk):
        during.append(tracker.get_memory_stats())
        time.sleep(0.002)

    summary = sp.process_file(data_file, handler)
    assert summary["chunks"] == 11 and summary["bytes"] == len(DATA)
    # The buffer's 40_000 and one chunk pass the tracker's warning level (50_000): one chunk at
    # a time, though concurrent_streams is 4.
    assert summary["peakInFlight"] == 1 and summary["pauses"] > 0
    for st in during:
        assert st["byType"] == {"buffer": 1, "chunk": 1}
        assert st["totalAllocated"] == 60_000 and st["activeResources"] == 2
    st = tracker.get_memory_stats()
    assert (st["totalAllocated"], st["activeResources"], st["peakMemoryUsage"]) == (40_000, 1, 60_000)
    assert st["totalTracked"] == 13  # the buffer, 11 chunks and the end-of-input probe
    assert tracker.leak_report()["chunk"] == {"live": 0, "released": 12, "collected_unreleased": 0, "cleaned_up": 0}
    # Every admission took the tracker over its warning level: its listeners and the processor's heard it.
    assert len(warnings) == len(sp_warnings) == 12
    assert all(e["usage"] == 60_000 for e in warnings)
    assert [e["index"] for e in sp_warnings] == list(range(12))
    assert sp.stats()["tracker"]["totalTracked"] == 13
    tracker.release_resource(buffer)

    # Without the buffer, the same warning level lets two chunks of 20_000 in at once.
    tracker = memwarden.ResourceTracker(max_memory_usage=100_000, thresholds={"warning": 0.5, "critical": 0.9})
    sp = StreamProcessor({"chunkSize": 20_000, "concurrentStreams": 4, "tracker": tracker})
    most = 0

    def slow(chunk):
        nonlocal most
        most = max(most, tracker.get_memory_stats()["totalAllocated"])
        time.sleep(0.003)

    summary = sp.process_file(data_file, slow)
    assert summary["peakInFlight"] <= 2 and most <= 50_000
    assert tracker.get_memory_stats()["peakMemoryUsage"] <= 50_000


def test_a_tracker_listener_error_is_reraised_after_the_run(data_file):
    tracker = memwarden.ResourceTracker(max_memory_usage=100_000, thresholds={"warning": 0.1, "critical": 0.9})

    calls = []

    def bad(e):
        calls.append(e["usage"])
        if len(calls) == 1:  # later ones would go to sys.unraisablehook, as the tracker's own do
            raise KeyError("tracker listener broke")

    tracker.on("memoryWarning", bad)
    sp = StreamProcessor(chunk_size=20_000, concurrent_streams=1, tracker=tracker)
    with pytest.raises(KeyError, match="tracker listener broke"):
        sp.process_file(data_file, lambda c: None)
    assert len(calls) == 12, "the run went on: 11 chunks and the end-of-input probe"
    assert tracker.get_memory_stats()["activeResources"] == 0


def test_bad_tracker_option():
    with pytest.raises(TypeError, match="'tracker' must be a memwarden.ResourceTracker, got dict"):
        StreamProcessor(tracker={"maxMemoryUsage": 10})
    with pytest.raises(TypeError, match="'tracker'"):
        StreamProcessor(tracker=StreamProcessor())
    tracker = memwarden.ResourceTracker(max_memory_usage=1000)
    with pytest.raises(memwarden.ConfigError, match="'max_memory_usage' is an option of the tracker"):
        StreamProcessor(tracker=tracker, max_memory_usage=10)
    with pytest.raises(memwarden.ConfigError, match="larger than maxMemoryUsage"):
        StreamProcessor(tracker=tracker, chunk_size=2000)
    assert StreamProcessor(tracker=None).tracker is None
