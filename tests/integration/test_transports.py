"""The transport matrix end to end: `mpmux run --plugin` at 2 and 4 ranks under Open MPI's defaults,
under btl/tcp alone with every worker on the remote path (as ranks on other nodes), under
osc/pt2pt + osc/sm, and with the two-sided claim service forced. Each run processes every element
exactly once (results.h5: every index once, one attempt each), says on rank 0 which path each
window took, and `mpmux stat` shows the paths while the run lasts. Where no one-sided path exists
and MPMUX_CLAIM=one-sided forbids the fallback, the run stops with one line that names the window,
the transport and the settings that would help."""
import json
import os
import subprocess
import time
import unittest

import h5py

from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest, mpmux

BUILD = os.environ.get("MPMUX_BINARY_DIR", "build")
ROSENBROCK = os.path.abspath(os.path.join(BUILD, "plugins", "tasks", "librosenbrock.so"))

# name: (environment, the claim paths rank 0 reports)
TRANSPORTS = {
    "defaults": ({}, "counter sm, elements (node-shared) sm"),
    "tcp": ({"OMPI_MCA_btl": "self,tcp", "MPMUX_RMA_NO_SHARED": "1"},
            "counter sm, elements (node-shared) sm, elements (remote) two-sided"),
    "osc_pt2pt": ({"OMPI_MCA_osc": "pt2pt,sm", "MPMUX_RMA_NO_SHARED": "1"},
                  "counter sm, elements (node-shared) sm, elements (remote) pt2pt"),
    "two_sided": ({"MPMUX_CLAIM": "two-sided"}, "counter two-sided, elements two-sided"),
}


def run(np, env, *args, **kw):
    cmd = [MPIEXEC, "-n", str(np), "--oversubscribe", MPMUX, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(ENV, **env), timeout=600, **kw)


class Transports(TempDirTest):
    def setUp(self):
        super().setUp()
        if not os.path.exists(ROSENBROCK):
            raise AssertionError(f"{ROSENBROCK} is missing: build the rosenbrock target")

    def results(self, mux_id):
        path = mpmux("results", mux_id, "--format", "h5", check=0).stdout.strip()
        with h5py.File(path, "r") as f:
            return f["results"][:]

    def test_every_element_is_processed_once_on_every_transport(self):
        for name, (env, paths) in TRANSPORTS.items():
            for np in (2, 4):
                with self.subTest(transport=name, np=np):
                    _, mux_id = self.new_session("--grid", "x=-2:2:0.05", "y=-1:3:0.1")
                    p = run(np, env, "run", mux_id, "--plugin", ROSENBROCK, "--chunk-max", 64)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertIn(f"mpmux: claim paths: {paths}", p.stderr)
                    self.assertEqual(p.stderr.count("claim paths"), 1, p.stderr)
                    n = 80 * 40
                    self.assertEqual(self.counts(mux_id), {"total": n, "done": n, "failed": 0, "running": 0,
                                                         "pending": 0})
                    r = self.results(mux_id)
                    self.assertEqual(list(r["index"]), list(range(n)))
                    self.assertTrue(all(a == 1 for a in r["attempts"]), "an element was processed twice")
                    self.assertTrue(all(s == b"done" for s in r["status"]), set(r["status"]))
                    self.assertEqual(set(int(k) for k in r["rank"]), set(range(1, np)))

    def test_the_fallback_names_what_failed_before_it(self):
        _, mux_id = self.new_session("--range", 100)
        p = run(2, TRANSPORTS["tcp"][0], "run", mux_id, "--exec", "true")
        self.assertEqual(p.returncode, 0, p.stderr)
        line = next(l for l in p.stderr.splitlines() if "claim paths" in l)
        self.assertIn("elements (remote) two-sided (no one-sided way: MPI_Win_create on window "
                      "'elements (remote)'", line)
        self.assertIn("MPI_ERR_WIN", line)
        self.assertIn("MPI_Win_create_dynamic", line)

    def test_stat_shows_the_paths_while_the_run_lasts(self):
        _, mux_id = self.new_session("--range", 400)
        proc = subprocess.Popen([MPIEXEC, "-n", "2", "--oversubscribe", MPMUX, "run", mux_id, "--exec",
                                 "sleep 0.02", "--no-progress"], env=dict(ENV, MPMUX_CLAIM="two-sided"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                st = self.stat(mux_id)
                if "claim_paths" in st:
                    break
                self.assertIsNone(proc.poll(), "the run ended before stat showed its claim paths")
                self.assertLess(time.monotonic(), deadline, "stat never showed the claim paths")
                time.sleep(0.05)
            self.assertEqual(st["claim_paths"], {"counter": "two-sided", "elements": "two-sided"})
            table = mpmux("stat", mux_id, check=0).stdout
            self.assertIn("claims   counter two-sided, elements two-sided", table)
        finally:
            _, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        self.assertNotIn("claim_paths", self.stat(mux_id), "the paths of a run that ended are not shown")

    def test_one_sided_only_without_a_one_sided_path_is_one_line_naming_window_transport_and_settings(self):
        _, mux_id = self.new_session("--range", 100)
        env = dict(TRANSPORTS["tcp"][0], MPMUX_CLAIM="one-sided")
        p = run(2, env, "run", mux_id, "--exec", "true")
        self.assertEqual(p.returncode, 1, p.stderr)
        lines = [l for l in p.stderr.splitlines() if l.startswith("mpmux: ")]
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn("no one-sided path for window 'elements (remote)' over btl self,tcp", lines[0])
        self.assertIn("--mca osc sm,pt2pt,rdma", lines[0])
        self.assertEqual(self.stat(mux_id)["pending"], 100, "nothing was handed out")

    def test_a_bad_claim_variable_is_a_usage_error(self):
        _, mux_id = self.new_session("--range", 10)
        p = run(2, {"MPMUX_CLAIM": "fast"}, "run", mux_id, "--exec", "true")
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = [l for l in p.stderr.splitlines() if l.startswith("mpmux: ")]
        self.assertEqual(len(lines), 1, p.stderr)  # mpirun adds its own lines about the exit code
        self.assertIn("MPMUX_CLAIM=fast", lines[0])
        self.assertIn("expected auto, one-sided or two-sided", lines[0])


if __name__ == "__main__":
    unittest.main()
