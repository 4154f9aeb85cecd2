"""Reading docs/guide.md as a test script: its ```console blocks, the commands in them, the output
they show, and the normalization that makes two runs of the guide comparable."""
import difflib
import re

# The directory the guide works in; a test run substitutes a fresh temporary directory.
GUIDE_ROOT = "/tmp/mpmux-guide"

# A console block preceded by this comment is not run with the others (see test_guide.py).
CPP_MARKER = "<!-- test_guide: the C++ example's run -->"


class Step:
    """One `$ command` of the guide with the output lines shown under it."""

    def __init__(self, line, command):
        self.line = line  # 1-based line of the `$ ` in the guide
        self.command = command
        self.expected = []

    def __repr__(self):
        return f"guide.md:{self.line}: $ {self.command.splitlines()[0]}"


def fenced_blocks(text, language):
    """(first line number, lines, preceding non-blank line) of each ```language block."""
    lines = text.split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```" + language:
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                raise ValueError(f"guide.md:{i + 1}: ```{language} block is not closed")
            before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            blocks.append((start + 1, lines[start:j], before.strip()))
            i = j
        i += 1
    return blocks


def parse_console(first_line, lines):
    """Steps of one console block: `$ ` starts a command, `> ` lines right after it continue it
    (as bash's PS2), every other line up to the next `$ ` is that command's output."""
    steps = []
    continuing = False
    for n, line in enumerate(lines, first_line):
        if line.startswith("$ "):
            steps.append(Step(n, line[2:]))
            continuing = True
        elif continuing and (line.startswith("> ") or line == ">"):
            steps[-1].command += "\n" + line[2:]
        else:
            if not steps:
                raise ValueError(f"guide.md:{n}: console block output before any `$ ` command")
            steps[-1].expected.append(line)
            continuing = False
    return steps


def guide_steps(text):
    """(steps run in one shell, steps of the C++ example's run)."""
    run, cpp = [], []
    for first, lines, before in fenced_blocks(text, "console"):
        (cpp if before == CPP_MARKER else run).extend(parse_console(first, lines))
    return run, cpp


# What legitimately differs between two runs; each pattern is replaced by a fixed token.
_VARYING = [
    (re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<iso-time>"),  # created attributes
    (re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{4}\b"), "<session>"),  # session ids
    (re.compile(r"\b\d{8}-\d{6}\b"), "<mux-time>"),  # mux directory names
    (re.compile(r"\b\d+(\.\d+)?/s\b"), "<rate>/s"),  # progress rates
    (re.compile(r"\b\d+:\d\d(:\d\d)?\b|--:--"), "<h:m:s>"),  # elapsed, ETA
]
# The plain progress lines printed while a run goes on: how many depends on its speed.
_PERIODIC_PROGRESS = re.compile(r"^mpmux: \d+/\d+ elements .*, ETA ")


def normalize(text, tmp=None):
    """Lines of `text` with the varying parts replaced, periodic progress lines dropped, trailing
    blanks removed; `tmp` (the directory the run used) is written as the guide's root."""
    if tmp:
        text = text.replace(tmp, GUIDE_ROOT)
    out = []
    for line in text.split("\n"):
        if _PERIODIC_PROGRESS.match(line):
            continue
        for pattern, token in _VARYING:
            line = pattern.sub(token, line)
        out.append(line.rstrip())
    while out and out[-1] == "":
        out.pop()
    return out


def compare(step, actual_lines):
    """A message when the normalized output differs from the guide's, else None."""
    expected = normalize("\n".join(step.expected))
    if expected == actual_lines:
        return None
    diff = "\n".join(difflib.unified_diff(expected, actual_lines, "guide", "this run", lineterm=""))
    return f"{step!r}: the output differs from the guide\n{diff}"
