// oneTBB: the same map with parallel_for (auto partitioner).
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

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
    bench::sample("thread_map_1e7", "tbb_parallel_for", bench::seconds([&] {
                    out.resize(in.size());
                    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, in.size()),
                                      [&](const tbb::blocked_range<std::size_t>& r) {
                                        for (std::size_t i = r.begin(); i != r.end(); ++i) out[i] = bench::tiny(in[i]);
                                      });
                  }));
    check += out[12345];
  }
  return check == 42 ? 1 : 0;
}
