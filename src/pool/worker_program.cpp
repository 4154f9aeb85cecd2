// WorkerProgram / WorkerProgramPool: external worker processes on a framed Unix-socket protocol.
#include "mpmux/worker_program.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "pool/worker_frame.hpp"

extern char** environ;

namespace mpmux {

namespace {

using Clock = std::chrono::steady_clock;

using namespace worker_frame;
constexpr int kChildFd = 3;

std::string errno_text(int err) { return std::strerror(err); }

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// Moves fd above kChildFd so that dup2(..., 3) in the child cannot clobber it.
int above_child_fd(int fd) {
  if (fd > kChildFd) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, kChildFd + 1);
  int err = errno;
  close(fd);
  errno = err;
  return moved;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "status " + std::to_string(WEXITSTATUS(status));
  return "status ?";
}

// PATH lookup in the parent: the child must not allocate between fork and exec.
std::string resolve_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  std::string found_not_exec;
  std::size_t pos = 0;
  while (pos <= dirs.size()) {
    std::size_t end = dirs.find(':', pos);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(pos, end - pos);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st {};
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
      if (found_not_exec.empty()) found_not_exec = candidate;
    }
    pos = end + 1;
  }
  if (!found_not_exec.empty()) return found_not_exec;  // exec reports EACCES with its path
  throw UsageError("worker program '" + name + "': not found in PATH");
}

}  // namespace

struct WorkerProgram::State {
  WorkerProgramOptions options;
  std::string program;  // resolved argv[0], for messages
  pid_t pid = 0;
  int pidfd = -1;
  int sock = -1;
  int out_fd = -1;     // with capture_output: the read end of the program's stdout and stderr
  std::string output;  // what it wrote there since the last take_output, cut to output_tail
  std::string inbuf;
  bool exited = false;  // pidfd fired: pid is a zombie, waiting for waitpid
  int status = 0;

  std::string who() const { return "worker program " + program + " (pid " + std::to_string(pid) + ")"; }

  // Kills the process group, reaps the child and closes every fd. Returns the wait status.
  int reap(bool kill_now) {
    if (pid <= 0) return status;
    if (!exited && !kill_now) {
      pollfd p{pidfd, POLLIN, 0};
      int ms = static_cast<int>(options.stop_timeout.count());
      while (poll(&p, 1, ms) < 0 && errno == EINTR) {
      }
    }
    // The group goes too: helpers the program started must not outlive it.
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    read_output();  // what it wrote last, kept for take_output
    if (pidfd >= 0) close(pidfd);
    if (sock >= 0) close(sock);
    if (out_fd >= 0) close(out_fd);
    pidfd = sock = out_fd = -1;
    pid = 0;
    exited = false;
    inbuf.clear();
    return status;
  }

  // Reads what the program wrote to its stdout and stderr, without waiting; closes the pipe
  // at its end (the program and every process of its group are gone).
  void read_output() {
    char buf[65536];
    while (out_fd >= 0) {
      ssize_t n = read(out_fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        close(out_fd);
        out_fd = -1;
        return;
      }
      output.append(buf, static_cast<std::size_t>(n));
      if (output.size() > 2 * options.output_tail) output.erase(0, output.size() - options.output_tail);
    }
  }

  [[noreturn]] void fail(WorkerProgramError::Reason reason, const std::string& what) {
    std::string msg = who() + " " + what;
    int st = reap(true);
    throw WorkerProgramError(reason, msg, st);
  }

  // The child is gone (socket EOF or pidfd): wait for its status (briefly) and throw.
  [[noreturn]] void fail_dead(bool at_start, const std::string& during) {
    std::string name = who();
    if (!exited) {
      pollfd p{pidfd, POLLIN, 0};
      int n;
      while ((n = poll(&p, 1, 1000)) < 0 && errno == EINTR) {
      }
      exited = n > 0;
    }
    bool closed_only = !exited;  // socket closed, process still running: reap() kills it
    int st = reap(true);
    if (closed_only)
      throw WorkerProgramError(
          at_start ? WorkerProgramError::Reason::exited_at_start : WorkerProgramError::Reason::died,
          name + " closed its socket during " + during + " and was killed", st);
    if (at_start)
      throw WorkerProgramError(WorkerProgramError::Reason::exited_at_start,
                               name + " exited at once (" + describe_status(st) + ") before READY", st);
    throw WorkerProgramError(WorkerProgramError::Reason::died,
                             name + " died during " + during + " (" + describe_status(st) + ")", st);
  }

  // Asked while waiting for the worker (call's cancel), at least every kCancelPoll.
  const std::function<bool()>* cancel = nullptr;
  static constexpr int kCancelPollMs = 100;

