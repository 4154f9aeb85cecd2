// What the MPI tests share: a rank in a communicator, and a string broadcast from rank 0.
#pragma once
#include <mpi.h>

#include <cstddef>
#include <string>

namespace mpitest {

inline int rank_of(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}

/// Rank 0's s on every rank of comm.
inline std::string bcast_string(std::string s, MPI_Comm comm) {
  int n = static_cast<int>(s.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, comm);
  s.resize(static_cast<std::size_t>(n));
  MPI_Bcast(s.data(), n, MPI_CHAR, 0, comm);
  return s;
}

}  // namespace mpitest
