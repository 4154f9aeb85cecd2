"""mpmux run --plugin LIB.so --threads K: in-process tasks through the C ABI of mpmux/plugin.h.
Every element is processed exactly once at 1, 2 and 3 ranks with 1 to 3 threads, results read back
with h5py equal what Python computes, failures carry the plugin's message, retries and drains work,
and a bad plugin or a wrong option pairing is one line, exit 2, with nothing stored changed."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import h5py

from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest, most_at_once, mpirun, mpmux, tree

SRC = os.environ.get("MPMUX_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
BUILD = os.environ.get("MPMUX_BINARY_DIR", "build")
ROSENBROCK = os.path.abspath(os.path.join(BUILD, "plugins", "tasks", "librosenbrock.so"))
STOPPED = 75

# A plugin for what the example cannot show. Its --plugin-arg picks the mode:
#   "sleep LOG SECONDS": logs init/finalize per thread and start/end (with times) per element to
#                        LOG, sleeps SECONDS per element, returns the element as its result;
#   "flaky DIR":         the first attempt at each element fails (a marker file in DIR remembers
#                        it across threads and ranks), the next succeeds.
# -DNO_FINALIZE leaves out mpmux_task_finalize; -DABI=N reports another ABI version.
TEST_PLUGIN = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpmux/plugin.h"

#ifndef ABI
#define ABI MPMUX_PLUGIN_ABI_VERSION
#endif

typedef struct {
  int sleep_mode;
  char path[4096];
  double seconds;
  int fd, rank, thread;
} test_state;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void log_line(test_state* s, const char* text) {
  if (write(s->fd, text, strlen(text)) < 0) abort(); /* O_APPEND: one line per write */
}

uint32_t mpmux_plugin_abi_version(void) { return ABI; }

int mpmux_task_init(const mpmux_worker_info* info, void** state, mpmux_output* out) {
  test_state* s = calloc(1, sizeof *s);
  if (sscanf(info->arg, "sleep %4095s %lf", s->path, &s->seconds) == 2) {
    s->sleep_mode = 1;
  } else if (sscanf(info->arg, "flaky %4095s", s->path) != 1) {
    free(s);
    return out->fail(out, "arg: 'sleep LOG SECONDS' or 'flaky DIR'");
  }
  s->rank = info->rank;
  s->thread = info->thread;
  s->fd = -1;
  if (s->sleep_mode) {
    char line[64];
    s->fd = open(s->path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    snprintf(line, sizeof line, "init %d %d %d\n", info->rank, info->thread, info->threads);
    log_line(s, line);
  }
  *state = s;
  return 0;
}

int mpmux_task_process(void* state, uint64_t index, const char* element, size_t length, mpmux_output* out) {
  test_state* s = state;
  char line[4200];
  if (!s->sleep_mode) {
    snprintf(line, sizeof line, "%s/%llu", s->path, (unsigned long long)index);
    int fd = open(line, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd >= 0) {
      close(fd);
      snprintf(line, sizeof line, "first attempt at %llu fails", (unsigned long long)index);
      return 4 * out->fail(out, line);
    }
    out->write(out, "ok", 2);
    return 0;
  }
  const double start = now();
  snprintf(line, sizeof line, "start %llu\n", (unsigned long long)index);
  log_line(s, line);
  struct timespec left = {(time_t)s->seconds, (long)((s->seconds - (double)(time_t)s->seconds) * 1e9)};
  nanosleep(&left, NULL); /* no retry: a drain signal must never reach this thread */
  snprintf(line, sizeof line, "end %llu %.6f %.6f %d %d\n", (unsigned long long)index, start, now(), s->rank,
           s->thread);
  log_line(s, line);
  out->write(out, element, length);
  return 0;
}

#ifndef NO_FINALIZE
void mpmux_task_finalize(void* state) {
  test_state* s = state;
  if (s->sleep_mode) {
    char line[64];
    snprintf(line, sizeof line, "finalize %d %d\n", s->rank, s->thread);
    log_line(s, line);
    close(s->fd);
  }
  free(s);
}
#endif
"""


def build_plugin(directory, name, *defines):
    """Compiles TEST_PLUGIN into DIRECTORY/NAME.so with -D DEFINES; returns its path."""
    source = os.path.join(directory, "test_plugin.c")
    if not os.path.exists(source):
        with open(source, "w") as f:
            f.write(TEST_PLUGIN)
    out = os.path.join(directory, name + ".so")
    cmd = [shutil.which("cc") or "cc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror",
           "-I", os.path.join(SRC, "include"), *[f"-D{d}" for d in defines], "-o", out, source]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}\n{p.stderr}")
    return out


