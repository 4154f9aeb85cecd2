// --worker in a run: WorkerTasks' slots, each a persistent worker program, and what an attempt
// records when the program answers, fails an element, dies, cannot be restarted or is cancelled.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"
#include "run/worker_tasks.hpp"

namespace fs = std::filesystem;
using mpmux::run::Attempt;
using mpmux::run::AttemptSink;
using mpmux::run::ElementBatch;
using mpmux::run::WorkerTasks;

namespace {

// One worker for every test; its first argument picks what it does with an element (bytes):
//   echo DIR: answers "<pid> <element>"; "die" and {"i":3} exit 5 (after a line on stderr), "fail" answers
//             an error, "hang" never answers; once "die" ran, a new process exits at start with 4
//             when DIR/unrestartable exists
//   init:     answers its INIT data
//   boom:     exits at start after printing a traceback-like line
const char* kWorker = R"(import os, sys, time
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[1])
import mpmux_worker
mode = sys.argv[2]
if mode == "boom":
    print("Traceback (most recent call last):\nRuntimeError: boom", file=sys.stderr)
    sys.exit(1)
if mode == "echo" and os.path.exists(os.path.join(sys.argv[3], "died")) and \
        os.path.exists(os.path.join(sys.argv[3], "unrestartable")):
    print("no second start", file=sys.stderr)
    sys.exit(4)

def handle(init, element):
    if mode == "init":
        return init
    if element in (b"die", b'{"i":3}'):
        open(os.path.join(sys.argv[3], "died"), "w").close()
        print("dying", file=sys.stderr, flush=True)
        os._exit(5)
    if element == b"fail":
        raise ValueError("no good")
    if element == b"hang":
        time.sleep(3600)
    return b"%d %s" % (os.getpid(), element)

mpmux_worker.serve_bytes(handle)
)";

bool no_children() { return waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD; }

class WorkerTasksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mpmux_worker_tasks_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "worker.py") << kWorker;
  }
  void TearDown() override { fs::remove_all(dir_); }

  mpmux::WorkerTask task(const std::string& mode, int procs = 1) const {
    mpmux::WorkerTask t;
    t.argv = {"/usr/bin/python3", (dir_ / "worker.py").string(),
              std::string(MPMUX_SOURCE_DIR) + "/plugins/workers", mode, dir_.string()};
    t.procs = procs;
    t.init = "hello";
    return t;
  }

  // Runs the elements as one batch and returns their attempts, in order.
  static std::vector<Attempt> run_batch(WorkerTasks& tasks, const std::vector<std::string>& elements,
                                        bool cancel_after_start = false) {
    auto batch = std::make_shared<ElementBatch>(1);
    for (std::size_t k = 0; k < elements.size(); ++k) {
      mpmux::WorkItem item;
      item.index = k;
      item.bytes = elements[k];
      batch->add(item);
    }
    auto sink = std::make_shared<AttemptSink>();
    tasks.start(batch, sink);
    if (cancel_after_start) EXPECT_TRUE(tasks.cancel());
    std::vector<Attempt> out(elements.size());
    for (std::size_t got = 0; got < elements.size();) {
      for (auto& [key, attempt] : sink->take(std::chrono::milliseconds(100))) {
        out[key & (ElementBatch::kMaxSize - 1)] = std::move(attempt);
        ++got;
      }
    }
    return out;
  }

  fs::path dir_;
};

}  // namespace

TEST(WorkerInitData, NamesTheSessionRankSlotSlotsAndInitText) {
  const auto j = nlohmann::json::parse(mpmux::run::worker_init_data("file:///m#s=x", 3, 1, 4, "a \"b\""));
  EXPECT_EQ(j,
            nlohmann::json(
                {{"mux_id", "file:///m#s=x"}, {"rank", 3}, {"slot", 1}, {"slots", 4}, {"init", "a \"b\""}}));
}

