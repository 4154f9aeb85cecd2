// mpmux top: a live view of a session in the terminal, redrawn every --interval seconds from what
// `stat` reads (the journals, the committed batches and the participants' heartbeats), so that it
// works on a session run anywhere its store is seen, and writes nothing to it. Not on a terminal,
// it prints one frame as plain text (docs/guide.md "Watching a run").
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "cli/commands.hpp"
#include "mpmux/error.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"
#include "run/stat_text.hpp"
#include "run/top_frame.hpp"
#include "store/fs.hpp"

namespace mpmux::cli {

namespace {

// Written whole, retried on EINTR; a terminal that went away leaves nothing to do.
void write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

// The signals that end top (SIGINT, SIGTERM, SIGHUP, SIGQUIT) or redraw it (SIGWINCH), read
// from a signalfd in the loop instead of interrupting it: the terminal is then always put back
// by the normal path. The old mask comes back, after what is pending was taken, on destruction.
class LoopSignals {
 public:
  LoopSignals() {
    sigemptyset(&set_);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) sigaddset(&set_, sig);
    if (::sigprocmask(SIG_BLOCK, &set_, &old_) != 0) throw Error("top: sigprocmask failed");
    fd_ = ::signalfd(-1, &set_, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd_ < 0) {
      ::sigprocmask(SIG_SETMASK, &old_, nullptr);
      throw Error("top: signalfd failed");
    }
  }
  ~LoopSignals() {
    while (next() != 0) {
    }
    ::close(fd_);
    ::sigprocmask(SIG_SETMASK, &old_, nullptr);
  }
  LoopSignals(const LoopSignals&) = delete;
  LoopSignals& operator=(const LoopSignals&) = delete;
  int fd() const { return fd_; }
  // The next signal received, 0 when none is.
  int next() {
    signalfd_siginfo info{};
    return ::read(fd_, &info, sizeof info) == sizeof info ? static_cast<int>(info.ssi_signo) : 0;
  }

 private:
  sigset_t set_{}, old_{};
  int fd_ = -1;
};

// The terminal while top draws on it: the alternate screen, the cursor hidden, no autowrap (a
// line can never wrap), and keys read one by one without echo when stdin is that terminal.
// The destructor puts all of it back, whatever ends top.
class FullScreen {
 public:
  explicit FullScreen(bool keys) {
    if (keys && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios raw = saved_;
      // Ctrl-C arrives as a key (0x03) rather than a signal; no flow control, no CR mapping.
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | ISIG | IEXTEN);
      raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL);
      raw.c_cc[VMIN] = 1;
      raw.c_cc[VTIME] = 0;
      raw_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    write_all(STDOUT_FILENO, "\x1b[?1049h\x1b[?25l\x1b[?7l\x1b[H\x1b[2J");
  }
  ~FullScreen() {
    write_all(STDOUT_FILENO, "\x1b[?7h\x1b[?25h\x1b[?1049l");
    if (raw_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  FullScreen(const FullScreen&) = delete;
  FullScreen& operator=(const FullScreen&) = delete;
  bool reads_keys() const { return raw_; }

 private:
  termios saved_{};
  bool raw_ = false;
};

struct ScreenSize {
  std::size_t columns = 80, rows = 24;
};

ScreenSize screen_size() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0)
    return {ws.ws_col, ws.ws_row};
  return {};
}

std::string clock_text() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &local);
  return buf;
}

void read_into(run::TopView& view, const Session& session) {
  view.stat = session_stat(session);
  view.now_unix_ns = posix::unix_time_ns();
  view.trouble.clear();
}

