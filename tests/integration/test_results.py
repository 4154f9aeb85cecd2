"""`mpmux results` (csv, jsonl, h5) and the failure list of `mpmux stat`, after real sweeps under
mpirun; and SIGKILLs during `mpmux results --format h5`, which must never leave a partial results.h5."""
import csv
import datetime
import io
import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import time
import unittest

import h5py
import numpy as np

from mpmuxtest import ENV, MPMUX, TempDirTest, mpirun, mpmux

# Element 7 fails with exit 3 and a message on stderr, element 11 dies of SIGKILL, every other
# element prints twice its number.
RANGE_TASK = ("sh -c 'if test $1 -eq 7; then echo \"bad input $1\" >&2; exit 3; fi; "
              "if test $1 -eq 11; then kill -9 $$; fi; echo $(( $1 * 2 ))' x {i}")
RESULT_COLUMNS = ["status", "attempts", "host", "rank", "pid", "start", "end", "duration", "exit_code",
                  "signal", "timed_out", "result", "result_truncated", "stderr_tail"]


def iso_seconds(text):
    """Unix seconds of an ISO 8601 UTC time with microseconds, as the exports write it."""
    t = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp()


def session_dir(mux_id):
    path, session = mux_id[len("file://"):].split("#s=")
    return os.path.join(path, "sessions", session)


