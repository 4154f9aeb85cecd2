// ThreadPool: map of 10^7 tiny elements (default guided chunks), and the unchunked apply round trip.
#include <numeric>
#include <vector>

#include "bench_common.hpp"
#include "mpmux/thread_pool.hpp"

int main(int argc, char** argv) {
  int reps = bench::reps(argc, argv);
  mpmux::ThreadPool pool;
  std::vector<std::uint64_t> in(bench::kThreadElements);
  std::iota(in.begin(), in.end(), 0);
  std::uint64_t check = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<std::uint64_t> out;
    bench::sample("thread_map_1e7", "mpmux_thread", bench::seconds([&] { out = pool.map(bench::tiny, in); }));
    check += out[12345];
  }
  const int n = 20000;
  for (int r = 0; r < reps; ++r) {
    double s = bench::seconds([&] {
      for (int i = 0; i < n; ++i) check += pool.apply(bench::tiny, std::uint64_t(i));
    });
    bench::sample("round_trip_per_task", "mpmux_thread", s / n);
  }
  return check == 42 ? 1 : 0;  // keeps the work observable
}
