// The pool front: the map family, apply, stop, insights and options, written once for every
// engine. ThreadPool (mpmux/thread_pool.hpp) and ProcessPool (mpmux/process_pool.hpp) are
// BasicPool over their engines; the engines and the chunked-map machinery are implementation
// detail in mpmux/bits/.
#pragma once
#include <cstdint>
#include <future>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpmux/bits/map_driver.hpp"
#include "mpmux/pool_error.hpp"
#include "mpmux/pool_options.hpp"

namespace mpmux {
/// The results of imap/imap_unordered, produced lazily as it is iterated: the input is read only
/// as far as max_tasks_active allows ahead of the consumer. Destroying it early cancels the
/// chunks not yet started and waits for the running ones. Single pass.
template <class Out>
class ResultStream {
 public:
  explicit ResultStream(std::unique_ptr<pool_detail::ResultSource<Out>> source)
      : source_(std::move(source)) {}

  class iterator {
   public:
    using value_type = Out;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(ResultStream* s) : s_(s) { ++*this; }
    Out& operator*() const { return *s_->current_; }
    Out* operator->() const { return &*s_->current_; }
    iterator& operator++() {
      s_->current_ = s_->source_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !s_ || !s_->current_; }

   private:
    ResultStream* s_ = nullptr;
  };

  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }
  /// The next result, or nullopt at the end.
  std::optional<Out> next() { return source_->next(); }

 private:
  std::unique_ptr<pool_detail::ResultSource<Out>> source_;
  std::optional<Out> current_;
};

/// A pool of workers with an mpire-style front, over an engine that runs them (threads:
/// ThreadPool; forked processes: ProcessPool). Workers are created in the constructor and kept,
/// with their per-worker state, until stop() or destruction: "persistent workers". Every call
/// is synchronous except imap* (lazy) and apply_async (a future). Calls may come from several
/// threads at once.
///
/// Tasks are callables taking (const In&) or (Worker&, const In&) (a ProcessPool takes only
/// function pointers and captureless lambdas). An element that throws is reported as a Failure
/// with its index and message (see OnError); results never get lost.
///
/// Several submitters may share the pool with requestor affinity (PoolOptions::
/// worker_requestors, MapOptions::requestor, Requestor), and a map may ask for more workers
/// when it runs late (MapOptions::target_duration, PoolOptions::max_n_jobs).
template <class Engine>
class BasicPool {
 public:
  /// Starts the workers, pins them (cpu_ids) and runs worker_init in each; returns when all are
  /// ready. Throws UsageError for bad options (naming the option and value), PoolError when a
  /// worker cannot start or its worker_init throws.
  explicit BasicPool(PoolOptions options = {}) : engine_(std::make_unique<Engine>(std::move(options))) {}

  /// Workers now: n_jobs, plus the workers a late map added (up to max_n_jobs()).
  int n_jobs() const { return engine_->n_jobs(); }
  /// The most workers the pool may grow to (PoolOptions::max_n_jobs, default n_jobs).
  int max_n_jobs() const { return engine_->max_n_jobs(); }
  /// Tasks (chunks, applies) waiting for a free worker now; for monitoring and tests.
  std::size_t queued_tasks() const { return engine_->queued(); }

  /// f applied to every input, results in input order. A sized random-access input without
  /// max_tasks_active is handed to the workers whole (they claim index ranges; no hand-off per
  /// chunk), unless a worker's next choice matters (worker_requestors) or the worker count may
  /// change (target_duration); both ways report failures and progress alike.
  template <class F, class R>
  auto map(F&& f, R&& inputs, MapOptions options = {}) {
    using Fn = std::decay_t<F>;
    using Out = pool_detail::TaskResult<Fn, std::ranges::range_value_t<R>>;
    static_assert(!std::is_void_v<Out>, "map needs a task that returns a value; use apply for void");
    Engine::template check_task<Fn>();
    const bool run_serially = serial();
    if constexpr (std::ranges::random_access_range<R> && std::ranges::sized_range<R> &&
                  std::is_default_constructible_v<Out>) {
      if (!options.max_tasks_active && !run_serially && !engine_->has_affinity() &&
          options.target_duration.count() == 0 && engine_->direct_map_allowed()) {
        return engine_->template direct_map<Out>(f, inputs, options);
      }
    }
    std::vector<Out> out;
    if constexpr (std::ranges::sized_range<R>) out.reserve(std::ranges::size(inputs));
    auto stream =
        make_stream(std::forward<F>(f), std::forward<R>(inputs), std::move(options), true, run_serially);
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
    return make_stream(std::forward<F>(f), std::forward<R>(inputs), std::move(options), true, serial());
  }

