// --plugin tasks in a run: K threads (--threads K), each with its own instance of the plugin,
// running batches of elements handed over by the claiming thread.
#pragma once
#include <memory>
#include <string>

#include "mpmux/thread_pool.hpp"
#include "run/concurrent_tasks.hpp"
#include "run/plugin.hpp"

namespace mpmux::run {

/// --plugin with --threads K: a pool of K threads, each with its own instance of the plugin
/// (init when the pool starts, finalize when it ends). Short elements go to a thread in batches
/// (run_concurrently sizes them), so that a handoff between threads is not paid per element.
class PluginTasks final : public ConcurrentTasks {
 public:
  /// Starts the threads, each calling the plugin's init. Throws UsageError with the plugin's
  /// message when init fails in any of them (the others are finalized first).
  PluginTasks(std::shared_ptr<const TaskPlugin> plugin, const std::string& arg, int rank, int threads);
  /// Runs finalize in each thread. With an element still running (a drain ran out of grace),
  /// leaves the threads and the library alone instead: a thread cannot be stopped, and joining
  /// it would wait for the element. They end with the process.
  ~PluginTasks() override;
  PluginTasks(const PluginTasks&) = delete;
  PluginTasks& operator=(const PluginTasks&) = delete;

  int slots() const override { return threads_; }
  std::size_t max_batch() const override { return 1024; }
  void start(std::shared_ptr<const ElementBatch> batch, std::shared_ptr<AttemptSink> sink) override;
  void stop_starting() override;
  bool cancel() override { return false; }

 private:
  struct Workers;  // what the threads use; every running batch keeps it alive
  std::shared_ptr<Workers> workers_;
  int threads_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace mpmux::run
