#include "mpmux/mpi.hpp"

#include <cstdlib>

#include "mpmux/error.hpp"

namespace mpmux {

namespace {
void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}
}  // namespace

bool ensure_mpi() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return false;
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    throw ClaimError("MPI_Init_thread failed");
  std::atexit(finalize_at_exit);
  return true;
}

}  // namespace mpmux
