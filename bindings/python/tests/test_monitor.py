"""memwarden.Monitor and memwarden.analyze: background sampling of real processes, the series,
the analysis, export files written here and by the ``memwarden`` CLI, and bad input.

The CLI binary is ``$MEMWARDEN_BIN`` or ``<target>/debug/memwarden`` (``$CARGO_TARGET_DIR`` or
the repository's ``target/``), built with cargo when missing.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

import memwarden
from memwarden import ConfigError, InvalidArgumentError, MemwardenIOError, Monitor, NotFoundError

REPO = pathlib.Path(__file__).resolve().parents[3]


def poll(pred, timeout=10.0, what="condition"):
    """Polls ``pred`` until it is true or ``timeout`` seconds have passed."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def cli():
    explicit = os.environ.get("MEMWARDEN_BIN")
    if explicit:
        return explicit
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "debug" / "memwarden"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--quiet", "-p", "memwarden-cli"], cwd=REPO, check=True)
    assert binary.exists(), f"{binary} was not built"
    return str(binary)


def test_context_manager_samples_in_the_background(tmp_path):
    live = tmp_path / "live.jsonl"
    with Monitor(pid=os.getpid(), interval=0.02, threshold=70, export=live) as m:
        assert m.running
        poll(lambda: len(m.samples()) >= 5, what="5 samples")
        # Appended while running: the file already holds samples.
        assert memwarden.analyze(live)["samples"] >= 1
    assert not m.running
    samples = m.samples()
    assert all(s["current_bytes"] > 0 and s["peak_bytes"] >= s["current_bytes"] for s in samples)
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert m.meta["target"] == f"pid {os.getpid()}"
    assert m.meta["threshold"] == 70
    a = m.analyze()
    assert a["samples"] == len(samples)
    assert a["peak_mb"] >= a["average_mb"] > 0
    assert a["efficiency_percent"] == pytest.approx(a["average_mb"] / a["peak_mb"] * 100)
    assert memwarden.analyze(live) == a
    copy = tmp_path / "copy.jsonl"
    m.export(str(copy))
    assert memwarden.analyze(copy) == a
    # sample_now adds to the series.
    s = m.sample_now()
    assert s["current_bytes"] > 0 and len(m.samples()) == len(samples) + 1


def test_a_growing_allocation_shows_up_and_the_leak_trend_is_reported():
    m = Monitor({"pid": os.getpid()}, interval=60)
    held = []
    for _ in range(8):
        held.append(bytearray(4 << 20))  # 4 MB more, written (zeroed), so resident
        for i in range(0, len(held[-1]), 4096):
            held[-1][i] = 1
        m.sample_now()
    a = m.analyze()
    cur = [s["current_bytes"] for s in m.samples()]
    assert cur[-1] - cur[0] >= 20 << 20, cur
    leak = a["leak"]
    assert leak is not None and leak["slope_mb_per_min"] > 0 and 0 <= leak["r2"] <= 1
    assert isinstance(leak["sentence"], str) and leak["sentence"]
    assert set(a) >= {"average_mb", "peak_mb", "efficiency_percent", "spikes", "leak", "duration_s", "min_mb"}
    del held


def test_a_process_that_exits_ends_the_sampler():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    m = Monitor(pid=child.pid, interval=0.01)
    m.start()
    poll(lambda: len(m.samples()) >= 1, what="a sample")
    child.stdin.close()
    child.wait()
    poll(lambda: not m.running, what="the sampler to notice the exit")
    assert f"process {child.pid} has exited" in m.ended
    m.stop()


def test_reads_an_export_written_by_the_cli(cli, tmp_path):
    f = tmp_path / "cli.jsonl"
    out = subprocess.run(
        [cli, "monitor", "--interval", "0.1", "--duration", "0.3", "--quiet", "--export", str(f)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    a = memwarden.analyze(f)
    cli_report = json.loads(
        subprocess.run([cli, "analyze", str(f), "--format", "json"], capture_output=True, text=True, check=True).stdout
    )
    assert a == cli_report["analysis"]
    # Ticks at 0, 0.1, 0.2 and 0.3 s (fewer only if the machine stalled a whole interval).
    assert 2 <= a["samples"] <= 4
    assert cli_report["meta"]["target"] == "system"


def test_a_file_cut_mid_line_keeps_every_whole_sample(tmp_path):
    with Monitor(interval=0.01) as m:
        poll(lambda: len(m.samples()) >= 3, what="3 samples")
    f = tmp_path / "run.jsonl"
    m.export(f)
    whole = f.read_bytes()
    f.write_bytes(whole[:-4])
    assert memwarden.analyze(f)["samples"] == len(m.samples()) - 1


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "is empty"),
        (b'{"memwarden_monitor": 2, "meta": {"tar', "is truncated"),
        (b'{"name": "something else"}\n', "is not a memwarden monitor export"),
        (b"\x89PNG\r\n\x1a\n", "is not a memwarden monitor export"),
        (b'{"memwarden_monitor": 7, "meta": {}}\n', "format 7"),
    ],
)
def test_bad_files_raise_naming_the_file(tmp_path, content, needle):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(content)
    with pytest.raises(InvalidArgumentError, match=needle) as e:
        memwarden.analyze(f)
    assert "bad.jsonl" in str(e.value)
    assert isinstance(e.value, ValueError)


def test_bad_input_raises_in_pythons_idiom(tmp_path):
    with pytest.raises(MemwardenIOError, match="cannot read") as e:
        memwarden.analyze(tmp_path / "absent.jsonl")
    assert isinstance(e.value, OSError)
    with pytest.raises(NotFoundError, match="no process with pid 999999999"):
        Monitor(pid=999999999)
    with pytest.raises(ConfigError, match="'interval'"):
        Monitor(interval=0)
    with pytest.raises(ConfigError, match="did you mean 'interval'"):
        Monitor(intervall=1)
    with pytest.raises(ConfigError, match="'export'"):
        Monitor(export=42)
    with pytest.raises(MemwardenIOError, match="cannot write export file"):
        Monitor(export="/nonexistent-dir/x.jsonl")
    m = Monitor(interval=0.05)
    m.start()
    with pytest.raises(InvalidArgumentError, match="already running"):
        m.start()
    m.stop()
    m.stop()  # a no-op
    with pytest.raises(MemwardenIOError, match="cannot write export file"):
        m.export("/nonexistent-dir/out.jsonl")
    with pytest.raises(TypeError):
        memwarden.analyze(42)
