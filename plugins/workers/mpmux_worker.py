"""mpmux_worker: write an mpmux worker program in Python (standard library only).

A worker program is started once per slot by `mpmux run --worker PROGRAM` and answers elements
over the Unix socket whose fd is in $MPMUX_WORKER_FD (protocol: README.md). This module runs the
protocol; a worker is a function and one call:

    import mpmux_worker

    def task(point):                    # the element, decoded from JSON: {"x": 0.5, "y": -1.0}
        return point["x"] ** 2          # the result: str and bytes as they are, anything else as JSON

    mpmux_worker.serve(task)

With setup, setup(info) runs once per process, before the first element, and its value is
handed to every call: task(element, state). info is the INIT data mpmux sends, decoded: mux_id,
rank, slot, slots and init (the --worker-init text). An exception in task fails that element
only: its traceback goes to stderr (kept with the element) and "Type: message" is the failure's
text; the process goes on with the next element. An exception in setup ends the process before
it answers INIT, which mpmux reports in one line with the last line of the traceback.
"""
import json
import os
import socket
import struct
import sys
import traceback

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


def serve_bytes(handle, on_init=None):
    """The protocol on bytes: handle(init_data: bytes, element: bytes) -> bytes for each element.
    on_init(init_data), when given, runs before READY: an exception there ends the process before
    it answers INIT. An exception in handle becomes a RESULT with ok = 0 and the exception's text
    (its traceback on stderr); the worker goes on. Returns at BYE or when mpmux closes the socket."""
    # stdout is a pipe to mpmux, which keeps what a worker prints with the element it ran:
    # line-buffered, a print() arrives with its element instead of blocks later.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    sock = socket.socket(fileno=int(os.environ["MPMUX_WORKER_FD"]))
    rd = sock.makefile("rb")
    wr = sock.makefile("wb")
    ftype, init_data = read_frame(rd)
    if ftype != INIT:
        raise ValueError("expected INIT, got frame type %r" % ftype)
    if on_init is not None:
        on_init(init_data)
    write_frame(wr, READY, b"")
    while True:
        ftype, payload = read_frame(rd)
        if ftype is None or ftype == BYE:
            return
        if ftype != TASK or len(payload) < 8:
            raise ValueError("expected TASK, got frame type %r" % ftype)
        try:
            out, ok = handle(init_data, payload[8:]), 1
        except Exception as exc:  # reported with the element's index; the worker goes on
            traceback.print_exc()
            sys.stderr.flush()
            out, ok = ("%s: %s" % (type(exc).__name__, exc)).encode(), 0
        write_frame(wr, RESULT, payload[:8] + bytes([ok]) + out)


def _as_bytes(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


def serve(task, setup=None):
    """Runs task on every element this process gets, until mpmux says BYE. Elements are decoded
    from JSON (the elements of `mpmux new`); results are encoded as _as_bytes says. With setup,
    state = setup(info) once, before READY, and task(element, state) for each element."""
    if setup is None:
        return serve_bytes(lambda init_data, element: _as_bytes(task(json.loads(element))))
    state = []

    def on_init(init_data):
        state.append(setup(json.loads(init_data) if init_data else {}))

    return serve_bytes(lambda init_data, element: _as_bytes(task(json.loads(element), state[0])), on_init)


def main(task, setup=None):
    """serve(), ending quietly when mpmux goes away (the rank was killed)."""
    try:
        serve(task, setup)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        sys.exit(0)
