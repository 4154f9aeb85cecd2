// Implementation detail of ThreadPool (not a public interface): the engine that runs the
// threads, and its typed halves for the pool front (mpmux/pool_map.hpp, BasicPool).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <ranges>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpmux/bits/map_driver.hpp"
#include "mpmux/bits/pool_engine.hpp"
#include "mpmux/export.hpp"
#include "mpmux/pool_options.hpp"

namespace mpmux::pool_detail {

template <class F, class InT>
struct ThreadBackend;

/// The threads of a ThreadPool and the queue that feeds them. The untyped part is compiled in
/// src/pool/thread_pool.cpp; the member templates are what BasicPool<ThreadEngine> asks of it.
class MPMUX_EXPORT ThreadEngine : public PoolEngine {
 public:
  explicit ThreadEngine(PoolOptions options);
  ~ThreadEngine();

  /// Starts workers (pinned, worker_init run) until there are min(n, max_n_jobs), and returns
  /// how many there are (fewer when the system would not start a thread). Throws PoolError when
  /// a new worker's pinning or worker_init failed.
  int grow_to(int n);
  /// Tasks waiting for a free worker.
  std::size_t queued() const;
  /// Queues one task (a chunk, an apply, or a helper of a direct map) of `requestor` (-1: none);
  /// one worker runs it, chosen by the affinity rule of PoolOptions::worker_requestors. It
  /// counts toward worker_lifespan. Throws UsageError after stop().
  void post(std::function<void(Worker&)> work, int requestor = -1);
  /// Lets queued work finish, runs worker_exit in every worker and joins the threads.
  void stop();
  /// Adds `elements` processed and the slowest of them to worker `id`'s insights.
  void note_elements(int id, std::uint64_t elements, const std::vector<SlowTask>& slowest);

  // ---- what BasicPool asks of an engine ----------------------------------------------------
  static constexpr const char* kName = "ThreadPool";

  /// Any callable is a thread task.
  template <class F>
  static constexpr void check_task() {}

  /// The direct map hands each worker the whole map, so it is left to the chunked path when
  /// the worker count of a chunk matters (lifespan) or per-chunk reports are wanted (insights).
  bool direct_map_allowed() const { return options().worker_lifespan == 0 && !options().enable_insights; }

  template <class Fn, class In, class G>
  ThreadBackend<Fn, In> backend(G&& f, int requestor) {
    return ThreadBackend<Fn, In>{this, std::make_shared<Fn>(std::forward<G>(f)), requestor};
  }

  /// How long a worker or an apply() caller looks for what it waits for before it sleeps: a
  /// short task's round trip then needs no sleep and wake-up, which are most of its cost.
  static constexpr std::chrono::microseconds kLookBeforeSleep{50};

  /// Looks for the result of an apply() for kLookBeforeSleep; the caller then sleeps in get().
  template <class R>
  static void await(const std::future<R>& result) {
    const auto end = std::chrono::steady_clock::now() + kLookBeforeSleep;
    for (unsigned i = 0;; ++i) {
      if (result.wait_for(std::chrono::seconds(0)) == std::future_status::ready) return;
      if ((i & 15) == 15 && std::chrono::steady_clock::now() > end) return;
      std::this_thread::yield();
    }
  }

  /// Runs f(args...) on a worker and fulfils `promise`.
  template <class R, class Fn, class Tuple>
  void post_apply(std::shared_ptr<std::promise<R>> promise, Fn fn, Tuple args, int requestor) {
    post([promise = std::move(promise), fn = std::move(fn),
          args = std::move(args)](Worker& w) mutable { fulfil(*promise, fn, w, args); },
         requestor);
  }

