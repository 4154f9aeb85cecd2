"""A tiny project builds against mpmux: installed (find_package and pkg-config) and from the
build tree (find_package with mpmux_DIR)."""
import os
import subprocess
import unittest

from mpmuxtest import ENV, MPIEXEC, TempDirTest

SRC = os.environ["MPMUX_SOURCE_DIR"]
BUILD = os.environ["MPMUX_BINARY_DIR"]
CONSUMER = os.path.join(SRC, "tests", "consumer")


def sh(*cmd, env=ENV, **kw):
    p = subprocess.run(list(cmd), capture_output=True, text=True, env=env, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout


class Consumer(TempDirTest):
    def run_consumer(self, exe, np=2):
        out = sh(MPIEXEC, "-n", str(np), "--oversubscribe", exe, self.root)
        self.assertIn("elements=100 sum=5050 done=1", out)

    def configure_and_build(self, **defs):
        build = os.path.join(self.tmp, "consumer-build")
        args = [f"-D{k}={v}" for k, v in defs.items()]
        sh("cmake", "-S", CONSUMER, "-B", build, *args)
        sh("cmake", "--build", build)
        return os.path.join(build, "consumer")

    def test_installed_package_with_find_package_and_pkg_config(self):
        prefix = os.path.join(self.tmp, "prefix")
        sh("cmake", "--install", BUILD, "--prefix", prefix)
        for f in ("include/mpmux/multiplexer.hpp", "include/mpmux/export.hpp", "bin/mpmux",
                  "lib/cmake/mpmux/mpmuxConfig.cmake", "lib/cmake/mpmux/mpmuxConfigVersion.cmake",
                  "lib/pkgconfig/mpmux.pc", "lib/pkgconfig/mpmux-cxx.pc"):
            self.assertTrue(os.path.exists(os.path.join(prefix, f)), f)
        exe = self.configure_and_build(CMAKE_PREFIX_PATH=prefix)
        self.run_consumer(exe)

        env = dict(ENV, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
        flags = sh("pkg-config", "--cflags", "--libs", "mpmux-cxx", env=env).split()
        exe = os.path.join(self.tmp, "consumer-pc")
        sh("g++", "-o", exe, os.path.join(CONSUMER, "main.cpp"), *flags,
           f"-Wl,-rpath,{os.path.join(prefix, 'lib')}", env=env)
        self.run_consumer(exe, np=3)

    def test_build_tree_package(self):
        exe = self.configure_and_build(mpmux_DIR=BUILD)
        self.run_consumer(exe)


if __name__ == "__main__":
    unittest.main()
