// Makes the C++ contender's element set: N values 0..N-1 as std::uint64_t, under ROOT; prints the
// mux directory. Usage: bench_plugin_make_set ROOT N
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "mpmux/multiplexer.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ROOT N\n", argv[0]);
    return 2;
  }
  std::vector<std::uint64_t> data(std::strtoull(argv[2], nullptr, 10));
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = i;
  std::printf("%s\n", mpmux::Multiplexer<std::uint64_t>::create(data, argv[1], {.tag = "cxx"}).dir().c_str());
  return 0;
}
