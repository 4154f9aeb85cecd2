// --worker tasks in a run: K slots (--procs K), each a thread with its own persistent worker
// program (mpmux/worker_program.hpp), started once and fed one element after the other.
#pragma once
#include <memory>
#include <string>

#include "mpmux/runner.hpp"
#include "mpmux/thread_pool.hpp"
#include "run/concurrent_tasks.hpp"

namespace mpmux::run {

/// The INIT data every process of a slot gets: a JSON object with the session (mux_id), the
/// rank, the slot (0..slots-1), the slots of the rank and the --worker-init text (init).
std::string worker_init_data(const std::string& mux_id, int rank, int slot, int slots,
                             const std::string& init);

/// --worker with --procs K: a pool of K threads, each starting its worker program (and every
/// replacement of it, so that PR_SET_PDEATHSIG follows a thread that lives as long as the pool).
/// An element gets one attempt per call: a RESULT ok is done with its bytes as the result, a
/// RESULT not ok a failure with the error text; a process that dies, garbles the socket or runs
/// past the timeout is killed, its element fails with the reason and its status, and a new
/// process is started for the next element. A slot whose new process fails to start
/// kStartTries times in a row stops the run.
class WorkerTasks final : public ConcurrentTasks {
 public:
  static constexpr int kStartTries = 3;

  /// Starts the K processes, each answering INIT, in its slot's thread. Throws UsageError
  /// naming --worker when one cannot be started (not found, not executable, exits or misbehaves
  /// before READY, no READY within the start timeout), with the last line it wrote; no process
  /// is left then.
  WorkerTasks(const WorkerTask& task, const std::string& mux_id, int rank);
  /// Kills the running processes (elements still running are void), then says BYE to the others
  /// and reaps every process, each in its slot's thread.
  ~WorkerTasks() override;
  WorkerTasks(const WorkerTasks&) = delete;
  WorkerTasks& operator=(const WorkerTasks&) = delete;

  int slots() const override { return procs_; }
  std::size_t max_batch() const override { return 1024; }
  void start(std::shared_ptr<const ElementBatch> batch, std::shared_ptr<AttemptSink> sink) override;
  void stop_starting() override;
  bool cancel() override;

 private:
  struct Slots;  // what the threads use
  std::shared_ptr<Slots> slots_;
  int procs_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace mpmux::run
