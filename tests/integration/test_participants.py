"""Every run is a participant of its session: concurrent `mpmux run` processes (without a
launcher, and as mpirun jobs) on one session of 20,000 elements do each element once, each in a
journal of its own; a participant killed mid-batch has its batch taken over after the lease; one
stopped past its lease has its late commit fenced.

The task is the test plugin of test_plugin.py in its "sleep LOG SECONDS" mode: each execution
that ends appends "end <index> ..." to the participant's own log."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest, mpmux
from test_crash import read_journals, results_jsonl, session_dir
from test_plugin import build_plugin

N = 20000


def ends(log):
    """index -> executions that ran to the end, from one participant's plugin log."""
    counts = {}
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                if line.startswith("end "):
                    i = int(line.split()[1])
                    counts[i] = counts.get(i, 0) + 1
    return counts


def merged(*logs):
    total = {}
    for log in logs:
        for i, n in ends(log).items():
            total[i] = total.get(i, 0) + n
    return total


def round_objects(mux_id, kind):
    """Names of the objects under round-000001/<kind>/ (claims, done, fenced, participants)."""
    d = os.path.join(session_dir(mux_id), "round-000001", kind)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def claim_records(mux_id):
    d = os.path.join(session_dir(mux_id), "round-000001", "claims")
    out = []
    for name in os.listdir(d):
        with open(os.path.join(d, name)) as f:
            out.append(json.load(f))
    return out


class WithTestPlugin:
    """The test plugin built once for the class (cls.plugin)."""

    @classmethod
    def setUpClass(cls):
        cls.plugins = tempfile.mkdtemp(prefix="mpmux-participants-")
        cls.plugin = build_plugin(cls.plugins, "libtestplugin")

    @classmethod
    def tearDownClass(cls):
        import shutil
        shutil.rmtree(cls.plugins, ignore_errors=True)


