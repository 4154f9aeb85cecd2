// Progress where the user is: the terminal found at the end of stderr, directly or through
// mpirun's or srun's forwarding (a made-up /proc), and the bar and lines drawn for it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "run/progress_printer.hpp"
#include "run/terminal.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using mpmux::ProgressOutput;
using mpmux::run::ProcessContext;
using mpmux::run::progress_display;
using mpmux::run::ProgressDisplay;
using mpmux::run::ProgressPrinter;
using Kind = ProgressDisplay::Kind;

// A pseudo terminal of a known width: the user's terminal in these tests.
struct PseudoTerminal {
  int master = -1, slave = -1;
  std::string path;
  explicit PseudoTerminal(unsigned short columns) {
    master = ::posix_openpt(O_RDWR | O_NOCTTY);
    EXPECT_GE(master, 0);
    EXPECT_EQ(::grantpt(master), 0);
    EXPECT_EQ(::unlockpt(master), 0);
    path = ::ptsname(master);
    slave = ::open(path.c_str(), O_RDWR | O_NOCTTY);
    EXPECT_GE(slave, 0);
    winsize size{};
    size.ws_col = columns;
    size.ws_row = 24;
    EXPECT_EQ(::ioctl(slave, TIOCSWINSZ, &size), 0);
  }
  ~PseudoTerminal() {
    ::close(slave);
    ::close(master);
  }
};

// The write end of a pipe: rank 0's stderr under a launcher.
struct Pipe {
  int fds[2] = {-1, -1};
  Pipe() { EXPECT_EQ(::pipe(fds), 0); }
  ~Pipe() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
};

class ProgressDisplayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    context_.proc = dir_ / "proc";
    context_.env = [this](const char* name) -> const char* {
      auto it = env_.find(name);
      return it == env_.end() ? nullptr : it->second.c_str();
    };
    fs::create_directories(context_.proc / "net");
  }

  // A process of the made-up /proc with its name and descriptors (fd number -> link target).
  void add_process(int pid, const std::string& comm, const std::map<int, std::string>& fds) {
    const fs::path p = context_.proc / std::to_string(pid);
    fs::create_directories(p / "fd");
    std::ofstream(p / "comm") << comm << "\n";
    for (const auto& [fd, target] : fds) fs::create_symlink(target, p / "fd" / std::to_string(fd));
  }
  // /proc/net/tcp with one socket on port 43293 (A91D) in `state` (0A: listening), inode 777.
  void add_socket(const std::string& state) {
    std::ofstream(context_.proc / "net" / "tcp")
        << "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
           "inode\n"
        << "   2: 00000000:A91D 00000000:0000 " << state
        << " 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000004a60128 100 0 0 10 0\n";
  }
  void under_srun() {
    env_["SLURM_STEP_ID"] = "0";
    env_["SLURM_SRUN_COMM_PORT"] = "43293";
  }

  mpmux::test::TempDir temp_;
  const fs::path& dir_ = temp_.path();
  std::map<std::string, std::string> env_;
  ProcessContext context_;
};

TEST_F(ProgressDisplayTest, AStderrThatIsATerminalGetsABarAsWideAsIt) {
  PseudoTerminal tty(100);
  context_.stderr_fd = tty.slave;
  const ProgressDisplay d = progress_display(ProgressOutput::automatic, context_);
  EXPECT_EQ(d.kind, Kind::bar);
  EXPECT_FALSE(d.whole_lines);
  EXPECT_EQ(d.columns, 100);
}

TEST_F(ProgressDisplayTest, ABatchScriptGetsLinesEvenWithATerminal) {
  PseudoTerminal tty(100);
  context_.stderr_fd = tty.slave;
  env_["ENVIRONMENT"] = "BATCH";
  EXPECT_EQ(progress_display(ProgressOutput::automatic, context_).kind, Kind::lines);
  EXPECT_EQ(progress_display(ProgressOutput::bar, context_).kind, Kind::bar);
}

TEST_F(ProgressDisplayTest, UnderOpenMpiTheTerminalOfTheLaunchingMpirunCounts) {
  PseudoTerminal tty(90);
  Pipe pipe;
  context_.stderr_fd = pipe.fds[1];
  context_.parent = 4242;
  env_["OMPI_COMM_WORLD_SIZE"] = "3";
  add_process(4242, "mpirun", {{2, tty.path}});
  const ProgressDisplay d = progress_display(ProgressOutput::automatic, context_);
  EXPECT_EQ(d.kind, Kind::bar);
  EXPECT_FALSE(d.whole_lines);  // mpirun forwards what is written, a line or not
  EXPECT_EQ(d.columns, 90);
}