class Sweeps(TempDirTest):
    def export(self, mux_id, fmt):
        return mpmux("results", mux_id, "--format", fmt, check=0).stdout

    def check_common(self, rows, expected_rows, started, ended):
        """Rows as dicts of text (CSV) against what each element should give."""
        self.assertEqual(len(rows), len(expected_rows))
        for i, (row, want) in enumerate(zip(rows, expected_rows)):
            with self.subTest(index=i):
                self.assertEqual(row["index"], i)
                for key, value in want.items():
                    self.assertEqual(row[key], value, key)
                self.assertEqual(row["attempts"], 1)
                self.assertEqual(row["host"], socket.gethostname())
                self.assertIn(row["rank"], (1, 2))  # rank 0 coordinates and runs nothing
                self.assertGreater(row["pid"], 0)
                start, end = iso_seconds(row["start"]), iso_seconds(row["end"])
                self.assertLessEqual(started - 1, start)
                self.assertLessEqual(start, end)
                self.assertLessEqual(end, ended + 1)
                self.assertAlmostEqual(row["duration"], end - start, delta=2e-6)
                self.assertFalse(row["timed_out"])
                self.assertFalse(row["result_truncated"])

    def typed_csv(self, text, int_fields=(), float_fields=()):
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        out = []
        for r in rows:
            r = dict(r)
            for k in ("index", "attempts", "rank", "pid", "exit_code", "signal", *int_fields):
                r[k] = int(r[k])
            for k in ("duration", *float_fields):
                r[k] = float(r[k])
            for k in ("timed_out", "result_truncated"):
                self.assertIn(r[k], ("true", "false"))
                r[k] = r[k] == "true"
            out.append(r)
        return out

    def test_range_sweep_exports_every_element_as_it_ran(self):
        n = 30
        _, mux_id = self.new_session("--range", n)
        started = time.time()
        p = mpirun(3, "run", mux_id, "--exec", RANGE_TASK, "--no-progress")
        ended = time.time()
        self.assertEqual(p.returncode, 1, p.stderr)  # some elements failed for good

        expected = []
        for i in range(n):
            if i == 7:
                expected.append(dict(status="failed", exit_code=3, signal=0, result="",
                                     stderr_tail="bad input 7\n"))
            elif i == 11:
                expected.append(dict(status="failed", exit_code=-1, signal=9, result="", stderr_tail=""))
            else:
                expected.append(dict(status="done", exit_code=0, signal=0, result=f"{2 * i}\n",
                                     stderr_tail=""))

        text = self.export(mux_id, "csv")
        self.assertEqual(text.splitlines()[0].split(","), ["index", "i", *RESULT_COLUMNS])
        rows = self.typed_csv(text, int_fields=("i",))
        self.check_common(rows, expected, started, ended)
        self.assertEqual([r["i"] for r in rows], list(range(n)))

        lines = self.export(mux_id, "jsonl").splitlines()
        objects = [json.loads(line) for line in lines]
        for obj in objects:
            self.assertEqual(list(obj), ["index", "i", *RESULT_COLUMNS])
            for key in ("index", "i", "attempts", "rank", "pid", "exit_code", "signal"):
                self.assertIs(type(obj[key]), int, key)
            self.assertIs(type(obj["duration"]), float)
            self.assertIs(type(obj["timed_out"]), bool)
        self.check_common(objects, expected, started, ended)
        # The same rows as the CSV, value for value.
        for obj, row in zip(objects, rows):
            self.assertEqual({k: obj[k] for k in row}, row)

        p = mpmux("results", mux_id, "--format", "h5", check=0)
        path = p.stdout.strip()
        self.assertEqual(path, os.path.join(session_dir(mux_id), "results.h5"))
        with h5py.File(path, "r") as f:
            table = f["results"][:]
            attrs = dict(f["results"].attrs)
        self.assertEqual(list(table.dtype.names), ["index", "i", *RESULT_COLUMNS])
        self.assertEqual(table.dtype["i"], np.int64)
        self.assertEqual(table.dtype["timed_out"], np.bool_)
        self.assertEqual(attrs["format"], "mpmux-results")
        self.assertEqual(attrs["format_version"], 1)
        self.assertEqual(attrs["session"], mux_id.split("#s=")[1])
        self.assertEqual((attrs["total"], attrs["done"], attrs["failed"], attrs["pending"]), (n, n - 2, 2, 0))
        self.assertEqual(attrs["result_encoding"], "utf-8")
        for row, obj in zip(table, objects):
            with self.subTest(index=int(row["index"])):
                self.assertEqual(int(row["index"]), obj["index"])
                self.assertEqual(int(row["i"]), obj["i"])
                self.assertEqual(row["status"].decode(), obj["status"])
                self.assertEqual(int(row["attempts"]), obj["attempts"])
                self.assertEqual(row["host"].decode(), obj["host"])
                self.assertEqual((int(row["rank"]), int(row["pid"])), (obj["rank"], obj["pid"]))
                self.assertAlmostEqual(float(row["start"]), iso_seconds(obj["start"]), delta=2e-6)
                self.assertAlmostEqual(float(row["end"]), iso_seconds(obj["end"]), delta=2e-6)
                self.assertAlmostEqual(float(row["duration"]), obj["duration"], delta=1e-9)
                self.assertEqual((int(row["exit_code"]), int(row["signal"])),
                                 (obj["exit_code"], obj["signal"]))
                self.assertEqual(bool(row["timed_out"]), obj["timed_out"])
                self.assertEqual(row["result"].decode(), obj["result"])
                self.assertEqual(row["stderr_tail"].decode(), obj["stderr_tail"])

        # stat lists both failures with their exit status and stderr; --json keeps its keys.
        out = mpmux("stat", mux_id, check=0).stdout
        self.assertRegex(out, r"(?m)^failed\s+2$")
        self.assertRegex(out, r"(?m)^  element 7  attempts 1  exit 3  stderr: bad input 7$")
        self.assertRegex(out, r"(?m)^  element 11  attempts 1  signal 9 \(SIGKILL\)  \(no stderr\)$")
        self.assertEqual(self.counts(mux_id),
                         {"total": n, "done": n - 2, "failed": 2, "running": 0, "pending": 0})

    def test_grid_with_text_and_float_fields_keeps_their_types(self):
        _, mux_id = self.new_session("--grid", "alpha=0.5,1.25", "name=x,y z", "seed=1:4")
        # The element with name "y z" and seed 2 fails (twice: alpha takes two values).
        task = ("sh -c 'test \"$2\" != \"y z\" -o \"$3\" != 2 || { echo \"no $2\" >&2; exit 4; }; "
                "echo \"$1|$2|$3\"' x {alpha} {name} {seed}").replace("{ ", "{{ ").replace("; }", "; }}")
        started = time.time()
        p = mpirun(3, "run", mux_id, "--exec", task, "--no-progress")
        ended = time.time()
        self.assertEqual(p.returncode, 1, p.stderr)

        grid = list(itertools.product([0.5, 1.25], ["x", "y z"], [1, 2, 3]))
        expected = []
        for alpha, name, seed in grid:
            if name == "y z" and seed == 2:
                expected.append(dict(status="failed", exit_code=4, signal=0, result="",
                                     stderr_tail="no y z\n"))
            else:
                expected.append(dict(status="done", exit_code=0, signal=0, result=f"{alpha}|{name}|{seed}\n"))
        fields = ["alpha", "name", "seed"]

        rows = self.typed_csv(self.export(mux_id, "csv"), int_fields=("seed",), float_fields=("alpha",))
        self.check_common(rows, expected, started, ended)
        self.assertEqual([(r["alpha"], r["name"], r["seed"]) for r in rows], grid)

        objects = [json.loads(line) for line in self.export(mux_id, "jsonl").splitlines()]
        self.check_common(objects, expected, started, ended)
        self.assertEqual([(o["alpha"], o["name"], o["seed"]) for o in objects], grid)
        self.assertTrue(all(type(o["alpha"]) is float and type(o["seed"]) is int for o in objects))

        path = mpmux("results", mux_id, "--format", "h5", check=0).stdout.strip()
        with h5py.File(path, "r") as f:
            table = f["results"][:]
        self.assertEqual(list(table.dtype.names), ["index", *fields, *RESULT_COLUMNS])
        self.assertEqual((table.dtype["alpha"], table.dtype["seed"]), (np.float64, np.int64))
        self.assertEqual(h5py.check_string_dtype(table.dtype["name"]).encoding, "utf-8")
        self.assertEqual([(float(r["alpha"]), r["name"].decode(), int(r["seed"])) for r in table], grid)
        self.assertEqual([r["status"].decode() for r in table], [e["status"] for e in expected])
        self.assertEqual([r["result"].decode() for r in table], [e["result"] for e in expected])
        self.assertEqual([int(r["exit_code"]) for r in table], [e["exit_code"] for e in expected])

        out = mpmux("stat", mux_id, "--verbose", check=0).stdout
        self.assertRegex(out, r"(?m)^  element 4  attempts 1  exit 4  stderr: no y z\n    \| no y z$")
        self.assertRegex(out, r"(?m)^  element 10  attempts 1  exit 4  stderr: no y z$")

    def test_stat_lists_twenty_failures_then_counts_the_rest_and_all_with_all(self):
        # Every element but the even ones below 6 fails: 28 failures, listed in index order.
        _, mux_id = self.new_session("--range", 31)
        p = mpirun(2, "run", mux_id, "--exec", "sh -c 'test $1 -lt 6 -a $(($1 % 2)) -eq 0' x {i}",
                   "--no-progress")
        self.assertEqual(p.returncode, 1, p.stderr)
        failed = [i for i in range(31) if not (i < 6 and i % 2 == 0)]
        listed = re.compile(r"(?m)^  element (\d+)  attempts 1  exit 1  \(no stderr\)$")

        out = mpmux("stat", mux_id, check=0).stdout
        self.assertEqual([int(i) for i in listed.findall(out)], failed[:20])
        self.assertEqual(len(failed), 28)
        self.assertTrue(out.endswith("\n  ... and 8 more (mpmux stat --all lists them)\n"), out)

        out = mpmux("stat", mux_id, "--all", check=0).stdout
        self.assertEqual([int(i) for i in listed.findall(out)], failed)
        self.assertNotIn("more", out)

    def test_output_files_and_bad_arguments(self):
        _, mux_id = self.new_session("--range", 4)
        out = os.path.join(self.tmp, "out.csv")
        p = mpmux("results", mux_id, "-o", out, check=0)  # csv by default
        self.assertEqual(p.stdout, "")
        with open(out, newline="") as f:
            text = f.read()
        self.assertEqual(text, self.export(mux_id, "csv"))
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        self.assertEqual([r["status"] for r in rows], ["pending"] * 4)
        self.assertEqual({r["host"] for r in rows}, {""})

        out = os.path.join(self.tmp, "out.jsonl")
        mpmux("results", mux_id, "--format", "jsonl", "-o", out, check=0)
        with open(out) as f:
            self.assertEqual(f.read(), self.export(mux_id, "jsonl"))

        out = os.path.join(self.tmp, "mine.h5")
        p = mpmux("results", mux_id, "--format", "h5", "-o", out, check=0)
        self.assertEqual(p.stdout.strip(), out)
        with h5py.File(out, "r") as f:
            self.assertEqual(len(f["results"]), 4)
        self.assertFalse(os.path.exists(os.path.join(session_dir(mux_id), "results.h5")))
        self.assertEqual(sorted(os.listdir(self.tmp)), ["mine.h5", "mux", "out.csv", "out.jsonl"])

        missing = os.path.join(self.tmp, "no", "such.csv")
        self.assertUsageError(mpmux("results", mux_id, "-o", missing), missing)
        self.assertUsageError(mpmux("results", mux_id, "-o", self.tmp), self.tmp, "is a directory")
        self.assertUsageError(mpmux("results", mux_id, "--format", "xlsx"), "--format", "xlsx")
        self.assertUsageError(mpmux("results", mux_id.replace("#s=", "#s=0")), "session")


