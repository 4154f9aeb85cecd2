// session_stat: what `mpmux stat` shows of a session from any machine that sees its store: the
// counts of the fold (with the committed batches), and from the heartbeats of the live
// participants what they hold, how fast they go, and which batches wait for a reclaim.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "claim/session_claims.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/run.hpp"
#include "store/fs.hpp"
#include "store/object_store.hpp"
#include "store/results_fold.hpp"

namespace mpmux {

namespace {

// j[name] when it holds a T, else `fallback`: a heartbeat is advisory and never fails stat.
template <class T>
T field(const nlohmann::json& j, const char* name, T fallback) {
  const auto it = j.find(name);
  if (it == j.end()) return fallback;
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    return fallback;
  }
}

// A Slurm id as written: a string, or a number by a writer that took it for one.
std::string slurm_id(const nlohmann::json& slurm, const char* name) {
  const auto it = slurm.find(name);
  if (it == slurm.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<std::int64_t>());
  return "";
}

ParticipantStat participant_of(const claim::Heartbeat& hb, const nlohmann::json& about, double age_s) {
  ParticipantStat p;
  p.id = hb.participant;
  p.host = field(about, "host", std::string());
  p.pid = field(about, "pid", std::int64_t{0});
  if (const auto slurm = about.find("slurm"); slurm != about.end() && slurm->is_object()) {
    p.slurm_job_id = slurm_id(*slurm, "job_id");
    p.slurm_array_job_id = slurm_id(*slurm, "array_job_id");
    p.slurm_array_task_id = slurm_id(*slurm, "array_task_id");
  }
  p.ranks = field(about, "ranks", std::uint64_t{0});
  p.heartbeat_age_s = age_s;
  p.done = field(about, "done", std::uint64_t{0});
  p.failed = field(about, "failed", std::uint64_t{0});
  p.running = field(about, "running", std::uint64_t{0});
  p.claimed = field(about, "claimed", std::uint64_t{0});
  p.rate = std::max(0.0, field(about, "rate", 0.0));
  return p;
}

std::vector<std::pair<std::string, std::string>> claim_paths_of(const nlohmann::json& about) {
  std::vector<std::pair<std::string, std::string>> paths;
  const auto it = about.find("claim_paths");
  if (it == about.end() || !it->is_array()) return paths;
  for (const auto& p : *it) {
    const std::string window = field(p, "window", std::string()), path = field(p, "path", std::string());
    if (!window.empty() && !path.empty()) paths.emplace_back(window, path);
  }
  return paths;
}

}  // namespace

Stat session_stat(const Session& session) {
  store::StoreOptions options;
  options.read_only = true;
  const std::unique_ptr<store::ObjectStore> store = store::open_store(session.store_url(), options);
  const SessionCounts counts = fold::read_session_counts(session, claim::read_batch_winners(*store));
  Stat st;
  st.total = session.total();
  st.done = counts.done;
  st.failed = counts.failed;
  st.fenced = counts.fenced;
  const std::uint64_t open = st.total - std::min(st.total, st.done + st.failed);

  const std::vector<claim::RoundMarker> rounds = claim::read_rounds(*store);
  std::map<std::uint32_t, std::int64_t> lease_ms;
  for (const claim::RoundMarker& r : rounds) lease_ms[r.round] = r.lease_ms;
  // Heartbeats and leases are compared by wall clock, this machine's against the writer's: an
  // estimate, which is all stat needs (the claimers judge staleness on their own clocks).
  const std::int64_t now = posix::unix_time_ns();
  std::map<std::pair<std::uint32_t, std::string>, std::int64_t> live;  // (round, id) -> heartbeat unix_ns
  std::uint64_t running = 0, claimed = 0;
  for (const claim::Heartbeat& hb : claim::read_heartbeats(*store)) {
    const nlohmann::json about = nlohmann::json::parse(hb.about, nullptr, false);
    const std::int64_t lease = field(about, "lease_ms", lease_ms[hb.round]);
    const double age_s = static_cast<double>(std::max<std::int64_t>(0, now - hb.unix_ns)) / 1e9;
    if (age_s * 1000 > static_cast<double>(lease)) continue;  // a participant that died
    live[{hb.round, hb.participant}] = hb.unix_ns;
    ParticipantStat p = participant_of(hb, about, age_s);
    running += p.running;
    claimed += p.claimed;
    st.rate += p.rate;
    if (st.claim_paths.empty()) st.claim_paths = claim_paths_of(about);
    st.participants.push_back(std::move(p));
  }
  // The heartbeats' counts lag the journals: never more than the open elements.
  st.running = std::min(open, running);
  st.claimed = std::min(open - st.running, claimed);
  st.pending = open - st.running - st.claimed;
  if (st.rate > 0) st.eta_s = static_cast<double>(open) / st.rate;

  if (!rounds.empty()) {
    const std::uint32_t latest = rounds.back().round;
    for (claim::OpenBatch& b : claim::read_open_batches(*store, latest)) {
      if (!b.participant.empty() && live.count({latest, b.participant}) != 0) continue;
      st.stale_batches.push_back({latest, b.first, b.count, b.epoch, std::move(b.participant)});
    }
  }
  return st;
}

}  // namespace mpmux
