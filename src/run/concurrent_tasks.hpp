// Ranks that run several elements at once (--exec with --procs K, --plugin with --threads K):
// the kinds of task behind one interface, the batches they are handed, and the one loop that
// claims, starts and records them.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mpmux/journal.hpp"
#include "mpmux/run.hpp"

namespace mpmux::run {

/// How one attempt at an element ended.
struct Attempt {
  Outcome outcome;
  bool counts = true;        // false: cut short by a drain, or never started; void, stays pending
  std::exception_ptr error;  // the task could not be run at all: ends the run
  std::string stop_run;      // the tasks cannot go on: the run stops (Run::stop) with this reason
};

/// Elements handed to one slot together, to run one after the other. Their bytes are copied
/// (each followed by a NUL, as the plugin ABI passes them), since a claim's are valid only
/// until the next claim.
class ElementBatch {
 public:
  explicit ElementBatch(std::uint64_t id) : id_(id) {}
  void add(const WorkItem& item);
  std::size_t size() const { return items_.size(); }
  /// The k-th element; its `bytes` are empty: see bytes(k).
  const WorkItem& item(std::size_t k) const { return items_[k]; }
  /// The k-th element's bytes; data()[size()] is a NUL.
  std::string_view bytes(std::size_t k) const {
    return std::string_view(bytes_).substr(offsets_[k], offsets_[k + 1] - offsets_[k] - 1);
  }
  /// What names the k-th element's attempt when it is reported (AttemptSink::put).
  std::uint64_t key(std::size_t k) const { return id_ << kKeyBits | k; }

  static constexpr int kKeyBits = 16;
  static constexpr std::size_t kMaxSize = std::size_t{1} << kKeyBits;

 private:
  std::uint64_t id_;
  std::vector<WorkItem> items_;
  std::string bytes_;
  std::vector<std::size_t> offsets_{0};
};

/// Where tasks report the attempts that ended, from any thread; emptied by the claiming thread.
/// Shared with the tasks, which may outlive the loop (an in-process element left running by a
/// drain).
class AttemptSink {
 public:
  /// `wake`: tell the claiming thread now. Otherwise it finds the attempt at its next wake-up,
  /// within 20 ms: reporting a batch of tiny elements then costs one wake-up, not one each.
  void put(std::uint64_t key, Attempt attempt, bool wake);
  /// What ended so far, after waiting up to `wait` for a wake-up. Valid until the next take;
  /// call it from one thread only.
  std::vector<std::pair<std::uint64_t, Attempt>>& take(std::chrono::milliseconds wait);

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::pair<std::uint64_t, Attempt>> ended_;
  std::vector<std::pair<std::uint64_t, Attempt>> taken_;  // the claiming thread's
  bool woken_ = false;
};

/// A kind of task that run_concurrently feeds.
class ConcurrentTasks {
 public:
  virtual ~ConcurrentTasks() = default;
  /// Batches run at once.
  virtual int slots() const = 0;
  /// The most elements one batch may hold; the loop sizes batches to about a quarter of a
  /// millisecond of work from the durations it has seen, and starts with one.
  virtual std::size_t max_batch() const = 0;
  /// Starts attempts at the batch's elements, one after the other in one slot, and reports
  /// each exactly once to `sink` (from any thread, possibly before start returns), the last
  /// one with wake set.
  virtual void start(std::shared_ptr<const ElementBatch> batch, std::shared_ptr<AttemptSink> sink) = 0;
  /// The run is stopping: elements of a batch that have not started yet are reported void.
  virtual void stop_starting() = 0;
  /// The grace of a drain is over. true: the running attempts were told to end now and will
  /// report void attempts (commands are killed). false: they cannot be stopped (in-process
  /// tasks); the loop then leaves them running, unrecorded, so that they stay pending.
  virtual bool cancel() = 0;
};

/// Claims elements from `run` on this thread, keeps up to tasks.slots() batches running and
/// records each attempt as it ends. A pass ends only after every attempt of it was recorded, so
/// retries and the end of the run see all outcomes. Returns when the run has nothing more for
/// this rank, or at once when a drain's grace is over and the running attempts cannot be stopped.
void run_concurrently(Run& run, ConcurrentTasks& tasks);

/// The drain signal itself can reach a command spawned a moment before (still in our process
/// group): such an attempt is void, not a failure of the task.
bool killed_by_drain(Run& run, const Outcome& outcome);

}  // namespace mpmux::run
