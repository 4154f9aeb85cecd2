// Per-element overhead of a Multiplexer<T> loop with the journal and results on: an empty body
// that records a 16-byte result. Each repetition runs a fresh read session three times, taking
// turns: with the journal fdatasynced (group commit, the default), with fsync off, and fdatasynced
// with chunks of one element, so that every outcome reaches rank 0 in a message of its own (a
// worker reports before each claim), as the outcomes of elements of 5 ms or more do.
// Usage: mpirun -n R bench_overhead N REPS ROOTDIR
// Prints one line per repetition and mode on rank 0, with rank 0's CPU time per element (its
// coordinator's cost per outcome received, journaled and group-committed):
//   "fsync=<0|1> us_per_element=<x> syncs=<n> syncs_per_s=<y> seconds=<s> root_cpu_us=<c>"
//   "chunk1 us_per_element=<x> root_cpu_us=<c>"
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
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

// The calling thread's CPU time: rank 0's coordinator runs in the thread that iterates.
double thread_cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
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

  enum class Mode { fsync, no_fsync, chunk1 };
  for (int r = 0; r < reps; ++r) {
    for (const Mode mode : {Mode::fsync, Mode::no_fsync, Mode::chunk1}) {
      const bool fsync = mode != Mode::no_fsync;
      const std::string id = bench::bcast(rank == 0 ? Mux(dir).create_read_session() : std::string());
      mpmux::RunOptions options;
      options.fsync = fsync;
      if (mode == Mode::chunk1) options.chunk = {.min = 1, .max = 1};
      MPI_Barrier(MPI_COMM_WORLD);
      const auto t0 = std::chrono::steady_clock::now();
      const double cpu0 = thread_cpu_s();
      Mux mux(id, MPI_COMM_WORLD, options);
      for (auto& e : mux) e.set_result(result_of(e.value(), e.index()));
      const double cpu = thread_cpu_s() - cpu0;
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
        const double us = s * 1e6 / static_cast<double>(n);
        const double root_us = cpu * 1e6 / static_cast<double>(n);
        if (mode == Mode::chunk1) {
          std::printf("chunk1 us_per_element=%.4f root_cpu_us=%.4f\n", us, root_us);
        } else {
          std::printf(
              "fsync=%d us_per_element=%.4f syncs=%llu syncs_per_s=%.2f seconds=%.6f root_cpu_us=%.4f\n",
              fsync ? 1 : 0, us, static_cast<unsigned long long>(sum.syncs),
              sum.seconds > 0 ? static_cast<double>(sum.syncs) / sum.seconds : 0.0, s, root_us);
        }
        std::fflush(stdout);
      }
    }
  }
  if (rank == 0) Mux(dir).destroy();
  MPI_Finalize();
  return 0;
}
