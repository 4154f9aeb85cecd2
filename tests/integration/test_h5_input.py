"""mpmux new --from FILE.h5:/DATASET: elements from an HDF5 dataset written by h5py, run through
--exec; what reached each command is its result, read back with mpmux results."""
import json
import os
import unittest

import h5py
import numpy as np

from mpmuxtest import TempDirTest, mpmux, mpirun, tree


class H5Input(TempDirTest):
    def setUp(self):
        super().setUp()
        self.h5 = os.path.join(self.tmp, "params.h5")

    def results_of(self, mux_id):
        lines = mpmux("results", mux_id, "--format", "jsonl", check=0).stdout.splitlines()
        return [json.loads(line) for line in lines]

    def run_and_collect(self, mux_id, template, np_=1):
        p = mpirun(np_, "run", mux_id, "--exec", template) if np_ > 1 else mpmux("run", mux_id, "--exec", template)
        self.assertEqual(p.returncode, 0, p.stderr)
        return [r["result"] for r in self.results_of(mux_id)]

    def test_compound_members_become_fields_of_every_kind(self):
        dt = np.dtype([("seed", "<i4"), ("alpha", "<f8"), ("beta", "<f4"), ("code", "S6"),
                       ("label", h5py.string_dtype()), ("big", "<u8")])
        rows = [(7, 0.1, 0.1, b"007", "h\u00e9llo world", 3),
                (-12, 2.0, 1.5, b"", "a;b", 2**63 - 1),
                (0, 1 / 3, np.float32(1 / 3), b"x y", "", 0)]
        with h5py.File(self.h5, "w") as f:
            f.create_dataset("grid/points", data=np.array(rows, dtype=dt))
        d, mux_id = self.new_session("--from", self.h5 + ":/grid/points")
        for np_ in (1, 2):
            if np_ == 2:
                _, mux_id = self.new_session("--from", self.h5 + ":/grid/points")
            got = self.run_and_collect(mux_id, "printf %s|%s|%s|%s|%s|%s {seed} {alpha} {beta} {code} {label} {big}",
                                       np_)
            self.assertEqual(got, ["7|0.1|0.1|007|h\u00e9llo world|3",
                                   "-12|2.0|1.5||a;b|9223372036854775807",
                                   "0|0.3333333333333333|0.33333334|x y||0"])
        with h5py.File(os.path.join(d, "elements.h5")) as f:
            data, offsets = f["elements/data"][:].tobytes(), f["elements/offsets"][:]
            elements = [data[offsets[i]:offsets[i + 1]].decode() for i in range(3)]
            # Floats as the shortest text that reads back as the same value of their own width.
            self.assertEqual(elements[2], '{"seed":0,"alpha":0.3333333333333333,"beta":0.33333334,"code":"x y",'
                                          '"label":"","big":0}')
            table = f["elements/table"]
            self.assertEqual(table.dtype.names, ("seed", "alpha", "beta", "code", "label", "big"))
            self.assertEqual(table.dtype["seed"], np.int64)
            self.assertEqual(table.dtype["beta"], np.float64)
            self.assertEqual(list(table["seed"]), [7, -12, 0])
            self.assertEqual(list(table["alpha"]), [0.1, 2.0, 1 / 3])
            self.assertEqual([x.decode() for x in table["code"]], ["007", "", "x y"])

    def test_a_2d_dataset_gives_c_columns_or_the_names_of_its_columns_attribute(self):
        with h5py.File(self.h5, "w") as f:
            f["plain"] = np.arange(6, dtype="<i2").reshape(3, 2)
            m = f.create_dataset("named", data=np.array([[1.5, 2], [np.nan, 4]], dtype="<f4"))
            m.attrs["columns"] = np.array(["x", "y"], dtype=h5py.string_dtype())
        _, mux_id = self.new_session("--from", self.h5 + ":/plain")
        self.assertEqual(self.run_and_collect(mux_id, "printf %s,%s {c0} {c1}"), ["0,1", "2,3", "4,5"])
        d, mux_id = self.new_session("--from", self.h5 + ":/named")
        # A column holding NaN is a string column, as in CSV; the other stays a number.
        self.assertEqual(self.run_and_collect(mux_id, "printf %s,%s {x} {y}"), ["1.5,2.0", "nan,4.0"])
        with h5py.File(os.path.join(d, "elements.h5")) as f:
            table = f["elements/table"]
            self.assertEqual(table.dtype.names, ("x", "y"))
            self.assertEqual(table.dtype["y"], np.float64)
            self.assertEqual(table.dtype["x"].kind, "O")

    def test_bad_sources_are_one_line_errors_and_create_nothing(self):
        with h5py.File(self.h5, "w") as f:
            f.create_group("grp")
            f["cube"] = np.zeros((2, 2, 2))
            f["flat"] = np.arange(3)
            f["texts"] = np.array([[b"a", b"b"]])
            f["seqs"] = np.zeros(1, dtype=[("v", "<i4", (2,))])
            vlen = f.create_dataset("vlen", (1,), dtype=np.dtype([("v", h5py.vlen_dtype("i4"))]))
            vlen[0] = (np.array([1, 2], dtype="i4"),)
            f.create_dataset("refs", data=np.array([(f.ref,)], dtype=[("r", h5py.ref_dtype)]))
            f["flags"] = np.array([(True,)], dtype=[("b", "?")])
            f["columns_bad"] = np.zeros((1, 2))
            f["columns_bad"].attrs["columns"] = np.array(["only"], dtype=h5py.string_dtype())
            f["empty"] = np.zeros((0, 2))
        not_h5 = self.write("fake.h5", "not hdf5")
        cases = [
            (os.path.join(self.tmp, "missing.h5") + ":/x", ["missing.h5:/x", "no such file"]),
            (not_h5 + ":/x", ["fake.h5:/x", "is not an HDF5 file"]),
            (self.h5, ["params.h5", "name the dataset"]),
            (self.h5 + ":/nope", ["params.h5:/nope", "no dataset /nope"]),
            (self.h5 + ":/grp", ["params.h5:/grp", "is a group, not a dataset"]),
            (self.h5 + ":/cube", ["params.h5:/cube", "3-D"]),
            (self.h5 + ":/flat", ["params.h5:/flat", "must be compound"]),
            (self.h5 + ":/texts", ["params.h5:/texts", "not strings"]),
            (self.h5 + ":/seqs", ["params.h5:/seqs", "member v is an array"]),
            (self.h5 + ":/vlen", ["params.h5:/vlen", "member v is a variable-length sequence"]),
            (self.h5 + ":/refs", ["params.h5:/refs", "member r is a reference"]),
            (self.h5 + ":/flags", ["params.h5:/flags", "member b is an enum"]),
            (self.h5 + ":/columns_bad", ["params.h5:/columns_bad", "1-D array of 2 strings"]),
            (self.h5 + ":/empty", ["params.h5:/empty", "no rows"]),
        ]
        os.mkdir(self.root)
        before = tree(self.root)
        for source, needles in cases:
            with self.subTest(source=source):
                self.assertUsageError(mpmux("new", self.root, "--from", source), *needles)
        self.assertEqual(tree(self.root), before)


if __name__ == "__main__":
    unittest.main()
