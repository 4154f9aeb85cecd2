"""How a `for` loop over a generator was left, learnt when the generator is closed early.

A loop left by `break` or `return` (or an explicit close()) has finished the body of its current
element; a loop left by an exception has not, and that element is a failed attempt with the
exception's text. CPython closes the generator while the exception is on its way, with the
exception hidden from Python code (it is saved away around the close). So:

- the instruction the loop's frame was at tells the two apart: a `break` or `return` drops the
  generator with POP_TOP (or a store or delete, or the frame's return, for a generator driven by
  hand), while an exception is raised by whatever instruction failed;
- the exception itself is caught on its way on: the frames between the loop and the top get a
  one-shot trace function, as pdb's set_trace does, which sees it reach the first frame that
  handles or passes it (the loop's own frame when the handler is there), or sys.excepthook when
  it ends the program. Tracing is on only from the close until the exception is seen.
"""
import atexit
import dis
import sys
import threading
import traceback

# Instructions that drop a reference without raising: the loop was left normally.
_RELEASE_OPS = frozenset(dis.opmap[name] for name in (
    "POP_TOP", "END_FOR", "RETURN_VALUE", "RETURN_CONST", "STORE_FAST", "STORE_NAME", "STORE_GLOBAL",
    "STORE_DEREF", "DELETE_FAST", "DELETE_NAME", "DELETE_GLOBAL", "DELETE_DEREF") if name in dis.opmap)

# The text kept when the exception could not be seen (another tracer owns tracing, or the frame
# of the loop swallowed it where no trace event shows it).
UNSEEN = "the loop body raised an exception (its text could not be read)"


def describe(exc, tb=None):
    """The traceback of `exc` (`tb`, or its own) as Python prints it; its last line, the
    exception's text, is what a stderr tail cut to its end keeps."""
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__)).rstrip()


def watch(frame, closed_by_hand, outer, on_end):
    """Called from the generator's GeneratorExit handler; `frame` is the frame that closed it, `outer`
    the exception being handled where the loop started (not the loop's). Calls on_end(None) when
    the loop was left normally, on_end(text) with the exception's text when it was left by one:
    at once, or when the exception shows itself."""
    if closed_by_hand or frame is None or frame.f_code.co_code[frame.f_lasti] in _RELEASE_OPS:
        on_end(None)
    elif sys.gettrace() is not None or not hasattr(sys, "_getframe"):
        on_end(UNSEEN)  # a debugger or coverage owns tracing: leave it alone
    else:
        _ExceptionWatch(frame, outer, on_end)


class _ExceptionWatch:
    def __init__(self, loop_frame, outer, on_end):
        self.loop = loop_frame
        self.outer = outer
        self.on_end = on_end
        self.ended = False
        self.frames = []
        f = loop_frame
        while f is not None:
            self.frames.append((f, f.f_trace))
            f.f_trace = self.local
            f = f.f_back
        self.main = threading.current_thread() is threading.main_thread()
        if self.main:  # a loop at the top of the main program: nothing above it sees the exception
            self.previous_hook = sys.excepthook
            sys.excepthook = self.excepthook
        atexit.register(self.at_exit)
        sys.settrace(self.new_frame)

    @staticmethod
    def new_frame(frame, event, arg):
        return None  # frames started meanwhile are not traced

    def local(self, frame, event, arg):
        if self.ended:
            return None
        if event == "exception":
            if arg[1] is not self.outer:
                self.end(describe(arg[1], arg[2]))  # not yet attached to the exception
                return None
        elif frame is self.loop:
            if event == "line":  # in a handler of the loop's frame, the exception is sys.exc_info()'s
                exc = sys.exc_info()[1]
                if exc is not None and exc is not self.outer:
                    self.end(describe(exc))
                    return None
        elif event in ("line", "return"):
            self.end(UNSEEN)  # the loop's frame returned normally: it swallowed the exception
            return None
        return self.local

    def excepthook(self, exc_type, exc, tb):
        if not self.ended:
            self.end(describe(exc, tb))
        sys.excepthook(exc_type, exc, tb)

    def at_exit(self):
        if not self.ended:
            self.end(UNSEEN)

    def end(self, text):
        self.ended = True
        sys.settrace(None)
        for f, previous in self.frames:
            f.f_trace = previous
        self.frames = []
        if self.main and sys.excepthook == self.excepthook:
            sys.excepthook = self.previous_hook
        atexit.unregister(self.at_exit)
        self.on_end(text)
