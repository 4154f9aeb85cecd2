// What a run checks of the way srun started it.
#pragma once

namespace mpmux::run {

/// Refuses, with a UsageError naming `srun --mpi=pmix`, a process that srun started as one of
/// several tasks of a step (SLURM_STEP_NUM_TASKS > 1, no Open MPI launcher variables) when it
/// sees itself alone: N singletons instead of one job of N ranks (docs/design.md, "srun without
/// PMIx"). `mpi` says a launcher wired MPI: then MPI is initialized here, if nobody did, and
/// MPI_COMM_WORLD's size decides; without it the process is alone.
void check_srun_tasks(bool mpi);

}  // namespace mpmux::run