def rosenbrock(x, y, a=1.0, b=100.0):
    """What the example plugin computes, in the same order of operations."""
    return (a - x) * (a - x) + b * (y - x * x) * (y - x * x)


def in_box(x, y):
    return -2 <= x <= 2 and -1 <= y <= 3


def read_log(path):
    """(init lines, end lines, finalize lines) of a sleep-mode log, split into fields."""
    inits, ends, finals, starts = [], [], [], []
    with open(path) as f:
        for line in f:
            kind, *rest = line.split()
            {"init": inits, "end": ends, "finalize": finals, "start": starts}[kind].append(rest)
    return inits, ends, finals, starts


class PluginTest(TempDirTest):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(ROSENBROCK):
            raise AssertionError(f"{ROSENBROCK} is missing: build the rosenbrock target")
        cls.plugins = tempfile.mkdtemp(prefix="mpmux-plugins-")
        cls.test_plugin = build_plugin(cls.plugins, "libtestplugin")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.plugins, ignore_errors=True)

    def results(self, mux_dir, mux_id):
        session = mux_id.split("#s=")[1]
        with h5py.File(os.path.join(mux_dir, "sessions", session, "results.h5"), "r") as f:
            return f["/results"][:]

    def start(self, np, *args):
        """A run in the background (mpirun at np ranks, or alone for np 0); stderr to a file."""
        err = open(os.path.join(self.tmp, "stderr"), "w+")
        self.addCleanup(err.close)
        cmd = [MPMUX, *map(str, args)]
        if np:
            cmd = [MPIEXEC, "-n", str(np), "--oversubscribe"] + cmd
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=err), err

    def wait_for_lines(self, log, kind, count, proc, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            if os.path.exists(log):
                with open(log) as f:
                    if sum(line.startswith(kind + " ") for line in f) >= count:
                        return
            self.assertIsNone(proc.poll(), f"the run ended before {count} '{kind}' lines were logged")
            self.assertLess(time.monotonic(), deadline, f"no {count} '{kind}' lines within {timeout} s")
            time.sleep(0.01)

    def test_every_element_is_processed_once_at_1_2_and_3_ranks(self):
        for np, threads, arg in ((1, 1, None), (1, 3, "2,50"), (2, 2, None), (3, 1, None), (3, 3, "0.5,10")):
            with self.subTest(np=np, threads=threads):
                mux_dir, mux_id = self.new_session("--grid", "x=-2:2:0.25", "y=-1:3:0.25")
                extra = ["--plugin-arg", arg] if arg else []
                p = mpirun(np, "run", mux_id, "--plugin", ROSENBROCK, "--threads", threads, *extra)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(self.counts(mux_id), {"total": 256, "done": 256, "failed": 0, "running": 0,
                                                     "pending": 0})
                r = self.results(mux_dir, mux_id)
                self.assertEqual(list(r["index"]), list(range(256)))
                self.assertTrue(all(s == b"done" for s in r["status"]), set(r["status"]))
                self.assertTrue(all(a == 1 for a in r["attempts"]), "an element was processed twice")
                a, b = map(float, (arg or "1,100").split(","))
                for row in r:
                    self.assertEqual(float(row["result"].decode()), rosenbrock(row["x"], row["y"], a, b), row)
                ranks = set(int(k) for k in r["rank"])
                self.assertTrue(ranks <= ({0} if np == 1 else set(range(1, np))), ranks)

    def test_k_threads_run_at_once_each_with_its_own_init_and_finalize(self):
        _, mux_id = self.new_session("--range", "12")
        log = os.path.join(self.tmp, "log")
        p = mpmux("run", mux_id, "--plugin", self.test_plugin, "--plugin-arg", f"sleep {log} 0.3", "--threads", 3)
        self.assertEqual(p.returncode, 0, p.stderr)
        inits, ends, finals, _ = read_log(log)
        self.assertEqual(sorted(inits), [["0", "0", "3"], ["0", "1", "3"], ["0", "2", "3"]])
        self.assertEqual(sorted(finals), [["0", "0"], ["0", "1"], ["0", "2"]])
        self.assertEqual(sorted(int(e[0]) for e in ends), list(range(12)))
        self.assertEqual(most_at_once([(start, end) for _, start, end, _, _ in ends]), 3)

    def test_failures_carry_the_plugins_message_and_exit_code(self):
        mux_dir, mux_id = self.new_session("--grid", "x=-2.5:2.5:0.5", "y=-1.5:3.5:0.5")
        p = mpirun(2, "run", mux_id, "--plugin", ROSENBROCK, "--threads", 2, "--retries", 1)
        self.assertEqual(p.returncode, 1, p.stderr)
        r = self.results(mux_dir, mux_id)
        outside = [int(row["index"]) for row in r if not in_box(row["x"], row["y"])]
        self.assertEqual(len(outside), 19)
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (81, 19, 0))
        for row in r:
            if in_box(row["x"], row["y"]):
                self.assertEqual((row["status"], row["attempts"]), (b"done", 1))
                continue
            self.assertEqual((row["status"], row["attempts"], row["exit_code"]), (b"failed", 2, 3))
            message = f"x={row['x']:g} y={row['y']:g} is outside the box [-2, 2] x [-1, 3]"
            self.assertEqual(row["stderr_tail"].decode(), message + "\n")
        listing = mpmux("stat", mux_id, check=0).stdout
        first = outside[0]
        self.assertRegex(listing, rf"element {first}\s+attempts 2\s+exit 3\s+stderr: x=-2\.5 y=-1\.5 is outside")

    def test_retries_and_rerun_failed_call_the_plugin_again(self):
        markers = os.path.join(self.tmp, "markers")
        os.mkdir(markers)
        # With a retry, every element fails once and is done at its second attempt, on any rank.
        mux_dir, mux_id = self.new_session("--range", "30")
        p = mpirun(3, "run", mux_id, "--plugin", self.test_plugin, "--plugin-arg", f"flaky {markers}",
                   "--threads", 2, "--retries", 1)
        self.assertEqual(p.returncode, 0, p.stderr)
        r = self.results(mux_dir, mux_id)
        self.assertEqual([(s, a, res) for s, a, res in zip(r["status"], r["attempts"], r["result"])],
                         [(b"done", 2, b"ok")] * 30)
        # Without: all fail for good; --rerun-failed then hands them out again.
        shutil.rmtree(markers)
        os.mkdir(markers)
        mux_dir, mux_id = self.new_session("--range", "10")
        args = ("run", mux_id, "--plugin", self.test_plugin, "--plugin-arg", f"flaky {markers}", "--threads", 3)
        self.assertEqual(mpirun(2, *args).returncode, 1)
        self.assertEqual(self.stat(mux_id)["failed"], 10)
        self.assertRegex(mpmux("stat", mux_id).stdout, r"element 0\s+attempts 1\s+exit 4\s+stderr: first attempt at 0")
        p = mpirun(2, *args, "--rerun-failed")
        self.assertEqual(p.returncode, 0, p.stderr)
        r = self.results(mux_dir, mux_id)
        self.assertEqual(list(zip(r["status"], r["attempts"])), [(b"done", 2)] * 10)

    def test_a_drain_lets_running_elements_finish_and_a_rerun_resumes(self):
        _, mux_id = self.new_session("--range", "16")
        log = os.path.join(self.tmp, "log")
        proc, err = self.start(0, "run", mux_id, "--plugin", self.test_plugin, "--plugin-arg", f"sleep {log} 0.4",
                               "--threads", 2, "--grace", 30)
        self.wait_for_lines(log, "end", 1, proc)
        proc.send_signal(signal.SIGUSR1)
        self.assertEqual(proc.wait(timeout=60), STOPPED, err.read())
        _, ends, _, starts = read_log(log)
        self.assertEqual(len(starts), len(ends), "an element running at the drain was not let finish")
        for _, start, end, _, _ in ends:
            self.assertGreaterEqual(float(end) - float(start), 0.39, "the drain signal cut a sleep short")
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"]), (len(ends), 0))
        self.assertLess(st["done"], 16)
        # The rerun processes only what was left: over both runs, every element exactly once.
        p = mpirun(2, "run", mux_id, "--plugin", self.test_plugin, "--plugin-arg", f"sleep {log} 0", "--threads", 3)
        self.assertEqual(p.returncode, 0, p.stderr)
        _, ends, _, _ = read_log(log)
        self.assertEqual(sorted(int(e[0]) for e in ends), list(range(16)))
        self.assertEqual(self.stat(mux_id)["done"], 16)

    def test_an_element_running_past_the_grace_is_left_pending(self):
        _, mux_id = self.new_session("--range", "6")
        log = os.path.join(self.tmp, "log")
        proc, err = self.start(2, "run", mux_id, "--plugin", self.test_plugin, "--plugin-arg", f"sleep {log} 120",
                               "--threads", 2, "--grace", 0.5)
        self.wait_for_lines(log, "start", 2, proc)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGUSR1)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("the run waited for elements running past the grace")
        err.seek(0)
        self.assertEqual(code, STOPPED, err.read())
        self.assertLess(time.monotonic() - signalled, 30)
        self.assertEqual(self.counts(mux_id), {"total": 6, "done": 0, "failed": 0, "running": 0, "pending": 6})
        p = mpmux("run", mux_id, "--plugin", self.test_plugin, "--plugin-arg", f"sleep {log} 0", "--threads", 2)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.stat(mux_id)["done"], 6)


