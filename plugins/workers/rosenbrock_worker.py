#!/usr/bin/env python3
"""rosenbrock_worker.py: an example worker program for `mpmux run --worker` (see README.md).

The twin of plugins/tasks/rosenbrock.c: evaluates Rosenbrock's function
f(x, y) = (a - x)^2 + b * (y - x^2)^2 at the fields x and y of each element (a JSON object such
as {"x": 0.5, "y": -1.0}) and answers f as its result (Python's repr: it reads back exactly).

--worker-init "A,B" sets a and b (default "1,100"). A point outside the box -2 <= x <= 2,
-1 <= y <= 3 fails on purpose, standing in for a simulation that does not converge.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpmux_worker  # noqa: E402


def setup(info):
    """Once per process: the coefficients from --worker-init (info["init"])."""
    text = info.get("init") or "1,100"
    a, b = (float(v) for v in text.split(","))
    return a, b


def rosenbrock(point, coefficients):
    a, b = coefficients
    x, y = float(point["x"]), float(point["y"])
    if not (-2 <= x <= 2 and -1 <= y <= 3):
        raise ValueError("x=%g y=%g is outside the box [-2, 2] x [-1, 3]" % (x, y))
    return (a - x) * (a - x) + b * (y - x * x) * (y - x * x)


if __name__ == "__main__":
    mpmux_worker.main(rosenbrock, setup)
