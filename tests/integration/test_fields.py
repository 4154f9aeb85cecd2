"""Fields are text: every cell of an awkward file reaches an --exec command, a plugin and the
exports exactly as written (data/awkward.csv, data/awkward.jsonl), at 1, 2 and 4 ranks, through
--procs, --shell and --plugin; h5py sees the original column names and the typed table."""
import csv
import io
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

from mpmuxtest import TempDirTest, mpirun, mpmux

SRC = os.environ.get("MPMUX_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
AWKWARD_CSV = os.path.join(DATA, "awkward.csv")
AWKWARD_JSONL = os.path.join(DATA, "awkward.jsonl")

# Writes its arguments after the first, each followed by a NUL byte, to the file named by the first.
DUMP = 'out="$1"; shift; printf "%s\\0" "$@" > "$out"\n'

# A plugin whose result is the element exactly as it was handed over.
ECHO_PLUGIN = r"""
#include <stdlib.h>
#include "mpmux/plugin.h"
uint32_t mpmux_plugin_abi_version(void) { return MPMUX_PLUGIN_ABI_VERSION; }
int mpmux_task_init(const mpmux_worker_info* info, void** state, mpmux_output* out) {
  (void)info; (void)out; *state = NULL; return 0;
}
int mpmux_task_process(void* state, uint64_t index, const char* element, size_t length, mpmux_output* out) {
  (void)state; (void)index; out->write(out, element, length); return 0;
}
void mpmux_task_finalize(void* state) { (void)state; }
"""


def csv_table(path):
    """(names, rows of cell texts) as Python's csv module reads the file."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        records = [r for r in csv.reader(f) if r]
    return records[0], records[1:]


def jsonl_table(path):
    """(names, rows of value texts): a string's characters, a number or literal as written."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line, parse_float=str, parse_int=str,
                                 parse_constant=str, object_pairs_hook=list)
                rows.append([v if not isinstance(v, bool) else ("true" if v else "false") for _, v in obj])
                names = [k for k, _ in obj]
    return names, rows


def texts_of(obj):
    """A parsed element's values as texts (numbers as written, via parse_float/parse_int=str)."""
    return {k: ("true" if v is True else "false" if v is False else v) for k, v in obj.items()}


