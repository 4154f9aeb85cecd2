// ProcessPool: an mpire-style worker pool of forked processes fed through shared memory.
#pragma once
#include <sys/types.h>

#include <vector>

#include "mpmux/bits/process_engine.hpp"
#include "mpmux/pool_codec.hpp"
#include "mpmux/pool_map.hpp"
#include "mpmux/pool_options.hpp"

namespace mpmux {

/// A pool of n_jobs forked worker processes; the front (map family, apply, stop, insights) is
/// BasicPool's, as for ThreadPool.
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
///
/// Requestor affinity and growth toward a target completion time work as in ThreadPool; the
/// workers a late map adds are forked by the fork server, so they too see the program as it
/// was when the pool was built.
///
/// The constructor forks the server and the workers, runs worker_init in each and waits until
/// all are ready. It throws UsageError for bad options, PoolError when a worker cannot start.
class ProcessPool : public BasicPool<pool_detail::ProcessEngine> {
 public:
  using BasicPool::BasicPool;

  /// The worker processes alive now (for tests and monitoring).
  std::vector<pid_t> worker_pids() const { return engine().worker_pids(); }
  /// The fork server, the pool's only direct child process.
  pid_t server_pid() const { return engine().server_pid(); }
};

}  // namespace mpmux
