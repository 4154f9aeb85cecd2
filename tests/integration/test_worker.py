"""mpmux run --worker PROGRAM --procs K: persistent worker programs over the socket protocol.
Under mpirun at 2 and 3 ranks every element is done once by K long-lived processes per rank,
with the results the worker computed; an element whose worker fails (an error answer, a death, a
garbled socket, a hang past --timeout) is a failed attempt with the reason, its worker replaced
and the other elements done; a program that cannot start is one line and exit 2 with nothing
stored changed; one that cannot be restarted stops the run; a SIGTERM drain exits 75, nothing
lost. Every run has a timeout in the harness, so that a hang fails the test instead of blocking."""
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import unittest

import h5py

import test_crash as crash
from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest, mpirun, mpmux, tree

SRC = os.path.abspath(os.environ.get("MPMUX_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", ".."))
WORKERS = os.path.join(SRC, "plugins", "workers")
ROSENBROCK_WORKER = os.path.join(WORKERS, "rosenbrock_worker.py")
STOPPED = 75
RUN_TIMEOUT = 180  # seconds any one run may take before the test fails as hung

# A worker for what the example cannot show; the first --worker-arg picks the mode, for
# elements {"i": I} of a --range set (I is the index):
#   log LOG SECONDS      INIT data and pid to LOG.init at setup; each element sleeps SECONDS,
#                        appends I to LOG and answers "I pid"
#   exit-at-start CODE   says why on stderr and exits before reading INIT
#   silent-at-start      never answers INIT
#   garbage-at-start     writes a frame of an unknown type instead of READY
#   die-on I CODE        exits with CODE during element I (every time)
#   die-once-on I DIR    exits with 3 during the first attempt at element I (a marker in DIR)
#   garbage-on I         writes a frame of an unknown type during element I
#   hang-on I            never answers element I
#   unrestartable I DIR  dies during element I; every process started after that exits at once
TEST_WORKER = r"""#!/usr/bin/python3
import json, os, sys, time
sys.dont_write_bytecode = True
sys.path.insert(0, WORKERS)
import mpmux_worker

mode, args = sys.argv[1], sys.argv[2:]
if mode == "exit-at-start":
    print("cannot open the model file", file=sys.stderr)
    sys.exit(int(args[0]))
if mode == "silent-at-start":
    time.sleep(3600)
if mode == "garbage-at-start":
    os.write(int(os.environ["MPMUX_WORKER_FD"]), b"\x01\x00\x00\x00\x09")
    time.sleep(3600)
if mode == "unrestartable" and os.path.exists(os.path.join(args[1], "died")):
    print("the license server refuses a second start", file=sys.stderr)
    sys.exit(4)


def setup(info):
    if mode == "log":
        with open(args[0] + ".init", "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "info": info}) + "\n")


def task(element, state):
    i = element["i"]
    if mode == "log":
        time.sleep(float(args[1]))
        with open(args[0], "a") as f:
            f.write("%d\n" % i)
    elif mode == "die-on" and i == int(args[0]):
        print("about to die on", i, file=sys.stderr, flush=True)
        os._exit(int(args[1]))
    elif mode == "die-once-on" and i == int(args[0]):
        marker = os.path.join(args[1], "died")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)
    elif mode == "garbage-on" and i == int(args[0]):
        os.write(int(os.environ["MPMUX_WORKER_FD"]), b"\x01\x00\x00\x00\x09")
        time.sleep(3600)
    elif mode == "hang-on" and i == int(args[0]):
        time.sleep(3600)
    elif mode == "unrestartable" and i == int(args[0]):
        open(os.path.join(args[1], "died"), "w").close()
        os._exit(1)
    return "%d %d" % (i, os.getpid())


mpmux_worker.main(task, setup)
"""


def rosenbrock(x, y, a=1.0, b=100.0):
    """What the example worker computes, in the same order of operations."""
    return (a - x) * (a - x) + b * (y - x * x) * (y - x * x)


def in_box(x, y):
    return -2 <= x <= 2 and -1 <= y <= 3


def results(mux_dir, mux_id):
    session = mux_id.split("#s=")[1]
    with h5py.File(os.path.join(mux_dir, "sessions", session, "results.h5"), "r") as f:
        return f["/results"][:]