TEST_F(WorkerTasksTest, EachProcessGetsItsInitDataOnce) {
  {
    WorkerTasks tasks(task("init", 2), "file:///m#s=x", 5);
    const auto attempts = run_batch(tasks, {"a", "b"});
    for (const Attempt& a : attempts) {
      ASSERT_EQ(a.outcome.type, mpmux::RecordType::done) << a.outcome.stderr_tail;
      const auto j = nlohmann::json::parse(a.outcome.result);
      EXPECT_EQ(j["mux_id"], "file:///m#s=x");
      EXPECT_EQ(j["rank"], 5);
      EXPECT_TRUE(j["slot"] == 0 || j["slot"] == 1) << j;
      EXPECT_EQ(j["slots"], 2);
      EXPECT_EQ(j["init"], "hello");
    }
  }
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerTasksTest, OneProcessAnswersEveryElementOfItsSlot) {
  WorkerTasks tasks(task("echo"), "id", 1);
  const auto attempts = run_batch(tasks, {"a", "b", "c"});
  std::string pid;
  for (std::size_t k = 0; k < attempts.size(); ++k) {
    const auto& o = attempts[k].outcome;
    ASSERT_EQ(o.type, mpmux::RecordType::done);
    EXPECT_EQ(o.result, std::to_string(o.pid) + " " + std::string(1, static_cast<char>('a' + k)));
    if (k == 0) pid = std::to_string(o.pid);
    EXPECT_EQ(std::to_string(o.pid), pid) << "a process per element";
    EXPECT_TRUE(attempts[k].counts);
  }
}

TEST_F(WorkerTasksTest, AnErrorAnswerFailsTheElementWithCode1AndItsText) {
  WorkerTasks tasks(task("echo"), "id", 1);
  const auto attempts = run_batch(tasks, {"fail", "ok"});
  const auto& o = attempts[0].outcome;
  EXPECT_EQ(o.type, mpmux::RecordType::failed);
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_NE(o.stderr_tail.find("Traceback"), std::string::npos) << o.stderr_tail;
  EXPECT_EQ(o.stderr_tail.substr(o.stderr_tail.rfind('\n', o.stderr_tail.size() - 2) + 1),
            "ValueError: no good\n");
  EXPECT_EQ(attempts[1].outcome.type, mpmux::RecordType::done);
  EXPECT_EQ(attempts[1].outcome.pid, o.pid) << "an error answer keeps the process";
}

TEST_F(WorkerTasksTest, ADeathFailsItsElementWithTheStatusAndTheNextGetsANewProcess) {
  {
    WorkerTasks tasks(task("echo"), "id", 1);
    const auto attempts = run_batch(tasks, {"a", "die", "b"});
    EXPECT_EQ(attempts[0].outcome.type, mpmux::RecordType::done);
    const auto& o = attempts[1].outcome;
    EXPECT_TRUE(attempts[1].counts);
    EXPECT_EQ(o.type, mpmux::RecordType::failed);
    EXPECT_EQ(o.exit_code, 5);
    EXPECT_EQ(o.signal, 0);
    EXPECT_EQ(o.pid, attempts[0].outcome.pid);
    EXPECT_EQ(o.stderr_tail.rfind("dying\nmpmux: worker program /usr/bin/python3 (pid ", 0), 0u)
        << o.stderr_tail;
    EXPECT_NE(o.stderr_tail.find("died during task 1 (status 5); a new process takes its place\n"),
              std::string::npos)
        << o.stderr_tail;
    EXPECT_EQ(attempts[2].outcome.type, mpmux::RecordType::done);
    EXPECT_NE(attempts[2].outcome.pid, o.pid);
    EXPECT_TRUE(attempts[2].stop_run.empty());
  }
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerTasksTest, ASlotThatCannotRestartLeavesItsElementsVoidAndAsksToStop) {
  std::ofstream(dir_ / "unrestartable").close();
  {
    WorkerTasks tasks(task("echo"), "id", 2);
    const auto attempts = run_batch(tasks, {"die", "a", "b"});
    EXPECT_EQ(attempts[0].outcome.type, mpmux::RecordType::failed);
    EXPECT_FALSE(attempts[1].counts);
    EXPECT_EQ(attempts[1].stop_run.rfind("rank 2: --worker: no new process started after 3 tries: ", 0), 0u)
        << attempts[1].stop_run;
    EXPECT_NE(
        attempts[1].stop_run.find("exited at once (status 4) before READY; its last output: no second start"),
        std::string::npos)
        << attempts[1].stop_run;
    EXPECT_FALSE(attempts[2].counts) << "no further try on a broken slot";
  }
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerTasksTest, AProgramThatCannotStartIsAUsageErrorWithItsLastLine) {
  try {
    WorkerTasks tasks(task("boom", 2), "id", 1);
    FAIL() << "expected UsageError";
  } catch (const mpmux::UsageError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("--worker: worker program /usr/bin/python3 (pid ", 0), 0u) << what;
    EXPECT_NE(what.find("exited at once (status 1) before READY; its last output: RuntimeError: boom"),
              std::string::npos)
        << what;
  }
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerTasksTest, StopStartingLeavesTheElementsNotStartedVoid) {
  WorkerTasks tasks(task("echo"), "id", 1);
  tasks.stop_starting();
  for (const Attempt& a : run_batch(tasks, {"a", "b"})) EXPECT_FALSE(a.counts);
}

