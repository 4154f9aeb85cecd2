#include "mpmux/command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "mpmux/error.hpp"
#include "store/field_text.hpp"
#include "store/fs.hpp"

namespace mpmux {

namespace {

[[noreturn]] void bad_template(std::string_view text, const std::string& why) {
  throw UsageError("--exec '" + std::string(text) + "': " + why);
}

// A value as one inert /bin/sh word: as it is when every character is one the shell never treats
// specially (as GNU parallel does, so `$(({i} % 50))` works), else single-quoted: 'it'\''s' is
// the word it's. Non-ASCII bytes are quoted too: what a shell makes of them depends on its locale.
std::string shell_word(std::string_view value) {
  const bool plain = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::strchr("-_.+/,:@%", c) != nullptr;
  });
  if (plain) return std::string(value);
  std::string out = "'";
  for (char c : value) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += '\'';
  return out;
}

// Starts a task: stdin from /dev/null, stdout and stderr to the pipes, a process group of its
// own (a timeout or a drain kills the task with its children), signal handlers back to their
// defaults, an empty mask, and SIGUSR1 ignored: Slurm delivers a step's signals to every
// process of the step, and SIGUSR1, mpmux's drain signal, must not kill the tasks the drain
// lets finish (a task that wants SIGUSR1 installs its own handler). Returns the pid or -errno.
// posix_spawn cannot set a signal to "ignored" while the parent catches it, hence vfork, done
// as posix_spawn does it: every signal blocked until the child's dispositions are safe.
// The task dies with the thread that spawned it (PR_SET_PDEATHSIG): a rank killed with SIGKILL
// or by the OOM killer leaves no task running an element the next run starts again. That thread
// waits for the task in run_command, so a pool thread never ends while its task runs.
pid_t spawn_task(char* const* args, int out_fd, int err_fd) {
  const pid_t parent = ::getpid();
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old);
  volatile int child_errno = 0;  // written by the child, which shares our memory until exec
  const pid_t pid = ::vfork();
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec: no allocation, no locks.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
      child_errno = errno;
      ::_exit(127);
    }
    if (::getppid() != parent) ::_exit(127);  // the rank died before prctl ran: nobody waits for us
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction current {};
      if (sig == SIGKILL || sig == SIGSTOP || ::sigaction(sig, nullptr, &current) != 0) continue;
      if (current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN) ::sigaction(sig, &dfl, nullptr);
    }
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGUSR1, &ignore, nullptr);
    ::setpgid(0, 0);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) {
      child_errno = errno;
      ::_exit(127);
    }
    if (null_fd > 2) ::close(null_fd);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvp(args[0], args);
    child_errno = errno;
    ::_exit(127);
  }
  const int vfork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return -vfork_errno;
  if (child_errno != 0) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return -child_errno;
  }
  return pid;
}

}  // namespace

