// What the MPI benchmark programs share: the "N REPS ROOTDIR" arguments, a string broadcast from
// rank 0, and an element set of 0..N-1 created by rank 0 whose directory every rank gets.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mpmux/multiplexer.hpp"

namespace bench {

using RangeMux = mpmux::Multiplexer<std::uint64_t>;

struct RangeArgs {
  std::uint64_t n = 0;
  int reps = 0;
  std::string root;
};

/// Parses "N REPS ROOTDIR" (after MPI_Init); a wrong count aborts the job with the usage line.
inline RangeArgs range_args(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s N REPS ROOTDIR\n", argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return {std::strtoull(argv[1], nullptr, 10), std::atoi(argv[2]), argv[3]};
}

/// Rank 0's s on every rank of MPI_COMM_WORLD.
inline std::string bcast(std::string s) {
  int n = static_cast<int>(s.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
  s.resize(static_cast<std::size_t>(n));
  MPI_Bcast(s.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
  return s;
}

/// The directory of a new element set holding 0..n-1, created by rank 0, on every rank.
inline std::string create_range_set(const RangeArgs& args, const std::string& tag) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string dir;
  if (rank == 0) {
    std::vector<std::uint64_t> data(args.n);
    for (std::uint64_t i = 0; i < args.n; ++i) data[i] = i;
    dir = RangeMux::create(data, args.root, {.tag = tag}).dir().string();
  }
  return bcast(dir);
}

}  // namespace bench
