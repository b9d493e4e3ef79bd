#!/usr/bin/env bash
# CPU used by `memwarden monitor --interval=0.1` over N seconds (default 60), next to psrecord
# at the same interval, both watching the same process in one run.
#
#   scripts/bench-monitor.sh [SECONDS]
#
# CPU is utime + stime of each monitor process (the kernel counters /proc/PID/stat shows),
# taken from wait4() when it exits, so nothing it used before exiting is missed.
# psrecord (PyPI) is installed into a temporary venv; without network it is skipped.
set -euo pipefail
N="${1:-60}"
cd "$(dirname "$0")/.."
cargo build --release -q -p memwarden-cli
BIN="$PWD/target/release/memwarden"
VENV="$(mktemp -d)"
trap 'rm -rf "$VENV"' EXIT
PSRECORD=""
if python3 -m venv "$VENV" >/dev/null 2>&1 && "$VENV/bin/pip" install -q psrecord >/dev/null 2>&1; then
    PSRECORD="$VENV/bin/psrecord"
else
    echo "psrecord could not be installed (no network?): measuring memwarden alone" >&2
fi
python3 - "$BIN" "$N" "$PSRECORD" <<'PY'
import os, subprocess, sys, time
bin_, n, psrecord = sys.argv[1], float(sys.argv[2]), sys.argv[3]
tick = os.sysconf("SC_CLK_TCK")
# The watched process: a sleeping python holding 50 MB.
target = subprocess.Popen([sys.executable, "-c", "b = b'x' * (50 << 20); import time; time.sleep(1e9)"])
time.sleep(0.5)
runs = {"memwarden": [bin_, "monitor", "--pid", str(target.pid), "--interval=0.1", f"--duration={n}", "--quiet"]}
if psrecord:
    runs["psrecord"] = [psrecord, str(target.pid), "--interval", "0.1", "--duration", str(n), "--log", os.devnull]
procs = {k: subprocess.Popen(v, stdout=subprocess.DEVNULL) for k, v in runs.items()}
cpu = {}
for name, p in procs.items():
    _, status, ru = os.wait4(p.pid, 0)
    cpu[name] = ru.ru_utime + ru.ru_stime
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed with status {status}")
target.kill()
print(f"over {n:g} s at --interval=0.1 (CPU = utime + stime):")
for name, c in cpu.items():
    print(f"  {name:10s} {c*1000:8.1f} ms CPU  = {c / n * 100:6.3f} % of one core")
if "psrecord" in cpu and cpu["memwarden"] > 0:
    print(f"  psrecord / memwarden = {cpu['psrecord'] / cpu['memwarden']:.1f}x")
PY