CommandTemplate CommandTemplate::parse(std::string_view text, bool shell) {
  CommandTemplate t;
  t.shell_ = shell;
  Word word;
  bool in_word = false;
  auto literal = [&](char c) {
    if (word.empty() || word.back().placeholder) word.push_back({false, {}});
    word.back().text += c;
    in_word = true;
  };
  auto end_word = [&] {
    if (in_word) t.words_.push_back(std::move(word));
    word.clear();
    in_word = false;
  };
  enum { plain, single, dbl } quote = plain;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '{') {
      if (i + 1 < text.size() && text[i + 1] == '{') {
        literal('{');
        ++i;
        continue;
      }
      auto close = text.find('}', i + 1);
      if (close == std::string_view::npos) bad_template(text, "unbalanced '{'");
      std::string name(text.substr(i + 1, close - i - 1));
      if (name.empty()) bad_template(text, "empty placeholder {}");
      // Any column name is a placeholder as written ({alpha (deg)}); only braces end it.
      if (name.find('{') != std::string::npos) bad_template(text, "unbalanced '{'");
      // A value is quoted for the shell when it needs it; inside the user's own quotes that
      // quoting would be taken literally and the value expanded.
      if (shell && quote != plain)
        bad_template(text, "with --shell, leave {" + name + "} unquoted: values are quoted for you");
      word.push_back({true, name});
      in_word = true;
      if (name != "#" && std::find(t.fields_.begin(), t.fields_.end(), name) == t.fields_.end())
        t.fields_.push_back(name);
      i = close;
      continue;
    }
    if (c == '}') {
      if (i + 1 < text.size() && text[i + 1] == '}') {
        literal('}');
        ++i;
        continue;
      }
      bad_template(text, "unbalanced '}'");
    }
    if (shell) {  // the shell splits and unquotes; keep the text, but follow its quoting
      if (quote == single) {
        if (c == '\'') quote = plain;
      } else if (c == '\\' && i + 1 < text.size()) {
        literal(c);
        c = text[++i];
      } else if (c == '"') {
        quote = quote == dbl ? plain : dbl;
      } else if (c == '\'' && quote == plain) {
        quote = single;
      }
      literal(c);
      continue;
    }
    switch (quote) {
      case single:
        if (c == '\'')
          quote = plain;
        else
          literal(c);
        break;
      case dbl:
        if (c == '"') {
          quote = plain;
        } else if (c == '\\' && i + 1 < text.size() && std::strchr("\\\"$`", text[i + 1]) != nullptr) {
          literal(text[++i]);
        } else {
          literal(c);
        }
        break;
      case plain:
        if (c == '\'') {
          quote = single;
          in_word = true;
        } else if (c == '"') {
          quote = dbl;
          in_word = true;
        } else if (c == '\\') {
          if (i + 1 == text.size()) bad_template(text, "trailing backslash");
          literal(text[++i]);
        } else if (c == ' ' || c == '\t' || c == '\n') {
          end_word();
        } else {
          literal(c);
        }
        break;
    }
  }
  if (quote != plain) bad_template(text, "unbalanced quote");
  end_word();
  if (t.words_.empty()) bad_template(text, "empty command");
  return t;
}

void CommandTemplate::check_fields(const std::vector<std::string>& available) const {
  for (const auto& f : fields_) {
    if (std::find(available.begin(), available.end(), f) != available.end()) continue;
    std::string list;
    for (const auto& a : available) list += (list.empty() ? "" : ", ") + a;
    throw UsageError("--exec: unknown placeholder {" + f +
                     "} (the elements' fields are: " + (list.empty() ? "none" : list) + ")");
  }
}

std::vector<std::string> CommandTemplate::render(std::uint64_t index, std::string_view element_json) const {
  std::vector<field_text::JsonMember> members;
  if (!fields_.empty() && !field_text::json_members(element_json, members))
    throw UsageError("element " + std::to_string(index) + " is not a JSON object");
  // A field's text as written in the input: a string's characters, a number's digits (1.10).
  auto value = [&](const std::string& name) -> std::string {
    if (name == "#") return std::to_string(index);
    const auto it =
        std::find_if(members.begin(), members.end(), [&](const auto& m) { return m.key == name; });
    if (it == members.end())
      throw UsageError("element " + std::to_string(index) + " has no field '" + name + "'");
    return field_text::value_text(it->value);
  };
  std::vector<std::string> argv;
  if (shell_) {
    std::string script;
    for (const auto& piece : words_.front())
      script += piece.placeholder ? shell_word(value(piece.text)) : piece.text;
    return {"/bin/sh", "-c", script};
  }
  argv.reserve(words_.size());
  for (const auto& word : words_) {
    std::string arg;
    for (const auto& piece : word) arg += piece.placeholder ? value(piece.text) : piece.text;
    argv.push_back(std::move(arg));
  }
  return argv;
}