  // Waits for the socket (events) or the child's exit, until deadline, reading its output
  // meanwhile. Returns false on exit.
  bool wait_socket(short events, Clock::time_point deadline, bool at_start, const std::string& during) {
    for (;;) {
      // A negative fd is skipped by poll: no capture, or the output pipe at its end.
      pollfd p[3] = {{sock, events, 0}, {pidfd, POLLIN, 0}, {out_fd, POLLIN, 0}};
      int ms = -1;
      if (deadline != Clock::time_point::max()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0)
          fail(WorkerProgramError::Reason::timeout,
               "timed out during " + during + " after " +
                   std::to_string((at_start ? options.start_timeout : options.task_timeout).count()) + " ms");
        ms = static_cast<int>(std::min<long long>(left + 1, 1 << 30));
      }
      const bool can_cancel = cancel != nullptr && *cancel;
      if (can_cancel && (ms < 0 || ms > kCancelPollMs)) ms = kCancelPollMs;
      int n = poll(p, 3, ms);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail(WorkerProgramError::Reason::died, "poll failed: " + errno_text(errno));
      }
      if (can_cancel && (*cancel)())
        fail(WorkerProgramError::Reason::cancelled, "cancelled during " + during);
      if (p[2].revents != 0) read_output();
      // Data already on the socket is read before a death is reported.
      if (p[0].revents != 0) return true;
      if (p[1].revents != 0) {
        exited = true;
        return false;
      }
    }
  }

  void send_frame(std::uint8_t type, std::string_view head, std::string_view payload,
                  Clock::time_point deadline, bool at_start, const std::string& during) {
    std::string frame;
    put_u32(frame, static_cast<std::uint32_t>(1 + head.size() + payload.size()));
    frame.push_back(static_cast<char>(type));
    frame.append(head);
    // Large payloads go straight from the caller's buffer instead of being copied.
    std::string_view parts[2] = {frame, payload};
    for (std::string_view part : parts) {
      while (!part.empty()) {
        ssize_t n = send(sock, part.data(), part.size(), MSG_NOSIGNAL);
        if (n > 0) {
          part.remove_prefix(static_cast<std::size_t>(n));
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          if (!wait_socket(POLLOUT, deadline, at_start, during)) fail_dead(at_start, during);
        } else {
          fail_dead(at_start, during);  // EPIPE/ECONNRESET: the worker closed its end
        }
      }
    }
  }

  // Reads one frame; returns its type and puts the payload in `payload`.
  std::uint8_t read_frame(std::string& payload, Clock::time_point deadline, bool at_start,
                          const std::string& during) {
    for (;;) {
      try {
        if (std::uint8_t type = take(inbuf, payload)) return type;
      } catch (const Garbage& e) {
        fail(WorkerProgramError::Reason::garbage, "wrote garbage during " + during + ": " + e.what());
      }
      if (!wait_socket(POLLIN, deadline, at_start, during)) {
        // The child exited: drain what it wrote before giving up.
        char buf[65536];
        ssize_t n = recv(sock, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
          inbuf.append(buf, static_cast<std::size_t>(n));
          continue;
        }
        fail_dead(at_start, during);
      }
      char buf[65536];
      ssize_t n = recv(sock, buf, sizeof buf, 0);
      if (n > 0) {
        inbuf.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        fail_dead(at_start, during);
      }
    }
  }

  void spawn() {
    const auto& argv = options.argv;
    if (argv.empty() || argv[0].empty()) throw UsageError("worker program: argv is empty");
    program = resolve_program(argv[0]);

    // Everything the child needs is built here: between fork and exec it may only make
    // async-signal-safe calls (the parent has threads).
    std::vector<char*> cargv;
    cargv.reserve(argv.size() + 1);
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    std::vector<std::string> env_store;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e)
      if (std::strncmp(*e, "MPMUX_WORKER_FD=", 16) != 0) env_store.emplace_back(*e);
    env_store.push_back("MPMUX_WORKER_FD=" + std::to_string(kChildFd));
    std::vector<char*> cenv;
    cenv.reserve(env_store.size() + 1);
    for (auto& e : env_store) cenv.push_back(e.data());
    cenv.push_back(nullptr);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      throw PoolError("worker program " + program + ": socketpair failed: " + errno_text(errno));
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) != 0) {
      int err = errno;
      close(sv[0]);
      close(sv[1]);
      throw PoolError("worker program " + program + ": pipe failed: " + errno_text(err));
    }
    int child_sock = above_child_fd(sv[1]);
    int err_w = above_child_fd(errpipe[1]);
    sock = sv[0];
    // The child's stdin is /dev/null, and with capture_output its stdout and stderr a pipe.
    int null_fd = above_child_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
    int out_w = -1;
    if (options.capture_output) {
      int outpipe[2];
      if (pipe2(outpipe, O_CLOEXEC) == 0) {
        out_fd = outpipe[0];
        out_w = above_child_fd(outpipe[1]);
      }
    }
    output.clear();
    const bool fds_ok =
        child_sock >= 0 && err_w >= 0 && null_fd >= 0 && (!options.capture_output || out_w >= 0);
    const int max_fd = static_cast<int>(std::clamp<long>(sysconf(_SC_OPEN_MAX), kChildFd + 1, 65536));
    pid_t parent = getpid();
    pid_t child = fds_ok ? fork() : -1;
    if (child == 0) {
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl ran
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      sigaction(SIGPIPE, &dfl, nullptr);
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      sigaction(SIGUSR1, &ignore, nullptr);
      if (dup2(null_fd, 0) < 0 || (out_w >= 0 && (dup2(out_w, 1) < 0 || dup2(out_w, 2) < 0)) ||
          dup2(child_sock, kChildFd) < 0) {
        int e = errno;
        (void)!write(err_w, &e, sizeof e);
        _exit(127);
      }
      // Nothing else of this process reaches the program: an fd that MPI or a library opened
      // without O_CLOEXEC (a PMIx socket, a shared-memory segment) would outlive the rank in it.
      if (close_range(kChildFd + 1, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = kChildFd + 1; fd < max_fd; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
      }
      execve(program.c_str(), cargv.data(), cenv.data());
      int e = errno;
      (void)!write(err_w, &e, sizeof e);
      _exit(127);
    }
    int fork_err = errno;
    if (child_sock >= 0) close(child_sock);
    if (err_w >= 0) close(err_w);
    if (null_fd >= 0) close(null_fd);
    if (out_w >= 0) close(out_w);
    if (child < 0) {
      close(errpipe[0]);
      close(sock);
      if (out_fd >= 0) close(out_fd);
      sock = out_fd = -1;
      throw PoolError("worker program " + program + ": fork failed: " + errno_text(fork_err));
    }
    setpgid(child, child);  // also in the parent, so kill(-pid) works whoever runs first
    pid = child;
    // EOF on the pipe: exec succeeded (the write end was close-on-exec).
    int exec_err = 0;
    ssize_t n;
    while ((n = read(errpipe[0], &exec_err, sizeof exec_err)) < 0 && errno == EINTR) {
    }
    close(errpipe[0]);
    if (n > 0) {
      reap(true);
      throw UsageError("worker program " + program + ": cannot execute: " + errno_text(exec_err));
    }
    pidfd = pidfd_open(pid);
    if (pidfd < 0) {
      int err = errno;
      reap(true);
      throw PoolError("worker program " + program + ": pidfd_open failed: " + errno_text(err));
    }
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
    if (out_fd >= 0) fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
  }
};

