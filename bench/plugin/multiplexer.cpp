// The C++ contender of bench/plugin: a Multiplexer<std::uint64_t> loop with an empty body over a
// session made by the caller, outcomes journaled, with the progress output that `mpmux run`
// prints, so that both contenders' rates come from the same line (run start to journal flush).
// Usage: mpirun -n R bench_plugin_multiplexer MUX_ID EXPECTED_SUM
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "mpmux/multiplexer.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (argc != 3) {
    if (rank == 0) std::fprintf(stderr, "usage: %s MUX_ID EXPECTED_SUM\n", argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  mpmux::RunOptions options;
  options.progress = true;
  options.progress_interval_s = 1;
  mpmux::Multiplexer<std::uint64_t> mux(argv[1], MPI_COMM_WORLD, options);
  std::uint64_t sum = 0;
  for (auto& e : mux) sum += e.value();
  std::uint64_t total = 0;
  MPI_Reduce(&sum, &total, 1, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
  const std::uint64_t expected = std::strtoull(argv[2], nullptr, 10);
  if (rank == 0 && total != expected) {
    std::fprintf(stderr, "wrong sum %llu, expected %llu\n", static_cast<unsigned long long>(total),
                 static_cast<unsigned long long>(expected));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return 0;
}
