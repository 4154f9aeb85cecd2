// Implementation detail of ProcessPool (not a public interface): the byte layout of chunks and
// results, the element loop the workers run, the engine that runs the processes, and its typed
// halves for the pool front (mpmux/pool_map.hpp, BasicPool).
#pragma once
#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpmux/bits/map_driver.hpp"
#include "mpmux/bits/pool_engine.hpp"
#include "mpmux/export.hpp"
#include "mpmux/pool_codec.hpp"
#include "mpmux/pool_options.hpp"

namespace mpmux::pool_detail {

/// std::allocator that leaves new elements uninitialized, so that growing a byte buffer does
/// not zero what is about to be written anyway.
template <class T>
struct NoInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = NoInitAllocator<U>;
  };
  NoInitAllocator() = default;
  template <class U>
  NoInitAllocator(const NoInitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

/// The byte buffers of the process pool's hot path.
using Bytes = std::vector<char, NoInitAllocator<char>>;

/// What a worker's element loop publishes while it runs: the element running (the event loop
/// reads it from shared memory to blame a crash or a timeout on it) and, when timed, its start.
struct RunContext {
  std::atomic<std::uint64_t>* cur_index = nullptr;     // element running + 1; 0: none
  std::atomic<std::uint64_t>* cur_start_ns = nullptr;  // CLOCK_MONOTONIC start of that element
  bool timed = false;                                  // publish start times (task_timeout or insights)
  bool with_ns = false;                                // put each element's duration in its record (insights)
  std::uint64_t index = 0;                             // index of the next element
  std::string scratch;                                 // one encoded value
};

/// Runs `count` elements in a worker process: reads each input (layout of write_inputs) at
/// `in`, advancing it, calls the task named by `fn` and appends the result records to `out`.
/// A batch per call, so that the per-element path is inlined.
using ChunkRunner = void (*)(Worker&, std::uintptr_t fn, RunContext& ctx, const char*& in,
                             std::uint32_t count, Bytes& out);

/// Result records, each [u32 len][u8 kind][body], len counting kind and body:
///  - kRecordOk or a FailureKind: one element; body [u64 ns, with insights][value or message];
///  - kRecordRun: [u32 n][n values of a fixed-size type] for n elements that succeeded in a
///    row (never with insights), so that tiny results cost no header each.
/// The event loop strips the ns.
enum : std::uint8_t { kRecordOk = 0, kRecordRun = 0x0f };

inline std::uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Runs one element: publishes it, calls it and appends its one-element record.
template <class In, class Out, class Call>
void run_one(RunContext& ctx, const char*& in, Bytes& out, Call& call) {
  const std::size_t head = ctx.with_ns ? 13 : 5;
  std::uint64_t start = 0;
  const char* input = in;
  in += input_size<In>(in);
  if (ctx.timed) {
    start = monotonic_ns();
    ctx.cur_start_ns->store(start, std::memory_order_relaxed);
  }
  ctx.cur_index->store(++ctx.index, std::memory_order_relaxed);
  const std::size_t rec = out.size();
  std::uint8_t kind = kRecordOk;
  ctx.scratch.clear();
  try {
    In x = read_input<In>(input);
    Codec<Out>::write(ctx.scratch, call(x));
  } catch (...) {
    ctx.scratch = exception_message(std::current_exception());
    kind = static_cast<std::uint8_t>(FailureKind::exception);
  }
  out.resize(rec + head + ctx.scratch.size());
  char* r = out.data() + rec;
  auto len = static_cast<std::uint32_t>(head - 4 + ctx.scratch.size());
  std::memcpy(r, &len, 4);
  r[4] = static_cast<char>(kind);
  if (ctx.with_ns) {
    std::uint64_t ns = monotonic_ns() - start;
    std::memcpy(r + 5, &ns, 8);
  }
  std::memcpy(r + head, ctx.scratch.data(), ctx.scratch.size());
}

/// The loop behind every ChunkRunner: `call(In&)` gives the value to encode as Out.
template <class In, class Out, class Call>
void run_records(RunContext& ctx, const char*& in, std::uint32_t count, Bytes& out, Call&& call) {
  if constexpr (kFixedSizeCodec<Out>) {
    if (!ctx.with_ns) {
      // Successes go into one run record, written in place; a failure closes it. Locals, not
      // ctx/in/out, in the loop: the task is an opaque call, after which members are reloaded.
      const char* p = in;
      std::uint64_t index = ctx.index;
      std::atomic<std::uint64_t>* const cur_index = ctx.cur_index;
      std::size_t run_at = 0;
      char* values = nullptr;  // the run's first value, in out
      std::uint32_t run = 0;
      auto close_run = [&] {
        if (run == 0) return;
        out.resize(run_at + 9 + std::size_t{run} * sizeof(Out));
        auto len = static_cast<std::uint32_t>(out.size() - run_at - 4);
        std::memcpy(out.data() + run_at, &len, 4);
        out[run_at + 4] = static_cast<char>(kRecordRun);
        std::memcpy(out.data() + run_at + 5, &run, 4);
        run = 0;
      };
      for (std::uint32_t k = 0; k < count; ++k) {
        In x = read_input<In>(p);  // a fixed-size input cannot fail to decode
        if (ctx.timed) ctx.cur_start_ns->store(monotonic_ns(), std::memory_order_relaxed);
        cur_index->store(index + 1, std::memory_order_relaxed);
        try {
          Out value = call(x);
          if (run == 0) {
            run_at = out.size();
            out.resize(run_at + 9 + std::size_t{count - k} * sizeof(Out));  // room for the rest
            values = out.data() + run_at + 9;
          }
          std::memcpy(values + std::size_t{run} * sizeof(Out), static_cast<const void*>(&value), sizeof(Out));
          ++run;
        } catch (...) {
          close_run();
          std::string message = exception_message(std::current_exception());
          const std::size_t rec = out.size();
          out.resize(rec + 5 + message.size());
          auto len = static_cast<std::uint32_t>(1 + message.size());
          std::memcpy(out.data() + rec, &len, 4);
          out[rec + 4] = static_cast<char>(FailureKind::exception);
          std::memcpy(out.data() + rec + 5, message.data(), message.size());
        }
        ++index;
      }
      close_run();
      in = p;
      ctx.index = index;
      return;
    }
  }
  for (std::uint32_t k = 0; k < count; ++k) run_one<In, Out>(ctx, in, out, call);
}

/// The results of one chunk, in element order (or skipped: cancelled before it ran).
struct ChunkOutcome {
  std::uint64_t first = 0;
  std::uint32_t count = 0;
  bool skipped = false;
  std::string results;
};

/// One chunk for the worker processes, posted by a caller (a fed map or an apply).
struct ChunkTask {
  ChunkRunner runner = nullptr;
  std::uintptr_t fn = 0;
  std::uint64_t first = 0;
  std::uint32_t count = 0;
  /// The inputs in the layout of write_inputs; input_size tells where each ends.
  std::string inputs;
  std::size_t (*input_size)(const char*) = nullptr;
  /// Called once on the pool's event-loop thread, when every element has a result.
  std::function<void(ChunkOutcome&&)> done;
  /// When set, the chunk is dropped (reported skipped) instead of being started.
  std::shared_ptr<std::atomic<bool>> cancelled;
  /// The submitter, for PoolOptions::worker_requestors; -1: none.
  int requestor = -1;
};

/// A map over a sized random-access input that the pool's event-loop thread runs by itself:
/// it cuts the chunks, encodes them straight from the input and files each result into the
/// output, so the caller's thread only waits (no hand-off per chunk). ProcessPool::map derives
/// the typed part; ProcessEngine::run_direct does the rest.
class DirectMap {
 public:
  DirectMap(ChunkRunner runner, std::uintptr_t fn, std::uint64_t total)
      : runner_(runner), fn_(fn), total_(total) {}
  virtual ~DirectMap() = default;
  DirectMap(const DirectMap&) = delete;
  DirectMap& operator=(const DirectMap&) = delete;

  ChunkRunner runner() const { return runner_; }
  std::uintptr_t fn() const { return fn_; }
  std::uint64_t total() const { return total_; }

  /// Appends the inputs [first, first + count) to `out` (layout of write_inputs).
  virtual void encode(std::uint64_t first, std::uint32_t count, Bytes& out) const = 0;
  /// Files the result records (without ns) of the `count` elements first, first + 1, ...:
  /// values go to the output, failures are appended to `failures`.
  virtual void deliver(std::uint64_t first, const char* records, std::uint32_t count,
                       std::vector<Failure>& failures) = 0;

 private:
  ChunkRunner runner_;
  std::uintptr_t fn_;
  std::uint64_t total_;
};

template <class F, class InT>
struct ProcessBackend;
struct ProcessState;

/// The processes of a ProcessPool: a fork server, the workers it forks, the shared-memory rings
/// and the event-loop thread that feeds them. The untyped part is compiled in src/pool; the
/// member templates are what BasicPool<ProcessEngine> asks of it.
class MPMUX_EXPORT ProcessEngine : public PoolEngine {
 public:
  explicit ProcessEngine(PoolOptions options);
  ~ProcessEngine();

  /// Has the fork server fork workers (pinned, worker_init run) until there are min(n,
  /// max_n_jobs), waits until they are ready and returns how many there are. Throws PoolError
  /// when a new worker's pinning or worker_init failed.
  int grow_to(int n);
  /// Chunks posted and not yet handed to a worker.
  std::size_t queued() const;
  /// Queues a chunk; a free worker takes it by the affinity rule of PoolOptions::
  /// worker_requestors. Throws UsageError after stop().
  void post(ChunkTask task);
  /// Runs a direct map to its end in the event loop and waits for it in the calling thread,
  /// which reports progress and checks the pool's health. Throws TaskError per
  /// options.on_error, PoolError if the pool broke or stopped meanwhile, UsageError after stop().
  /// Returns only when the event loop no longer touches `map`.
  void run_direct(DirectMap& map, const MapOptions& options);
  void stop();
  std::vector<pid_t> worker_pids() const;
  pid_t server_pid() const;

  // ---- what BasicPool asks of an engine ----------------------------------------------------
  static constexpr const char* kName = "ProcessPool";

  /// Only what a forked child can call (see kForkCallable).
  template <class F>
  static constexpr void check_task();

  /// Both ways report failures, progress, crashes and timeouts alike.
  bool direct_map_allowed() const { return true; }

  template <class Fn, class In, class G>
  ProcessBackend<Fn, In> backend(G&& f, int requestor);

  /// A sized random-access input run by the event loop directly (no hand-off per chunk).
  template <class Out, class F, class R>
  std::vector<Out> direct_map(F& f, R& inputs, const MapOptions& options);

  /// The caller of apply() sleeps in get() at once: the event loop and the worker need the CPU.
  template <class R>
  static void await(const std::future<R>&) {}

  /// Runs f(args...) in a worker (arguments and result cross as bytes) and fulfils `promise`.
  template <class R, class Fn, class Tuple>
  void post_apply(std::shared_ptr<std::promise<R>> promise, Fn fn, Tuple args, int requestor);

 private:
  std::unique_ptr<ProcessState> s_;  // src/pool/process_state.hpp
};

/// A task a forked child can call: a function pointer (same address in the child, which is a
/// fork of this program) or a stateless, default-constructible callable such as a captureless
/// lambda.
template <class F>
inline constexpr bool kForkCallable = (std::is_pointer_v<F> &&
                                       std::is_function_v<std::remove_pointer_t<F>>) ||
                                      (std::is_empty_v<F> && std::is_default_constructible_v<F>);

template <class F>
constexpr void require_fork_callable() {
  static_assert(
      kForkCallable<F>,
      "ProcessPool tasks must be function pointers or captureless lambdas: the workers were forked "
      "before this call and cannot see captured state (use inputs, shared_objects or worker state)");
}

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
void run_element(Worker& w, std::uintptr_t fn, RunContext& ctx, const char*& in, std::uint32_t count,
                 Bytes& out) {
  F f = fn_from_identity<F>(fn);
  run_records<In, Out>(ctx, in, count, out, [&](In& x) { return call_task(f, w, x); });
}

template <class F, class Tuple, class Val>
void run_apply(Worker& w, std::uintptr_t fn, RunContext& ctx, const char*& in, std::uint32_t count,
               Bytes& out) {
  F f = fn_from_identity<F>(fn);
  run_records<Tuple, Val>(ctx, in, count, out, [&](Tuple& args) { return apply_task(f, w, args); });
}

/// Walks the result records that cover the `count` elements first, first + 1, ...: calls
/// on_value(k, Out&&) for element first + k, on_run(k, bytes, n) for a run of n fixed-size
/// values from element first + k on, and appends failures (with their index) to `failures`.
template <class Out, class OnValue, class OnRun>
void file_records(std::uint64_t first, const char* p, std::uint32_t count, std::vector<Failure>& failures,
                  OnValue&& on_value, OnRun&& on_run) {
  for (std::uint32_t k = 0; k < count;) {
    std::uint32_t len = get_u32(p);
    auto kind = static_cast<std::uint8_t>(p[4]);
    if (kind == kRecordRun) {
      std::uint32_t n = get_u32(p + 5);
      if constexpr (kFixedSizeCodec<Out>) on_run(k, p + 9, n);
      k += n;
    } else if (kind == kRecordOk) {
      try {
        on_value(k, Codec<Out>::read(std::string_view(p + 5, len - 1)));
      } catch (...) {
        failures.push_back({first + k, FailureKind::exception,
                            "decoding the result failed: " + exception_message(std::current_exception())});
      }
      ++k;
    } else {
      failures.push_back({first + k, static_cast<FailureKind>(kind), std::string(p + 5, len - 1)});
      ++k;
    }
    p += 4 + static_cast<std::size_t>(len);
  }
}

template <class Out>
Out read_fixed(const char* p) {
  Out value;
  std::memcpy(static_cast<void*>(&value), p, sizeof(Out));
  return value;
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
  file_records<Out>(
      o.first, o.results.data(), o.count, f.failures,
      [&](std::uint32_t k, Out&& v) { f.values[k].emplace(std::move(v)); },
      [&](std::uint32_t k, const char* v, std::uint32_t n) {
        for (std::uint32_t j = 0; j < n; ++j) f.values[k + j].emplace(read_fixed<Out>(v + j * sizeof(Out)));
      });
  return f;
}

template <class F, class InT>
struct ProcessBackend {
  using In = InT;
  using Out = TaskResult<F, In>;
  using Done = ChunkOutcome;
  ProcessEngine* engine;
  F f;
  int requestor = -1;

  int n_jobs() const { return engine->n_jobs(); }
  int max_n_jobs() const { return engine->max_n_jobs(); }
  int grow_to(int n) { return engine->grow_to(n); }
  void check_health() { engine->check_health(); }
  Finished<Out> decode(Done&& d) { return decode_outcome<Out>(std::move(d)); }

  void submit(const std::shared_ptr<Sink<Done>>& sink, std::uint64_t first, std::vector<In>&& items) {
    ChunkTask t;
    t.runner = &run_element<F, In, Out>;
    t.fn = fn_identity(f);
    t.first = first;
    t.count = static_cast<std::uint32_t>(items.size());
    write_inputs<In>(t.inputs, items.begin(), items.size());
    t.input_size = &input_size<In>;
    t.done = [sink](ChunkOutcome&& o) { sink->put(std::move(o)); };
    t.cancelled = std::shared_ptr<std::atomic<bool>>(sink, &sink->cancelled);
    t.requestor = requestor;
    engine->post(std::move(t));
  }
};

/// The typed half of a direct map: reads the caller's input, writes the caller's output.
template <class F, class R>
class DirectMapOf final : public DirectMap {
 public:
  using In = std::ranges::range_value_t<R>;
  using Out = TaskResult<F, In>;

  DirectMapOf(F f, R& inputs, std::uint64_t total)
      : DirectMap(&run_element<F, In, Out>, fn_identity(f), total), inputs_(inputs), out_(total) {}

  void encode(std::uint64_t first, std::uint32_t count, Bytes& out) const override {
    auto it = std::ranges::begin(inputs_) + static_cast<std::ranges::range_difference_t<R>>(first);
    write_inputs<In>(out, it, count);
  }

  void deliver(std::uint64_t first, const char* records, std::uint32_t count,
               std::vector<Failure>& failures) override {
    file_records<Out>(
        first, records, count, failures, [&](std::uint32_t k, Out&& v) { out_[first + k] = std::move(v); },
        [&](std::uint32_t k, const char* v, std::uint32_t n) {
          if constexpr (std::is_same_v<Out, bool>) {
            for (std::uint32_t j = 0; j < n; ++j) out_[first + k + j] = read_fixed<bool>(v + j);
          } else {
            std::memcpy(static_cast<void*>(out_.data() + first + k), v, std::size_t{n} * sizeof(Out));
          }
        });
  }

  std::vector<Out> take() { return std::move(out_); }

 private:
  R& inputs_;
  std::vector<Out> out_;
};

template <class F>
constexpr void ProcessEngine::check_task() {
  require_fork_callable<F>();
}

template <class Fn, class In, class G>
ProcessBackend<Fn, In> ProcessEngine::backend(G&& f, int requestor) {
  return ProcessBackend<Fn, In>{this, Fn(std::forward<G>(f)), requestor};
}

template <class Out, class F, class R>
std::vector<Out> ProcessEngine::direct_map(F& f, R& inputs, const MapOptions& options) {
  validate_map_options(options);
  auto total = static_cast<std::uint64_t>(std::ranges::size(inputs));
  DirectMapOf<std::decay_t<F>, R> job(f, inputs, total);
  run_direct(job, options);
  return job.take();
}

template <class R, class Fn, class Tuple>
void ProcessEngine::post_apply(std::shared_ptr<std::promise<R>> promise, Fn fn, Tuple args, int requestor) {
  using Val = ApplyValue<Fn, Tuple>;
  ChunkTask t;
  t.runner = &run_apply<Fn, Tuple, Val>;
  t.fn = fn_identity(fn);
  t.count = 1;
  write_inputs<Tuple>(t.inputs, &args, 1);
  t.input_size = &input_size<Tuple>;
  t.requestor = requestor;
  t.done = [promise = std::move(promise)](ChunkOutcome&& o) {
    if (o.skipped) {
      promise->set_exception(std::make_exception_ptr(PoolError("ProcessPool: stopped before the task ran")));
      return;
    }
    auto f = decode_outcome<Val>(std::move(o));
    if (!f.failures.empty()) {
      promise->set_exception(std::make_exception_ptr(TaskError(std::move(f.failures))));
    } else if constexpr (std::is_void_v<R>) {
      promise->set_value();
    } else {
      promise->set_value(std::move(*f.values[0]));
    }
  };
  post(std::move(t));
}

}  // namespace mpmux::pool_detail
