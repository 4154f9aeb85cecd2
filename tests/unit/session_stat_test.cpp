// session_stat across participants: counts with the fenced rule, live participants from their
// heartbeats (claimed apart from running), stale batches of the latest round, rate and ETA.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "claim/session_claims.hpp"
#include "claim/shared_claimer.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"
#include "store/fs.hpp"
#include "store/object_store.hpp"
#include "test_support.hpp"

namespace mpmux {
namespace {

using mpmux::test::TempDir;

Session range_session(const TempDir& tmp, std::size_t n) {
  ParsedElements p;
  p.encoding = Encoding::bytes;
  for (std::size_t i = 0; i < n; ++i) p.elements.push("e");
  return Session::create(create_mux(tmp.path() / "mux", p, ""));
}

// Done records of `indices`, in a journal of its own; returns its participant id.
std::string journal(const Session& s, const std::string& host, std::uint64_t first, std::uint64_t count) {
  JournalWriter w(s, host, 1);
  w.set_fsync(false);
  for (std::uint64_t i = first; i < first + count; ++i) {
    Outcome o;
    o.index = i;
    o.t_end = 100;
    w.append(o);
  }
  w.flush();
  return w.path().stem().string();
}

std::string claim_json(const std::string& participant, std::uint64_t first, std::uint64_t count,
                       std::uint64_t epoch) {
  return nlohmann::json({{"participant", participant}, {"first", first}, {"count", count}, {"epoch", epoch}})
      .dump();
}

std::string padded(std::uint64_t first) {
  std::string s = std::to_string(first);
  return std::string(13 - s.size(), '0') + s;
}

class SessionStat : public ::testing::Test {
 protected:
  SessionStat() : s_(range_session(tmp_, 100)), store_(store::open_store(s_.store_url())) {
    store_->put_if_absent(claim::round_marker_key(1),
                          R"({"rerun_failed":false,"unix_ns":1,"lease_ms":30000})");
  }
  void put(const std::string& key, const std::string& data) {
    store_->put(claim::round_prefix(1) + "/" + key, data);
  }
  void claim(const std::string& participant, std::uint64_t first, std::uint64_t count, std::uint64_t epoch) {
    put("claims/" + padded(first) + "." + std::to_string(epoch),
        claim_json(participant, first, count, epoch));
  }
  void commit(const std::string& participant, std::uint64_t first, std::uint64_t count) {
    put("done/" + padded(first),
        nlohmann::json({{"participant", participant}, {"epoch", 0}, {"count", count}}).dump());
  }
  void heartbeat(const std::string& participant, std::int64_t age_ns, const nlohmann::json& about) {
    put("participants/" + participant, nlohmann::json({{"participant", participant},
                                                       {"seq", 1},
                                                       {"unix_ns", posix::unix_time_ns() - age_ns},
                                                       {"about", about}})
                                           .dump());
  }

