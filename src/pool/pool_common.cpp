#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "mpmux/bits/map_driver.hpp"
#include "mpmux/bits/pool_engine.hpp"
#include "pool/affinity.hpp"

namespace mpmux {

namespace {
std::string describe_failure(const std::vector<Failure>& failures) {
  if (failures.empty()) return "task failed";
  const Failure& f = failures.front();
  const char* kind = f.kind == FailureKind::timeout ? "timed out"
                     : f.kind == FailureKind::crash ? "crashed its worker"
                                                     : "failed";
  std::string msg = "element " + std::to_string(f.index) + " " + kind + ": " + f.message;
  if (failures.size() > 1) msg += " (and " + std::to_string(failures.size() - 1) + " more failures)";
  return msg;
}

std::string format_duration(double s) {
  if (s < 0) return "?";
  long t = std::lround(s);
  std::ostringstream o;
  if (t >= 3600) o << t / 3600 << "h" << std::setw(2) << std::setfill('0') << (t / 60) % 60 << "m";
  else if (t >= 60) o << t / 60 << "m" << std::setw(2) << std::setfill('0') << t % 60 << "s";
  else o << t << "s";
  return o.str();
}
}  // namespace

TaskError::TaskError(std::vector<Failure> failures)
    : PoolError(describe_failure(failures)), failures_(std::move(failures)) {}

double read_load_per_core() {
  std::ifstream in("/proc/loadavg");
  double load = 0;
  if (!(in >> load)) throw PoolError("reading /proc/loadavg for max_load_average failed");
  return load / pool_detail::usable_cpus();
}

std::string format_progress(const Progress& p) {
  std::ostringstream o;
  if (p.total > 0) {
    double frac = std::min(1.0, static_cast<double>(p.done) / static_cast<double>(p.total));
    int filled = static_cast<int>(frac * 20);
    o << p.done << "/" << p.total << " " << std::setw(3) << static_cast<int>(frac * 100) << "% |"
      << std::string(filled, '#') << std::string(20 - filled, ' ') << "|";
  } else {
    o << p.done;
  }
  o << " " << std::fixed << std::setprecision(p.rate < 10 ? 1 : 0) << p.rate << "/s";
  if (p.finished) o << " in " << format_duration(p.elapsed_s);
  else o << " ETA " << format_duration(p.eta_s);
  if (p.failed > 0) o << " (" << p.failed << " failed)";
  return o.str();
}

std::string format_growth(const GrowthNotice& g) {
  std::ostringstream o;
  o << "mpmux pool: " << std::fixed << std::setprecision(g.rate < 10 ? 1 : 0) << g.rate
    << " elements/s leaves " << std::setprecision(1) << g.eta_s << " s of work";
  if (g.time_left_s > 0) {
    o << " for " << g.time_left_s << " s";
  } else {
    o << " after the target time (passed " << -g.time_left_s << " s ago)";
  }
  if (g.workers_after > g.workers_before) {
    int added = g.workers_after - g.workers_before;
    o << "; adding " << added << (added == 1 ? " worker (" : " workers (") << g.workers_after << ", cap "
      << g.cap << ")";
  } else if (g.workers_before >= g.cap) {
    o << "; already at the cap of " << g.cap << (g.cap == 1 ? " worker" : " workers");
  } else {
    o << "; no worker could be added (" << g.workers_before << ", cap " << g.cap << ")";
  }
  return o.str();
}

std::string format_insights(const Insights& in) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(3);
  o << "worker  starting_s  init_s  waiting_s  working_s  exit_s  chunks  elements  restarts\n";
  for (const WorkerInsights& w : in.workers) {
    o << std::setw(6) << w.id << std::setw(12) << w.starting_s << std::setw(8) << w.init_s << std::setw(11)
      << w.waiting_s << std::setw(11) << w.working_s << std::setw(8) << w.exit_s << std::setw(8) << w.chunks
      << std::setw(10) << w.elements << std::setw(10) << w.restarts << "\n";
  }
  o << "slowest elements:";
  for (const SlowTask& t : in.slowest) o << " #" << t.index << " " << t.seconds << "s (worker " << t.worker << ")";
  o << "\n";
  return o.str();
}

