// Claim + read of one element, chunk 1: mpmux's RmaClaimer against a bare MPI_Fetch_and_op +
// MPI_Get loop, measured in one run, taking turns. Prints a table and machine-readable lines
// (bare_us=, claimer_us=, claimer_remote_us=, claimer_ratio=) with medians in microseconds.
//
//   mpirun -n 2 bench_claim [--claims N] [--reps R] [--bytes B] [--no-remote]
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "contenders.hpp"

namespace claim_bench {

double from_rank1(MPI_Comm comm, double value) {
  MPI_Bcast(&value, 1, MPI_DOUBLE, 1, comm);
  return value;
}

}  // namespace claim_bench

namespace {

struct Options {
  std::uint64_t claims = 100000;
  int reps = 7;
  std::size_t bytes = 32;
  bool remote = true;
};

// Returns false (after printing one line on rank 0) when an argument is not understood.
bool parse(int argc, char** argv, Options& o, bool print) {
  auto fail = [&](const std::string& what) {
    if (print) {
      std::fprintf(stderr, "bench_claim: %s (options: --claims N --reps R --bytes B --no-remote)\n",
                   what.c_str());
    }
    return false;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--no-remote") {
      o.remote = false;
      continue;
    }
    if (arg != "--claims" && arg != "--reps" && arg != "--bytes") {
      return fail("unknown argument '" + arg + "'");
    }
    if (i + 1 >= argc) return fail(arg + " needs a value");
    const std::string text = argv[++i];
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v < 1 || (arg == "--reps" && v > 1000)) {
      return fail(arg + " " + text + ": expected a positive integer");
    }
    if (arg == "--claims") o.claims = v;
    if (arg == "--reps") o.reps = static_cast<int>(v);
    if (arg == "--bytes") o.bytes = v;
  }
  return true;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown cpu";
}

std::string mpi_library() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string s(text, static_cast<std::size_t>(length));
  return s.substr(0, s.find_first_of(",\n"));
}

struct Contender {
  std::string name;
  std::vector<double> us;  // per claim, one value per repetition
  double median() const {
    auto v = us;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  Options o;
  if (!parse(argc, argv, o, rank == 0) || size < 2) {
    if (rank == 0 && size < 2) std::fprintf(stderr, "bench_claim: needs 2 ranks (mpirun -n 2 bench_claim)\n");
    MPI_Finalize();
    return 2;
  }

  std::vector<Contender> contenders = {{"bare", {}}, {"claimer", {}}};
  if (o.remote) contenders.push_back({"claimer_remote", {}});
  auto run = [&](std::size_t c) {
    switch (c) {
      case 0:
        return claim_bench::bare_us(comm, o.claims, o.bytes);
      case 1:
        return claim_bench::claimer_us(comm, o.claims, o.bytes, false);
      default:
        return claim_bench::claimer_us(comm, o.claims, o.bytes, true);
    }
  };
  // One untimed warm-up round, then the contenders take turns in every repetition.
  for (std::size_t c = 0; c < contenders.size(); ++c) run(c);
  bool wrong = false;
  for (int r = 0; r < o.reps; ++r) {
    for (std::size_t c = 0; c < contenders.size(); ++c) {
      const double us = run(c);
      wrong |= us < 0;
      contenders[c].us.push_back(us);
    }
  }

  if (rank == 0) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    std::printf("claim + read of one %zu-byte element, chunk 1, %d ranks, %d x %llu claims\n", o.bytes, size,
                o.reps, static_cast<unsigned long long>(o.claims));
    std::printf("machine: %s, %s, %ld cpus, %s\n\n", host, cpu_model().c_str(), sysconf(_SC_NPROCESSORS_ONLN),
                mpi_library().c_str());
    std::printf("%-16s %10s %10s %10s %8s\n", "contender", "median_us", "min_us", "max_us", "ratio");
    const double base = contenders[0].median();
    for (const auto& c : contenders) {
      const auto [lo, hi] = std::minmax_element(c.us.begin(), c.us.end());
      std::printf("%-16s %10.3f %10.3f %10.3f %8.2f\n", c.name.c_str(), c.median(), *lo, *hi,
                  c.median() / base);
    }
    std::printf("\n");
    for (const auto& c : contenders) std::printf("%s_us=%.4f\n", c.name.c_str(), c.median());
    std::printf("claimer_ratio=%.3f\n", contenders[1].median() / base);
    if (wrong) std::printf("error: a contender read wrong elements\n");
  }
  MPI_Finalize();
  return wrong ? 1 : 0;
}
