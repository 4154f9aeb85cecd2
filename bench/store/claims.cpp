// bench_store_claims URL CLAIMANTS BATCHES BATCH_SIZE [link] [nosync] [create]: CLAIMANTS processes each
// claim and commit batches of BATCH_SIZE elements (no work in between) until BATCHES batches are done, on the
// store at URL. Prints claims_per_s= (batches claimed and committed per second, all claimants together) and
// the wall time.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "claim/shared_claimer.hpp"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: bench_store_claims URL CLAIMANTS BATCHES BATCH_SIZE [link] [nosync] [create]\n");
    return 2;
  }
  const std::string url = argv[1];
  const int claimants = std::atoi(argv[2]);
  const std::uint64_t batches = std::strtoull(argv[3], nullptr, 10);
  const std::uint64_t size = std::strtoull(argv[4], nullptr, 10);
  mpmux::store::StoreOptions store_options;
  for (int a = 5; a < argc; ++a) {
    if (std::string(argv[a]) == "link") store_options.exclusive_create = mpmux::store::ExclusiveCreate::link;
    if (std::string(argv[a]) == "nosync") store_options.durable = false;
    if (std::string(argv[a]) == "create") store_options.create_container = true;
  }
  mpmux::claim::SharedClaimOptions options;
  options.min_batch = options.max_batch = size;

  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> children;
  for (int c = 0; c < claimants; ++c) {
    pid_t pid = ::fork();
    if (pid == 0) {
      try {
        mpmux::claim::SharedStoreClaimer claimer(url, store_options, batches * size, options);
        while (auto b = claimer.claim()) claimer.commit(*b, std::chrono::nanoseconds(0));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_store_claims: %s\n", e.what());
        ::_exit(1);
      }
      ::_exit(0);
    }
    children.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (failed != 0) return 1;
  std::printf("claims_per_s=%.1f seconds=%.3f\n", static_cast<double>(batches) / seconds, seconds);
  return 0;
}
