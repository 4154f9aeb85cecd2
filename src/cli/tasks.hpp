// The tasks a rank runs several at once, commands (--exec with --procs K) and in-process plugin
// tasks (--plugin with --threads K), and the one loop that claims, starts and records them.
#pragma once
#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <string>

#include "mpmux/command.hpp"
#include "mpmux/error.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/run.hpp"
#include "mpmux/thread_pool.hpp"
#include "run/plugin.hpp"

namespace mpmux::cli {

/// How one attempt at an element ended.
struct Attempt {
  Outcome outcome;
  bool counts = true;        // false: cut short by a drain; void, the element stays pending
  std::exception_ptr error;  // the task could not be run at all: ends the run
};

/// A kind of task that run_concurrently feeds.
class ConcurrentTasks {
 public:
  virtual ~ConcurrentTasks() = default;
  /// Elements run at once.
  virtual int slots() const = 0;
  /// Starts an attempt at `item` (its bytes are valid during this call only). `ended` is called
  /// exactly once, from any thread, possibly before start returns.
  virtual void start(const WorkItem& item, std::function<void(Attempt)> ended) = 0;
  /// The grace of a drain is over. true: the running attempts were told to end now and will
  /// report void attempts (commands are killed). false: they cannot be stopped (in-process
  /// tasks); the loop then leaves them running, unrecorded, so that they stay pending.
  virtual bool cancel() = 0;
};

/// Claims elements from `run` on this thread, keeps up to tasks.slots() attempts running and
/// records each as it ends. A pass ends only after every attempt of it was recorded, so retries
/// and the end of the run see all outcomes. Returns when the run has nothing more for this rank,
/// or at once when a drain's grace is over and the running attempts cannot be stopped.
void run_concurrently(Run& run, ConcurrentTasks& tasks);

/// The drain signal itself can reach a command spawned a moment before (still in our process
/// group): such an attempt is void, not a failure of the task.
bool killed_by_drain(Run& run, const Outcome& outcome);

/// An element that lacks a field the --exec template uses: a failed attempt, with the reason.
Outcome template_failure(const UsageError& e);

/// --exec with --procs K: a pool of K threads that only spawn commands and wait for them.
class CommandTasks final : public ConcurrentTasks {
 public:
  CommandTasks(const CommandTemplate& command, const CommandLimits& limits, int procs);
  int slots() const override { return procs_; }
  void start(const WorkItem& item, std::function<void(Attempt)> ended) override;
  bool cancel() override;

 private:
  const CommandTemplate& command_;
  CommandLimits limits_;
  int procs_;
  std::atomic<bool> cancel_{false};
  ThreadPool pool_;  // last: its threads are joined before the members they use go
};

/// --plugin with --threads K: a pool of K threads, each with its own instance of the plugin
/// (init when the pool starts, finalize when it ends).
class PluginTasks final : public ConcurrentTasks {
 public:
  /// Starts the threads, each calling the plugin's init. Throws UsageError with the plugin's
  /// message when init fails in any of them (the others are finalized first).
  PluginTasks(std::shared_ptr<const run::TaskPlugin> plugin, const std::string& arg, int rank, int threads);
  /// Runs finalize in each thread. With an element still running (a drain ran out of grace),
  /// leaves the threads and the library alone instead: a thread cannot be stopped, and joining
  /// it would wait for the element. They end with the process.
  ~PluginTasks() override;
  PluginTasks(const PluginTasks&) = delete;
  PluginTasks& operator=(const PluginTasks&) = delete;

  int slots() const override { return threads_; }
  void start(const WorkItem& item, std::function<void(Attempt)> ended) override;
  bool cancel() override { return false; }

 private:
  struct Workers;  // what the threads use; every running element keeps it alive
  std::shared_ptr<Workers> workers_;
  int threads_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace mpmux::cli
