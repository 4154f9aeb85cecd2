"""docs/guide.md, re-run: the commands of its ```console blocks run in order in one bash process,
in a fresh directory standing for /tmp/mpmux-guide, with `mpmux` on PATH being the built CLI;
each must exit 0 and print what the guide shows, up to what varies from run to run (times,
session ids, rates, the directory). The C++ example is built against the build tree and run. The
Python example (the ```python block that imports mpmux) is saved as the file its first comment
names before the commands run, which find the package of the build tree on PYTHONPATH.
MPMUX_GUIDE names another copy of the guide to run instead (to check this test on an edited one).
"""
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import unittest

from guide_blocks import CPP_MARKER, GUIDE_ROOT, Step, compare, fenced_blocks, guide_steps, normalize
from mpmuxtest import ENV, MPIEXEC, MPMUX

SRC = os.environ.get("MPMUX_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
BUILD = os.environ.get("MPMUX_BINARY_DIR", "build")
GUIDE = os.environ.get("MPMUX_GUIDE") or os.path.join(SRC, "docs", "guide.md")


def run_steps(steps, tmp, timeout=600):
    """Runs the steps in one bash process from `tmp`. Returns [(exit code, normalized output)] with
    one entry per step that ran (fewer when bash ended early), bash's exit code and what bash
    printed after the last step that ran."""
    mark = "@@guide-step-" + secrets.token_hex(6)
    script = ["exec 2>&1 </dev/null", f"cd '{tmp}' || exit 99"]
    for k, step in enumerate(steps):
        script.append(step.command.replace(GUIDE_ROOT, tmp))
        script.append(f"printf '\\n{mark} {k} %d\\n' $?")
    bin_dir = os.path.join(tmp, ".bin")
    os.mkdir(bin_dir)
    os.symlink(os.path.abspath(MPMUX), os.path.join(bin_dir, "mpmux"))
    path = [bin_dir]
    if os.path.isabs(MPIEXEC):
        path.append(os.path.dirname(MPIEXEC))  # where mpirun lives
    # The C locale, so that awk prints numbers as the guide shows them; no start-up files.
    env = dict(ENV, PATH=os.pathsep.join(path + [os.environ.get("PATH", "/usr/bin:/bin")]), LC_ALL="C",
               PYTHONPATH=os.path.abspath(os.path.join(BUILD, "python")))
    for name in ("BASH_ENV", "ENV", "MPMUX_RMA_NO_SHARED"):
        env.pop(name, None)
    p = subprocess.run(["bash", "--noprofile", "--norc", "-c", "\n".join(script)], capture_output=True,
                       env=env, timeout=timeout)
    text = p.stdout.decode("utf-8", "replace")
    parts = re.split(r"\n" + re.escape(mark) + r" (\d+) (\d+)\n", text)
    results = []
    for k in range(0, len(parts) - 1, 3):
        index, code = int(parts[k + 1]), int(parts[k + 2])
        assert index == len(results), f"step {index} reported out of order"
        results.append((code, normalize(parts[k], tmp)))
    return results, p.returncode, parts[-1]


def python_examples(text):
    """{file name: lines} of the ```python blocks that import mpmux, named by their first line
    (`# sweep.py: ...`)."""
    files = {}
    for _, lines, _ in fenced_blocks(text, "python"):
        if any(l.startswith("from mpmux import") for l in lines):
            match = re.match(r"# ([\w.-]+\.py):", lines[0])
            assert match, f"a Python example starts with `# NAME.py: ...`, not {lines[0]!r}"
            files[match.group(1)] = lines
    return files


class Guide(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(GUIDE, encoding="utf-8") as f:
            cls.text = f.read()
        cls.steps, cls.cpp_steps = guide_steps(cls.text)
        cls.tmp = tempfile.mkdtemp(prefix="guide-run-")
        cls.python_files = python_examples(cls.text)
        for name, lines in cls.python_files.items():
            with open(os.path.join(cls.tmp, name), "w") as f:
                f.write("\n".join(lines) + "\n")
        cls.results, cls.bash_code, cls.tail = run_steps(cls.steps, cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_the_guide_walks_the_whole_sweep(self):
        # So that an emptied or renamed guide cannot pass by running nothing.
        commands = [s.command for s in self.steps]
        for needle in ("--from grid.csv --tag sweep", "mpmux session", "mpirun -n 4 mpmux run",
                       "mpmux stat", "--json", "mpmux done", "elements/table", "mpmux destroy",
                       "--grid", "--range", ".jsonl", "--shell"):
            self.assertTrue(any(needle in c for c in commands), f"no command of the guide has {needle!r}")
        self.assertGreater(len(self.steps), 30)

    def test_every_command_succeeds_and_prints_what_the_guide_shows(self):
        problems = []
        for step, (code, actual) in zip(self.steps, self.results):
            if code != 0:
                problems.append(f"{step!r}: exit {code} (show a failure as `...; echo \"exit $?\"`)\n"
                                + "\n".join(actual))
            else:
                message = compare(step, actual)
                if message:
                    problems.append(message)
        if len(self.results) < len(self.steps):
            problems.append(f"{self.steps[len(self.results)]!r}: bash ended here (exit {self.bash_code}) "
                            f"with:\n{self.tail}")
        if problems:
            self.fail("\n\n".join(problems))

    def test_a_changed_output_line_is_caught(self):
        # The normalization must not wash out what the guide promises: rename a row of the
        # stat table in the expectation and the comparison has to notice.
        changed = 0
        for step, (code, actual) in zip(self.steps, self.results):
            if any(line.startswith("pending  ") for line in step.expected):
                self.assertIsNone(compare(step, actual), repr(step))
                step_copy = Step(step.line, step.command)
                step_copy.expected = [l.replace("pending  ", "waiting  ") for l in step.expected]
                self.assertIsNotNone(compare(step_copy, actual), repr(step))
                changed += 1
        self.assertGreater(changed, 0, "the guide shows no stat table")

    def test_the_python_example_runs(self):
        # The twin of the C++ example: one program, run by a command of the guide (whose output
        # test_every_command_succeeds_and_prints_what_the_guide_shows checks).
        self.assertEqual(list(self.python_files), ["sweep.py"])
        runs = [s for s in self.steps if "python3 sweep.py" in s.command]
        self.assertEqual(len(runs), 1, "one command of the guide runs sweep.py")
        self.assertIn("mpirun -n 4", runs[0].command)
        self.assertTrue(runs[0].expected, "the guide shows what it prints")

    def test_the_cpp_example_builds_and_runs(self):
        sources = [lines for _, lines, _ in fenced_blocks(self.text, "cpp") if any("int main" in l for l in lines)]
        cmake = [lines for _, lines, _ in fenced_blocks(self.text, "cmake")
                 if any("find_package(mpmux" in l for l in lines)]
        self.assertEqual((len(sources), len(cmake)), (1, 1), "one complete C++ program and its CMakeLists.txt")
        self.assertEqual(len(self.cpp_steps), 1, f"one console block after {CPP_MARKER}, one command")
        self.assertTrue(os.path.exists(os.path.join(BUILD, "mpmuxConfig.cmake")),
                        f"{BUILD} has no mpmuxConfig.cmake: configure the build tree first")
        self.assertTrue(os.path.exists(os.path.join(BUILD, "src", "libmpmux.so")),
                        f"{BUILD}/src has no libmpmux.so: build the mpmux target first")

        tmp = tempfile.mkdtemp(prefix="guide-cpp-")
        self.addCleanup(shutil.rmtree, tmp, True)
        project = os.path.join(tmp, "sweep")
        os.mkdir(project)
        with open(os.path.join(project, "sweep.cpp"), "w") as f:
            f.write("\n".join(sources[0]) + "\n")
        with open(os.path.join(project, "CMakeLists.txt"), "w") as f:
            f.write("\n".join(cmake[0]) + "\n")
        for cmd in (["cmake", "-S", project, "-B", os.path.join(project, "build"), f"-Dmpmux_DIR={BUILD}",
                     "-DCMAKE_BUILD_TYPE=Release"],
                    ["cmake", "--build", os.path.join(project, "build"), "-j2"]):
            p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
            self.assertEqual(p.returncode, 0, f"{' '.join(cmd)}\n{p.stdout}\n{p.stderr}")

        results, _, tail = run_steps(self.cpp_steps, tmp)
        step = self.cpp_steps[0]
        self.assertEqual(len(results), 1, tail)
        code, actual = results[0]
        self.assertEqual(code, 0, "\n".join(actual))
        self.assertIsNone(compare(step, actual))
        self.assertEqual(os.listdir(os.path.join(tmp, "mux")), [], "the example destroys what it made")


if __name__ == "__main__":
    unittest.main()