WorkerProgram::WorkerProgram() : s_(std::make_unique<State>()) {}
WorkerProgram::~WorkerProgram() { stop(); }

void WorkerProgram::start(const std::vector<std::string>& argv, std::string_view init_data) {
  WorkerProgramOptions o;
  o.argv = argv;
  o.init_data = std::string(init_data);
  start(o);
}

void WorkerProgram::start(const WorkerProgramOptions& options) {
  stop();
  s_->options = options;
  s_->spawn();
  auto deadline = Clock::now() + options.start_timeout;
  s_->send_frame(kInit, {}, s_->options.init_data, deadline, true, "start");
  std::string payload;
  if (s_->read_frame(payload, deadline, true, "start") != kReady)
    s_->fail(WorkerProgramError::Reason::garbage, "wrote garbage during start: RESULT before READY");
}

std::string WorkerProgram::call(std::uint64_t index, std::string_view element,
                                const std::function<bool()>& cancel) {
  if (s_->pid <= 0) throw UsageError("worker program: call(" + std::to_string(index) + ") while not running");
  s_->cancel = &cancel;
  struct Forget {
    State& s;
    ~Forget() { s.cancel = nullptr; }
  } forget{*s_};
  std::string during = "task " + std::to_string(index);
  auto deadline = s_->options.task_timeout.count() > 0 ? Clock::now() + s_->options.task_timeout
                                                       : Clock::time_point::max();
  std::string head;
  put_u64(head, index);
  s_->send_frame(kTask, head, element, deadline, false, during);
  std::string payload;
  if (s_->read_frame(payload, deadline, false, during) != kResult)
    s_->fail(WorkerProgramError::Reason::garbage,
             "wrote garbage during " + during + ": READY instead of RESULT");
  Result result;
  try {
    result = decode_result(payload);
  } catch (const Garbage& e) {
    s_->fail(WorkerProgramError::Reason::garbage, "wrote garbage during " + during + ": " + e.what());
  }
  if (result.index != index)
    s_->fail(WorkerProgramError::Reason::garbage,
             "wrote garbage during " + during + ": RESULT for index " + std::to_string(result.index));
  if (!result.ok) throw TaskError({Failure{index, FailureKind::exception, std::string(result.body)}});
  return std::string(result.body);
}

