// RmaClaimer under mpiexec (2, 3 and 4 ranks): every pending element is handed out exactly once,
// with its bytes intact, through both read paths (node-shared memory and MPI_Get).
#include "mpmux/rma_claimer.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

// Header-only internal wrapper; the shared library this test links does not export it.
#include "../../src/claim/window.hpp"
#include "mpmux/error.hpp"

#include "mpi_test_support.hpp"
#include "rma_claimer_support.hpp"

namespace {

using mpitest::rank_of;
using rmatest::claim_all;
using rmatest::compare_sets;
using rmatest::environment;
using rmatest::gather;
using rmatest::input_for;
using rmatest::kClaim;
using rmatest::kNoShared;
using rmatest::Outcome;
using rmatest::range;
using rmatest::size_of;
using rmatest::Way;

constexpr std::uint64_t kCount = 10000;

class RmaClaimer : public rmatest::ClaimPathTest {};

TEST_P(RmaClaimer, EveryPendingElementIsClaimedOnceWhenAllRanksClaim) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const int size = size_of(comm);
  auto in = input_for(comm, 0, range(0, kCount));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {}, size);
  EXPECT_EQ(claimer.total(), kCount);
  // All ranks share one node here; the root always reads its own memory.
  EXPECT_EQ(claimer.reads_shared_memory(),
            rank_of(comm) == 0 || (GetParam() == Way::node_shared && !two_sided()));
  if (two_sided()) {
    EXPECT_TRUE(claimer.serves_requests());
    EXPECT_EQ(claimer.paths().front().path, "two-sided");
  }

  const Outcome o = claim_all([&](mpmux::Claim& c) { return claimer.claim(c); });
  EXPECT_EQ(o.wrong_elements, 0u);
  claimer.release();  // the root answers the others' last requests
  if (rank_of(comm) == 0) {
    EXPECT_GE(claimer.claimed(), kCount);
  }
  const auto all = gather(comm, 0, o.indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(compare_sets(all, range(0, kCount)), "");
  }
}

TEST_P(RmaClaimer, NonZeroRootThatDoesNotClaimServesTheOtherRanks) {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  const int root = size_of(comm) - 1;
  auto in = input_for(comm, root, range(0, kCount));
  {
    mpmux::RmaClaimer claimer(comm, root, std::move(in.pending), std::move(in.elements), {},
                              size_of(comm) - 1);
    Outcome o;
    if (rank_of(comm) != root) o = claim_all([&](mpmux::Claim& c) { return claimer.claim(c); });
    EXPECT_EQ(o.wrong_elements, 0u);
    claimer.release();
    const auto all = gather(comm, root, o.indices);
    if (rank_of(comm) == root) {
      EXPECT_EQ(compare_sets(all, range(0, kCount)), "");
    }
  }
  MPI_Comm_free(&comm);
}

TEST_P(RmaClaimer, GuidedChunksFollowTheFormulaForALoneClaimer) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const mpmux::ChunkPolicy policy{3, 700};
  const int workers = 3;
  auto in = input_for(comm, 0, range(0, kCount));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), policy, workers);

  // Only rank 1 claims, so the sequence is determined: c = clamp(ceil(remaining / 6), 3, 700).
  std::vector<std::uint64_t> expected;
  for (std::uint64_t seen = 0; seen < kCount;) {
    const std::uint64_t c =
        std::clamp((kCount - seen + 2 * workers - 1) / (2 * workers), policy.min, policy.max);
    expected.push_back(std::min(c, kCount - seen));
    seen += c;
  }
  ASSERT_EQ(expected.front(), 700u);
  ASSERT_EQ(expected[expected.size() - 2], 3u);

  if (rank_of(comm) == 1) {
    const Outcome o = claim_all([&](mpmux::Claim& c) { return claimer.claim(c); });
    EXPECT_EQ(o.wrong_elements, 0u);
    EXPECT_EQ(o.chunk_sizes, expected);
    EXPECT_EQ(o.indices, range(0, kCount)) << "a lone claimer takes the pending positions in order";
  }
}

