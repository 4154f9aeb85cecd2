"""bench/run.sh's page: bench/write_benchmarks.py turns what the benches left (logs, samples,
fragments, other files) into docs/benchmarks.md and prints every figure. Fed made-up benches
here, so nothing is measured and nothing is timed; bench/run.sh's own checks of its arguments
run before it builds anything."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from mpmuxtest import TempDirTest  # noqa: E402

SOURCE = os.environ.get("MPMUX_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
WRITER = os.path.join(SOURCE, "bench", "write_benchmarks.py")
DRIVER = os.path.join(SOURCE, "bench", "run.sh")
TARGETS = "# comment\nfast_ratio\t<=\t1.2\tDESIGN\nrate_ratio\t>=\t500\tissue 2\nnan_ratio\t<=\t1\tissue 14\n"


class BenchPageTest(TempDirTest):
    def setUp(self):
        super().setUp()
        self.logs, self.out, self.docs = (os.path.join(self.tmp, d) for d in ("logs", "out", "docs"))
        for d in (self.logs, self.out, self.docs):
            os.makedirs(d)
        self.write("targets.tsv", TARGETS)

    def bench(self, question, rc=0, log="", err="", samples=None, fragment=None, files=None):
        """Leaves what bench/run.sh would after running bench/<question>/run.sh."""
        for ext, text in (("rc", f"{rc}\n"), ("seconds", "7\n"), ("log", log), ("err", err)):
            with open(os.path.join(self.logs, f"{question}.{ext}"), "w") as f:
                f.write(text)
        if samples is not None:
            with open(os.path.join(self.out, f"{question}.samples.tsv"), "w") as f:
                f.writelines("\t".join(map(str, row)) + "\n" for row in samples)
        if fragment is not None:
            with open(os.path.join(self.out, f"{question}.md"), "w") as f:
                f.write(fragment)
        for name, text in (files or {}).items():
            with open(os.path.join(self.out, name), "w") as f:
                f.write(text)

    def page(self, questions, quick=False):
        md = os.path.join(self.docs, "benchmarks.md")
        cmd = [sys.executable, WRITER, "--logs", self.logs, "--out", self.out, "--build",
               os.path.join(self.tmp, "no-build"), "--targets", os.path.join(self.tmp, "targets.tsv"),
               "--md", md, "--reps", "3", "--questions", " ".join(questions)] + (["--quick"] if quick else [])
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(md) as f:
            return f.read(), p.stdout

    def section(self, text, question):
        m = re.search(rf"^## {question}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        self.assertIsNotNone(m, f"no section {question} in\n{text}")
        return m.group(1)

    def test_a_group_gets_median_min_max_and_the_ratio_to_its_floor_before_its_baseline(self):
        g = "claim + read, defaults, node-shared"
        self.bench("claim", log="fast_ratio=1.10\n", samples=[
            (g, "bare (floor)", "us/claim", 2.0), (g, "bare (floor)", "us/claim", 4.0), (g, "bare (floor)", "us/claim", 3.0),
            (g, "old (baseline)", "us/claim", 1.0),
            (g, "claimer", "us/claim", 6.0), (g, "claimer", "us/claim", 9.0), (g, "claimer", "us/claim", 7.5)])
        text, _ = self.page(["claim"])
        claim = self.section(text, "claim")
        self.assertIn(f"**{g}**", claim)
        self.assertRegex(claim, r"\| claimer \| us/claim \| 7\.5 \| 6 \| 9 \| 3 \| 2\.5 \|")
        self.assertRegex(claim, r"\| bare \(floor\) \| us/claim \| 3 \| 2 \| 4 \| 3 \| 1 \|")
        self.assertRegex(claim, r"\| old \(baseline\) \| us/claim \| 1 \| 1 \| 1 \| 1 \| 0\.333 \|")

    def test_figures_are_judged_against_their_targets_and_all_printed_at_the_end(self):
        self.bench("claim", log="table line\nfast_ratio=1.10\nrate_ratio=120.0\n")
        self.bench("exec", log="nan_ratio=nan\nother_figure=4\n")
        text, stdout = self.page(["claim", "exec"])
        self.assertEqual(stdout.splitlines(), ["fast_ratio=1.10", "rate_ratio=120.0", "nan_ratio=nan", "other_figure=4"])
        self.assertRegex(text, r"\| `fast_ratio` \| 1\.10 \| <= 1\.2; DESIGN \| met \| claim \|")
        self.assertRegex(text, r"\| `rate_ratio` \| 120\.0 \| >= 500; issue 2 \| \*\*missed\*\* \| claim \|")
        self.assertRegex(text, r"\| `nan_ratio` \| nan \| <= 1; issue 14 \| not measured \| exec \|")
        self.assertRegex(text, r"\| `other_figure` \| 4 \|  \|  \| exec \|")
        # A bench without samples shows what it printed, its figures aside.
        self.assertIn("table line", self.section(text, "claim"))

    def test_a_failed_bench_is_reported_with_its_stderr_and_the_next_one_still_shows(self):
        self.bench("claim", rc=3, log="fast_ratio=9\n", err="starting\nbench_claim: MPI_Win_create failed\n")
        self.bench("exec", log="rate_ratio=600\n")
        text, stdout = self.page(["claim", "exec"])
        claim = self.section(text, "claim")
        self.assertIn("**failed** (exit 3)", claim)
        self.assertIn("bench_claim: MPI_Win_create failed", claim)
        self.assertIn("ran in 7 s", self.section(text, "exec"))
        self.assertIn("rate_ratio=600", stdout)

    def test_a_fragment_goes_under_its_question_and_its_files_next_to_the_page(self):
        self.bench("scale", log="scale_check_max_error=0.08\n", fragment="A table of the model.\n\n![plot](scale.svg)\n",
                   files={"scale.svg": "<svg xmlns='http://www.w3.org/2000/svg'/>"})
        self.bench("claim", log="fast_ratio=1\n", samples=[("g", "a", "s", 1)])
        text, _ = self.page(["claim", "scale"])
        self.assertIn("![plot](scale.svg)", self.section(text, "scale"))
        self.assertNotIn("A table of the model.", self.section(text, "claim"))
        self.assertEqual(sorted(os.listdir(self.docs)), ["benchmarks.md", "scale.svg"])

    def test_a_quick_run_says_so_at_the_top_and_a_full_one_does_not(self):
        self.bench("claim", log="fast_ratio=1\n")
        quick, _ = self.page(["claim"], quick=True)
        self.assertIn("**Quick run**", quick.split("## Machine")[0])
        full, _ = self.page(["claim"])
        self.assertNotIn("Quick run", full)
        self.assertIn("REPS=3", full)
        for row in ("nproc", "CPU", "MPI", "osc in use: remote claim path"):
            self.assertIn(f"| {row}", full)


class BenchDriverArgumentsTest(TempDirTest):
    def driver(self, *args, **env):
        return subprocess.run(["bash", DRIVER, *args], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, **env))

    def test_bad_arguments_exit_2_with_one_line_before_anything_is_built(self):
        build = os.path.join(self.tmp, "build")
        for args, env, says in (((), {}, "usage: bench/run.sh"), ((build,), {"REPS": "x"}, "REPS=x"),
                                ((build,), {"BENCHES": "claim nope"}, "no bench/nope/run.sh")):
            p = self.driver(*args, **env)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
            self.assertIn(says, p.stderr)
            self.assertFalse(os.path.exists(build))


if __name__ == "__main__":
    import unittest

    unittest.main()
