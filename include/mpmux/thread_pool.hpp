// ThreadPool: an mpire-style worker pool of threads in this process.
#pragma once
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpmux/export.hpp"
#include "mpmux/pool_map.hpp"
#include "mpmux/pool_options.hpp"

namespace mpmux {

namespace pool_detail {

/// The threads of a ThreadPool and the queue that feeds them (not templated).
class MPMUX_EXPORT ThreadEngine {
 public:
  explicit ThreadEngine(PoolOptions options);
  ~ThreadEngine();
  ThreadEngine(const ThreadEngine&) = delete;
  ThreadEngine& operator=(const ThreadEngine&) = delete;

  /// Workers now (n_jobs, plus those added by grow_to).
  int n_jobs() const;
  /// PoolOptions::max_n_jobs, or n_jobs when it is not set.
  int max_n_jobs() const;
  /// Starts workers (pinned, worker_init run) until there are min(n, max_n_jobs), and returns
  /// how many there are (fewer when the system would not start a thread). Throws PoolError when
  /// a new worker's pinning or worker_init failed.
  int grow_to(int n);
  /// True when PoolOptions::worker_requestors binds some worker.
  bool has_affinity() const;
  /// Tasks waiting for a free worker.
  std::size_t queued() const;
  const PoolOptions& options() const;
  /// Queues one task (a chunk, an apply, or a helper of a direct map) of `requestor` (-1: none);
  /// one worker runs it, chosen by the affinity rule of PoolOptions::worker_requestors. It
  /// counts toward worker_lifespan. Throws UsageError after stop().
  void post(std::function<void(Worker&)> work, int requestor = -1);
  /// Lets queued work finish, runs worker_exit in every worker and joins the threads.
  void stop();
  std::vector<ExitValue> exit_values() const;
  Insights insights() const;
  /// Adds `elements` processed and the slowest of them to worker `id`'s insights.
  void note_elements(int id, std::uint64_t elements, const std::vector<SlowTask>& slowest);
  /// Throws PoolError when a worker_init failed.
  void check_health() const;

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
          d.failures.push_back({first + k, FailureKind::kException, exception_message(std::current_exception())});
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

}  // namespace pool_detail

/// A pool of n_jobs threads, created in the constructor and kept (with their per-worker state)
/// until stop() or destruction: "persistent workers". Every call is synchronous except imap*
/// (lazy) and apply_async (a future). Calls may come from several threads at once.
///
/// Tasks are callables taking (const In&) or (Worker&, const In&). An element that throws is
/// reported as a Failure with its index and message (see OnError); results never get lost.
///
/// Several submitters may share the pool with requestor affinity (PoolOptions::
/// worker_requestors, MapOptions::requestor, Requestor), and a map may ask for more workers
/// when it runs late (MapOptions::target_duration, PoolOptions::max_n_jobs).
class ThreadPool {
 public:
  /// Starts the threads, pins them (cpu_ids) and runs worker_init in each. Throws UsageError
  /// for bad options (n_jobs <= 0, cpu id out of range, task_timeout set, max_n_jobs below
  /// n_jobs, worker_requestors not one entry per worker up to the cap).
  explicit ThreadPool(PoolOptions options = {})
      : engine_(std::make_unique<pool_detail::ThreadEngine>(std::move(options))) {}

  /// Workers now: n_jobs, plus the workers a late map added (up to max_n_jobs()).
  int n_jobs() const { return engine_->n_jobs(); }
  /// The most workers the pool may grow to (PoolOptions::max_n_jobs, default n_jobs).
  int max_n_jobs() const { return engine_->max_n_jobs(); }
  /// Tasks (chunks, applies) waiting for a free worker now; for monitoring and tests.
  std::size_t queued_tasks() const { return engine_->queued(); }

  /// f applied to every input, results in input order.
  template <class F, class R>
  auto map(F&& f, R&& inputs, MapOptions options = {}) {
    using Fn = std::decay_t<F>;
    using In = std::ranges::range_value_t<R>;
    using Out = pool_detail::TaskResult<Fn, In>;
    static_assert(!std::is_void_v<Out>, "map needs a task that returns a value; use apply for void");
    if constexpr (std::ranges::random_access_range<R> && std::ranges::sized_range<R> &&
                  std::is_default_constructible_v<Out>) {
      // The direct path hands each worker the whole map, so it is left to the chunked path
      // when a worker's next choice matters (affinity) or the worker count may change (target).
      if (!options.max_tasks_active && engine_->options().worker_lifespan == 0 &&
          !engine_->options().enable_insights && !engine_->has_affinity() &&
          options.target_duration.count() == 0 && !serial()) {
        return direct_map<Out>(f, inputs, options);
      }
    }
    std::vector<Out> out;
    if constexpr (std::ranges::sized_range<R>) out.reserve(std::ranges::size(inputs));
    auto stream = imap(std::forward<F>(f), std::forward<R>(inputs), std::move(options));
    while (auto v = stream.next()) out.push_back(std::move(*v));
    return out;
  }