TEST_F(ProgressDisplayTest, UnderOpenMpiAWrapperScriptBetweenMpirunAndTheRankIsLookedThrough) {
  PseudoTerminal tty(90);
  Pipe pipe;
  struct stat st {};
  ASSERT_EQ(::fstat(pipe.fds[1], &st), 0);
  const std::string our_pipe = "pipe:[" + std::to_string(st.st_ino) + "]";
  context_.stderr_fd = pipe.fds[1];
  context_.parent = 4300;
  env_["OMPI_COMM_WORLD_SIZE"] = "3";
  // mpirun (4100) -> sh -c (4200) -> bash wrapper.sh (4300) -> mpmux; the shells write to our pipe.
  add_process(4100, "mpirun", {{2, tty.path}});
  add_process(4200, "sh", {{2, our_pipe}});
  add_process(4300, "bash", {{2, our_pipe}});
  std::ofstream(context_.proc / "4200" / "stat") << "4200 (sh) S 4100 4200 17601 0 -1 4194560 100\n";
  std::ofstream(context_.proc / "4300" / "stat") << "4300 (bash (a) b) S 4200 4200 17601 0 -1 4194560 90\n";
  const ProgressDisplay d = progress_display(ProgressOutput::automatic, context_);
  EXPECT_EQ(d.kind, Kind::bar);
  EXPECT_EQ(d.columns, 90);
  // A wrapper that writes elsewhere is where the pipe ends: its stderr decides.
  fs::remove(context_.proc / "4300" / "fd" / "2");
  fs::create_symlink("pipe:[1]", context_.proc / "4300" / "fd" / "2");
  EXPECT_EQ(progress_display(ProgressOutput::automatic, context_).kind, Kind::lines);
}

TEST_F(ProgressDisplayTest, UnderOpenMpiAnMpirunWritingToAFileOrPipeGivesLines) {
  Pipe pipe;
  context_.stderr_fd = pipe.fds[1];
  context_.parent = 4242;
  env_["OMPI_COMM_WORLD_SIZE"] = "3";
  std::ofstream(dir_ / "slurm-1.out") << "";
  add_process(4242, "mpirun", {{2, (dir_ / "slurm-1.out").string()}});
  EXPECT_EQ(progress_display(ProgressOutput::automatic, context_).kind, Kind::lines);
  context_.parent = 4343;
  add_process(4343, "mpirun", {{2, "pipe:[3227435]"}});
  EXPECT_EQ(progress_display(ProgressOutput::automatic, context_).kind, Kind::lines);
}

TEST_F(ProgressDisplayTest, AStderrRedirectedToAFileGivesLinesWhateverTheLauncherHas) {
  PseudoTerminal tty(90);
  const int file = ::open((dir_ / "err.txt").c_str(), O_WRONLY | O_CREAT, 0600);
  context_.stderr_fd = file;
  context_.parent = 4242;
  env_["OMPI_COMM_WORLD_SIZE"] = "3";
  add_process(4242, "mpirun", {{2, tty.path}});
  EXPECT_EQ(progress_display(ProgressOutput::automatic, context_).kind, Kind::lines);
  ::close(file);
}

TEST_F(ProgressDisplayTest, UnderSrunTheTerminalOfTheSrunOnThisNodeCountsAndGetsWholeLines) {
  PseudoTerminal tty(120);
  Pipe pipe;
  context_.stderr_fd = pipe.fds[1];
  under_srun();
  add_socket("0A");
  add_process(300, "bash", {{2, tty.path}});
  add_process(555, "srun", {{2, tty.path}, {3, "socket:[12]"}, {5, "socket:[777]"}});
  const ProgressDisplay d = progress_display(ProgressOutput::automatic, context_);
  EXPECT_EQ(d.kind, Kind::bar);
  EXPECT_TRUE(d.whole_lines);  // srun forwards whole lines only
  EXPECT_EQ(d.columns, 120);
}

TEST_F(ProgressDisplayTest, UnderSrunOnlyTheSrunListeningOnTheStepsPortCounts) {
  PseudoTerminal tty(120);
  Pipe pipe;
  context_.stderr_fd = pipe.fds[1];
  under_srun();
  // Another process holds the socket; an srun holds another; the socket is not listening.
  add_socket("0A");
  add_process(556, "sshd", {{2, tty.path}, {5, "socket:[777]"}});
  add_process(557, "srun", {{2, tty.path}, {5, "socket:[778]"}});
  EXPECT_EQ(progress_display(ProgressOutput::automatic, context_).kind, Kind::lines);
  add_socket("01");
  add_process(558, "srun", {{2, tty.path}, {5, "socket:[777]"}});
  EXPECT_EQ(progress_display(ProgressOutput::automatic, context_).kind, Kind::lines);
}

TEST_F(ProgressDisplayTest, UnderSrunAnSrunWritingToAFileGivesLines) {
  Pipe pipe;
  context_.stderr_fd = pipe.fds[1];
  under_srun();
  add_socket("0A");
  std::ofstream(dir_ / "out.txt") << "";
  add_process(555, "srun", {{2, (dir_ / "out.txt").string()}, {5, "socket:[777]"}});
  EXPECT_EQ(progress_display(ProgressOutput::automatic, context_).kind, Kind::lines);
}