void WorkerProgram::stop() noexcept {
  if (s_->pid <= 0) return;
  // BYE only if it fits in the socket buffer at once; a worker that does not read gets killed.
  std::string frame;
  put_u32(frame, 1);
  frame.push_back(static_cast<char>(kBye));
  (void)send(s_->sock, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  shutdown(s_->sock, SHUT_WR);
  s_->reap(false);
}

std::string WorkerProgram::take_output() {
  s_->read_output();
  std::string out = std::move(s_->output);
  s_->output.clear();
  if (out.size() > s_->options.output_tail) out.erase(0, out.size() - s_->options.output_tail);
  return out;
}

bool WorkerProgram::running() const { return s_->pid > 0; }
pid_t WorkerProgram::pid() const { return s_->pid; }

// ---------------------------------------------------------------------------------------------

struct WorkerProgramPool::State {
  WorkerProgramOptions options;
  std::vector<std::unique_ptr<WorkerProgram>> workers;
  std::vector<std::thread> threads;

  std::mutex map_mu;  // serializes map()
  mutable std::mutex mu;
  std::condition_variable cv;
  std::uint64_t generation = 0;
  bool quit = false;
  int started = 0;  // threads that finished their first start()
  int done = 0;     // threads done with the current generation
  std::exception_ptr start_error;
  std::vector<pid_t> pids;

  // The current map.
  const std::vector<std::string>* elements = nullptr;
  std::vector<std::string>* results = nullptr;
  std::atomic<std::uint64_t> next{0};
  std::vector<Failure> failures;  // under mu
  std::atomic<bool> fatal{false};
  std::string fatal_message;  // under mu; set once, when a replacement failed
  bool shut = false;

  void set_pid(std::size_t w) {
    std::lock_guard lock(mu);
    pids[w] = workers[w]->pid();
  }

  void fail_element(std::uint64_t i, FailureKind kind, std::string message) {
    std::lock_guard lock(mu);
    failures.push_back(Failure{i, kind, std::move(message)});
  }

  // Returns false when the worker could not be replaced (the map is then fatal).
  bool replace(std::size_t w, const std::string& after) {
    try {
      workers[w]->start(options);
      set_pid(w);
      return true;
    } catch (const std::exception& e) {
      set_pid(w);
      std::lock_guard lock(mu);
      if (!fatal.exchange(true))
        fatal_message =
            "worker " + std::to_string(w) + " could not be replaced after \"" + after + "\": " + e.what();
      return false;
    }
  }

  void run_element(std::size_t w, std::uint64_t i) {
    WorkerProgram& wp = *workers[w];
    for (int attempt = 0;; ++attempt) {
      try {
        (*results)[i] = wp.call(i, (*elements)[i]);
        return;
      } catch (const TaskError& e) {
        fail_element(i, FailureKind::exception, e.failures().front().message);
        return;
      } catch (const WorkerProgramError& e) {
        std::string what = e.what();
        bool timeout = e.reason() == WorkerProgramError::Reason::timeout;
        if (!replace(w, what)) return;
        if (timeout || attempt >= 1) {
          fail_element(i, timeout ? FailureKind::timeout : FailureKind::crash, what);
          return;
        }
      } catch (const std::exception& e) {
        // Not the worker's doing (out of memory, ...): stop the map rather than lose the thread.
        std::lock_guard lock(mu);
        if (!fatal.exchange(true)) fatal_message = "worker " + std::to_string(w) + ": " + e.what();
        return;
      }
    }
  }

  void thread_main(std::size_t w) {
    std::uint64_t seen = 0;
    {
      std::exception_ptr err;
      try {
        workers[w]->start(options);
      } catch (...) {
        err = std::current_exception();
      }
      std::lock_guard lock(mu);
      pids[w] = workers[w]->pid();
      if (err && !start_error) start_error = err;
      ++started;
    }
    cv.notify_all();
    for (;;) {
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return quit || generation != seen; });
        if (quit) break;
        seen = generation;
      }
      while (!fatal.load()) {
        std::uint64_t i = next.fetch_add(1);
        if (i >= elements->size()) break;
        run_element(w, i);
      }
      {
        std::lock_guard lock(mu);
        ++done;
      }
      cv.notify_all();
    }
    // Stopped here, in the thread that started it (PDEATHSIG follows this thread).
    workers[w]->stop();
    set_pid(w);
  }

  void shutdown() {
    {
      std::lock_guard lock(mu);
      quit = true;
      shut = true;
    }
    cv.notify_all();
    for (auto& t : threads)
      if (t.joinable()) t.join();
  }
};

