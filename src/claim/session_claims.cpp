#include "claim/session_claims.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "mpmux/error.hpp"

namespace mpmux::claim {

namespace {

constexpr int kIndexDigits = 13;  // of <first> in claims/ and done/ (shared_claimer.hpp)
// A heartbeat lists at most 8 running elements; a longer list from a later writer is cut here.
constexpr std::size_t kRunningElementsRead = 32;

std::string six_digits(std::uint32_t round) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06u", round);
  return buf;
}

// The decimal number of key[from, to), or nullopt when it is empty or holds anything else.
std::optional<std::uint64_t> number_in(const std::string& key, std::size_t from, std::size_t to) {
  if (from >= to || to > key.size()) return std::nullopt;
  std::uint64_t n = 0;
  for (std::size_t i = from; i < to; ++i) {
    if (key[i] < '0' || key[i] > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(key[i] - '0');
  }
  return n;
}

// The round of a marker key "rounds/000001.json"; nullopt for anything else that may lie there.
std::optional<std::uint32_t> marker_round(const std::string& key) {
  if (key.size() != 18 || key.compare(0, 7, "rounds/") != 0 || key.compare(13, 5, ".json") != 0)
    return std::nullopt;
  if (auto r = number_in(key, 7, 13)) return static_cast<std::uint32_t>(*r);
  return std::nullopt;
}

// <first> of "<prefix>done/<13 digits>".
std::optional<std::uint64_t> done_first(const std::string& key, std::size_t prefix) {
  if (key.size() != prefix + 5 + kIndexDigits) return std::nullopt;
  return number_in(key, prefix + 5, key.size());
}

// {first, epoch} of "<prefix>claims/<13 digits>.<epoch>".
std::optional<std::pair<std::uint64_t, std::uint64_t>> claim_first_epoch(const std::string& key,
                                                                         std::size_t prefix) {
  const std::size_t dot = prefix + 7 + kIndexDigits;
  if (key.size() <= dot + 1 || key[dot] != '.') return std::nullopt;
  const auto first = number_in(key, prefix + 7, dot);
  const auto epoch = number_in(key, dot + 1, key.size());
  if (!first || !epoch) return std::nullopt;
  return std::make_pair(*first, *epoch);
}

std::string padded(std::uint64_t first) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llu", kIndexDigits, static_cast<unsigned long long>(first));
  return buf;
}

// j[name] when it holds a T, else `fallback`: what stat reads is advisory and never fails on it.
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

// What a heartbeat's `about` says (docs/formats.md "The session store").
void read_about(const nlohmann::json& about, Heartbeat& hb) {
  ParticipantStat& p = hb.participant;
  hb.lease_ms = field(about, "lease_ms", std::int64_t{0});
  p.host = field(about, "host", std::string());
  p.pid = field(about, "pid", std::int64_t{0});
  if (const auto slurm = about.find("slurm"); slurm != about.end() && slurm->is_object()) {
    p.slurm_job_id = slurm_id(*slurm, "job_id");
    p.slurm_array_job_id = slurm_id(*slurm, "array_job_id");
    p.slurm_array_task_id = slurm_id(*slurm, "array_task_id");
  }
  p.ranks = field(about, "ranks", std::uint64_t{0});
  p.done = field(about, "done", std::uint64_t{0});
  p.failed = field(about, "failed", std::uint64_t{0});
  p.running = field(about, "running", std::uint64_t{0});
  p.claimed = field(about, "claimed", std::uint64_t{0});
  p.rate = std::max(0.0, field(about, "rate", 0.0));
  if (const auto running = about.find("running_elements"); running != about.end() && running->is_array()) {
    for (const auto& e : *running) {
      if (!e.is_object() || !e.contains("index") || !e["index"].is_number_unsigned()) continue;
      if (p.running_elements.size() == kRunningElementsRead) break;
      p.running_elements.push_back({e["index"].get<std::uint64_t>(), field(e, "attempt", std::uint32_t{0}),
                                    field(e, "started_unix_ns", std::int64_t{0}),
                                    field(e, "rank", std::int64_t{-1})});
    }
  }
  if (const auto paths = about.find("claim_paths"); paths != about.end() && paths->is_array()) {
    for (const auto& path : *paths) {
      std::string window = field(path, "window", std::string()), how = field(path, "path", std::string());
      if (!window.empty() && !how.empty()) hb.claim_paths.emplace_back(std::move(window), std::move(how));
    }
  }
}

nlohmann::json parse_object(store::ObjectStore& store, const std::string& key, const std::string& data,
                            const char* what) {
  nlohmann::json j = nlohmann::json::parse(data, nullptr, false);
  if (!j.is_object())
    throw StoreError(store.url() + ": " + what + " '" + key + "' is damaged: not a JSON object");
  return j;
}

}  // namespace

std::string round_marker_key(std::uint32_t round) { return "rounds/" + six_digits(round) + ".json"; }

