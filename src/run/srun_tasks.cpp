#include "run/srun_tasks.hpp"

#include <mpi.h>

#include <cstdlib>
#include <string>

#include "mpmux/error.hpp"
#include "mpmux/mpi.hpp"

namespace mpmux::run {

namespace {

// The tasks of the srun step this process is one of; 0 when srun did not start it (a batch script
// and mpirun's ranks inside a job have no SLURM_STEP_NUM_TASKS, or Open MPI's variables).
long srun_step_tasks() {
  const char* tasks = std::getenv("SLURM_STEP_NUM_TASKS");
  if (tasks == nullptr || std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) return 0;
  return std::strtol(tasks, nullptr, 10);
}

}  // namespace

void check_srun_tasks(bool mpi) {
  const long tasks = srun_step_tasks();
  if (tasks <= 1) return;
  int ranks = 1;
  if (mpi) {
    ensure_mpi();
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  }
  if (ranks == 1)
    throw UsageError("srun started " + std::to_string(tasks) +
                     " tasks that MPI sees as separate jobs of one rank each: launch with `srun --mpi=pmix` "
                     "(or mpirun inside the allocation)");
}

}  // namespace mpmux::run