namespace pool_detail {

void validate_map_options(const MapOptions& o) {
  if (o.chunk_size && *o.chunk_size == 0) throw UsageError("MapOptions::chunk_size must be at least 1 (got 0)");
  if (o.max_chunk_size == 0) throw UsageError("MapOptions::max_chunk_size must be at least 1 (got 0)");
  if (o.max_tasks_active && *o.max_tasks_active == 0)
    throw UsageError("MapOptions::max_tasks_active must be at least 1 (got 0)");
  validate_requestor(o.requestor, "MapOptions::requestor");
  if (o.target_duration.count() < 0) {
    throw UsageError("MapOptions::target_duration must not be negative (got " +
                     std::to_string(o.target_duration.count()) + " ms)");
  }
}

void validate_requestor(int requestor, const char* what) {
  if (requestor < -1) {
    throw UsageError(std::string(what) + " must be -1 (none) or a requestor id >= 0 (got " +
                     std::to_string(requestor) + ")");
  }
}

void keep_slowest(std::vector<SlowTask>& tasks, std::size_t keep) {
  auto slower = [](const SlowTask& a, const SlowTask& b) { return a.seconds > b.seconds; };
  if (tasks.size() > keep) {
    std::partial_sort(tasks.begin(), tasks.begin() + static_cast<std::ptrdiff_t>(keep), tasks.end(), slower);
    tasks.resize(keep);
  } else {
    std::sort(tasks.begin(), tasks.end(), slower);
  }
}

int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

PoolSize validate_pool_options(const PoolOptions& o, const char* pool) {
  std::string where = std::string(pool) + ": ";
  PoolSize size;
  size.n_jobs = o.n_jobs ? *o.n_jobs : usable_cpus();
  if (size.n_jobs <= 0) {
    throw UsageError(where + "n_jobs must be at least 1 (got " + std::to_string(size.n_jobs) + ")");
  }
  size.cap = o.max_n_jobs.value_or(size.n_jobs);
  if (size.cap < size.n_jobs) {
    throw UsageError(where + "max_n_jobs must be at least n_jobs = " + std::to_string(size.n_jobs) +
                     " (got " + std::to_string(size.cap) + ")");
  }
  // Per-worker options cover every worker the pool may grow to.
  const std::string count =
      o.max_n_jobs ? "max_n_jobs = " + std::to_string(size.cap) : "n_jobs = " + std::to_string(size.n_jobs);
  if (!o.cpu_ids.empty() && o.cpu_ids.size() != 1 && o.cpu_ids.size() != static_cast<std::size_t>(size.cap)) {
    throw UsageError(where + "cpu_ids has " + std::to_string(o.cpu_ids.size()) +
                     " sets; give one set for all workers or one per worker (" + count + ")");
  }
  long configured = sysconf(_SC_NPROCESSORS_CONF);
  if (configured <= 0) configured = CPU_SETSIZE;
  for (std::size_t k = 0; k < o.cpu_ids.size(); ++k) {
    if (o.cpu_ids[k].empty()) throw UsageError(where + "cpu_ids[" + std::to_string(k) + "] is an empty set");
    for (int cpu : o.cpu_ids[k]) {
      if (cpu < 0 || cpu >= configured || cpu >= CPU_SETSIZE) {
        throw UsageError(where + "cpu_ids[" + std::to_string(k) + "] names CPU " + std::to_string(cpu) +
                         ", out of range (this machine has CPUs 0-" + std::to_string(configured - 1) + ")");
      }
    }
  }
  if (o.max_load_average < 0) throw UsageError(where + "max_load_average must not be negative");
  if (o.task_timeout.count() < 0) throw UsageError(where + "task_timeout must not be negative");
  if (!o.worker_requestors.empty()) {
    if (o.worker_requestors.size() != static_cast<std::size_t>(size.cap)) {
      throw UsageError(where + "worker_requestors has " + std::to_string(o.worker_requestors.size()) +
                       " entries; give one per worker (" + count + ")");
    }
    for (std::size_t k = 0; k < o.worker_requestors.size(); ++k) {
      if (o.worker_requestors[k] < -1) {
        throw UsageError(where + "worker_requestors[" + std::to_string(k) + "] = " +
                         std::to_string(o.worker_requestors[k]) +
                         "; use a requestor id >= 0, or -1 for an unbound worker");
      }
    }
  }
  if (o.affinity_patience.count() < 0) {
    throw UsageError(where + "affinity_patience must not be negative (got " +
                     std::to_string(o.affinity_patience.count()) + " ms)");
  }
  return size;
}

std::vector<int> cpu_set_for(const PoolOptions& o, int id) {
  if (o.cpu_ids.empty()) return {};
  if (o.cpu_ids.size() == 1) return o.cpu_ids.front();
  return o.cpu_ids[static_cast<std::size_t>(id)];
}

void pin_calling_thread(const std::vector<int>& cpus, int worker_id) {
  if (cpus.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  // pid 0 means the calling thread on Linux, so each worker thread pins only itself.
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    throw PoolError("pinning worker " + std::to_string(worker_id) + " with sched_setaffinity failed: " +
                    std::strerror(errno));
  }
}

void WorkerReports::reserve(int cap) {
  std::lock_guard lock(mutex_);
  insights_.reserve(static_cast<std::size_t>(cap));
}

void WorkerReports::open_slots(int from, int to) {
  std::lock_guard lock(mutex_);
  for (int id = from; id < to; ++id) insights_.push_back(WorkerInsights{.id = id});
}

void WorkerReports::keep_slots(int n) {
  std::lock_guard lock(mutex_);
  insights_.resize(static_cast<std::size_t>(n));
}

void WorkerReports::add_slowest(const std::vector<SlowTask>& slow) {
  std::lock_guard lock(mutex_);
  slowest_.insert(slowest_.end(), slow.begin(), slow.end());
  keep_slowest(slowest_);
}

void WorkerReports::add_exit_value(ExitValue value) {
  std::lock_guard lock(mutex_);
  exit_values_.push_back(std::move(value));
}

void WorkerReports::fail(const std::string& what) {
  std::lock_guard lock(mutex_);
  if (error_.empty()) error_ = what;
}

std::string WorkerReports::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

void WorkerReports::check() const {
  std::lock_guard lock(mutex_);
  if (!error_.empty()) throw PoolError(error_);
}

Insights WorkerReports::insights() const {
  std::lock_guard lock(mutex_);
  return Insights{insights_, slowest_};
}

std::vector<ExitValue> WorkerReports::exit_values() const {
  std::lock_guard lock(mutex_);
  return exit_values_;
}

PoolEngine::PoolEngine(PoolOptions options, const char* pool) {
  PoolSize size = validate_pool_options(options, pool);
  options_ = std::move(options);
  initial_jobs_ = size.n_jobs;
  cap_ = size.cap;
  has_affinity_ = std::any_of(options_.worker_requestors.begin(), options_.worker_requestors.end(),
                              [](int r) { return r >= 0; });
  reports_.reserve(cap_);
}

}  // namespace pool_detail
}  // namespace mpmux
