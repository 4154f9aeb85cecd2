"""The progress bar where the user is: `mpirun -n 3 mpmux run ...` and `srun -n 3 mpmux run ...`
typed into a terminal (a tmux pane of a fixed size, read with capture-pane) show a live bar that
redraws in place, although rank 0's stderr is a pipe of the launcher; with stderr redirected to a
file the file gets plain lines only. The srun case brings up the local Slurm cluster
(scripts/start-slurm.sh, as test_slurm.py does) and fails without it."""
import os
import re
import shlex
import subprocess
import time
import unittest

from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest, TmuxPane

ELEMENTS = 200
# A bar while the run goes on: [####    ] 12/200   6.0% 18.5/s ETA 00:10
RUNNING_BAR = re.compile(rf"\[#* *\] (\d+)/{ELEMENTS} +\d+\.\d% [\d.]+/s ETA (\d\d:\d\d|--:--)")
FINAL_BAR = re.compile(rf"\[#+\] {ELEMENTS}/{ELEMENTS} 100\.0% [\d.]+/s in \d\d:\d\d")
ANY_BAR = re.compile(rf"\[#* *\] \d+/{ELEMENTS} ")
PLAIN_LINE = re.compile(rf"^mpmux: \d+/{ELEMENTS} elements \(\d+\.\d%\), [\d.]+/s, (ETA|elapsed) (\d\d:\d\d|--:--)$")
END = re.compile(r"^run-ended (\d+)$", re.M)


def slurm_problem():
    """Why srun cannot be used here, or None when the local cluster answers."""
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo: {e}"
    if p.returncode != 0 or "up" not in p.stdout:
        return f"sinfo: exit {p.returncode}: {(p.stderr or p.stdout).strip()}"
    return None


class TerminalTest(TmuxPane, TempDirTest):
    """A tmux server of its own (its own socket), with one pane of 100x30 running bash."""

    def setUp(self):
        super().setUp()
        self.start_tmux("progress", drop=("MPMUX_PROGRESS",))
        _, self.mux_id = self.new_session("--range", str(ELEMENTS))

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "t")

    def type_run(self, launcher, *run_args, redirect=""):
        """Types `LAUNCHER mpmux run MUX --exec 'sleep 0.05' ARGS` into the pane, then a marker with
        its exit status."""
        cmd = " ".join([*launcher, shlex.quote(MPMUX), "run", shlex.quote(self.mux_id), "--exec", "'sleep 0.05'",
                        *run_args])
        self.tmux("send-keys", "-t", "t", f"{cmd} {redirect}; echo run-ended $?", "Enter")

    def watch(self, timeout=300):
        """Screens captured until the run ended: [(screen)], its exit status."""
        screens = []
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            screens.append(self.screen())
            ended = END.search(screens[-1])
            if ended:
                return screens, int(ended.group(1))
            time.sleep(0.05)  # the pace of looking at the screen, not a wait for something
        raise AssertionError(f"the run did not end in {timeout} s; the screen:\n{screens[-1]}")

    def assertLiveBar(self, launcher, whole_lines=False):
        self.type_run(launcher)
        screens, status = self.watch()
        self.assertEqual(status, 0, screens[-1])
        counts = [int(m.group(1)) for s in screens for m in RUNNING_BAR.finditer(s)]
        # The bar was there while the run went on, and it was redrawn as elements finished.
        self.assertTrue([c for c in counts if c < ELEMENTS], "no bar before the run ended:\n" + screens[-1])
        self.assertGreaterEqual(len(set(counts)), 2, f"the bar was not redrawn: counts {counts}\n{screens[-1]}")
        self.assertEqual(counts, sorted(counts), counts)
        # Redrawn in place: one bar on the screen at any time, the last one complete.
        for s in screens:
            self.assertLessEqual(len(ANY_BAR.findall(s)), 1, s)
        final = screens[-1]
        self.assertRegex(final, FINAL_BAR)
        self.assertEqual(len(ANY_BAR.findall(final)), 1, final)
        self.assertNotIn("mpmux: %d/%d elements" % (ELEMENTS, ELEMENTS), final)
        # The bar's line ends before the next output: the marker starts a line of its own.
        self.assertRegex(final, re.compile(r"^run-ended 0$", re.M))
        self.assertEqual(self.stat(self.mux_id)["done"], ELEMENTS)
        if whole_lines:
            # srun holds back what is not a whole line (a bar redrawn with a carriage return
            # alone arrives in bursts of many redraws): each redraw ends its line, and the next
            # one moves up over it.
            with open(self.received, "rb") as f:
                received = f.read()
            draws = re.findall(rb"\[#* *\] \d+/%d [^\x1b]*\x1b\[K(.{0,4})" % ELEMENTS, received, re.S)
            self.assertGreaterEqual(len(draws), 2, received[-2000:])
            for after in draws:
                self.assertTrue(after.startswith(b"\r\n") or after.startswith(b"\n"), (after, received[-2000:]))
            self.assertGreaterEqual(received.count(b"\x1b[A\r["), len(draws) - 1)

    def assertPlainLinesInFile(self, launcher):
        err = os.path.join(self.tmp, "err.txt")
        self.type_run(launcher, "--progress-interval", "0.5", redirect=f"2> {shlex.quote(err)}")
        screens, status = self.watch()
        self.assertEqual(status, 0, screens[-1])
        self.assertIsNone(ANY_BAR.search(screens[-1]), screens[-1])
        with open(err, newline="") as f:
            text = f.read()
        self.assertNotIn("\r", text)
        self.assertNotIn("\x1b", text)
        # The claim paths, then progress lines only.
        lines = [line for line in text.splitlines() if not line.startswith("mpmux: claim paths: ")]
        self.assertTrue(lines, text)
        for line in lines:
            self.assertRegex(line, PLAIN_LINE)
        self.assertTrue(lines[-1].startswith("mpmux: %d/%d elements (100.0%%)" % (ELEMENTS, ELEMENTS)), text)


