// Elements per second of a Multiplexer<T> loop with an empty body, outcomes journaled.
// Usage: mpirun -n R bench_multiplexer N REPS ROOTDIR
// Prints one line per repetition on rank 0: "multiplexer_s=<seconds> elements=<n>".
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "../common/range_session.hpp"

using bench::RangeMux;

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const bench::RangeArgs args = bench::range_args(argc, argv);
  const std::uint64_t n = args.n;
  const int reps = args.reps;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const std::string dir = bench::create_range_set(args, "bench");
  for (int r = 0; r < reps; ++r) {
    std::string id = rank == 0 ? RangeMux(dir).create_read_session() : std::string();
    id = bench::bcast(id);
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    RangeMux mux(id, MPI_COMM_WORLD);
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
  if (rank == 0) RangeMux(dir).destroy();
  MPI_Finalize();
  return 0;
}
