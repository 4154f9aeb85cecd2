// CPU pinning and option checks shared by the thread and process pools.
#pragma once
#include <string>
#include <vector>

#include "mpmux/pool_options.hpp"

namespace mpmux::pool_detail {

/// Checks n_jobs, cpu_ids and worker_lifespan; returns the number of workers. Throws
/// UsageError naming the option and value. `pool` names the pool in messages.
int validate_pool_options(const PoolOptions& options, const char* pool);

/// The CPU set worker `id` is pinned to (empty: not pinned).
std::vector<int> cpu_set_for(const PoolOptions& options, int id);

/// Pins the calling thread to `cpus` (no-op when empty); throws PoolError naming the worker.
void pin_calling_thread(const std::vector<int>& cpus, int worker_id);

/// CPUs this process may run on (sched_getaffinity), at least 1.
int usable_cpus();

}  // namespace mpmux::pool_detail
