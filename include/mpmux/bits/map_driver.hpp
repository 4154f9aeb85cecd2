// Implementation detail of the pools' map family (not a public interface): calling a task,
// reading the input in the caller's thread, cutting it into chunks, bounding what is in flight,
// putting results back in order, errors, progress and growth. A backend runs the chunks.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpmux/pool_error.hpp"
#include "mpmux/pool_options.hpp"

namespace mpmux {

namespace pool_detail {

/// Calls a task with the worker context when it asks for one (first parameter Worker&).
template <class F, class Arg>
decltype(auto) call_task(F& f, Worker& w, Arg&& arg) {
  if constexpr (std::is_invocable_v<F&, Worker&, Arg&&>) {
    return std::invoke(f, w, std::forward<Arg>(arg));
  } else {
    static_assert(std::is_invocable_v<F&, Arg&&>, "a pool task takes (const In&) or (Worker&, const In&)");
    return std::invoke(f, std::forward<Arg>(arg));
  }
}

template <class F, class In>
using TaskResult =
    std::decay_t<decltype(call_task(std::declval<F&>(), std::declval<Worker&>(), std::declval<In&>()))>;

/// Stands in for void results so that apply() of a void function has something to carry.
struct Unit {
  template <class A>
  void serialize(A&, unsigned) {}
};

/// The same call with a void result mapped to Unit.
template <class F, class Arg>
auto call_task_value(F& f, Worker& w, Arg&& arg) {
  using R = decltype(call_task(f, w, std::forward<Arg>(arg)));
  if constexpr (std::is_void_v<R>) {
    call_task(f, w, std::forward<Arg>(arg));
    return Unit{};
  } else {
    return call_task(f, w, std::forward<Arg>(arg));
  }
}

/// Calls f(args...) or f(w, args...) with a tuple of arguments, void mapped to Unit.
template <class F, class Tuple>
auto apply_task(F& f, Worker& w, Tuple& args) {
  return std::apply(
      [&](auto&... a) {
        if constexpr (std::is_invocable_v<F&, Worker&, decltype(a)...>) {
          if constexpr (std::is_void_v<std::invoke_result_t<F&, Worker&, decltype(a)...>>) {
            std::invoke(f, w, a...);
            return Unit{};
          } else {
            return std::invoke(f, w, a...);
          }
        } else {
          if constexpr (std::is_void_v<std::invoke_result_t<F&, decltype(a)...>>) {
            std::invoke(f, a...);
            return Unit{};
          } else {
            return std::invoke(f, a...);
          }
        }
      },
      args);
}

/// What apply_task returns (void mapped to Unit), and what apply's future holds (void again).
template <class F, class Tuple>
using ApplyValue = decltype(apply_task(std::declval<F&>(), std::declval<Worker&>(), std::declval<Tuple&>()));
template <class F, class Tuple>
using ApplyResult =
    std::conditional_t<std::is_same_v<ApplyValue<F, Tuple>, Unit>, void, ApplyValue<F, Tuple>>;

inline std::string exception_message(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

/// Runs f(args...) (or f(w, args...)) and puts its value, or a TaskError with index 0, into
/// `promise`: an apply on any worker, or in the caller when the pool runs serially.
template <class R, class F, class Tuple>
void fulfil(std::promise<R>& promise, F& f, Worker& w, Tuple& args) {
  try {
    if constexpr (std::is_void_v<R>) {
      apply_task(f, w, args);
      promise.set_value();
    } else {
      promise.set_value(apply_task(f, w, args));
    }
  } catch (...) {
    promise.set_exception(std::make_exception_ptr(
        TaskError({{0, FailureKind::exception, exception_message(std::current_exception())}})));
  }
}

/// The results of one chunk: elements first..first+values.size()-1; a failed element has no
/// value and one entry in failures.
template <class Out>
struct Finished {
  std::uint64_t first = 0;
  std::uint64_t count = 0;
  bool skipped = false;  // cancelled before it ran
  std::vector<std::optional<Out>> values;
  std::vector<Failure> failures;
};

/// Where a backend puts finished chunks for the caller's thread.
template <class Done>
struct Sink {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Done> done;
  std::atomic<bool> cancelled{false};

  void put(Done&& d) {
    {
      std::lock_guard lock(mutex);
      done.push_back(std::move(d));
    }
    cv.notify_one();
  }
};

/// Keeps the `keep` slowest tasks of a list, slowest first.
MPMUX_EXPORT void keep_slowest(std::vector<SlowTask>& tasks, std::size_t keep = 5);

/// Validates the options of one call; throws UsageError naming the option.
MPMUX_EXPORT void validate_map_options(const MapOptions& options);

/// Throws UsageError naming `what` unless `requestor` is -1 (none) or an id >= 0.
MPMUX_EXPORT void validate_requestor(int requestor, const char* what);

/// Guided chunk size for the next chunk.
inline std::uint64_t next_chunk_size(const MapOptions& o, int n_jobs, std::uint64_t produced,
                                     std::uint64_t total) {
  if (o.chunk_size) return *o.chunk_size;
  std::uint64_t workers2 = 2 * static_cast<std::uint64_t>(n_jobs);
  std::uint64_t c;
  if (total > 0) {
    std::uint64_t remaining = total > produced ? total - produced : 1;
    c = (remaining + workers2 - 1) / workers2;
  } else {
    // Unknown length: assume as much is left as was read so far, so chunks grow geometrically.
    c = produced / workers2;
  }
  return std::clamp<std::uint64_t>(c, 1, std::max<std::uint64_t>(o.max_chunk_size, 1));
}

/// Where a call stands `start` + now: rate and ETA from the elements done so far.
inline Progress progress_at(std::uint64_t done, std::uint64_t failed, std::uint64_t total,
                            std::chrono::steady_clock::time_point start, bool finished) {
  Progress p;
  p.done = done;
  p.failed = failed;
  p.total = total;
  p.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  p.rate = p.elapsed_s > 0 ? static_cast<double>(done) / p.elapsed_s : 0;
  if (total > 0 && p.rate > 0) p.eta_s = static_cast<double>(total - std::min(total, done)) / p.rate;
  p.finished = finished;
  return p;
}

/// The lazy source of results behind imap/imap_unordered (and map).
template <class Out>
class ResultSource {
 public:
  virtual ~ResultSource() = default;
  /// The next result, or nullopt when all were delivered. Throws TaskError per OnError.
  virtual std::optional<Out> next() = 0;
};

/// A backend that can add workers (MapOptions::target_duration): `int max_n_jobs()` is the cap,
/// `int grow_to(int n)` starts workers until there are min(n, cap), waits until they are ready
/// and returns how many there are now.
template <class Backend>
concept GrowableBackend = requires(Backend& b, int n) {
  { b.max_n_jobs() } -> std::convertible_to<int>;
  { b.grow_to(n) } -> std::convertible_to<int>;
};

/// Backend contract:
///   using In, Out, Done;  int n_jobs();
///   void submit(std::shared_ptr<Sink<Done>>, std::uint64_t first, std::vector<In>&& items);
///   Finished<Out> decode(Done&&);  void check_health();  (throws PoolError if workers broke)
/// Optional: GrowableBackend; without it a late map is reported at the cap of n_jobs.
template <class Backend, class View>
class MapDriver final : public ResultSource<typename Backend::Out> {
 public:
  using In = typename Backend::In;
  using Out = typename Backend::Out;
  using Done = typename Backend::Done;
  using Clock = std::chrono::steady_clock;

  MapDriver(Backend backend, View view, MapOptions options, bool ordered)
      : backend_(std::move(backend)),
        view_(std::move(view)),
        options_(std::move(options)),
        ordered_(ordered),
        it_(std::ranges::begin(view_)),
        sink_(std::make_shared<Sink<Done>>()),
        start_(Clock::now()),
        last_progress_(start_),
        window_start_(start_) {
    validate_map_options(options_);
    if constexpr (std::ranges::sized_range<View>) {
      total_ = static_cast<std::uint64_t>(std::ranges::size(view_));
    } else if (options_.iterable_len) {
      total_ = *options_.iterable_len;
    }
    max_active_ = options_.max_tasks_active.value_or(3 * static_cast<std::uint64_t>(backend_.n_jobs()));
  }

  ~MapDriver() override { drain(); }
  MapDriver(const MapDriver&) = delete;
  MapDriver& operator=(const MapDriver&) = delete;

  std::optional<Out> next() override {
    for (;;) {
      if (failed_) return std::nullopt;
      if (auto v = pop_ready()) return v;
      feed();
      if (exhausted_ && in_flight_ == 0 && ready_.empty() && reorder_.empty()) {
        report(true);
        if (!failures_.empty()) {
          failed_ = true;
          std::sort(failures_.begin(), failures_.end(),
                    [](const Failure& a, const Failure& b) { return a.index < b.index; });
          throw TaskError(std::move(failures_));
        }
        return std::nullopt;
      }
      if (in_flight_ > 0) receive();
    }
  }

 private:
  using Iter = std::ranges::iterator_t<View>;

  std::optional<Out> pop_ready() {
    while (!ready_.empty()) {
      Finished<Out>& f = ready_.front();
      while (cursor_ < f.values.size()) {
        auto& v = f.values[cursor_++];
        if (v) return std::move(*v);
      }
      ready_.pop_front();
      cursor_ = 0;
    }
    return std::nullopt;
  }

  // Takes chunks from the input while fewer than max_tasks_active are outstanding: running,
  // or finished but not yet handed to the caller.
  void feed() {
    while (!exhausted_ && in_flight_ + reorder_.size() + ready_.size() < max_active_) {
      std::uint64_t c = next_chunk_size(options_, chunk_workers(), produced_, total_);
      std::vector<In> items;
      items.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(c, 1u << 16)));
      while (items.size() < c && it_ != std::ranges::end(view_)) {
        items.emplace_back(*it_);
        ++it_;
      }
      if (it_ == std::ranges::end(view_)) exhausted_ = true;
      if (items.empty()) break;
      std::uint64_t first = produced_;
      produced_ += items.size();
      backend_.submit(sink_, first, std::move(items));
      ++in_flight_;  // only once submitted: a refused chunk must not be waited for
    }
  }

