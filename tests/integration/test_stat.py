"""`mpmux stat` across participants: what the session store holds (heartbeats, claims, done records,
written here by hand as the claimers write them) shown as a table and as --json: live participants,
claimed apart from running, stale batches, rate and ETA, and the fenced done records."""
import json
import os
import shutil
import time
import unittest

from mpmuxtest import TempDirTest, mpmux


class Stat(TempDirTest):
    def setUp(self):
        super().setUp()
        self.mux_dir, self.mux_id = self.new_session("--range", "100")
        self.session = os.path.join(self.mux_dir, "sessions", self.mux_id.split("#s=")[1])
        self.put("rounds/000001.json", {"rerun_failed": False, "unix_ns": 1, "lease_ms": 30000})

    def put(self, key, obj):
        path = os.path.join(self.session, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(obj, f)

    def heartbeat(self, participant, about, age_s=0.0):
        self.put(f"round-000001/participants/{participant}",
                 {"participant": participant, "seq": 1, "unix_ns": time.time_ns() - int(age_s * 1e9),
                  "about": about})

    def claim(self, participant, first, count, epoch=0):
        self.put(f"round-000001/claims/{first:013d}.{epoch}",
                 {"participant": participant, "first": first, "count": count, "epoch": epoch})

    def test_a_session_without_participants_shows_todays_table_and_empty_lists(self):
        self.assertEqual(self.stat(self.mux_id),
                         {"total": 100, "done": 0, "failed": 0, "running": 0, "claimed": 0, "pending": 100,
                          "fenced": 0, "rate": 0.0, "eta_s": None, "participants": [], "stale_batches": []})
        table = mpmux("stat", self.mux_id, check=0).stdout
        self.assertEqual(table.splitlines()[1:],
                         ["total    100", "done     0", "failed   0", "running  0", "pending  100"])

    def test_live_participants_stale_batches_rate_and_eta(self):
        self.heartbeat("node12-4242-1733", {
            "host": "node12", "pid": 4242, "ranks": 3, "done": 30, "failed": 1, "running": 4, "claimed": 20,
            "rate": 8.0, "slurm": {"job_id": "123", "array_job_id": "120", "array_task_id": "3"},
            "claim_paths": [{"window": "counter", "path": "sm"}]})
        self.heartbeat("laptop-77-1", {"host": "laptop", "ranks": 1, "running": 1, "rate": 2.0})
        self.heartbeat("silent-9-9", {"host": "gone", "running": 3, "claimed": 9, "rate": 50.0}, age_s=120)
        self.claim("node12-4242-1733", 0, 24)
        self.claim("silent-9-9", 24, 12)
        self.claim("", 36, 4, epoch=1)  # released
        self.claim("laptop-77-1", 40, 1)

        st = self.stat(self.mux_id)
        self.assertEqual({k: st[k] for k in ("total", "done", "running", "claimed", "pending", "fenced")},
                         {"total": 100, "done": 0, "running": 5, "claimed": 20, "pending": 75, "fenced": 0})
        self.assertEqual(st["rate"], 10.0, "the silent participant's rate is not counted")
        self.assertAlmostEqual(st["eta_s"], 10.0)  # 100 open elements at 10/s
        by_id = {p["id"]: p for p in st["participants"]}
        self.assertEqual(sorted(by_id), ["laptop-77-1", "node12-4242-1733"])
        node = by_id["node12-4242-1733"]
        self.assertEqual({k: node[k] for k in ("host", "pid", "slurm", "ranks", "done", "failed", "running",
                                                "claimed", "rate")},
                         {"host": "node12", "pid": 4242, "ranks": 3, "done": 30, "failed": 1, "running": 4,
                          "claimed": 20, "rate": 8.0,
                          "slurm": {"job_id": "123", "array_job_id": "120", "array_task_id": "3"}})
        self.assertLess(node["heartbeat_age_s"], 60)
        self.assertIsNone(by_id["laptop-77-1"]["slurm"])
        self.assertEqual(st["stale_batches"], [
            {"round": 1, "first": 24, "count": 12, "epoch": 0, "participant": "silent-9-9"},
            {"round": 1, "first": 36, "count": 4, "epoch": 1, "participant": ""}])
        self.assertEqual(st["claim_paths"], {"counter": "sm"})

        lines = mpmux("stat", self.mux_id, check=0).stdout.splitlines()
        self.assertEqual(lines[1:7], ["total    100", "done     0", "failed   0", "running  5", "claimed  20",
                                      "pending  75"])
        self.assertEqual(lines[7], "rate     10.0 elements/s, ETA 10 s")
        self.assertIn("claims   counter sm", lines)
        table = lines[lines.index("participants:") + 1:]
        self.assertEqual(table[0].split(), ["participant", "host", "slurm", "ranks", "heartbeat", "done", "failed",
                                            "running", "claimed", "rate/s"])
        row = next(line for line in table if line.split()[0] == "node12-4242-1733").split()
        self.assertEqual(row[1:4] + row[-5:], ["node12", "120_3", "3", "30", "1", "4", "20", "8.0"])
        self.assertIn("  round 1  elements 24-35 (12)  epoch 0  owner silent-9-9", lines)
        self.assertIn("  round 1  elements 36-39 (4)  epoch 1  released", lines)

    def test_done_records_beside_the_batch_winners_are_fenced_and_counted(self):
        mpmux("run", self.mux_id, "--exec", "echo {i}", "--no-progress", check=0)
        journal_dir = os.path.join(self.session, "journal")
        [journal] = os.listdir(journal_dir)
        # A second participant's journal holding the same records: its results came too late.
        shutil.copy(os.path.join(journal_dir, journal), os.path.join(journal_dir, "late-1-1.mjl"))
        # The run committed its batches: every record of the late copy is fenced.
        self.assertEqual(self.stat(self.mux_id)["fenced"], 100)
        done_dir = os.path.join(self.session, "round-000001", "done")
        for name in os.listdir(done_dir):
            os.remove(os.path.join(done_dir, name))
        self.assertEqual(self.stat(self.mux_id)["fenced"], 0, "without committed batches nothing is fenced")
        self.put("round-000001/done/0000000000000",
                 {"participant": journal[:-len(".mjl")], "epoch": 0, "count": 60})
        st = self.stat(self.mux_id)
        self.assertEqual((st["done"], st["fenced"]), (100, 60))
        self.assertIn("fenced   60", mpmux("stat", self.mux_id, check=0).stdout.splitlines())
        self.assertIn("100 of 100", mpmux("done", self.mux_id, check=0).stdout)


if __name__ == "__main__":
    unittest.main()
