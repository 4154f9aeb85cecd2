"""Checks an elements.h5 written from a CSV file against Python's own reading of that CSV.

usage: check_element_table.py FILE.csv ELEMENTS.h5 TAG
Exit 0 when /elements/table, /elements/data + offsets and the attributes match; else 1 with the
differences on stdout. Typing follows mpmux: a column is int64 when every cell is exactly the
decimal text of its value, float64 when every cell is exactly the text mpmux prints for its value
(C++ std::to_chars' shortest form, plus ".0" for a whole number), else string. Every element holds
each cell's text as written: a JSON number literal as that number, any other cell as a string.
"""
import csv
import json
import math
import re
import sys

import h5py
import numpy as np

JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")


def float_text(x):
    """The text mpmux prints for the finite double x: std::to_chars' shortest round-trip form (the
    shorter of fixed and scientific, fixed on a tie), with ".0" when it has no '.' or 'e'."""
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    digits = repr(abs(x))  # Python's repr has the same shortest digits
    m = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:e([+-]\d+))?", digits)
    whole, frac, e = m.group(1), m.group(2) or "", int(m.group(3) or 0)
    all_digits = (whole + frac).lstrip("0")
    point = len(whole) + e - (len(whole + frac) - len((whole + frac).lstrip("0")))
    all_digits = all_digits.rstrip("0") or "0"
    if all_digits == "0":
        return sign + "0.0"
    # value = 0.<all_digits> * 10**point
    if point <= 0:
        fixed = "0." + "0" * -point + all_digits
    elif point >= len(all_digits):
        fixed = all_digits + "0" * (point - len(all_digits))
    else:
        fixed = all_digits[:point] + "." + all_digits[point:]
    sci_exp = point - 1
    sci = all_digits[0] + ("." + all_digits[1:] if len(all_digits) > 1 else "")
    sci += "e" + ("-" if sci_exp < 0 else "+") + f"{abs(sci_exp):02d}"
    text = fixed if len(fixed) <= len(sci) else sci
    if "." not in text and "e" not in text:
        text += ".0"
    return sign + text


def exact_int(c):
    return re.fullmatch(r"-?[0-9]+", c) is not None and -2**63 <= int(c) < 2**63 and str(int(c)) == c


def exact_float(c):
    try:
        x = float(c)
    except ValueError:
        return False
    return math.isfinite(x) and float_text(x) == c


def typed_columns(cells):
    if all(exact_int(c) for c in cells):
        return "int64", [int(c) for c in cells]
    if all(exact_float(c) for c in cells):
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
                raw = data[offsets[r]:offsets[r + 1]].decode("utf-8")
                element = json.loads(raw)
                texts = json.loads(raw, parse_float=str, parse_int=str)
                if list(element) != names:
                    problems.append(f"element {r}: keys {list(element)}, expected {names}")
                    continue
                for c, n in enumerate(names):
                    cell = body[r][c]
                    want_type = str if not JSON_NUMBER.match(cell) else (int if "." not in cell and "e" not in cell.lower() else float)
                    if texts[n] != cell or type(element[n]) is not want_type:
                        problems.append(f"element {r} {n}: {raw!r} does not hold {cell!r} as a {want_type.__name__}")

    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