class WorkerTestBase(TempDirTest):
    @classmethod
    def setUpClass(cls):
        crash.become_subreaper()
        cls.workers = tempfile.mkdtemp(prefix="mpmux-workers-")
        cls.test_worker = os.path.join(cls.workers, "test_worker.py")
        with open(cls.test_worker, "w") as f:
            f.write(TEST_WORKER.replace("sys.path.insert(0, WORKERS)", f"sys.path.insert(0, {WORKERS!r})"))
        os.chmod(cls.test_worker, 0o755)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.workers, ignore_errors=True)

    def tearDown(self):
        crash.reap_orphans()  # no worker a failed test started outlives it
        super().tearDown()

    def run_mux(self, np, *args):
        """mpmux ARGS alone (np 0) or under mpirun -n NP, failing the test if it hangs."""
        if np:
            return mpirun(np, *args, timeout=RUN_TIMEOUT)
        return mpmux(*args, timeout=RUN_TIMEOUT)

    def worker(self, *args):
        """--worker options running the test worker with ARGS."""
        out = ["--worker", self.test_worker]
        for a in args:
            out += [f"--worker-arg={a}"]
        return out


class WorkerTest(WorkerTestBase):
    def test_every_element_is_done_once_at_2_and_3_ranks_with_2_procs(self):
        for np, init in ((2, None), (3, "0.5,10")):
            with self.subTest(np=np):
                mux_dir, mux_id = self.new_session("--grid", "x=-2:2:0.25", "y=-1:3:0.25")
                extra = ["--worker-init", init] if init else []
                p = self.run_mux(np, "run", mux_id, "--worker", ROSENBROCK_WORKER, "--procs", 2, *extra)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(self.counts(mux_id), {"total": 256, "done": 256, "failed": 0, "running": 0,
                                                     "pending": 0})
                r = results(mux_dir, mux_id)
                self.assertEqual(list(r["index"]), list(range(256)))
                self.assertTrue(all(a == 1 for a in r["attempts"]), "an element was processed twice")
                a, b = map(float, (init or "1,100").split(","))
                for row in r:
                    self.assertEqual(float(row["result"].decode()), rosenbrock(row["x"], row["y"], a, b), row)
                self.assertEqual(set(int(k) for k in r["rank"]), set(range(1, np)))

    def test_each_slot_starts_one_process_that_gets_its_init_data_and_many_elements(self):
        _, mux_id = self.new_session("--range", "40")
        log = os.path.join(self.tmp, "log")
        p = self.run_mux(3, "run", mux_id, *self.worker("log", log, 0), "--procs", 2, "--worker-init", "hello")
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(log + ".init") as f:
            inits = [json.loads(line) for line in f]
        self.assertEqual(len(inits), 4, "one process per slot of each working rank, started once")
        mux_ids = {i["info"]["mux_id"] for i in inits}
        self.assertEqual(mux_ids, {mux_id})
        self.assertEqual(sorted((i["info"]["rank"], i["info"]["slot"]) for i in inits),
                         [(1, 0), (1, 1), (2, 0), (2, 1)])
        self.assertTrue(all(i["info"]["slots"] == 2 and i["info"]["init"] == "hello" for i in inits), inits)
        self.assertEqual(crash.executions(log), {i: 1 for i in range(40)})
        # Every element was answered by one of those four processes (no process per element).
        pids = {i["pid"] for i in inits}
        r = crash.results_jsonl(mux_id)
        answered = {int(row["result"].split()[1]) for row in r.values()}
        self.assertLessEqual(answered, pids)

    def test_an_error_answer_fails_the_element_with_its_text_and_traceback(self):
        mux_dir, mux_id = self.new_session("--grid", "x=-2.5:2.5:0.5", "y=-1.5:3.5:0.5")
        p = self.run_mux(2, "run", mux_id, "--worker", ROSENBROCK_WORKER, "--procs", 2, "--retries", 1)
        self.assertEqual(p.returncode, 1, p.stderr)
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (81, 19, 0))
        for row in results(mux_dir, mux_id):
            if in_box(row["x"], row["y"]):
                self.assertEqual((row["status"], row["attempts"]), (b"done", 1))
                continue
            self.assertEqual((row["status"], row["attempts"], row["exit_code"]), (b"failed", 2, 1))
            tail = row["stderr_tail"].decode()
            self.assertIn("Traceback (most recent call last)", tail)
            message = f"ValueError: x={row['x']:g} y={row['y']:g} is outside the box [-2, 2] x [-1, 3]"
            self.assertEqual(tail.splitlines()[-1], message)
        self.assertRegex(mpmux("stat", mux_id).stdout, r"element 0\s+attempts 2\s+exit 1\s+stderr: ValueError: x=-2\.5")

    def test_a_worker_that_dies_on_one_element_is_replaced_and_the_others_are_done(self):
        for np in (0, 2):
            with self.subTest(np=np):
                mux_dir, mux_id = self.new_session("--range", "30")
                p = self.run_mux(np, "run", mux_id, *self.worker("die-on", 7, 5), "--procs", 2)
                self.assertEqual(p.returncode, 1, p.stderr)
                st = self.stat(mux_id)
                self.assertEqual((st["done"], st["failed"], st["pending"]), (29, 1, 0))
                row = results(mux_dir, mux_id)[7]
                self.assertEqual((row["status"], row["exit_code"], row["signal"]), (b"failed", 5, 0))
                tail = row["stderr_tail"].decode().splitlines()
                self.assertEqual(tail[0], "about to die on 7", "the worker's own stderr is kept")
                self.assertRegex(tail[-1], r"^mpmux: worker program .*test_worker\.py \(pid \d+\) died during task 7 "
                                           r"\(status 5\); a new process takes its place$")
                # The element after it on that slot went to a new process.
                pids = {int(r.split()[1]) for r in results(mux_dir, mux_id)["result"] if r}
                self.assertEqual(len(pids), 3, "two processes, and one that replaced the dead one")

    def test_a_retry_after_a_death_succeeds_on_the_replacement(self):
        markers = os.path.join(self.tmp, "markers")
        os.mkdir(markers)
        mux_dir, mux_id = self.new_session("--range", "12")
        p = self.run_mux(2, "run", mux_id, *self.worker("die-once-on", 4, markers), "--retries", 1)
        self.assertEqual(p.returncode, 0, p.stderr)
        r = results(mux_dir, mux_id)
        self.assertEqual([(s, a) for s, a in zip(r["status"], r["attempts"])],
                         [(b"done", 2) if i == 4 else (b"done", 1) for i in range(12)])

    def test_garbage_on_the_socket_fails_the_element_and_kills_the_worker(self):
        mux_dir, mux_id = self.new_session("--range", "10")
        p = self.run_mux(2, "run", mux_id, *self.worker("garbage-on", 3), "--procs", 2)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(self.counts(mux_id)["done"], 9)
        row = results(mux_dir, mux_id)[3]
        self.assertEqual((row["status"], row["exit_code"], row["signal"]), (b"failed", -1, signal.SIGKILL))
        self.assertIn("wrote garbage during task 3: unknown frame type 9", row["stderr_tail"].decode())

    def test_a_worker_past_the_timeout_is_killed_and_the_element_fails(self):
        mux_dir, mux_id = self.new_session("--range", "10")
        p = self.run_mux(2, "run", mux_id, *self.worker("hang-on", 6), "--procs", 2, "--timeout", 1)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(self.counts(mux_id)["done"], 9)
        row = results(mux_dir, mux_id)[6]
        self.assertEqual((row["status"], row["signal"]), (b"failed", signal.SIGKILL))
        tail = row["stderr_tail"].decode()
        self.assertIn("mpmux: timed out after 1 s\n", tail)
        self.assertIn("timed out during task 6", tail)

    def test_a_worker_that_cannot_be_restarted_stops_the_run_with_one_line(self):
        for np in (0, 2):
            with self.subTest(np=np):
                markers = os.path.join(self.tmp, f"markers{np}")
                os.mkdir(markers)
                _, mux_id = self.new_session("--range", "30")
                p = self.run_mux(np, "run", mux_id, *self.worker("unrestartable", 5, markers), "--no-progress")
                self.assertEqual(p.returncode, STOPPED, p.stderr)
                lines = [l for l in p.stderr.splitlines() if l.startswith("mpmux:")]
                self.assertEqual(len(lines), 1, p.stderr)
                self.assertRegex(lines[0], r"^mpmux: stopped \(rank \d: --worker: no new process started after 3 tries: "
                                           r"worker program .* exited at once \(status 4\) before READY; its last "
                                           r"output: the license server refuses a second start\)")
                st = self.stat(mux_id)
                self.assertEqual(st["failed"], 1)  # element 5, with its worker
                self.assertEqual(st["done"] + st["failed"] + st["pending"], 30, "an element was lost")
                self.assertGreater(st["pending"], 0)
                # Resumable: a good worker finishes what was left.
                p = self.run_mux(np, "run", mux_id, *self.worker("log", os.path.join(self.tmp, f"log{np}"), 0))
                self.assertEqual(p.returncode, 1, p.stderr)  # element 5 is still failed for good
                self.assertEqual(self.counts(mux_id)["done"], 29)

    def test_sigterm_drains_the_run_and_a_rerun_resumes_with_nothing_lost(self):
        _, mux_id = self.new_session("--range", "40")
        log = os.path.join(self.tmp, "log")
        out_path = os.path.join(self.tmp, "run.out")
        args = ["run", mux_id, *self.worker("log", log, 0.4), "--procs", 2, "--no-progress"]
        proc = crash.start_mpirun(3, args, out_path)
        try:
            self.assertTrue(crash.wait_for_lines(log, 2, proc, timeout=RUN_TIMEOUT))
            ranks = [pid for pid in crash.descendants(proc.pid) if open(f"/proc/{pid}/comm").read().strip() == "mpmux"]
            self.assertEqual(len(ranks), 3)
            crash.signal_each(ranks, signal.SIGTERM)  # as Slurm does at the time limit (and mpirun)
            code = proc.wait(timeout=RUN_TIMEOUT)
        finally:
            if proc.poll() is None:
                crash.kill_job(proc)
        with open(out_path) as f:
            out = f.read()
        self.assertEqual(code, STOPPED, out)
        self.assertRegex(out, r"mpmux: stopped \(stop signal received\): \d+ of 40 elements done")
        st = self.stat(mux_id)
        self.assertEqual(st["failed"], 0, "a drain failed an element")
        counts = crash.executions(log)
        self.assertEqual(set(crash.done_records(mux_id)), set(counts), "ran but not recorded, or the reverse")
        self.assertLess(st["done"], 40)
        p = self.run_mux(2, *args)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(crash.executions(log), {i: 1 for i in range(40)})