std::string round_prefix(std::uint32_t round) { return "round-" + six_digits(round); }

std::string round_url(std::string_view session_url, std::uint32_t round) {
  std::string url(session_url);
  if (url.empty() || url.back() != '/') url += '/';
  return url + round_prefix(round);
}

std::uint32_t latest_round(store::ObjectStore& store) {
  std::uint32_t latest = 0;
  for (const std::string& key : store.list_keys("rounds/"))
    if (const auto r = marker_round(key)) latest = std::max(latest, *r);
  return latest;
}

std::vector<RoundMarker> read_rounds(store::ObjectStore& store) {
  std::vector<RoundMarker> rounds;
  for (const std::string& key : store.list_keys("rounds/")) {
    const auto r = marker_round(key);
    if (!r) continue;
    const std::optional<store::Object> obj = store.get(key);
    if (!obj) continue;  // markers are never removed; a session being destroyed
    const nlohmann::json j = parse_object(store, key, obj->data, "round marker");
    RoundMarker m;
    m.round = *r;
    m.rerun_failed = field(j, "rerun_failed", false);
    m.unix_ns = field(j, "unix_ns", std::int64_t{0});
    m.lease_ms = field(j, "lease_ms", m.lease_ms);
    rounds.push_back(m);
  }
  std::sort(rounds.begin(), rounds.end(),
            [](const RoundMarker& a, const RoundMarker& b) { return a.round < b.round; });
  return rounds;
}

std::vector<BatchWinner> read_batch_winners(store::ObjectStore& session_store) {
  std::vector<BatchWinner> winners;
  for (const RoundMarker& round : read_rounds(session_store)) {
    const std::string prefix = round_prefix(round.round) + "/";
    for (const std::string& key : session_store.list_keys(prefix + "done/")) {
      const auto first = done_first(key, prefix.size());
      if (!first) continue;
      const std::optional<store::Object> obj = session_store.get(key);
      if (!obj)
        throw StoreError(session_store.url() + ": done record '" + key +
                         "' vanished (they are never removed)");
      const nlohmann::json j = parse_object(session_store, key, obj->data, "done record");
      BatchWinner w;
      w.first = *first;
      w.round = round.round;
      try {
        w.participant = j.at("participant").get<std::string>();
        w.count = j.at("count").get<std::uint64_t>();
      } catch (const nlohmann::json::exception& e) {
        throw StoreError(session_store.url() + ": done record '" + key + "' is damaged: " + e.what());
      }
      winners.push_back(std::move(w));
    }
  }
  return winners;
}

std::vector<Heartbeat> read_heartbeats(store::ObjectStore& session_store) {
  std::vector<Heartbeat> beats;
  for (const RoundMarker& round : read_rounds(session_store)) {
    const std::string prefix = round_prefix(round.round) + "/participants/";
    for (const std::string& key : session_store.list_keys(prefix)) {
      const std::optional<store::Object> obj = session_store.get(key);
      if (!obj) continue;
      const nlohmann::json j = nlohmann::json::parse(obj->data, nullptr, false);
      if (!j.is_object() || !j.contains("participant") || !j["participant"].is_string()) continue;
      Heartbeat hb;
      hb.round = round.round;
      hb.unix_ns = field(j, "unix_ns", std::int64_t{0});
      hb.participant.id = j["participant"].get<std::string>();
      if (const auto about = j.find("about"); about != j.end() && about->is_object()) read_about(*about, hb);
      beats.push_back(std::move(hb));
    }
  }
  return beats;
}

std::vector<OpenBatch> read_open_batches(store::ObjectStore& session_store, std::uint32_t round) {
  const std::string prefix = round_prefix(round) + "/";
  std::map<std::uint64_t, std::uint64_t> highest_epoch;
  for (const std::string& key : session_store.list_keys(prefix + "claims/")) {
    if (const auto parsed = claim_first_epoch(key, prefix.size())) {
      auto [it, added] = highest_epoch.emplace(parsed->first, parsed->second);
      if (!added) it->second = std::max(it->second, parsed->second);
    }
  }
  std::set<std::uint64_t> done;
  for (const std::string& key : session_store.list_keys(prefix + "done/"))
    if (const auto first = done_first(key, prefix.size())) done.insert(*first);

  std::vector<OpenBatch> open;
  for (const auto& [first, epoch] : highest_epoch) {
    if (done.count(first) != 0) continue;
    const std::string key = prefix + "claims/" + padded(first) + "." + std::to_string(epoch);
    const std::optional<store::Object> obj = session_store.get(key);
    if (!obj || obj->data.empty()) continue;
    const nlohmann::json j = parse_object(session_store, key, obj->data, "claim");
    OpenBatch b;
    b.first = first;
    b.epoch = epoch;
    b.count = field(j, "count", std::uint64_t{1});
    b.participant = field(j, "participant", std::string());
    open.push_back(std::move(b));
  }
  return open;
}

}  // namespace mpmux::claim
