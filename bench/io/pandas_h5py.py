"""pandas_h5py.py CSV OUT.h5: the baseline of `mpmux new`: pandas.read_csv, then the table written
with h5py as one compound dataset (numbers typed, text as variable-length UTF-8 strings), as a
user would store a parameter table without mpmux."""
import sys

import h5py
import numpy as np
import pandas as pd

csv, out = sys.argv[1], sys.argv[2]
frame = pd.read_csv(csv)
string = h5py.string_dtype()
dtype = np.dtype([(name, string if frame[name].dtype == object else frame[name].dtype) for name in frame.columns])
records = np.empty(len(frame), dtype=dtype)
for name in frame.columns:
    records[name] = frame[name].to_numpy()
with h5py.File(out, "w") as f:
    f.create_dataset("table", data=records, chunks=True)
