// Implementation detail of the pools (not a public interface): what the thread engine and the
// process engine have in common - their options, their size, and what their workers report.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "mpmux/export.hpp"
#include "mpmux/pool_options.hpp"

namespace mpmux::pool_detail {

/// What the workers of a pool report, under one lock: per-slot insights, the slowest elements,
/// worker_exit values and the pool's first error. Thread-safe.
class MPMUX_EXPORT WorkerReports {
 public:
  /// Room for `cap` worker slots, so that growing never moves a slot.
  void reserve(int cap);
  /// Adds the insights of slots [from, to) (ids from..to-1).
  void open_slots(int from, int to);
  /// Keeps the first `n` slots (ids stay dense when a start failed).
  void keep_slots(int n);
  /// Runs f(WorkerInsights&) of slot `id` under the lock.
  template <class F>
  void update(int id, F&& f) {
    std::lock_guard lock(mutex_);
    f(insights_[static_cast<std::size_t>(id)]);
  }
  /// Adds `slow` to the slowest elements seen (the 5 slowest are kept).
  void add_slowest(const std::vector<SlowTask>& slow);
  void add_exit_value(ExitValue value);
  /// Records `what` as the pool's error unless there is one already.
  void fail(const std::string& what);
  /// The first error, "" when none.
  std::string error() const;
  /// Throws PoolError with the first error, if any.
  void check() const;
  Insights insights() const;
  std::vector<ExitValue> exit_values() const;

 private:
  mutable std::mutex mutex_;
  std::vector<WorkerInsights> insights_;
  std::vector<SlowTask> slowest_;
  std::vector<ExitValue> exit_values_;
  std::string error_;
};

/// The part of ThreadEngine and ProcessEngine that is the same: options validated once, the
/// number of workers now and the cap, and the reports. An engine adds post(), grow_to(),
/// queued() and stop().
class MPMUX_EXPORT PoolEngine {
 public:
  PoolEngine(const PoolEngine&) = delete;
  PoolEngine& operator=(const PoolEngine&) = delete;

  /// Workers now (n_jobs, plus those added by grow_to).
  int n_jobs() const { return n_.load(std::memory_order_relaxed); }
  /// PoolOptions::max_n_jobs, or n_jobs when it is not set.
  int max_n_jobs() const { return cap_; }
  const PoolOptions& options() const { return options_; }
  /// True when PoolOptions::worker_requestors binds some worker.
  bool has_affinity() const { return has_affinity_; }
  std::vector<ExitValue> exit_values() const { return reports_.exit_values(); }
  Insights insights() const { return reports_.insights(); }
  /// Throws PoolError when a worker failed to start or broke the pool.
  void check_health() const { reports_.check(); }

 protected:
  /// Validates `options` (UsageError naming `pool` and the option) and keeps them; n_jobs()
  /// stays 0 until the engine's workers are ready.
  PoolEngine(PoolOptions options, const char* pool);
  ~PoolEngine() = default;

  /// The workers the options ask for at the start.
  int initial_jobs() const { return initial_jobs_; }
  void set_n_jobs(int n) { n_.store(n); }
  WorkerReports& reports() { return reports_; }

 private:
  PoolOptions options_;
  int initial_jobs_ = 0;
  int cap_ = 0;
  bool has_affinity_ = false;
  std::atomic<int> n_{0};
  WorkerReports reports_;
};

}  // namespace mpmux::pool_detail