class Fields(TempDirTest):
    @classmethod
    def setUpClass(cls):
        cls.plugins = tempfile.mkdtemp(prefix="mpmux-fields-")
        source = os.path.join(cls.plugins, "echo.c")
        with open(source, "w") as f:
            f.write(ECHO_PLUGIN)
        cls.echo = os.path.join(cls.plugins, "libecho.so")
        subprocess.run([shutil.which("cc") or "cc", "-shared", "-fPIC", "-Wall", "-Werror",
                        "-I", os.path.join(SRC, "include"), "-o", cls.echo, source], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.plugins, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.dump = self.write("dump.sh", DUMP)

    def argv_files(self, out, n):
        """The arguments each element's command got, as bytes, by index."""
        got = {}
        for i in range(n):
            with open(os.path.join(out, str(i)), "rb") as f:
                got[i] = f.read().split(b"\0")[:-1]
        return got

    def assertEveryCellArrives(self, names, rows, mux_id, runner, shell=False):
        out = tempfile.mkdtemp(dir=self.tmp)
        placeholders = " ".join("{" + n + "}" for n in names)
        if shell:
            task = f"printf '%s\\0' {placeholders} > {out}/{{#}}"
            args = ["--shell", "--exec", task]
        else:
            args = ["--exec", f"/bin/sh {self.dump} {out}/{{#}} {placeholders}"]
        p = runner(mux_id, args)
        self.assertEqual(p.returncode, 0, p.stderr)
        got = self.argv_files(out, len(rows))
        for i, row in enumerate(rows):
            self.assertEqual(got[i], [c.encode() for c in row], f"element {i}")

    def test_every_csv_cell_reaches_exec_unchanged_at_1_2_and_4_ranks_and_through_procs_and_shell(self):
        names, rows = csv_table(AWKWARD_CSV)
        self.assertIn("alpha (deg)", names)
        runners = {
            "1 process": lambda mux_id, args: mpmux("run", mux_id, "--no-progress", *args),
            "2 ranks": lambda mux_id, args: mpirun(2, "run", mux_id, "--no-progress", *args),
            "4 ranks": lambda mux_id, args: mpirun(4, "run", mux_id, "--no-progress", *args),
            "--procs 2": lambda mux_id, args: mpmux("run", mux_id, "--no-progress", "--procs", "2", *args),
        }
        for label, runner in runners.items():
            for shell in (False, True):
                with self.subTest(label, shell=shell):
                    _, mux_id = self.new_session("--from", AWKWARD_CSV)
                    self.assertEveryCellArrives(names, rows, mux_id, runner, shell)

    def test_every_jsonl_value_reaches_exec_as_written(self):
        names, rows = jsonl_table(AWKWARD_JSONL)
        self.assertIn("1.10", rows[0])
        self.assertIn("-0", rows[0])
        for shell in (False, True):
            with self.subTest(shell=shell):
                _, mux_id = self.new_session("--from", AWKWARD_JSONL)
                self.assertEveryCellArrives(
                    names, rows, mux_id, lambda m, a: mpirun(2, "run", m, "--no-progress", *a), shell)

    def test_the_plugin_gets_the_same_text(self):
        for path, table in ((AWKWARD_CSV, csv_table), (AWKWARD_JSONL, jsonl_table)):
            with self.subTest(os.path.basename(path)):
                names, rows = table(path)
                _, mux_id = self.new_session("--from", path)
                p = mpirun(2, "run", mux_id, "--no-progress", "--plugin", self.echo, "--threads", "2")
                self.assertEqual(p.returncode, 0, p.stderr)
                exported = mpmux("results", mux_id, "--format", "jsonl", check=0).stdout.splitlines()
                for i, line in enumerate(exported):
                    element = json.loads(json.loads(line)["result"], parse_float=str, parse_int=str)
                    self.assertEqual(list(element), names)
                    self.assertEqual(texts_of(element), dict(zip(names, rows[i])), f"element {i}")

    def test_exports_show_the_text_of_the_input(self):
        for path, table in ((AWKWARD_CSV, csv_table), (AWKWARD_JSONL, jsonl_table)):
            with self.subTest(os.path.basename(path)):
                names, rows = table(path)
                _, mux_id = self.new_session("--from", path)
                mpmux("run", mux_id, "--no-progress", "--exec", "true", check=0)
                exported = mpmux("results", mux_id, "--format", "csv", check=0).stdout
                records = list(csv.reader(io.StringIO(exported, newline="")))
                self.assertEqual(records[0][1:1 + len(names)], names)
                self.assertEqual([r[1:1 + len(names)] for r in records[1:]], rows)
                lines = mpmux("results", mux_id, "--format", "jsonl", check=0).stdout.splitlines()
                for i, line in enumerate(lines):
                    row = texts_of(json.loads(line, parse_float=str, parse_int=str))
                    self.assertEqual([row[n] for n in names], rows[i], f"element {i}")

    def test_h5py_sees_the_original_names_and_a_table_that_prints_back_as_written(self):
        names, rows = csv_table(AWKWARD_CSV)
        mux_dir, _ = self.new_session("--from", AWKWARD_CSV)
        with h5py.File(os.path.join(mux_dir, "elements.h5"), "r") as f:
            table = f["elements/table"][()]
        self.assertEqual(list(table.dtype.names), names)
        # Only n (1, 2, -3) and x (0.5, 2.0, -0.25) print back as written from a number.
        kinds = {n: table.dtype[n].kind for n in names}
        self.assertEqual({n for n, k in kinds.items() if k != "O"}, {"n", "x"})
        self.assertEqual(table.dtype["n"], np.dtype("<i8"))
        self.assertEqual(table.dtype["x"], np.dtype("<f8"))
        for r, row in enumerate(rows):
            for c, name in enumerate(names):
                value = table[r][name]
                if kinds[name] == "O":
                    self.assertEqual(value.decode("utf-8"), row[c])
                elif kinds[name] == "i":
                    self.assertEqual(str(int(value)), row[c])
                else:
                    self.assertEqual(float(value), float(row[c]))

    def test_the_issues_example_prints_the_file_as_written(self):
        path = self.write("p.csv", "id,version,price,code\n007,1.10,2.50,+1\n010,2.0,3,1e3\n")
        _, mux_id = self.new_session("--from", path)
        mpmux("run", mux_id, "--no-progress", "--exec", "printf '%s|' {id} {version} {price} {code}", check=0)
        lines = mpmux("results", mux_id, "--format", "jsonl", check=0).stdout.splitlines()
        self.assertEqual([json.loads(line)["result"] for line in lines], ["007|1.10|2.50|+1|", "010|2.0|3|1e3|"])

    def test_shell_arithmetic_on_a_value(self):
        _, mux_id = self.new_session("--range", "60")
        p = mpmux("run", mux_id, "--no-progress", "--shell", "--exec", "test $(({i} % 50)) -ne 7")
        self.assertEqual(p.returncode, 1, p.stderr)  # elements 7 and 57 fail, as the test says
        self.assertEqual(self.stat(mux_id)["failed"], 2)
        lines = mpmux("results", mux_id, "--format", "jsonl", check=0).stdout.splitlines()
        failed = [json.loads(line) for line in lines if json.loads(line)["status"] == "failed"]
        self.assertEqual([r["i"] for r in failed], [7, 57])
        self.assertEqual([r["stderr_tail"] for r in failed], ["", ""])

    def test_a_latin1_file_is_converted_on_request(self):
        path = self.write("l.csv", "caf\xe9,\xb0C\n\xe0 la carte,37\n".encode("latin-1"), "wb")
        p = mpmux("new", self.root, "--from", path)
        self.assertUsageError(p, "l.csv:1: invalid UTF-8 (byte 0xe9 at column 4)", "--encoding latin-1")
        _, mux_id = self.new_session("--from", path, "--encoding", "latin-1")
        out = tempfile.mkdtemp(dir=self.tmp)
        mpmux("run", mux_id, "--no-progress", "--exec", f"/bin/sh {self.dump} {out}/{{#}} {{café}} {{°C}}",
              check=0)
        self.assertEqual(self.argv_files(out, 1)[0], ["à la carte".encode(), b"37"])


if __name__ == "__main__":
    unittest.main()
