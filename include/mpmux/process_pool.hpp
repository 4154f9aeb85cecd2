// ProcessPool: an mpire-style worker pool of forked processes fed through shared memory.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpmux/export.hpp"
#include "mpmux/pool_codec.hpp"
#include "mpmux/pool_map.hpp"
#include "mpmux/pool_options.hpp"

namespace mpmux {

namespace pool_detail {

/// Runs one element in a worker process: decodes `input`, calls the task named by `fn`, and
/// encodes the result (true) or the error message (false) into `output`.
using ElementRunner = bool (*)(Worker&, std::uintptr_t fn, std::string_view input, std::string& output);

/// Record kinds of a chunk's results: [u32 len][u8 kind][payload], len counting kind+payload.
enum : std::uint8_t { kRecordOk = 0 };

/// The results of one chunk, in element order (or skipped: cancelled before it ran).
struct ChunkOutcome {
  std::uint64_t first = 0;
  std::uint32_t count = 0;
  bool skipped = false;
  std::string results;
};

/// One chunk for the worker processes. `inputs` holds `count` elements, each [u32 len][bytes].
struct ChunkTask {
  ElementRunner runner = nullptr;
  std::uintptr_t fn = 0;
  std::uint64_t first = 0;
  std::uint32_t count = 0;
  std::string inputs;
  /// Called once on the pool's event-loop thread, when every element has a result.
  std::function<void(ChunkOutcome&&)> done;
  /// When set, the chunk is dropped (reported skipped) instead of being started.
  std::shared_ptr<std::atomic<bool>> cancelled;
};

/// The processes of a ProcessPool: a fork server, the workers it forks, the shared-memory rings
/// and the event-loop thread that feeds them (not templated).
class MPMUX_EXPORT ProcessEngine {
 public:
  explicit ProcessEngine(PoolOptions options);
  ~ProcessEngine();
  ProcessEngine(const ProcessEngine&) = delete;
  ProcessEngine& operator=(const ProcessEngine&) = delete;

  int n_jobs() const;
  const PoolOptions& options() const;
  /// Queues a chunk. Throws UsageError after stop().
  void post(ChunkTask task);
  void stop();
  std::vector<ExitValue> exit_values() const;
  Insights insights() const;
  void check_health() const;
  std::vector<pid_t> worker_pids() const;
  pid_t server_pid() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

/// A task a forked child can call: a function pointer (same address in the child, which is a
/// fork of this program) or a stateless, default-constructible callable such as a captureless
/// lambda.
template <class F>
inline constexpr bool kForkCallable =
    (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) ||
    (std::is_empty_v<F> && std::is_default_constructible_v<F>);

template <class F>
std::uintptr_t fn_identity(const F& f) {
  if constexpr (std::is_pointer_v<F>) {
    return reinterpret_cast<std::uintptr_t>(f);
  } else {
    return 0;
  }
}

template <class F>
F fn_from_identity(std::uintptr_t fn) {
  if constexpr (std::is_pointer_v<F>) {
    return reinterpret_cast<F>(fn);
  } else {
    return F{};
  }
}

template <class F, class In, class Out>
bool run_element(Worker& w, std::uintptr_t fn, std::string_view input, std::string& output) {
  try {
    In x = Codec<In>::read(input);
    F f = fn_from_identity<F>(fn);
    Codec<Out>::write(output, call_task(f, w, x));
    return true;
  } catch (...) {
    output = exception_message(std::current_exception());
    return false;
  }
}

template <class F, class Tuple, class Val>
bool run_apply(Worker& w, std::uintptr_t fn, std::string_view input, std::string& output) {
  try {
    Tuple args = Codec<Tuple>::read(input);
    F f = fn_from_identity<F>(fn);
    Codec<Val>::write(output, apply_task(f, w, args));
    return true;
  } catch (...) {
    output = exception_message(std::current_exception());
    return false;
  }
}

/// Splits a chunk's results into values and failures.
template <class Out>
Finished<Out> decode_outcome(ChunkOutcome&& o) {
  Finished<Out> f;
  f.first = o.first;
  f.count = o.count;
  f.skipped = o.skipped;
  if (o.skipped) return f;
  f.values.resize(o.count);
  std::size_t at = 0;
  for (std::uint32_t k = 0; k < o.count; ++k) {
    std::uint32_t len = get_u32(o.results.data() + at);
    auto kind = static_cast<std::uint8_t>(o.results[at + 4]);
    std::string_view payload(o.results.data() + at + 5, len - 1);
    if (kind == kRecordOk) {
      try {
        f.values[k].emplace(Codec<Out>::read(payload));
      } catch (...) {
        f.failures.push_back({o.first + k, FailureKind::kException,
                              "decoding the result failed: " + exception_message(std::current_exception())});
      }
    } else {
      f.failures.push_back({o.first + k, static_cast<FailureKind>(kind), std::string(payload)});
    }
    at += 4 + len;
  }
  return f;
}

template <class F, class InT>
struct ProcessBackend {
  using In = InT;
  using Out = TaskResult<F, In>;
  using Done = ChunkOutcome;
  ProcessEngine* engine;
  F f;

