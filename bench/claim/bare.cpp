// Baseline: the least a claim of one element can cost with MPI one-sided calls.
#include <mpi.h>

#include <cstring>
#include <vector>

#include "contenders.hpp"

namespace claim_bench {

double bare_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const bool root = rank == 0;
  MPI_Win counter_win = MPI_WIN_NULL;
  MPI_Win data_win = MPI_WIN_NULL;
  std::uint64_t* counter = nullptr;
  char* data = nullptr;
  MPI_Win_allocate(root ? sizeof(std::uint64_t) : 0, sizeof(std::uint64_t), MPI_INFO_NULL, comm, &counter,
                   &counter_win);
  MPI_Win_allocate(root ? static_cast<MPI_Aint>(claims * element_bytes) : 0, 1, MPI_INFO_NULL, comm, &data,
                   &data_win);
  MPI_Win_lock_all(MPI_MODE_NOCHECK, counter_win);
  MPI_Win_lock_all(MPI_MODE_NOCHECK, data_win);
  if (root) {
    *counter = 0;
    for (std::uint64_t i = 0; i < claims * element_bytes; ++i) data[i] = static_cast<char>('a' + i % 26);
    MPI_Win_sync(counter_win);
    MPI_Win_sync(data_win);
  }
  MPI_Barrier(comm);

  double us = 0;
  if (rank == 1) {
    std::vector<char> element(element_bytes);
    const std::uint64_t one = 1;
    std::uint64_t taken = 0;
    const int count = static_cast<int>(element_bytes);
    const double start = MPI_Wtime();
    for (;;) {
      std::uint64_t index = 0;
      MPI_Fetch_and_op(&one, &index, MPI_UINT64_T, 0, 0, MPI_SUM, counter_win);
      MPI_Win_flush(0, counter_win);
      if (index >= claims) break;
      MPI_Get(element.data(), count, MPI_BYTE, 0, static_cast<MPI_Aint>(index * element_bytes), count,
              MPI_BYTE, data_win);
      MPI_Win_flush(0, data_win);
      taken += element[0] != 0;
    }
    us = (MPI_Wtime() - start) / static_cast<double>(claims) * 1e6;
    if (taken != claims) us = -1;  // a wrong read shows as a negative time
  }
  // The root waits in MPI_Barrier: both windows are shared memory on one node (osc/rdma maps
  // MPI_Win_allocate memory of node-local peers), so rank 1 needs no progress from the root.
  MPI_Barrier(comm);
  MPI_Win_unlock_all(data_win);
  MPI_Win_unlock_all(counter_win);
  MPI_Win_free(&data_win);
  MPI_Win_free(&counter_win);
  return from_rank1(comm, us);
}

}  // namespace claim_bench
