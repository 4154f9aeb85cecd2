// Claims across participants over the object store, on file:// (O_EXCL and link()) and az://
// (Azurite): exactly-once hand-out among threads and processes, reclaim of a silent
// participant's batch after the lease, fenced late commits, adaptive batch sizes.
#include "claim/shared_claimer.hpp"
#include "claim/session_claims.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "fault_proxy.hpp"
#include "mpmux/error.hpp"
#include "store_test_support.hpp"

namespace mpmux::test {
namespace {

using claim::Batch;
using claim::SharedClaimOptions;
using claim::SharedStoreClaimer;
using namespace std::chrono_literals;

class SharedClaimerTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { location_ = std::make_unique<StoreLocation>(GetParam()); }

  std::unique_ptr<SharedStoreClaimer> claimer(std::uint64_t total, SharedClaimOptions o) const {
    return std::make_unique<SharedStoreClaimer>(location_->url(), location_->options(), total, o);
  }
  // Azurite answers a few hundred requests a second here: smaller sessions on it.
  std::uint64_t sized(std::uint64_t on_files) const {
    return GetParam() == Backend::kAzurite ? on_files / 5 : on_files;
  }

  std::unique_ptr<StoreLocation> location_;
};

SharedClaimOptions short_lease(bool heartbeat_thread) {
  SharedClaimOptions o;
  o.ttl = 600ms;
  o.heartbeat_interval = 100ms;
  o.heartbeat_thread = heartbeat_thread;
  return o;
}

TEST_P(SharedClaimerTest, EveryIndexIsHandedOutExactlyOnceAmongConcurrentThreads) {
  const std::uint64_t total = sized(3000);
  std::vector<std::atomic<int>> handed(total);
  std::atomic<std::uint64_t> fenced{0}, committed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      SharedClaimOptions o;
      o.max_batch = 64;
      auto c = claimer(total, o);
      while (auto b = c->claim()) {
        for (std::uint64_t i = b->first; i < b->first + b->count; ++i) ++handed[i];
        if (c->commit(*b, std::chrono::microseconds(50) * b->count)) ++committed;
      }
      fenced += c->stats().fenced;
      EXPECT_EQ(c->stats().reclaimed, 0u);
    });
  }
  for (auto& th : threads) th.join();
  for (std::uint64_t i = 0; i < total; ++i) ASSERT_EQ(handed[i].load(), 1) << "index " << i;
  EXPECT_EQ(fenced.load(), 0u);
  EXPECT_EQ(location_->open()->list("done/").size(), committed.load());
}

TEST_P(SharedClaimerTest, EveryIndexIsHandedOutExactlyOnceAmongConcurrentProcesses) {
  const std::uint64_t total = sized(2000);
  TempDir out;
  std::vector<pid_t> children;
  for (int p = 0; p < 3; ++p) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int code = 0;
      try {
        std::ofstream log(out.path() / std::to_string(p));
        SharedClaimOptions o;
        o.max_batch = 32;
        SharedStoreClaimer c(location_->url(), location_->options(), total, o);
        while (auto b = c.claim()) {
          for (std::uint64_t i = b->first; i < b->first + b->count; ++i) log << i << '\n';
          if (!c.commit(*b, std::chrono::microseconds(50) * b->count)) code = 3;
        }
      } catch (const std::exception& e) {
        std::ofstream(out.path() / ("error" + std::to_string(p))) << e.what();
        code = 2;
      }
      ::_exit(code);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  std::vector<int> handed(total);
  for (int p = 0; p < 3; ++p) {
    std::ifstream log(out.path() / std::to_string(p));
    for (std::uint64_t i; log >> i;) ++handed.at(i);
  }
  for (std::uint64_t i = 0; i < total; ++i) ASSERT_EQ(handed[i], 1) << "index " << i;
}

// A participant that stops beating (a SIGSTOP, a hung node) keeps its claim; the others take
// its batch at the next epoch once its heartbeat has not changed for the lease on their clock.
TEST_P(SharedClaimerTest, ASilentParticipantsBatchIsReclaimedAfterTheLeaseAndItsLateCommitIsFenced) {
  SharedClaimOptions fixed = short_lease(false);
  fixed.min_batch = fixed.max_batch = 5;
  auto silent = claimer(20, fixed);
  std::optional<Batch> held = silent->claim();
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(held->first, 0u);
  EXPECT_EQ(held->epoch, 0u);

  fixed.heartbeat_thread = true;
  auto worker = claimer(20, fixed);
  std::vector<int> done(20);
  std::vector<Batch> taken;
  while (auto b = worker->claim()) {
    taken.push_back(*b);
    for (std::uint64_t i = b->first; i < b->first + b->count; ++i) ++done[i];
    EXPECT_TRUE(worker->commit(*b, 1ms));
  }
  for (int i = 0; i < 20; ++i) EXPECT_EQ(done[i], 1) << "index " << i;
  ASSERT_EQ(taken.size(), 4u);
  EXPECT_EQ(taken.back().first, 0u);
  EXPECT_EQ(taken.back().epoch, 1u);
  EXPECT_EQ(worker->stats().reclaimed, 1u);

  EXPECT_TRUE(silent->superseded(*held));
  EXPECT_FALSE(silent->commit(*held, 1s)) << "the late commit must not count";
  EXPECT_EQ(silent->stats().fenced, 1u);
  EXPECT_EQ(silent->stats().committed, 0u);
  auto fenced = location_->open()->list("fenced/");
  ASSERT_EQ(fenced.size(), 1u);
  EXPECT_EQ(fenced[0].key.rfind("fenced/0000000000000.0." + silent->id(), 0), 0u) << fenced[0].key;
}

