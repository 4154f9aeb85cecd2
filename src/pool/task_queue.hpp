// The queue between a pool's callers and its workers, with requestor affinity. Not templated and
// holding type-erased items, so that both pool engines (the ThreadPool's workers and the
// ProcessPool's event loop) schedule by the same rule.
#pragma once
#include <any>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

namespace mpmux::pool_detail {

/// Tasks waiting for a worker, each tagged with the requestor that submitted it (-1: none).
///
/// Without bindings it is a plain FIFO. With bindings (worker i prefers requestor
/// `worker_requestors[i]`, -1: unbound), a free worker bound to requestor r takes
///   1. the oldest task of all, when it has waited longer than `patience` (nobody starves);
///   2. else the oldest task of r;
///   3. else the oldest task of all (an idle worker takes others' work).
/// An unbound worker takes the oldest task of all.
///
/// Not thread-safe: the engine calls it under its own lock. The overloads taking `now` exist so
/// that the rule can be tested without a clock.
class TaskQueue {
 public:
  using Clock = std::chrono::steady_clock;

  TaskQueue() = default;
  TaskQueue(const std::vector<int>& worker_requestors, Clock::duration patience);

  void push(std::any item, int requestor);
  void push(std::any item, int requestor, Clock::time_point now);

  /// Moves the task `worker` should run next into `out`; false when nothing is queued.
  bool pop(int worker, std::any& out);
  bool pop(int worker, std::any& out, Clock::time_point now);

  /// Rules 1 and 2 only: the task a bound `worker` takes without taking others' work; false for
  /// an unbound worker, or when nothing of its requestor waits and nothing waited too long. An
  /// engine that hands out tasks to several free workers at once asks each of them this first,
  /// so that a task goes to a free worker bound to its requestor rather than to an idle other.
  bool pop_preferred(int worker, std::any& out);
  bool pop_preferred(int worker, std::any& out, Clock::time_point now);

  /// Removes the tasks for which `drop` is true and passes each to `removed`.
  void remove_if(const std::function<bool(const std::any&)>& drop,
                 const std::function<void(std::any&&)>& removed);

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  /// True when some worker is bound to a requestor.
  bool has_affinity() const { return !lane_of_worker_.empty(); }
  /// The requestor worker `worker` prefers; -1 when unbound (or unknown).
  int binding(int worker) const;

 private:
  struct Entry {
    std::any item;
    std::uint64_t seq;
    Clock::time_point queued;
  };
  // One lane per requestor some worker is bound to, plus lane 0 for everything else: tasks no
  // worker prefers are only ever taken as "the oldest of all", so one FIFO serves them all.
  std::size_t lane_for_requestor(int requestor) const;
  std::size_t oldest_lane() const;
  bool take(std::size_t lane, std::any& out);
  std::size_t own_lane(int worker) const;

  std::vector<int> bindings_;                // per worker, as given
  std::vector<std::size_t> lane_of_worker_;  // per worker; 0 when unbound; empty without affinity
  std::vector<int> lane_requestor_;          // per lane; lane 0 holds -1
  std::vector<std::deque<Entry>> lanes_ = std::vector<std::deque<Entry>>(1);
  Clock::duration patience_{};
  std::uint64_t next_seq_ = 0;
  std::size_t size_ = 0;
};

}  // namespace mpmux::pool_detail
