"""Bad input: one line naming the file, line or option, the documented exit code, nothing stored
changed. The cases are data, tests/bad-input/cases.toml (see its head); the tests below are the
ones that need more than one command."""
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import tomllib
import unittest

from mpmuxtest import ENV, MPMUX, TempDirTest, mpirun, mpmux, tree

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bad-input", "cases.toml")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def checksum(path):
    """sha256 of every name, mode and content under path: what 'nothing stored changed' means."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            h.update(f"{os.path.relpath(full, path)}\0{st.st_mode:o}\0".encode())
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def file_bytes(text):
    """A case's file content: TOML text in which \\xNN stands for the byte NN."""
    return text.encode("utf-8").decode("unicode_escape").encode("latin-1")


def flip_middle(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x40]))


class Corpus(TempDirTest):
    """Every case of cases.toml against a copy of one good set that has run once."""

    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o755)  # cases run as nobody reach into it
        self.mux, self.id = self.new_session("--range", "5", "--tag", "good")
        mpmux("run", self.id, "--exec", "true", "--no-progress", check=0)
        self.session = os.path.join(self.mux, "sessions", self.id.partition("#s=")[2])
        journals = sorted(os.listdir(os.path.join(self.session, "journal")))
        self.assertEqual(len(journals), 1)
        self.journal = os.path.join(self.session, "journal", journals[0])
        # A second session of the same set lends its journal to the foreign-journal case.
        other = mpmux("session", self.mux, check=0).stdout.strip()
        mpmux("run", other, "--exec", "true", "--no-progress", check=0)
        other_dir = os.path.join(self.mux, "sessions", other.partition("#s=")[2], "journal")
        self.foreign = os.path.join(self.tmp, "foreign.mjl")
        shutil.copy(os.path.join(other_dir, os.listdir(other_dir)[0]), self.foreign)
        self.pristine = os.path.join(self.tmp, "pristine")
        shutil.copytree(self.root, self.pristine, symlinks=True)

    SETUP = {
        "truncate elements.h5": lambda t: os.truncate(t.h5, os.path.getsize(t.h5) // 2),
        "overwrite elements.h5": lambda t: open(t.h5, "wb").write(b"this is not HDF5\n" * 100),
        "remove elements.h5": lambda t: os.unlink(t.h5),
        "remove session.json": lambda t: os.unlink(os.path.join(t.session, "session.json")),
        "overwrite session.json": lambda t: open(os.path.join(t.session, "session.json"), "w").write("{not json"),
        "flip a byte in the middle of the journal": lambda t: flip_middle(t.journal),
        "copy in a journal of another session":
            lambda t: shutil.copy(t.foreign, os.path.join(t.session, "journal", "foreign.mjl")),
        "destroy the set": lambda t: mpmux("destroy", t.mux, check=0),
        "read-only session": lambda t: t.read_only_session(),
        "read-only ro": lambda t: os.chmod(os.path.join(t.case_tmp, "ro"), 0o555),
    }

    def read_only_session(self):
        """The set belongs to nobody (who runs the case), its session's directories are read-only."""
        for d, dirs, files in os.walk(self.root):
            for name in [d] + [os.path.join(d, f) for f in files]:
                os.chown(name, 65534, 65534)
        for d, _, _ in os.walk(self.session):
            os.chmod(d, 0o555)

    @property
    def h5(self):
        return os.path.join(self.mux, "elements.h5")

    def fill(self, text):
        values = {"tmp": self.case_tmp, "root": self.root, "mux": self.mux, "id": self.id,
                  "mux_url": self.id.partition("#s=")[0], "session": self.session,
                  "journal_name": os.path.basename(self.journal)}
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text

    def run_case(self, case):
        shutil.rmtree(self.root)
        shutil.copytree(self.pristine, self.root, symlinks=True)
        self.case_tmp = os.path.join(self.tmp, "case")
        shutil.rmtree(self.case_tmp, ignore_errors=True)
        os.mkdir(self.case_tmp)
        os.chmod(self.case_tmp, 0o755)
        for name, text in case.get("files", {}).items():
            path = os.path.join(self.case_tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(file_bytes(text))
        for step in case.get("setup", []):
            self.SETUP[step](self)
        before = checksum(self.tmp)
        cmd = [MPMUX] + [self.fill(a) for a in case["args"]]
        if case.get("as_nobody") and os.geteuid() == 0:
            cmd = NOBODY + cmd
        limit = case.get("file_size_limit")

        def limit_file_size():
            # Past RLIMIT_FSIZE a write fails with EFBIG when SIGXFSZ is ignored: a full disk.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        # `cwd` runs the command in a directory the check below covers (a relative path made there).
        cwd = self.fill(case["cwd"]) if "cwd" in case else None
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120, cwd=cwd,
                           preexec_fn=limit_file_size if limit else None)
        self.assertEqual(p.returncode, case["exit"], f"stdout: {p.stdout}\nstderr: {p.stderr}")
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 1, f"not one line:\n{p.stderr}")
        self.assertTrue(lines[0].startswith("mpmux: "), lines[0])
        for needle in case["names"]:
            self.assertIn(self.fill(needle), lines[0])
        self.assertEqual(checksum(self.tmp), before, "a bad command changed what is stored")

    def test_every_case_of_the_corpus(self):
        with open(CASES, "rb") as f:
            cases = tomllib.load(f)["case"]
        self.assertGreaterEqual(len(cases), 40)
        for case in cases:
            with self.subTest(case["name"]):
                self.run_case(case)


class BadInput(TempDirTest):
    def setUp(self):
        super().setUp()
        # A set that exists already: no bad command may touch it.
        self.good_dir, self.good_id = self.new_session("--range", "3", "--tag", "good")
        self.before = tree(self.root)

    def assertNothingStoredChanged(self):
        self.assertEqual(tree(self.root), self.before)

    def test_unknown_placeholder(self):
        for np in (1, 3):
            with self.subTest(np=np):
                args = ("run", self.good_id, "--exec", "echo {i} {gamma}")
                p = mpmux(*args) if np == 1 else mpirun(np, *args)
                self.assertEqual(p.returncode, 2, p.stderr)
                lines = [l for l in p.stderr.splitlines() if l.startswith("mpmux:")]
                self.assertEqual(len(lines), 1, p.stderr)
                self.assertIn("{gamma}", lines[0])
                self.assertNothingStoredChanged()

    def test_destroyed_set(self):
        mpmux("destroy", self.good_dir, check=0)
        self.assertUsageError(mpmux("stat", self.good_id), self.good_dir)
        self.assertUsageError(mpmux("run", self.good_id, "--exec", "true"), self.good_dir)
        self.assertUsageError(mpmux("session", self.good_dir), self.good_dir)
        self.assertUsageError(mpmux("destroy", self.good_dir), self.good_dir)


if __name__ == "__main__":
    unittest.main()
