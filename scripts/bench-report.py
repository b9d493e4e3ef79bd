#!/usr/bin/env python3
"""Writes BENCHMARKS.md from the output of one `scripts/bench` run.

    scripts/bench-report.py LOG [STATUS] > BENCHMARKS.md

`scripts/bench` calls this itself at the end of a run. Every benchmark section of the log (a line
starting with "== ") becomes a row of the summary (its ratio lines and its goal, as the benchmark
printed them) and a section with the whole output, so that every figure in the report comes from
the same run. The machine is described from what this script reads at the end of that run.
"""
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile

RATIO = re.compile(r"(?<![\w.])\d+(?:\.\d+)?x\b")


def cmd(*argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "not found"


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- CPU: {model}, {os.cpu_count()} logical cores",
        f"- Memory: {mem}; kernel {platform.release()}",
        f"- Load average (1, 5, 15 min) when the run ended: {load}",
        f"- {cmd('rustc', '--version')}; Python {platform.python_version()}; Node {cmd('node', '--version')}; "
        f"{cmd('php', '--version')}",
    ]


NOISE = re.compile(r"^\s*(Compiling|Finished|Running|Downloaded|Downloading|Updating|Locking|Blocking)\b")


def scrub(text):
    """Build chatter goes; paths of this machine become placeholders."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = tempfile.gettempdir()
    text = text.replace(root, "<repo>").replace(tmp + "/", "$TMPDIR/")
    return "\n".join(l for l in text.splitlines() if not NOISE.match(l))


def sections(text):
    out, title, body = [], None, []
    for line in scrub(text).splitlines():
        if line.startswith("== "):
            if title is not None:
                out.append((title, body))
            title, body = line[3:].strip(), []
        elif title is not None:
            body.append(line.rstrip())
    if title is not None:
        out.append((title, body))
    return out


def trim(goal):
    """A goal quoted from inside parentheses, without the closing one."""
    goal = goal.strip()
    while goal.endswith(")") and goal.count(")") > goal.count("("):
        goal = goal[:-1].rstrip()
    return goal


def cell(s):
    return s.replace("|", "\\|").strip()


def main():
    log = sys.argv[1]
    status = sys.argv[2] if len(sys.argv) > 2 else "0"
    with open(log, errors="replace") as f:
        text = f.read()
    secs = sections(text)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    w = sys.stdout.write
    w("# memwarden benchmarks\n\n")
    w(f"Written by `scripts/bench` on {now} from one run: every figure below, memwarden's and its\n")
    w("anchor's, comes from that same run on the same machine. Ratios, not absolute times, are what\n")
    w("carry over between machines; these are shared 2-core machines, so expect ±15% between runs.\n\n")
    if status != "0":
        w(f"**This run did not finish (exit status {status}); the sections below are what it printed.**\n\n")
    w("## Machine\n\n")
    w("\n".join(machine()) + "\n\n")
    w("## Summary\n\n")
    w("| Benchmark | memwarden beside its anchor (as printed) | Goal |\n|---|---|---|\n")
    for title, body in secs:
        ratios = [cell(re.sub(r"\s{2,}", " ", l)) for l in body if RATIO.search(l) and "goal" not in l.lower()]
        ratios += [cell(re.sub(r"\s{2,}", " ", l)) for l in body if RATIO.search(l) and "goal" in l.lower()]
        goals = sorted({trim(m.group(0)) for l in body for m in re.finditer(r"goal.*$", l, re.I)})
        w(f"| {cell(title)} | {'<br>'.join(ratios) or 'see below'} | {'; '.join(cell(g) for g in goals) or '—'} |\n")
    w("\n## Full output\n")
    for title, body in secs:
        while body and not body[-1]:
            body.pop()
        w(f"\n### {title}\n\n```\n" + "\n".join(body) + "\n```\n")


if __name__ == "__main__":
    main()
