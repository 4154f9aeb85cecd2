// The state of an RmaClaimer, shared by the files that implement it: rma_claimer.cpp (windows,
// claims from the counter), rma_service.cpp (the root's two-sided service) and rma_hand_out.cpp
// (the open hand-out's reads). Internal to src/claim.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "claim/window.hpp"
#include "mpmux/error.hpp"
#include "mpmux/rma_claimer.hpp"

namespace mpmux::claim::rma {

constexpr std::uint64_t kWord = sizeof(std::uint64_t);

// Position k of the region's table: the element index pending[k] and where its bytes start in
// data (entry total holds the end). One table instead of two arrays saves a Get per remote claim.
struct Entry {
  std::uint64_t index;
  std::uint64_t offset;
};
static_assert(sizeof(Entry) == 2 * kWord);

// A chunk's indices and offsets (from its first byte) out of its n + 1 table entries; returns
// the chunk's first byte and its size.
inline std::pair<std::uint64_t, std::uint64_t> chunk_index(const Entry* entries, std::size_t n, Claim& out) {
  const std::uint64_t begin = entries[0].offset;
  out.indices.resize(n);
  out.elements.offsets.resize(n + 1);
  for (std::size_t i = 0; i < n; ++i) {
    out.indices[i] = entries[i].index;
    out.elements.offsets[i] = entries[i].offset - begin;
  }
  out.elements.offsets[n] = entries[n].offset - begin;
  return {begin, entries[n].offset - begin};
}
// The two-sided service: a request is {op, count} (uint64); a take is answered with {first, n,
// published count} followed, when n > 0, by the chunk's n + 1 table entries and its bytes (n = 0:
// nothing more for this rank). Takes get their own reply tag: with an open hand-out the root may
// hold one back while the rank's later reads (claimed(), exhausted()) are answered at once.
constexpr int kRequestTag = 1;
constexpr int kReplyTag = 2;
constexpr int kTakeReplyTag = 3;
constexpr std::size_t kTakeHeader = 3 * kWord;
// The remote path reads entries and slots a block at a time (4 KiB), so that a rank claiming small
// chunks in a row pays one round trip for its bytes, not one more for where they are.
constexpr std::uint64_t kEntryBlock = 256;
constexpr std::uint64_t kSlotBlock = 512;
enum Op : std::uint64_t { kTake = 1, kRead = 2, kExhaust = 3, kRelease = 4 };

// The open hand-out's limit word: the published count, and two flags no count reaches.
constexpr std::uint64_t kClosedBit = std::uint64_t{1} << 63;
constexpr std::uint64_t kExhaustedBit = std::uint64_t{1} << 62;
constexpr std::uint64_t kCountMask = kExhaustedBit - 1;
// A slot the root has not written yet (a position is always below total).
constexpr std::uint64_t kUnwrittenSlot = ~std::uint64_t{0};
// A counter at or past this mark was ended early; claims alone never take it that far.
constexpr std::uint64_t kExhaustedMark = std::uint64_t{1} << 62;

// A communicator the claimer created; freed on scope exit.
class Communicator {
 public:
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator() {
    if (comm_ != MPI_COMM_NULL && claim::mpi_is_live()) MPI_Comm_free(&comm_);
  }
  MPI_Comm get() const { return comm_; }
  MPI_Comm* out() { return &comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

inline void check(int rc, const char* call, int rank, int size) {
  if (rc != MPI_SUCCESS) {
    throw ClaimError(std::string("RmaClaimer: ") + call + " at rank " + std::to_string(rank) + " of " +
                     std::to_string(size) + " failed: " + claim::mpi_error_text(rc));
  }
}

inline std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
  return a > std::numeric_limits<std::uint64_t>::max() - b ? std::numeric_limits<std::uint64_t>::max()
                                                           : a + b;
}

inline void clear(Claim& out) {
  out.indices.clear();
  out.elements.data.clear();
  out.elements.offsets.assign(1, 0);
}

// Tickets [first, end) a rank has taken from the counter and not yet been handed.
struct Tickets {
  std::uint64_t first = 0;
  std::uint64_t end = 0;
  bool empty() const { return first >= end; }
};

// Slots [slot, slot + length) hold consecutive positions; their entries are at scratch[entry].
struct Run {
  std::size_t slot;
  std::size_t length;
  std::size_t entry;
};

}  // namespace mpmux::claim::rma

namespace mpmux {

struct RmaClaimer::State {
  int root = 0;
  int rank = 0;
  int size = 1;
  std::uint64_t workers = 1;
  ChunkPolicy policy;
  HandOut handout = HandOut::all_at_once;
  std::uint64_t total = 0;
  std::uint64_t data_bytes = 0;
  // Largest counter value this rank knows of: the guided chunk is computed from it, and once it
  // reaches total, claims fail without touching the counter.
  std::uint64_t last_seen = 0;

