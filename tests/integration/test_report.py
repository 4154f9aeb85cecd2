"""mpmux report MUX_ID -o FILE: one self-contained HTML page of a session. A real run (mpirun, some
elements failing) is loaded in Debian's headless chromium: every attempt of the journals is a bar of
the timeline, the page logs nothing to the console, its script draws the time axis, the failed
elements show their stderr (escaped), and a screenshot is saved under the build's test-output/report.
A session past the bar limit is drawn as time buckets whose counts add up to its attempts. Bad input
is one line, exit 2, with nothing stored changed."""
import html.parser
import json
import os
import re
import shutil
import subprocess
import unittest

from mpmuxtest import TempDirTest, mpirun, mpmux, tree

BUILD = os.environ.get("MPMUX_BINARY_DIR", "build")
ROSENBROCK = os.path.abspath(os.path.join(BUILD, "plugins", "tasks", "librosenbrock.so"))
OUTPUT = os.path.join(os.path.abspath(BUILD), "test-output", "report")
CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--enable-logging=stderr", "--v=0"]


class Page(html.parser.HTMLParser):
    """The parts of a report page the tests look at, from its HTML (as written or as chromium's DOM)."""

    def __init__(self, text):
        super().__init__()
        self.bars = 0          # rect.a in svg#tl: one per attempt
        self.buckets = []      # data-n of each rect.g in svg#tl
        self.axis_ticks = 0    # text in svg#tl-axis, drawn by the page's script
        self.stderr = []       # text of each pre.stderr
        self.tags = set()
        self.timeline = {}
        self._svg = None
        self._pre = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        classes = (a.get("class") or "").split()
        if tag == "svg" and a.get("id") in ("tl", "tl-axis"):
            self._svg = a["id"]
            if a["id"] == "tl":
                self.timeline = a
        elif tag == "rect" and self._svg == "tl" and "a" in classes:
            self.bars += 1
        elif tag == "rect" and self._svg == "tl" and "g" in classes:
            self.buckets.append(int(a["data-n"]))
        elif tag == "text" and self._svg == "tl-axis":
            self.axis_ticks += 1
        elif tag == "pre" and "stderr" in classes:
            self._pre = []

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = None
        elif tag == "pre" and self._pre is not None:
            self.stderr.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data):
        if self._pre is not None:
            self._pre.append(data)


