// mpmux stat: the counts of a session, as a table or one JSON object; the table is followed by
// the live participants, the batches waiting for a reclaim, and the elements that failed for
// good, with their attempts, exit status and stderr tail.
#include <signal.h>
#include <string.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.hpp"
#include "mpmux/results.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"
#include "run/stat_text.hpp"

namespace mpmux::cli {

std::string exit_status(const Outcome& o) {
  if (o.signal != 0) {
    std::string text = "signal " + std::to_string(o.signal);
    if (const char* abbrev = ::sigabbrev_np(o.signal)) text += std::string(" (SIG") + abbrev + ")";
    return text;
  }
  return "exit " + std::to_string(o.exit_code);
}

namespace {

using run::duration_text;
using run::printable;
using run::rate_text;
using run::slurm_text;

constexpr std::size_t kListedFailures = 20;  // without --all
constexpr std::size_t kLineChars = 200;      // of the stderr line shown per element

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

std::string last_line(std::string_view text) {
  const auto lines = lines_of(text);
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (it->find_first_not_of(" \t") == std::string_view::npos) continue;
    std::string line = printable(*it);
    if (line.size() > kLineChars) {
      std::size_t cut = kLineChars;
      while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;  // whole characters
      line = line.substr(0, cut) + "...";
    }
    return line;
  }
  return "";
}

// Streams the rows of the failed elements, so a session of any size is listed in bounded memory.
void print_failures(const Session& session, bool all, bool verbose) {
  std::size_t failed = 0;
  for_each_result(
      session,
      [&](const ElementResult& r) {
        // The heading comes with the first row: the journals may have changed since the counts.
        if (failed++ == 0) std::printf("\nfailed elements:\n");
        if (!all && failed > kListedFailures) return;
        std::string line =
            "  element " + std::to_string(r.index) + "  attempts " + std::to_string(r.attempts);
        if (const auto& o = r.outcome) {
          line += "  " + exit_status(*o);
          if (o->flags & Outcome::kTimedOut) line += "  timed out";
          const std::string last = last_line(o->stderr_tail);
          line += last.empty() ? "  (no stderr)" : "  stderr: " + last;
          std::printf("%s\n", line.c_str());
          if (verbose)
            for (std::string_view l : lines_of(o->stderr_tail))
              std::printf("    | %s\n", printable(l).c_str());
        } else {
          std::printf("%s\n", line.c_str());
        }
      },
      ElementStatus::failed);
  if (!all && failed > kListedFailures)
    std::printf("  ... and %zu more (mpmux stat --all lists them)\n", failed - kListedFailures);
}

void print_participants(const std::vector<ParticipantStat>& participants) {
  std::vector<std::vector<std::string>> rows{{"participant", "host", "slurm", "ranks", "heartbeat", "done",
                                              "failed", "running", "claimed", "rate/s"}};
  for (const ParticipantStat& p : participants)
    rows.push_back({printable(p.id), printable(p.host.empty() ? "-" : p.host), printable(slurm_text(p)),
                    std::to_string(p.ranks), duration_text(p.heartbeat_age_s) + " ago",
                    std::to_string(p.done), std::to_string(p.failed), std::to_string(p.running),
                    std::to_string(p.claimed), rate_text(p.rate)});
  std::printf("\nparticipants:\n");
  for (const std::string& line : run::table_lines(rows, "lll")) std::printf("%s\n", line.c_str());
}

void print_stale_batches(const std::vector<StaleBatch>& stale) {
  std::printf("\nstale batches (waiting for a reclaim):\n");
  for (const StaleBatch& b : stale) {
    const std::string owner = b.participant.empty() ? "released" : "owner " + printable(b.participant);
    std::printf(
        "  round %u  elements %llu-%llu (%llu)  epoch %llu  %s\n", b.round,
        static_cast<unsigned long long>(b.first), static_cast<unsigned long long>(b.first + b.count - 1),
        static_cast<unsigned long long>(b.count), static_cast<unsigned long long>(b.epoch), owner.c_str());
  }
}

int stat_command(const std::string& mux_id, bool json, bool all, bool verbose) {
  const Session session = Session::open(session_id(mux_id, "stat"));
  const Stat st = session_stat(session);
  if (json) {
    std::cout << stat_json(st) << '\n';
    return 0;
  }
  const auto count = [](const char* name, std::uint64_t n) {
    std::printf("%-8s %llu\n", name, static_cast<unsigned long long>(n));
  };
  std::printf("mux id   %s\n", session.id().str().c_str());
  count("total", st.total);
  count("done", st.done);
  count("failed", st.failed);
  count("running", st.running);
  // What only participants across jobs have: shown when there is something to say.
  if (!st.participants.empty() || st.claimed > 0) count("claimed", st.claimed);
  count("pending", st.pending);
  if (st.fenced > 0) count("fenced", st.fenced);
  if (st.rate > 0)
    std::printf("rate     %s elements/s, ETA %s\n", rate_text(st.rate).c_str(),
                duration_text(st.eta_s).c_str());
  if (!st.claim_paths.empty()) std::printf("claims   %s\n", claim_paths_text(st.claim_paths).c_str());
  if (!st.participants.empty()) print_participants(st.participants);
  if (!st.stale_batches.empty()) print_stale_batches(st.stale_batches);
  // Outcomes are loaded only when something failed: the counts alone stay cheap.
  if (st.failed > 0) print_failures(session, all, verbose);
  return 0;
}

}  // namespace

Command add_stat_command(CLI::App& app) {
  struct Args {
    std::string mux_id;
    bool json = false;
    bool all = false;
    bool verbose = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "stat",
      "Counts of a session (total, done, failed, running, claimed, pending, fenced), its live participants, "
      "stale batches, rate and ETA, and the elements that failed");
  add_mux_id(*cmd, args->mux_id);
  cmd->add_flag("--json", args->json, "The counts, participants and stale batches as one JSON object");
  cmd->add_flag("--all", args->all, "List every failed element (default: the first 20)");
  cmd->add_flag("-v,--verbose", args->verbose, "Show the whole stderr tail of each failed element");
  return {cmd, [args] { return stat_command(args->mux_id, args->json, args->all, args->verbose); }};
}

}  // namespace mpmux::cli