class KilledExport(TempDirTest):
    """SIGKILL at random moments of `mpmux results --format h5`: results.h5 is whole or absent."""

    N = 50000

    def test_a_killed_export_never_leaves_a_partial_file(self):
        _, mux_id = self.new_session("--grid", "a=0:10000", "b=x,y z,w,v,u")
        sdir = session_dir(mux_id)
        target = os.path.join(sdir, "results.h5")

        def check_whole():
            with h5py.File(target, "r") as f:
                self.assertEqual(len(f["results"]), self.N)
                self.assertEqual(f["results"].attrs["total"], self.N)
                b = f["results"]["b"]
            self.assertEqual(b[-1], b"u")

        def temps():
            return [name for name in os.listdir(sdir) if name.startswith(".results.h5.tmp-")]

        # How long a whole export takes here, to spread the kills over it.
        durations = []
        for _ in range(3):
            t0 = time.monotonic()
            mpmux("results", mux_id, "--format", "h5", check=0)
            durations.append(time.monotonic() - t0)
        check_whole()
        duration = sorted(durations)[1]

        rng = random.Random()
        delays = [duration * (k + rng.random()) / 10 for k in range(10)]
        rng.shuffle(delays)
        killed_mid_write = 0
        for k, delay in enumerate(delays):
            with self.subTest(kill=k, delay=delay):
                if k % 2 == 0 and os.path.exists(target):
                    os.unlink(target)  # half the time there is no old file to fall back on
                before = set(temps())
                proc = subprocess.Popen([MPMUX, "results", mux_id, "--format", "h5"], env=ENV,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                if os.path.exists(target):
                    check_whole()
                # A temporary of its own left behind: this one was killed while writing.
                killed_mid_write += bool(set(temps()) - before)
        # Some kills must have hit the writing itself, or this test proved nothing.
        self.assertGreater(killed_mid_write, 0)

        # The next export that runs to its end removes what the killed ones left.
        mpmux("results", mux_id, "--format", "h5", check=0)
        check_whole()
        self.assertEqual(temps(), [])
        self.assertEqual(sorted(os.listdir(sdir)), ["journal", "results.h5", "session.json"])


if __name__ == "__main__":
    unittest.main()
