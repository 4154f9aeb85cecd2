// Option checks of the pools that run requestor affinity and growth (PoolOptions::
// worker_requestors, affinity_patience, max_n_jobs). A pool that does not run them yet calls
// validate_pool_options (pool/affinity.hpp), which rejects them by name.
#pragma once
#include "mpmux/pool_options.hpp"

namespace mpmux::pool_detail {

/// The workers a pool starts with and the most it may grow to (PoolOptions::max_n_jobs).
struct PoolSize {
  int n_jobs = 0;
  int cap = 0;
};

/// Checks every PoolOptions field, the scheduling ones included: cpu_ids per worker and
/// worker_requestors must cover the cap. Throws UsageError naming the option and value; `pool`
/// names the pool in messages.
PoolSize validate_scheduling_pool_options(const PoolOptions& options, const char* pool);

}  // namespace mpmux::pool_detail
