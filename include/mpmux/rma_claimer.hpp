// Claiming elements inside one MPI job with one-sided atomics.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/export.hpp"

namespace mpmux {

/// Guided chunking: from the last counter value seen, a claim takes
/// c = clamp(ceil(remaining / (2 * workers)), min, max) elements.
struct MPMUX_EXPORT ChunkPolicy {
  std::uint64_t min = 1;
  std::uint64_t max = 1024;
};

/// One claimed chunk: elements indices[k], bytes at(k).
struct MPMUX_EXPORT Claim {
  std::vector<std::uint64_t> indices;
  ElementBuffer elements;
  std::size_t size() const { return indices.size(); }
};

/// The root rank exposes four windows: counter (one uint64), pending (the indices to hand out),
/// offsets (n+1 uint64, into data) and data (the elements' bytes, packed in pending order, so a
/// chunk is one contiguous range). Ranks on the root's node read pending/offsets/data directly
/// through MPI_Win_allocate_shared memory; other ranks use MPI_Get. Workers hold one passive
/// epoch (MPI_Win_lock_all) for the claimer's lifetime and claim with MPI_Fetch_and_op(+c) and
/// MPI_Win_flush, so the root never has to answer a request.
///
/// Guarantee: every pending position is returned by claim() to exactly one caller across the
/// communicator.
class MPMUX_EXPORT RmaClaimer {
 public:
  /// Collective over `comm`. On `root`, `pending` lists the element indices to hand out and
  /// `elements.at(k)` holds the bytes of element pending[k]; other ranks pass empty values.
  /// `workers` is the number of ranks that will claim (for the guided chunk size).
  RmaClaimer(MPI_Comm comm, int root, std::vector<std::uint64_t> pending, ElementBuffer elements,
             ChunkPolicy policy, int workers);
  /// Collective (frees the windows).
  ~RmaClaimer();
  RmaClaimer(const RmaClaimer&) = delete;
  RmaClaimer& operator=(const RmaClaimer&) = delete;

  /// Claims the next guided chunk into `out` (replacing its contents). Returns false when
  /// nothing is left. Any rank may call it, the root included.
  bool claim(Claim& out);
  /// Claims exactly `count` elements (or what is left); used by benchmarks and tests.
  bool claim_n(std::uint64_t count, Claim& out);

  /// Number of pending elements handed out so far (may exceed total() once exhausted is seen).
  std::uint64_t claimed() const;
  std::uint64_t total() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mpmux
