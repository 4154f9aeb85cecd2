"""The scale model's predictions: 1k, 10k and 100k ranks, tasks of 10 ms to 1 h (lognormal,
spread SIGMA), guided against fixed chunks, one job against jobs of JOB_RANKS ranks sharing the
session's store. Writes scale.md and scale.svg into OUT_DIR when given, else prints the table.

Usage: report.py CALIBRATION_FILE [CHECK_FILE] [OUT_DIR]
  CALIBRATION_FILE: name=value lines of the benchmark drivers (missing names take the defaults)
  CHECK_FILE: the output of check.py (its lines are shown in the table's notes), or "-"
Environment: SCALE_SAMPLE_RANKS (500), SCALE_FIXED_CHUNK (32), SCALE_SIGMA (0.5).
"""

import math
import os
import sys

import scale_model as m

RANKS = (1000, 10000, 100000)
TASKS = ((0.01, "10 ms"), (0.1, "100 ms"), (1.0, "1 s"), (60.0, "1 min"), (3600.0, "1 h"))
MIN_IDEAL_S = 10.0  # a run of at least this long ideally, and ...
MIN_PER_WORKER = 50  # ... at least this many elements per working rank
SIGMA = float(os.environ.get("SCALE_SIGMA", "0.5"))
FIXED = int(os.environ.get("SCALE_FIXED_CHUNK", "32"))
SAMPLE = int(os.environ.get("SCALE_SAMPLE_RANKS", "500"))


