// RmaClaimer's open hand-out (HandOut::published): tickets from the counter, handed out once the
// root has published up to them, read as slots, then entries and bytes.
#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include "claim/rma_state.hpp"

namespace mpmux {

using namespace claim::rma;

void RmaClaimer::State::end_hand_out(Claim& out) {
  last_seen = std::max(last_seen, total);
  held = Tickets();
  clear(out);
}

// The open hand-out: tickets from the counter as today, handed out once the root has published
// up to them. `count` 0 asks for the guided chunk.
ClaimStatus RmaClaimer::State::take_published(std::uint64_t count, Claim& out, bool block) {
  if (by_message) return take_by_message(count == 0 ? guided_count() : count, out, block);
  if (rank == root) serve_waiting();  // answers (or progresses) the others first
  bool fresh = false;
  if (held.empty()) {
    if (last_seen >= total) {
      end_hand_out(out);
      return ClaimStatus::ended;
    }
    const std::uint64_t c = std::min(count == 0 ? guided_count() : count, total);
    const std::uint64_t first = counter_op(c, MPI_SUM);
    last_seen = std::max(last_seen, saturating_add(first, c));
    if (first >= total) {
      end_hand_out(out);
      return ClaimStatus::ended;
    }
    held = {first, std::min(first + c, total)};
    fresh = true;
  }
  // The limit only grows, so fresh tickets under the one last read are published. Tickets kept
  // from an earlier call re-read it, which also tells an exhausted hand-out.
  if (!fresh || held.end > (last_limit & kCountMask)) read_limit();
  const std::uint64_t limit = last_limit & kCountMask;
  if ((last_limit & kExhaustedBit) == 0 && held.first < limit) {
    const std::uint64_t last = std::min(held.end, limit);
    if (table != nullptr) {
      read_slots_local(held.first, last, out);
    } else {
      read_slots_remote(held.first, last, limit, out);
    }
    held.first = last;
    return ClaimStatus::claimed;
  }
  if ((last_limit & (kExhaustedBit | kClosedBit)) != 0) {
    end_hand_out(out);
    return ClaimStatus::ended;
  }
  clear(out);
  return ClaimStatus::wait;
}

ClaimStatus RmaClaimer::State::claim_blocking(std::uint64_t count, Claim& out) {
  // A waiting rank polls the limit word: often at first, then each millisecond, so that a long
  // wait leaves the node's cores to the tasks.
  auto pause = std::chrono::microseconds(20);
  for (;;) {
    const ClaimStatus status = take_published(count, out, /*block=*/true);
    if (status != ClaimStatus::wait) return status;
    if (rank == root) {
      throw ClaimError("RmaClaimer::claim at the root (rank " + std::to_string(root) +
                       "): it would wait for its own publish(); the root calls try_claim");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

std::uint64_t RmaClaimer::State::slot_position(const std::uint64_t* slot_values, std::uint64_t first,
                                               std::size_t i) const {
  const std::uint64_t p = slot_values[i];
  if (p >= total) {
    throw ClaimError("RmaClaimer at rank " + std::to_string(rank) + ": slot " + std::to_string(first + i) +
                     " holds " + std::to_string(p) + ", not a position below " + std::to_string(total) +
                     " (read before the root wrote it)");
  }
  return p;
}

namespace {

// A run of consecutive positions starting at slot i: how many.
std::size_t run_length(const std::uint64_t* slot_values, std::size_t i, std::size_t n, std::uint64_t p,
                       std::uint64_t total) {
  std::size_t run = 1;
  while (i + run < n && p + run < total && slot_values[i + run] == p + run) ++run;
  return run;
}

}  // namespace

void RmaClaimer::State::read_slots_local(std::uint64_t first, std::uint64_t last, Claim& out) const {
  const std::size_t n = last - first;
  const std::uint64_t* slot_values = slots + first;
  out.indices.resize(n);
  out.elements.offsets.resize(n + 1);
  out.elements.offsets[0] = 0;
  out.elements.data.clear();
  for (std::size_t i = 0; i < n;) {
    const std::uint64_t p = slot_position(slot_values, first, i);
    const std::size_t run = run_length(slot_values, i, n, p, total);
    const Entry* e = table + p;
    const std::uint64_t begin = e[0].offset;
    const std::uint64_t base = out.elements.data.size();
    for (std::size_t k = 0; k < run; ++k) {
      out.indices[i + k] = e[k].index;
      out.elements.offsets[i + k + 1] = base + e[k + 1].offset - begin;
    }
    out.elements.data.append(data + begin, e[run].offset - begin);
    i += run;
  }
}

// The slots below the limit this rank read, from the copy of the last block read, else read now
// with the published ones that follow, up to a block.
const std::uint64_t* RmaClaimer::State::remote_slots(std::uint64_t first, std::uint64_t count,
                                                     std::uint64_t limit) {
  if (first < slot_cache_first || first + count > slot_cache_first + slot_cache.size()) {
    const std::uint64_t n = std::max(count, std::min(kSlotBlock, limit - first));
    slot_cache.resize(n);
    remote.get_bytes(slot_cache.data(), n * kWord, root,
                     remote_base + slots_disp + static_cast<MPI_Aint>(first * kWord));
    remote.flush(root);
    slot_cache_first = first;
  }
  return slot_cache.data() + (first - slot_cache_first);
}

// Up to three round trips: the chunk's slots and the entries of its positions, each unless the
// last block read holds them, then its bytes. The positions of a chunk are usually one run of
// consecutive ones; several runs read their entries each in the same round trip.
void RmaClaimer::State::read_slots_remote(std::uint64_t first, std::uint64_t last, std::uint64_t limit,
                                          Claim& out) {
  const std::size_t n = last - first;
  const std::uint64_t* slot_values = remote_slots(first, n, limit);
  runs.clear();
  std::size_t entry_count = 0;
  for (std::size_t i = 0; i < n;) {
    const std::uint64_t p = slot_position(slot_values, first, i);
    const std::size_t run = run_length(slot_values, i, n, p, total);
    runs.push_back({i, run, entry_count});
    entry_count += run + 1;
    i += run;
  }
  scratch.resize(entry_count);
  if (runs.size() == 1) {
    const Entry* e = remote_entries(slot_values[0], runs[0].length + 1);
    std::copy_n(e, runs[0].length + 1, scratch.data());
  } else {
    for (const Run& r : runs) {
      remote.get_bytes(scratch.data() + r.entry, (r.length + 1) * sizeof(Entry), root,
                       remote_base + static_cast<MPI_Aint>(slot_values[r.slot] * sizeof(Entry)));
    }
    remote.flush(root);
  }
  out.indices.resize(n);
  out.elements.offsets.resize(n + 1);
  out.elements.offsets[0] = 0;
  std::uint64_t bytes = 0;
  for (const Run& r : runs) {
    const Entry* e = scratch.data() + r.entry;
    for (std::size_t k = 0; k < r.length; ++k) {
      out.indices[r.slot + k] = e[k].index;
      out.elements.offsets[r.slot + k + 1] = bytes + e[k + 1].offset - e[0].offset;
    }
    bytes += e[r.length].offset - e[0].offset;
  }
  out.elements.data.resize(bytes);
  bool any = false;
  for (const Run& r : runs) {
    const Entry* e = scratch.data() + r.entry;
    const std::uint64_t length = e[r.length].offset - e[0].offset;
    if (length == 0) continue;
    remote.get_bytes(out.elements.data.data() + out.elements.offsets[r.slot], length, root,
                     remote_base + data_disp + static_cast<MPI_Aint>(e[0].offset));
    any = true;
  }
  if (any) remote.flush(root);
}

}  // namespace mpmux
