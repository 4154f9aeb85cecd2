// Options, worker context and reports shared by ThreadPool and ProcessPool.
#pragma once
#include <any>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iostream>
#include <ostream>
#include <memory>
#include <optional>
#include <string>
#include <typeindex>
#include <unordered_map>
#include <vector>

#include "mpmux/export.hpp"
#include "mpmux/pool_codec.hpp"
#include "mpmux/pool_error.hpp"

namespace mpmux {

/// What a task sees of the worker running it: its id (0..n_jobs-1, stable per worker slot, also
/// after a replacement), per-worker state and the pool's shared objects. A task asks for it by
/// taking `Worker&` as its first parameter.
class Worker {
 public:
  Worker(int id, const std::any* shared) : id_(id), shared_(shared) {}

  /// 0..n_jobs-1 (workers added by a late map take the next ids); -1 when the map runs
  /// serially in the caller (max_load_average).
  int id() const { return id_; }

  /// Per-worker state of type T, value-initialized on first use. It lives as long as the worker
  /// (across map calls on a persistent pool) and is reset when worker_lifespan replaces it.
  template <class T>
  T& state() {
    auto [it, fresh] = state_.try_emplace(std::type_index(typeid(T)));
    if (fresh) it->second.template emplace<T>();
    return std::any_cast<T&>(it->second);
  }

  /// The object given as PoolOptions::shared_objects, which may hold a T, a T* or a
  /// std::shared_ptr<T> (const or not). In a ProcessPool it is the copy-on-write image the
  /// worker inherited at fork, so it is never copied.
  template <class T>
  const T& shared() const {
    if (shared_ && shared_->has_value()) {
      if (auto* p = std::any_cast<T>(shared_)) return *p;
      if (auto* p = std::any_cast<const T*>(shared_)) return **p;
      if (auto* p = std::any_cast<T*>(shared_)) return **p;
      if (auto* p = std::any_cast<std::shared_ptr<const T>>(shared_)) return **p;
      if (auto* p = std::any_cast<std::shared_ptr<T>>(shared_)) return **p;
    }
    throw UsageError("Worker::shared<" + std::string(typeid(T).name()) +
                     ">: PoolOptions::shared_objects holds no such object");
  }

