// bench_io_journal MUX_ID: records a done outcome for every element of the session, as a run of
// two workers would (two journals, guided chunks taking turns, a short result and a host each),
// without fsync, so the results export has a journal of realistic shape to fold.
// bench_io_journal --syncs DIR SECONDS: how many fdatasyncs a second a journal in DIR makes, one
// record appended and flushed at a time (the cost of a group commit on that file system).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "mpmux/journal.hpp"
#include "mpmux/session.hpp"

namespace {

int sync_rate(const char* dir, double seconds) {
  mpmux::JournalWriter w(dir, "bench-syncs", "node1", 1001);
  mpmux::Outcome o;
  o.host = "node1";
  const std::uint64_t before = w.syncs();
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    ++o.index;
    w.append(o);
    w.flush();
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::printf("journal_syncs_per_s=%.1f\n", static_cast<double>(w.syncs() - before) / elapsed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool syncs = argc == 4 && std::string(argv[1]) == "--syncs";
  if (argc != 2 && !syncs) {
    std::fprintf(stderr, "usage: bench_io_journal MUX_ID | bench_io_journal --syncs DIR SECONDS\n");
    return 2;
  }
  try {
    if (syncs) return sync_rate(argv[2], std::strtod(argv[3], nullptr));
    const mpmux::Session session = mpmux::Session::open(mpmux::MuxId::parse(argv[1]));
    const std::uint64_t total = session.total();
    mpmux::JournalWriter a(session, "node1", 1001), b(session, "node1", 1002);
    a.set_fsync(false);
    b.set_fsync(false);
    mpmux::Outcome o;
    o.host = "node1";
    o.t_start = 1795304112000000000;
    // Guided chunks: each worker takes ceil(remaining / 4) at a time, and the two interleave.
    std::uint64_t next = 0;
    int turn = 0;
    while (next < total) {
      const std::uint64_t chunk = std::max<std::uint64_t>(1, (total - next + 3) / 4);
      mpmux::JournalWriter& w = turn++ % 2 ? b : a;
      for (std::uint64_t i = next; i < std::min(total, next + chunk); ++i) {
        o.index = i;
        o.worker = turn % 2 + 1;
        o.pid = 2000 + o.worker;
        o.t_end = o.t_start + 1500000 + static_cast<std::int64_t>(i % 1000) * 1000;
        o.result = std::to_string(i * 7 % 1000003) + "\n";
        w.append(o);
        w.sync();
      }
      next += chunk;
    }
    a.flush();
    b.flush();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_io_journal: %s\n", e.what());
    return 1;
  }
  return 0;
}