TEST_F(ProgressDisplayTest, ABarAskedForUnderSrunIsDrawnInWholeLinesOfUnknownWidth) {
  Pipe pipe;
  context_.stderr_fd = pipe.fds[1];
  under_srun();
  const ProgressDisplay d = progress_display(ProgressOutput::bar, context_);
  EXPECT_EQ(d.kind, Kind::bar);
  EXPECT_TRUE(d.whole_lines);
  EXPECT_EQ(d.columns, 0);
}

TEST_F(ProgressDisplayTest, LinesAskedForAreLinesEvenOnATerminal) {
  PseudoTerminal tty(100);
  context_.stderr_fd = tty.slave;
  EXPECT_EQ(progress_display(ProgressOutput::lines, context_).kind, Kind::lines);
}

// What a printer wrote to a temporary file.
class ProgressPrinterTest : public ::testing::Test {
 protected:
  void SetUp() override { out_ = std::tmpfile(); }
  void TearDown() override { std::fclose(out_); }
  std::string written() {
    std::fflush(out_);
    std::string text;
    std::rewind(out_);
    for (int c; (c = std::fgetc(out_)) != EOF;) text += static_cast<char>(c);
    return text;
  }
  // Updates until the printer draws again (a bar is redrawn ten times a second).
  void update_until_drawn(ProgressPrinter& printer, std::uint64_t done) {
    const std::size_t before = written().size();
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (written().size() == before && std::chrono::steady_clock::now() < give_up) printer.update(done, 0);
    ASSERT_GT(written().size(), before);
  }
  std::FILE* out_ = nullptr;
};

TEST_F(ProgressPrinterTest, ABarOnATerminalRedrawsInPlaceAndEndsWithANewline) {
  ProgressPrinter printer(10, 10.0, {Kind::bar, false, 0}, out_);
  update_until_drawn(printer, 4);
  printer.finish(10, 0);
  const std::string text = written();
  EXPECT_EQ(text.find('\n'), text.size() - 1) << text;
  EXPECT_NE(text.find("\r[############                  ] 4/10  40.0% "), std::string::npos) << text;
  EXPECT_NE(text.find("\r[##############################] 10/10 100.0% "), std::string::npos) << text;
  EXPECT_NE(text.find(" in 00:00\x1b[K\n"), std::string::npos) << text;
}

TEST_F(ProgressPrinterTest, ABarStaysWholeWhenMoreFinishThanTheTotal) {
  // Retried attempts count as finished too: 12 of 10 fills the bar, and no more.
  ProgressPrinter printer(10, 10.0, {Kind::bar, false, 0}, out_);
  printer.finish(8, 4);
  const std::string text = written();
  EXPECT_NE(text.find("\r[##############################] 12/10 120.0% "), std::string::npos) << text;
}

TEST_F(ProgressPrinterTest, ABarThroughSrunIsALinePerRedrawMovingUpOverThePreviousOne) {
  ProgressPrinter printer(10, 10.0, {Kind::bar, true, 0}, out_);
  update_until_drawn(printer, 4);
  printer.finish(10, 1);
  const std::string text = written();
  EXPECT_EQ(text.find('\r'), text.find("\x1b[A\r") + 3) << text;  // no carriage return alone
  EXPECT_TRUE(text.starts_with("[############                  ] 4/10 ")) << text;
  EXPECT_NE(text.find("\n\x1b[A\r[###"), std::string::npos) << text;
  EXPECT_TRUE(text.ends_with(", 1 failed\x1b[K\n")) << text;
  EXPECT_EQ(text.find("\n\n"), std::string::npos) << text;
}

TEST_F(ProgressPrinterTest, ABarIsNarrowedToTheTerminalAndGivesWayWhenItCannotFit) {
  for (int columns : {60, 20}) {
    std::FILE* out = std::tmpfile();
    ProgressPrinter printer(10, 10.0, {Kind::bar, true, columns}, out);
    printer.finish(10, 0);
    std::fflush(out);
    std::rewind(out);
    char line[256] = "";
    ASSERT_TRUE(std::fgets(line, sizeof line, out));
    std::fclose(out);
    const std::string text = line;
    const std::string visible = text.substr(0, text.find("\x1b[K"));
    if (columns == 60) {
      EXPECT_TRUE(visible.starts_with("[###")) << text;
      EXPECT_EQ(visible.size(), 59u) << text;  // as wide as fits without wrapping
    } else {
      EXPECT_TRUE(visible.starts_with("10/10 100.0%")) << text;  // no room for a bar
    }
  }
}

TEST_F(ProgressPrinterTest, LinesArePlainLines) {
  ProgressPrinter printer(10, 10.0, {}, out_);
  printer.finish(10, 0);
  const std::string text = written();
  EXPECT_TRUE(text.starts_with("mpmux: 10/10 elements (100.0%), ")) << text;
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
}

}  // namespace