def job_ranks(ranks):
    """The hierarchy's job size: 1,000 ranks (a few nodes), or a quarter of a smaller run."""
    return min(1000, ranks // 4)


def label(n):
    return f"{n // 1000}k"


def scenario(ranks, task_s, chunk, hierarchy):
    per_worker = max(MIN_PER_WORKER, math.ceil(MIN_IDEAL_S / task_s))
    return m.Scenario(
        ranks=ranks,
        task_s=task_s,
        sigma=SIGMA,
        elements_per_worker=per_worker,
        chunk=chunk,
        ranks_per_job=job_ranks(ranks) if hierarchy else 0,
        sample_ranks=SAMPLE,
    )


def fmt_ms(s):
    return "never" if s <= 0 else (f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s")


def predict(cal):
    rows = []
    for ranks in RANKS:
        for task_s, task in TASKS:
            for hierarchy in (False, True):
                r = {c: m.simulate(scenario(ranks, task_s, c, hierarchy), cal) for c in (0, FIXED)}
                rows.append((ranks, task_s, task, hierarchy, r[0], r[FIXED]))
                print(
                    f"  {label(ranks)} ranks, {task}, {'jobs' if hierarchy else 'one job'}: done",
                    file=sys.stderr,
                )
    return rows


def limits(cal):
    one = {ranks: m.coordinator_limit_s(cal, ranks - 1, SIGMA) for ranks in RANKS}
    per_job = {ranks: m.coordinator_limit_s(cal, job_ranks(ranks) - 1, SIGMA) for ranks in RANKS}
    return one, per_job


def markdown(cal, origin, rows, one, per_job, check_lines):
    out = ["## The scale model: 1k to 100k ranks", ""]
    out.append(
        "`bench/scale/run.sh` simulates one session (`bench/scale/scale_model.py`; its assumptions are in "
        'docs/design.md, "The scale model") with the costs measured on this machine. Tasks are lognormal '
        f"(mean as named, sigma {SIGMA} of the log); each run holds at least {MIN_PER_WORKER} elements per "
        f"working rank and {MIN_IDEAL_S:g} s of ideal time. *rank 0* is the busiest coordinator's busy "
        "fraction (1: saturated, outcomes queue); *wait* the mean wait per claim for the counter; "
        "*makespan / ideal* the tail imbalance (ideal: all task time spread evenly over the working ranks). "
        f"Guided chunks against a fixed chunk of {FIXED}; one job holding every rank against jobs of "
        "1,000 ranks (a quarter of the run at 1k) claiming batches from the session's store, each job's "
        "rank 0 feeding its ranks."
    )
    out.append("")
    out.append(
        "| ranks | task | layout | rank 0 guided | rank 0 fixed | wait guided | wait fixed | "
        "makespan / ideal guided | fixed | store busy |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for ranks, _, task, hierarchy, g, f in rows:
        layout = f"{g.jobs} jobs" if hierarchy else "one job"
        out.append(
            f"| {label(ranks)} | {task} | {layout} | {g.root_load:.2f} | {f.root_load:.2f} | "
            f"{g.claim_wait_us:.3g} us | {f.claim_wait_us:.3g} us | {g.imbalance:.2f} | {f.imbalance:.2f} | "
            f"{g.store_load:.2f} |"
        )
    out.append("")
    out.append(
        "Where one coordinator per job stops sufficing (steady state, guided chunks): rank 0 saturates "
        "for tasks shorter than"
    )
    out.append("")
    out.append("| ranks | one job | per job of the hierarchy |")
    out.append("|---|---|---|")
    for ranks in RANKS:
        out.append(
            f"| {label(ranks)} | {fmt_ms(one[ranks])} | {fmt_ms(per_job[ranks])} "
            f"({job_ranks(ranks)} ranks a job) |"
        )
    out.append("")
    out.append("![rank 0's load against the task length](scale.svg)")
    out.append("")
    out.append(
        "Calibration (name=value of the benchmark drivers; *default*: measured once on this machine and "
        "recorded in the model):"
    )
    out.append("")
    out.append("| cost | value | from |")
    out.append("|---|---|---|")
    for name, value in vars(cal).items():
        out.append(f"| {name} | {value:.4g} | {origin.get(name, 'default')} |")
    if check_lines:
        out.append("")
        out.append(
            "Check against this machine (`mpmux run --plugin` with a sleep task, makespan predicted "
            "against measured):"
        )
        out.append("")
        out.append("| ranks | task | elements | predicted | measured | error | within 20% |")
        out.append("|---|---|---|---|---|---|---|")
        for line in check_lines:
            kv = dict(p.split("=", 1) for p in line.split()[1:])
            out.append(
                f"| {kv['ranks']} | {kv['task_ms']} ms | {kv['elements']} | {kv['predicted_s']} s | "
                f"{kv['measured_s']} s | {float(kv['error']) * 100:.0f}% | {kv['within_20pct']} |"
            )
    return "\n".join(out) + "\n"


def svg(cal, rows):
    """Rank 0's load against the task length, log-log: the steady-state curve of one job per
    rank count (solid) and of a job of the hierarchy (dashed), the simulated runs as dots."""
    w, h, left, right, top, bottom = 720, 420, 70, 170, 30, 50
    x0, x1 = math.log10(0.001), math.log10(3600)
    y0, y1 = -3.0, 2.0

    def px(t):
        return left + (math.log10(t) - x0) / (x1 - x0) * (w - left - right)

    def py(load):
        v = min(max(math.log10(max(load, 1e-9)), y0), y1)
        return top + (y1 - v) / (y1 - y0) * (h - top - bottom)

    colors = {1000: "#1f77b4", 10000: "#d62728", 100000: "#2ca02c"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
        f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>'
    ]
    for e in range(int(y0), int(y1) + 1):
        y = py(10.0**e)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{10.0 ** e:g}</text>'
        )
    for t, name in (
        (0.001, "1 ms"),
        (0.01, "10 ms"),
        (0.1, "100 ms"),
        (1, "1 s"),
        (60, "1 min"),
        (3600, "1 h"),
    ):
        x = px(t)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{h - bottom}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{h - bottom + 16}" text-anchor="middle">{name}</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{py(1):.1f}" x2="{w - right}" y2="{py(1):.1f}" stroke="black" '
        f'stroke-width="1.5"/><text x="{w - right - 4}" y="{py(1) - 5:.1f}" text-anchor="end">saturated</text>'
    )
    grid = [10 ** (x0 + (x1 - x0) * i / 200) for i in range(201)]
    for ranks, color in colors.items():
        for workers, dash in ((ranks - 1, ""), (job_ranks(ranks) - 1, ' stroke-dasharray="6,4"')):
            pts = " ".join(f"{px(t):.1f},{py(m.root_load_steady(cal, workers, t, SIGMA)):.1f}" for t in grid)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
    for ranks, task_s, _, hierarchy, g, _ in rows:
        fill = "white" if hierarchy else colors[ranks]
        parts.append(
            f'<circle cx="{px(task_s):.1f}" cy="{py(g.root_load):.1f}" r="4" fill="{fill}" '
            f'stroke="{colors[ranks]}" stroke-width="1.5"/>'
        )
    lx = w - right + 15
    for k, (ranks, color) in enumerate(colors.items()):
        y = top + 20 + 20 * k
        parts.append(
            f'<line x1="{lx}" y1="{y}" x2="{lx + 25}" y2="{y}" stroke="{color}" stroke-width="2"/>'
            f'<text x="{lx + 30}" y="{y + 4}">{label(ranks)} ranks</text>'
        )
    y = top + 100
    parts.append(
        f'<text x="{lx}" y="{y}">solid: one job</text><text x="{lx}" y="{y + 16}">dashed: a job of</text>'
        f'<text x="{lx}" y="{y + 32}">the hierarchy</text><text x="{lx}" y="{y + 52}">dots: simulated</text>'
        f'<text x="{lx}" y="{y + 68}">(open: hierarchy)</text>'
    )
    parts.append(
        f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">task length (guided '
        f"chunks, lognormal sigma {SIGMA})</text>"
    )
    parts.append(
        f'<text x="18" y="{(top + h - bottom) / 2}" text-anchor="middle" transform="rotate(-90 18 '
        f'{(top + h - bottom) / 2})">rank 0 busy fraction</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    with open(sys.argv[1]) as f:
        cal, origin = m.Calibration.from_lines(f)
    check_lines = []
    if len(sys.argv) > 2 and sys.argv[2] != "-":
        with open(sys.argv[2]) as f:
            check_lines = [line.strip() for line in f if line.startswith("check ")]
    out_dir = sys.argv[3] if len(sys.argv) > 3 else ""
    rows = predict(cal)
    one, per_job = limits(cal)
    md = markdown(cal, origin, rows, one, per_job, check_lines)
    if out_dir:
        with open(os.path.join(out_dir, "scale.md"), "w") as f:
            f.write(md)
        with open(os.path.join(out_dir, "scale.svg"), "w") as f:
            f.write(svg(cal, rows))
    else:
        print(md)
    for ranks in RANKS:
        print(f"scale_coordinator_limit_task_ms_{label(ranks)}={one[ranks] * 1e3:.4g}")
    for ranks, task_s, task, hierarchy, g, f in rows:
        if ranks == 100000 and not hierarchy and task_s in (0.01, 1.0, 60.0):
            key = task.replace(" ", "")
            print(f"scale_root_load_100k_{key}={g.root_load:.3f}")
            print(f"scale_imbalance_guided_100k_{key}={g.imbalance:.3f}")
            print(f"scale_imbalance_fixed_100k_{key}={f.imbalance:.3f}")


if __name__ == "__main__":
    main()
