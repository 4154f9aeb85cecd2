// Worker programs: the Python example over the socket protocol, and every way a program can fail.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mpmux/worker_program.hpp"

namespace fs = std::filesystem;

namespace {

const std::string kEchoWorker = std::string(MPMUX_SOURCE_DIR) + "/plugins/workers/echo_worker.py";

std::string python() { return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3"; }

// No child of this process is left, zombie or alive.
bool no_children() { return waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD; }

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

class WorkerProgramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mpmux_worker_program_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A Python worker built on the example's serve(), with `handler` as the body of handle().
  std::string write_worker(const std::string& name, const std::string& handler) {
    fs::path p = dir_ / name;
    // No __pycache__ in the source tree.
    std::ofstream(p) << "import os, signal, sys, time\nsys.dont_write_bytecode = True\n"
                     << "sys.path.insert(0, '" << MPMUX_SOURCE_DIR << "/plugins/workers')\n"
                     << "import echo_worker\n"
                     << "def handle(init, element):\n"
                     << handler << "\n"
                     << "echo_worker.serve(handle)\n";
    return p.string();
  }

  fs::path dir_;
};

std::vector<std::string> numbered(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("elem-" + std::to_string(i) + "-x");
  return v;
}

template <class F>
double seconds_of(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_F(WorkerProgramTest, PythonExampleAnswersOneCall) {
  mpmux::WorkerProgram w;
  w.start({python(), kEchoWorker}, "pre:");
  EXPECT_TRUE(w.running());
  EXPECT_EQ(w.call(7, "abc"), "pre:ABC");
  EXPECT_EQ(w.call(8, ""), "pre:");
  w.stop();
  EXPECT_FALSE(w.running());
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, PoolMapsThousandElementsInOrderWithThreeWorkers) {
  auto in = numbered(1000);
  {
    mpmux::WorkerProgramPool pool({.argv = {python(), kEchoWorker}, .init_data = "init/", .n_workers = 3});
    auto out = pool.map(in);
    ASSERT_EQ(out.size(), in.size());
    for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out[i], "init/" + upper(in[i])) << i;
    EXPECT_EQ(pool.map({"again"}), std::vector<std::string>{"init/AGAIN"});
  }
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, ElementErrorsAreListedAtTheEndAndThePoolStaysUsable) {
  mpmux::WorkerProgramPool pool({.argv = {python(), kEchoWorker}, .n_workers = 2});
  std::vector<std::string> in = numbered(20);
  in[3] = "\xff bad";
  in[11] = "\xfe also bad";
  try {
    pool.map(in);
    FAIL() << "expected TaskError";
  } catch (const mpmux::TaskError& e) {
    ASSERT_EQ(e.failures().size(), 2U);
    EXPECT_EQ(e.failures()[0].index, 3U);
    EXPECT_EQ(e.failures()[1].index, 11U);
    EXPECT_EQ(e.failures()[0].kind, mpmux::FailureKind::exception);
    EXPECT_NE(e.failures()[0].message.find("UnicodeDecodeError"), std::string::npos)
        << e.failures()[0].message;
  }
  EXPECT_EQ(pool.map({"ok"}), std::vector<std::string>{"OK"});
}

TEST_F(WorkerProgramTest, MissingProgramIsAUsageErrorNamingIt) {
  std::string missing = (dir_ / "no_such_worker").string();
  try {
    mpmux::WorkerProgramPool pool({.argv = {missing}, .n_workers = 2});
    FAIL() << "expected UsageError";
  } catch (const mpmux::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mpmux::WorkerProgram().start({"mpmux-no-such-worker-program"}, ""), mpmux::UsageError);
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, NotExecutableProgramIsAUsageError) {
  fs::path script = dir_ / "echo_worker.py";
  fs::copy_file(kEchoWorker, script);
  chmod(script.c_str(), 0644);
  mpmux::WorkerProgram w;
  try {
    w.start({script.string()}, "");
    FAIL() << "expected UsageError";
  } catch (const mpmux::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(script.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Permission denied"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(w.running());
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, ProgramThatExitsAtOnceReportsItsStatus) {
  try {
    mpmux::WorkerProgramPool pool({.argv = {"/bin/sh", "-c", "exit 3"}, .n_workers = 2});
    FAIL() << "expected WorkerProgramError";
  } catch (const mpmux::WorkerProgramError& e) {
    EXPECT_EQ(e.reason(), mpmux::WorkerProgramError::Reason::exited_at_start);
    EXPECT_NE(std::string(e.what()).find("exited at once (status 3)"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, ProgramThatWritesGarbageIsKilledAtOnce) {
  double s = seconds_of([] {
    try {
      mpmux::WorkerProgramPool pool({.argv = {"/bin/sh", "-c", "echo hello >&3; sleep 5"}, .n_workers = 1});
      FAIL() << "expected WorkerProgramError";
    } catch (const mpmux::WorkerProgramError& e) {
      EXPECT_EQ(e.reason(), mpmux::WorkerProgramError::Reason::garbage);
      EXPECT_NE(std::string(e.what()).find("wrote garbage"), std::string::npos) << e.what();
    }
  });
  EXPECT_LT(s, 4.0);  // not waiting for the sleep
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, ProgramThatNeverAnswersTimesOutAtStart) {
  mpmux::WorkerProgram w;
  try {
    w.start({.argv = {"/bin/sh", "-c", "sleep 5"}, .start_timeout = std::chrono::milliseconds(200)});
    FAIL() << "expected WorkerProgramError";
  } catch (const mpmux::WorkerProgramError& e) {
    EXPECT_EQ(e.reason(), mpmux::WorkerProgramError::Reason::timeout);
  }
  EXPECT_FALSE(w.running());
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, WorkerKilledMidMapIsReplacedAndTheMapCompletes) {
  // The first worker to see element 50 SIGKILLs itself (leaving a marker file, named by the init
  // data); its replacement runs the element again.
  std::string marker = (dir_ / "killed").string();
  std::string worker = write_worker("kill_once.py",
                                    "    if element == b'elem-50-x' and not os.path.exists(init):\n"
                                    "        open(init, 'w').close()\n"
                                    "        os.kill(os.getpid(), signal.SIGKILL)\n"
                                    "    return element.upper()");
  auto in = numbered(200);
  {
    mpmux::WorkerProgramPool pool({.argv = {python(), worker}, .init_data = marker, .n_workers = 3});
    auto before = pool.pids();
    auto out = pool.map(in);
    for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out[i], upper(in[i])) << i;
    EXPECT_TRUE(fs::exists(marker));
    auto after = pool.pids();
    int replaced = 0;
    for (std::size_t w = 0; w < before.size(); ++w) replaced += before[w] != after[w] ? 1 : 0;
    EXPECT_EQ(replaced, 1);
  }
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, CallToAKilledWorkerReportsTheSignal) {
  mpmux::WorkerProgram w;
  w.start({python(), kEchoWorker}, "");
  ASSERT_EQ(kill(w.pid(), SIGKILL), 0);
  try {
    w.call(5, "x");
    FAIL() << "expected WorkerProgramError";
  } catch (const mpmux::WorkerProgramError& e) {
    EXPECT_EQ(e.reason(), mpmux::WorkerProgramError::Reason::died);
    EXPECT_NE(std::string(e.what()).find("died during task 5 (signal 9)"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(w.running());
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, WorkerKilledBetweenMapsIsReplaced) {
  // One worker, so the next map must go through the killed process.
  mpmux::WorkerProgramPool pool({.argv = {python(), kEchoWorker}, .n_workers = 1});
  pid_t victim = pool.pids()[0];
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  auto in = numbered(50);
  auto out = pool.map(in);
  for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out[i], upper(in[i])) << i;
  EXPECT_NE(pool.pids()[0], victim);
}

TEST_F(WorkerProgramTest, ElementThatKillsEveryWorkerIsReportedAsCrash) {
  std::string worker = write_worker("kill_always.py",
                                    "    if element == b'poison':\n"
                                    "        os.kill(os.getpid(), signal.SIGKILL)\n"
                                    "    return element");
  mpmux::WorkerProgramPool pool({.argv = {python(), worker}, .n_workers = 2});
  try {
    pool.map({"a", "poison", "b"});
    FAIL() << "expected TaskError";
  } catch (const mpmux::TaskError& e) {
    ASSERT_EQ(e.failures().size(), 1U);
    EXPECT_EQ(e.failures()[0].index, 1U);
    EXPECT_EQ(e.failures()[0].kind, mpmux::FailureKind::crash);
    EXPECT_NE(e.failures()[0].message.find("died during task 1 (signal 9)"), std::string::npos)
        << e.failures()[0].message;
  }
  EXPECT_EQ(pool.map({"c"}), std::vector<std::string>{"c"});
}

TEST_F(WorkerProgramTest, SlowElementTimesOutAndTheOthersComplete) {
  std::string worker = write_worker("slow.py",
                                    "    if element == b'slow':\n"
                                    "        time.sleep(5)\n"
                                    "    return element");
  mpmux::WorkerProgramPool pool(
      {.argv = {python(), worker}, .n_workers = 2, .task_timeout = std::chrono::milliseconds(1000)});
  try {
    pool.map({"a", "slow", "b", "c"});
    FAIL() << "expected TaskError";
  } catch (const mpmux::TaskError& e) {
    ASSERT_EQ(e.failures().size(), 1U);
    EXPECT_EQ(e.failures()[0].index, 1U);
    EXPECT_EQ(e.failures()[0].kind, mpmux::FailureKind::timeout);
  }
  EXPECT_EQ(pool.map({"d", "e"}), (std::vector<std::string>{"d", "e"}));
}

TEST_F(WorkerProgramTest, ReplacementThatCannotStartShutsThePoolDownCleanly) {
  // The first start of each worker succeeds; every later start exits at once, so the worker
  // that dies on 'die' cannot be replaced.
  std::string flag = (dir_ / "started").string();
  std::string die = write_worker("die.py",
                                 "    if element == b'die':\n"
                                 "        os._exit(1)\n"
                                 "    return element");
  fs::path script = dir_ / "once.sh";
  std::ofstream(script) << "#!/bin/sh\nif [ -e '" << flag << "' ]; then exit 4; fi\nexec " << python() << " "
                        << die << "\n";
  chmod(script.c_str(), 0755);
  {
    mpmux::WorkerProgramPool pool({.argv = {script.string()}, .n_workers = 1});
    std::ofstream(flag).close();
    try {
      pool.map({"a", "die", "b"});
      FAIL() << "expected PoolError";
    } catch (const mpmux::TaskError&) {
      FAIL() << "expected the pool to shut down, not a TaskError";
    } catch (const mpmux::PoolError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find("could not be replaced"), std::string::npos) << what;
      EXPECT_NE(what.find("exited at once (status 4)"), std::string::npos) << what;
    }
    EXPECT_TRUE(no_children());
    EXPECT_THROW(pool.map({"a"}), mpmux::PoolError);
  }
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, ZeroWorkersIsAUsageError) {
  EXPECT_THROW(mpmux::WorkerProgramPool({.argv = {python(), kEchoWorker}, .n_workers = 0}),
               mpmux::UsageError);
  EXPECT_THROW(mpmux::WorkerProgramPool({.n_workers = 1}), mpmux::UsageError);
}

TEST_F(WorkerProgramTest, CapturedOutputIsTakenPerCallAndKeptAfterADeath) {
  std::string worker = write_worker("talk.py",
                                    "    print('out', element.decode(), flush=True)\n"
                                    "    print('err', element.decode(), file=sys.stderr, flush=True)\n"
                                    "    if element == b'die': os._exit(6)\n"
                                    "    return element");
  mpmux::WorkerProgramOptions o{.argv = {python(), worker}, .capture_output = true, .output_tail = 64};
  mpmux::WorkerProgram w;
  w.start(o);
  EXPECT_EQ(w.take_output(), "");
  EXPECT_EQ(w.call(0, "a"), "a");
  EXPECT_EQ(w.take_output(), "out a\nerr a\n");
  EXPECT_EQ(w.call(1, std::string(100, 'b')), std::string(100, 'b'));
  const std::string tail = w.take_output();
  EXPECT_EQ(tail.size(), 64U) << "only the last output_tail bytes are kept";
  EXPECT_EQ(tail.substr(tail.size() - 6), "bbbbb\n");
  try {
    w.call(2, "die");
    FAIL() << "expected WorkerProgramError";
  } catch (const mpmux::WorkerProgramError& e) {
    EXPECT_EQ(e.reason(), mpmux::WorkerProgramError::Reason::died);
    ASSERT_TRUE(WIFEXITED(e.wait_status()));
    EXPECT_EQ(WEXITSTATUS(e.wait_status()), 6);
  }
  EXPECT_EQ(w.take_output(), "out die\nerr die\n");
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, OutputOfAProgramThatExitsAtStartIsKept) {
  fs::path script = dir_ / "fails.py";
  std::ofstream(script) << "import sys\nprint('no licence', file=sys.stderr)\nsys.exit(3)\n";
  mpmux::WorkerProgram w;
  EXPECT_THROW(w.start({.argv = {python(), script.string()}, .capture_output = true}),
               mpmux::WorkerProgramError);
  EXPECT_EQ(w.take_output(), "no licence\n");
}

TEST_F(WorkerProgramTest, CancelKillsTheWorkerDuringACall) {
  std::string worker = write_worker("sleepy.py", "    time.sleep(3600)");
  mpmux::WorkerProgram w;
  w.start({python(), worker}, "");
  int asked = 0;
  try {
    w.call(9, "x", [&] { return ++asked >= 2; });
    FAIL() << "expected WorkerProgramError";
  } catch (const mpmux::WorkerProgramError& e) {
    EXPECT_EQ(e.reason(), mpmux::WorkerProgramError::Reason::cancelled);
    EXPECT_TRUE(WIFSIGNALED(e.wait_status()) && WTERMSIG(e.wait_status()) == SIGKILL);
  }
  EXPECT_EQ(asked, 2);
  EXPECT_FALSE(w.running());
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerProgramTest, TheProgramInheritsOnlyStdioAndItsSocketAndIgnoresSigusr1) {
  // An fd of the parent without O_CLOEXEC, as MPI libraries leave some.
  const int leaked = open("/dev/null", O_RDONLY);
  ASSERT_GT(leaked, 3);
  std::string worker = write_worker("fds.py",
                                    "    fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
                                    "    ign = signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN\n"
                                    "    stdin = os.readlink('/proc/self/fd/0')\n"
                                    "    return ('%s %s %s' % (fds, ign, stdin)).encode()");
  mpmux::WorkerProgram w;
  w.start({python(), worker}, "");
  const std::string answer = w.call(0, "");
  close(leaked);
  // 4 is the fd listdir itself opened.
  EXPECT_EQ(answer, "[0, 1, 2, 3, 4] True /dev/null");
}
