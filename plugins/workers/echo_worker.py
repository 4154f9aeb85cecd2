#!/usr/bin/env python3
"""Example mpmux worker program: answers each element with init data + element upper-cased.

The protocol (README.md) is mpmux_worker's; other workers on bytes can reuse it as this one
does: import this file (or mpmux_worker) and call serve(handle).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpmux_worker import serve_bytes as serve  # noqa: E402  (serve(handle) on bytes)


def echo(init_data, element):
    # decode() raises on bytes that are not UTF-8: that element fails, the others go on.
    return init_data + element.decode("utf-8").upper().encode("utf-8")


if __name__ == "__main__":
    try:
        serve(echo)
    except (EOFError, BrokenPipeError):
        sys.exit(0)  # the parent went away
