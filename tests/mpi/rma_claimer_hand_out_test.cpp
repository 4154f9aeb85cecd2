// RmaClaimer's open hand-out (HandOut::published) under mpiexec (2, 3 and 4 ranks), on each claim
// path: a position is handed out once the root publishes it, exactly once, in publish order; one
// never published is never handed out; ranks wait (not end) while nothing is published, and end
// when the root closes or someone exhausts the claimer.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "mpi_test_support.hpp"
#include "mpmux/error.hpp"
#include "mpmux/rma_claimer.hpp"
#include "rma_claimer_support.hpp"

namespace mpmux {
// How GoogleTest shows a ClaimStatus in a failure.
void PrintTo(ClaimStatus status, std::ostream* os) {
  *os << (status == ClaimStatus::claimed ? "claimed" : status == ClaimStatus::wait ? "wait" : "ended");
}
}  // namespace mpmux

namespace {

using mpitest::rank_of;
using mpmux::ClaimStatus;
using mpmux::HandOut;
using rmatest::compare_sets;
using rmatest::element_bytes;
using rmatest::gather;
using rmatest::input_for;
using rmatest::range;
using rmatest::size_of;
using rmatest::well_formed;

constexpr std::uint64_t kCount = 10000;
constexpr int kNoteTag = 77;   // worker -> root notes of the tests (on the test's communicator)
constexpr int kCountTag = 78;  // worker -> root: how many elements a claim just handed it

class RmaHandOut : public rmatest::ClaimPathTest {};

// Three positions in four, shuffled: what the root publishes (the same on every rank). Pending is
// range(0, n) in these tests, so a position is also its element's index.
std::vector<std::uint64_t> publish_order(std::uint64_t n) {
  std::vector<std::uint64_t> order;
  for (std::uint64_t k = 0; k < n; ++k)
    if (k % 4 != 3) order.push_back(k);
  std::shuffle(order.begin(), order.end(), std::mt19937(12));
  return order;
}

// The publish order cut into steps of growing size (the first holds one position).
std::vector<std::vector<std::uint64_t>> steps_of(const std::vector<std::uint64_t>& order) {
  std::vector<std::vector<std::uint64_t>> steps;
  std::size_t begin = 0;
  for (std::size_t length = 1; begin < order.size(); length *= 7) {
    const std::size_t end = std::min(order.size(), begin + length);
    steps.emplace_back(order.begin() + static_cast<long>(begin), order.begin() + static_cast<long>(end));
    begin = end;
  }
  return steps;
}

// Adds a claimed chunk to `indices`, counting elements whose bytes are wrong.
void record(const mpmux::Claim& claim, std::vector<std::uint64_t>& indices, std::uint64_t& wrong) {
  EXPECT_GT(claim.size(), 0u);
  const bool readable = well_formed(claim);
  EXPECT_TRUE(readable);
  for (std::size_t k = 0; k < claim.size(); ++k) {
    if (!readable || claim.elements.at(k) != element_bytes(claim.indices[k])) ++wrong;
    indices.push_back(claim.indices[k]);
  }
}

// Root: answers the claimer's requests until a note arrived from each of `count` ranks.
void serve_until_notes(mpmux::RmaClaimer& claimer, MPI_Comm comm, int count) {
  for (int notes = 0; notes < count;) {
    claimer.serve();
    int arrived = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, kNoteTag, comm, &arrived, &status);
    if (!arrived) continue;
    MPI_Recv(nullptr, 0, MPI_BYTE, status.MPI_SOURCE, kNoteTag, comm, MPI_STATUS_IGNORE);
    ++notes;
  }
}

void note_root(MPI_Comm comm) { MPI_Send(nullptr, 0, MPI_BYTE, 0, kNoteTag, comm); }

