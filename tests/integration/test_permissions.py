"""Permissions: what mpmux creates follows the umask and is never world-writable, and a mux or
session directory of another user is refused by the commands that write into it unless
--allow-foreign-owner is given. The second user is created here with useradd and removed after."""
import os
import shutil
import stat
import subprocess
import unittest
import uuid

from mpmuxtest import ENV, MPMUX, TempDirTest, mpmux, tree
from test_crash import session_dir


def umask_of(mask):
    return lambda: os.umask(mask)


def modes(path):
    """relative path -> permission bits of path and everything under it."""
    out = {".": stat.S_IMODE(os.lstat(path).st_mode)}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, path)] = stat.S_IMODE(os.lstat(full).st_mode)
    return out


@unittest.skipUnless(os.geteuid() == 0, "creates a user: needs root")
@unittest.skipUnless(shutil.which("useradd") and shutil.which("userdel") and shutil.which("setpriv"),
                     "useradd, userdel or setpriv unavailable")
class PermissionsTest(TempDirTest):
    @classmethod
    def setUpClass(cls):
        cls.user = "mpmux" + uuid.uuid4().hex[:8]
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", cls.user], check=True)
        out = subprocess.run(["id", "-u", cls.user], capture_output=True, text=True, check=True)
        cls.uid = int(out.stdout)
        cls.gid = int(subprocess.run(["id", "-g", cls.user], capture_output=True, text=True, check=True).stdout)

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["userdel", cls.user], check=False)

    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o755)  # the other user must reach what root made here

    def as_other(self, *args):
        """mpmux ARGS run as the second user."""
        cmd = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", MPMUX, *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, env=dict(ENV, HOME=self.tmp), timeout=300)

    def assertForeignOwner(self, p, path):
        self.assertUsageError(p, f"'{path}' belongs to root (uid 0), not to {self.user} (uid {self.uid})",
                              "--allow-foreign-owner")

    def make_all(self, umask):
        """new (making ROOT), session, a run, results.h5 and a CSV export under `umask`; returns
        the paths made."""
        root = os.path.join(self.tmp, f"root-{umask:03o}", "mux")
        mux_dir = mpmux("new", root, "--range", 3, check=0, preexec_fn=umask_of(umask)).stdout.strip()
        mux_id = mpmux("session", mux_dir, check=0, preexec_fn=umask_of(umask)).stdout.strip()
        mpmux("run", mux_id, "--exec", "echo {i}", "--no-progress", check=0, preexec_fn=umask_of(umask))
        mpmux("results", mux_id, "--format", "h5", check=0, preexec_fn=umask_of(umask))
        export = os.path.join(self.tmp, f"export-{umask:03o}.csv")
        mpmux("results", mux_id, "-o", export, check=0, preexec_fn=umask_of(umask))
        made = modes(os.path.dirname(root))
        made.update({os.path.relpath(export, self.tmp): stat.S_IMODE(os.stat(export).st_mode)})
        return mux_dir, mux_id, made

    def test_nothing_is_world_writable_even_under_umask_000(self):
        mux_dir, mux_id, made = self.make_all(0o000)
        rel = os.path.relpath(mux_dir, os.path.join(self.tmp, "root-000"))
        sdir = os.path.relpath(session_dir(mux_id), os.path.join(self.tmp, "root-000"))
        for name in (".", rel, f"{rel}/elements.h5", f"{sdir}/session.json", f"{sdir}/journal",
                     f"{sdir}/results.h5"):
            self.assertIn(name, made)
        self.assertEqual(len([n for n in made if n.startswith(f"{sdir}/journal/")]), 1)
        for name, mode in made.items():
            self.assertFalse(mode & stat.S_IWOTH, f"{name}: {mode:o} is world-writable")
            # Group write follows the umask (here: none masked).
            self.assertTrue(mode & stat.S_IWGRP, f"{name}: {mode:o}")

    def test_the_umask_is_followed(self):
        _, _, made = self.make_all(0o077)
        for name, mode in made.items():
            self.assertEqual(mode & 0o077, 0, f"{name}: {mode:o} under umask 077")
        _, _, made = self.make_all(0o022)
        for name, mode in made.items():
            self.assertFalse(mode & (stat.S_IWGRP | stat.S_IWOTH), f"{name}: {mode:o} under umask 022")
            self.assertTrue(mode & stat.S_IROTH, f"{name}: {mode:o} under umask 022")

    def test_another_users_writing_commands_are_refused_and_change_nothing(self):
        mux_dir, mux_id, _ = self.make_all(0o000)  # world-readable, and writable by root only
        before = tree(self.tmp)
        sdir = session_dir(mux_id)
        self.assertForeignOwner(self.as_other("run", mux_id, "--exec", "true", "--no-progress"), mux_dir)
        self.assertForeignOwner(self.as_other("session", mux_dir), mux_dir)
        self.assertForeignOwner(self.as_other("results", mux_id, "--format", "h5"), mux_dir)
        self.assertForeignOwner(self.as_other("destroy", mux_dir), mux_dir)
        # A session directory of root's inside a mux directory of one's own is refused too.
        os.chown(mux_dir, self.uid, self.gid)
        self.assertForeignOwner(self.as_other("run", mux_id, "--exec", "true", "--no-progress"), sdir)
        os.chown(mux_dir, 0, 0)
        self.assertEqual(tree(self.tmp), before)
        # Reading is anyone's business.
        p = self.as_other("stat", mux_id, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.as_other("results", mux_id, "--format", "jsonl")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(p.stdout.splitlines()), 3)

    def test_allow_foreign_owner_lets_root_work_on_another_users_session(self):
        other_root = os.path.join(self.tmp, "theirs")
        os.mkdir(other_root)
        os.chown(other_root, self.uid, self.gid)
        p = self.as_other("new", other_root, "--range", 2)
        self.assertEqual(p.returncode, 0, p.stderr)
        mux_dir = p.stdout.strip()
        mux_id = self.as_other("session", mux_dir).stdout.strip()
        before = tree(self.tmp)
        p = mpmux("run", mux_id, "--exec", "true", "--no-progress")
        self.assertUsageError(p, f"'{mux_dir}' belongs to {self.user} (uid {self.uid}), not to root (uid 0)")
        self.assertEqual(tree(self.tmp), before)
        mpmux("run", mux_id, "--exec", "true", "--no-progress", "--allow-foreign-owner", check=0)
        self.assertEqual(self.stat(mux_id)["done"], 2)


if __name__ == "__main__":
    unittest.main()
