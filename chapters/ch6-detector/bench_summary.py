#!/usr/bin/env python3
"""Reads the criterion lines of output/bench.txt (stdin) and prints the cost
of one observation for each detector, and the ratios the page quotes, all
from the same run."""
import re
import sys

UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
OBSERVATIONS = 3600  # the bench feeds one hour at one row a second

medians, name = {}, None
for line in sys.stdin:
    line = line.strip()
    if line.startswith("time:"):
        low, mid, high = re.findall(r"([\d.]+)\s*(ns|µs|us|ms|s)\b", line)
        medians[name] = float(mid[0]) * UNITS[mid[1]]
    elif line and not line.startswith("thrpt:"):
        name = line
leakscope = medians["per observation/leakscope Detector::observe"] / OBSERVATIONS
seed = medians["per observation/seed MemoryLeakDetector::tick"] / (OBSERVATIONS - 1)
sample = medians["sampling/Observation::now"]
print(f"leakscope Detector::observe, per observation: {leakscope * 1e6:.2f} µs")
print(f"seed MemoryLeakDetector::tick, per observation: {seed * 1e6:.3f} µs")
print(f"Observation::now (taking one): {sample * 1e6:.1f} µs")
print(f"leakscope / seed: {leakscope / seed:.0f}×")
print(f"leakscope / Observation::now: {100 * leakscope / sample:.1f} %")