  // Waits for at least one finished chunk and files its results.
  void receive() {
    std::deque<Done> got;
    {
      std::unique_lock lock(sink_->mutex);
      auto has = [&] { return !sink_->done.empty(); };
      if (options_.progress || timed()) {
        // Progress and lateness are checked between results too, since none may come for long.
        std::chrono::milliseconds wait = std::chrono::seconds(1);
        if (options_.progress) wait = std::max(options_.progress_interval, std::chrono::milliseconds(1));
        if (timed()) wait = std::min(wait, std::chrono::milliseconds(100));
        while (!sink_->cv.wait_for(lock, wait, has)) {
          lock.unlock();
          backend_.check_health();
          report(false);
          consider_growth();
          lock.lock();
        }
      } else {
        // The timeout only lets a broken pool be noticed; results wake the wait at once.
        while (!sink_->cv.wait_for(lock, std::chrono::seconds(1), has)) {
          lock.unlock();
          backend_.check_health();
          lock.lock();
        }
      }
      got.swap(sink_->done);
    }
    in_flight_ -= got.size();
    for (Done& d : got) {
      Finished<Out> f = backend_.decode(std::move(d));
      done_ += f.count;
      failed_count_ += f.failures.size();
      if (f.skipped && !sink_->cancelled) {
        // Nobody here cancelled it: the pool was stopped. Fewer results than inputs would be
        // a silent loss, so the call fails.
        failed_ = true;
        sink_->cancelled = true;
        throw PoolError("the pool was stopped before the map ran to its end");
      }
      if (!f.skipped) {
        window_done_ += f.count;
        ++window_chunks_;
      }
      if (!f.failures.empty()) {
        if (options_.on_error == OnError::raise_first) {
          failed_ = true;
          sink_->cancelled = true;
          std::vector<Failure> first{f.failures.front()};
          throw TaskError(std::move(first));
        }
        failures_.insert(failures_.end(), f.failures.begin(), f.failures.end());
      }
      if (ordered_) {
        std::uint64_t key = f.first;
        reorder_.emplace(key, std::move(f));
        while (!reorder_.empty() && reorder_.begin()->first == next_deliver_) {
          next_deliver_ += reorder_.begin()->second.count;
          ready_.push_back(std::move(reorder_.begin()->second));
          reorder_.erase(reorder_.begin());
        }
      } else {
        ready_.push_back(std::move(f));
      }
    }
    backend_.check_health();
    report(false);
    consider_growth();
  }