class PluginBadInput(TempDirTest):
    @classmethod
    def setUpClass(cls):
        cls.plugins = tempfile.mkdtemp(prefix="mpmux-plugins-")
        cls.no_finalize = build_plugin(cls.plugins, "libnofinalize", "NO_FINALIZE")
        cls.other_abi = build_plugin(cls.plugins, "libotherabi", "ABI=999")
        cls.not_a_library = os.path.join(cls.plugins, "libtext.so")
        with open(cls.not_a_library, "w") as f:
            f.write("this is not a shared library\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.plugins, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.good_dir, self.good_id = self.new_session("--range", "3", "--tag", "good")
        self.before = tree(self.root)

    def assertRefused(self, args, *needles, ranks=(1, 3)):
        """Exit 2, one `mpmux:` line holding every needle, at each number of ranks (1: no mpirun)."""
        for np in ranks:
            with self.subTest(args=args, np=np):
                p = mpmux("run", self.good_id, *args) if np == 1 else mpirun(np, "run", self.good_id, *args)
                self.assertEqual(p.returncode, 2, p.stderr)
                lines = [l for l in p.stderr.splitlines() if l.startswith("mpmux:")]
                self.assertEqual(len(lines), 1, p.stderr)
                for needle in needles:
                    self.assertIn(needle, lines[0])
                self.assertEqual(tree(self.root), self.before, "a refused run changed what is stored")

    def test_a_missing_file(self):
        missing = os.path.join(self.tmp, "nope.so")
        self.assertRefused(["--plugin", missing], missing, "No such file")

    def test_a_file_that_is_no_shared_library(self):
        self.assertRefused(["--plugin", self.not_a_library], self.not_a_library, "shared library", ranks=(1,))

    def test_a_library_without_one_of_the_functions(self):
        self.assertRefused(["--plugin", self.no_finalize], self.no_finalize, "mpmux_task_finalize")

    def test_a_plugin_of_another_abi_version(self):
        self.assertRefused(["--plugin", self.other_abi], self.other_abi, "ABI version 999", ranks=(1,))

    def test_an_init_that_fails_on_the_working_ranks(self):
        self.assertRefused(["--plugin", ROSENBROCK, "--plugin-arg", "1;100", "--threads", 2], ROSENBROCK,
                           "mpmux_task_init", "expected A,B")

    def test_wrong_option_pairings(self):
        self.assertRefused(["--plugin", ROSENBROCK, "--threads", 0], "--threads", ranks=(1,))
        self.assertRefused(["--plugin", ROSENBROCK, "--exec", "true"], "--plugin", "--exec", ranks=(1,))
        self.assertRefused(["--exec", "true", "--threads", 2], "--threads", "--exec", "--procs", ranks=(1,))
        self.assertRefused(["--plugin", ROSENBROCK, "--procs", 2], "--procs", "--plugin", "--threads", ranks=(1,))
        self.assertRefused(["--plugin", ROSENBROCK, "--timeout", 5], "--timeout", "--plugin", ranks=(1,))
        self.assertRefused(["--plugin", ROSENBROCK, "--shell"], "--shell", "--plugin", ranks=(1,))
        self.assertRefused(["--exec", "true", "--plugin-arg", "x"], "--plugin-arg", "--exec", ranks=(1,))


if __name__ == "__main__":
    unittest.main()
