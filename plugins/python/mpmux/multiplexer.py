"""The Python face of mpmux: cloudly's Multiplexer on mpmux's element sets and read sessions."""
import ctypes
import json
import json.scanner
import multiprocessing
import numbers
import sys
import threading
import weakref
from array import array

from . import _library as L
from ._library import UsageError, check, text
from ._loop_exit import describe, watch

# Elements are handed to the library in batches of about this many bytes of JSON, so that the
# Python side never holds more than one batch.
_BATCH_BYTES = 4 << 20


def _encode_result(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _comm_handle(comm):
    """The Fortran handle (py2f) of an mpi4py communicator; TypeError for anything else."""
    if comm is None:
        return None
    # Not an mpi4py object unless mpi4py is imported already; importing it here would start MPI.
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not isinstance(comm, mpi.Comm):
        kind = f"{type(comm).__module__}.{type(comm).__qualname__}".removeprefix("builtins.")
        raise TypeError(f"mpmux: comm must be an mpi4py communicator (mpi4py.MPI.Comm) or None, "
                        f"not {kind}: {comm!r}")
    return comm.py2f()


class Element:
    """One element handed to this worker by Multiplexer.elements()."""

    __slots__ = ("value", "index", "attempt", "last_try", "_mux", "_serial")

    def __init__(self, mux, serial, value, index, attempt, last_try):
        self._mux, self._serial = mux, serial
        self.value, self.index, self.attempt, self.last_try = value, index, attempt, last_try

    def set_result(self, value):
        """Keeps `value` as this element's result (see Multiplexer.set_result)."""
        if self._mux._serial != self._serial:
            raise UsageError(f"mpmux: element {self.index} is no longer the current one: set its result "
                             f"before the loop moves on")
        self._mux.set_result(value)

    def __repr__(self):
        return f"Element(index={self.index}, attempt={self.attempt}, value={self.value!r})"


class Multiplexer:
    """An element set of JSON values and the read sessions on it: each element of a session goes
    to exactly one of the loops that iterate it (threads, processes, MPI ranks, batch jobs).

        mux = Multiplexer.new(grid, "/scratch/ana/mux", tag="sweep")
        mux_id = mux.create_read_session()
        for params in Multiplexer(mux_id):      # in any number of workers
            simulate(params)
    """

    @classmethod
    def new(cls, data, path, *, tag=None):
        """Stores the values of `data` (any iterable of JSON-able values: numbers, strings, lists,
        dicts, True/False/None) as a new element set under the directory `path` (created when
        missing; also file:// or az:// URLs) and returns a Multiplexer on it. Durable on return.
        The values are streamed: the JSON texts are handed to the library in batches."""
        lib = L.lib()
        handle = ctypes.c_void_p()
        check(lib.mpmux_elements_new_abi(L.ABI_VERSION, ctypes.byref(handle)))
        try:
            buffer, offsets = bytearray(), array("Q", [0])
            count = 0
            for value in data:
                try:
                    buffer += json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")
                except (TypeError, ValueError) as error:
                    raise UsageError(f"mpmux: element {count} of the data is not JSON: {error}") from None
                offsets.append(len(buffer))
                count += 1
                if len(buffer) >= _BATCH_BYTES:
                    cls._add_batch(lib, handle, buffer, offsets)
                    buffer, offsets = bytearray(), array("Q", [0])
            cls._add_batch(lib, handle, buffer, offsets)
            return cls(L.call_string("mpmux_elements_create", handle, text(path, "path"),
                                     None if tag is None else text(tag, "tag")))
        finally:
            lib.mpmux_elements_free(handle)

    @staticmethod
    def _add_batch(lib, handle, buffer, offsets):
        count = len(offsets) - 1
        if count == 0:
            return
        data = (ctypes.c_char * len(buffer)).from_buffer(buffer)
        address, _ = offsets.buffer_info()
        check(lib.mpmux_elements_add_many(handle, data, address, count))

    def __init__(self, mux_id, worker_id=None, timeout=None, comm=None):
        """A handle on a read session (`mux_id`, as create_read_session returns) or on an element
        set (its mux directory). Iterating it takes part in the session.

        worker_id: a name of this worker (default: the name mpmux gives its participant once
        the loop started, before that the process's and thread's names).
        timeout: seconds; the loop takes no new element after that many seconds from its start
        (nor one whose expected run time would pass it) and then ends, leaving the rest pending
        for other workers or a later loop.
        comm: an mpi4py communicator; the loop is then collective over it (every rank iterates;
        rank 0 coordinates and gets no element unless it is alone). Without one the loop makes
        no MPI call and is a participant of the session on its own."""
        self._mux = text(mux_id, "mux_id").decode("utf-8")
        if worker_id is not None and not isinstance(worker_id, str):
            raise TypeError(f"mpmux: worker_id must be a str or None, not {type(worker_id).__name__}")
        if timeout is not None:
            if not isinstance(timeout, numbers.Real) or isinstance(timeout, bool):
                raise TypeError(f"mpmux: timeout must be a number of seconds or None, not {timeout!r}")
            if not timeout > 0:
                raise UsageError(f"mpmux: timeout must be more than 0 seconds, not {timeout!r}")
        self._fint = _comm_handle(comm)
        self._worker_id = worker_id
        self._run_name = None
        self._timeout = timeout
        self._run = None
        self._serial = 0  # counts the elements handed out, so that a stale Element is refused
        self.summary = None

    def __getstate__(self):
        return {"mux": self._mux, "worker_id": self._worker_id, "timeout": self._timeout}

    def __setstate__(self, state):
        self.__init__(state["mux"], state["worker_id"], state["timeout"])

    def __repr__(self):
        return f"Multiplexer({self._mux!r})"

    @property
    def mux_id(self):
        """The mux id (or the mux directory) this Multiplexer was made from."""
        return self._mux

    @property
    def worker_id(self):
        if self._worker_id:
            return self._worker_id
        if self._run_name:
            return self._run_name
        return f"{multiprocessing.current_process().name} {threading.current_thread().name}"

    def __len__(self):
        """Elements in the set."""
        size = ctypes.c_uint64()
        check(L.lib().mpmux_set_size(self._mux.encode(), ctypes.byref(size)))
        return size.value

    def create_read_session(self):
        """Starts a new, independent read session of the set and returns its mux id (a printable
        URI, safe in an environment variable). This Multiplexer does not join it: workers make
        Multiplexer(mux_id) and iterate."""
        return L.call_string("mpmux_session_create", self._mux.encode())

    def stat(self, mux_id=None):
        """Where the session (this one, or `mux_id`) stands: the dict of `mpmux stat --json`."""
        return json.loads(L.call_string("mpmux_stat_json", self._session_arg(mux_id)))

    def done(self, mux_id=None):
        """True when every element of the session (this one, or `mux_id`) is done."""
        flag = ctypes.c_int()
        check(L.lib().mpmux_done(self._session_arg(mux_id), ctypes.byref(flag)))
        return bool(flag.value)

    def export_results(self, format="h5", file=None):
        """Writes the session's results as `mpmux results` does (format "h5", "csv" or "jsonl";
        `file` None for h5 rebuilds the session's results.h5). Returns the path written."""
        return L.call_string("mpmux_results_export", self._session_arg(None), text(format, "format"),
                             None if file is None else text(file, "file"))

    def destroy(self):
        """Removes the element set with all its sessions."""
        check(L.lib().mpmux_set_destroy(self._mux.encode()))

    def _session_arg(self, mux_id):
        return text(mux_id, "mux_id") if mux_id is not None else self._mux.encode()

    # --------------------------------------------------------------------------- the loop

    def __iter__(self):
        """Yields the values of the elements this worker gets. An element is done when the loop
        moves past it (also by break or return), with the result given to set_result; an
        exception out of the loop body records it as a failed attempt with the exception's
        traceback, and goes on. When the loop ends, every outcome is durable."""
        return self._loop(False)

    def elements(self):
        """The same loop, yielding Element objects: .value, .index, .attempt, .last_try and
        .set_result()."""
        return self._loop(True)

    def set_result(self, value):
        """Keeps `value` as the result of the current element, recorded with it when the loop
        moves on: bytes as they are, str as UTF-8, anything else as its JSON text."""
        if self._run is None:
            raise UsageError("mpmux: set_result needs a current element: call it inside the loop")
        data = _encode_result(value)
        check(L.lib().mpmux_set_result(self._run, data, len(data)))

    def _loop(self, as_elements):
        holder = []
        generator = self._iterate(as_elements, holder)
        holder.append(weakref.ref(generator))
        return generator

    def _open(self):
        lib = L.lib()
        options = ctypes.c_void_p()
        run = ctypes.c_void_p()
        check(lib.mpmux_options_new_abi(L.ABI_VERSION, ctypes.byref(options)))
        try:
            if self._timeout is not None:
                check(lib.mpmux_options_set(options, b"deadline", f"+{self._timeout:.3f}s".encode()))
                check(lib.mpmux_options_set(options, b"grace", b"0"))
            if self._fint is None:
                check(lib.mpmux_open_abi(L.ABI_VERSION, self._mux.encode(), options, ctypes.byref(run)))
            else:
                check(lib.mpmux_open_fint_abi(L.ABI_VERSION, self._mux.encode(), self._fint, options,
                                              ctypes.byref(run)))
        finally:
            lib.mpmux_options_free(options)
        try:
            self._run_name = L.call_string("mpmux_run_worker_id", run)
        except BaseException:
            lib.mpmux_close(run)
            raise
        return run

    def _iterate(self, as_elements, holder):
        # The run opens at the loop's first step: a generator never started holds nothing.
        if self._run is not None:
            raise UsageError("mpmux: this Multiplexer is being iterated already: make one per loop")
        run = self._run = self._open()
        lib = L.lib()
        outer = sys.exc_info()[1]
        element = L.mpmux_element()
        element.size = ctypes.sizeof(element)
        # The C scanner under json.loads, without its per-call checks: 8x faster on small values.
        scan = json.scanner.make_scanner(json.JSONDecoder())
        next_element, ref = lib.mpmux_next, ctypes.byref(element)
        ended = False
        try:
            while True:
                status = next_element(run, ref)
                if status:
                    check(status)
                if not element.valid:
                    break
                self._serial += 1
                try:
                    raw = element.data
                    if len(raw) != element.length:
                        raise ValueError("a NUL byte")
                    data = raw.decode("utf-8")
                    value, end = scan(data, 0)
                    if end != len(data):
                        raise ValueError("more than one JSON value")
                except (ValueError, StopIteration):
                    message = (f"mpmux: element {element.index} of {self._mux} is not JSON text: the Python "
                               f"loop reads sets of JSON values (Multiplexer.new, mpmux new, the C ABI)")
                    ended = True
                    self._end(run, message, quiet=True)
                    raise UsageError(message) from None
                if as_elements:
                    value = Element(self, self._serial, value, element.index, element.attempt,
                                    bool(element.last_try))
                try:
                    yield value
                except GeneratorExit:
                    # Left early: by break/return, or by an exception that is on its way out.
                    ended = True
                    watch(sys._getframe(1), holder[0]() is not None, outer,
                          lambda failure: self._end(run, failure, quiet=True))
                    return
                except BaseException as error:  # thrown in with generator.throw()
                    ended = True
                    self._end(run, describe(error), quiet=True)
                    raise
        except BaseException:
            if not ended:
                ended = True
                self._end(run, None, quiet=True)
            raise
        ended = True
        self._end(run, None, quiet=False)

    def _end(self, run, failure, quiet):
        """Records the current element as failed (when `failure` is its text), finishes and frees
        the run. `quiet`: an exception is on its way already, so a failure here is not raised."""
        lib = L.lib()
        summary = L.mpmux_summary()
        summary.size = ctypes.sizeof(summary)
        try:
            if failure is not None:
                lib.mpmux_record_failed(run, 1, failure.encode("utf-8", "replace"))
            status = lib.mpmux_finish(run, ctypes.byref(summary))
            error = (lib.mpmux_last_error() or b"").decode("utf-8", "replace")
        finally:
            lib.mpmux_close(run)
            self._run = None
        self.summary = {name: getattr(summary, name) for name, _ in L.mpmux_summary._fields_[1:]}
        self.summary["stopped"] = bool(self.summary["stopped"])
        # STOPPED (the timeout) and FAILED for elements of the session failed for good (by this
        # loop or before) end a loop normally, as the C++ range-for does; FAILED also means that
        # storage failed, which the session's counts tell apart.
        if quiet or status in (L.OK, L.STOPPED):
            return
        if status == L.FAILED and (summary.failed_for_good or self.stat()["failed"]):
            return
        raise (UsageError(error) if status == L.USAGE else L.MuxError(error, status))