  /// Lazy map in completion order.
  template <class F, class R>
  auto imap_unordered(F&& f, R&& inputs, MapOptions options = {}) {
    return make_stream(std::forward<F>(f), std::forward<R>(inputs), std::move(options), false, serial());
  }

  /// Runs f(args...) (or f(worker, args...)) on a worker and waits; a throw comes back as
  /// TaskError with index 0.
  template <class F, class... Args>
  requires(!std::is_same_v<std::decay_t<F>, Requestor>) auto apply(F&& f, Args&&... args) {
    return apply(Requestor{}, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// apply() on behalf of requestor `who` (PoolOptions::worker_requestors).
  template <class F, class... Args>
  auto apply(Requestor who, F&& f, Args&&... args) {
    auto result = apply_async(who, std::forward<F>(f), std::forward<Args>(args)...);
    Engine::await(result);
    return result.get();
  }

  /// Runs f(args...) on a worker; the future holds its value or a TaskError.
  template <class F, class... Args>
  requires(!std::is_same_v<std::decay_t<F>, Requestor>) auto apply_async(F&& f, Args&&... args) {
    return apply_async(Requestor{}, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// apply_async() on behalf of requestor `who`: `pool.apply_async(Requestor{1}, f, x)` goes
  /// preferably to the workers bound to requestor 1.
  template <class F, class... Args>
  auto apply_async(Requestor who, F&& f, Args&&... args) {
    if (who.id < -1) pool_detail::validate_requestor(who.id, "Requestor::id");
    using Fn = std::decay_t<F>;
    using Tuple = std::tuple<std::decay_t<Args>...>;
    using R = pool_detail::ApplyResult<Fn, Tuple>;
    Engine::template check_task<Fn>();
    auto promise = std::make_shared<std::promise<R>>();
    auto future = promise->get_future();
    if (serial()) {
      Fn fn(std::forward<F>(f));
      Tuple args_tuple(std::forward<Args>(args)...);
      pool_detail::fulfil(*promise, fn, serial_worker(), args_tuple);
    } else {
      engine_->post_apply(std::move(promise), Fn(std::forward<F>(f)), Tuple(std::forward<Args>(args)...),
                          who.id);
    }
    return future;
  }

  /// Finishes queued work, runs worker_exit in each worker and ends the workers (threads
  /// joined, processes reaped). The pool takes no more calls afterwards. The destructor calls it.
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

 protected:
  Engine& engine() const { return *engine_; }

 private:
  // max_load_average: the node is busy, so the call runs in the caller.
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
  auto make_stream(F&& f, R&& inputs, MapOptions options, bool ordered, bool run_serially) {
    using Fn = std::decay_t<F>;
    using View = std::views::all_t<R>;
    using In = std::ranges::range_value_t<R>;
    using Out = pool_detail::TaskResult<Fn, In>;
    Engine::template check_task<Fn>();
    // The default growth notice prints; it is put in here, in the caller's program, so that the
    // pool library never prints by itself.
    if (!options.on_grow) options.on_grow = print_growth;
    std::unique_ptr<pool_detail::ResultSource<Out>> source;
    if (run_serially) {
      struct Owning : pool_detail::SerialBackend<Fn, In> {
        std::shared_ptr<Fn> keep;
      };
      Owning b;
      b.keep = std::make_shared<Fn>(std::forward<F>(f));
      b.f = b.keep.get();
      b.worker = &serial_worker();
      source = std::make_unique<pool_detail::MapDriver<Owning, View>>(
          std::move(b), std::views::all(std::forward<R>(inputs)), std::move(options), ordered);
    } else {
      auto b = engine_->template backend<Fn, In>(std::forward<F>(f), options.requestor);
      source = std::make_unique<pool_detail::MapDriver<decltype(b), View>>(
          std::move(b), std::views::all(std::forward<R>(inputs)), std::move(options), ordered);
    }
    return ResultStream<Out>(std::move(source));
  }

  std::unique_ptr<Engine> engine_;
  std::once_flag serial_once_;
  std::unique_ptr<Worker> serial_worker_;
};

}  // namespace mpmux