class ParticipantsTest(WithTestPlugin, TempDirTest):

    def setUp(self):
        super().setUp()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGCONT)
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        super().tearDown()

    def session(self, n):
        grid = os.path.join(self.tmp, f"grid{n}.csv")
        with open(grid, "w") as f:
            f.write("x\n")
            f.writelines(f"{i}\n" for i in range(n))
        mux_dir = mpmux("new", os.path.join(self.tmp, "mux"), "--from", grid, check=0).stdout.strip()
        return mpmux("session", mux_dir, check=0).stdout.strip()

    def start(self, name, mux_id, seconds, *extra, np=None):
        """Starts one participant (a plain process, or an mpirun job of np ranks) with its own
        plugin log; returns (process, log)."""
        log = os.path.join(self.tmp, name + ".log")
        out = open(os.path.join(self.tmp, name + ".out"), "wb")
        cmd = [MPMUX, "run", mux_id, "--plugin", self.plugin, "--plugin-arg", f"sleep {log} {seconds}",
               "--no-progress", *extra]
        if np:
            cmd = [MPIEXEC, "-n", str(np), "--oversubscribe", *cmd]
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        out.close()
        self.procs.append(p)
        return p, log

    def output(self, name):
        with open(os.path.join(self.tmp, name + ".out")) as f:
            return f.read()

    def wait_for_ends(self, log, count, proc, timeout=120):
        deadline = time.monotonic() + timeout
        while sum(ends(log).values()) < count:
            self.assertIsNone(proc.poll(), f"{log}: the participant ended before {count} elements")
            self.assertLess(time.monotonic(), deadline, f"{log}: no progress")
            time.sleep(0.005)

    def check_all_done_once_each(self, mux_id, logs):
        executions = merged(*logs)
        self.assertEqual(sorted(executions), list(range(N)), "some element never ran")
        rows = results_jsonl(mux_id)
        self.assertEqual(len(rows), N)
        self.assertEqual([i for i, r in rows.items() if r["status"] != "done"], [])
        return executions

    def check_own_journals(self, mux_id, participants):
        """One journal per participant, each written by its one writer only, none torn or cut."""
        journals = read_journals(mux_id)
        self.assertEqual(len(journals), participants)
        for path, header, records, valid, torn in journals:
            pid = int(re.match(r".*-(\d+)-\d+\.mjl$", path).group(1))
            self.assertEqual(header["pid"], pid, path)
            self.assertEqual(torn, 0, path)
        return journals

    def test_four_runs_without_a_launcher_do_each_element_once(self):
        mux_id = self.session(N)
        runs = [self.start(f"run{k}", mux_id, 0, "--threads", "2") for k in range(4)]
        for k, (p, _) in enumerate(runs):
            self.assertEqual(p.wait(timeout=600), 0, self.output(f"run{k}"))
        executions = self.check_all_done_once_each(mux_id, [log for _, log in runs])
        self.assertEqual([i for i, n in executions.items() if n > 1], [], "no batch was reclaimed: none twice")
        for k, (_, log) in enumerate(runs):
            self.assertGreater(len(ends(log)), 0, f"run {k} got no element")
        journals = self.check_own_journals(mux_id, 4)
        self.assertEqual(sum(len(records) for _, _, records, _, _ in journals), N)
        # Each batch has one done record and was claimed once, at epoch 0; nobody is left beating.
        claims = claim_records(mux_id)
        self.assertEqual(sum(c["count"] for c in claims), N)
        self.assertTrue(all(c["epoch"] == 0 for c in claims))
        self.assertEqual(len(round_objects(mux_id, "done")), len(claims))
        self.assertEqual(round_objects(mux_id, "participants"), [])
        self.assertFalse(os.path.exists(os.path.join(session_dir(mux_id), "run.json")))

    def test_two_mpi_jobs_do_each_element_once(self):
        mux_id = self.session(N)
        jobs = [self.start(f"job{k}", mux_id, 0, np=3) for k in range(2)]
        for k, (p, _) in enumerate(jobs):
            self.assertEqual(p.wait(timeout=600), 0, self.output(f"job{k}"))
        executions = self.check_all_done_once_each(mux_id, [log for _, log in jobs])
        self.assertEqual([i for i, n in executions.items() if n > 1], [], "no batch was reclaimed: none twice")
        self.check_own_journals(mux_id, 2)
        claims = claim_records(mux_id)
        self.assertEqual(sum(c["count"] for c in claims), N)
        self.assertTrue(all(c["epoch"] == 0 for c in claims))
        self.assertEqual(round_objects(mux_id, "participants"), [])

    def test_a_killed_participants_batch_is_taken_over_after_the_lease_and_recorded_once(self):
        n = 600
        mux_id = self.session(n)
        victim, victim_log = self.start("victim", mux_id, 0.01, "--lease", "1.5")
        self.wait_for_ends(victim_log, 40, victim)
        survivor, survivor_log = self.start("survivor", mux_id, 0.01, "--lease", "1.5")
        self.wait_for_ends(survivor_log, 5, survivor)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        self.assertEqual(survivor.wait(timeout=300), 0, self.output("survivor"))
        rows = results_jsonl(mux_id)
        self.assertEqual(len(rows), n)
        self.assertEqual([i for i, r in rows.items() if r["status"] != "done"], [])
        reclaimed = [c for c in claim_records(mux_id) if c["epoch"] > 0]
        self.assertTrue(reclaimed, "the killed participant's batch was not taken over")
        in_reclaimed = {i for c in reclaimed for i in range(c["first"], c["first"] + c["count"])}
        executions = merged(victim_log, survivor_log)
        self.assertEqual(sorted(executions), list(range(n)))
        twice = [i for i, k in executions.items() if k > 1]
        self.assertTrue(set(twice) <= in_reclaimed, f"ran twice outside reclaimed batches: {twice}")
        # Each element has one done record, but for those the victim ran to the end without its
        # record reaching the journal before the kill (at most the last few).
        done = {}
        for *_, records, _, _ in read_journals(mux_id):
            for r in records:
                if r["type"] == "done":
                    done[r["index"]] = done.get(r["index"], 0) + 1
        self.assertEqual(sorted(done), list(range(n)))
        self.assertEqual([i for i, k in done.items() if k > 1], [], "an element was recorded twice")

    def test_a_participant_stopped_past_its_lease_has_its_late_commit_fenced(self):
        n = 400
        mux_id = self.session(n)
        sleeper, sleeper_log = self.start("sleeper", mux_id, 0.02, "--lease", "1.5")
        self.wait_for_ends(sleeper_log, 20, sleeper)
        os.killpg(sleeper.pid, signal.SIGSTOP)
        stopped_at = len(ends(sleeper_log))
        other, other_log = self.start("other", mux_id, 0.005, "--lease", "1.5")
        self.assertEqual(other.wait(timeout=300), 0, self.output("other"))
        os.killpg(sleeper.pid, signal.SIGCONT)
        self.assertEqual(sleeper.wait(timeout=300), 0, self.output("sleeper"))
        self.assertGreater(len(ends(sleeper_log)), stopped_at, "the stopped run did nothing after SIGCONT")
        fenced = round_objects(mux_id, "fenced")
        self.assertTrue(fenced, "no commit was fenced")
        self.assertIn("taken over while it was silent past its lease", self.output("sleeper"))
        winners = {}
        for name in round_objects(mux_id, "done"):
            with open(os.path.join(session_dir(mux_id), "round-000001", "done", name)) as f:
                winners[int(name)] = json.load(f)
        for name in fenced:
            first, epoch, participant = name.split(".", 2)
            self.assertNotEqual(winners[int(first)]["participant"], participant)
        rows = results_jsonl(mux_id)
        self.assertEqual([i for i, r in rows.items() if r["status"] != "done"], [])


if __name__ == "__main__":
    unittest.main()