// The stale owner was only slow: its commit arrives first and counts; the reclaimer's is fenced.
TEST_P(SharedClaimerTest, ASlowOwnersFirstCommitWinsAndTheReclaimersIsFenced) {
  SharedClaimOptions fixed = short_lease(false);
  fixed.min_batch = fixed.max_batch = 10;
  auto slow = claimer(10, fixed);
  std::optional<Batch> held = slow->claim();
  ASSERT_TRUE(held.has_value());
  auto reclaimer = claimer(10, short_lease(true));
  std::optional<Batch> again = reclaimer->claim();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->first, 0u);
  EXPECT_EQ(again->count, 10u);
  EXPECT_EQ(again->epoch, 1u);
  EXPECT_TRUE(slow->commit(*held, 1s));
  EXPECT_FALSE(reclaimer->commit(*again, 1s));
  EXPECT_EQ(reclaimer->stats().fenced, 1u);
  EXPECT_FALSE(reclaimer->claim().has_value()) << "the session is done";
  EXPECT_TRUE(reclaimer->finished());
}

// A stopping participant gives its batch back: another takes it at once, without waiting for
// the lease, and learns whose it was.
TEST_P(SharedClaimerTest, AReleasedBatchIsTakenAtOnceByAnotherWithoutWaitingForTheLease) {
  SharedClaimOptions o = short_lease(true);
  o.ttl = 60s;  // far beyond the test: only the release can make the batch available
  o.heartbeat_interval = 10s;
  o.min_batch = o.max_batch = 5;
  o.id = "stopping-run";
  auto stopping = claimer(5, o);
  EXPECT_EQ(stopping->id(), "stopping-run");
  std::optional<Batch> held = stopping->claim();
  ASSERT_TRUE(held.has_value());
  o.id.clear();
  auto other = claimer(5, o);
  EXPECT_NE(other->id(), "stopping-run");
  EXPECT_FALSE(other->try_claim().has_value()) << "a live participant's batch was taken";
  stopping->release(*held);
  EXPECT_EQ(stopping->stats().released, 1u);
  EXPECT_TRUE(stopping->superseded(*held));
  std::optional<Batch> taken = other->try_claim();
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(taken->first, 0u);
  EXPECT_EQ(taken->count, 5u);
  EXPECT_EQ(taken->epoch, 2u) << "epoch 1 is the release, with no owner";
  EXPECT_EQ(taken->previous_owner, "stopping-run");
  stopping->release(*held);  // too late: the next epoch exists
  EXPECT_EQ(stopping->stats().released, 1u);
  EXPECT_TRUE(other->commit(*taken, 1ms));
  EXPECT_FALSE(other->try_claim().has_value());
  EXPECT_TRUE(other->finished());
}

TEST_P(SharedClaimerTest, TheHeartbeatCarriesTheIdAndTheLatestAboutText) {
  SharedClaimOptions o = short_lease(false);
  o.id = "node7-42-1733";
  o.about = R"({"host":"node7"})";
  auto c = claimer(10, o);
  auto store = location_->open();
  auto heartbeat = [&] { return nlohmann::json::parse(store->get("participants/node7-42-1733")->data); };
  EXPECT_EQ(heartbeat()["participant"], "node7-42-1733");
  EXPECT_EQ(heartbeat()["about"]["host"], "node7");
  c->set_about(R"({"host":"node7","done":12})");
  EXPECT_EQ(heartbeat()["about"].count("done"), 0u) << "set_about writes nothing by itself";
  c->beat();
  EXPECT_EQ(heartbeat()["about"]["done"], 12);
  EXPECT_THROW(c->set_about("{not json"), UsageError);
  c->beat();
  EXPECT_EQ(heartbeat()["about"]["done"], 12) << "a refused about text leaves the last one";
  std::optional<Batch> b = c->try_claim();
  ASSERT_TRUE(b.has_value());
  auto claim = nlohmann::json::parse(store->get("claims/0000000000000.0")->data);
  EXPECT_EQ(claim["participant"], "node7-42-1733");
}

