#!/usr/bin/env python3
"""Sum Nsight Compute's per-kernel durations by kernel name.

Usage: ncu --csv --metrics gpu__time_duration.sum ... > k.csv; python3 ncu_summary.py k.csv [steps] [--minus base.csv]
Prints each kernel's count and total time (divided by `steps`, e.g. the decode steps profiled), the kernel
sum, and how many launches there were: next to a step's measured time it shows how much is kernels and how
much is the gaps between them. --minus subtracts another run's kernels (the same prefill with fewer decode
steps: tests/gpu/decode_profile.sh), so only the steps remain.
"""
import csv
import sys
from collections import defaultdict

SCALE = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}  # to us


def load(path):
    lines = [l for l in open(path, errors="replace") if l.startswith('"')]
    total, count = defaultdict(float), defaultdict(int)
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = row["Kernel Name"].split("(")[0][:60]
        total[name] += float(row["Metric Value"].replace(",", "")) * SCALE.get(row.get("Metric Unit"), 1.0)
        count[name] += 1
    return total, count


def main():
    args = sys.argv[1:]
    base = None
    if "--minus" in args:
        i = args.index("--minus")
        base = args[i + 1]
        del args[i:i + 2]
    total, count = load(args[0])
    steps = float(args[1]) if len(args) > 1 else 1.0
    if base:
        bt, bc = load(base)
        for name in bt:
            total[name] -= bt[name]
            count[name] -= bc[name]
    n = sum(count.values())
    if n <= 0:
        print("ncu_summary: no kernel durations in", args[0])
        return 1
    for name in sorted(total, key=total.get, reverse=True):
        if count[name] > 0:
            print(f"{total[name] / steps:9.1f} us  {count[name] / steps:6.1f} x  {name}")
    print(f"{sum(total.values()) / steps:9.1f} us in {n / steps:.0f} kernels per step ({n} profiled, {steps:g} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