  int n_jobs() const { return engine->n_jobs(); }
  void check_health() { engine->check_health(); }
  Finished<Out> decode(Done&& d) { return decode_outcome<Out>(std::move(d)); }

  void submit(const std::shared_ptr<Sink<Done>>& sink, std::uint64_t first, std::vector<In>&& items) {
    ChunkTask t;
    t.runner = &run_element<F, In, Out>;
    t.fn = fn_identity(f);
    t.first = first;
    t.count = static_cast<std::uint32_t>(items.size());
    for (const In& x : items) {
      std::size_t at = t.inputs.size();
      put_u32(t.inputs, 0);
      Codec<In>::write(t.inputs, x);
      auto len = static_cast<std::uint32_t>(t.inputs.size() - at - 4);
      std::memcpy(t.inputs.data() + at, &len, 4);
    }
    t.done = [sink](ChunkOutcome&& o) { sink->put(std::move(o)); };
    t.cancelled = std::shared_ptr<std::atomic<bool>>(sink, &sink->cancelled);
    engine->post(std::move(t));
  }
};

}  // namespace pool_detail

/// A pool of n_jobs forked worker processes, with the interface of ThreadPool.
///
/// Fork discipline: the constructor forks a single-threaded fork server, which forks every
/// worker (the first ones and each replacement). So construct the pool before this process
/// starts threads (MPI_Init, a ThreadPool, ...): what exists at construction - globals,
/// PoolOptions::shared_objects, the heap - is what every worker sees, copy-on-write, for the
/// pool's lifetime. Libraries loaded later are not in the workers.
///
/// Tasks are function pointers or captureless lambdas taking (const In&) or (Worker&, const
/// In&): the children cannot see state captured after they were forked. Data goes through
/// inputs, shared_objects or worker state. Inputs and results cross in shared-memory rings;
/// trivially copyable types are copied as bytes, std::string as its bytes, anything else with
/// Boost.Serialization (include the boost/serialization header for the type).
///
/// A worker that dies is noticed at once (pidfd); the elements of its chunk that have no result
/// are re-run on a fresh worker, so a map completes with exact results. Elements may thus run
/// more than once, but each result is delivered once. Workers die with the pool's process
/// (PR_SET_PDEATHSIG), and none remains after stop() or destruction.
class ProcessPool {
 public:
  /// Forks the server and the workers, runs worker_init in each and waits until all are ready.
  /// Throws UsageError for bad options, PoolError when a worker cannot start.
  explicit ProcessPool(PoolOptions options = {})
      : engine_(std::make_unique<pool_detail::ProcessEngine>(std::move(options))) {}

  int n_jobs() const { return engine_->n_jobs(); }

  template <class F, class R>
  auto map(F f, R&& inputs, MapOptions options = {}) {
    using Out = pool_detail::TaskResult<F, std::ranges::range_value_t<R>>;
    static_assert(!std::is_void_v<Out>, "map needs a task that returns a value; use apply for void");
    std::vector<Out> out;
    if constexpr (std::ranges::sized_range<R>) out.reserve(std::ranges::size(inputs));
    auto stream = imap(f, std::forward<R>(inputs), std::move(options));
    while (auto v = stream.next()) out.push_back(std::move(*v));
    return out;
  }

  template <class F, class R>
  auto map_unordered(F f, R&& inputs, MapOptions options = {}) {
    using Out = pool_detail::TaskResult<F, std::ranges::range_value_t<R>>;
    std::vector<Out> out;
    auto stream = imap_unordered(f, std::forward<R>(inputs), std::move(options));
    while (auto v = stream.next()) out.push_back(std::move(*v));
    return out;
  }

  template <class F, class R>
  auto imap(F f, R&& inputs, MapOptions options = {}) {
    return make_stream(f, std::forward<R>(inputs), std::move(options), true);
  }

  template <class F, class R>
  auto imap_unordered(F f, R&& inputs, MapOptions options = {}) {
    return make_stream(f, std::forward<R>(inputs), std::move(options), false);
  }

  template <class F, class... Args>
  auto apply(F f, Args&&... args) {
    return apply_async(f, std::forward<Args>(args)...).get();
  }