TEST_P(RmaHandOut, EveryPublishedPositionIsHandedOutOnceWhileTheRootPublishesInSteps) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const int size = size_of(comm);
  const auto order = publish_order(kCount);
  auto in = input_for(comm, 0, range(0, kCount));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {3, 50}, size - 1,
                            HandOut::published);
  std::vector<std::uint64_t> indices;
  std::uint64_t wrong = 0;
  if (rank_of(comm) == 0) {
    // Every worker first finds nothing published, and says so.
    serve_until_notes(claimer, comm, size - 1);
    EXPECT_EQ(claimer.published(), 0u);
    std::uint64_t published = 0;
    for (const auto& step : steps_of(order)) {
      claimer.publish(step);
      published += step.size();
      EXPECT_EQ(claimer.published(), published);
      // A pause: the next step only once the ranks took everything, so they wait in between.
      while (claimer.claimed() < claimer.published()) claimer.serve();
      EXPECT_EQ(claimer.claimed(), published) << "tickets beyond the published count are not claimed";
    }
    claimer.close();
  } else {
    mpmux::Claim claim;
    EXPECT_EQ(claimer.try_claim(claim), ClaimStatus::wait) << "nothing is published yet";
    EXPECT_EQ(claim.size(), 0u);
    note_root(comm);
    while (claimer.claim(claim)) record(claim, indices, wrong);
    // The root closes only once everything was handed out: a rank that ended before saw less.
    EXPECT_EQ(claimer.claimed(), order.size()) << "ended before the root closed";
    EXPECT_EQ(claimer.try_claim(claim), ClaimStatus::ended);
  }
  EXPECT_EQ(wrong, 0u);
  claimer.release();
  const auto all = gather(comm, 0, indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(compare_sets(all, order), "");
  }
}

TEST_P(RmaHandOut, ALoneClaimerGetsThePositionsInPublishOrder) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const auto order = publish_order(2000);
  auto in = input_for(comm, 0, range(0, 2000));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {1, 7}, 1,
                            HandOut::published);
  if (rank_of(comm) == 0) {
    for (const auto& step : steps_of(order)) claimer.publish(step);
    claimer.close();
  }
  if (rank_of(comm) == 1) {
    std::vector<std::uint64_t> indices;
    std::uint64_t wrong = 0;
    mpmux::Claim claim;
    while (claimer.claim(claim)) record(claim, indices, wrong);
    EXPECT_EQ(wrong, 0u);
    EXPECT_EQ(indices, order);
  }
  claimer.release();
}

TEST_P(RmaHandOut, ARootThatPublishesAndClaimsWithTryClaimSharesWithTheOtherRanks) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const int size = size_of(comm);
  const auto order = publish_order(kCount);
  auto in = input_for(comm, 0, range(0, kCount));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {1, 40}, size,
                            HandOut::published);
  std::vector<std::uint64_t> indices;
  std::uint64_t wrong = 0;
  mpmux::Claim claim;
  if (rank_of(comm) == 0) {
    // As a run's root: refill when little published is left unclaimed, claim between refills.
    std::size_t next = 0;
    for (;;) {
      if (next < order.size() && claimer.published() - claimer.claimed() < 100) {
        const std::size_t end = std::min(order.size(), next + 300);
        claimer.publish({order.begin() + static_cast<long>(next), order.begin() + static_cast<long>(end)});
        next = end;
        if (next == order.size()) claimer.close();
      }
      const ClaimStatus status = claimer.try_claim(claim);
      if (status == ClaimStatus::ended) break;
      if (status == ClaimStatus::claimed) record(claim, indices, wrong);
    }
    EXPECT_EQ(claimer.published(), order.size());
  } else {
    for (ClaimStatus status; (status = claimer.try_claim(claim)) != ClaimStatus::ended;) {
      if (status == ClaimStatus::claimed) record(claim, indices, wrong);
    }
  }
  EXPECT_EQ(wrong, 0u);
  claimer.release();
  const auto all = gather(comm, 0, indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(compare_sets(all, order), "");
  }
}