TEST_P(RmaClaimer, GuidedChunksShrinkWithinMinAndMaxWhenAllRanksClaim) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const mpmux::ChunkPolicy policy{3, 700};
  auto in = input_for(comm, 0, range(0, kCount));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), policy, size_of(comm));

  std::vector<std::uint64_t> chunk_last;  // the last index of each chunk, in claim order
  mpmux::Claim claim;
  Outcome o;
  while (claimer.claim(claim)) {
    o.chunk_sizes.push_back(claim.size());
    chunk_last.push_back(claim.indices.back());
    o.indices.insert(o.indices.end(), claim.indices.begin(), claim.indices.end());
  }
  claimer.release();
  for (std::size_t i = 0; i < o.chunk_sizes.size(); ++i) {
    EXPECT_LE(o.chunk_sizes[i], policy.max);
    // Only the chunk that reaches the end may be cut below min.
    if (chunk_last[i] != kCount - 1) {
      EXPECT_GE(o.chunk_sizes[i], policy.min) << "chunk " << i;
    }
    if (i > 0) {
      EXPECT_LE(o.chunk_sizes[i], o.chunk_sizes[i - 1]) << "chunk " << i << " grew";
    }
  }
  const auto all_sizes = gather(comm, 0, o.chunk_sizes);
  const auto all = gather(comm, 0, o.indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(compare_sets(all, range(0, kCount)), "");
    // The first claim sees the whole set, so it takes max. (How far the tail shrinks depends on
    // how stale each rank's view is; the lone-claimer test checks the exact sequence.)
    EXPECT_EQ(*std::max_element(all_sizes.begin(), all_sizes.end()), policy.max);
  }
}

TEST_P(RmaClaimer, ClaimNTakesExactlyTheCountUntilTheTail) {
  MPI_Comm comm = MPI_COMM_WORLD;
  auto in = input_for(comm, 0, range(0, kCount));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {}, size_of(comm));

  const Outcome o = claim_all([&](mpmux::Claim& c) { return claimer.claim_n(7, c); });
  EXPECT_EQ(o.wrong_elements, 0u);
  mpmux::Claim unused;
  EXPECT_THROW(claimer.claim_n(0, unused), mpmux::ClaimError);
  claimer.release();
  const auto all_sizes = gather(comm, 0, o.chunk_sizes);
  const auto all = gather(comm, 0, o.indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(compare_sets(all, range(0, kCount)), "");
    EXPECT_EQ(std::count(all_sizes.begin(), all_sizes.end(), 7u), static_cast<long>(kCount / 7));
    EXPECT_EQ(std::count(all_sizes.begin(), all_sizes.end(), kCount % 7), 1);
  }
}

TEST_P(RmaClaimer, OnlyThePendingSubsetIsHandedOut) {
  MPI_Comm comm = MPI_COMM_WORLD;
  std::vector<std::uint64_t> odd;
  for (std::uint64_t k = 1; k < kCount; k += 2) odd.push_back(k);
  auto in = input_for(comm, 0, odd);
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {2, 64}, size_of(comm));
  EXPECT_EQ(claimer.total(), odd.size());

  const Outcome o = claim_all([&](mpmux::Claim& c) { return claimer.claim(c); });
  EXPECT_EQ(o.wrong_elements, 0u);
  claimer.release();
  const auto all = gather(comm, 0, o.indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(compare_sets(all, odd), "");
  }
}

TEST_P(RmaClaimer, EmptyPendingSetClaimsNothing) {
  MPI_Comm comm = MPI_COMM_WORLD;
  mpmux::RmaClaimer claimer(comm, 0, {}, {}, {}, size_of(comm));
  EXPECT_EQ(claimer.total(), 0u);
  mpmux::Claim claim;
  claim.indices = {42};
  EXPECT_FALSE(claimer.claim(claim));
  EXPECT_TRUE(claim.indices.empty());
  EXPECT_FALSE(claimer.claim_n(5, claim));
  claimer.release();
  if (rank_of(comm) == 0) {
    EXPECT_EQ(claimer.claimed(), 0u) << "nobody touches the counter when there is nothing to claim";
  }
}

