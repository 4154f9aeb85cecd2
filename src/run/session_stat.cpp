// session_stat: what `mpmux stat` shows of a session from any machine that sees its store: the
// counts of the fold (with the committed batches), and from the heartbeats of the live
// participants what they hold, how fast they go, and which batches wait for a reclaim.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "claim/session_claims.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/run.hpp"
#include "store/fs.hpp"
#include "store/object_store.hpp"
#include "store/results_fold.hpp"

namespace mpmux {

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
  std::set<std::pair<std::uint32_t, std::string>> live;  // (round, id)
  std::uint64_t running = 0, claimed = 0;
  for (claim::Heartbeat& hb : claim::read_heartbeats(*store)) {
    const std::int64_t lease = hb.lease_ms > 0 ? hb.lease_ms : lease_ms[hb.round];
    const double age_s = static_cast<double>(std::max<std::int64_t>(0, now - hb.unix_ns)) / 1e9;
    if (age_s * 1000 > static_cast<double>(lease)) continue;  // a participant that died
    live.emplace(hb.round, hb.participant.id);
    ParticipantStat& p = hb.participant;
    p.heartbeat_age_s = age_s;
    running += p.running;
    claimed += p.claimed;
    st.rate += p.rate;
    if (st.claim_paths.empty()) st.claim_paths = std::move(hb.claim_paths);
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

std::string stat_json(const Stat& st) {
  nlohmann::ordered_json j{{"total", st.total},     {"done", st.done},       {"failed", st.failed},
                           {"running", st.running}, {"claimed", st.claimed}, {"pending", st.pending},
                           {"fenced", st.fenced},   {"rate", st.rate}};
  j["eta_s"] = st.eta_s < 0 ? nlohmann::ordered_json() : nlohmann::ordered_json(st.eta_s);
  nlohmann::ordered_json participants = nlohmann::ordered_json::array();
  for (const ParticipantStat& p : st.participants) {
    nlohmann::ordered_json slurm;  // null outside Slurm
    if (!p.slurm_job_id.empty()) slurm["job_id"] = p.slurm_job_id;
    if (!p.slurm_array_job_id.empty()) slurm["array_job_id"] = p.slurm_array_job_id;
    if (!p.slurm_array_task_id.empty()) slurm["array_task_id"] = p.slurm_array_task_id;
    participants.push_back({{"id", p.id},
                            {"host", p.host},
                            {"pid", p.pid},
                            {"slurm", std::move(slurm)},
                            {"ranks", p.ranks},
                            {"heartbeat_age_s", p.heartbeat_age_s},
                            {"done", p.done},
                            {"failed", p.failed},
                            {"running", p.running},
                            {"claimed", p.claimed},
                            {"rate", p.rate}});
  }
  j["participants"] = std::move(participants);
  nlohmann::ordered_json stale = nlohmann::ordered_json::array();
  for (const StaleBatch& b : st.stale_batches)
    stale.push_back({{"round", b.round},
                     {"first", b.first},
                     {"count", b.count},
                     {"epoch", b.epoch},
                     {"participant", b.participant}});
  j["stale_batches"] = std::move(stale);
  // Only while a run is live: how its claimer serves each window.
  if (!st.claim_paths.empty()) {
    nlohmann::ordered_json paths = nlohmann::ordered_json::object();
    for (const auto& [window, path] : st.claim_paths) paths[window] = path;
    j["claim_paths"] = std::move(paths);
  }
  return j.dump();
}

}  // namespace mpmux
