// MPI start-up: the library initializes MPI only when nobody has.
#pragma once
#include <mpi.h>

#include "mpmux/export.hpp"

namespace mpmux {

/// Calls MPI_Init_thread(MPI_THREAD_FUNNELED) unless MPI is already initialized, and then
/// arranges MPI_Finalize at exit. Idempotent; every entry point that takes a communicator
/// calls it first. Returns true when this call initialized MPI.
MPMUX_EXPORT bool ensure_mpi();

}  // namespace mpmux