  TempDir tmp_;
  Session s_;
  std::unique_ptr<store::ObjectStore> store_;
};

TEST_F(SessionStat, ASessionWithoutHeartbeatsHasNoParticipantsRateOrStaleBatches) {
  const TempDir tmp;
  const Session plain = range_session(tmp, 10);
  journal(plain, "h", 0, 4);
  const Stat st = session_stat(plain);
  EXPECT_EQ(std::tie(st.total, st.done, st.failed, st.running, st.claimed, st.pending, st.fenced),
            std::make_tuple(10, 4, 0, 0, 0, 6, 0));
  EXPECT_TRUE(st.participants.empty());
  EXPECT_TRUE(st.stale_batches.empty());
  EXPECT_EQ(st.rate, 0);
  EXPECT_LT(st.eta_s, 0);
  EXPECT_FALSE(std::filesystem::exists(plain.dir() / "rounds")) << "stat wrote into the session";
}

TEST_F(SessionStat, LiveParticipantsAreSummedWithClaimedApartFromRunning) {
  journal(s_, "h", 0, 10);
  claim::SharedClaimOptions o;
  o.heartbeat_thread = false;
  o.min_batch = o.max_batch = 10;
  o.about = nlohmann::json({{"host", "node12"},
                            {"pid", 4242},
                            {"slurm", {{"job_id", "123"}, {"array_job_id", "120"}, {"array_task_id", "3"}}},
                            {"ranks", 3},
                            {"done", 10},
                            {"failed", 1},
                            {"running", 2},
                            {"claimed", 5},
                            {"rate", 12.5},
                            {"claim_paths", {{{"window", "counter"}, {"path", "sm"}}}}})
                .dump();
  claim::SharedStoreClaimer live(claim::round_url(s_.store_url(), 1), {}, 100, o);
  ASSERT_TRUE(live.try_claim());
  heartbeat("other-1-1", 0, {{"host", "node13"}, {"running", 1}, {"claimed", 4}, {"rate", 7.5}});

  const Stat st = session_stat(s_);
  EXPECT_EQ(std::tie(st.done, st.running, st.claimed, st.pending), std::make_tuple(10, 3, 9, 78));
  EXPECT_DOUBLE_EQ(st.rate, 20.0);
  EXPECT_DOUBLE_EQ(st.eta_s, 90 / 20.0);  // the open elements: pending, claimed and running
  ASSERT_EQ(st.participants.size(), 2u);
  const ParticipantStat& p = st.participants[0].id == live.id() ? st.participants[0] : st.participants[1];
  EXPECT_EQ(p.id, live.id());
  EXPECT_EQ(std::tie(p.host, p.pid, p.slurm_job_id, p.slurm_array_job_id, p.slurm_array_task_id),
            std::make_tuple("node12", 4242, "123", "120", "3"));
  EXPECT_EQ(std::tie(p.ranks, p.done, p.failed, p.running, p.claimed), std::make_tuple(3, 10, 1, 2, 5));
  EXPECT_DOUBLE_EQ(p.rate, 12.5);
  EXPECT_GE(p.heartbeat_age_s, 0);
  EXPECT_EQ(st.claim_paths, (std::vector<std::pair<std::string, std::string>>{{"counter", "sm"}}));
  // The live participant's batch is not stale.
  EXPECT_TRUE(st.stale_batches.empty());
}

TEST_F(SessionStat, HeldCountsNeverExceedTheOpenElements) {
  journal(s_, "h", 0, 95);
  heartbeat("busy-1-1", 0, {{"running", 4}, {"claimed", 60}});
  const Stat st = session_stat(s_);
  EXPECT_EQ(std::tie(st.running, st.claimed, st.pending), std::make_tuple(4, 1, 0));
}

TEST_F(SessionStat, BatchesOfSilentMissingOrReleasedOwnersAreStaleAndCommittedOnesAreNot) {
  heartbeat("live-1-1", 0, nlohmann::json::object());
  heartbeat("silent-1-1", 60'000'000'000, nlohmann::json::object());  // past the 30 s lease
  claim("live-1-1", 0, 10, 0);
  claim("silent-1-1", 10, 10, 0);
  claim("gone-1-1", 20, 5, 0);
  claim("gone-1-1", 30, 5, 0);
  claim("", 30, 5, 1);  // released at epoch 1
  claim("gone-1-1", 40, 5, 0);
  commit("gone-1-1", 40, 5);
  const Stat st = session_stat(s_);
  ASSERT_EQ(st.participants.size(), 1u) << "a silent participant is not live";
  EXPECT_EQ(st.participants[0].id, "live-1-1");
  std::vector<std::tuple<std::uint32_t, std::uint64_t, std::uint64_t, std::uint64_t, std::string>> stale;
  for (const StaleBatch& b : st.stale_batches)
    stale.emplace_back(b.round, b.first, b.count, b.epoch, b.participant);
  EXPECT_EQ(stale,
            (decltype(stale){{1, 10, 10, 0, "silent-1-1"}, {1, 20, 5, 0, "gone-1-1"}, {1, 30, 5, 1, ""}}));
}

TEST_F(SessionStat, OnlyTheLatestRoundsBatchesCanBeStale) {
  claim("gone-1-1", 0, 10, 0);
  store_->put_if_absent(claim::round_marker_key(2), R"({"rerun_failed":true,"unix_ns":2,"lease_ms":30000})");
  store_->put(claim::round_prefix(2) + "/claims/" + padded(50) + ".0", claim_json("gone-2-2", 50, 3, 0));
  const Stat st = session_stat(s_);
  ASSERT_EQ(st.stale_batches.size(), 1u);
  EXPECT_EQ(std::tie(st.stale_batches[0].round, st.stale_batches[0].first), std::make_tuple(2, 50));
}

TEST_F(SessionStat, FencedDoneRecordsAreCountedAndTheWinnersCount) {
  const std::string a = journal(s_, "a", 0, 10);
  const std::string b = journal(s_, "b", 0, 4);
  commit(b, 0, 10);
  const Stat st = session_stat(s_);
  EXPECT_EQ(std::tie(st.done, st.fenced), std::make_tuple(10, 4));
  EXPECT_EQ(read_session_counts(s_).fenced, 4u);
}

}  // namespace
}  // namespace mpmux