  // map over a random-access input: workers claim guided index ranges with one atomic add and
  // write into the output directly, so nothing is copied or queued per chunk.
  template <class Out, class F, class R>
  std::vector<Out> direct_map(F& f, R& inputs, const MapOptions& options) {
    validate_map_options(options);
    const std::uint64_t n = std::ranges::size(inputs);
    std::vector<Out> out(n);
    if (n == 0) {
      // Its end is reported as on every other path, so that a progress display closes.
      if (options.progress) options.progress(progress_at(0, 0, 0, std::chrono::steady_clock::now(), true));
      return out;
    }
    struct Job {
      std::atomic<std::uint64_t> next{0};
      std::atomic<std::uint64_t> done{0};
      std::atomic<std::uint64_t> failed{0};
      std::atomic<bool> stop{false};
      std::mutex mutex;
      std::condition_variable cv;
      int helpers_left = 0;
      std::vector<Failure> failures;
    } job;
    const int helpers = static_cast<int>(std::min<std::uint64_t>(n, n_jobs()));
    job.helpers_left = helpers;
    const int workers = n_jobs();
    auto helper = [&](Worker& w) {
      auto it0 = std::ranges::begin(inputs);
      for (;;) {
        if (job.stop.load(std::memory_order_relaxed)) break;
        std::uint64_t c = next_chunk_size(options, workers, job.next.load(std::memory_order_relaxed), n);
        std::uint64_t b = job.next.fetch_add(c, std::memory_order_relaxed);
        if (b >= n) break;
        std::uint64_t e = std::min(n, b + c);
        for (std::uint64_t i = b; i < e; ++i) {
          try {
            out[i] = call_task(f, w, it0[static_cast<std::ranges::range_difference_t<R>>(i)]);
          } catch (...) {
            std::lock_guard lock(job.mutex);
            job.failures.push_back({i, FailureKind::exception, exception_message(std::current_exception())});
            job.failed.fetch_add(1, std::memory_order_relaxed);
            if (options.on_error == OnError::raise_first) job.stop = true;
          }
        }
        job.done.fetch_add(e - b, std::memory_order_relaxed);
      }
      std::lock_guard lock(job.mutex);
      if (--job.helpers_left == 0) job.cv.notify_all();
    };
    int posted = 0;
    try {
      for (; posted < helpers; ++posted) post(helper);
    } catch (...) {
      std::unique_lock lock(job.mutex);
      job.helpers_left -= helpers - posted;
      job.stop = true;
      job.cv.wait(lock, [&] { return job.helpers_left == 0; });
      throw;
    }
    auto start = std::chrono::steady_clock::now();
    {
      std::unique_lock lock(job.mutex);
      auto wait = options.progress ? std::max(options.progress_interval, std::chrono::milliseconds(1))
                                   : std::chrono::milliseconds(1000);
      while (!job.cv.wait_for(lock, wait, [&] { return job.helpers_left == 0; })) {
        if (options.progress) {
          lock.unlock();
          options.progress(progress_at(job.done.load(), job.failed.load(), n, start, false));
          lock.lock();
        }
      }
    }
    if (options.progress) options.progress(progress_at(job.done.load(), job.failed.load(), n, start, true));
    if (!job.failures.empty()) {
      std::sort(job.failures.begin(), job.failures.end(),
                [](const Failure& a, const Failure& b) { return a.index < b.index; });
      if (options.on_error == OnError::raise_first) job.failures.resize(1);
      throw TaskError(std::move(job.failures));
    }
    check_health();
    return out;
  }

 private:
  struct State;
  std::string start_workers(int to);
  void worker_main(int id);
  std::unique_ptr<State> s_;
};

template <class F, class InT>
struct ThreadBackend {
  using In = InT;
  using Out = TaskResult<F, In>;
  using Done = Finished<Out>;
  ThreadEngine* engine;
  std::shared_ptr<F> f;
  int requestor = -1;

  int n_jobs() const { return engine->n_jobs(); }
  int max_n_jobs() const { return engine->max_n_jobs(); }
  int grow_to(int n) { return engine->grow_to(n); }
  void check_health() { engine->check_health(); }
  Finished<Out> decode(Done&& d) { return std::move(d); }

  void submit(const std::shared_ptr<Sink<Done>>& sink, std::uint64_t first, std::vector<In>&& items) {
    auto shared_items = std::make_shared<std::vector<In>>(std::move(items));
    bool insights = engine->options().enable_insights;
    auto run = [sink, fn = f, first, shared_items, insights, eng = engine](Worker& w) {
      std::vector<In>& in = *shared_items;
      Done d;
      d.first = first;
      d.count = in.size();
      if (sink->cancelled) {
        d.skipped = true;
        sink->put(std::move(d));
        return;
      }
      d.values.resize(in.size());
      std::vector<SlowTask> slow;
      for (std::size_t k = 0; k < in.size(); ++k) {
        auto t0 = std::chrono::steady_clock::now();
        try {
          d.values[k].emplace(call_task(*fn, w, in[k]));
        } catch (...) {
          d.failures.push_back(
              {first + k, FailureKind::exception, exception_message(std::current_exception())});
        }
        if (insights) {
          double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          slow.push_back({first + k, s, w.id()});
          if (slow.size() > 64) keep_slowest(slow);
        }
      }
      if (insights) {
        keep_slowest(slow);
        eng->note_elements(w.id(), in.size(), slow);
      }
      sink->put(std::move(d));
    };
    engine->post(std::move(run), requestor);
  }
};

}  // namespace mpmux::pool_detail