TEST_P(RmaHandOut, AOneRankClaimerHandsItsRootWhatItPublishes) {
  // Each rank on its own, as a run of one rank: the root publishes and claims with try_claim.
  auto in = input_for(MPI_COMM_SELF, 0, range(0, 100));
  mpmux::RmaClaimer claimer(MPI_COMM_SELF, 0, std::move(in.pending), std::move(in.elements), {1, 1}, 1,
                            HandOut::published);
  mpmux::Claim claim;
  EXPECT_EQ(claimer.try_claim(claim), ClaimStatus::wait);
  EXPECT_THROW(claimer.claim(claim), mpmux::ClaimError) << "the root would wait for its own publish";
  claimer.publish({50, 7, 8});
  std::vector<std::uint64_t> indices;
  std::uint64_t wrong = 0;
  for (int k = 0; k < 3; ++k) {
    ASSERT_EQ(claimer.try_claim(claim), ClaimStatus::claimed);
    record(claim, indices, wrong);
  }
  EXPECT_EQ(claimer.try_claim(claim), ClaimStatus::wait);
  EXPECT_EQ(claimer.claimed(), 3u);
  claimer.publish({99, 0});
  claimer.close();
  while (claimer.try_claim(claim) == ClaimStatus::claimed) record(claim, indices, wrong);
  EXPECT_EQ(claimer.try_claim(claim), ClaimStatus::ended);
  EXPECT_FALSE(claimer.claim(claim));
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(indices, (std::vector<std::uint64_t>{50, 7, 8, 99, 0}));
}

TEST_P(RmaHandOut, ClosingWithNothingPublishedEndsEveryRank) {
  MPI_Comm comm = MPI_COMM_WORLD;
  auto in = input_for(comm, 0, range(0, 500));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {}, size_of(comm),
                            HandOut::published);
  mpmux::Claim claim;
  if (rank_of(comm) == 0) {
    EXPECT_EQ(claimer.try_claim(claim), ClaimStatus::wait);
    serve_until_notes(claimer, comm, size_of(comm) - 1);
    claimer.close();
    claimer.close();  // repeating it does nothing
    EXPECT_EQ(claimer.try_claim(claim), ClaimStatus::ended);
    EXPECT_THROW(claimer.publish({1}), mpmux::ClaimError);
  } else {
    EXPECT_EQ(claimer.try_claim(claim), ClaimStatus::wait);
    note_root(comm);
    EXPECT_FALSE(claimer.claim(claim)) << "the root closed";
    EXPECT_EQ(claimer.try_claim(claim), ClaimStatus::ended);
  }
  EXPECT_EQ(claim.size(), 0u);
  claimer.release();
  if (rank_of(comm) == 0) {
    EXPECT_EQ(claimer.claimed(), 0u);
  }
}

TEST_P(RmaHandOut, ExhaustingAnOpenHandOutEndsTheRanksThatWait) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const int size = size_of(comm);
  const int exhauster = size - 1;
  const auto order = publish_order(kCount);
  const std::vector<std::uint64_t> first_half(order.begin(),
                                              order.begin() + static_cast<long>(order.size() / 2));
  auto in = input_for(comm, 0, range(0, kCount));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {2, 60}, size - 1,
                            HandOut::published);
  std::vector<std::uint64_t> indices;
  std::uint64_t wrong = 0;
  mpmux::Claim claim;
  // A worker tells the root how many elements each claim handed it.
  const auto tell_root = [&](const mpmux::Claim& c) {
    const std::uint64_t n = c.size();
    MPI_Send(&n, 1, MPI_UINT64_T, 0, kCountTag, comm);
  };
  if (rank_of(comm) == 0) {
    claimer.publish(first_half);
    // Tickets taken are not yet elements handed: a worker that took some reads the limit after,
    // and an exhaust seen there drops them. So the root waits for the workers' counts.
    for (std::uint64_t handed = 0; handed < first_half.size();) {
      claimer.serve();
      int arrived = 0;
      MPI_Iprobe(MPI_ANY_SOURCE, kCountTag, comm, &arrived, MPI_STATUS_IGNORE);
      if (!arrived) continue;
      std::uint64_t n = 0;
      MPI_Recv(&n, 1, MPI_UINT64_T, MPI_ANY_SOURCE, kCountTag, comm, MPI_STATUS_IGNORE);
      handed += n;
    }
    // Everything published is handed out and the hand-out is open: the workers wait. One of them
    // exhausts the claimer, and every worker says when it ended.
    MPI_Send(nullptr, 0, MPI_BYTE, exhauster, kNoteTag, comm);
    serve_until_notes(claimer, comm, size - 1);
    EXPECT_TRUE(claimer.exhausted());
    EXPECT_EQ(claimer.try_claim(claim), ClaimStatus::ended);
  } else if (rank_of(comm) == exhauster) {
    for (;;) {
      const ClaimStatus status = claimer.try_claim(claim);
      if (status == ClaimStatus::claimed) {
        record(claim, indices, wrong);
        tell_root(claim);
      }
      if (status == ClaimStatus::ended) break;
      int told = 0;
      MPI_Iprobe(0, kNoteTag, comm, &told, MPI_STATUS_IGNORE);
      if (told) {
        MPI_Recv(nullptr, 0, MPI_BYTE, 0, kNoteTag, comm, MPI_STATUS_IGNORE);
        claimer.exhaust();
      }
    }
    EXPECT_TRUE(claimer.exhausted());
    note_root(comm);
  } else {
    while (claimer.claim(claim)) {
      record(claim, indices, wrong);
      tell_root(claim);
    }
    EXPECT_TRUE(claimer.exhausted()) << "a waiting rank ended without the exhaust";
    note_root(comm);
  }
  EXPECT_EQ(wrong, 0u);
  claimer.release();
  const auto all = gather(comm, 0, indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(compare_sets(all, first_half), "");
  }
}

