// mpmux's claimer with chunk 1: one MPI_Fetch_and_op + MPI_Win_flush and a read of the element,
// or one request and reply on the two-sided path; with the open hand-out, a read of the slot too.
#include "mpmux/rma_claimer.hpp"

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "contenders.hpp"

namespace claim_bench {

double claimer_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes, ClaimerPath path,
                  std::string* paths) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::vector<std::uint64_t> pending;
  mpmux::ElementBuffer elements;
  if (rank == 0) {
    pending.resize(claims);
    std::string element(element_bytes, ' ');
    for (std::uint64_t i = 0; i < claims; ++i) {
      pending[i] = i;
      for (std::size_t b = 0; b < element_bytes; ++b) element[b] = static_cast<char>('a' + (i + b) % 26);
      elements.push(element);
    }
  }
  if (path == ClaimerPath::remote && rank == 1) setenv("MPMUX_RMA_NO_SHARED", "1", 1);
  if (path == ClaimerPath::two_sided) setenv("MPMUX_CLAIM", "two-sided", 1);
  const bool open = path == ClaimerPath::published;
  mpmux::RmaClaimer claimer(comm, 0, std::move(pending), std::move(elements), mpmux::ChunkPolicy{1, 1}, 1,
                            open ? mpmux::HandOut::published : mpmux::HandOut::all_at_once);
  unsetenv("MPMUX_RMA_NO_SHARED");
  unsetenv("MPMUX_CLAIM");
  if (open && rank == 0) {
    // Everything published before rank 1 starts: the cost measured is the slot read per claim.
    std::vector<std::uint64_t> positions(claims);
    for (std::uint64_t i = 0; i < claims; ++i) positions[i] = i;
    claimer.publish(positions);
    claimer.close();
  }
  if (paths != nullptr) {
    paths->clear();
    for (const auto& p : claimer.paths()) *paths += (paths->empty() ? "" : ", ") + p.window + " " + p.path;
  }
  MPI_Barrier(comm);

  double us = 0;
  if (rank == 1) {
    mpmux::Claim claim;
    std::uint64_t taken = 0;
    const double start = MPI_Wtime();
    while (claimer.claim(claim)) taken += claim.elements.data.size() == element_bytes;
    us = (MPI_Wtime() - start) / static_cast<double>(claims) * 1e6;
    if (taken != claims) us = -1;  // a wrong read shows as a negative time
  }
  // The others wait in release(): a barrier on the one-sided paths (the claimer never needs the
  // root to answer, see bare.cpp), the root's blocking service on the two-sided one.
  claimer.release();
  return from_rank1(comm, us);
}

}  // namespace claim_bench
