"""memwarden's MemoryManager.check() against psutil's memory_info(), from one run.

    python bindings/python/bench/bench_manager.py [--check]

Both read this process's resident memory: psutil with one Process object created once,
memwarden with one manager (which also evaluates the state). Each figure is the minimum
over several timeit repeats. The goal is memwarden >= 10x faster; with --check the script
exits 1 when it is not.
"""

import argparse
import sys
import timeit

import psutil

import memwarden

GOAL = 10.0


def per_call_ns(fn, repeat):
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()  # enough calls for >= 0.2 s per repeat
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats (the minimum is kept)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if the ratio is below {GOAL:g}x")
    args = parser.parse_args()

    manager = memwarden.MemoryManager()
    process = psutil.Process()
    manager.check()
    process.memory_info()

    rows = [
        ("memwarden MemoryManager.check()", per_call_ns(manager.check, args.repeat)),
        ("psutil Process.memory_info()", per_call_ns(process.memory_info, args.repeat)),
        ("memwarden get_memory_usage() (dict)", per_call_ns(manager.get_memory_usage, args.repeat)),
    ]
    print(f"memwarden {memwarden.__version__}, psutil {psutil.__version__}, Python {sys.version.split()[0]}")
    for name, ns in rows:
        print(f"  {name:<38} {ns:10.1f} ns/call")
    ratio = rows[1][1] / rows[0][1]
    print(f"  ratio psutil / memwarden check():       {ratio:10.1f}x  (goal >= {GOAL:g}x: {'met' if ratio >= GOAL else 'NOT met'})")
    if args.check and ratio < GOAL:
        sys.exit(1)


if __name__ == "__main__":
    main()
