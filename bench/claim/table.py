"""Prints the benchmark table of bench/claim/run.sh from KEY=VALUE samples on stdin.
Each input line: contender<TAB>unit<TAB>value (one line per repetition). Lower is better."""
import os
import platform
import statistics
import sys

rows = {}
for line in sys.stdin:
    name, unit, value = line.rstrip("\n").split("\t")
    rows.setdefault((name, unit), []).append(float(value))

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}")
print(f"{'contender':<44} {'unit':<12} {'median':>12} {'min':>12} {'max':>12} {'runs':>5}")
for (name, unit), values in rows.items():
    print(f"{name:<44} {unit:<12} {statistics.median(values):>12.4g} {min(values):>12.4g} "
          f"{max(values):>12.4g} {len(values):>5}")