// One frame over the last one, line by line (each line erased to its end, then what is below
// the frame), the keys at the bottom: written at once, so the screen never shows half a frame.
void draw(const run::TopView& view, double interval_s, const std::string& read_at) {
  const ScreenSize size = screen_size();
  const std::vector<std::string> lines =
      run::top_frame(view, size.columns, size.rows > 1 ? size.rows - 1 : 1);
  // Without autowrap the cursor stays on the last column once a line fills it: erasing to the
  // end of such a line would erase its last character.
  const auto erase_rest = [&](const std::string& line) {
    return run::columns_of(line) < size.columns ? "\x1b[K" : "";
  };
  std::string out = "\x1b[H";
  for (const std::string& line : lines) out += line + erase_rest(line) + "\r\n";
  out += "\x1b[J";
  if (size.rows > 1) {
    char every[32];
    std::snprintf(every, sizeof every, "%g", interval_s);
    const std::string keys =
        run::clip("q quits, space reads again; read " + read_at + ", every " + every + " s", size.columns);
    out += "\x1b[" + std::to_string(size.rows) + ";1H" + keys + erase_rest(keys);
  }
  write_all(STDOUT_FILENO, out);
}

int top_live(const Session& session, run::TopView& view, double interval_s) {
  LoopSignals signals;
  FullScreen screen(::isatty(STDIN_FILENO) != 0);
  using Clock = std::chrono::steady_clock;
  const auto interval =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_s));
  std::string read_at = clock_text();
  for (;;) {
    draw(view, interval_s, read_at);
    const auto next_read = Clock::now() + interval;
    bool read_now = false;
    while (!read_now) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(next_read - Clock::now()).count();
      if (left <= 0) break;
      pollfd fds[2] = {{signals.fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
      const int ready = ::poll(fds, screen.reads_keys() ? 2 : 1, static_cast<int>(left));
      if (ready < 0 && errno != EINTR) throw Error("top: poll failed");
      if (ready <= 0) continue;
      if (fds[0].revents & POLLIN) {
        for (int sig = signals.next(); sig != 0; sig = signals.next()) {
          if (sig != SIGWINCH) return 0;
          draw(view, interval_s, read_at);  // the new size at once
        }
      }
      if (screen.reads_keys() && (fds[1].revents & (POLLIN | POLLHUP))) {
        char keys[64];
        const ssize_t n = ::read(STDIN_FILENO, keys, sizeof keys);
        if (n == 0) return 0;  // the terminal is gone
        for (ssize_t k = 0; k < n; ++k) {
          const char key = keys[k];
          if (key == 'q' || key == 'Q' || key == 0x03 || key == 0x1C) return 0;  // Ctrl-C, Ctrl-\ as well
          if (key == ' ') read_now = true;
        }
      }
    }
    // A store that fails now and then (a network blip on az://) keeps the last counts on screen.
    try {
      read_into(view, session);
    } catch (const StoreError& e) {
      view.trouble = e.what();
    }
    read_at = clock_text();
  }
}

int top_command(const std::string& mux_id, double interval_s) {
  if (!(interval_s >= 0.1 && interval_s <= 3600))
    throw UsageError("top: --interval " + std::to_string(interval_s) +
                     ": must be between 0.1 and 3600 seconds");
  const Session session = Session::open(session_id(mux_id, "top"));
  run::TopView view;
  view.mux_id = session.id().str();
  read_into(view, session);
  if (::isatty(STDOUT_FILENO) == 0) {
    // Output to a file or a pipe (`top -b -n 1`): one frame, nothing cut.
    for (const std::string& line : run::top_frame(view, std::numeric_limits<std::size_t>::max(),
                                                  std::numeric_limits<std::size_t>::max()))
      std::printf("%s\n", line.c_str());
    return kExitOk;
  }
  return top_live(session, view, interval_s);
}

}  // namespace

Command add_top_command(CLI::App& app) {
  struct Args {
    std::string mux_id;
    double interval_s = 1.0;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "top",
      "A live view of a session in the terminal (counts, progress, rate and ETA, participants, the longest "
      "running elements); q quits. Not on a terminal: one frame as plain text");
  add_mux_id(*cmd, args->mux_id);
  cmd->add_option("--interval", args->interval_s, "Seconds between reads (0.1 to 3600; default 1)");
  return {cmd, [args] { return top_command(args->mux_id, args->interval_s); }};
}

}  // namespace mpmux::cli
