"""Bad input: one line naming the file, line or option, exit code 2, nothing stored changed."""
import os
import shutil
import subprocess
import unittest

from mpmuxtest import ENV, MPMUX, TempDirTest, mpirun, mpmux, tree


class BadInput(TempDirTest):
    def setUp(self):
        super().setUp()
        # A set that exists already: no bad command may touch it.
        self.good_dir, self.good_id = self.new_session("--range", "3", "--tag", "good")
        self.before = tree(self.root)

    def assertNothingStoredChanged(self):
        self.assertEqual(tree(self.root), self.before)

    def new_from(self, name, content, mode="w", *more):
        path = self.write(name, content, mode)
        return path, mpmux("new", self.root, "--from", path, *more)

    def test_ragged_csv(self):
        path, p = self.new_from("ragged.csv", "a,b,c\n1,2,3\n4,5\n")
        self.assertUsageError(p, "ragged.csv:3")
        self.assertNothingStoredChanged()

    def test_csv_header_with_an_empty_or_repeated_name(self):
        # Any other header is a header (2theta, alpha (deg)), so a file without one is read with
        # its first row as the names; it is refused here only when those repeat or are empty.
        path, p = self.new_from("nohead.csv", "0.1,2,2\n0.2,3,4\n")
        self.assertUsageError(p, "nohead.csv:1", "duplicate column name '2'")
        self.assertNothingStoredChanged()
        path, p = self.new_from("empty.csv", "a,,c\n1,2,3\n")
        self.assertUsageError(p, "empty.csv:1", "column 2 of the header has no name")
        self.assertNothingStoredChanged()

    def test_non_utf8_bytes(self):
        path, p = self.new_from("latin1.csv", b"name,x\nok,1\ncaf\xe9,2\n", "wb")
        self.assertUsageError(p, "latin1.csv:3", "invalid UTF-8 (byte 0xe9 at column 4)", "--encoding latin-1")
        self.assertNothingStoredChanged()

    def test_an_unknown_encoding(self):
        path, p = self.new_from("latin1.csv", b"name,x\ncaf\xe9,2\n", "wb", "--encoding", "cp1252")
        self.assertUsageError(p, "--encoding 'cp1252': unknown encoding (expected utf-8 or latin-1)")
        self.assertNothingStoredChanged()
        p = mpmux("new", self.root, "--range", "3", "--encoding", "latin-1")
        self.assertUsageError(p, "--encoding 'latin-1': only a --from file has an encoding")
        self.assertNothingStoredChanged()

    def test_invalid_json_line_names_its_line(self):
        path, p = self.new_from("bad.jsonl", '{"a": 1}\n{"a": 2}\n{"a": \n{"a": 4}\n')
        self.assertUsageError(p, "bad.jsonl:3", "JSON")
        self.assertNothingStoredChanged()

    def test_empty_inputs(self):
        for name in ("empty.csv", "empty.jsonl", "header-only.csv"):
            with self.subTest(name=name):
                path, p = self.new_from(name, "a,b\n" if name == "header-only.csv" else "")
                self.assertUsageError(p, name)
        self.assertUsageError(mpmux("new", self.root, "--range", "0"), "--range")
        self.assertNothingStoredChanged()

    def test_missing_input_file(self):
        self.assertUsageError(mpmux("new", self.root, "--from", os.path.join(self.tmp, "nope.csv")), "nope.csv")
        self.assertNothingStoredChanged()

    def test_bad_tag_and_bad_grid(self):
        self.assertUsageError(mpmux("new", self.root, "--range", "2", "--tag", "a b"), "--tag")
        self.assertUsageError(mpmux("new", self.root, "--grid", "alpha"), "--grid", "alpha")
        self.assertUsageError(mpmux("new", self.root, "--grid", "a=1:1"), "a=1:1")
        self.assertNothingStoredChanged()

    def test_unknown_placeholder(self):
        for np in (1, 3):
            with self.subTest(np=np):
                args = ("run", self.good_id, "--exec", "echo {i} {gamma}")
                p = mpmux(*args) if np == 1 else mpirun(np, *args)
                self.assertEqual(p.returncode, 2, p.stderr)
                lines = [l for l in p.stderr.splitlines() if l.startswith("mpmux:")]
                self.assertEqual(len(lines), 1, p.stderr)
                self.assertIn("{gamma}", lines[0])
                self.assertNothingStoredChanged()

    def test_malformed_and_unknown_mux_ids(self):
        for bad, needle in (("not-an-id", "not-an-id"), ("az://acct/c#s=x", "az"),
                            ("file://relative/x#s=20261121T000000Z-0000", "file://relative"),
                            (self.good_id.split("#")[0], "#s="),
                            (self.good_id + "%zz", "%zz")):
            with self.subTest(id=bad):
                self.assertUsageError(mpmux("stat", bad), needle)
                self.assertUsageError(mpmux("run", bad, "--exec", "true"), needle)
        other = self.good_id.split("#")[0] + "#s=20200101T000000Z-abcd"
        self.assertUsageError(mpmux("stat", other), "20200101T000000Z-abcd")
        self.assertNothingStoredChanged()

    def test_destroyed_set(self):
        mpmux("destroy", self.good_dir, check=0)
        self.assertUsageError(mpmux("stat", self.good_id), self.good_dir)
        self.assertUsageError(mpmux("run", self.good_id, "--exec", "true"), self.good_dir)
        self.assertUsageError(mpmux("session", self.good_dir), self.good_dir)
        self.assertUsageError(mpmux("destroy", self.good_dir), self.good_dir)

    def test_destroy_refuses_a_directory_that_is_not_a_mux(self):
        other = os.path.join(self.tmp, "precious")
        os.mkdir(other)
        self.write("precious/data.txt", "keep me")
        self.assertUsageError(mpmux("destroy", other), other)
        self.assertTrue(os.path.exists(os.path.join(other, "data.txt")))

    def test_truncated_or_foreign_elements_file(self):
        h5 = os.path.join(self.good_dir, "elements.h5")
        for name, damage in (("truncated", lambda: os.truncate(h5, os.path.getsize(h5) // 2)),
                             ("not hdf5", lambda: open(h5, "wb").write(b"this is not HDF5\n" * 100))):
            with self.subTest(damage=name):
                shutil.copy(h5, h5 + ".orig")
                damage()
                self.before = tree(self.root)
                for args in (("session", self.good_dir), ("run", self.good_id, "--exec", "true")):
                    p = mpmux(*args)
                    self.assertUsageError(p, "elements.h5")
                    self.assertNotIn("HDF5-DIAG", p.stderr)
                self.assertNothingStoredChanged()
                os.replace(h5 + ".orig", h5)

    def test_unwritable_root(self):
        ro = os.path.join(self.tmp, "ro")
        os.mkdir(ro)
        os.chmod(ro, 0o555)
        os.chmod(self.tmp, 0o755)
        cmd = [MPMUX, "new", os.path.join(ro, "mux"), "--range", "3"]
        if os.geteuid() == 0:  # root writes anywhere: drop to nobody for this one
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
        self.assertUsageError(p, ro)
        self.assertEqual(os.listdir(ro), [])

    def test_usage_errors_of_the_command_line(self):
        self.assertUsageError(mpmux("new", self.root), "--from")
        self.assertUsageError(mpmux("new", self.root, "--range", "3", "--grid", "a=1"), "--range")
        self.assertUsageError(mpmux("run", self.good_id), "--exec")
        self.assertUsageError(mpmux("run", self.good_id, "--exec", "echo 'x"), "--exec")
        self.assertUsageError(mpmux("frobnicate"), "frobnicate")
        self.assertNothingStoredChanged()


if __name__ == "__main__":
    unittest.main()
