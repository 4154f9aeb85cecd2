"""Writes docs/benchmarks.md from what bench/run.sh collected, then prints every figure.

  write_benchmarks.py --logs DIR --out DIR --build DIR --targets FILE --md FILE --reps N [--quick]

--logs holds, per question (a bench/<question>/ folder), <question>.log (its stdout),
<question>.err (its stderr), <question>.rc (its exit status) and <question>.seconds.
--out is the folder every run.sh got as $MPMUX_BENCH_OUT: <question>.samples.tsv (the samples:
group<TAB>contender<TAB>unit<TAB>value, one line per repetition; a contender whose name ends in
"(floor)" or "(baseline)" is its group's reference, the floor first), <question>.md (a markdown
fragment placed under the question's heading) and any other file (an SVG, say), copied next to
the markdown file so that the fragment's plain file names still resolve.
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import time

FIGURE = re.compile(r"^([a-z][a-z0-9_]*)=(\S+)$")
COMPARE = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b}


def run(cmd, **kw):
    """A command's stdout, or '' when it cannot run (a machine without Open MPI, say)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def number(x):
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:,.0f}"


def load_targets(path):
    targets = {}
    for line in read(path).splitlines():
        if line.strip() and not line.startswith("#"):
            name, op, value, source = line.split("\t")
            targets[name] = (op, float(value), source)
    return targets


def judge(value, target):
    """'met', '**missed**', 'not measured' (a nan), or '' without a target."""
    if target is None:
        return ""
    try:
        v = float(value)
    except ValueError:
        return ""
    if v != v:  # nan: the bench could not measure it
        return "not measured"
    return "met" if COMPARE[target[0]](v, target[1]) else "**missed**"


