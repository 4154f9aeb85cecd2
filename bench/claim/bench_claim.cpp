// Claim + read of one element, chunk 1, on each path, each against its bare loop through the same
// MPI component, measured in one run, taking turns:
//   claimer (node-shared memory)      vs bare        (MPI_Fetch_and_op + MPI_Get, MPI_Win_allocate)
//                                     and bare_shared (the same on MPI_Win_allocate_shared: osc/sm)
//   claimer_published (open hand-out) vs bare        (and claimer_published_ratio= against claimer)
//   claimer_remote (MPI_Get)          vs bare_remote (the same windows as the claimer's remote path)
//   claimer_two_sided (MPMUX_CLAIM)   vs bare_two_sided (ADLB-style request/reply to rank 0)
// Prints a table, the path each claimer took, and machine-readable lines (<contender>_us=,
// <contender>_path=, claimer_ratio=, claimer_remote_ratio=, claimer_two_sided_ratio=) with medians
// in microseconds; nan where the MPI could not make a bare contender's windows.
//
//   mpirun -n 2 bench_claim [--claims N] [--reps R] [--bytes B] [--no-remote]
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
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
  std::string path;        // the components serving its windows (one-sided contenders)
  double median() const {
    if (std::any_of(us.begin(), us.end(), [](double x) { return std::isnan(x); })) return std::nan("");
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

  using claim_bench::ClaimerPath;
  std::vector<Contender> contenders = {
      {"bare", {}, ""}, {"bare_shared", {}, ""}, {"claimer", {}, ""}, {"claimer_published", {}, ""}};
  if (o.remote) {
    contenders.push_back({"bare_remote", {}, ""});
    contenders.push_back({"claimer_remote", {}, ""});
  }
  contenders.push_back({"bare_two_sided", {}, ""});
  contenders.push_back({"claimer_two_sided", {}, ""});
  auto run = [&](Contender& c) {
    if (c.name == "bare") return claim_bench::bare_us(comm, o.claims, o.bytes, &c.path);
    if (c.name == "bare_shared") return claim_bench::bare_shared_us(comm, o.claims, o.bytes, &c.path);
    if (c.name == "bare_remote") return claim_bench::bare_remote_us(comm, o.claims, o.bytes, &c.path);
    if (c.name == "bare_two_sided") return claim_bench::bare_two_sided_us(comm, o.claims, o.bytes);
    const auto path = c.name == "claimer"             ? ClaimerPath::node_shared
                      : c.name == "claimer_published" ? ClaimerPath::published
                      : c.name == "claimer_remote"    ? ClaimerPath::remote
                                                      : ClaimerPath::two_sided;
    return claim_bench::claimer_us(comm, o.claims, o.bytes, path, &c.path);
  };
  // One untimed warm-up round, then the contenders take turns in every repetition.
  for (auto& c : contenders) run(c);
  bool wrong = false;
  for (int r = 0; r < o.reps; ++r) {
    for (auto& c : contenders) {
      const double us = run(c);
      wrong |= us < 0;
      c.us.push_back(us);
    }
  }
  auto median_of = [&](const std::string& name) {
    for (const auto& c : contenders)
      if (c.name == name) return c.median();
    return std::nan("");
  };

  if (rank == 0) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    std::printf("claim + read of one %zu-byte element, chunk 1, %d ranks, %d x %llu claims\n", o.bytes, size,
                o.reps, static_cast<unsigned long long>(o.claims));
    std::printf("machine: %s, %s, %ld cpus, %s\n\n", host, cpu_model().c_str(), sysconf(_SC_NPROCESSORS_ONLN),
                mpi_library().c_str());
    std::printf("%-18s %10s %10s %10s %8s  %s\n", "contender", "median_us", "min_us", "max_us", "ratio",
                "path");
    for (const auto& c : contenders) {
      const auto [lo, hi] = std::minmax_element(c.us.begin(), c.us.end());
      // Each claimer against the bare loop of its own path (the open hand-out: node-shared).
      std::string base = c.name.rfind("claimer", 0) == 0 ? "bare" + c.name.substr(7) : c.name;
      if (c.name == "claimer_published") base = "bare";
      std::printf("%-18s %10.3f %10.3f %10.3f %8.2f  %s\n", c.name.c_str(), c.median(), *lo, *hi,
                  c.median() / median_of(base), c.path.c_str());
    }
    std::printf("\n");
    for (const auto& c : contenders)
      for (const double us : c.us) std::printf("sample_us %s %.4f\n", c.name.c_str(), us);
    for (const auto& c : contenders) {
      std::printf("%s_us=%.4f\n", c.name.c_str(), c.median());
      if (!c.path.empty()) std::printf("%s_path=%s\n", c.name.c_str(), c.path.c_str());
    }
    std::printf("claimer_ratio=%.3f\n", median_of("claimer") / median_of("bare"));
    std::printf("claimer_published_ratio=%.3f\n", median_of("claimer_published") / median_of("claimer"));
    if (o.remote)
      std::printf("claimer_remote_ratio=%.3f\n", median_of("claimer_remote") / median_of("bare_remote"));
    std::printf("claimer_two_sided_ratio=%.3f\n",
                median_of("claimer_two_sided") / median_of("bare_two_sided"));
    if (wrong) std::printf("error: a contender read wrong elements\n");
  }
  MPI_Finalize();
  return wrong ? 1 : 0;
}
