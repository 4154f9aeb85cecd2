// bench_report_journal MUX_ID [WORKERS]: records an attempt for every element of the session as
// two runs of WORKERS/2 ranks each (default 64 in all) on four hosts would: durations around
// 50 ms with a long tail, 0.5% of the elements failing once and done on their retry, 0.05%
// failing for good (two attempts), 0.1% twenty times slower. Two journals, no fsync. Prints the
// number of attempts written.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mpmux/journal.hpp"
#include "mpmux/session.hpp"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: bench_report_journal MUX_ID [WORKERS]\n");
    return 2;
  }
  try {
    const mpmux::Session session = mpmux::Session::open(mpmux::MuxId::parse(argv[1]));
    const std::uint64_t total = session.total();
    const int workers = std::max(2, argc == 3 ? std::atoi(argv[2]) : 64);
    std::vector<std::unique_ptr<mpmux::JournalWriter>> runs;
    for (std::uint32_t p = 0; p < 2; ++p) {
      runs.push_back(
          std::make_unique<mpmux::JournalWriter>(session, "node" + std::to_string(2 * p), 4000 + p));
      runs.back()->set_fsync(false);
    }
    std::mt19937_64 rng(1);
    std::lognormal_distribution<double> seconds(std::log(0.05), 0.5);
    std::uniform_real_distribution<double> unit(0, 1);
    const std::int64_t t0 = 1795304112000000000;
    std::vector<std::int64_t> clock(workers, t0);  // when each worker is free again
    std::uint64_t attempts = 0;
    mpmux::Outcome o;
    for (std::uint64_t i = 0; i < total; ++i) {
      // The worker free first takes the element, as a claim by the idle would.
      const auto w = static_cast<int>(std::min_element(clock.begin(), clock.end()) - clock.begin());
      const double u = unit(rng);
      const int tries = u < 0.0055 ? 2 : 1;
      const bool fails_for_good = u < 0.0005;
      const double slow = unit(rng) < 0.001 ? 20 : 1;
      for (int a = 1; a <= tries; ++a) {
        const bool failed = a < tries || fails_for_good;
        o.type = failed ? mpmux::RecordType::failed : mpmux::RecordType::done;
        o.flags = failed && a == tries ? mpmux::Outcome::kFinal : 0;
        o.index = i;
        o.attempt = static_cast<std::uint32_t>(a);
        o.worker = static_cast<std::uint32_t>(w % (workers / 2) + 1);
        o.host = "node" + std::to_string(2 * (w / (workers / 2)) + w % 2);
        o.pid = 10000 + static_cast<std::uint32_t>(w);
        o.exit_code = failed ? 3 : 0;
        o.t_start = clock[w];
        o.t_end = o.t_start + static_cast<std::int64_t>(seconds(rng) * slow * 1e9);
        o.stderr_tail = failed ? "simulated failure of element " + std::to_string(i) + "\n" : "";
        o.result = failed ? "" : std::to_string(i) + "\n";
        clock[w] = o.t_end + 1000000;
        mpmux::JournalWriter& run = *runs[static_cast<std::size_t>(w / (workers / 2))];
        run.append(o);
        run.sync();
        ++attempts;
      }
    }
    for (auto& run : runs) run->flush();
    std::printf("%llu\n", static_cast<unsigned long long>(attempts));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_report_journal: %s\n", e.what());
    return 1;
  }
  return 0;
}
