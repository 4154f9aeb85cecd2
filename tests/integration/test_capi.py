"""The C ABI from a plain C99 program built against the installed package with pkg-config, run
alone (a participant without MPI) and under mpirun at 2 and 4 ranks; h5py checks that every
element was done exactly once, with its result."""
import csv
import json
import os
import pathlib
import subprocess
import unittest

import h5py

from mpmuxtest import ENV, MPIEXEC, TempDirTest

SRC = os.environ["MPMUX_SOURCE_DIR"]
BUILD = os.environ["MPMUX_BINARY_DIR"]
PROGRAM = os.path.join(SRC, "tests", "capi", "capi_example.c")
N = 100


def sh(*cmd, env=ENV, **kw):
    p = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=600, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def values(out):
    """name=value lines of the program's output (the first of each name)."""
    found = {}
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        if sep and name not in found:
            found[name] = value
    return found


class CApi(TempDirTest):
    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.prefix_dir = tempfile.mkdtemp(prefix="mpmux-capi-")
        cls.prefix = os.path.join(cls.prefix_dir, "prefix")
        sh("cmake", "--install", BUILD, "--prefix", cls.prefix)
        cls.env = dict(ENV, PKG_CONFIG_PATH=os.path.join(cls.prefix, "lib", "pkgconfig"))
        flags = sh("pkg-config", "--cflags", "--libs", "mpmux", env=cls.env).split()
        cls.exe = os.path.join(cls.prefix_dir, "capi_example")
        sh("mpicc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-o", cls.exe, PROGRAM, *flags,
           f"-Wl,-rpath,{os.path.join(cls.prefix, 'lib')}", env=cls.env)

    @classmethod
    def tearDownClass(cls):
        import shutil
        shutil.rmtree(cls.prefix_dir, ignore_errors=True)

    def check_run(self, out):
        v = values(out)
        self.assertEqual((v["a_total"], v["a_done"], v["a_failed"]), (str(N), str(N), "0"), out)
        self.assertEqual((v["b_done"], v["b_failed"]), (str(N - 1), "1"), out)
        self.assertEqual(json.loads(v["b_stat_json"])["failed"], 1)
        # Session A: every element done exactly once (one attempt; two for those failing their first).
        with h5py.File(v["a_results_h5"], "r") as f:
            rows = f["results"][:]
        self.assertEqual(list(rows["index"]), list(range(N)))
        self.assertEqual({s.decode() for s in rows["status"]}, {"done"})
        for r in rows:
            k = int(r["index"])
            self.assertEqual(int(r["attempts"]), 2 if k % 10 == 7 else 1, k)
            self.assertEqual(r["result"].decode(), f"r{k}")
        # Session B, exported as CSV: element 5 failed with its code and message, the rest done.
        with open(v["b_results_csv"], newline="") as f:
            table = list(csv.DictReader(f))
        self.assertEqual(len(table), N)
        for row in table:
            k = int(row["index"])
            if k == 5:
                self.assertEqual((row["status"], row["exit_code"], row["stderr_tail"]),
                                 ("failed", "9", "five always fails"))
            else:
                self.assertEqual((row["status"], row["result"], row["attempts"]), ("done", f"cb{k}", "1"))
        # The objects of the set are the table's fields; any other value is its column `value`.
        self.assertEqual((table[0]["name"], table[0]["value"]), ("e0", ""))
        self.assertEqual((table[1]["name"], table[1]["value"]), ("", "1"))
        self.assertEqual(table[2]["value"], "s2")
        return v

    def test_alone_without_mpi(self):
        out = sh(self.exe, self.root, "--no-mpi")
        v = self.check_run(out)
        self.assertEqual(v["seen_0"], str(N))

    def test_under_mpirun(self):
        for np in (2, 4):
            with self.subTest(np=np):
                root = os.path.join(self.tmp, f"np{np}")
                out = sh(MPIEXEC, "-n", str(np), "--oversubscribe", self.exe, root)
                v = self.check_run(out)
                # Rank 0 coordinates; the workers share the elements, each element once.
                seen = [int(v[f"seen_{r}"]) for r in range(np)]
                self.assertEqual(seen[0], 0)
                self.assertEqual(sum(seen), N)
                workers = {v[f"worker_id_{r}"] for r in range(np)}
                self.assertEqual(len(workers), np)
                self.assertEqual({w.split("/")[0] for w in workers}, {v["worker_id_0"]})

    def test_the_example_of_the_docs_runs(self):
        text = pathlib.Path(SRC, "docs", "capi.md").read_text()
        example = next(b.split("```", 1)[0] for b in text.split("```c\n")[1:] if "int main" in b)
        src = os.path.join(self.tmp, "sweep.c")
        with open(src, "w") as f:
            f.write(example)
        flags = sh("pkg-config", "--cflags", "--libs", "mpmux", env=self.env).split()
        exe = os.path.join(self.tmp, "sweep")
        sh("mpicc", "-std=c99", "-pedantic", "-Wall", "-Werror", "-o", exe, src, *flags,
           f"-Wl,-rpath,{os.path.join(self.prefix, 'lib')}", env=self.env)
        out = sh(MPIEXEC, "-n", "2", "--oversubscribe", exe, self.root)
        self.assertIn("1000 of 1000 done, 0 failed", out)
        h5 = out.split("results: ", 1)[1].strip()
        with h5py.File(h5, "r") as f:
            rows = f["results"][:]
        self.assertEqual([r.decode() for r in rows["result"][:3]], ["0", "1", "4"])

    def test_a_c_only_cmake_project_finds_mpmux_capi(self):
        project = os.path.join(self.tmp, "c-project")
        os.makedirs(project)
        with open(os.path.join(project, "CMakeLists.txt"), "w") as f:
            f.write("cmake_minimum_required(VERSION 3.21)\nproject(c_consumer LANGUAGES C)\n"
                    "find_package(mpmux REQUIRED)\n"
                    f"add_executable(capi_example {PROGRAM})\n"
                    "target_link_libraries(capi_example PRIVATE mpmux::capi)\n")
        build = os.path.join(self.tmp, "c-build")
        sh("cmake", "-S", project, "-B", build, f"-DCMAKE_PREFIX_PATH={self.prefix}")
        sh("cmake", "--build", build)
        self.check_run(sh(os.path.join(build, "capi_example"), self.root, "--no-mpi"))

    def test_header_compiles_as_cxx(self):
        unit = os.path.join(self.tmp, "unit.cpp")
        with open(unit, "w") as f:
            f.write('#include "mpmux/mpmux.h"\nint main() { return mpmux_abi_version() == MPMUX_ABI_VERSION ? 0 : 1; }\n')
        flags = sh("pkg-config", "--cflags", "--libs", "mpmux", env=self.env).split()
        exe = os.path.join(self.tmp, "unit")
        sh("mpicxx", "-std=c++11", "-pedantic", "-Wall", "-Werror", "-o", exe, unit, *flags,
           f"-Wl,-rpath,{os.path.join(self.prefix, 'lib')}", env=self.env)
        sh(exe)

    def test_only_the_c_functions_are_exported_with_c_linkage(self):
        lib = os.path.join(self.prefix, "lib", "libmpmux.so")
        symbols = sh("nm", "-D", "--defined-only", lib).split("\n")
        c_names = sorted(s.split()[-1] for s in symbols if s.split() and s.split()[-1].startswith("mpmux_"))
        header = pathlib.Path(SRC, "include", "mpmux", "mpmux.h").read_text()
        for name in c_names:
            self.assertIn(name + "(", header, f"{name} is exported but not declared in mpmux.h")
        for name in ("mpmux_open_abi", "mpmux_next", "mpmux_last_error", "mpmux_results_export"):
            self.assertIn(name, c_names)


if __name__ == "__main__":
    unittest.main()
