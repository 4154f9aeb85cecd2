"""Checks an elements.h5 written from a CSV file against Python's own reading of that CSV.

usage: check_element_table.py FILE.csv ELEMENTS.h5 TAG
Exit 0 when /elements/table, /elements/data + offsets and the attributes match; else 1 with the
differences on stdout. Typing follows mpmux: int64 when every cell is an integer, float64 when
every cell is a finite number, else string.
"""
import csv
import json
import math
import re
import sys

import h5py
import numpy as np

INT = re.compile(r"[+-]?[0-9]+\Z")
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")


def typed_columns(cells):
    if all(INT.match(c) and -2**63 <= int(c) < 2**63 for c in cells):
        return "int64", [int(c) for c in cells]
    if all(NUMBER.match(c) and math.isfinite(float(c)) for c in cells):
        return "float64", [float(c) for c in cells]
    return "string", list(cells)


def main():
    csv_path, h5_path, tag = sys.argv[1:4]
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        records = [r for r in csv.reader(f) if r]
    names, body = records[0], records[1:]
    columns = [typed_columns([row[c] for row in body]) for c in range(len(names))]
    expected_rows = [{n: columns[c][1][r] for c, n in enumerate(names)} for r in range(len(body))]

    problems = []
    with h5py.File(h5_path, "r") as f:
        g = f["elements"]
        attrs = {k: g.attrs[k] for k in g.attrs}
        want = {"format": "mpmux-elements", "format_version": 1, "count": len(body), "tag": tag,
                "encoding": "json"}
        for k, v in want.items():
            if k not in attrs or attrs[k] != v:
                problems.append(f"attribute {k}: {attrs.get(k)!r}, expected {v!r}")
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(attrs.get("created"))):
            problems.append(f"attribute created: {attrs.get('created')!r}")

        table = g["table"][()]
        if list(table.dtype.names) != names:
            problems.append(f"columns {table.dtype.names}, expected {names}")
        for c, name in enumerate(names):
            kind = columns[c][0]
            dt = table.dtype[name]
            if kind == "int64" and dt != np.dtype("<i8") or kind == "float64" and dt != np.dtype("<f8"):
                problems.append(f"column {name}: dtype {dt}, expected {kind}")
            info = h5py.check_string_dtype(dt)
            if kind == "string" and (info is None or info.encoding != "utf-8" or info.length is not None):
                problems.append(f"column {name}: dtype {dt} is not a variable-length UTF-8 string")
        if len(table) != len(body):
            problems.append(f"{len(table)} table rows, expected {len(body)}")
        for r, row in enumerate(table[:len(body)]):
            for c, name in enumerate(names):
                got = row[name]
                got = got.decode("utf-8") if isinstance(got, bytes) else got.item()
                want_value = expected_rows[r][name]
                if got != want_value or type(got) is not type(want_value):
                    problems.append(f"table row {r} {name}: {got!r}, expected {want_value!r}")

        data = g["data"][()].tobytes()
        offsets = g["offsets"][()]
        if len(offsets) != len(body) + 1 or offsets[0] != 0 or offsets[-1] != len(data):
            problems.append(f"offsets {offsets} do not fit {len(data)} bytes")
        else:
            for r in range(len(body)):
                element = json.loads(data[offsets[r]:offsets[r + 1]].decode("utf-8"))
                if list(element) != names or element != expected_rows[r] or any(
                        type(element[n]) is not type(expected_rows[r][n]) for n in names):
                    problems.append(f"element {r}: {element!r}, expected {expected_rows[r]!r}")

    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
