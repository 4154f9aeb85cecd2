// The contenders of the claim benchmark. Each is collective over `comm`: it sets up (untimed),
// lets rank 1 claim and read `claims` elements of `element_bytes` bytes one at a time while the
// other ranks wait in MPI_Barrier, and returns rank 1's microseconds per claim on every rank.
#pragma once
#include <mpi.h>

#include <cstddef>
#include <cstdint>

namespace claim_bench {

/// MPI_Fetch_and_op + MPI_Win_flush, then MPI_Get + MPI_Win_flush, on MPI_Win_allocate windows.
double bare_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes);

/// mpmux::RmaClaimer::claim with chunk 1. With `remote`, rank 1 reads through MPI_Get
/// (MPMUX_RMA_NO_SHARED=1) instead of the node-shared memory.
double claimer_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes, bool remote);

/// Sends rank 1's value to every rank (the contenders time on rank 1).
double from_rank1(MPI_Comm comm, double value);

}  // namespace claim_bench