TEST_P(RmaClaimer, OneEmptyElementIsHandedOutOnce) {
  MPI_Comm comm = MPI_COMM_WORLD;
  auto in = input_for(comm, 0, {7});  // element 7 has no bytes: the data array is empty
  if (rank_of(comm) == 0) {
    EXPECT_EQ(in.elements.data.size(), 0u);
  }
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {}, size_of(comm));
  const Outcome o = claim_all([&](mpmux::Claim& c) { return claimer.claim(c); });
  EXPECT_EQ(o.wrong_elements, 0u);
  claimer.release();
  const auto all = gather(comm, 0, o.indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(all, std::vector<std::uint64_t>{7});
  }
}

TEST_P(RmaClaimer, SplitCommunicatorsRunIndependentClaimers) {
  const int world_rank = rank_of(MPI_COMM_WORLD);
  MPI_Comm half = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank % 2, world_rank, &half);
  // Each half hands out its own range, from its last rank.
  const auto indices = world_rank % 2 == 0 ? range(0, 3000) : range(3000, 7000);
  const int root = size_of(half) - 1;
  auto in = input_for(half, root, indices);
  {
    // The forced-remote path creates an osc/rdma window, which Open MPI 4.1 cannot set up on two
    // disjoint communicators at once (open-mpi/ompi#9492): there the halves take turns.
    const bool take_turns = GetParam() == Way::forced_remote;
    if (take_turns && world_rank % 2 == 1) MPI_Barrier(MPI_COMM_WORLD);
    mpmux::RmaClaimer claimer(half, root, std::move(in.pending), std::move(in.elements), {1, 50},
                              size_of(half));
    if (take_turns && world_rank % 2 == 0) MPI_Barrier(MPI_COMM_WORLD);
    const Outcome o = claim_all([&](mpmux::Claim& c) { return claimer.claim(c); });
    EXPECT_EQ(o.wrong_elements, 0u);
    claimer.release();
    const auto all = gather(half, root, o.indices);
    if (rank_of(half) == root) {
      EXPECT_EQ(compare_sets(all, indices), "");
    }
  }
  MPI_Comm_free(&half);
}

INSTANTIATE_TEST_SUITE_P(ReadPath, RmaClaimer, rmatest::kClaimPaths, rmatest::claim_path_name);

TEST(RmaClaimerPaths, RanksReadingLocallyAndRemotelyShareOneCounter) {
  MPI_Comm comm = MPI_COMM_WORLD;
  if (rank_of(comm) % 2 == 1) {
    setenv(kNoShared, "1", 1);
  } else {
    unsetenv(kNoShared);  // also where the transport matrix set it for the whole job
  }
  auto in = input_for(comm, 0, range(0, kCount));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {1, 16}, size_of(comm));
  unsetenv(kNoShared);
  const char* claim_env = std::getenv(kClaim);
  if (!claim_env || std::string(claim_env) != "two-sided") {
    EXPECT_EQ(claimer.reads_shared_memory(), rank_of(comm) % 2 == 0);
  }
  const Outcome o = claim_all([&](mpmux::Claim& c) { return claimer.claim(c); });
  EXPECT_EQ(o.wrong_elements, 0u);
  claimer.release();
  const auto all = gather(comm, 0, o.indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(compare_sets(all, range(0, kCount)), "");
  }
}

// Under btl/tcp alone, Debian's Open MPI (osc/pt2pt excluded) has no one-sided way to a window
// made by MPI_Win_create: osc/rdma needs a btl with RDMA.
bool remote_windows_impossible() {
  return environment("OMPI_MCA_btl") == "self,tcp" && environment("OMPI_MCA_osc").empty() &&
         environment(kClaim) != "two-sided";
}

