#!/usr/bin/env python3
"""Sum Nsight Compute's per-kernel durations by kernel name.

Usage: ncu --csv --metrics gpu__time_duration.sum ... > k.csv; python3 ncu_summary.py k.csv [steps]
Prints each kernel's count and total time (divided by `steps`, e.g. the decode steps profiled), the kernel
sum, and how many launches there were: next to a step's measured time it shows how much is kernels and how
much is the gaps between them.
"""
import csv
import sys
from collections import defaultdict


def main():
    path = sys.argv[1]
    steps = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    lines = [l for l in open(path, errors="replace") if l.startswith('"')]
    total, count, n = defaultdict(float), defaultdict(int), 0
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = row["Kernel Name"].split("(")[0][:60]
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "ns": 1e-3, "us": 1.0, "ms": 1e3}.get(row.get("Metric Unit"), 1.0)
        total[name] += float(row["Metric Value"].replace(",", "")) * scale
        count[name] += 1
        n += 1
    if not n:
        print("ncu_summary: no kernel durations in", path)
        return 1
    for name in sorted(total, key=total.get, reverse=True):
        print(f"{total[name] / steps:9.1f} us  {count[name] / steps:6.1f} x  {name}")
    print(f"{sum(total.values()) / steps:9.1f} us in {n / steps:.0f} kernels per step ({n} profiled, {steps:g} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