WorkerProgramPool::WorkerProgramPool(WorkerProgramOptions options) : s_(std::make_unique<State>()) {
  if (options.n_workers < 1)
    throw UsageError("worker program pool: n_workers = " + std::to_string(options.n_workers) +
                     " (must be 1 or more)");
  if (options.argv.empty() || options.argv[0].empty()) throw UsageError("worker program pool: argv is empty");
  s_->options = std::move(options);
  auto n = static_cast<std::size_t>(s_->options.n_workers);
  s_->pids.assign(n, 0);
  for (std::size_t w = 0; w < n; ++w) s_->workers.push_back(std::make_unique<WorkerProgram>());
  for (std::size_t w = 0; w < n; ++w) s_->threads.emplace_back([this, w] { s_->thread_main(w); });
  std::exception_ptr err;
  {
    std::unique_lock lock(s_->mu);
    s_->cv.wait(lock, [&] { return s_->started == static_cast<int>(n); });
    err = s_->start_error;
  }
  if (err) {
    s_->shutdown();
    std::rethrow_exception(err);
  }
}

WorkerProgramPool::~WorkerProgramPool() { s_->shutdown(); }

std::vector<std::string> WorkerProgramPool::map(const std::vector<std::string>& elements) {
  std::lock_guard map_lock(s_->map_mu);
  {
    std::lock_guard lock(s_->mu);
    if (s_->shut)
      throw PoolError("worker program pool of " + s_->options.argv[0] +
                      " is shut down: " + s_->fatal_message);
  }
  std::vector<std::string> results(elements.size());
  {
    std::unique_lock lock(s_->mu);
    s_->elements = &elements;
    s_->results = &results;
    s_->next = 0;
    s_->failures.clear();
    s_->done = 0;
    ++s_->generation;
    s_->cv.notify_all();
    s_->cv.wait(lock, [&] { return s_->done == s_->options.n_workers; });
    s_->elements = nullptr;
    s_->results = nullptr;
  }
  if (s_->fatal.load()) {
    s_->shutdown();
    throw PoolError("worker program pool of " + s_->options.argv[0] + " shut down: " + s_->fatal_message);
  }
  if (!s_->failures.empty()) {
    std::vector<Failure> failures = std::move(s_->failures);
    std::sort(failures.begin(), failures.end(),
              [](const Failure& a, const Failure& b) { return a.index < b.index; });
    throw TaskError(std::move(failures));
  }
  return results;
}

int WorkerProgramPool::n_workers() const { return s_->options.n_workers; }

std::vector<pid_t> WorkerProgramPool::pids() const {
  std::lock_guard lock(s_->mu);
  return s_->pids;
}

// ---------------------------------------------------------------------------------------------

namespace worker_frame {

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint64_t get_le(const char* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::uint8_t take(std::string& inbuf, std::string& payload) {
  if (inbuf.size() < 5) return 0;
  auto len = static_cast<std::uint32_t>(get_le(inbuf.data(), 4));
  if (len == 0 || len > kMaxFrame)
    throw Garbage("frame length " + std::to_string(len) + (len == 0 ? "" : " over 1 GiB"));
  auto type = static_cast<std::uint8_t>(inbuf[4]);
  if (type != kReady && type != kResult) throw Garbage("unknown frame type " + std::to_string(type));
  if (inbuf.size() < 4 + static_cast<std::size_t>(len)) return 0;
  payload.assign(inbuf, 5, len - 1);
  inbuf.erase(0, 4 + static_cast<std::size_t>(len));
  return type;
}

Result decode_result(std::string_view payload) {
  if (payload.size() < 9) throw Garbage("RESULT of " + std::to_string(payload.size()) + " bytes");
  auto ok = static_cast<unsigned char>(payload[8]);
  if (ok > 1) throw Garbage("ok byte " + std::to_string(ok));
  return {get_le(payload.data(), 8), ok == 1, payload.substr(9)};
}

}  // namespace worker_frame

}  // namespace mpmux
