"""Crash test: a 2,000-element session whose whole job (mpirun, every rank, every task) is killed
with SIGKILL at 30 random moments and re-run after each, until `mpmux done` succeeds.

Afterwards every element is done with the result of an uninterrupted run, every journal reads
cleanly, results.h5 opens, and the elements that ran more than once are no more than the ones in
flight at the kills. The helpers at the top (journal reader, process-tree kill, the task) are
shared with test_drain.py and test_full_disk.py."""
import ctypes
import json
import os
import random
import signal
import struct
import subprocess
import time
import unittest

from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest, mpmux

# ----- the task -----

N_ELEMENTS = 2000


def write_sleep_grid(path, n):
    """CSV of n elements: i, and s, a sleep of 1-20 ms fixed by the index so that runs compare."""
    with open(path, "w") as f:
        f.write("i,s\n")
        for i in range(n):
            f.write(f"{i},{0.001 * (1 + (i * 7919) % 20):.3f}\n")


def logging_task(log):
    """--exec template: sleeps, prints the index (the result), then appends it to `log` with one
    O_APPEND write, so the log counts the executions that ran to the end, per element."""
    return f"sh -c 'sleep \"$2\"; echo \"$1\"; echo \"$1\" >> \"$0\"' {log} {{#}} {{s}}"


def executions(log, since=0):
    """Index -> how many executions of it ran to the end (lines of the task log), counting the
    lines from byte `since` on."""
    counts = {}
    if os.path.exists(log):
        with open(log) as f:
            f.seek(since)
            for line in f.read().splitlines():
                counts[int(line)] = counts.get(int(line), 0) + 1
    return counts


def log_size(log):
    return os.path.getsize(log) if os.path.exists(log) else 0


def log_lines(log):
    try:
        with open(log, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


# ----- reading journals (docs/formats.md), independently of the C++ reader -----

def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class JournalCorrupt(Exception):
    pass


def read_journal(path):
    """Reads one journal file. Returns (header, records, valid_bytes, torn_bytes): header is a dict
    (session, host, pid), records a list of dicts (type, index, attempt, worker, exit_code, signal,
    flags, result, stderr). A torn tail is counted, not an error; a bad record followed by more
    data raises JournalCorrupt naming the file and the offset."""
    with open(path, "rb") as f:
        data = f.read()
    header, records, at = None, [], 0
    while at < len(data):
        rest = data[at:]
        if rest.count(0) == len(rest):  # trailing zeros: torn tail
            break
        if len(rest) < 8:
            break
        length, crc = struct.unpack_from("<II", data, at)
        end = at + 8 + length
        if end > len(data):  # runs past the end: torn tail
            break
        body = data[at + 8:end]
        if length < 33 or crc32c(body) != crc:
            if end == len(data):  # bad and ends exactly at the end: torn tail
                break
            raise JournalCorrupt(f"{path}: bad record at byte {at}")
        rtype, index, attempt, worker, t_start, t_end = struct.unpack_from("<BQIIqq", body, 0)
        p = 33
        if rtype == 1:
            (n,) = struct.unpack_from("<H", body, p)
            session = body[p + 2:p + 2 + n].decode()
            p += 2 + n
            (n,) = struct.unpack_from("<H", body, p)
            host = body[p + 2:p + 2 + n].decode()
            p += 2 + n
            (pid,) = struct.unpack_from("<I", body, p)
            if header is not None or records:
                raise JournalCorrupt(f"{path}: header record at byte {at}")
            header = {"session": session, "host": host, "pid": pid}
        elif rtype in (2, 3):
            pid, exit_code, sig, flags, n = struct.unpack_from("<IiiBH", body, p)
            p += 15 + n
            (n,) = struct.unpack_from("<I", body, p)
            result = body[p + 4:p + 4 + n]
            p += 4 + n
            (n,) = struct.unpack_from("<I", body, p)
            stderr = body[p + 4:p + 4 + n]
            if header is None:
                raise JournalCorrupt(f"{path}: outcome before the header at byte {at}")
            records.append({"type": "done" if rtype == 2 else "failed", "index": index, "attempt": attempt,
                            "worker": worker, "exit_code": exit_code, "signal": sig, "flags": flags,
                            "result": result, "stderr": stderr, "t_start": t_start, "t_end": t_end})
        else:
            raise JournalCorrupt(f"{path}: record type {rtype} at byte {at}")
        at = end
    return header, records, at, len(data) - at


def session_dir(mux_id):
    """The session directory a mux id names (file:// + percent-encoded path + #s=id)."""
    from urllib.parse import unquote
    path, _, session = mux_id[len("file://"):].partition("#s=")
    return os.path.join(unquote(path), "sessions", session)


def journal_files(mux_id):
    d = os.path.join(session_dir(mux_id), "journal")
    return sorted(os.path.join(d, name) for name in os.listdir(d) if name.endswith(".mjl"))


def read_journals(mux_id):
    """Every journal of the session: list of (path, header, records, valid_bytes, torn_bytes)."""
    out = []
    session = mux_id.partition("#s=")[2]
    for path in journal_files(mux_id):
        header, records, valid, torn = read_journal(path)
        if header is not None and header["session"] != session:
            raise JournalCorrupt(f"{path}: header names session {header['session']}")
        out.append((path, header, records, valid, torn))
    return out


def done_records(mux_id):
    """Index -> list of done records, over every journal."""
    done = {}
    for _, _, records, _, _ in read_journals(mux_id):
        for r in records:
            if r["type"] == "done":
                done.setdefault(r["index"], []).append(r)
    return done


# ----- killing a whole job -----

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """Orphans of the jobs this process starts (ranks whose mpirun died, tasks whose rank died)
    are re-parented here, so kill_job can find every one and none outlives a test."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _processes():
    """pid -> (ppid, state) of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(name)] = (int(fields[1]), fields[0])
    return out


