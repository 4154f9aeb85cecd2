"""Participants of a session on az:// (Azurite, through the ctest fixture `azurite`): 4 concurrent
`mpmux run` processes without a launcher, and 2 concurrent `mpirun -n 3` jobs, on one session of
20,000 elements do each element once; and 2 runs whose every store request goes through a
fault-injecting proxy (dropped connections, delays past the client's timeout, 503, and 500 or a
reset after the request took effect) lose nothing and count nothing twice. `mpmux top` shows a run
on az:// with its longest-running element.

The task is the test plugin of test_plugin.py in its "sleep LOG SECONDS" mode: each execution
that ends appends "end <index> ..." to the participant's own log."""
import os
import re
import secrets
import signal
import subprocess
import time
import unittest

import mpmuxtest
from mpmuxtest import MPIEXEC, MPMUX
from test_azure_sessions import ACCOUNT, KEY, azurite_endpoint, blob_request
from test_participants import WithTestPlugin, merged

N = 20000
SOURCE = os.environ.get("MPMUX_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")


class AzureParticipantsTest(WithTestPlugin, mpmuxtest.TempDirTest):

    def setUp(self):
        super().setUp()
        self.procs = []
        self.container = "it" + secrets.token_hex(10)
        status, body = blob_request("PUT", f"/{self.container}", {"restype": "container"})
        self.assertEqual(status, 201, body)
        self.env = dict(mpmuxtest.ENV, AZURE_STORAGE_BLOB_ENDPOINT=azurite_endpoint(), AZURE_STORAGE_KEY=KEY,
                        MPMUX_CACHE=os.path.join(self.tmp, "cache"))
        self.env.pop("AZURE_STORAGE_CONNECTION_STRING", None)

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        blob_request("DELETE", f"/{self.container}", {"restype": "container"})
        super().tearDown()

    def az(self, *args, env=None):
        p = subprocess.run([MPMUX, *args], capture_output=True, text=True, env=env or self.env, timeout=300)
        self.assertEqual(p.returncode, 0, f"mpmux {' '.join(args)}\n{p.stdout}{p.stderr}")
        return p.stdout

    def session(self, n):
        grid = os.path.join(self.tmp, "grid.csv")
        with open(grid, "w") as f:
            f.write("x\n")
            f.writelines(f"{i}\n" for i in range(n))
        mux = self.az("new", f"az://{ACCOUNT}/{self.container}/sweeps", "--from", grid).strip()
        return self.az("session", mux).strip()

    def start(self, name, mux_id, *extra, np=None, env=None):
        """One participant with its own plugin log; returns (process, log)."""
        log = os.path.join(self.tmp, name + ".log")
        cmd = [MPMUX, "run", mux_id, "--plugin", self.plugin, "--plugin-arg", f"sleep {log} 0", "--no-progress",
               *extra]
        if np:
            cmd = [MPIEXEC, "-n", str(np), "--oversubscribe", *cmd]
        with open(os.path.join(self.tmp, name + ".out"), "wb") as out:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env or self.env,
                                 start_new_session=True)
        self.procs.append(p)
        return p, log

    def output(self, name):
        with open(os.path.join(self.tmp, name + ".out")) as f:
            return f.read()

    def rows(self, mux_id):
        import json
        text = self.az("results", mux_id, "--format", "jsonl")
        return {r["index"]: r for r in map(json.loads, text.splitlines())}

    def stat(self, mux_id):
        import json
        return json.loads(self.az("stat", mux_id, "--json"))

    def check_each_done_once(self, mux_id, names, n):
        for name in names:
            self.assertEqual(self.procs[names.index(name)].wait(timeout=900), 0, self.output(name))
        executions = merged(*(os.path.join(self.tmp, name + ".log") for name in names))
        self.assertEqual(sorted(executions), list(range(n)), "some element never ran")
        rows = self.rows(mux_id)
        self.assertEqual(len(rows), n)
        self.assertEqual([i for i, r in rows.items() if r["status"] != "done"], [])
        for name in names:
            log = os.path.join(self.tmp, name + ".log")
            self.assertTrue(os.path.exists(log) and os.path.getsize(log) > 0, f"{name} got no element")
        return executions, rows

    def test_top_shows_a_run_on_az_and_its_longest_running_element(self):
        grid = os.path.join(self.tmp, "sleeps.csv")
        with open(grid, "w") as f:  # element 3 runs until the test ends
            f.write("s\n" + "".join("120\n" if i == 3 else "0.1\n" for i in range(40)))
        mux_id = self.az("session", self.az("new", f"az://{ACCOUNT}/{self.container}/top", "--from", grid).strip())
        mux_id = mux_id.strip()
        with open(os.path.join(self.tmp, "run.out"), "wb") as out:
            self.procs.append(subprocess.Popen(
                [MPMUX, "run", mux_id, "--exec", "sleep {s}", "--lease", "2", "--no-progress"], stdout=out,
                stderr=subprocess.STDOUT, env=self.env, start_new_session=True))
        give_up = time.monotonic() + 120
        while True:  # one frame each time: not on a terminal
            frame = self.az("top", mux_id)
            if "participants (1)" in frame and re.search(r"(?m)^ +3 +1 +\d+ s ", frame):
                break
            self.assertLess(time.monotonic(), give_up, frame + self.output("run"))
            time.sleep(0.2)  # the pace of looking, not a wait for something
        self.assertIn("total 40  done ", frame)
        self.assertIn(mux_id, frame)

    def test_four_runs_without_a_launcher_do_each_element_once(self):
        mux_id = self.session(N)
        names = [f"run{k}" for k in range(4)]
        for name in names:
            self.start(name, mux_id, "--threads", "2")
        executions, rows = self.check_each_done_once(mux_id, names, N)
        self.assertEqual([i for i, k in executions.items() if k > 1], [], "an element ran twice")
        self.assertEqual([i for i, r in rows.items() if r["attempts"] != 1], [])
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["fenced"], st["participants"]), (N, 0, []), st)

    def test_two_mpi_jobs_do_each_element_once(self):
        mux_id = self.session(N)
        names = ["job0", "job1"]
        for name in names:
            self.start(name, mux_id, np=3)
        executions, rows = self.check_each_done_once(mux_id, names, N)
        self.assertEqual([i for i, k in executions.items() if k > 1], [], "an element ran twice")
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["fenced"]), (N, 0), st)

    def test_through_a_faulty_proxy_nothing_is_lost_or_counted_twice(self):
        n = 3000
        mux_id = self.session(n)
        upstream = int(azurite_endpoint().split(":")[2].split("/")[0])
        # Faults on 8% of the requests (every kind, a few hundred requests); a delay of 12 s outlasts
        # the client's 10 s timeout.
        proxy = subprocess.Popen(["/usr/bin/python3", os.path.join(SOURCE, "tests", "unit", "fault_proxy.py"),
                                  str(upstream), "7", "0.08", "12"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            port = int(proxy.stdout.readline().strip().split("=")[1])
            via_proxy = dict(self.env, AZURE_STORAGE_BLOB_ENDPOINT=f"http://127.0.0.1:{port}/{ACCOUNT}")
            names = ["faulty0", "faulty1"]
            for name in names:
                self.start(name, mux_id, "--threads", "2", env=via_proxy)
            executions, rows = self.check_each_done_once(mux_id, names, n)
        finally:
            proxy.stdin.close()
            report = proxy.stdout.read()
            proxy.wait(timeout=60)
        print(f"\nfault proxy: {report.strip()}", flush=True)
        counts = {k: int(v) for k, v in (f.split(":") for f in report.strip().split("=", 1)[1].split())}
        self.assertGreater(sum(counts.values()), 0, f"no fault was injected: {report}")
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (n, 0, 0), st)
        # An element runs twice only when its batch was taken over (a heartbeat delayed past the
        # lease); then exactly one of its done records counts and the others are fenced.
        twice = sum(k - 1 for k in executions.values())
        self.assertEqual(st["fenced"], sum(r["attempts"] - 1 for r in rows.values()), st)
        self.assertLessEqual(st["fenced"], twice, st)


if __name__ == "__main__":
    unittest.main()
