// --exec templates and running commands.
#include <gtest/gtest.h>

#include <csignal>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mpmux/command.hpp"
#include "mpmux/error.hpp"
#include "mpmux/thread_pool.hpp"

namespace {

using mpmux::CommandTemplate;
using mpmux::Outcome;
using Argv = std::vector<std::string>;

TEST(CommandTemplate, FillsFieldsAndIndexInsideWords) {
  auto t = CommandTemplate::parse("./sim --alpha {alpha} --out run{#}-{seed}.txt", false);
  EXPECT_EQ(t.render(7, R"({"alpha":0.5,"seed":3})"),
            (Argv{"./sim", "--alpha", "0.5", "--out", "run7-3.txt"}));
  EXPECT_EQ(t.fields(), (Argv{"alpha", "seed"}));
}

TEST(CommandTemplate, AValueWithSpacesStaysOneArgument) {
  auto t = CommandTemplate::parse("echo {name}", false);
  EXPECT_EQ(t.render(0, R"({"name":"a b; rm -rf /"})"), (Argv{"echo", "a b; rm -rf /"}));
}

TEST(CommandTemplate, QuotesAndBackslashesSplitLikeAShell) {
  auto t = CommandTemplate::parse(R"(prog 'a b' "c \"d\"" e\ f '' {x})", false);
  EXPECT_EQ(t.render(0, R"({"x":"y"})"), (Argv{"prog", "a b", "c \"d\"", "e f", "", "y"}));
}

TEST(CommandTemplate, DoubledBracesAreLiteral) {
  auto t = CommandTemplate::parse("echo {{x}} {x}", false);
  EXPECT_EQ(t.render(0, R"({"x":1})"), (Argv{"echo", "{x}", "1"}));
}

TEST(CommandTemplate, ShellModeQuotesValues) {
  auto t = CommandTemplate::parse("echo {v} > /dev/null", true);
  EXPECT_EQ(t.render(0, R"({"v":"it's $HOME"})"),
            (Argv{"/bin/sh", "-c", "echo 'it'\\''s $HOME' > /dev/null"}));
}

TEST(CommandTemplate, FieldsRenderAsWrittenInTheElement) {
  auto t = CommandTemplate::parse("echo {v} {z} {n} {e} {s} {o} {b}", false);
  EXPECT_EQ(
      t.render(
          0,
          R"({"v":1.10, "z":"007","n":-0,"e":1e3,"s":"a\"\u00e9\ud83d\ude00\n","o":{"a": [1.50]},"b":true})"),
      (Argv{"echo", "1.10", "007", "-0", "1e3", "a\"\xC3\xA9\xF0\x9F\x98\x80\n", "{\"a\": [1.50]}", "true"}));
}

TEST(CommandTemplate, PlaceholdersNameAnyColumnAsWritten) {
  for (bool shell : {false, true}) {
    auto t = CommandTemplate::parse("echo {Contact Phone Number}x {alpha (deg)} {2theta} {#}", shell);
    EXPECT_EQ(t.fields(), (Argv{"Contact Phone Number", "alpha (deg)", "2theta"}));
    const auto argv = t.render(4, R"j({"2theta":30,"alpha (deg)":"-5","Contact Phone Number":"+41 22"})j");
    const Argv expected =
        shell ? Argv{"/bin/sh", "-c", "echo '+41 22'x -5 30 4"} : Argv{"echo", "+41 22x", "-5", "30", "4"};
    EXPECT_EQ(argv, expected);
  }
}

TEST(CommandTemplate, ShellModeQuotesAValueOnlyWhenTheShellWouldChangeIt) {
  auto t = CommandTemplate::parse("f {v}", true);
  auto script = [&](const std::string& element) { return t.render(0, element)[2]; };
  EXPECT_EQ(script(R"({"v":7})"), "f 7");
  EXPECT_EQ(script(R"({"v":"-a_b.c+d/e,f:g@h%i"})"), "f -a_b.c+d/e,f:g@h%i");
  EXPECT_EQ(script(R"({"v":""})"), "f ''");
  EXPECT_EQ(script(R"({"v":"~"})"), "f '~'");
  EXPECT_EQ(script(R"({"v":"a=b"})"), "f 'a=b'");
  EXPECT_EQ(script(R"({"v":"\u00e9"})"), "f '\xC3\xA9'");
}

// Every value reaches the command as one word, unchanged, under dash (/bin/sh) and bash.
TEST(CommandTemplate, ShellModeValuesArriveAsOneInertWordInDashAndBash) {
  const std::vector<std::string> values = {
      "a b; rm -rf ~", "",          "it's", "\"q\"", "x\ny", "*",    "~",   "~/x", "$HOME",
      "`id`",          "$(id)",     "a\\b", "\t",    "#c",   "!x",   "a=b", "-n",  "\xC3\xA9",
      "{x}",           "a|b&c>d<e", "7",    "1.10",  "007",  " pad "};
  auto t = CommandTemplate::parse("printf '[%s]' {v} && printf '(%s)' {v}{v}", true);
  for (const char* shell : {"/bin/sh", "bash"}) {
    for (const auto& v : values) {
      std::string element = "{\"v\":";
      for (char c : std::string(nlohmann::json(v).dump())) element += c;
      element += "}";
      auto argv = t.render(0, element);
      argv[0] = shell;
      Outcome o;
      mpmux::run_command(argv, o);
      EXPECT_EQ(o.result, "[" + v + "](" + v + v + ")") << shell << " " << argv[2];
      EXPECT_EQ(o.exit_code, 0) << shell << " " << argv[2] << o.stderr_tail;
    }
  }
}

TEST(CommandTemplate, ShellModeArithmeticOnAValueWorks) {
  auto t = CommandTemplate::parse("test $(({i} % 50)) -ne 7", true);
  for (const char* shell : {"/bin/sh", "bash"}) {
    for (int i : {7, 8, 57}) {
      auto argv = t.render(0, "{\"i\":" + std::to_string(i) + "}");
      argv[0] = shell;
      Outcome o;
      mpmux::run_command(argv, o);
      EXPECT_EQ(o.exit_code, i % 50 == 7 ? 1 : 0) << shell << " " << i << " " << o.stderr_tail;
    }
  }
}

TEST(CommandTemplate, UnknownPlaceholderIsNamed) {
  auto t = CommandTemplate::parse("sim {alpha} {gamma}", false);
  try {
    t.check_fields({"alpha", "beta"});
    FAIL() << "no error";
  } catch (const mpmux::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("{gamma}"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("alpha, beta"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(t.check_fields({"alpha", "gamma"}));
}

TEST(CommandTemplate, MalformedTemplatesAreUsageErrors) {
  for (const char* bad :
       {"echo {x", "echo x}", "echo {}", "echo {a{b}", "echo 'open", "", "   ", "echo \\"}) {
    EXPECT_THROW(CommandTemplate::parse(bad, false), mpmux::UsageError) << bad;
  }
}

TEST(CommandTemplate, AnElementWithoutTheFieldIsAUsageError) {
  auto t = CommandTemplate::parse("echo {x}", false);
  EXPECT_THROW(t.render(3, R"({"y":1})"), mpmux::UsageError);
}

TEST(RunCommand, StdoutIsTheResultAndExitCodeIsKept) {
  Outcome o;
  mpmux::run_command({"/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"}, o);
  EXPECT_EQ(o.result, "hello\n");
  EXPECT_EQ(o.stderr_tail, "oops\n");
  EXPECT_EQ(o.exit_code, 3);
  EXPECT_EQ(o.type, mpmux::RecordType::failed);
  EXPECT_GT(o.pid, 0u);
  EXPECT_LE(o.t_start, o.t_end);
}

TEST(RunCommand, SuccessIsDone) {
  Outcome o;
  mpmux::run_command({"true"}, o);
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.type, mpmux::RecordType::done);
}

TEST(RunCommand, LongStdoutIsCutAndFlagged) {
  Outcome o;
  mpmux::run_command({"/bin/sh", "-c", "head -c 3000000 /dev/zero"}, o,
                     {.max_stdout = 1 << 20, .stderr_tail = 4096});
  EXPECT_EQ(o.result.size(), 1u << 20);
  EXPECT_TRUE(o.flags & Outcome::kResultTruncated);
  EXPECT_EQ(o.exit_code, 0);
}

TEST(RunCommand, OnlyTheStderrTailIsKept) {
  Outcome o;
  mpmux::run_command({"/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a >&2; echo END >&2"}, o);
  ASSERT_EQ(o.stderr_tail.size(), 4096u);
  EXPECT_EQ(o.stderr_tail.substr(4092), "END\n");
}

TEST(RunCommand, DeathBySignalIsRecorded) {
  Outcome o;
  mpmux::run_command({"/bin/sh", "-c", "kill -KILL $$"}, o);
  EXPECT_EQ(o.signal, SIGKILL);
  EXPECT_EQ(o.exit_code, -1);
  EXPECT_EQ(o.type, mpmux::RecordType::failed);
}

TEST(RunCommand, AMissingProgramFailsWith127AndAReason) {
  Outcome o;
  mpmux::run_command({"/nonexistent/prog", "x"}, o);
  EXPECT_EQ(o.exit_code, 127);
  EXPECT_NE(o.stderr_tail.find("/nonexistent/prog"), std::string::npos);
  EXPECT_EQ(o.type, mpmux::RecordType::failed);
}

}  // namespace

namespace {

TEST(CommandTemplate, ShellModeRefusesPlaceholdersInsideQuotes) {
  for (const char* bad : {"echo \"{v}\"", "echo '{v}'", "echo \"x {v} y\""}) {
    EXPECT_THROW(CommandTemplate::parse(bad, true), mpmux::UsageError) << bad;
  }
  EXPECT_NO_THROW(CommandTemplate::parse("echo \"a\" {v} 'b' \\\"{v}", true));
}

TEST(RunCommand, ATimeoutKillsTheWholeProcessGroup) {
  Outcome o;
  // The child's own child would keep the pipes open if it survived.
  EXPECT_TRUE(mpmux::run_command({"/bin/sh", "-c", "sleep 30 & sleep 30"}, o,
                                 {.max_stdout = 1 << 20, .stderr_tail = 4096, .timeout_s = 0.3}));
  EXPECT_EQ(o.type, mpmux::RecordType::failed);
  EXPECT_TRUE(o.flags & Outcome::kTimedOut);
  EXPECT_EQ(o.signal, SIGKILL);
  EXPECT_LT(o.t_end - o.t_start, 10'000'000'000) << "the wait did not end with the kill";
}

TEST(RunCommand, ACancelledCommandIsKilledAndNotToBeRecorded) {
  Outcome o;
  int asked = 0;
  EXPECT_FALSE(mpmux::run_command({"sleep", "30"}, o, {}, [&] { return ++asked >= 3; }));
  EXPECT_GE(asked, 3);
  EXPECT_LT(o.t_end - o.t_start, 10'000'000'000);
}

TEST(RunCommand, PoolThreadsReplacedByWorkerLifespanKillNoRunningTask) {
  // A task dies with the thread that spawned it (PDEATHSIG); run_command waits for it in that
  // thread, so a thread ending after each task (lifespan 1) never takes a running one along.
  mpmux::ThreadPool pool(mpmux::PoolOptions{.n_jobs = 2, .cpu_ids = {}, .worker_lifespan = 1});
  std::vector<std::future<Outcome>> runs;
  for (int k = 0; k < 6; ++k) {
    runs.push_back(pool.apply_async([] {
      Outcome o;
      mpmux::run_command({"/bin/sh", "-c", "sleep 0.05; echo ok"}, o);
      return o;
    }));
  }
  for (auto& run : runs) {
    const Outcome o = run.get();
    EXPECT_EQ(o.type, mpmux::RecordType::done) << "signal " << o.signal;
    EXPECT_EQ(o.result, "ok\n");
  }
}

TEST(RunCommand, ACommandThatEndsIsNotCancelled) {
  Outcome o;
  EXPECT_TRUE(mpmux::run_command({"true"}, o, {}, [] { return false; }));
  EXPECT_EQ(o.type, mpmux::RecordType::done);
}

}  // namespace

namespace {

extern "C" void count_usr2(int) {}

TEST(RunCommand, TasksIgnoreTheDrainSignalAndGetDefaultHandlers) {
  // SIGUSR1 drains a run and may be sent to every process of a Slurm step: a task survives it.
  Outcome o;
  mpmux::run_command({"/bin/sh", "-c", "kill -USR1 $$; echo alive"}, o);
  EXPECT_EQ(o.result, "alive\n");
  EXPECT_EQ(o.type, mpmux::RecordType::done);
  // A handler of the runner's is not the task's: SIGUSR2 has its default action there.
  struct sigaction sa {};
  sa.sa_handler = count_usr2;
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGUSR2, &sa, &old), 0);
  Outcome o2;
  mpmux::run_command({"/bin/sh", "-c", "kill -USR2 $$; echo survived"}, o2);
  ::sigaction(SIGUSR2, &old, nullptr);
  EXPECT_EQ(o2.signal, SIGUSR2);
  EXPECT_EQ(o2.result, "");
}

}  // namespace