  /// f applied to every input, results in completion order.
  template <class F, class R>
  auto map_unordered(F&& f, R&& inputs, MapOptions options = {}) {
    using Out = pool_detail::TaskResult<std::decay_t<F>, std::ranges::range_value_t<R>>;
    std::vector<Out> out;
    auto stream = imap_unordered(std::forward<F>(f), std::forward<R>(inputs), std::move(options));
    while (auto v = stream.next()) out.push_back(std::move(*v));
    return out;
  }

  /// Lazy map in input order. The input range is read in the caller's thread as the stream is
  /// iterated; an lvalue range must outlive the stream, an rvalue one is moved into it.
  template <class F, class R>
  auto imap(F&& f, R&& inputs, MapOptions options = {}) {
    return make_stream(std::forward<F>(f), std::forward<R>(inputs), std::move(options), true);
  }

  /// Lazy map in completion order.
  template <class F, class R>
  auto imap_unordered(F&& f, R&& inputs, MapOptions options = {}) {
    return make_stream(std::forward<F>(f), std::forward<R>(inputs), std::move(options), false);
  }

  /// Runs f(args...) (or f(worker, args...)) on a worker and waits; a throw comes back as
  /// TaskError with index 0.
  template <class F, class... Args>
    requires(!std::is_same_v<std::decay_t<F>, Requestor>)
  auto apply(F&& f, Args&&... args) {
    return apply_async(std::forward<F>(f), std::forward<Args>(args)...).get();
  }

  /// apply() on behalf of requestor `who` (PoolOptions::worker_requestors).
  template <class F, class... Args>
  auto apply(Requestor who, F&& f, Args&&... args) {
    return apply_async(who, std::forward<F>(f), std::forward<Args>(args)...).get();
  }