  bool timed() const { return options_.target_duration.count() > 0 && total_ > 0; }

  int max_workers() {
    if constexpr (GrowableBackend<Backend>) {
      return std::max(backend_.max_n_jobs(), backend_.n_jobs());
    } else {
      return backend_.n_jobs();
    }
  }

  // With a target, guided chunks are cut for the workers the pool may grow to: the rate is
  // measured on finished chunks, and chunks already cut must be small enough to spread.
  int chunk_workers() { return timed() ? max_workers() : backend_.n_jobs(); }

  // The target_duration rule (see MapOptions): measure the rate since the start or the last
  // growth, and when it says the rest finishes late, add the workers it says are needed.
  void consider_growth() {
    if (!timed() || window_chunks_ == 0 || said_at_cap_) return;
    std::uint64_t remaining = total_ - std::min(total_, done_);
    if (remaining == 0) return;
    auto now = Clock::now();
    double window_s = std::chrono::duration<double>(now - window_start_).count();
    if (window_s <= 0 || window_done_ == 0) return;
    GrowthNotice g;
    g.rate = static_cast<double>(window_done_) / window_s;
    g.remaining = remaining;
    g.eta_s = static_cast<double>(remaining) / g.rate;
    g.time_left_s = std::chrono::duration<double>(start_ + options_.target_duration - now).count();
    if (g.eta_s <= g.time_left_s) return;
    g.workers_before = backend_.n_jobs();
    g.cap = max_workers();
    int want = g.cap;
    if (g.time_left_s > 0) {
      // Workers needed if each keeps the measured per-worker rate until the target.
      double per_worker = g.rate / g.workers_before;
      double need = std::ceil(static_cast<double>(remaining) / (g.time_left_s * per_worker));
      want = need < static_cast<double>(g.cap) ? static_cast<int>(need) : g.cap;
    }
    want = std::clamp(want, g.workers_before, g.cap);
    g.workers_after = g.workers_before;
    if (want > g.workers_before) {
      if constexpr (GrowableBackend<Backend>) g.workers_after = backend_.grow_to(want);
    }
    if (g.workers_after > g.workers_before) {
      window_start_ = Clock::now();
      window_done_ = 0;
      window_chunks_ = 0;
      if (!options_.max_tasks_active) max_active_ = 3 * static_cast<std::uint64_t>(g.workers_after);
    } else {
      said_at_cap_ = true;
    }
    // The pool front puts the default (print_growth) in when the caller gave none.
    if (options_.on_grow) options_.on_grow(g);
  }

