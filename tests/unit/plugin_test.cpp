// Task plugins: loading a library with dlopen, and one worker's calls turned into outcomes.
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "mpmux/error.hpp"
#include "run/plugin.hpp"
#include "test_support.hpp"

namespace {

using mpmux::Outcome;
using mpmux::RecordType;
using mpmux::run::PluginEntryPoints;
using mpmux::run::PluginLimits;
using mpmux::run::PluginWorker;
using mpmux::run::PluginWorkerInfo;
using mpmux::run::TaskPlugin;
using mpmux::test::usage_error_message;

const std::string kRosenbrock = std::string(MPMUX_BINARY_DIR) + "/plugins/tasks/librosenbrock.so";

// A plugin made of these functions: its state counts the calls; the element picks what process
// does ("ok", "fail", "big", "talk").
struct Calls {
  int inits = 0, finalizes = 0, processed = 0;
  std::string arg;
  int thread = -1, threads = 0, rank = -1;
  void* finalized_state = nullptr;
  std::string element;
  int last_write = 0;
};
Calls calls;

int fake_init(const mpmux_worker_info* info, void** state, mpmux_output* out) {
  ++calls.inits;
  calls.arg = info->arg;
  calls.thread = info->thread;
  calls.threads = info->threads;
  calls.rank = info->rank;
  out->write(out, "ignored", 7);  // no result during init
  if (calls.arg == "refuse") {
    out->fail(out, "bad arg");
    return out->fail(out, "second line");
  }
  *state = &calls;
  return 0;
}

int fake_process(void* state, uint64_t index, const char* element, size_t length, mpmux_output* out) {
  auto& c = *static_cast<Calls*>(state);
  ++c.processed;
  c.element.assign(element, length + 1);  // with its NUL
  const std::string what(element, length);
  if (what == "ok") {
    const std::string result = "result of " + std::to_string(index);
    c.last_write = out->write(out, result.data(), result.size());
    return 0;
  }
  if (what == "big") {
    c.last_write = out->write(out, "0123456789", 10);
    c.last_write = out->write(out, "abcdefghij", 10);
    return 0;
  }
  if (what == "talk") {
    for (int i = 0; i < 100; ++i) out->fail(out, ("line " + std::to_string(i)).c_str());
    return 0;
  }
  return 7 * out->fail(out, "it went wrong");
}

void fake_finalize(void* state) {
  ++calls.finalizes;
  calls.finalized_state = state;
}

std::shared_ptr<const TaskPlugin> fake_plugin() {
  calls = Calls();
  return std::make_shared<TaskPlugin>("fake.so",
                                      PluginEntryPoints{&fake_init, &fake_process, &fake_finalize});
}

TEST(PluginWorker, InitGetsTheWorkerAndFinalizeTheStateInitSet) {
  auto plugin = fake_plugin();
  {
    PluginWorker worker(plugin, PluginWorkerInfo{"a=1", 3, 1, 4});
    EXPECT_EQ(calls.inits, 1);
    EXPECT_EQ(calls.arg, "a=1");
    EXPECT_EQ((std::vector<int>{calls.rank, calls.thread, calls.threads}), (std::vector<int>{3, 1, 4}));
    EXPECT_EQ(calls.finalizes, 0);
  }
  EXPECT_EQ(calls.finalizes, 1);
  EXPECT_EQ(calls.finalized_state, &calls);
}

TEST(PluginWorker, ADoneElementKeepsItsResultAndTimes) {
  PluginWorker worker(fake_plugin(), PluginWorkerInfo{});
  const Outcome o = worker.process(42, "ok");
  EXPECT_EQ(o.type, RecordType::done);
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.result, "result of 42");
  EXPECT_EQ(o.stderr_tail, "");
  EXPECT_EQ(o.flags, 0);
  EXPECT_GT(o.t_start, 0);
  EXPECT_GE(o.t_end, o.t_start);
  EXPECT_EQ(calls.element, std::string("ok\0", 3)) << "the element is passed NUL-terminated";
  EXPECT_EQ(calls.last_write, 0);
}

TEST(PluginWorker, ANonZeroReturnIsAFailureWithItsCodeAndMessage) {
  PluginWorker worker(fake_plugin(), PluginWorkerInfo{});
  const Outcome o = worker.process(0, "no");
  EXPECT_EQ(o.type, RecordType::failed);
  EXPECT_EQ(o.exit_code, 7);
  EXPECT_EQ(o.stderr_tail, "it went wrong\n");
  EXPECT_EQ(o.result, "");
}

