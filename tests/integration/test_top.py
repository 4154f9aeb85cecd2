"""`mpmux top MUX_ID`: a live view of a session being run by another process, in a tmux pane of a
fixed size read with capture-pane: the counts grow, the participant and the longest-running
element show, `q` and Ctrl-C quit with 0 and leave the terminal as it was, a resize redraws to the
new width; under mpirun the element running on a worker rank is listed with its rank; not on a
terminal it prints one frame; it writes nothing to the session; a bad mux id is a usage error."""
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import unittest

from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest, TmuxPane, mpmux, tree

ELEMENTS = 60
LONG = 5  # the element that sleeps long: the longest running one while the run goes on
ENDED = re.compile(r"^top-ended (\d+)$", re.M)
PROMPT_AFTER = re.compile(r"^top-ended \d+\n\S*[$#]$", re.M)
DONE = re.compile(rf"total {ELEMENTS}  done (\d+)  failed 0  running \d+  claimed \d+  pending \d+")
RUNNING_ROW = re.compile(rf"^ +{LONG} +1 +(\d+) s +(\S+) +(\d+|-) ", re.M)


class TopTest(TempDirTest):
    def setUp(self):
        super().setUp()
        # Element LONG sleeps until the test ends; the others a fifth of a second.
        rows = ["120" if k == LONG else "0.2" for k in range(ELEMENTS)]
        csv = self.write("in.csv", "s\n" + "\n".join(rows) + "\n")
        self.mux_dir, self.mux_id = self.new_session("--from", csv)
        self.session_dir = os.path.join(self.mux_dir, "sessions", self.mux_id.split("#s=")[1])
        self.runs = []

    def tearDown(self):
        for p in self.runs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        super().tearDown()

    def start_run(self, *launcher):
        """The run, in the background in a process group of its own; a short lease so that the
        heartbeat (every lease / 4) is fresh."""
        log = open(os.path.join(self.tmp, "run.log"), "w")
        p = subprocess.Popen([*launcher, MPMUX, "run", self.mux_id, "--exec", "sleep {s}", "--lease", "2",
                              "--no-progress", *([] if launcher else ["--procs", "2"])],
                             stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        log.close()
        self.runs.append(p)
        return p

    def frame(self):
        p = mpmux("top", self.mux_id, check=0)
        return p.stdout

    def wait_for(self, what, look, timeout=120):
        """look() until what(screen) is true: returns that screen."""
        give_up = time.monotonic() + timeout
        seen = None
        while time.monotonic() < give_up:
            seen = look()
            if what(seen):
                return seen
            time.sleep(0.1)  # the pace of looking, not a wait for something
        raise AssertionError(f"not seen in {timeout} s; last:\n{seen}\nrun log:\n" + self.run_log())

    def run_log(self):
        try:
            with open(os.path.join(self.tmp, "run.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""


class TopInTerminalTest(TmuxPane, TopTest):
    """A tmux server of its own (its own socket), one pane of 100x30 running bash."""

    def setUp(self):
        super().setUp()
        self.start_tmux("top")

    def screen(self):
        return self.tmux("capture-pane", "-p", "-J", "-t", "t")

    def start_top(self):
        self.tmux("send-keys", "-t", "t", f"stty -a > {shlex.quote(os.path.join(self.tmp, 'before'))}; "
                  f"{shlex.quote(MPMUX)} top {shlex.quote(self.mux_id)} --interval 0.3; echo top-ended $?; "
                  f"stty -a > {shlex.quote(os.path.join(self.tmp, 'after'))}", "Enter")

    def assertEndedAndRestored(self):
        # The shell's prompt back after the marker.
        screen = self.wait_for(lambda s: PROMPT_AFTER.search(s.rstrip()), self.screen, timeout=30)
        self.assertEqual(int(ENDED.search(screen).group(1)), 0, screen)
        # The alternate screen was left: the shell's own screen is back, with no frame on it.
        self.assertNotIn("longest running elements", screen)
        self.assertIn("--interval 0.3; echo top-ended $?", screen)
        with open(os.path.join(self.tmp, "before")) as b, open(os.path.join(self.tmp, "after")) as a:
            # All but the first line, which holds the size (the resize test changes it).
            self.assertEqual(b.read().split("\n")[1:], a.read().split("\n")[1:],
                             "the terminal's settings (echo, icanon, isig) came back")
        with open(self.received, "rb") as f:
            received = f.read()
        last_frame = received.rfind(b"longest running elements")
        self.assertGreater(last_frame, 0)
        after = received[last_frame:]
        for restore in (b"\x1b[?1049l", b"\x1b[?25h", b"\x1b[?7h"):
            self.assertIn(restore, after)

    def test_top_follows_a_run_elsewhere_and_q_quits(self):
        self.start_run()
        self.start_top()
        host = socket.gethostname()
        dones = set()

        def grown_with_running_element(s):
            m = DONE.search(s)
            if m:
                dones.add(int(m.group(1)))
            r = RUNNING_ROW.search(s)
            return len(dones) >= 2 and r is not None and int(r.group(1)) >= 2 and re.search(
                rf"^  {re.escape(host)} +\d+ +- +1 +\d+ s ago", s, re.M)

        screen = self.wait_for(grown_with_running_element, self.screen)
        self.assertIn("participants (1)", screen)
        self.assertEqual(RUNNING_ROW.search(screen).group(2), host, screen)
        self.assertRegex(screen, r"\[#*\.*\] +\d+\.\d%")
        self.assertIn("q quits", screen)
        for line in screen.splitlines():
            self.assertLessEqual(len(line), 100, line)
        self.tmux("send-keys", "-t", "t", "q")
        self.assertEndedAndRestored()
        self.assertIsNone(self.runs[0].poll(), "the run goes on: top only looked")

    def test_ctrl_c_quits_and_restores_the_terminal(self):
        self.start_top()
        self.wait_for(lambda s: "longest running elements" in s, self.screen, timeout=30)
        self.tmux("send-keys", "-t", "t", "C-c")
        self.assertEndedAndRestored()

    def test_a_resize_redraws_to_the_new_width(self):
        self.start_top()

        def bar_of(s):
            return next((line for line in s.splitlines() if line.startswith("[")), "")

        # The bar fills the width to its last column (no rate: nobody runs the session).
        bar = bar_of(self.wait_for(lambda s: bar_of(s), self.screen, timeout=30))
        self.assertEqual(len(bar.rstrip()), 100, bar)
        self.assertTrue(bar.endswith("0.0%  no rate yet"), bar)
        self.tmux("resize-window", "-t", "t", "-x", "50", "-y", "12")
        screen = self.wait_for(lambda s: len(bar_of(s).rstrip()) == 50, self.screen, timeout=30)
        self.assertTrue(bar_of(screen).endswith("0.0%  no rate yet"), screen)
        lines = screen.splitlines()
        self.assertLessEqual(len(lines), 12)
        for line in lines:
            self.assertLessEqual(len(line), 50, line)
        self.assertIn("q quits", lines[-1])
        self.tmux("send-keys", "-t", "t", "q")
        self.assertEndedAndRestored()


class TopElsewhereTest(TopTest):
    def test_under_mpirun_the_element_running_on_a_worker_rank_is_listed_with_its_rank(self):
        self.start_run(MPIEXEC, "-n", "3", "--oversubscribe")
        frame = self.wait_for(lambda f: RUNNING_ROW.search(f) and DONE.search(f) and int(DONE.search(f).group(1)) > 0,
                              self.frame)
        self.assertIn(RUNNING_ROW.search(frame).group(3), ("1", "2"), frame)
        self.assertRegex(frame, rf"(?m)^  {re.escape(socket.gethostname())} +\d+ +- +3 ")

    def test_not_on_a_terminal_it_prints_one_plain_frame_and_writes_nothing(self):
        before = tree(self.session_dir)
        p = mpmux("top", self.mux_id, check=0, timeout=60)
        self.assertEqual(p.stderr, "")
        self.assertNotIn("\x1b", p.stdout)
        self.assertIn(f"total {ELEMENTS}  done 0  failed 0  running 0  claimed 0  pending {ELEMENTS}", p.stdout)
        self.assertIn("no live participant", p.stdout)
        self.assertEqual(tree(self.session_dir), before)

    def test_the_session_may_come_from_mpmux_id(self):
        p = subprocess.run([MPMUX, "top"], capture_output=True, text=True, env=dict(ENV, MPMUX_ID=self.mux_id),
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"mpmux top  {self.mux_id}\n", p.stdout)

    def test_a_bad_mux_id_or_interval_is_a_usage_error(self):
        self.assertUsageError(mpmux("top", "file:///nowhere/mux#s=20260101T000000Z-0000"), "nowhere")
        self.assertUsageError(mpmux("top", self.mux_id, "--interval", "0"), "--interval", "0")
        p = subprocess.run([MPMUX, "top"], capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in ENV.items() if k != "MPMUX_ID"})
        self.assertUsageError(p, "MPMUX_ID")


if __name__ == "__main__":
    unittest.main()