class ReportTest(TempDirTest):
    def attempts_in_journals(self, mux_id):
        """Every attempt recorded: the attempts column of the results export sums them."""
        rows = mpmux("results", mux_id, "--format", "jsonl", check=0).stdout.splitlines()
        return sum(json.loads(line)["attempts"] for line in rows)

    def chromium(self, *args):
        profile = os.path.join(self.tmp, "chromium-profile")
        return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)

    @unittest.skipUnless(CHROMIUM, "chromium is not installed (scripts/install-deps.sh installs it)")
    def test_a_real_run_shows_every_attempt_and_the_failures_in_a_browser(self):
        _, mux_id = self.new_session("--range", "12")
        # Elements 1, 5 and 9 fail twice (one retry) with markup, a byte that is not UTF-8 and a
        # terminal escape in their stderr.
        task = ('if [ $(({i} % 4)) -eq 1 ]; then echo "boom <b>"{i}"</b> & \'co\'" >&2; '
                r'printf "bad \377 \033[31m" >&2; exit 3; fi; sleep 0.0{i}')
        p = mpirun(3, "run", mux_id, "--shell", "--exec", task, "--retries", "1", "--no-progress")
        self.assertEqual(p.returncode, 1, p.stderr)
        attempts = self.attempts_in_journals(mux_id)
        self.assertEqual(attempts, 12 + 3)

        os.makedirs(OUTPUT, exist_ok=True)
        page_file = os.path.join(OUTPUT, "report.html")
        p = mpmux("report", mux_id, "-o", page_file, check=0)
        self.assertEqual(p.stdout + p.stderr, "")
        written = Page(open(page_file, encoding="utf-8").read())
        self.assertEqual(written.bars, attempts)

        # One browser start both dumps the DOM after the page's script ran and takes the screenshot.
        shot = os.path.join(OUTPUT, "report.png")
        if os.path.exists(shot):
            os.remove(shot)
        dom = self.chromium("--dump-dom", f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars",
                            "file://" + page_file)
        self.assertEqual(dom.returncode, 0, dom.stderr)
        console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
        self.assertEqual(console, [], "the page logged to the console")
        page = Page(dom.stdout)
        self.assertEqual(page.timeline.get("data-mode"), "bars")
        self.assertEqual(page.bars, attempts)
        self.assertGreater(page.axis_ticks, 2, "the script did not draw the time axis")
        self.assertEqual(sorted(page.stderr),
                         sorted(f"boom <b>{i}</b> & 'co'\nbad \ufffd \ufffd[31m" for i in (1, 5, 9)))
        self.assertNotIn("b", page.tags, "stderr text became markup")
        for worker in ("1", "2"):  # ranks 1 and 2 ran tasks: a labelled row each
            self.assertRegex(dom.stdout, rf">[^<>]+:{worker}</text>")
        with open(shot, "rb") as f:
            png = f.read()
        self.assertGreater(len(png), 1000)
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")

    def test_past_the_bar_limit_each_row_is_drawn_as_buckets_that_count_every_attempt(self):
        # 25,351 points, 2,626 outside the box fail once and again on their retry.
        _, mux_id = self.new_session("--grid", "x=-2.5:2.5:0.02", "y=-1.5:3.5:0.05")
        p = mpirun(2, "run", mux_id, "--plugin", ROSENBROCK, "--threads", 2, "--retries", 1, "--no-progress")
        self.assertEqual(p.returncode, 1, p.stderr)
        attempts = self.attempts_in_journals(mux_id)
        self.assertGreater(attempts, 20000)
        page_file = os.path.join(self.tmp, "big.html")
        mpmux("report", mux_id, "-o", page_file, check=0)
        page = Page(open(page_file, encoding="utf-8").read())
        self.assertEqual(page.timeline.get("data-mode"), "buckets")
        self.assertEqual(page.bars, 0)
        self.assertEqual(sum(page.buckets), attempts)
        self.assertEqual(int(page.timeline["data-attempts"]), attempts)
        failed = self.stat(mux_id)["failed"]
        self.assertGreater(failed, 0)
        listed = re.search(r"(\d+) element\(s\) failed for good", open(page_file).read())
        self.assertEqual(int(listed.group(1)), failed)

    def test_a_session_never_run_says_so_with_every_element_pending(self):
        _, mux_id = self.new_session("--range", "5")
        page_file = os.path.join(self.tmp, "empty.html")
        mpmux("report", mux_id, "-o", page_file, check=0)
        text = open(page_file, encoding="utf-8").read()
        self.assertIn("<tr><td>pending</td><td>5</td></tr>", text)
        self.assertIn("No attempt recorded yet.", text)
        self.assertEqual(Page(text).timeline, {})

    def test_each_run_of_a_resumed_session_has_rows_of_its_own(self):
        _, mux_id = self.new_session("--range", "4")
        self.assertEqual(mpmux("run", mux_id, "--exec", "false", "--no-progress").returncode, 1)
        mpmux("run", mux_id, "--exec", "true", "--rerun-failed", "--no-progress", check=0)
        page_file = os.path.join(self.tmp, "resumed.html")
        mpmux("report", mux_id, "-o", page_file, check=0)
        text = open(page_file, encoding="utf-8").read()
        page = Page(text)
        self.assertEqual(page.bars, 8)
        # Rank 0 of each run ran its elements, on this host: one row per run, named by its number.
        labels = re.findall(r'<svg class="labels"[^>]*>(.*?)</svg>', text)[0]
        self.assertEqual(re.findall(r">(#\d) [^<>]+:0</text>", labels), ["#1", "#2"])
        self.assertEqual(len(re.findall(r'<tr class="participant">', text)), 2)

    def test_bad_input_is_one_line_and_exit_2_with_nothing_changed(self):
        mux_dir, mux_id = self.new_session("--range", "3")
        mpmux("run", mux_id, "--exec", "true", "--no-progress", check=0)
        before = tree(mux_dir)
        missing = mux_id.rsplit("=", 1)[0] + "=20200101T000000Z-0000"
        self.assertUsageError(mpmux("report", missing, "-o", os.path.join(self.tmp, "r.html")),
                              "20200101T000000Z-0000")
        nowhere = os.path.join(self.tmp, "no-such-dir", "r.html")
        self.assertUsageError(mpmux("report", mux_id, "-o", nowhere), "report: -o", nowhere)
        self.assertUsageError(mpmux("report", mux_id, "-o", self.tmp), "report: -o", "is a directory")
        self.assertUsageError(mpmux("report", mux_id), "--output")
        self.assertEqual(tree(mux_dir), before)
        self.assertFalse(os.path.exists(nowhere))


if __name__ == "__main__":
    unittest.main()