// set_about from one thread while the heartbeat thread beats: no torn text, no race (TSan).
TEST_P(SharedClaimerTest, SetAboutIsSafeWhileTheHeartbeatThreadBeats) {
  SharedClaimOptions o = short_lease(true);
  o.heartbeat_interval = 5ms;
  o.ttl = 10ms;
  auto c = claimer(10, o);
  for (int i = 0; i < 200; ++i) c->set_about(nlohmann::json({{"done", i}}).dump());
  c->beat();
  auto hb = nlohmann::json::parse(location_->open()->get("participants/" + c->id())->data);
  EXPECT_EQ(hb["about"]["done"], 199);
}

TEST_P(SharedClaimerTest, ALiveParticipantsBatchIsNotReclaimed) {
  SharedClaimOptions o = short_lease(true);
  o.min_batch = o.max_batch = 5;
  auto live = claimer(5, o);
  std::optional<Batch> held = live->claim();
  ASSERT_TRUE(held.has_value());
  auto other = claimer(5, o);
  const auto until = std::chrono::steady_clock::now() + 3 * o.ttl;
  int polls = 0;
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_FALSE(other->try_claim().has_value()) << "a batch of a beating participant was taken";
    EXPECT_FALSE(other->finished());
    ++polls;
    std::this_thread::sleep_for(o.heartbeat_interval / 2);
  }
  EXPECT_GT(polls, 3);
  EXPECT_TRUE(live->commit(*held, 1ms));
  EXPECT_FALSE(other->try_claim().has_value());
  EXPECT_TRUE(other->finished());
}

TEST_P(SharedClaimerTest, BatchesGrowWithTheElementRateAndShrinkNearTheEnd) {
  const std::uint64_t total = 100000;
  SharedClaimOptions o;
  o.store_touches_per_s = 2;  // 10,000 elements/s -> batches of 5,000
  auto c = claimer(total, o);
  std::vector<std::uint64_t> sizes;
  std::uint64_t sum = 0;
  while (auto b = c->claim()) {
    sizes.push_back(b->count);
    sum += b->count;
    c->commit(*b, std::chrono::microseconds(100) * b->count);
  }
  EXPECT_EQ(sum, total);
  ASSERT_GE(sizes.size(), 10u);
  EXPECT_EQ(sizes[0], 1u);
  EXPECT_EQ(sizes[1], 16u) << "once timed, a batch grows at most 16 times";
  EXPECT_EQ(sizes[2], 256u);
  const std::uint64_t largest = *std::max_element(sizes.begin(), sizes.end());
  EXPECT_LE(largest, 5000u) << "a batch lasts about half a second";
  EXPECT_GE(largest, 2500u) << "the batch size follows the element rate";
  // The tail: each batch at most half of what was left, down to one element.
  EXPECT_EQ(sizes.back(), 1u);
  EXPECT_LT(sizes[sizes.size() - 2], 5000u);
}

// A job's first batch gives each of its workers an element, and until a batch has been timed
// (the commits come later, after the journal's group commit) the batches grow four times each.
TEST_P(SharedClaimerTest, BatchesClaimedAheadOfAnyCommitStartAtTheFirstBatchAndGrowFourTimes) {
  SharedClaimOptions o;
  o.first_batch = 6;
  auto c = claimer(100000, o);
  std::vector<std::uint64_t> sizes;
  for (int k = 0; k < 3; ++k) sizes.push_back(c->claim()->count);
  EXPECT_EQ(sizes, (std::vector<std::uint64_t>{6, 24, 96}));
}

INSTANTIATE_TEST_SUITE_P(Backends, SharedClaimerTest,
                         ::testing::Values(Backend::kFileExcl, Backend::kFileLink, Backend::kAzurite),
                         [](const auto& info) { return backend_name(info.param); });

// With O_EXCL a claim is empty between its create and its write; a creator that died there
// leaves it empty for good. Such a claim counts as one element and is reclaimed after the lease.
TEST(SharedClaimer, AClaimLeftEmptyByADeadCreatorCountsAsOneElementAndIsReclaimed) {
  StoreLocation location(Backend::kFileExcl);
  location.open()->put_if_absent("claims/0000000000000.0", "");
  SharedClaimOptions o = short_lease(true);
  o.min_batch = o.max_batch = 4;
  SharedStoreClaimer c(location.url(), location.options(), 9, o);
  std::vector<Batch> got;
  while (auto b = c.claim()) {
    got.push_back(*b);
    c.commit(*b, 1ms);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].first, 1u);
  EXPECT_EQ(got[0].count, 4u);
  EXPECT_EQ(got[1].first, 5u);
  EXPECT_EQ(got[2].first, 0u);
  EXPECT_EQ(got[2].count, 1u);
  EXPECT_EQ(got[2].epoch, 1u);
}

}  // namespace
}  // namespace mpmux::test

