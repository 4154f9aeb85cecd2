"""A journal write error (file size limit, full disk) stops the run with a clear error and exit 75,
and nothing acknowledged is lost: every whole record in the journal reads, the counts match the
records, and a re-run without the limit finishes the rest.

The file size limit (RLIMIT_FSIZE) is put on the running `mpmux run` (one process, no mpirun:
it is rank 0, which writes the journal) once its elements run, not from its start: MPI's start-up
creates shared-memory segments larger than any small limit and would fail first."""
import os
import re
import resource
import signal
import subprocess
import unittest

import test_crash as crash
from mpmuxtest import ENV, MPMUX, TempDirTest, mpmux

STOPPED = 75
N = 3000


def task(log):
    """Prints the index (the result) and appends it to `log`: the executions that ran to the end."""
    return f"sh -c 'echo \"$1\"; echo \"$1\" >> \"$0\"' {log} {{#}}"


def ignore_sigxfsz():
    # Past RLIMIT_FSIZE a write fails with EFBIG only when SIGXFSZ is ignored; by default the
    # signal kills the writer, which is a crash and not this test's case.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class FullDiskTest(TempDirTest):
    def run_into_write_error(self, mux_id, log, limit=None):
        """Runs the session in one process; once 5 elements ran, calls limit(proc) to make the
        journal's writes fail. Returns (stderr, the journal file it wrote)."""
        proc = subprocess.Popen([MPMUX, "run", mux_id, "--exec", task(log), "--no-progress"], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=ignore_sigxfsz)
        try:
            self.assertTrue(crash.wait_for_lines(log, 5, proc), "the run ended before the limit was set")
            journals = crash.journal_files(mux_id)
            self.assertEqual(len(journals), 1)
            if limit:
                limit(proc, journals[0])
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, STOPPED, err)
        return err, journals[0]

    def check_stopped(self, mux_id, log, err, journal, cause):
        """The error names the journal (or the session's claim objects) and the cause; the journal's
        whole records are exactly what stat counts and what the stop message reports; nothing done is
        missing from the log. Returns the executions that ran but are not done (the most that can run
        twice)."""
        lines = err.strip().splitlines()
        self.assertTrue(all(line.startswith("mpmux: ") for line in lines), f"one line per message:\n{err}")
        # The first write to fail is the journal's or, as every run is a participant of its
        # session, one of the session store's claim objects beside it: the line names which.
        session = os.path.dirname(os.path.dirname(journal))
        self.assertTrue(any((journal in line or session + "/round-" in line) and cause in line for line in lines),
                        f"no error line names {journal} or the session's claims and '{cause}':\n{err}")
        m = re.search(r"(?m)^mpmux: stopped \(.*\): (\d+) of (\d+) elements done", err)
        self.assertIsNotNone(m, err)

        header, records, valid, torn = crash.read_journal(journal)
        self.assertIsNotNone(header)
        done = {r["index"] for r in records if r["type"] == "done"}
        self.assertEqual(len(done), len(records), "only done records: every task succeeds")
        st = crash.stat_json(mux_id)
        self.assertEqual((st["done"], st["failed"]), (len(done), 0))
        self.assertEqual((int(m.group(1)), int(m.group(2))), (len(done), N), err)
        self.assertGreater(len(done), 0)
        self.assertLess(len(done), N, "the limit must stop the run before the end")
        ran = crash.executions(log)
        self.assertLessEqual(done, set(ran), "an element is done that never ran")
        return sum(ran.values()) - len(done), valid, torn

    def finish_and_check(self, mux_id, log, in_flight):
        """Re-runs without the limit: everything ends done, with its result, each element run once
        more at most if it was in flight at the error."""
        before = {path: os.path.getsize(path) for path in crash.journal_files(mux_id)}
        p = mpmux("run", mux_id, "--exec", task(log), "--no-progress")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(mpmux("done", mux_id).returncode, 0)
        counts = crash.executions(log)
        self.assertEqual(sorted(counts), list(range(N)))
        duplicates = sum(c - 1 for c in counts.values())
        self.assertLessEqual(duplicates, in_flight)
        done = crash.done_records(mux_id)
        for i in range(N):
            self.assertEqual([r["result"] for r in done[i]], [f"{i}\n".encode()], f"element {i}")
        # A journal belongs to its one writer: the re-run ignores the stopped run's torn tail (the
        # records before it all read) and never cuts it.
        journals = {path: torn for path, _, _, _, torn in crash.read_journals(mux_id)}
        for path, size in before.items():
            self.assertEqual(os.path.getsize(path), size, f"{path}: the re-run changed another run's journal")
        self.assertEqual(len(journals), len(before) + 1)
        return duplicates

    def test_file_size_limit_stops_the_run_with_exit_75(self):
        _, mux_id = self.new_session("--range", str(N))
        log = os.path.join(self.tmp, "ran.log")
        limits = []

        def limit(proc, journal):
            # Room for a few hundred more records, far less than the whole journal (~80 bytes each).
            size = os.path.getsize(journal) + 24 * 1024
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (size, size))
            limits.append(size)

        err, journal = self.run_into_write_error(mux_id, log, limit)
        in_flight, valid, torn = self.check_stopped(mux_id, log, err, journal, "File too large")
        self.assertLessEqual(valid + torn, limits[0])
        duplicates = self.finish_and_check(mux_id, log, in_flight)
        print(f"\nRLIMIT_FSIZE {limits[0]} bytes: {valid} bytes of whole records, {torn} torn; "
              f"{in_flight} ran but were not journaled, {duplicates} ran again", flush=True)

    def test_full_disk_stops_the_run_with_exit_75(self):
        disk = os.path.join(self.tmp, "disk")
        os.mkdir(disk)
        try:
            p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", disk], capture_output=True, text=True)
        except FileNotFoundError:
            self.skipTest("no mount command")
        if p.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        self.mounted = disk
        mux_dir = mpmux("new", os.path.join(disk, "mux"), "--range", str(N), check=0).stdout.strip()
        mux_id = mpmux("session", mux_dir, check=0).stdout.strip()
        log = os.path.join(self.tmp, "ran.log")  # off the small disk
        filler = os.path.join(disk, "filler")

        def fill(proc, journal):
            # Leave room for a few hundred records.
            st = os.statvfs(disk)
            with open(filler, "wb") as f:
                f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 32 * 1024))

        err, journal = self.run_into_write_error(mux_id, log, fill)
        in_flight, valid, torn = self.check_stopped(mux_id, log, err, journal, "No space left on device")
        os.remove(filler)
        duplicates = self.finish_and_check(mux_id, log, in_flight)
        print(f"\nfull tmpfs: {valid} bytes of whole records, {torn} torn; "
              f"{in_flight} ran but were not journaled, {duplicates} ran again", flush=True)

    def tearDown(self):
        if getattr(self, "mounted", None):
            subprocess.run(["umount", "-l", self.mounted], check=False)
        super().tearDown()


if __name__ == "__main__":
    unittest.main()