def first_touch_ms_per_mib(mib=64):
    """What writing fresh memory costs, page faults included, against writing it again: on a
    virtual machine the first touch can cost far more than the write, and every bench that
    allocates large buffers (a run's open) pays it."""
    n = mib << 20
    t0 = time.perf_counter()
    buf = bytearray(n)  # calloc: pages are mapped on first write
    buf[::4096] = b"\1" * (n // 4096)
    t1 = time.perf_counter()
    buf[::4096] = b"\2" * (n // 4096)
    t2 = time.perf_counter()
    return (t1 - t0) * 1e3 / mib, (t2 - t1) * 1e3 / mib


def machine(build, load_start):
    cpu = next((l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines()
                if l.startswith("model name")), "unknown")
    mem_kb = next((int(l.split()[1]) for l in read("/proc/meminfo").splitlines() if l.startswith("MemTotal")), 0)
    ompi = run(["ompi_info", "--version"]).splitlines()
    components = sorted(set(re.findall(r"MCA osc: (\w+)", run(["ompi_info"]))))
    selection = re.search(r'parameter "osc" \(current value: "([^"]*)", data source: ([^,]*)',
                          run(["ompi_info", "--param", "osc", "all", "--level", "9"]))
    rows = [("nproc", os.cpu_count()), ("CPU", cpu), ("memory", f"{mem_kb / 2**20:.1f} GiB"),
            ("kernel", f"{platform.system()} {platform.release()}"),
            ("load average (1, 5, 15 min) at the start and at the end",
             f"{load_start or '?'}; {' '.join(read('/proc/loadavg').split()[:3])}"),
            ("first write of fresh memory (page faults) / a write again, per MiB",
             "%.2f ms / %.3f ms" % first_touch_ms_per_mib()),
            ("MPI", ompi[0] if ompi else "ompi_info not found"),
            ("osc components built", ", ".join(components) or "?"),
            ("osc selection (MCA parameter osc)",
             f'"{selection.group(1)}" ({selection.group(2)})' if selection else "not set")]
    # The components serving each path, as the windows name themselves (bench_claim's paths).
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    probe = run(["mpirun", "--oversubscribe", "-n", "2", os.path.join(build, "bench/claim/bench_claim"),
                 "--claims", "200", "--reps", "1"], env=env)
    paths = dict(re.findall(r"^([a-z_]+)_path=(.*)$", probe, re.M))
    for key, what in (("claimer", "node-shared claim path"), ("bare_shared", "its floor (bare loop)"),
                      ("claimer_remote", "remote claim path (MPMUX_RMA_NO_SHARED=1)"),
                      ("bare_remote", "its floor (bare loop)")):
        rows.append((f"osc in use: {what}", paths.get(key, "not measured (bench_claim did not run)")))
    return rows


def samples_tables(path):
    """Markdown tables of one question's samples, one per group, or [] without samples."""
    groups = {}
    for line in read(path).splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        group, contender, unit, value = parts
        try:
            groups.setdefault(group, {}).setdefault((contender, unit), []).append(float(value))
        except ValueError:
            continue
    out = []
    for group, rows in groups.items():
        medians = {k: statistics.median(v) for k, v in rows.items()}
        refs = {}
        for marker in ("(floor)", "(baseline)"):
            for (contender, unit), m in medians.items():
                if contender.endswith(marker) and unit not in refs and m:
                    refs[unit] = (contender, m)
        out.append(f"**{cell(group)}**\n")
        out.append("| contender | unit | median | min | max | runs | ratio to reference |")
        out.append("|---|---|---:|---:|---:|---:|---:|")
        for (contender, unit), values in rows.items():
            ref = refs.get(unit)
            ratio = f"{medians[contender, unit] / ref[1]:.3g}" if ref else "-"
            out.append(f"| {cell(contender)} | {unit} | {number(medians[contender, unit])} | {number(min(values))} | "
                       f"{number(max(values))} | {len(values)} | {ratio} |")
        out.append("")
    return out


def target_text(target):
    return f"{target[0]} {number(target[1])}; {target[2]}" if target else ""


def figures_of(log):
    return [m.groups() for m in map(FIGURE.match, log.splitlines()) if m]


def include_fragment(question, out_dir):
    fragment = read(os.path.join(out_dir, f"{question}.md"))
    return [fragment.rstrip(), ""] if fragment.strip() else []


def copy_files(out_dir, md_dir):
    """Every file a bench left besides its fragment and samples, next to the markdown file."""
    copied = []
    for name in sorted(os.listdir(out_dir)):
        src = os.path.join(out_dir, name)
        if os.path.isfile(src) and not name.endswith((".md", ".samples.tsv")):
            shutil.copyfile(src, os.path.join(md_dir, name))
            copied.append(name)
    return copied


def main():
    ap = argparse.ArgumentParser()
    for opt in ("--logs", "--out", "--build", "--targets", "--md", "--reps", "--questions"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    targets = load_targets(a.targets)
    questions = a.questions.split()
    commit = run(["git", "-C", os.path.dirname(a.md), "rev-parse", "--short=12", "HEAD"]).strip() or "unknown"
    dirty = run(["git", "-C", os.path.dirname(a.md), "status", "--porcelain", "--untracked-files=no"]).strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    results = {}
    for q in questions:
        rc = read(os.path.join(a.logs, f"{q}.rc"), "not run").strip()
        seconds = read(os.path.join(a.logs, f"{q}.seconds"), "0").strip()
        log = read(os.path.join(a.logs, f"{q}.log"))
        results[q] = dict(rc=rc, seconds=int(seconds or 0), log=log, figures=figures_of(log),
                          err=read(os.path.join(a.logs, f"{q}.err")))

    md = ["# Benchmarks", ""]
    if a.quick:
        md += ["> **Quick run** (`bench/run.sh --quick`: one repetition, small sizes, on a machine shared with "
               "other builds and tests). It shows that every bench runs and what it reports, not what mpmux "
               "achieves: regenerate with `bench/run.sh BUILD_DIR` (REPS=5) on a quiet machine.", ""]
    total = sum(r["seconds"] for r in results.values())
    md += [f"Generated by `bench/run.sh` on {now} at commit `{commit}`{' (with uncommitted changes)' if dirty else ''}; "
           f"REPS={a.reps}; {len(questions)} questions in {total} s. Each question is one `bench/<question>/run.sh`; "
           "its tables give, per contender, the median, min and max over the repetitions and the ratio of its median "
           "to its group's reference (the floor, else the baseline, marked in the name; for rates, above 1 is "
           "faster, for times below 1). Its figures are the `name=value` lines it printed, with the target of "
           "DESIGN.md section 7 or of the issue that set it.", ""]
    md += ["## Machine", "", "| | |", "|---|---|"]
    md += [f"| {k} | {cell(v)} |" for k, v in machine(a.build, read(os.path.join(a.logs, 'loadavg.start')).strip())]
    md += ["", "## Every figure", "", "| figure | value | target | met | question |", "|---|---:|---|---|---|"]
    for q in questions:
        for name, value in results[q]["figures"]:
            t = targets.get(name)
            md.append(f"| `{name}` | {value} | {target_text(t)} | {judge(value, t)} | {q} |")
    md.append("")
    for q in questions:
        r = results[q]
        md += [f"## {q}", ""]
        status = "ran" if r["rc"] == "0" else f"**failed** (exit {r['rc']})"
        md += [f"`bench/{q}/run.sh`: {status} in {r['seconds']} s.", ""]
        if r["rc"] != "0":
            tail = "\n".join(r["err"].rstrip().splitlines()[-12:])
            md += ["```", tail or "(no stderr)", "```", ""]
        tables = samples_tables(os.path.join(a.out, f"{q}.samples.tsv"))
        if tables:
            md += tables
        elif r["log"].strip():  # a bench without samples: what it printed, its figures aside
            text = "\n".join(l for l in r["log"].splitlines() if not FIGURE.match(l)).strip()
            if text:
                md += ["```", text, "```", ""]
        # What a bench says it skipped ("bench/exec: Slurm job array skipped: ..."); a failure shows its tail above.
        notes = [l for l in r["err"].splitlines() if l.startswith(f"bench/{q}:")] if r["rc"] == "0" else []
        md += [f"> {cell(n)}" for n in notes] + ([""] if notes else [])
        if r["figures"]:
            md += ["| figure | value | target | met |", "|---|---:|---|---|"]
            for name, value in r["figures"]:
                t = targets.get(name)
                md.append(f"| `{name}` | {value} | {target_text(t)} | {judge(value, t)} |")
            md.append("")
        md += include_fragment(q, a.out)
    copy_files(a.out, os.path.dirname(a.md) or ".")
    with open(a.md, "w", encoding="utf-8") as f:
        f.write("\n".join(md).rstrip() + "\n")
    for q in questions:
        for name, value in results[q]["figures"]:
            print(f"{name}={value}")


if __name__ == "__main__":
    main()