namespace mpmux::test {
namespace {

// Dropped connections, answers after the timeout, 503s, 500s and resets after the request took
// effect: every index is claimed by one batch and recorded by one counted commit.
TEST(SharedClaimerFaults, ThroughAFaultyProxyNothingIsLostAndNothingCountedTwice) {
  const std::string endpoint = azurite_endpoint();
  const int upstream = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  use_azurite(endpoint);
  const std::string url = std::string("az://") + kAzuriteAccount + "/" + fresh_container() + "/faults";
  store::StoreOptions direct;
  direct.create_container = true;
  auto truth = store::open_store(url, direct);

  FaultProxy proxy(upstream, 7, 0.25, 1.5);
  const std::string via_proxy = "http://127.0.0.1:" + std::to_string(proxy.port()) + "/" + kAzuriteAccount;
  ::setenv("AZURE_STORAGE_BLOB_ENDPOINT", via_proxy.c_str(), 1);
  store::StoreOptions faulty;
  faulty.request_timeout = 1000ms;
  faulty.first_backoff = 20ms;
  SharedClaimOptions o;
  o.ttl = 30s;
  o.heartbeat_interval = 2s;
  o.max_batch = 8;
  const std::uint64_t total = 120;
  std::vector<std::atomic<int>> claimed(total), counted(total);
  std::atomic<std::uint64_t> fenced{0}, reclaimed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      SharedStoreClaimer c(url, faulty, total, o);
      while (auto b = c.claim()) {
        for (std::uint64_t i = b->first; i < b->first + b->count; ++i) ++claimed[i];
        if (c.commit(*b, 10ms))
          for (std::uint64_t i = b->first; i < b->first + b->count; ++i) ++counted[i];
      }
      fenced += c.stats().fenced;
      reclaimed += c.stats().reclaimed;
    });
  }
  for (auto& th : threads) th.join();
  const std::string report = proxy.stop();
  ::setenv("AZURE_STORAGE_BLOB_ENDPOINT", endpoint.c_str(), 1);

  for (std::uint64_t i = 0; i < total; ++i) {
    EXPECT_EQ(claimed[i].load(), 1) << "index " << i;
    EXPECT_EQ(counted[i].load(), 1) << "index " << i;
  }
  EXPECT_EQ(fenced.load(), 0u);
  EXPECT_EQ(reclaimed.load(), 0u);
  // What the store holds agrees: the done records tile the session once.
  std::vector<int> recorded(total);
  for (const std::string& key : truth->list_keys("done/")) {
    const std::uint64_t first = std::stoull(key.substr(5));
    const std::string data = truth->get(key)->data;
    const std::uint64_t count = std::stoull(data.substr(data.find("\"count\":") + 8));
    for (std::uint64_t i = first; i < first + count; ++i) ++recorded.at(i);
  }
  for (std::uint64_t i = 0; i < total; ++i) EXPECT_EQ(recorded[i], 1) << "index " << i;
  for (const char* kind : {"drop", "delay", "503", "500-after", "reset-after"})
    EXPECT_GT(count_of(report, kind), 0) << kind << " never injected: " << report;
}

TEST_P(SharedClaimerTest, TheLatestRoundIsTheHighestWholeMarkerAndEachRoundHasItsOwnPrefix) {
  auto store = store::open_store(location_->url(), location_->options());
  EXPECT_EQ(claim::latest_round(*store), 0u);
  ASSERT_TRUE(store->put_if_absent(claim::round_marker_key(1), "{}"));
  ASSERT_TRUE(store->put_if_absent(claim::round_marker_key(12), "{}"));
  ASSERT_TRUE(store->put_if_absent("rounds/000099.json.partial", "{}"));  // not a marker
  EXPECT_FALSE(store->put_if_absent(claim::round_marker_key(12), "{}"));
  EXPECT_EQ(claim::latest_round(*store), 12u);
  EXPECT_EQ(claim::round_marker_key(12), "rounds/000012.json");
  EXPECT_EQ(claim::round_url(location_->url(), 3), location_->url() + "/round-000003");
  // A claimer of round 3 keeps its objects under round-000003/ only.
  SharedStoreClaimer c(claim::round_url(location_->url(), 3), location_->options(), 10, short_lease(false));
  ASSERT_TRUE(c.try_claim());
  EXPECT_FALSE(store->list_keys("round-000003/claims/").empty());
  EXPECT_TRUE(store->list_keys("claims/").empty());
}

}  // namespace
}  // namespace mpmux::test