  /// Runs f(args...) in a worker; the arguments and the result cross as bytes.
  template <class F, class... Args>
  auto apply_async(F f, Args&&... args) {
    static_assert(pool_detail::kForkCallable<F>,
                  "ProcessPool tasks must be function pointers or captureless lambdas: the workers were forked "
                  "before this call and cannot see captured state (use inputs, shared_objects or worker state)");
    using Tuple = std::tuple<std::decay_t<Args>...>;
    using Val = decltype(pool_detail::apply_task(std::declval<F&>(), std::declval<Worker&>(),
                                                 std::declval<Tuple&>()));
    using R = std::conditional_t<std::is_same_v<Val, pool_detail::Unit>, void, Val>;
    auto promise = std::make_shared<std::promise<R>>();
    auto future = promise->get_future();
    Tuple args_tuple(std::forward<Args>(args)...);
    if (serial()) {
      try {
        if constexpr (std::is_void_v<R>) {
          pool_detail::apply_task(f, serial_worker(), args_tuple);
          promise->set_value();
        } else {
          promise->set_value(pool_detail::apply_task(f, serial_worker(), args_tuple));
        }
      } catch (...) {
        promise->set_exception(std::make_exception_ptr(TaskError(
            {{0, FailureKind::kException, pool_detail::exception_message(std::current_exception())}})));
      }
      return future;
    }
    pool_detail::ChunkTask t;
    t.runner = &pool_detail::run_apply<F, Tuple, Val>;
    t.fn = pool_detail::fn_identity(f);
    t.count = 1;
    pool_detail::put_u32(t.inputs, 0);
    pool_detail::Codec<Tuple>::write(t.inputs, args_tuple);
    auto len = static_cast<std::uint32_t>(t.inputs.size() - 4);
    std::memcpy(t.inputs.data(), &len, 4);
    t.done = [promise](pool_detail::ChunkOutcome&& o) {
      if (o.skipped) {
        promise->set_exception(std::make_exception_ptr(PoolError("ProcessPool: stopped before the task ran")));
        return;
      }
      auto f = pool_detail::decode_outcome<Val>(std::move(o));
      if (!f.failures.empty()) {
        promise->set_exception(std::make_exception_ptr(TaskError(std::move(f.failures))));
      } else if constexpr (std::is_void_v<R>) {
        promise->set_value();
      } else {
        promise->set_value(std::move(*f.values[0]));
      }
    };
    engine_->post(std::move(t));
    return future;
  }

  /// Finishes the chunks the workers hold, runs worker_exit in each, waits for every process.
  void stop() { engine_->stop(); }

  template <class T>
  std::vector<T> exit_values() const {
    std::vector<T> out;
    for (const ExitValue& v : engine_->exit_values()) out.push_back(v.as<T>());
    return out;
  }

  Insights insights() const { return engine_->insights(); }

  /// The worker processes alive now (for tests and monitoring).
  std::vector<pid_t> worker_pids() const { return engine_->worker_pids(); }
  /// The fork server, the pool's only direct child process.
  pid_t server_pid() const { return engine_->server_pid(); }

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
  auto make_stream(F f, R&& inputs, MapOptions options, bool ordered) {
    static_assert(pool_detail::kForkCallable<F>,
                  "ProcessPool tasks must be function pointers or captureless lambdas: the workers were forked "
                  "before this call and cannot see captured state (use inputs, shared_objects or worker state)");
    using View = std::views::all_t<R>;
    using In = std::ranges::range_value_t<R>;
    using Out = pool_detail::TaskResult<F, In>;
    std::unique_ptr<pool_detail::ResultSource<Out>> source;
    if (serial()) {
      struct Owning : pool_detail::SerialBackend<F, In> {
        std::shared_ptr<F> keep;
      };
      Owning b;
      b.keep = std::make_shared<F>(f);
      b.f = b.keep.get();
      b.worker = &serial_worker();
      source = std::make_unique<pool_detail::MapDriver<Owning, View>>(
          std::move(b), std::views::all(std::forward<R>(inputs)), std::move(options), ordered);
    } else {
      pool_detail::ProcessBackend<F, In> b{engine_.get(), f};
      source = std::make_unique<pool_detail::MapDriver<pool_detail::ProcessBackend<F, In>, View>>(
          std::move(b), std::views::all(std::forward<R>(inputs)), std::move(options), ordered);
    }
    return ResultStream<Out>(std::move(source));
  }

  std::unique_ptr<pool_detail::ProcessEngine> engine_;
  std::once_flag serial_once_;
  std::unique_ptr<Worker> serial_worker_;
};

}  // namespace mpmux
