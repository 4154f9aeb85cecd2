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

#include "mpmux/multiplexer.hpp"

namespace {

using Mux = mpmux::Multiplexer<std::uint64_t>;

std::string bcast(std::string s) {
  int n = static_cast<int>(s.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
  s.resize(static_cast<std::size_t>(n));
  MPI_Bcast(s.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
  return s;
}

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
    dir = Mux::create(data, argv[3], {.tag = "overhead"}).dir().string();
  }
  dir = bcast(dir);

  for (int r = 0; r < reps; ++r) {
    for (const bool fsync : {true, false}) {
      const std::string id = bcast(rank == 0 ? Mux(dir).create_read_session() : std::string());
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
