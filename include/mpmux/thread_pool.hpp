// ThreadPool: an mpire-style worker pool of threads in this process.
#pragma once
#include "mpmux/bits/thread_engine.hpp"
#include "mpmux/pool_map.hpp"
#include "mpmux/pool_options.hpp"

namespace mpmux {

/// A pool of n_jobs threads; the front (map family, apply, stop, insights) is BasicPool's.
/// Tasks may be any callable taking (const In&) or (Worker&, const In&), captures included.
///
/// The constructor throws UsageError for bad options (n_jobs <= 0, cpu id out of range,
/// task_timeout set, max_n_jobs below n_jobs, worker_requestors not one entry per worker up to
/// the cap), PoolError when a worker cannot be pinned or its worker_init throws.
class ThreadPool : public BasicPool<pool_detail::ThreadEngine> {
 public:
  using BasicPool::BasicPool;
};

}  // namespace mpmux