bool run_command(const std::vector<std::string>& argv, Outcome& outcome, const CommandLimits& limits,
                 const std::function<bool()>& cancel) {
  outcome.t_start = posix::unix_time_ns();
  outcome.result.clear();
  outcome.stderr_tail.clear();
  outcome.flags = 0;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  posix::Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  posix::Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = spawn_task(args.data(), out_w.get(), err_w.get());
  out_w.reset();
  err_w.reset();
  if (pid < 0) {
    outcome.type = RecordType::failed;
    outcome.exit_code = 127;
    outcome.signal = 0;
    outcome.pid = 0;
    outcome.stderr_tail = "mpmux: cannot run '" + argv[0] + "': " + std::strerror(-pid);
    outcome.t_end = posix::unix_time_ns();
    return true;
  }
  outcome.pid = static_cast<std::uint32_t>(pid);
  // Reaped on every way out, also when reading its output throws (an allocation): this thread
  // may end afterwards, and the task must not be left to die with it (PDEATHSIG) or to run on.
  struct Reaper {
    pid_t pid;
    int status = 0;
    bool reaped = false;
    void reap() {
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      reaped = true;
    }
    ~Reaper() {
      if (reaped) return;
      ::kill(-pid, SIGKILL);
      reap();
    }
  } task{pid};

  const std::int64_t timeout_at =
      limits.timeout_s > 0 ? outcome.t_start + static_cast<std::int64_t>(limits.timeout_s * 1e9) : 0;
  bool timed_out = false, cancelled = false;
  char buf[65536];
  pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    int wait_ms = -1;
    if (cancel) wait_ms = 100;
    if (timeout_at) {
      const std::int64_t left_ms = (timeout_at - posix::unix_time_ns()) / 1000000 + 1;
      wait_ms = static_cast<int>(std::clamp<std::int64_t>(left_ms, 0, wait_ms < 0 ? 1000 : wait_ms));
    }
    const int n = ::poll(fds, 2, wait_ms);
    if (n < 0 && errno != EINTR) break;
    if (timeout_at && posix::unix_time_ns() >= timeout_at) timed_out = true;
    if (!timed_out && cancel && cancel()) cancelled = true;
    if (timed_out || cancelled) {
      // The whole group: the task's own children must not outlive it.
      ::kill(-pid, SIGKILL);
      break;
    }
    if (n <= 0) continue;
    for (int k = 0; k < 2; ++k) {
      if (fds[k].fd < 0 || fds[k].revents == 0) continue;
      ssize_t got = ::read(fds[k].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        fds[k].fd = -1;
        --open_fds;
        continue;
      }
      if (k == 0) {
        std::size_t room = limits.max_stdout - std::min(limits.max_stdout, outcome.result.size());
        outcome.result.append(buf, std::min<std::size_t>(room, static_cast<std::size_t>(got)));
        if (static_cast<std::size_t>(got) > room) outcome.flags |= Outcome::kResultTruncated;
      } else {
        outcome.stderr_tail.append(buf, static_cast<std::size_t>(got));
        if (outcome.stderr_tail.size() > 2 * limits.stderr_tail)
          outcome.stderr_tail.erase(0, outcome.stderr_tail.size() - limits.stderr_tail);
      }
    }
  }
  if (outcome.stderr_tail.size() > limits.stderr_tail)
    outcome.stderr_tail.erase(0, outcome.stderr_tail.size() - limits.stderr_tail);
  task.reap();
  const int status = task.status;
  outcome.t_end = posix::unix_time_ns();
  if (cancelled) return false;
  if (WIFEXITED(status)) {
    outcome.exit_code = WEXITSTATUS(status);
    outcome.signal = 0;
  } else {
    outcome.exit_code = -1;
    outcome.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }
  if (timed_out) {
    outcome.flags |= Outcome::kTimedOut;
    char note[64];
    std::snprintf(note, sizeof note, "mpmux: timed out after %g s\n", limits.timeout_s);
    outcome.stderr_tail += note;
  }
  outcome.type = outcome.exit_code == 0 && !timed_out ? RecordType::done : RecordType::failed;
  return true;
}

}  // namespace mpmux
