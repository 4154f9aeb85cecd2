// ProcessPool: map of 10^6 small elements with chunk_size 1000, and the unchunked apply round trip.
#include <numeric>
#include <vector>

#include "bench_common.hpp"
#include "mpmux/process_pool.hpp"

int main(int argc, char** argv) {
  int reps = bench::reps(argc, argv);
  mpmux::ProcessPool pool;  // forked before anything else starts a thread
  std::vector<std::uint64_t> in(bench::kProcessElements);
  std::iota(in.begin(), in.end(), 0);
  std::uint64_t check = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<std::uint64_t> out;
    bench::sample("process_map_1e6", "mpmux_process", bench::seconds([&] {
                    out = pool.map(bench::tiny, in, {.chunk_size = bench::kProcessChunk});
                  }));
    check += out[12345];
  }
  const int n = 20000;
  for (int r = 0; r < reps; ++r) {
    double s = bench::seconds([&] {
      for (int i = 0; i < n; ++i) check += pool.apply(bench::tiny, std::uint64_t(i));
    });
    bench::sample("round_trip_per_task", "mpmux_process", s / n);
  }
  return check == 42 ? 1 : 0;
}
