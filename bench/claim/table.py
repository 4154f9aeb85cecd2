"""Prints the console table of a bench's samples on stdin (bench/claim, exec, plugin, store).
Each input line: group<TAB>contender<TAB>unit<TAB>value, one line per repetition; bench/run.sh
reads the same lines from $MPMUX_BENCH_OUT/<question>.samples.tsv."""
import os
import platform
import statistics
import sys

rows = {}
for line in sys.stdin:
    group, name, unit, value = line.rstrip("\n").split("\t")
    rows.setdefault((group, name, unit), []).append(float(value))

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}")
print(f"{'group':<32} {'contender':<48} {'unit':<12} {'median':>12} {'min':>12} {'max':>12} {'runs':>5}")
for (group, name, unit), values in rows.items():
    print(f"{group:<32} {name:<48} {unit:<12} {statistics.median(values):>12.4g} {min(values):>12.4g} "
          f"{max(values):>12.4g} {len(values):>5}")