TEST_F(WorkerTasksTest, CancelKillsARunningWorkerAndItsAttemptIsVoid) {
  {
    WorkerTasks tasks(task("echo"), "id", 1);
    const auto attempts = run_batch(tasks, {"hang"}, /*cancel_after_start=*/true);
    EXPECT_FALSE(attempts[0].counts);
    EXPECT_EQ(attempts[0].outcome.signal, SIGKILL);
  }
  EXPECT_TRUE(no_children());
}

TEST_F(WorkerTasksTest, ASlotThatCannotRestartStopsTheRunWithTheRestLeftPending) {
  std::ofstream(dir_ / "unrestartable").close();
  const mpmux::MuxId id =
      mpmux::Session::create(mpmux::create_mux(dir_ / "mux", mpmux::make_range(20), "unit")).id();
  mpmux::RunOptions options;
  options.fsync = false;
  mpmux::RunSummary summary;
  {
    WorkerTasks tasks(task("echo"), id.str(), 0);  // element {"i":3} kills its process
    mpmux::Run run(id, MPI_COMM_SELF, options);
    mpmux::run::run_concurrently(run, tasks);
    summary = run.finish();
  }
  EXPECT_TRUE(summary.stopped);
  EXPECT_EQ(summary.stop_reason.rfind("rank 0: --worker: no new process started after 3 tries", 0), 0u)
      << summary.stop_reason;
  const mpmux::Stat st = mpmux::session_stat(mpmux::Session::open(id));
  EXPECT_EQ(st.failed, 1u);
  EXPECT_GT(st.pending, 0u);
  EXPECT_EQ(st.done + st.failed + st.pending, 20u) << "an element was lost";
}

TEST_F(WorkerTasksTest, WhatAPythonWorkerPrintsIsKeptWithItsElement) {
  // mpmux_worker makes stdout line-buffered: a print() without flush arrives with its element.
  std::ofstream(dir_ / "printer.py") << "import sys\nsys.path.insert(0, sys.argv[1])\nimport mpmux_worker\n"
                                     << "def task(element):\n    print('working on', element['i'])\n"
                                     << "    return element['i']\nmpmux_worker.serve(task)\n";
  mpmux::WorkerTask t;
  t.argv = {"/usr/bin/python3", (dir_ / "printer.py").string(), std::string(MPMUX_SOURCE_DIR) + "/plugins/workers"};
  WorkerTasks tasks(t, "id", 0);
  const auto attempts = run_batch(tasks, {"{\"i\":4}", "{\"i\":5}"});
  EXPECT_EQ(attempts[0].outcome.result, "4");
  EXPECT_EQ(attempts[0].outcome.stderr_tail, "working on 4\n");
  EXPECT_EQ(attempts[1].outcome.stderr_tail, "working on 5\n");
}
