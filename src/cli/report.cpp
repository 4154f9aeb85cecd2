// mpmux report: every attempt of a session, read from its journals (the fold keeps only the
// deciding record of each element, a report wants them all), drawn as one HTML page.
#include "cli/report.hpp"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cli/commands.hpp"
#include "mpmux/error.hpp"
#include "mpmux/results.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"
#include "store/fs.hpp"
#include "store/journal_scan.hpp"

namespace mpmux::cli {

namespace {

namespace stdfs = std::filesystem;
using report::Attempt;
using report::AttemptClass;

AttemptClass class_of(RecordType type, std::uint8_t flags) {
  if (type == RecordType::done) return AttemptClass::done;
  if (flags & Outcome::kTimedOut) return AttemptClass::timed_out;
  return (flags & Outcome::kFinal) ? AttemptClass::failed_final : AttemptClass::failed_retried;
}

// A journal is named <host>-<pid>-<unix ns>.mjl (docs/formats.md); the host may hold '-'.
report::Participant participant_of(const stdfs::path& journal) {
  report::Participant p;
  p.journal = journal.filename().string();
  const std::string stem = journal.stem().string();
  const std::size_t time_dash = stem.rfind('-');
  const std::size_t pid_dash =
      time_dash == std::string::npos || time_dash == 0 ? std::string::npos : stem.rfind('-', time_dash - 1);
  if (pid_dash == std::string::npos) {
    p.host = stem;
    return p;
  }
  p.host = stem.substr(0, pid_dash);
  p.pid = static_cast<std::uint32_t>(std::strtoul(stem.c_str() + pid_dash + 1, nullptr, 10));
  return p;
}

report::Report gather(const Session& session) {
  report::Report r;
  r.mux_id = session.id().str();
  r.generated = posix::format_utc(posix::unix_time_ns() / 1'000'000'000, "%Y-%m-%dT%H:%M:%SZ");
  r.stat = session_stat(session);

  // A worker is a rank of one run: the same host and rank in two runs (a resume) are two rows.
  // Rows are numbered as they are met, then renumbered in (participant, host, rank) order.
  using RowKey = std::tuple<std::uint32_t, std::string, std::uint32_t>;
  std::map<RowKey, std::uint32_t> row_of;
  RowKey key;
  for (const stdfs::path& file : journal_scan::journal_files(session.journal_dir())) {
    const auto participant = static_cast<std::uint32_t>(r.participants.size());
    r.participants.push_back(participant_of(file));
    std::get<0>(key) = participant;
    r.torn_bytes +=
        journal_scan::for_each_record(file, session.id().session, [&](const journal_scan::RecordRef& rec) {
          std::get<1>(key).assign(rec.host);
          std::get<2>(key) = rec.worker;
          const auto it = row_of.try_emplace(key, static_cast<std::uint32_t>(row_of.size())).first;
          Attempt a;
          a.t_start = rec.t_start;
          a.t_end = std::max(rec.t_end, rec.t_start);  // a clock step back must not draw backwards
          a.index = rec.index;
          a.attempt = rec.attempt;
          a.row = it->second;
          a.participant = participant;
          a.cls = class_of(rec.type, rec.flags);
          r.attempts.push_back(a);
        });
  }
  std::vector<std::uint32_t> renumber(row_of.size());
  for (const auto& [k, id] : row_of) {  // the map iterates in (participant, host, rank) order
    renumber[id] = static_cast<std::uint32_t>(r.rows.size());
    r.rows.push_back({std::get<0>(k), std::get<1>(k), std::get<2>(k)});
  }
  for (Attempt& a : r.attempts) a.row = renumber[a.row];
  std::sort(r.attempts.begin(), r.attempts.end(), [](const Attempt& a, const Attempt& b) {
    return std::tie(a.t_start, a.t_end, a.index, a.attempt) <
           std::tie(b.t_start, b.t_end, b.index, b.attempt);
  });

  for_each_result(
      session,
      [&](const ElementResult& e) {
        if (r.failed_total++ >= report::kListedFailures || !e.outcome) return;
        r.failed.push_back({e.index, e.attempts, *e.outcome});
      },
      ElementStatus::failed);
  return r;
}

int report_command(const std::string& mux_id, const std::string& output) {
  const Session session = Session::open(session_id(mux_id, "report"));
  check_output(output, "report");
  const std::string page = report::render_html(gather(session));
  posix::write_file_atomic(output, page, posix::kFileMode, false);
  return kExitOk;
}

}  // namespace

Command add_report_command(CLI::App& app) {
  struct Args {
    std::string mux_id;
    std::string output;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "report",
      "One self-contained HTML page of a session: timeline, throughput, durations, failures, stragglers");
  add_mux_id(*cmd, args->mux_id);
  cmd->add_option("-o,--output", args->output, "The HTML file to write (replaced atomically)")->required();
  return {cmd, [args] { return report_command(args->mux_id, args->output); }};
}

}  // namespace mpmux::cli
