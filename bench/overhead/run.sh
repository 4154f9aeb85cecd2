#!/usr/bin/env bash
# bench/overhead/run.sh [BUILD_DIR]: the per-element overhead of mpmux with the journal and results
# on: 100,000 elements through the C++ API (Multiplexer<std::uint64_t>), an empty body that records
# a 16-byte result, 2 ranks (rank 0 journals, rank 1 works), against the target of 20 us
# (HyperQueue states about 100 us). Measured with the journal fdatasynced by group commit (the
# default) and with fsync off, taking turns, plus the fdatasyncs per second of the former.
# Environment: REPS (5), N_ELEMENTS (100000), MPMUX_BENCH_DIR (where the sessions are written;
# default a fresh directory under /tmp: point it at the file system whose cost you want).
# Ends with overhead_us_per_element=<median with fsync>, and rank 0's CPU time per element (the
# coordinator's cost per outcome: receive, check, journal, group commit) with outcomes batched
# (root_us_per_record=) and with one outcome per message, chunks of 1 (root_us_per_message=), which
# the scale model (bench/scale) reads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
reps=${REPS:-5}
n_elements=${N_ELEMENTS:-100000}
target_us=20
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d "${MPMUX_BENCH_DIR:-/tmp}/mpmux-overhead-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "per-element overhead, $n_elements elements, 2 ranks, $reps repetitions, sessions in $work" >&2
mpirun --oversubscribe -n 2 "$build/bench/overhead/bench_overhead" "$n_elements" "$reps" "$work/mux" >"$work/out.txt"

/usr/bin/python3 - "$work/out.txt" "$target_us" <<'EOF'
import os
import platform
import re
import statistics
import sys

path, target = sys.argv[1], float(sys.argv[2])
samples = {}
for line in open(path):
    m = re.match(r"fsync=(\d) us_per_element=([\d.]+) syncs=\d+ syncs_per_s=([\d.]+).* root_cpu_us=([\d.]+)", line)
    if m:
        mode = "fdatasync (group commit)" if m.group(1) == "1" else "fsync off"
        samples.setdefault((f"Multiplexer<T>, journal {mode}", "us/element"), []).append(float(m.group(2)))
        if m.group(1) == "1":
            samples.setdefault(("journal fdatasyncs, fsync on", "syncs/s"), []).append(float(m.group(3)))
            samples.setdefault(("rank 0 CPU, outcomes batched", "us/record"), []).append(float(m.group(4)))
    m = re.match(r"chunk1 us_per_element=([\d.]+) root_cpu_us=([\d.]+)", line)
    if m:
        samples.setdefault(("Multiplexer<T>, chunks of 1", "us/element"), []).append(float(m.group(1)))
        samples.setdefault(("rank 0 CPU, one outcome per message", "us/message"), []).append(float(m.group(2)))
if not samples:
    sys.exit(f"no samples in {path}")

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {os.cpu_count()} cores (nproc), {cpu}, {platform.system()} {platform.release()}")
print(f"{'contender':<50} {'unit':<11} {'median':>9} {'min':>9} {'max':>9} {'runs':>5} {'/ target 20 us':>15}")
for (name, unit), values in samples.items():
    med = statistics.median(values)
    ratio = f"{med / target:.3f}" if unit == "us/element" else "-"
    print(f"{name:<50} {unit:<11} {med:>9.3f} {min(values):>9.3f} {max(values):>9.3f} {len(values):>5} {ratio:>15}")
out = os.environ.get("MPMUX_BENCH_OUT")
if out:  # the samples for bench/run.sh
    with open(os.path.join(out, "overhead.samples.tsv"), "w") as f:
        for (name, unit), values in samples.items():
            f.writelines(f"per element, 2 ranks\t{name}\t{unit}\t{v}\n" for v in values)
on = statistics.median(samples[("Multiplexer<T>, journal fdatasync (group commit)", "us/element")])
print(f"overhead_us_per_element={on:.3f}")
print(f"root_us_per_record={statistics.median(samples[('rank 0 CPU, outcomes batched', 'us/record')]):.4f}")
print(f"root_us_per_message={statistics.median(samples[('rank 0 CPU, one outcome per message', 'us/message')]):.4f}")
EOF