TEST(RmaClaimerPaths, EachWindowNamesTheComponentOrTheTwoSidedService) {
  MPI_Comm comm = MPI_COMM_WORLD;
  if (rank_of(comm) != 0) setenv(kNoShared, "1", 1);
  auto in = input_for(comm, 0, range(0, 1000));
  mpmux::RmaClaimer claimer(comm, 0, std::move(in.pending), std::move(in.elements), {1, 16}, size_of(comm));
  unsetenv(kNoShared);
  std::string seen;
  for (const auto& p : claimer.paths()) seen += p.window + "=" + p.path + " (" + p.detail + "); ";
  const auto& paths = claimer.paths();
  ASSERT_FALSE(paths.empty());
  if (environment(kClaim) == "two-sided") {
    EXPECT_EQ(paths[0].window, "counter") << seen;
    EXPECT_EQ(paths[0].path, "two-sided") << seen;
    EXPECT_NE(paths[0].detail.find("MPMUX_CLAIM=two-sided"), std::string::npos) << seen;
  } else {
    // One node: the counter is a shared window, which osc/sm serves.
    EXPECT_EQ(paths[0].window, "counter") << seen;
    EXPECT_EQ(paths[0].path, "sm") << seen;
    EXPECT_EQ(paths[0].detail, "MPI_Win_allocate_shared") << seen;
    ASSERT_EQ(paths.back().window, "elements (remote)") << seen;
    const std::string remote = paths.back().path;
    EXPECT_TRUE(remote == "rdma" || remote == "pt2pt" || remote == "ucx" || remote == "two-sided") << seen;
    if (remote_windows_impossible()) {
      EXPECT_EQ(remote, "two-sided") << seen;
      EXPECT_NE(paths.back().detail.find("MPI_Win_create on window 'elements (remote)'"), std::string::npos)
          << seen;
      EXPECT_TRUE(claimer.serves_requests());
    }
    if (environment("OMPI_MCA_osc") == "pt2pt,sm") EXPECT_EQ(remote, "pt2pt") << seen;
  }
  const Outcome o = claim_all([&](mpmux::Claim& c) { return claimer.claim(c); });
  EXPECT_EQ(o.wrong_elements, 0u);
  claimer.release();
  const auto all = gather(comm, 0, o.indices);
  if (rank_of(comm) == 0) {
    EXPECT_EQ(compare_sets(all, range(0, 1000)), "");
  }
}