  void report(bool finished) {
    if (!options_.progress) return;
    auto now = Clock::now();
    if (!finished && now - last_progress_ < options_.progress_interval) return;
    if (finished && reported_finish_) return;
    reported_finish_ = finished;
    last_progress_ = now;
    options_.progress(progress_at(done_, failed_count_, total_, start_, finished));
  }

  // Cancels what has not run and waits for what runs: tasks may refer to the caller's data.
  void drain() {
    sink_->cancelled = true;
    std::unique_lock lock(sink_->mutex);
    while (in_flight_ > 0) {
      sink_->cv.wait(lock, [&] { return !sink_->done.empty(); });
      in_flight_ -= sink_->done.size();
      sink_->done.clear();
    }
  }

  Backend backend_;
  View view_;
  MapOptions options_;
  bool ordered_;
  Iter it_;
  std::shared_ptr<Sink<Done>> sink_;
  std::uint64_t total_ = 0;
  std::uint64_t max_active_ = 0;
  std::uint64_t produced_ = 0;
  std::uint64_t in_flight_ = 0;
  std::uint64_t done_ = 0;
  std::uint64_t failed_count_ = 0;
  std::uint64_t next_deliver_ = 0;
  bool exhausted_ = false;
  bool failed_ = false;
  bool reported_finish_ = false;
  std::map<std::uint64_t, Finished<Out>> reorder_;
  std::deque<Finished<Out>> ready_;
  std::size_t cursor_ = 0;
  std::vector<Failure> failures_;
  Clock::time_point start_;
  Clock::time_point last_progress_;
  // target_duration: the measuring window (since the start or the last growth).
  Clock::time_point window_start_;
  std::uint64_t window_done_ = 0;
  std::uint64_t window_chunks_ = 0;
  bool said_at_cap_ = false;
};

/// Runs each chunk at once in the caller's thread (max_load_average says the node is busy).
template <class F, class InT>
struct SerialBackend {
  using In = InT;
  using Out = TaskResult<F, In>;
  using Done = Finished<Out>;
  F* f;
  Worker* worker;
  int n_jobs() const { return 1; }
  void check_health() {}
  void submit(const std::shared_ptr<Sink<Done>>& sink, std::uint64_t first, std::vector<In>&& items) {
    Done d;
    d.first = first;
    d.count = items.size();
    d.values.resize(items.size());
    for (std::size_t k = 0; k < items.size(); ++k) {
      try {
        d.values[k].emplace(call_task(*f, *worker, items[k]));
      } catch (...) {
        d.failures.push_back(
            {first + k, FailureKind::exception, exception_message(std::current_exception())});
      }
    }
    sink->put(std::move(d));
  }
  Finished<Out> decode(Done&& d) { return std::move(d); }
};

}  // namespace pool_detail
}  // namespace mpmux
