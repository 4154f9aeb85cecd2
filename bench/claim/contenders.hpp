// The contenders of the claim benchmark. Each is collective over `comm`: it sets up (untimed),
// lets rank 1 claim and read `claims` elements of `element_bytes` bytes one at a time while the
// other ranks wait (in MPI_Barrier, or answering requests for the two-sided contenders), and
// returns rank 1's microseconds per claim on every rank: negative when a read was wrong, NaN when
// the MPI could not make the windows.
#pragma once
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace claim_bench {

/// MPI_Fetch_and_op + MPI_Win_flush, then MPI_Get + MPI_Win_flush, on MPI_Win_allocate windows.
/// `paths` gets the components serving the two windows ("counter sm, elements sm").
double bare_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes, std::string* paths = nullptr);

/// The same on MPI_Win_allocate_shared windows: the component serving the claimer's node-shared
/// path (osc/sm), which reads the elements directly where this loop calls MPI_Get; NaN across nodes.
double bare_shared_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes,
                      std::string* paths = nullptr);

/// The same through the components the claimer's remote path uses: the counter in an
/// MPI_Win_allocate_shared window (one node), the elements in an MPI_Win_create window.
double bare_remote_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes,
                      std::string* paths = nullptr);

/// ADLB-style put/get: rank 1 sends a 16-byte request, rank 0 answers with the next index and
/// the element's bytes (blocking MPI_Recv from any source, MPI_Send).
double bare_two_sided_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes);

enum class ClaimerPath { node_shared, remote, two_sided, published };

/// mpmux::RmaClaimer::claim with chunk 1: reading the node-shared memory, through MPI_Get
/// (MPMUX_RMA_NO_SHARED=1 on rank 1; two-sided when the MPI has no one-sided way), or with every
/// window forced two-sided (MPMUX_CLAIM=two-sided); published: node-shared memory with the open
/// hand-out (HandOut::published), everything published before the claims start. `paths` gets the claimer's
/// paths on rank 0.
double claimer_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes, ClaimerPath path,
                  std::string* paths = nullptr);

/// Sends rank 1's value to every rank (the contenders time on rank 1).
double from_rank1(MPI_Comm comm, double value);

}  // namespace claim_bench
