// What the RmaClaimer tests share: element bytes, gathering what every rank claimed, comparing
// it with what was expected, and the fixture that runs a test on each claim path.
#pragma once
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <numeric>
#include <string>
#include <vector>

#include "mpi_test_support.hpp"
#include "mpmux/rma_claimer.hpp"

namespace rmatest {

using mpitest::rank_of;

inline constexpr const char* kNoShared = "MPMUX_RMA_NO_SHARED";
inline constexpr const char* kClaim = "MPMUX_CLAIM";

// What ctest's transport matrix set for this run (OMPI_MCA_* variables), "" when unset.
inline std::string environment(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

inline int size_of(MPI_Comm comm) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  return size;
}

// Element k's bytes: lengths vary, some are empty, a few are large.
inline std::string element_bytes(std::uint64_t k) {
  if (k % 4999 == 7) return "";
  std::string s = "element-" + std::to_string(k);
  if (k % 5000 == 1234) return s + std::string(70000, 'z');
  s.append(k % 23, static_cast<char>('a' + k % 26));
  return s;
}

inline std::vector<std::uint64_t> range(std::uint64_t begin, std::uint64_t end) {
  std::vector<std::uint64_t> v(end - begin);
  std::iota(v.begin(), v.end(), begin);
  return v;
}

// The root's constructor arguments for `indices`; other ranks pass empty ones.
struct Input {
  std::vector<std::uint64_t> pending;
  mpmux::ElementBuffer elements;
};

inline Input input_for(MPI_Comm comm, int root, const std::vector<std::uint64_t>& indices) {
  Input in;
  if (rank_of(comm) != root) return in;
  in.pending = indices;
  for (auto k : indices) in.elements.push(element_bytes(k));
  return in;
}

struct Outcome {
  std::vector<std::uint64_t> indices;      // in claim order
  std::vector<std::uint64_t> chunk_sizes;  // in claim order
  std::uint64_t wrong_elements = 0;        // bytes that differ from element_bytes(index)
};

// True when a claim's offsets describe its data (so at() cannot throw and desync the ranks).
inline bool well_formed(const mpmux::Claim& claim) {
  const auto& offsets = claim.elements.offsets;
  return offsets.size() == claim.indices.size() + 1 && offsets.front() == 0 &&
         offsets.back() == claim.elements.data.size() && std::is_sorted(offsets.begin(), offsets.end());
}

// Claims until `next` returns false, checking each element's bytes on the way.
inline Outcome claim_all(const std::function<bool(mpmux::Claim&)>& next) {
  Outcome o;
  mpmux::Claim claim;
  while (next(claim)) {
    EXPECT_GT(claim.size(), 0u);
    const bool readable = well_formed(claim);
    EXPECT_TRUE(readable) << "chunk starting at index " << (claim.size() ? claim.indices[0] : 0);
    for (std::size_t k = 0; k < claim.size(); ++k) {
      if (!readable || claim.elements.at(k) != element_bytes(claim.indices[k])) ++o.wrong_elements;
      o.indices.push_back(claim.indices[k]);
    }
    o.chunk_sizes.push_back(claim.size());
  }
  EXPECT_EQ(claim.size(), 0u) << "a failed claim leaves an empty chunk";
  EXPECT_TRUE(well_formed(claim));
  EXPECT_FALSE(next(claim)) << "a claimer that ran out stays out";
  return o;
}

// Everything `local` holds on each rank, concatenated on `root`.
inline std::vector<std::uint64_t> gather(MPI_Comm comm, int root, const std::vector<std::uint64_t>& local) {
  const int size = size_of(comm);
  const bool is_root = rank_of(comm) == root;
  int count = static_cast<int>(local.size());
  std::vector<int> counts(is_root ? size : 0);
  MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, root, comm);
  std::vector<int> displs(counts.size());
  if (is_root) std::exclusive_scan(counts.begin(), counts.end(), displs.begin(), 0);
  std::vector<std::uint64_t> all(is_root ? static_cast<std::size_t>(displs.back() + counts.back()) : 0);
  MPI_Gatherv(local.data(), count, MPI_UINT64_T, all.data(), counts.data(), displs.data(), MPI_UINT64_T, root,
              comm);
  return all;
}

// "" when `claimed` holds each of `expected` exactly once and nothing else; else what differs.
inline std::string compare_sets(std::vector<std::uint64_t> claimed, std::vector<std::uint64_t> expected) {
  std::sort(claimed.begin(), claimed.end());
  std::sort(expected.begin(), expected.end());
  std::string problems;
  auto dup = std::adjacent_find(claimed.begin(), claimed.end());
  if (dup != claimed.end()) problems += "index " + std::to_string(*dup) + " claimed twice; ";
  std::vector<std::uint64_t> missing;
  std::vector<std::uint64_t> extra;
  std::set_difference(expected.begin(), expected.end(), claimed.begin(), claimed.end(),
                      std::back_inserter(missing));
  std::set_difference(claimed.begin(), claimed.end(), expected.begin(), expected.end(),
                      std::back_inserter(extra));
  if (!missing.empty()) {
    problems += std::to_string(missing.size()) + " missing, first " + std::to_string(missing[0]) + "; ";
  }
  if (!extra.empty()) {
    problems += std::to_string(extra.size()) + " unexpected, first " + std::to_string(extra[0]);
  }
  return problems;
}

// Runs every claimer test three ways: ranks on the root's node reading the shared memory directly,
// every non-root rank forced onto the MPI_Get path, and every window forced onto the root's
// two-sided service. The ways the environment leaves open (ctest runs this file under several
// transports) decide the rest.
enum class Way { node_shared, forced_remote, two_sided };

class ClaimPathTest : public ::testing::TestWithParam<Way> {
 protected:
  void SetUp() override {
    saved_claim_ = std::getenv(kClaim) ? std::getenv(kClaim) : "";
    if (GetParam() == Way::forced_remote) {
      setenv(kNoShared, "1", 1);
    } else {
      unsetenv(kNoShared);
    }
    if (GetParam() == Way::two_sided) setenv(kClaim, "two-sided", 1);
  }
  void TearDown() override {
    unsetenv(kNoShared);
    if (saved_claim_.empty()) {
      unsetenv(kClaim);
    } else {
      setenv(kClaim, saved_claim_.c_str(), 1);
    }
  }
  // True when this run claims through the root's service: asked for here or by the environment.
  bool two_sided() const { return GetParam() == Way::two_sided || saved_claim_ == "two-sided"; }

 private:
  std::string saved_claim_;
};

inline const auto kClaimPaths = ::testing::Values(Way::node_shared, Way::forced_remote, Way::two_sided);

inline std::string claim_path_name(const ::testing::TestParamInfo<Way>& info) {
  switch (info.param) {
    case Way::node_shared:
      return "NodeShared";
    case Way::forced_remote:
      return "ForcedRemote";
    default:
      return "TwoSided";
  }
}

}  // namespace rmatest