  // Open hand-out, every rank: the last limit word read, and the tickets not yet handed out.
  std::uint64_t last_limit = 0;
  claim::rma::Tickets held;
  bool take_outstanding = false;  // a rank claiming by message: a take awaits its reply
  // Open hand-out, root: what it published, and the message claimers whose take it holds back.
  std::uint64_t published = 0;
  bool closed = false;
  std::vector<bool> is_published;
  std::uint64_t* root_slots = nullptr;
  std::vector<claim::rma::Tickets> held_for;  // by rank
  std::vector<bool> held_back;                // by rank: its take awaits publish or close
  std::size_t held_back_count = 0;
  Claim composed;  // root: a chunk being put into a reply

  // Region layout (bytes): Entry table[total + 1] | slots[total] (open hand-out) | data[data_bytes].
  MPI_Aint slots_disp = 0;
  MPI_Aint data_disp = 0;
  // Displacements at the root: 0, or the root's addresses in dynamic windows.
  MPI_Aint counter_disp = 0;
  MPI_Aint limit_disp = 0;
  MPI_Aint remote_base = 0;

  // Set when this rank reads the region directly (the root, and ranks sharing its node).
  const claim::rma::Entry* table = nullptr;
  const std::uint64_t* slots = nullptr;
  const char* data = nullptr;
  std::vector<claim::rma::Entry> scratch;  // a chunk's entries, on the paths that compose them
  // The remote path's copies of the last block of entries and of slots it read. Entries are written
  // before the first claim and slots before the limit passes them, and neither changes after, so
  // a copy stays right for the claimer's life.
  std::vector<claim::rma::Entry> entry_cache;
  std::uint64_t entry_cache_first = 0;
  std::vector<std::uint64_t> slot_cache;
  std::uint64_t slot_cache_first = 0;
  std::vector<claim::rma::Run> runs;  // the remote path's runs of consecutive positions

  // Two-sided paths. counter_by_message: the counter is root memory that only the root touches.
  bool counter_by_message = false;
  bool by_message = false;   // this rank claims by request and reply
  int message_claimers = 0;  // ranks that claim by message (root: how many releases to await)
  int releases = 0;          // root: releases received
  bool released = false;
  std::uint64_t local_counter = 0;  // root, when counter_by_message
  std::uint64_t local_limit = 0;    // root, when counter_by_message
  // Root: the counter's (and limit's) memory for MPI_Win_create / dynamic windows.
  std::uint64_t counter_words[2] = {0, 0};
  std::vector<char> region_memory;  // root: the region when no node-shared window holds it
  std::vector<char> reply;
  std::vector<WindowPath> paths;

  claim::rma::Communicator own;  // private duplicate of the caller's communicator; returns errors

  // Declaration order is the (collective) free order reversed: remote refers to the shared memory.
  claim::Window counter;
  claim::Window shared;
  claim::Window remote;

  bool open() const { return handout == HandOut::published; }
  std::uint64_t guided_count() const;
  bool take(std::uint64_t count, Claim& out);
  ClaimStatus take_by_message(std::uint64_t count, Claim& out, bool block);
  ClaimStatus take_published(std::uint64_t count, Claim& out, bool block);
  ClaimStatus claim_blocking(std::uint64_t count, Claim& out);
  void end_hand_out(Claim& out);
  void read_local(std::uint64_t first, std::uint64_t last, Claim& out) const;
  void read_remote(std::uint64_t first, std::uint64_t last, Claim& out);
  void read_slots_local(std::uint64_t first, std::uint64_t last, Claim& out) const;
  void read_slots_remote(std::uint64_t first, std::uint64_t last, std::uint64_t limit, Claim& out);
  const claim::rma::Entry* remote_entries(std::uint64_t first, std::uint64_t count);
  const std::uint64_t* remote_slots(std::uint64_t first, std::uint64_t count, std::uint64_t limit);
  std::uint64_t counter_op(std::uint64_t operand, MPI_Op op);
  std::uint64_t limit_op(std::uint64_t operand, MPI_Op op);
  std::uint64_t read_limit();
  std::uint64_t claimed_so_far();
  std::uint64_t request(claim::rma::Op op, std::uint64_t count);
  void receive_reply(int tag);
  std::size_t serve_waiting();
  void answer(int source, const std::uint64_t (&request)[2]);
  void answer_take(int source, std::uint64_t count);
  void answer_held_back(int source);
  std::size_t answer_all_held_back();
  void send_take_reply(int source, std::uint64_t first, std::uint64_t n);
  std::uint64_t slot_position(const std::uint64_t* slot_values, std::uint64_t first, std::size_t i) const;
  void require_open_root(const char* what) const;
  void check(int rc, const char* call) const { claim::rma::check(rc, call, rank, size); }
};

}  // namespace mpmux