class ProgressOptionTest(TempDirTest):
    """MPMUX_PROGRESS stands in for --progress; --progress and --no-progress win over it."""

    def setUp(self):
        super().setUp()
        _, self.mux_id = self.new_session("--range", "3")

    def run_with(self, env_value, *args):
        env = dict(ENV, MPMUX_PROGRESS=env_value)
        p = subprocess.run([MPMUX, "run", self.mux_id, "--exec", "true", *args], capture_output=True, env=env,
                           timeout=120)
        p.stdout, p.stderr = p.stdout.decode(), p.stderr.decode()  # carriage returns kept
        return p

    def test_a_bad_mpmux_progress_is_a_usage_error_naming_it(self):
        self.assertUsageError(self.run_with("fancy"), "MPMUX_PROGRESS", "fancy")
        self.assertEqual(self.stat(self.mux_id)["done"], 0)

    def test_the_option_wins_over_the_environment(self):
        p = self.run_with("fancy", "--progress", "lines")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("mpmux: 3/3 elements (100.0%)", p.stderr)

    def test_mpmux_progress_none_and_no_progress_print_nothing(self):
        p = self.run_with("none")
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        self.assertEqual(self.stat(self.mux_id)["done"], 3)
        _, self.mux_id = self.new_session("--range", "3", "--tag", "again")
        p = self.run_with("bar", "--no-progress")
        self.assertEqual((p.returncode, p.stderr), (0, ""))

    def test_a_bar_asked_for_is_drawn_into_a_file_too(self):
        p = self.run_with("bar")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stderr, r"\r\[#+\] 3/3 100\.0% [\d.]+/s in \d\d:\d\d\x1b\[K\n$")


class MpirunTerminalTest(TerminalTest):
    launcher = [shlex.quote(MPIEXEC), "-n", "3", "--oversubscribe"]

    def test_mpirun_typed_in_a_terminal_shows_a_live_bar(self):
        self.assertLiveBar(self.launcher)

    def test_mpirun_with_stderr_in_a_file_writes_plain_lines_only(self):
        self.assertPlainLinesInFile(self.launcher)

    def test_progress_lines_asked_for_in_a_terminal_are_plain_lines(self):
        self.type_run(["MPMUX_PROGRESS=lines", *self.launcher], "--progress-interval", "0.5")
        screens, status = self.watch()
        self.assertEqual(status, 0, screens[-1])
        self.assertIn("mpmux: %d/%d elements (100.0%%)" % (ELEMENTS, ELEMENTS), screens[-1])
        self.assertFalse([s for s in screens if ANY_BAR.search(s)], screens[-1])


class SrunTerminalTest(TerminalTest):
    launcher = ["srun", "--mpi=pmix", "-n", "3", "--overcommit"]

    @classmethod
    def setUpClass(cls):
        # The cluster the Slurm tests use, brought up here too (idempotent) so that the srun case
        # runs whichever test comes first; as in test_slurm.py, no cluster is a failure.
        start = os.path.join(os.environ.get("MPMUX_SOURCE_DIR", "."), "scripts", "start-slurm.sh")
        p = subprocess.run([start], capture_output=True, text=True, timeout=180)
        problem = slurm_problem() if p.returncode == 0 else f"start-slurm.sh: {(p.stderr or p.stdout).strip()}"
        if problem:
            raise AssertionError(f"no local Slurm cluster for the srun case: {problem}")

    def test_srun_typed_in_a_terminal_shows_a_live_bar(self):
        self.assertLiveBar(self.launcher, whole_lines=True)

    def test_srun_with_stderr_in_a_file_writes_plain_lines_only(self):
        self.assertPlainLinesInFile(self.launcher)


if __name__ == "__main__":
    unittest.main()
