// run_concurrently: every element recorded once, short elements handed over in batches sized
// from the durations seen, and a batch's bytes as the plugin ABI passes them.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"
#include "run/concurrent_tasks.hpp"
#include "test_support.hpp"

namespace {

using mpmux::run::Attempt;
using mpmux::run::AttemptSink;
using mpmux::run::ElementBatch;

// Tasks that end at once, each claiming to have taken `ns`, and remember the batches they got.
class InstantTasks final : public mpmux::run::ConcurrentTasks {
 public:
  InstantTasks(int slots, std::size_t max_batch, std::int64_t ns) : slots_(slots), max_(max_batch), ns_(ns) {}
  int slots() const override { return slots_; }
  std::size_t max_batch() const override { return max_; }
  void start(std::shared_ptr<const ElementBatch> batch, std::shared_ptr<AttemptSink> sink) override {
    sizes.push_back(batch->size());
    for (std::size_t k = 0; k < batch->size(); ++k) {
      Attempt attempt;
      attempt.outcome.t_start = 1'000'000'000;
      attempt.outcome.t_end = attempt.outcome.t_start + ns_;
      attempt.outcome.result = std::string(batch->bytes(k));
      sink->put(batch->key(k), std::move(attempt), k + 1 == batch->size());
    }
  }
  void stop_starting() override {}
  bool cancel() override { return false; }

  std::vector<std::size_t> sizes;

 private:
  int slots_;
  std::size_t max_;
  std::int64_t ns_;
};

mpmux::MuxId range_session(const std::filesystem::path& root, std::uint64_t n) {
  return mpmux::Session::create(mpmux::create_mux(root, mpmux::make_range(n), "unit")).id();
}

std::uint64_t run_all(const mpmux::MuxId& id, InstantTasks& tasks) {
  mpmux::RunOptions options;
  options.fsync = false;
  mpmux::Run run(id, MPI_COMM_SELF, options);
  mpmux::run::run_concurrently(run, tasks);
  run.finish();
  return mpmux::session_stat(mpmux::Session::open(id)).done;
}

}  // namespace

TEST(ElementBatch, KeepsEachElementsBytesFollowedByANul) {
  ElementBatch batch(7);
  for (const char* text : {"{\"i\":0}", "", "abc"}) {
    mpmux::WorkItem item;
    item.index = batch.size() + 10;
    item.bytes = text;
    batch.add(item);
  }
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch.bytes(0), "{\"i\":0}");
  EXPECT_EQ(batch.bytes(1), "");
  EXPECT_EQ(batch.bytes(2), "abc");
  for (std::size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(batch.bytes(k).data()[batch.bytes(k).size()], '\0');
    EXPECT_EQ(batch.item(k).index, k + 10);
    EXPECT_NE(batch.key(k), batch.key((k + 1) % 3));
  }
}

TEST(RunConcurrently, RecordsEveryShortElementOnceAndHandsThemOverInBatches) {
  mpmux::test::TempDir dir;
  const auto id = range_session(dir.path(), 3000);
  InstantTasks tasks(2, 64, 1000);  // 1 us each: 64 to a batch at most
  EXPECT_EQ(run_all(id, tasks), 3000u);
  std::size_t handed = 0;
  for (std::size_t n : tasks.sizes) handed += n;
  EXPECT_EQ(handed, 3000u);
  EXPECT_EQ(tasks.sizes.front(), 1u) << "the first batch is one element: no duration is known yet";
  EXPECT_EQ(*std::max_element(tasks.sizes.begin(), tasks.sizes.end()), 64u);
}

TEST(RunConcurrently, HandsLongElementsOverOneAtATime) {
  mpmux::test::TempDir dir;
  const auto id = range_session(dir.path(), 50);
  InstantTasks tasks(3, 64, 10'000'000);  // 10 ms each: more than a batch's worth
  EXPECT_EQ(run_all(id, tasks), 50u);
  EXPECT_EQ(tasks.sizes, std::vector<std::size_t>(50, 1));
}
