"""libmpmux.so through ctypes: where it is found, the C ABI checked, status codes made exceptions.

The library is loaded on first use, not at import, so that `import mpmux` costs nothing and a
test can change ABI_VERSION before the check runs.
"""
import ctypes
import ctypes.util
import os
import threading

# The C ABI (MPMUX_ABI_VERSION of include/mpmux/mpmux.h) this package was written for.
ABI_VERSION = 1

# Status codes of mpmux.h.
OK, FAILED, USAGE, NO_MEMORY, ABI_MISMATCH, STOPPED = 0, 1, 2, 3, 4, 75

# The soname: the one file a runtime-only install of the library is sure to have.
SONAME = "libmpmux.so.0"


class MuxError(RuntimeError):
    """A call into mpmux failed: storage, MPI, memory. `code` is the C status (mpmux.h)."""

    def __init__(self, message, code=FAILED):
        super().__init__(message)
        self.code = code


class UsageError(MuxError, ValueError):
    """Bad input: an argument, a file, a mux id, an option; nothing stored was changed."""

    def __init__(self, message, code=USAGE):
        super().__init__(message, code)


class AbiMismatchError(MuxError, ImportError):
    """The library found implements another C ABI than the one this package speaks."""

    def __init__(self, message, code=ABI_MISMATCH):
        super().__init__(message, code)


class mpmux_element(ctypes.Structure):
    # `data` is NUL-terminated: read as c_char_p it is the JSON text's bytes at once, without
    # a string_at call per element (JSON text holds no NUL byte).
    _fields_ = [("size", ctypes.c_size_t), ("valid", ctypes.c_int), ("last_try", ctypes.c_int),
                ("index", ctypes.c_uint64), ("attempt", ctypes.c_uint32), ("data", ctypes.c_char_p),
                ("length", ctypes.c_size_t)]


class mpmux_summary(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("handed_out", ctypes.c_uint64), ("done", ctypes.c_uint64),
                ("failed", ctypes.c_uint64), ("failed_for_good", ctypes.c_uint64),
                ("fenced_batches", ctypes.c_uint64), ("held_by_others", ctypes.c_uint64),
                ("seconds", ctypes.c_double), ("stopped", ctypes.c_int)]


_P = ctypes.c_void_p
_S = ctypes.c_char_p
_OUT_STR = ctypes.POINTER(ctypes.c_void_p)
# name: (restype, argtypes); every call but these few returns an int status.
_PROTOTYPES = {
    "mpmux_abi_version": (ctypes.c_uint32, []),
    "mpmux_last_error": (_S, []),
    "mpmux_free": (None, [_P]),
    "mpmux_elements_new_abi": (ctypes.c_int, [ctypes.c_uint32, ctypes.POINTER(_P)]),
    "mpmux_elements_add_many": (ctypes.c_int, [_P, _P, _P, ctypes.c_size_t]),
    "mpmux_elements_create": (ctypes.c_int, [_P, _S, _S, _OUT_STR]),
    "mpmux_elements_free": (None, [_P]),
    "mpmux_set_size": (ctypes.c_int, [_S, ctypes.POINTER(ctypes.c_uint64)]),
    "mpmux_set_destroy": (ctypes.c_int, [_S]),
    "mpmux_session_create": (ctypes.c_int, [_S, _OUT_STR]),
    "mpmux_options_new_abi": (ctypes.c_int, [ctypes.c_uint32, ctypes.POINTER(_P)]),
    "mpmux_options_set": (ctypes.c_int, [_P, _S, _S]),
    "mpmux_options_free": (None, [_P]),
    "mpmux_open_abi": (ctypes.c_int, [ctypes.c_uint32, _S, _P, ctypes.POINTER(_P)]),
    "mpmux_open_fint_abi": (ctypes.c_int, [ctypes.c_uint32, _S, ctypes.c_int, _P, ctypes.POINTER(_P)]),
    "mpmux_next": (ctypes.c_int, [_P, _P]),
    "mpmux_set_result": (ctypes.c_int, [_P, _P, ctypes.c_size_t]),
    "mpmux_record_failed": (ctypes.c_int, [_P, ctypes.c_int, _S]),
    "mpmux_finish": (ctypes.c_int, [_P, _P]),
    "mpmux_close": (None, [_P]),
    "mpmux_run_worker_id": (ctypes.c_int, [_P, _OUT_STR]),
    "mpmux_stat_json": (ctypes.c_int, [_S, _OUT_STR]),
    "mpmux_done": (ctypes.c_int, [_S, ctypes.POINTER(ctypes.c_int)]),
    "mpmux_results_export": (ctypes.c_int, [_S, _S, _S, _OUT_STR]),
}

_lock = threading.Lock()
_lib = None


def candidates():
    """Where the library is looked for, in order: $MPMUX_LIBRARY, the path written next to the
    package by CMake (installed or in the build tree), then the dynamic loader's search path."""
    found = []
    env = os.environ.get("MPMUX_LIBRARY")
    if env:
        return [env]  # an explicit choice is not second-guessed
    try:
        from . import _location  # written by CMake: LIBRARY, relative to this folder
        found.append(os.path.normpath(os.path.join(os.path.dirname(__file__), _location.LIBRARY)))
    except ImportError:
        pass
    found.append(ctypes.util.find_library("mpmux") or SONAME)
    return found


def _load():
    tried = []
    for path in candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} (missing)")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as error:
            tried.append(f"{path} ({error})")
            continue
        try:
            for name, (restype, argtypes) in _PROTOTYPES.items():
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = restype, argtypes
        except AttributeError as error:
            raise AbiMismatchError(f"mpmux: {path} is not the mpmux C ABI {ABI_VERSION} ({error})") from None
        have = lib.mpmux_abi_version()
        if have != ABI_VERSION:
            raise AbiMismatchError(f"mpmux: {path} implements C ABI {have}, this Python package (mpmux "
                                   f"{os.path.dirname(__file__)}) speaks ABI {ABI_VERSION}: use the package "
                                   f"and the library of one build or install")
        lib.path = path
        return lib
    raise MuxError("mpmux: cannot load libmpmux; tried " + "; ".join(tried) +
                   ". Set MPMUX_LIBRARY to the library's path")


def lib():
    """The loaded library (loaded and checked on the first call)."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _load()
    return _lib


def check(status):
    """Raises the exception of a non-zero status, with this thread's mpmux_last_error()."""
    if status == OK:
        return
    message = (lib().mpmux_last_error() or b"").decode("utf-8", "replace") or f"mpmux: status {status}"
    if status == USAGE:
        raise UsageError(message)
    if status == ABI_MISMATCH:
        raise AbiMismatchError(message)
    if status == NO_MEMORY:
        raise MemoryError(message)
    raise MuxError(message, status)


def take_string(out):
    """The text of a string the library returned through char**, freed."""
    try:
        return ctypes.string_at(out.value).decode("utf-8")
    finally:
        lib().mpmux_free(out)


def call_string(name, *args):
    """Calls a function whose last argument is a char** out; returns the text."""
    out = ctypes.c_void_p()
    check(getattr(lib(), name)(*args, ctypes.byref(out)))
    return take_string(out)


def text(s, what):
    """A str argument as UTF-8 bytes; anything else is a TypeError naming `what`."""
    if isinstance(s, os.PathLike):
        s = os.fspath(s)
    if not isinstance(s, str):
        raise TypeError(f"mpmux: {what} must be a str, not {type(s).__name__}: {s!r}")
    return s.encode("utf-8")
