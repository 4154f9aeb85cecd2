#!/usr/bin/env python3
"""Example mpmux worker program: answers each element with init data + element upper-cased.

Protocol (see README.md): frames [u32 length LE][u8 type][payload] on the Unix socket whose fd
is in $MPMUX_WORKER_FD. INIT(1) once, then TASK(2) = [u64 index LE][element] until BYE(3);
the worker answers READY(16) after INIT and RESULT(17) = [u64 index][u8 ok][result or error].

Other workers can reuse the protocol part: import this file and call serve(handle).
"""
import os
import socket
import struct
import sys

INIT, TASK, BYE, READY, RESULT = 1, 2, 3, 16, 17
MAX_FRAME = 1 << 30


def _read_exact(stream, n):
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("socket closed mid-frame")
    return data


def read_frame(stream):
    """Returns (type, payload), or (None, b"") at a clean end of stream."""
    head = stream.read(5)
    if not head:
        return None, b""
    if len(head) != 5:
        raise EOFError("socket closed mid-frame")
    length, ftype = struct.unpack("<IB", head)
    if length < 1 or length > MAX_FRAME:
        raise ValueError("bad frame length %d" % length)
    return ftype, _read_exact(stream, length - 1)


def write_frame(stream, ftype, payload):
    stream.write(struct.pack("<IB", len(payload) + 1, ftype))
    stream.write(payload)
    stream.flush()


def serve(handle):
    """Runs the protocol: handle(init_data: bytes, element: bytes) -> bytes. An exception in
    handle becomes a RESULT with ok = 0 and the exception text; the worker goes on."""
    fd = int(os.environ["MPMUX_WORKER_FD"])
    sock = socket.socket(fileno=fd)
    rd = sock.makefile("rb")
    wr = sock.makefile("wb")
    ftype, init_data = read_frame(rd)
    if ftype != INIT:
        raise ValueError("expected INIT, got frame type %r" % ftype)
    write_frame(wr, READY, b"")
    while True:
        ftype, payload = read_frame(rd)
        if ftype is None or ftype == BYE:
            return
        if ftype != TASK or len(payload) < 8:
            raise ValueError("expected TASK, got frame type %r" % ftype)
        index = payload[:8]
        try:
            out, ok = handle(init_data, payload[8:]), 1
        except Exception as exc:  # reported to the parent, with the element's index
            out, ok = ("%s: %s" % (type(exc).__name__, exc)).encode(), 0
        write_frame(wr, RESULT, index + bytes([ok]) + out)


def echo(init_data, element):
    # decode() raises on bytes that are not UTF-8: that element fails, the others go on.
    return init_data + element.decode("utf-8").upper().encode("utf-8")


if __name__ == "__main__":
    try:
        serve(echo)
    except (EOFError, BrokenPipeError):
        sys.exit(0)  # the parent went away