INSTANTIATE_TEST_SUITE_P(ReadPath, RmaHandOut, rmatest::kClaimPaths, rmatest::claim_path_name);

TEST(RmaHandOutArguments, PublishRefusesBadPositionsAndPublishesNothingOfThem) {
  MPI_Comm comm = MPI_COMM_WORLD;
  auto in = input_for(comm, 0, range(0, 10));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {}, size_of(comm),
                            HandOut::published);
  if (rank_of(comm) == 0) {
    try {
      claimer.publish({3, 10});
      ADD_FAILURE() << "no ClaimError";
    } catch (const mpmux::ClaimError& e) {
      EXPECT_NE(std::string(e.what()).find("position 10 is not below total 10"), std::string::npos)
          << e.what();
    }
    EXPECT_THROW(claimer.publish({4, 5, 4}), mpmux::ClaimError);
    EXPECT_EQ(claimer.published(), 0u);
    claimer.publish({3});
    try {
      claimer.publish({4, 3});
      ADD_FAILURE() << "no ClaimError";
    } catch (const mpmux::ClaimError& e) {
      EXPECT_NE(std::string(e.what()).find("position 3 was published before"), std::string::npos) << e.what();
    }
    claimer.publish({4, 5});  // refused calls published none of theirs
    EXPECT_EQ(claimer.published(), 3u);
    claimer.close();
  } else {
    EXPECT_THROW(claimer.publish({1}), mpmux::ClaimError) << "only the root publishes";
    EXPECT_THROW(claimer.close(), mpmux::ClaimError);
  }
  std::vector<std::uint64_t> indices;
  std::uint64_t wrong = 0;
  mpmux::Claim claim;
  if (rank_of(comm) != 0) {
    while (claimer.claim(claim)) record(claim, indices, wrong);
  }
  claimer.release();
  const auto all = gather(comm, 0, indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(compare_sets(all, {3, 4, 5}), "");
  }
}

TEST(RmaHandOutArguments, PublishingToAnAllAtOnceClaimerThrows) {
  MPI_Comm comm = MPI_COMM_WORLD;
  auto in = input_for(comm, 0, range(0, 10));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {}, size_of(comm));
  EXPECT_THROW(claimer.publish({1}), mpmux::ClaimError);
  EXPECT_EQ(claimer.published(), 10u);
}

TEST(RmaHandOutArguments, RanksThatDisagreeOnTheHandOutThrowOnEveryRank) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const HandOut handout = rank_of(comm) == 1 ? HandOut::published : HandOut::all_at_once;
  try {
    mpmux::RmaClaimer claimer(comm, 0, {}, {}, {}, size_of(comm), handout);
    ADD_FAILURE() << "no ClaimError";
  } catch (const mpmux::ClaimError& e) {
    EXPECT_NE(std::string(e.what()).find("the ranks disagree on the hand-out"), std::string::npos)
        << e.what();
  }
}

}  // namespace
