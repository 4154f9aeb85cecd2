"""The Python package (plugins/python/mpmux) from the build tree (BUILD/python) and installed:
element sets of JSON values, sessions, the loop in threads, in multiprocessing processes and
under mpirun with mpi4py, failures out of the loop body, bad input, the ABI check."""
import csv
import glob
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import unittest

import h5py

from mpmuxtest import ENV, MPIEXEC, TempDirTest

BUILD = os.environ.get("MPMUX_BINARY_DIR", "build")
HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.abspath(os.path.join(BUILD, "python"))
sys.path.insert(0, PACKAGE)
sys.path.insert(0, HERE)

import mpmux  # noqa: E402  (from the build tree, put on the path above)
from mpmux import Multiplexer, UsageError  # noqa: E402

import python_loop  # noqa: E402

# Child processes (spawned, mpirun) find the package and the workers as this process does.
CHILD_ENV = dict(ENV, PYTHONPATH=os.pathsep.join([PACKAGE, HERE]))


def run_python(code, *args, env=CHILD_ENV, timeout=300):
    """Runs `code` (a script) with Debian's python3; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def results(mux):
    """The rows of the session's results.h5, rebuilt now."""
    with h5py.File(mux.export_results("h5"), "r") as f:
        return f["/results"][:]


class PythonPackage(TempDirTest):
    def x_set(self, n):
        """A session of n elements {"x": 0} .. {"x": n - 1}; returns (the set's Multiplexer, mux id)."""
        mux = Multiplexer.new(({"x": i} for i in range(n)), self.root, tag="py")
        return mux, mux.create_read_session()

    def assertEachOnce(self, mux, mux_id, per_worker, n):
        """Every element was handed to exactly one worker and is done once, with its result."""
        got = sorted(i for indices in per_worker for i in indices)
        self.assertEqual(got, list(range(n)))
        st = mux.stat(mux_id)
        self.assertEqual((st["total"], st["done"], st["failed"], st["pending"]), (n, n, 0, 0))
        rows = results(Multiplexer(mux_id))
        self.assertTrue(all(s == b"done" for s in rows["status"]))
        self.assertTrue(all(a == 1 for a in rows["attempts"]), "an element was attempted twice")
        self.assertEqual([int(r) for r in rows["result"]], [2 * i for i in range(n)])

    def test_a_set_is_made_iterated_counted_and_destroyed(self):
        values = [0, -7, 1.5, "two", [3, [4]], {"five": 5, "six": [6]}, None, True, "ünïcode"]
        data = iter(values)  # any iterable, also one that can be read only once
        mux = Multiplexer.new(data, self.root, tag="mixed")
        self.assertTrue(os.path.isfile(os.path.join(mux.mux_id, "elements.h5")), mux.mux_id)
        self.assertEqual(os.path.basename(mux.mux_id)[-6:], "-mixed")
        self.assertEqual(len(mux), len(values))
        mux_id = mux.create_read_session()
        self.assertTrue(mux_id.startswith("file://") and "#s=" in mux_id, mux_id)
        self.assertNotEqual(mux_id, mux.create_read_session(), "each session is new")
        self.assertEqual(mux.stat(mux_id)["pending"], len(values))
        self.assertFalse(mux.done(mux_id))

        work = Multiplexer(mux_id)
        self.assertEqual(len(work), len(values))
        seen = []
        for value in work:
            seen.append(value)
            work.set_result(value if isinstance(value, str) else {"got": value})
        self.assertEqual(seen, values)
        self.assertEqual(work.summary["done"], len(values))
        self.assertTrue(work.done())
        self.assertTrue(mux.done(mux_id))
        st = work.stat()
        self.assertLessEqual({"total", "done", "failed", "running", "claimed", "pending", "fenced", "rate",
                              "eta_s", "participants", "stale_batches"}, set(st), "the keys of mpmux stat --json")
        self.assertEqual((st["total"], st["done"], st["pending"]), (len(values), len(values), 0))
        rows = results(work)
        self.assertEqual(rows["result"][3], b"two")
        self.assertEqual(json.loads(rows["result"][5]), {"got": {"five": 5, "six": [6]}})
        self.assertEqual(list(Multiplexer(mux_id)), [], "a finished session hands out nothing more")

        mux.destroy()
        self.assertFalse(os.path.exists(mux.mux_id))
        with self.assertRaises(UsageError) as caught:
            work.stat()
        self.assertIn("does not exist", str(caught.exception))

    def test_an_element_that_is_not_an_object_is_exported_as_its_value(self):
        values = [7, "x y", [1, [2]], {"a": 1}, 2.5]
        mux = Multiplexer.new(values, self.root, tag="values")
        mux_id = mux.create_read_session()
        for _ in Multiplexer(mux_id):
            pass
        path = os.path.join(self.root, "results.csv")
        with open(Multiplexer(mux_id).export_results("csv", path), newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([r["value"] for r in rows[:2]] + [r["value"] for r in rows[3:]], ["7", "x y", "", "2.5"])
        self.assertEqual(json.loads(rows[2]["value"]), [1, [2]])
        self.assertEqual([r["a"] for r in rows], ["", "", "", "1", ""])

    def test_elements_carry_index_attempt_and_their_result(self):
        mux, mux_id = self.x_set(20)
        work = Multiplexer(mux_id)
        for e in work.elements():
            self.assertEqual(e.value, {"x": e.index})
            self.assertEqual(e.attempt, 1)
            e.set_result(str(2 * e.index))
        self.assertEachOnce(mux, mux_id, [range(20)], 20)
        self.assertIn(" ", Multiplexer(mux_id).worker_id, "the default names the process and thread")
        self.assertEqual(Multiplexer(mux_id, worker_id="w7").worker_id, "w7")

    def test_each_element_goes_to_one_of_four_threads(self):
        n = 400
        mux, mux_id = self.x_set(n)
        per_thread = [[] for _ in range(4)]
        errors = []

        def worker(k):
            try:
                per_thread[k] = python_loop.work(mux_id)
            except BaseException as error:  # reported by the test, not lost in the thread
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEachOnce(mux, mux_id, per_thread, n)

    def test_each_element_goes_to_one_of_four_processes(self):
        n = 400
        mux, mux_id = self.x_set(n)
        # Spawned (not forked) interpreters, which get this one's sys.path; the Multiplexer itself
        # is pickled to them, as its mux id.
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            per_process = pool.map(python_loop.work, [Multiplexer(mux_id)] * 4, chunksize=1)
        self.assertEachOnce(mux, mux_id, per_process, n)

    def mpirun_loop(self, np):
        n = 300
        mux, mux_id = self.x_set(n)
        out = os.path.join(self.tmp, f"out-{np}")
        os.mkdir(out)
        p = subprocess.run([MPIEXEC, "-n", str(np), "--oversubscribe", sys.executable,
                            os.path.join(HERE, "python_loop.py"), mux_id, out, "--comm"],
                           capture_output=True, text=True, env=CHILD_ENV, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        reports = []
        for name in glob.glob(os.path.join(out, "*.json")):
            with open(name) as f:
                reports.append(json.load(f))
        self.assertEqual(sorted(r["rank"] for r in reports), list(range(np)))
        self.assertEqual([r["indices"] for r in reports if r["rank"] == 0], [[]], "rank 0 coordinates")
        self.assertEachOnce(mux, mux_id, [r["indices"] for r in reports], n)

    def test_each_element_goes_to_one_rank_under_mpirun_with_two_ranks(self):
        self.mpirun_loop(2)

    def test_each_element_goes_to_one_rank_under_mpirun_with_three_ranks(self):
        self.mpirun_loop(3)

    def test_an_exception_out_of_the_loop_body_fails_that_element_and_goes_on(self):
        mux, mux_id = self.x_set(10)
        work = Multiplexer(mux_id)

        def loop():
            for value in work:
                if value["x"] == 3:
                    raise ValueError(f"no good: {value['x']}")

        with self.assertRaisesRegex(ValueError, "no good: 3"):
            loop()
        st = mux.stat(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (3, 1, 6))
        row = results(work)[3]
        self.assertEqual(row["status"], b"failed")
        self.assertIn(b"ValueError: no good: 3", row["stderr_tail"])
        self.assertIn(b"in loop", row["stderr_tail"], "the traceback is kept")

        # The next loop gets the rest; the failed element waits for rerun-failed.
        self.assertEqual(sorted(v["x"] for v in Multiplexer(mux_id)), [4, 5, 6, 7, 8, 9])

    def test_an_exception_handled_beside_the_loop_fails_that_element(self):
        mux, mux_id = self.x_set(5)
        work = Multiplexer(mux_id)
        try:
            for value in work:
                if value["x"] == 1:
                    {}["missing key"]
        except KeyError:
            pass
        self.assertEqual((mux.stat(mux_id)["done"], mux.stat(mux_id)["failed"]), (1, 1))
        self.assertIn(b"KeyError: 'missing key'", results(work)[1]["stderr_tail"])

    def test_break_leaves_the_current_element_done_and_the_rest_pending(self):
        mux, mux_id = self.x_set(10)
        work = Multiplexer(mux_id)
        for value in work:
            if value["x"] == 2:
                break
        st = mux.stat(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (3, 0, 7))

    def test_an_uncaught_exception_at_the_top_of_a_program_fails_its_element(self):
        mux, mux_id = self.x_set(6)
        p = run_python("""
            import sys
            from mpmux import Multiplexer
            for value in Multiplexer(sys.argv[1]):
                if value["x"] == 4:
                    raise RuntimeError("stopped at four")
            """, mux_id)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("RuntimeError: stopped at four", p.stderr, "the exception is reported as always")
        st = mux.stat(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (4, 1, 1))
        self.assertIn(b"RuntimeError: stopped at four", results(mux.__class__(mux_id))[4]["stderr_tail"])

    def test_timeout_ends_the_loop_and_leaves_the_rest_pending(self):
        mux, mux_id = self.x_set(100)
        work = Multiplexer(mux_id, timeout=0.5)
        got = 0
        for _ in work:
            got += 1
            time.sleep(0.1)  # the task: 100 of them take 10 s, five times the timeout
        self.assertGreater(got, 0)
        self.assertLess(got, 100)
        self.assertTrue(work.summary["stopped"])
        st = mux.stat(mux_id)
        self.assertEqual((st["done"], st["pending"]), (got, 100 - got))
        self.assertEqual(len(list(Multiplexer(mux_id))), 100 - got, "a later loop takes the rest")

    def test_a_non_communicator_is_one_type_error_naming_it(self):
        _, mux_id = self.x_set(3)
        for comm, shown in ((5, "int: 5"), ("world", "str: 'world'"), (object, "type: <class 'object'>")):
            with self.assertRaises(TypeError) as caught:
                Multiplexer(mux_id, comm=comm)
            message = str(caught.exception)
            self.assertEqual(len(message.splitlines()), 1, message)
            self.assertIn("mpi4py communicator", message)
            self.assertIn(shown, message)

    def test_bad_input_is_a_usage_error_that_changes_nothing(self):
        with self.assertRaisesRegex(UsageError, r"element 2 of the data is not JSON"):
            Multiplexer.new([1, 2, {3}], self.root)
        with self.assertRaisesRegex(UsageError, r"element 1 of the data is not JSON"):
            Multiplexer.new([1, float("nan")], self.root)
        with self.assertRaises(UsageError):
            Multiplexer.new([], self.root)
        self.assertFalse(os.path.exists(self.root) and os.listdir(self.root), "nothing was stored")
        _, mux_id = self.x_set(3)
        with self.assertRaises(UsageError):
            list(Multiplexer(mux_id.replace("#s=", "#s=0")))
        with self.assertRaisesRegex(UsageError, "timeout"):
            Multiplexer(mux_id, timeout=0)
        with self.assertRaisesRegex(TypeError, "timeout"):
            Multiplexer(mux_id, timeout="10")
        with self.assertRaisesRegex(UsageError, "inside the loop"):
            Multiplexer(mux_id).set_result("x")
        self.assertIsInstance(UsageError("x"), ValueError)
        self.assertEqual(self.counts(mux_id)["pending"], 3)

    def test_an_element_takes_a_result_only_while_it_is_current(self):
        _, mux_id = self.x_set(3)
        work = Multiplexer(mux_id)
        seen = list(work.elements())
        with self.assertRaisesRegex(UsageError, "element 0 is no longer the current one"):
            seen[0].set_result("late")
        self.assertEqual(results(work)["result"].tolist(), [b"", b"", b""])

    def test_a_multiplexer_pickles_as_its_mux_id(self):
        _, mux_id = self.x_set(3)
        copy = pickle.loads(pickle.dumps(Multiplexer(mux_id, worker_id="w", timeout=5)))
        self.assertEqual((copy.mux_id, copy.worker_id), (mux_id, "w"))
        self.assertEqual(len(list(copy)), 3)

    def test_an_abi_mismatch_is_one_clear_error(self):
        _, mux_id = self.x_set(3)
        # The package's own check, when the library is loaded.
        p = run_python("""
            import sys
            import mpmux, mpmux._library
            mpmux._library.ABI_VERSION = 99
            try:
                len(mpmux.Multiplexer(sys.argv[1]))
            except mpmux.AbiMismatchError as error:
                print(error)
            """, mux_id)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout.strip(), r"^mpmux: \S+libmpmux\.so\.0 implements C ABI 1, this Python package .* "
                                           r"speaks ABI 99: use the package and the library of one build")
        # The library's check of the version each handle-making call passes.
        p = run_python("""
            import sys
            import mpmux, mpmux._library
            print(len(mpmux.Multiplexer(sys.argv[1])))
            mpmux._library.ABI_VERSION = 99
            try:
                list(mpmux.Multiplexer(sys.argv[1]))
            except mpmux.AbiMismatchError as error:
                print(error)
            """, mux_id)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.strip().splitlines()
        self.assertEqual(lines[0], "3")
        self.assertRegex(lines[1], r"ABI version 99, but this libmpmux has ABI version 1\b")

    def test_a_missing_library_is_one_clear_error(self):
        p = run_python("""
            import mpmux
            try:
                mpmux.Multiplexer.new([1], "/nonexistent")
            except mpmux.MuxError as error:
                print(error)
            """, env=dict(CHILD_ENV, MPMUX_LIBRARY="/nonexistent/libmpmux.so.0"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "mpmux: cannot load libmpmux; tried /nonexistent/libmpmux.so.0 "
                                           "(missing). Set MPMUX_LIBRARY to the library's path")

    def test_the_installed_package_imports_and_runs_from_its_prefix(self):
        prefix = os.path.join(self.tmp, "prefix")
        p = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], capture_output=True, text=True,
                           env=ENV, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        inits = glob.glob(os.path.join(prefix, "lib*", "python3*", "site-packages", "mpmux", "__init__.py"))
        self.assertEqual(len(inits), 1, inits)
        site = os.path.dirname(os.path.dirname(inits[0]))
        # Moved, as a relocatable install may be: the library is found relative to the package.
        moved = os.path.join(self.tmp, "moved")
        os.rename(prefix, moved)
        site = site.replace(prefix, moved)
        env = {k: v for k, v in CHILD_ENV.items() if k not in ("MPMUX_LIBRARY", "LD_LIBRARY_PATH")}
        env["PYTHONPATH"] = site
        p = run_python("""
            import sys
            import mpmux, mpmux._library
            from mpmux import Multiplexer
            mux = Multiplexer.new(range(5), sys.argv[1])
            total = sum(Multiplexer(mux.create_read_session()))
            print(mpmux.__file__, mpmux._library.lib().path, total)
            """, self.root, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        package, library, total = p.stdout.split()
        self.assertTrue(package.startswith(site), package)
        self.assertEqual(os.path.realpath(library), os.path.realpath(glob.glob(os.path.join(moved, "lib*",
                                                                                            "libmpmux.so.0"))[0]))
        self.assertEqual(total, "10")


if __name__ == "__main__":
    unittest.main()