def descendants(pid, procs=None):
    """pid -> state of every descendant of pid."""
    procs = procs if procs is not None else _processes()
    children = {}
    for p, (ppid, state) in procs.items():
        children.setdefault(ppid, []).append(p)
    out, stack = {}, [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out[c] = procs[c][1]
            stack.append(c)
    return out


def signal_each(pids, sig):
    """Sends sig to every pid that still exists."""
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def kill_job(proc):
    """Kills the job `proc` (an mpirun or mpmux started by this process) as a node failure would:
    every process of it is stopped first, so none sees another die, then all get SIGKILL. Returns
    when every one is gone."""
    me = os.getpid()
    # Freeze until the set is stable: a process may fork between the scan and the SIGSTOP.
    stopped = set()
    while True:
        live = {p for p, state in descendants(me).items() if state not in ("Z", "X")}
        new = live - stopped
        if not new:
            break
        signal_each(new, signal.SIGSTOP)
        stopped |= new
    signal_each(stopped, signal.SIGKILL)
    proc.wait()
    reap_orphans()


def reap_orphans():
    """Kills and reaps whatever this process inherited as subreaper, until nothing is left."""
    me = os.getpid()
    while True:
        procs = _processes()
        left = descendants(me, procs)
        if not left:
            return
        for p, state in left.items():
            if state not in ("Z", "X"):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if procs[p][0] == me:
                try:
                    os.waitpid(p, 0)
                except ChildProcessError:
                    pass
        # Zombies whose parent is dying are re-parented here in a moment.
        time.sleep(0.002)


# ----- running jobs -----

def start_mpirun(np, args, out_path):
    """Starts `mpirun -n NP mpmux ARGS` in a session of its own, stdout and stderr to out_path."""
    out = open(out_path, "wb")
    try:
        return subprocess.Popen([MPIEXEC, "-n", str(np), "--oversubscribe", MPMUX, *map(str, args)],
                                stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    finally:
        out.close()


def wait_for_lines(log, target, proc, timeout=120):
    """Waits until the task log holds `target` lines or proc has ended; True for the former.
    Polled: the log is written by tasks this process cannot wait on."""
    deadline = time.monotonic() + timeout
    while log_lines(log) < target:
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise AssertionError(f"{log}: no progress in {timeout} s")
        time.sleep(0.003)
    return True


def stat_json(mux_id):
    return json.loads(mpmux("stat", mux_id, "--json", check=0).stdout)


def results_jsonl(mux_id):
    """index -> row of `mpmux results --format jsonl`."""
    p = mpmux("results", mux_id, "--format", "jsonl", check=0)
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    return {row["index"]: row for row in rows}


class CrashTest(TempDirTest):
    KILLS = 30
    NP = 3  # rank 0 coordinates, two workers

    @classmethod
    def setUpClass(cls):
        become_subreaper()

    def tearDown(self):
        reap_orphans()
        super().tearDown()

    def test_sigkill_at_thirty_moments_loses_nothing(self):
        grid = os.path.join(self.tmp, "grid.csv")
        write_sleep_grid(grid, N_ELEMENTS)
        mux_dir = mpmux("new", self.root, "--from", grid, check=0).stdout.strip()

        # The reference: an uninterrupted run of the same set (its time is printed for scale).
        ref_id = mpmux("session", mux_dir, check=0).stdout.strip()
        ref_log = os.path.join(self.tmp, "ref.log")
        t0 = time.monotonic()
        p = subprocess.run([MPIEXEC, "-n", str(self.NP), "--oversubscribe", MPMUX, "run", ref_id,
                            "--exec", logging_task(ref_log), "--no-progress"],
                           capture_output=True, text=True, env=ENV, timeout=600)
        run_time = time.monotonic() - t0
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(executions(ref_log), {i: 1 for i in range(N_ELEMENTS)})
        reference = {i: recs[0]["result"] for i, recs in done_records(ref_id).items()}
        self.assertEqual(len(reference), N_ELEMENTS)

        mux_id = mpmux("session", mux_dir, check=0).stdout.strip()
        log = os.path.join(self.tmp, "crash.log")
        seed = int(os.environ.get("MPMUX_CRASH_SEED", random.SystemRandom().randrange(1 << 32)))
        print(f"\ncrash test: seed {seed} (MPMUX_CRASH_SEED={seed} repeats it), "
              f"uninterrupted run {run_time:.1f} s", flush=True)
        rng = random.Random(seed)
        # A killed job's batches go back to the session once its lease has passed: a short lease,
        # so that the 31 runs do not wait 30 s each for the batches of the jobs killed before.
        args = ["run", mux_id, "--exec", logging_task(log), "--no-progress", "--lease", "3"]

        in_flight_total = 0
        done_before = set()
        for kill in range(self.KILLS):
            pending = N_ELEMENTS - len(done_before)
            run_start = log_size(log)  # every process of the last run is gone: the rest is this run's
            proc = start_mpirun(self.NP, args, os.path.join(self.tmp, f"run{kill}.out"))
            if pending > 300 and rng.random() < 0.15:
                # Some kills land in the start-up: while rank 0 reads and cuts journals, allocates
                # the windows, writes its journal header.
                time.sleep(rng.uniform(0.0, 0.6))
                moment = "start-up"
            else:
                # Most land mid-run, spread so the 30 kills share the work: after a random number
                # of elements have run in this run.
                grow = rng.randint(1, max(1, min(int(0.8 * pending), int(2 * pending / (self.KILLS - kill)))))
                self.assertTrue(wait_for_lines(log, log_lines(log) + grow, proc),
                                f"run {kill} ended before the kill: exit {proc.returncode}")
                moment = f"after {grow} elements"
            self.assertIsNone(proc.poll(), f"run {kill} ended before the kill: exit {proc.returncode}")
            kill_job(proc)

            st = stat_json(mux_id)  # reads every journal: a corrupt one fails here
            read_journals(mux_id)  # and so must ours, a torn tail aside
            # The elements this run executed to the end but did not journal: each will run again.
            # (Done means journaled; which ones are done, the journals say.)
            done = set(done_records(mux_id))
            self.assertEqual(len(done), st["done"])
            self.assertLessEqual(done_before, done, "a kill lost elements that were done")
            self.assertLessEqual(done, set(executions(log)), "an element is done that never ran")
            ran = executions(log, since=run_start)
            in_flight = len(set(ran) - done)
            in_flight_total += in_flight
            done_before = done
            print(f"kill {kill + 1:2d} ({moment}): {st['done']} done, {in_flight} ran but not journaled",
                  flush=True)

        p = subprocess.run([MPIEXEC, "-n", str(self.NP), "--oversubscribe", MPMUX, *args],
                           capture_output=True, text=True, env=ENV, timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(mpmux("done", mux_id).returncode, 0)

        # Every element ran, and the duplicates are bounded by the elements in flight at the kills.
        counts = executions(log)
        self.assertEqual(sorted(counts), list(range(N_ELEMENTS)))
        ran_twice = sum(1 for c in counts.values() if c > 1)
        duplicates = sum(c - 1 for c in counts.values())
        print(f"crash test: {ran_twice} elements ran more than once ({duplicates} extra executions); "
              f"{in_flight_total} were in flight at the {self.KILLS} kills", flush=True)
        self.assertLessEqual(duplicates, in_flight_total)

        # Every journal reads cleanly: whole records only (the last run cut the torn tails).
        journals = read_journals(mux_id)
        self.assertGreaterEqual(len(journals), 1)
        for path, header, _, valid, torn in journals:
            self.assertEqual(torn, 0, f"{path}: {torn} bytes of torn tail left")
            # A run killed while creating its journal may have left it empty (cut to nothing).
            self.assertTrue(valid == 0 or header is not None, path)
        # One done record per element, with the uninterrupted run's result.
        done = done_records(mux_id)
        self.assertEqual(sorted(done), list(range(N_ELEMENTS)))
        for i, recs in done.items():
            self.assertEqual(len(recs), 1, f"element {i} has {len(recs)} done records")
            self.assertEqual(recs[0]["result"], reference[i], f"element {i}")
            self.assertEqual(recs[0]["result"], f"{i}\n".encode())
        st = stat_json(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (N_ELEMENTS, 0, 0))

        # The exports agree: JSON Lines rows and results.h5.
        rows = results_jsonl(mux_id)
        self.assertEqual(sorted(rows), list(range(N_ELEMENTS)))
        for i, row in rows.items():
            self.assertEqual((row["status"], row["result"]), ("done", f"{i}\n"), f"element {i}")
        check_results_h5(self, mux_id, N_ELEMENTS)


def check_results_h5(test, mux_id, n):
    """`mpmux results --format h5` writes results.h5 in the session; it opens with h5py and holds
    one done row per element whose result is the index and a newline."""
    import h5py
    path = mpmux("results", mux_id, "--format", "h5", check=0).stdout.strip()
    test.assertEqual(path, os.path.join(session_dir(mux_id), "results.h5"))
    with h5py.File(path, "r") as f:
        table = f["/results"][:]
    test.assertEqual(len(table), n)
    test.assertEqual(list(table["index"]), list(range(n)))
    for i, row in enumerate(table):
        test.assertEqual((row["status"], row["result"]), (b"done", f"{i}\n".encode()), f"results.h5 row {i}")


if __name__ == "__main__":
    unittest.main()
