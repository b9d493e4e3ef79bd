#!/usr/bin/env python3
"""Reads criterion's estimates from one `cargo bench` run and prints memwarden beside its
anchors as ratios. Usage: bench-ratio.py TARGET_DIR GROUP MEMWARDEN_ID [ANCHOR_ID ...]"""
import json
import os
import sys

target, group, ours, *anchors = sys.argv[1:]


def mean_ns(bench_id):
    d = os.path.join(target, "criterion", group, bench_id, "new", "estimates.json")
    with open(d) as f:
        return json.load(f)["mean"]["point_estimate"]


def dirname(name):
    # criterion's folder names replace characters it will not put in a path
    return "".join("_" if c in '?"/\\*<>:|' else c for c in name)


m = mean_ns(dirname(ours))
print(f"{ours:<48} {m:10.1f} ns")
for a in anchors:
    t = mean_ns(dirname(a))
    print(f"{a:<48} {t:10.1f} ns   memwarden/anchor = {m / t:.2f}x")