TEST(PluginWorker, AResultBeyondTheLimitIsCutAndFlagged) {
  PluginWorker worker(fake_plugin(), PluginWorkerInfo{},
                      PluginLimits{.max_result = 15, .message_tail = 4096});
  const Outcome o = worker.process(0, "big");
  EXPECT_EQ(o.type, RecordType::done);
  EXPECT_EQ(o.result, "0123456789abcde");
  EXPECT_TRUE(o.flags & Outcome::kResultTruncated);
  EXPECT_EQ(calls.last_write, -1);
}

TEST(PluginWorker, MessagesKeepTheirLastBytes) {
  PluginWorker worker(fake_plugin(), PluginWorkerInfo{}, PluginLimits{.max_result = 100, .message_tail = 20});
  const Outcome o = worker.process(0, "talk");
  EXPECT_EQ(o.type, RecordType::done) << "a message alone does not fail an attempt";
  ASSERT_EQ(o.stderr_tail.size(), 20u);
  EXPECT_EQ(o.stderr_tail, " 97\nline 98\nline 99\n");
}

TEST(PluginWorker, AFailingInitNamesThePluginRankThreadAndReason) {
  auto plugin = fake_plugin();
  const std::string message = usage_error_message([&] {
    PluginWorker worker(plugin, PluginWorkerInfo{"refuse", 2, 5, 6});
  });
  EXPECT_EQ(message,
            "--plugin 'fake.so': mpmux_task_init returned 1 in thread 5 of rank 2: bad arg second line");
  EXPECT_EQ(calls.finalizes, 0) << "finalize only follows an init that succeeded";
}

TEST(TaskPlugin, AMissingFileIsAUsageErrorNamingIt) {
  mpmux::test::TempDir dir;
  const std::string file = (dir.path() / "nope.so").string();
  const std::string message = usage_error_message([&] { TaskPlugin::open(file); });
  EXPECT_NE(message.find("--plugin '" + file + "'"), std::string::npos) << message;
  EXPECT_NE(message.find("No such file"), std::string::npos) << message;
}

TEST(TaskPlugin, AFileThatIsNoLibraryIsRefused) {
  mpmux::test::TempDir dir;
  const std::string file = dir.write("text.so", "not a library\n").string();
  const std::string message = usage_error_message([&] { TaskPlugin::open(file); });
  EXPECT_NE(message.find("--plugin '" + file + "': cannot be loaded as a shared library: "),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_EQ(usage_error_message([&] { TaskPlugin::open(dir.path().string()); }),
            "--plugin '" + dir.path().string() + "': not a file");
}

TEST(TaskPlugin, ALibraryThatIsNoPluginNamesTheMissingFunction) {
  Dl_info info{};
  // The C library, by a function no sanitizer intercepts (an interceptor lives in the executable).
  ASSERT_NE(::dladdr(reinterpret_cast<void*>(&::gnu_get_libc_version), &info), 0);
  const std::string file = info.dli_fname;
  const std::string message = usage_error_message([&] { TaskPlugin::open(file); });
  EXPECT_NE(message.find("--plugin '" + file + "': no function mpmux_plugin_abi_version"), std::string::npos)
      << message;
}

TEST(TaskPlugin, TheExamplePluginLoadsAndComputes) {
  auto plugin = TaskPlugin::open(kRosenbrock);
  EXPECT_EQ(plugin->name(), kRosenbrock);
  PluginWorker worker(plugin, PluginWorkerInfo{"2,10", 0, 0, 1});
  const Outcome done = worker.process(0, R"({"x":0.5,"y":-1.0})");
  EXPECT_EQ(done.type, RecordType::done);
  const double x = 0.5, y = -1.0;
  EXPECT_EQ(std::stod(done.result), (2 - x) * (2 - x) + 10 * (y - x * x) * (y - x * x));
  const Outcome outside = worker.process(1, R"({"x":2.5,"y":0})");
  EXPECT_EQ(outside.type, RecordType::failed);
  EXPECT_EQ(outside.exit_code, 3);
  EXPECT_EQ(outside.stderr_tail, "x=2.5 y=0 is outside the box [-2, 2] x [-1, 3]\n");
}

TEST(TaskPlugin, ANameWithoutASlashIsAFileOfTheCurrentDirectory) {
  // dlopen would search the library path for "libc.so.6"; --plugin must not.
  const std::string message = usage_error_message([] { TaskPlugin::open("libc.so.6"); });
  EXPECT_NE(message.find("--plugin 'libc.so.6': No such file"), std::string::npos) << message;
}

}  // namespace
