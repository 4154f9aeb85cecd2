// CPU pinning and option checks shared by the thread and process pools.
#pragma once
#include <string>
#include <vector>

#include "mpmux/pool_options.hpp"

namespace mpmux::pool_detail {

/// The workers a pool starts with and the most it may grow to (PoolOptions::max_n_jobs).
struct PoolSize {
  int n_jobs = 0;
  int cap = 0;
};

/// Checks every PoolOptions field both pools share: cpu_ids and worker_requestors must cover
/// the cap. Throws UsageError naming the option and value; `pool` names the pool in messages.
PoolSize validate_pool_options(const PoolOptions& options, const char* pool);

/// The CPU set worker `id` is pinned to (empty: not pinned).
std::vector<int> cpu_set_for(const PoolOptions& options, int id);

/// Pins the calling thread to `cpus` (no-op when empty); throws PoolError naming the worker.
void pin_calling_thread(const std::vector<int>& cpus, int worker_id);

/// CPUs this process may run on (sched_getaffinity), at least 1.
int usable_cpus();

}  // namespace mpmux::pool_detail