class WorkerBadInput(WorkerTestBase):
    def setUp(self):
        super().setUp()
        _, self.good_id = self.new_session("--range", "3", "--tag", "good")
        self.before = tree(self.root)

    def assertRefused(self, args, *needles, ranks=(1, 3)):
        """Exit 2, one `mpmux:` line holding every needle (and nothing else without mpirun), at
        each number of ranks (1: no mpirun), nothing stored changed."""
        for np in ranks:
            with self.subTest(args=args, np=np):
                p = self.run_mux(0 if np == 1 else np, "run", self.good_id, *args)
                self.assertEqual(p.returncode, 2, p.stderr)
                # mpirun adds its own banner about the exit code; mpmux's part is one line.
                lines = [l for l in p.stderr.splitlines() if l.startswith("mpmux:")]
                self.assertEqual(len(lines), 1, p.stderr)
                if np == 1:
                    self.assertEqual(p.stderr.strip(), lines[0])
                for needle in needles:
                    self.assertIn(needle, lines[0])
                self.assertEqual(tree(self.root), self.before, "a refused run changed what is stored")

    def test_a_program_that_does_not_exist(self):
        missing = os.path.join(self.tmp, "nope.py")
        self.assertRefused(["--worker", missing], missing, "No such file or directory")
        self.assertRefused(["--worker", "mpmux-no-such-worker"], "'mpmux-no-such-worker': not found in PATH", ranks=(1,))

    def test_a_program_that_is_not_executable(self):
        plain = os.path.join(self.tmp, "plain.py")
        shutil.copy(self.test_worker, plain)
        os.chmod(plain, stat.S_IRUSR | stat.S_IWUSR)
        self.assertRefused(["--worker", plain], plain, "cannot execute: Permission denied")

    def test_a_program_that_exits_at_start(self):
        self.assertRefused(self.worker("exit-at-start", 3), "exited at once (status 3) before READY",
                           "its last output: cannot open the model file")

    def test_a_program_that_never_answers_init(self):
        self.assertRefused([*self.worker("silent-at-start"), "--worker-start-timeout", 1],
                           "timed out during start after 1000 ms")

    def test_a_program_that_writes_garbage_at_start(self):
        self.assertRefused(self.worker("garbage-at-start"), "wrote garbage during start: unknown frame type 9",
                           ranks=(1,))

    def test_wrong_option_pairings(self):
        w = ["--worker", ROSENBROCK_WORKER]
        self.assertRefused([*w, "--exec", "true"], "--exec and --worker", ranks=(1,))
        self.assertRefused([*w, "--threads", 2], "--threads", "--worker", "--procs", ranks=(1,))
        self.assertRefused([*w, "--plugin-arg", "x"], "--plugin-arg goes with --plugin, not --worker", ranks=(1,))
        self.assertRefused([*w, "--shell"], "--shell goes with --exec, not --worker", ranks=(1,))
        self.assertRefused(["--exec", "true", "--worker-arg", "x"], "--worker-arg goes with --worker, not --exec",
                           ranks=(1,))
        self.assertRefused(["--exec", "true", "--worker-init", "x"], "--worker-init goes with --worker", ranks=(1,))
        self.assertRefused([*w, "--procs", 0], "--procs", ranks=(1,))


class PluginPath(TempDirTest):
    """Part 6 of the issue for --plugin: a path that is no loadable library is one line too."""

    def test_a_plugin_that_does_not_exist_or_is_a_directory(self):
        _, mux_id = self.new_session("--range", "3")
        before = tree(self.root)
        for path, needle in ((os.path.join(self.tmp, "nope.so"), "No such file or directory"),
                             (self.tmp, "not a file")):
            with self.subTest(path=path):
                p = mpmux("run", mux_id, "--plugin", path, timeout=RUN_TIMEOUT)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertEqual(p.stderr.strip().splitlines(), [f"mpmux: --plugin '{path}': {needle}"])
        self.assertEqual(tree(self.root), before)


if __name__ == "__main__":
    unittest.main()
