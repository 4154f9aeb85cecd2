// Elements per second of a Multiplexer<T> loop with an empty body, outcomes journaled.
// Usage: mpirun -n R bench_multiplexer N REPS ROOTDIR
// Prints one line per repetition on rank 0: "multiplexer_s=<seconds> elements=<n>".
#include "mpmux/multiplexer.hpp"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {
std::string bcast(std::string s) {
  int n = static_cast<int>(s.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
  s.resize(static_cast<std::size_t>(n));
  MPI_Bcast(s.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s N REPS ROOTDIR\n", argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const std::uint64_t n = std::strtoull(argv[1], nullptr, 10);
  const int reps = std::atoi(argv[2]);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string dir;
  if (rank == 0) {
    std::vector<std::uint64_t> data(n);
    for (std::uint64_t i = 0; i < n; ++i) data[i] = i;
    dir = mpmux::Multiplexer<std::uint64_t>::create(data, argv[3], {.tag = "bench"}).dir().string();
  }
  dir = bcast(dir);
  for (int r = 0; r < reps; ++r) {
    std::string id = rank == 0 ? mpmux::Multiplexer<std::uint64_t>(dir).create_read_session() : std::string();
    id = bcast(id);
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    mpmux::Multiplexer<std::uint64_t> mux(id, MPI_COMM_WORLD);
    std::uint64_t sum = 0;
    for (auto& e : mux) sum += e.value();
    MPI_Barrier(MPI_COMM_WORLD);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::uint64_t total = 0;
    MPI_Reduce(&sum, &total, 1, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      if (total != n * (n - 1) / 2) {
        std::fprintf(stderr, "wrong sum %llu\n", static_cast<unsigned long long>(total));
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      std::printf("multiplexer_s=%.6f elements=%llu\n", s, static_cast<unsigned long long>(n));
    }
  }
  if (rank == 0) mpmux::Multiplexer<std::uint64_t>(dir).destroy();
  MPI_Finalize();
  return 0;
}
