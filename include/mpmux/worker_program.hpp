// Worker programs: external executables, in any language, fed elements over a Unix socket.
//
// Protocol (plugins/workers/README.md): frames [u32 length LE][u8 type][payload] on a
// SOCK_STREAM socket the program gets as fd 3 (env MPMUX_WORKER_FD=3). length counts type and
// payload and is at most 1 GiB. Parent -> worker: INIT (1, init data; once, first), TASK (2,
// [u64 index LE][element]), BYE (3). Worker -> parent: READY (16, after INIT), RESULT (17,
// [u64 index LE][u8 ok][result, or the error text when ok == 0]).
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/export.hpp"
#include "mpmux/pool_error.hpp"

namespace mpmux {

/// A worker program failed as a process: it exited before READY, wrote garbage on the socket,
/// died during a task, ran past a timeout or was cancelled. The process is gone (killed and
/// reaped) when this is thrown. Errors of one element (RESULT with ok == 0) are TaskError instead.
class MPMUX_EXPORT WorkerProgramError : public PoolError {
 public:
  enum class Reason : std::uint8_t { exited_at_start, garbage, died, timeout, cancelled };
  WorkerProgramError(Reason reason, const std::string& message, int wait_status = -1)
      : PoolError(message), reason_(reason), wait_status_(wait_status) {}
  Reason reason() const { return reason_; }
  /// The process's status from waitpid (SIGKILL when mpmux killed it), or -1 when unknown.
  int wait_status() const { return wait_status_; }

 private:
  Reason reason_;
  int wait_status_;
};

struct WorkerProgramOptions {
  /// argv[0] is the program: a path, or a name looked up in PATH.
  std::vector<std::string> argv;
  /// Sent once, in INIT, to every process started (replacements too).
  std::string init_data;
  /// WorkerProgramPool only: processes to run (1 or more).
  int n_workers = 1;
  /// From spawning to READY.
  std::chrono::milliseconds start_timeout{10'000};
  /// Per element; 0 waits for ever. A worker past it is killed and the element fails (timeout).
  std::chrono::milliseconds task_timeout{0};
  /// After BYE, how long a worker may take to exit before its process group is killed.
  std::chrono::milliseconds stop_timeout{1'000};
  /// The program's stdout and stderr go to a pipe that mpmux reads (take_output) instead of
  /// being inherited. Its stdin is /dev/null either way.
  bool capture_output = false;
  /// Of the captured output, the last this many bytes are kept.
  std::size_t output_tail = 4096;
};

/// One external worker process. Not thread-safe: one caller at a time.
///
/// The child runs in its own process group and gets PR_SET_PDEATHSIG(SIGKILL), so it dies with
/// the *thread* that started it: start it from a thread that outlives it. It inherits no fd of
/// this process but 0-2 (stdin from /dev/null) and the socket, and SIGUSR1 is ignored in it
/// (Slurm signals every process of a step; SIGUSR1 is mpmux's drain signal).
class MPMUX_EXPORT WorkerProgram {
 public:
  WorkerProgram();
  ~WorkerProgram();  ///< stop()
  WorkerProgram(const WorkerProgram&) = delete;
  WorkerProgram& operator=(const WorkerProgram&) = delete;

  /// Spawns the program, sends INIT and waits for READY. Throws UsageError naming the program
  /// when it cannot be executed (missing, not executable: the errno text), WorkerProgramError
  /// when it exits or misbehaves before READY. Stops a running process first.
  void start(const WorkerProgramOptions& options);
  void start(const std::vector<std::string>& argv, std::string_view init_data);

  /// Runs one element and returns its result. Throws TaskError (one Failure, exception) when
  /// the worker answered ok == 0 (the process stays usable), WorkerProgramError when the process
  /// failed (it is then stopped; start() again to replace it), UsageError when not running.
  /// `cancel` is asked at least every 100 ms: when it says true, the process group is killed and
  /// WorkerProgramError (cancelled) thrown.
  std::string call(std::uint64_t index, std::string_view element, const std::function<bool()>& cancel = {});

  /// With capture_output: what the program wrote since the last take_output (its last
  /// output_tail bytes), also after it died. Empty otherwise.
  std::string take_output();

  /// Sends BYE, waits up to stop_timeout, kills the process group and reaps. No-op when stopped.
  void stop() noexcept;

  bool running() const;
  pid_t pid() const;  ///< 0 when not running

 private:
  struct State;
  std::unique_ptr<State> s_;
};

/// n_workers processes of one program, each driven by a thread of this pool that lives as long
/// as the pool (so PDEATHSIG follows the pool, not one map call).
class MPMUX_EXPORT WorkerProgramPool {
 public:
  /// Starts every worker. Throws UsageError (n_workers < 1, empty argv, program cannot be
  /// executed) or WorkerProgramError; no process is left behind when it throws.
  explicit WorkerProgramPool(WorkerProgramOptions options);
  ~WorkerProgramPool();  ///< stops and reaps every worker
  WorkerProgramPool(const WorkerProgramPool&) = delete;
  WorkerProgramPool& operator=(const WorkerProgramPool&) = delete;

  /// Results in input order. A worker that dies (or writes garbage) during an element is
  /// replaced and the element retried once; a second death reports it as crash, a timeout as
  /// timeout, an ok == 0 answer as exception. Elements that failed are listed, sorted by
  /// index, in one TaskError thrown after all others ran; the pool stays usable. When a
  /// replacement cannot start, the pool shuts down (every worker reaped) and this throws
  /// PoolError, as does every later call. Calls are serialized.
  std::vector<std::string> map(const std::vector<std::string>& elements);

  int n_workers() const;
  std::vector<pid_t> pids() const;  ///< current process of each worker (0: none)

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace mpmux