TEST(RmaClaimerPaths, OneSidedOnlyNamesTheWindowTheTransportAndTheSettingsThatHelp) {
  if (!remote_windows_impossible()) GTEST_SKIP() << "needs OMPI_MCA_btl=self,tcp (ctest's transport matrix)";
  MPI_Comm comm = MPI_COMM_WORLD;
  if (rank_of(comm) != 0) setenv(kNoShared, "1", 1);
  setenv(kClaim, "one-sided", 1);
  try {
    mpmux::RmaClaimer claimer(comm, 0, {}, {}, {}, size_of(comm));
    ADD_FAILURE() << "no ClaimError";
  } catch (const mpmux::ClaimError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    EXPECT_NE(what.find("no one-sided path for window 'elements (remote)' over btl self,tcp"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("MPI_ERR_WIN"), std::string::npos) << what;
    EXPECT_NE(what.find("--mca osc sm,pt2pt,rdma"), std::string::npos) << what;
  }
  unsetenv(kClaim);
  unsetenv(kNoShared);
}

TEST(RmaClaimerArguments, MismatchedPendingAndElementsThrowOnEveryRank) {
  MPI_Comm comm = MPI_COMM_WORLD;
  std::vector<std::uint64_t> pending;
  mpmux::ElementBuffer elements;
  if (rank_of(comm) == 0) {
    pending = {1, 2, 3};
    elements.push("one");
    elements.push("two");
  }
  try {
    mpmux::RmaClaimer claimer(comm, 0, pending, elements, {}, size_of(comm));
    ADD_FAILURE() << "no ClaimError";
  } catch (const mpmux::ClaimError& e) {
    const std::string what = e.what();
    if (rank_of(comm) == 0) {
      EXPECT_NE(what.find("3 pending indices but 2 elements"), std::string::npos) << what;
    } else {
      EXPECT_NE(what.find("rank 0 passed invalid arguments"), std::string::npos) << what;
    }
  }
}

TEST(RmaClaimerArguments, RootOutsideTheCommunicatorThrows) {
  MPI_Comm comm = MPI_COMM_WORLD;
  EXPECT_THROW(mpmux::RmaClaimer(comm, size_of(comm), {}, {}, {}, 1), mpmux::ClaimError);
  EXPECT_THROW(mpmux::RmaClaimer(comm, -1, {}, {}, {}, 1), mpmux::ClaimError);
}

TEST(RmaClaimerArguments, MalformedNoSharedVariableIsAUsageErrorOnItsRank) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const bool bad = rank_of(comm) == size_of(comm) - 1;
  if (bad) setenv(kNoShared, "yes", 1);
  try {
    mpmux::RmaClaimer claimer(comm, 0, {}, {}, {}, size_of(comm));
    ADD_FAILURE() << "no error";
  } catch (const mpmux::UsageError& e) {
    EXPECT_TRUE(bad) << e.what();
    EXPECT_NE(std::string(e.what()).find("MPMUX_RMA_NO_SHARED=yes"), std::string::npos) << e.what();
  } catch (const mpmux::ClaimError& e) {
    EXPECT_FALSE(bad) << e.what();
  }
  unsetenv(kNoShared);
}

TEST(RmaClaimerArguments, MalformedClaimVariableIsAUsageErrorOnItsRank) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const std::string saved = environment(kClaim);
  const bool bad = rank_of(comm) == size_of(comm) - 1;
  if (bad) setenv(kClaim, "rdma", 1);
  try {
    mpmux::RmaClaimer claimer(comm, 0, {}, {}, {}, size_of(comm));
    ADD_FAILURE() << "no error";
  } catch (const mpmux::UsageError& e) {
    EXPECT_TRUE(bad) << e.what();
    EXPECT_NE(std::string(e.what()).find("MPMUX_CLAIM=rdma"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected auto, one-sided or two-sided"), std::string::npos)
        << e.what();
  } catch (const mpmux::ClaimError& e) {
    EXPECT_FALSE(bad) << e.what();
  }
  if (saved.empty()) {
    unsetenv(kClaim);
  } else {
    setenv(kClaim, saved.c_str(), 1);
  }
}

TEST(RmaClaimerArguments, BadChunkPolicyThrowsOnEveryRank) {
  MPI_Comm comm = MPI_COMM_WORLD;
  const mpmux::ChunkPolicy bad = rank_of(comm) == 1 ? mpmux::ChunkPolicy{5, 4} : mpmux::ChunkPolicy{};
  EXPECT_THROW(mpmux::RmaClaimer(comm, 0, {}, {}, bad, size_of(comm)), mpmux::ClaimError);
}

TEST(RmaWindow, FailedCallNamesTheCallTheWindowAndTheRank) {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  {
    auto window = mpmux::claim::Window::allocate(comm, 8, 8, "probe");
    // A flush outside any access epoch is erroneous; the window returns the error instead of aborting.
    try {
      window.flush(0);
      ADD_FAILURE() << "MPI_Win_flush outside an epoch succeeded";
    } catch (const mpmux::ClaimError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("MPI_Win_flush on window 'probe' at rank " + std::to_string(rank_of(comm))),
                std::string::npos)
          << what;
    }
  }
  MPI_Comm_free(&comm);
}

}  // namespace
