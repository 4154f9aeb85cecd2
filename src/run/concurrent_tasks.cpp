#include "run/concurrent_tasks.hpp"

#include <algorithm>
#include <csignal>
#include <unordered_map>

namespace mpmux::run {

namespace {
// A batch holds about this much work, judged from the durations seen so far: enough that
// handing it to a thread and back costs little per element, little enough that its elements
// stay in the caches and a drain or a deadline finds at most this much not started yet
// (bench/plugin: 1 ms batches ran 20-40% slower, 5 ms ones slower still).
constexpr std::int64_t kBatchWorkNs = 250'000;
}  // namespace

void ElementBatch::add(const WorkItem& item) {
  WorkItem copy = item;
  copy.bytes = {};
  items_.push_back(copy);
  bytes_.append(item.bytes);
  bytes_.push_back('\0');
  offsets_.push_back(bytes_.size());
}

void AttemptSink::put(std::uint64_t key, Attempt attempt, bool wake) {
  {
    std::lock_guard lock(mutex_);
    ended_.emplace_back(key, std::move(attempt));
    if (!wake) return;
    woken_ = true;
  }
  cv_.notify_one();
}

std::vector<std::pair<std::uint64_t, Attempt>>& AttemptSink::take(std::chrono::milliseconds wait) {
  taken_.clear();  // keeps its capacity: no allocation per batch
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, wait, [this] { return woken_; });
  woken_ = false;
  ended_.swap(taken_);
  return taken_;
}

bool killed_by_drain(Run& run, const Outcome& outcome) {
  const int sig = outcome.signal;
  return (sig == SIGUSR1 || sig == SIGTERM || sig == SIGINT) && run.stopping();
}

namespace {

// The batches in flight and what the loop knows of the tasks' durations.
class BatchesInFlight {
 public:
  explicit BatchesInFlight(std::size_t max_batch) : max_batch_(std::min(max_batch, ElementBatch::kMaxSize)) {}

  std::size_t size() const { return running_.size(); }
  bool empty() const { return running_.empty(); }

  // A new batch, sized to about kBatchWorkNs of work; one element until a duration is known.
  std::shared_ptr<ElementBatch> open() {
    auto batch = std::make_shared<ElementBatch>(next_id_++);
    running_.emplace(next_id_ - 1, Entry{batch, 0});
    return batch;
  }
  std::size_t batch_limit() const {
    if (mean_ns_ <= 0) return 1;
    return std::clamp<std::size_t>(static_cast<std::size_t>(kBatchWorkNs / mean_ns_), 1, max_batch_);
  }
  // The element an attempt belongs to; retires its batch with the last one.
  WorkItem settle(std::uint64_t key, const Attempt& attempt) {
    const auto it = running_.find(key >> ElementBatch::kKeyBits);
    const WorkItem item = it->second.batch->item(key & (ElementBatch::kMaxSize - 1));
    if (++it->second.ended == it->second.batch->size()) running_.erase(it);
    if (attempt.counts) {
      // A running mean that follows a change of pace within a few dozen elements.
      const std::int64_t d = std::max<std::int64_t>(1, attempt.outcome.t_end - attempt.outcome.t_start);
      mean_ns_ = mean_ns_ <= 0 ? d : mean_ns_ + (d - mean_ns_) / 16;
    }
    return item;
  }

 private:
  struct Entry {
    std::shared_ptr<ElementBatch> batch;
    std::size_t ended = 0;
  };
  std::size_t max_batch_;
  std::unordered_map<std::uint64_t, Entry> running_;
  std::uint64_t next_id_ = 0;
  std::int64_t mean_ns_ = 0;
};

}  // namespace

void run_concurrently(Run& run, ConcurrentTasks& tasks) {
  const auto sink = std::make_shared<AttemptSink>();
  BatchesInFlight batches(tasks.max_batch());
  const auto start = [&](const WorkItem& first) {
    auto batch = batches.open();
    batch->add(first);
    WorkItem item;
    const std::size_t limit = batches.batch_limit();
    while (batch->size() < limit && run.try_next(item)) batch->add(item);
    tasks.start(std::move(batch), sink);
  };
  WorkItem item;
  bool cancelled = false, stop_told = false;
  for (;;) {
    while (static_cast<int>(batches.size()) < tasks.slots() && run.try_next(item)) start(item);
    if (!stop_told && run.stopping()) {
      stop_told = true;
      tasks.stop_starting();
    }
    if (batches.empty()) {
      if (!run.next(item)) return;  // the pass ends with the other ranks
      start(item);                  // the first element of a pass of retries
      continue;
    }
    // Record whatever has ended; look for the end of a drain's grace in between.
    auto& ended = sink->take(std::chrono::milliseconds(20));
    for (auto& [key, attempt] : ended) {
      const WorkItem done = batches.settle(key, attempt);
      if (attempt.error) std::rethrow_exception(attempt.error);
      if (!attempt.stop_run.empty()) run.stop(attempt.stop_run);
      if (!attempt.counts || killed_by_drain(run, attempt.outcome)) continue;
      run.record(done, attempt.outcome);
    }
    if (ended.empty() && run.must_cancel() && !cancelled) {
      cancelled = true;
      if (!tasks.cancel()) return;  // left running, never recorded: pending for the next run
    }
  }
}

}  // namespace mpmux::run
