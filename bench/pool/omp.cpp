// OpenMP: the same map with schedule(dynamic, 1024).
#include <numeric>
#include <vector>

#include "bench_common.hpp"

int main(int argc, char** argv) {
  int reps = bench::reps(argc, argv);
  std::vector<std::uint64_t> in(bench::kThreadElements);
  std::iota(in.begin(), in.end(), 0);
  std::uint64_t check = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<std::uint64_t> out;
    bench::sample("thread_map_1e7", "omp_dynamic", bench::seconds([&] {
                    out.resize(in.size());
                    const long n = static_cast<long>(in.size());
#pragma omp parallel for schedule(dynamic, 1024)
                    for (long i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = bench::tiny(in[static_cast<std::size_t>(i)]);
                  }));
    check += out[12345];
  }
  return check == 42 ? 1 : 0;
}
