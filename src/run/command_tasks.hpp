// --exec tasks in a run: one command at a time on the claiming thread, or K at once (--procs K)
// from a pool of threads that only spawn commands and wait for them.
#pragma once
#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/command.hpp"
#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "mpmux/run.hpp"
#include "mpmux/thread_pool.hpp"
#include "run/concurrent_tasks.hpp"

namespace mpmux::run {

/// The fields an --exec template may use: the table's columns, else the first element's keys.
std::vector<std::string> element_fields(const ElementSetInfo& info, std::string_view first);

/// An element that lacks a field the --exec template uses: a failed attempt, with the reason.
Outcome template_failure(const UsageError& e);

/// Runs the command of each element this rank gets, one after the other, and records it.
void run_commands_in_turn(Run& run, const CommandTemplate& command, const CommandLimits& limits);

/// --exec with --procs K: a pool of K threads that only spawn commands and wait for them. A
/// batch is one element: a command costs far more than handing it to a thread.
class CommandTasks final : public ConcurrentTasks {
 public:
  CommandTasks(const CommandTemplate& command, const CommandLimits& limits, int procs);
  int slots() const override { return procs_; }
  std::size_t max_batch() const override { return 1; }
  void start(std::shared_ptr<const ElementBatch> batch, std::shared_ptr<AttemptSink> sink) override;
  void stop_starting() override {}
  bool cancel() override;

 private:
  const CommandTemplate& command_;
  CommandLimits limits_;
  int procs_;
  std::atomic<bool> cancel_{false};
  ThreadPool pool_;  // last: its threads are joined before the members they use go
};

}  // namespace mpmux::run