 private:
  int id_;
  const std::any* shared_;
  std::unordered_map<std::type_index, std::any> state_;
};

/// A value returned by worker_exit, kept as bytes so that it can cross a process boundary.
/// Any type the process pool can serialize converts to it implicitly.
class ExitValue {
 public:
  ExitValue() = default;
  template <class T, class = std::enable_if_t<!std::is_same_v<std::decay_t<T>, ExitValue>>>
  ExitValue(const T& value) {  // NOLINT(google-explicit-constructor): returned from lambdas
    pool_detail::Codec<T>::write(bytes_, value);
  }
  static ExitValue from_bytes(std::string bytes) {
    ExitValue v;
    v.bytes_ = std::move(bytes);
    return v;
  }
  template <class T>
  T as() const {
    return pool_detail::Codec<T>::read(bytes_);
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

/// Reads the 1-minute load average per core; the default reads /proc/loadavg and divides by
/// the number of CPUs this process may run on.
MPMUX_EXPORT double read_load_per_core();

/// Options fixed when a pool is built. Both pools validate them in their constructor and throw
/// UsageError naming the option and value.
struct PoolOptions {
  /// Number of workers at the start (a late map may add more, see max_n_jobs); default: the
  /// CPUs this process may run on. 0 or less is an error.
  std::optional<int> n_jobs;
  /// CPU pinning: {} none; one set ({{0, 1}}) for all workers; or one set per worker
  /// ({{0}, {1}}). Ids must be below the number of configured CPUs.
  std::vector<std::vector<int>> cpu_ids;
  /// A worker is replaced (exit, fresh state, init) after running this many chunks; 0: never.
  std::uint64_t worker_lifespan = 0;
  /// Runs in each worker when it starts (and in each replacement), before any task.
  std::function<void(Worker&)> worker_init;
  /// Runs in each worker when it ends; its value is collected by exit_values<T>().
  std::function<ExitValue(Worker&)> worker_exit;
  /// Read-only data for the tasks (Worker::shared<T>()); see Worker::shared.
  std::any shared_objects;
  /// Per-element time limit (ProcessPool only; a ThreadPool rejects it): the runaway worker is
  /// killed, the element reported as FailureKind::timeout, and the map goes on. 0: none.
  std::chrono::milliseconds task_timeout{0};
  /// When the 1-minute load per core is above this at the start of a call, the call runs
  /// serially in the caller (worker id -1). 0: never.
  double max_load_average = 0;
  /// Load source for max_load_average (tests inject one); default read_load_per_core.
  std::function<double()> load_reader;
  /// Record per-worker insights (times and the slowest elements). Costs two clock reads per
  /// element.
  bool enable_insights = false;
  /// ProcessPool: bytes of each shared-memory ring (one per direction per worker). Messages
  /// larger than a ring stream through it, so this bounds memory, not message size.
  std::size_t ring_bytes = std::size_t{1} << 20;
  /// ProcessPool: how often an element whose worker died while running it is re-run before it
  /// is reported as FailureKind::crash.
  int max_crash_retries = 3;

  /// Requestor affinity. Empty: none, tasks run in submission order. Otherwise one entry per worker (max_n_jobs of them when set, else
  /// n_jobs): worker i prefers the tasks of requestor worker_requestors[i] (an id >= 0 given as
  /// MapOptions::requestor or Requestor{id}); -1 leaves it unbound. A free worker bound to r
  /// takes (1) the oldest queued task of anyone if it has waited longer than affinity_patience,
  /// else (2) r's oldest task, else (3) anyone's oldest task. An unbound worker takes the oldest.
  std::vector<int> worker_requestors;
  /// How long a task may wait for its preferred worker before any free worker takes it, oldest
  /// first: the guarantee that no requestor starves. Negative is an error.
  std::chrono::milliseconds affinity_patience{100};
  /// Most workers the pool may grow to when a map with MapOptions::target_duration runs late.
  /// Default: n_jobs, never grow. Below n_jobs is an error. Added workers stay until stop(). A
  /// ProcessPool maps the shared memory of every worker up to this cap when it is built.
  std::optional<int> max_n_jobs;
};

/// Names the submitter of an apply/apply_async call for requestor affinity:
/// `pool.apply_async(mpmux::Requestor{1}, f, args...)`. -1: none.
struct Requestor {
  int id = -1;
};

/// What to do when an element fails.
enum class OnError {
  raise_first,  ///< throw TaskError at the first failure; the rest of the call is cancelled
  report_all,   ///< process every element, then throw TaskError listing all failures
};

/// Where a call stands, given to MapOptions::progress.
struct Progress {
  std::uint64_t done = 0;    ///< elements finished (failed ones included)
  std::uint64_t failed = 0;  ///< of which failed
  std::uint64_t total = 0;   ///< 0 when unknown (a generator without iterable_len)
  double elapsed_s = 0;
  double rate = 0;    ///< elements per second so far
  double eta_s = -1;  ///< -1 when unknown
  bool finished = false;
};

/// Formats `p` as one progress-bar line: "  4200/10000  42% |#####     | 3100/s ETA 2s".
MPMUX_EXPORT std::string format_progress(const Progress& p);
/// A progress callback that redraws the bar on `out` (with \r), and ends the line when done.
/// Inline, like print_growth: the pool library hands progress to callbacks and never prints.
inline std::function<void(const Progress&)> progress_bar(std::ostream& out) {
  return [&out](const Progress& p) {
    out << '\r' << format_progress(p) << "\033[K";
    if (p.finished) out << '\n';
    out.flush();
  };
}

/// What MapOptions::on_grow is told when a map with a target_duration runs late: the pool added
/// workers (workers_after > workers_before), or it was already at its cap (equal; said once).
struct GrowthNotice {
  int workers_before = 0;
  int workers_after = 0;
  int cap = 0;                  ///< PoolOptions::max_n_jobs
  double rate = 0;              ///< elements per second measured since the start or the last growth
  std::uint64_t remaining = 0;  ///< elements not finished
  double eta_s = 0;             ///< remaining / rate
  double time_left_s = 0;       ///< until target_duration; negative once it has passed
};

/// Formats `g` as one line: "mpmux pool: 120 elements/s leaves 42.0 s of work for 20.0 s;
/// adding 2 workers (4, cap 6)" or "...; already at the cap of 6 workers".
MPMUX_EXPORT std::string format_growth(const GrowthNotice& g);

/// The default of MapOptions::on_grow: format_growth(g) as one line on std::cerr. The pool front
/// puts it in when a call gives none; it is inline so that the printing happens in the caller's
/// program, never in the pool library.
inline void print_growth(const GrowthNotice& g) { std::cerr << format_growth(g) << std::endl; }

/// Options of one map/imap/apply call.
struct MapOptions {
  /// Elements per chunk (one task); 0 is an error. Default: guided,
  /// c = clamp(ceil(remaining / (2 * n_jobs)), 1, max_chunk_size).
  std::optional<std::uint64_t> chunk_size;
  /// Upper bound of guided chunks.
  std::uint64_t max_chunk_size = 4096;
  /// Number of inputs when the range cannot tell (a generator): used by guided chunking and
  /// the progress total.
  std::optional<std::uint64_t> iterable_len;
  /// At most this many chunks are taken from the input and not yet returned to the caller;
  /// the input is never read further ahead. Default: 3 * n_jobs.
  std::optional<std::uint64_t> max_tasks_active;
  OnError on_error = OnError::raise_first;
  /// Called in the calling thread as results arrive, at most every progress_interval, and once
  /// at the end with finished = true.
  std::function<void(const Progress&)> progress;
  std::chrono::milliseconds progress_interval{100};
  /// The submitter of this call, for PoolOptions::worker_requestors: its chunks go preferably to
  /// the workers bound to it. -1: none (any worker). Below -1 is an error.
  int requestor = -1;
  /// Wanted duration of the call, from its start; 0: none. When the total is known (a sized
  /// range or iterable_len) and the rate measured since the start or the last growth (after at
  /// least one finished chunk) says the remaining elements will finish late, the pool adds the
  /// workers that rate says are needed, up to PoolOptions::max_n_jobs, and says so (on_grow);
  /// late at the cap, it says so once. Guided chunks are then cut for the cap.
  std::chrono::milliseconds target_duration{0};
  /// Told of each growth (and of lateness at the cap), in the calling thread. Default
  /// (print_growth): one line (format_growth) on std::cerr.
  std::function<void(const GrowthNotice&)> on_grow;
};

/// Time spent by one worker slot (all its incarnations), in seconds.
struct WorkerInsights {
  int id = 0;
  double starting_s = 0;  ///< fork/thread start until ready (ProcessPool: fork to first loop)
  double init_s = 0;      ///< in worker_init
  double waiting_s = 0;   ///< idle, waiting for a chunk
  double working_s = 0;   ///< running tasks
  double exit_s = 0;      ///< in worker_exit
  std::uint64_t chunks = 0;
  std::uint64_t elements = 0;
  std::uint64_t restarts = 0;  ///< replacements (lifespan, crash, timeout)
};

/// One slow element: its index in the call that ran it, and its duration.
struct SlowTask {
  std::uint64_t index = 0;
  double seconds = 0;
  int worker = 0;
};

/// Per-worker insights (PoolOptions::enable_insights) and the 5 slowest elements seen.
struct Insights {
  std::vector<WorkerInsights> workers;
  std::vector<SlowTask> slowest;
};

/// A readable multi-line summary of `insights`.
MPMUX_EXPORT std::string format_insights(const Insights& insights);

}  // namespace mpmux
