// Per-element overhead of a Multiplexer<T> loop with the journal and results on: an empty body
// that records a 16-byte result. Each repetition runs a fresh read session twice, taking turns,
// once with the journal fdatasynced (group commit, the default) and once with fsync off.
// Usage: mpirun -n R bench_overhead N REPS ROOTDIR
// Prints one line per repetition and mode on rank 0:
//   "fsync=<0|1> us_per_element=<x> syncs=<n> syncs_per_s=<y> seconds=<s>"
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../common/range_session.hpp"

namespace {

using Mux = bench::RangeMux;

// The 16-byte result: the element and its index.
std::string result_of(std::uint64_t value, std::uint64_t index) {
  std::string r(16, '\0');
  std::memcpy(r.data(), &value, 8);
  std::memcpy(r.data() + 8, &index, 8);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const bench::RangeArgs args = bench::range_args(argc, argv);
  const std::uint64_t n = args.n;
  const int reps = args.reps;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const std::string dir = bench::create_range_set(args, "overhead");

  for (int r = 0; r < reps; ++r) {
    for (const bool fsync : {true, false}) {
      const std::string id = bench::bcast(rank == 0 ? Mux(dir).create_read_session() : std::string());
      mpmux::RunOptions options;
      options.fsync = fsync;
      MPI_Barrier(MPI_COMM_WORLD);
      const auto t0 = std::chrono::steady_clock::now();
      Mux mux(id, MPI_COMM_WORLD, options);
      for (auto& e : mux) e.set_result(result_of(e.value(), e.index()));
      MPI_Barrier(MPI_COMM_WORLD);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (rank == 0) {
        // Not timed: the journal must hold every element, or the loop measured nothing.
        const mpmux::Stat st = mux.stat();
        if (st.done != n) {
          std::fprintf(stderr, "only %llu of %llu elements done\n", static_cast<unsigned long long>(st.done),
                       static_cast<unsigned long long>(n));
          MPI_Abort(MPI_COMM_WORLD, 1);
        }
        const mpmux::RunSummary sum = mux.summary();
        std::printf("fsync=%d us_per_element=%.4f syncs=%llu syncs_per_s=%.2f seconds=%.6f\n", fsync ? 1 : 0,
                    s * 1e6 / static_cast<double>(n), static_cast<unsigned long long>(sum.syncs),
                    sum.seconds > 0 ? static_cast<double>(sum.syncs) / sum.seconds : 0.0, s);
        std::fflush(stdout);
      }
    }
  }
  if (rank == 0) Mux(dir).destroy();
  MPI_Finalize();
  return 0;
}