  /// Runs f(args...) on a worker; the future holds its value or a TaskError.
  template <class F, class... Args>
    requires(!std::is_same_v<std::decay_t<F>, Requestor>)
  auto apply_async(F&& f, Args&&... args) {
    return apply_async(Requestor{}, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// apply_async() on behalf of requestor `who`: `pool.apply_async(Requestor{1}, f, x)` goes
  /// preferably to the workers bound to requestor 1.
  template <class F, class... Args>
  auto apply_async(Requestor who, F&& f, Args&&... args) {
    if (who.id < -1) pool_detail::validate_requestor(who.id, "Requestor::id");
    using Fn = std::decay_t<F>;
    using Tuple = std::tuple<std::decay_t<Args>...>;
    using Val = decltype(pool_detail::apply_task(std::declval<Fn&>(), std::declval<Worker&>(),
                                                 std::declval<Tuple&>()));
    using R = std::conditional_t<std::is_same_v<Val, pool_detail::Unit>, void, Val>;
    auto promise = std::make_shared<std::promise<R>>();
    auto future = promise->get_future();
    auto job = [promise, fn = Fn(std::forward<F>(f)),
                args = Tuple(std::forward<Args>(args)...)](Worker& w) mutable {
      try {
        if constexpr (std::is_void_v<R>) {
          pool_detail::apply_task(fn, w, args);
          promise->set_value();
        } else {
          promise->set_value(pool_detail::apply_task(fn, w, args));
        }
      } catch (...) {
        promise->set_exception(std::make_exception_ptr(TaskError(
            {{0, FailureKind::kException, pool_detail::exception_message(std::current_exception())}})));
      }
    };
    if (serial()) {
      job(serial_worker());
    } else {
      engine_->post(std::move(job), who.id);
    }
    return future;
  }

  /// Finishes queued work, runs worker_exit in each worker and joins the threads. The pool
  /// takes no more calls afterwards. The destructor calls it.
  void stop() { engine_->stop(); }

  /// The values returned by worker_exit so far (replaced workers, and all workers after stop()).
  template <class T>
  std::vector<T> exit_values() const {
    std::vector<T> out;
    for (const ExitValue& v : engine_->exit_values()) out.push_back(v.as<T>());
    return out;
  }

  /// Per-worker insights (PoolOptions::enable_insights).
  Insights insights() const { return engine_->insights(); }

 private:
  bool serial() {
    const PoolOptions& o = engine_->options();
    if (o.max_load_average <= 0) return false;
    double load = o.load_reader ? o.load_reader() : read_load_per_core();
    return load > o.max_load_average;
  }

  Worker& serial_worker() {
    std::call_once(serial_once_, [&] {
      serial_worker_ = std::make_unique<Worker>(-1, &engine_->options().shared_objects);
      if (engine_->options().worker_init) engine_->options().worker_init(*serial_worker_);
    });
    return *serial_worker_;
  }

  template <class F, class R>
  auto make_stream(F&& f, R&& inputs, MapOptions options, bool ordered) {
    using Fn = std::decay_t<F>;
    using View = std::views::all_t<R>;
    using In = std::ranges::range_value_t<R>;
    using Out = pool_detail::TaskResult<Fn, In>;
    std::unique_ptr<pool_detail::ResultSource<Out>> source;
    if (serial()) {
      auto fn = std::make_shared<Fn>(std::forward<F>(f));
      using B = pool_detail::SerialBackend<Fn, In>;
      struct Owning : B {
        std::shared_ptr<Fn> keep;
      };
      Owning b;
      b.f = fn.get();
      b.worker = &serial_worker();
      b.keep = fn;
      source = std::make_unique<pool_detail::MapDriver<Owning, View>>(
          std::move(b), std::views::all(std::forward<R>(inputs)), std::move(options), ordered);
    } else {
      pool_detail::ThreadBackend<Fn, In> b{engine_.get(), std::make_shared<Fn>(std::forward<F>(f)),
                                           options.requestor};
      source = std::make_unique<pool_detail::MapDriver<pool_detail::ThreadBackend<Fn, In>, View>>(
          std::move(b), std::views::all(std::forward<R>(inputs)), std::move(options), ordered);
    }
    return ResultStream<Out>(std::move(source));
  }

  // map over a random-access input: workers claim guided index ranges with one atomic add and
  // write into the output directly, so nothing is copied or queued per chunk.
  template <class Out, class F, class R>
  std::vector<Out> direct_map(F& f, R& inputs, const MapOptions& options) {
    pool_detail::validate_map_options(options);
    const std::uint64_t n = std::ranges::size(inputs);
    std::vector<Out> out(n);
    if (n == 0) return out;
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
    const int helpers = static_cast<int>(std::min<std::uint64_t>(n, engine_->n_jobs()));
    job.helpers_left = helpers;
    const int n_jobs = engine_->n_jobs();
    auto helper = [&](Worker& w) {
      auto it0 = std::ranges::begin(inputs);
      for (;;) {
        if (job.stop.load(std::memory_order_relaxed)) break;
        std::uint64_t c = pool_detail::next_chunk_size(options, n_jobs, job.next.load(std::memory_order_relaxed), n);
        std::uint64_t b = job.next.fetch_add(c, std::memory_order_relaxed);
        if (b >= n) break;
        std::uint64_t e = std::min(n, b + c);
        for (std::uint64_t i = b; i < e; ++i) {
          try {
            out[i] = pool_detail::call_task(f, w, it0[static_cast<std::ranges::range_difference_t<R>>(i)]);
          } catch (...) {
            std::lock_guard lock(job.mutex);
            job.failures.push_back({i, FailureKind::kException, pool_detail::exception_message(std::current_exception())});
            job.failed.fetch_add(1, std::memory_order_relaxed);
            if (options.on_error == OnError::kRaiseFirst) job.stop = true;
          }
        }
        job.done.fetch_add(e - b, std::memory_order_relaxed);
      }
      std::lock_guard lock(job.mutex);
      if (--job.helpers_left == 0) job.cv.notify_all();
    };
    int posted = 0;
    try {
      for (; posted < helpers; ++posted) engine_->post(helper);
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
          options.progress(direct_progress(job.done, job.failed, n, start, false));
          lock.lock();
        }
      }
    }
    if (options.progress) options.progress(direct_progress(job.done, job.failed, n, start, true));
    if (!job.failures.empty()) {
      std::sort(job.failures.begin(), job.failures.end(),
                [](const Failure& a, const Failure& b) { return a.index < b.index; });
      if (options.on_error == OnError::kRaiseFirst) job.failures.resize(1);
      throw TaskError(std::move(job.failures));
    }
    engine_->check_health();
    return out;
  }

  static Progress direct_progress(const std::atomic<std::uint64_t>& done, const std::atomic<std::uint64_t>& failed,
                                  std::uint64_t total, std::chrono::steady_clock::time_point start, bool finished) {
    Progress p;
    p.done = done.load();
    p.failed = failed.load();
    p.total = total;
    p.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    p.rate = p.elapsed_s > 0 ? static_cast<double>(p.done) / p.elapsed_s : 0;
    if (p.rate > 0) p.eta_s = static_cast<double>(total - std::min(total, p.done)) / p.rate;
    p.finished = finished;
    return p;
  }

  std::unique_ptr<pool_detail::ThreadEngine> engine_;
  std::once_flag serial_once_;
  std::unique_ptr<Worker> serial_worker_;
};

}  // namespace mpmux
