"""Shared helpers for the integration tests: run the mpmux CLI and mpirun, make temp dirs."""
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import unittest

MPMUX = os.environ.get("MPMUX") or os.path.join(os.environ.get("MPMUX_BINARY_DIR", "build"), "bin", "mpmux")
MPIEXEC = os.environ.get("MPIEXEC", "mpiexec")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def mpmux(*args, check=None, timeout=300, **kw):
    """Runs the mpmux CLI; returns CompletedProcess with text stdout/stderr."""
    p = subprocess.run([MPMUX, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout, **kw)
    if check is not None and p.returncode != check:
        raise AssertionError(f"mpmux {' '.join(map(str, args))}: exit {p.returncode}, expected {check}\n"
                             f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def mpirun(np, *args, timeout=600, **kw):
    """Runs `mpirun -n NP mpmux ARGS` on this node."""
    cmd = [MPIEXEC, "-n", str(np), "--oversubscribe", MPMUX, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout, **kw)


def tree(path):
    """Every file under path with its size and mtime: to prove that nothing stored changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            out[os.path.relpath(full, path)] = (st.st_size, st.st_mtime_ns)
    return out


def most_at_once(intervals):
    """The most (start, end) intervals that overlap at one time: how many tasks ran at once."""
    events = sorted([(float(s), 1) for s, _ in intervals] + [(float(e), -1) for _, e in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


class TmuxPane:
    """For a TempDirTest: a tmux server of its own (its own socket) with one pane of 100x30 running
    bash, ended with the test however it ends; what the terminal receives, byte for byte, goes to
    self.received. start_tmux(name, drop) drops the environment variables in `drop`."""

    def start_tmux(self, name, drop=()):
        self.socket = os.path.join(tempfile.gettempdir(), f"mpmux-{name}-{os.getpid()}-{id(self)}.sock")
        env = {k: v for k, v in ENV.items() if k not in ("TMUX", "TMUX_PANE", *drop)}
        env["PS1"] = "$ "
        self.tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "bash --norc --noprofile", env=env)
        self.addCleanup(self.end_tmux)
        self.received = os.path.join(self.tmp, "received")
        self.tmux("pipe-pane", "-O", "-t", "t", f"cat > {shlex.quote(self.received)}")

    def end_tmux(self):
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def tmux(self, *args, env=None):
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=True,
                              env=env or ENV).stdout


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mpmux-it-")
        self.root = os.path.join(self.tmp, "mux")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, content, mode="w"):
        path = os.path.join(self.tmp, name)
        with open(path, mode) as f:
            f.write(content)
        return path

    def new_session(self, *new_args):
        """mpmux new ROOT ARGS, then mpmux session; returns (mux_dir, mux_id)."""
        d = mpmux("new", self.root, *new_args, check=0).stdout.strip()
        mux_id = mpmux("session", d, check=0).stdout.strip()
        return d, mux_id

    def stat(self, mux_id):
        return json.loads(mpmux("stat", mux_id, "--json", check=0).stdout)

    def counts(self, mux_id):
        """The counts of `stat --json` that every session has, without what participants add."""
        st = self.stat(mux_id)
        return {k: st[k] for k in ("total", "done", "failed", "running", "pending")}

    def assertUsageError(self, p, *needles):
        """Exit 2 and one line on stderr that contains every needle."""
        self.assertEqual(p.returncode, 2, f"stdout: {p.stdout}\nstderr: {p.stderr}")
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertTrue(lines[0].startswith("mpmux: "), lines[0])
        for n in needles:
            self.assertIn(n, lines[0])
