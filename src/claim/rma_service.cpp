// RmaClaimer's two-sided service: the root answers the takes, reads and releases of the ranks
// that claim by message, and holds back a take of an open hand-out until it is published.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "claim/rma_state.hpp"

namespace mpmux {

using namespace claim::rma;

std::size_t RmaClaimer::State::serve_waiting() {
  if (rank != root) return 0;
  if (message_claimers == 0) {
    // Some components (osc/pt2pt) serve one-sided accesses only while the target calls MPI: a
    // root that waits to publish more must not starve the ranks reading its region.
    if (open() && remote) {
      int arrived = 0;
      check(MPI_Iprobe(MPI_ANY_SOURCE, kRequestTag, own.get(), &arrived, MPI_STATUS_IGNORE), "MPI_Iprobe");
    }
    return 0;
  }
  std::size_t answered = 0;
  for (;;) {
    int arrived = 0;
    MPI_Status status;
    check(MPI_Iprobe(MPI_ANY_SOURCE, kRequestTag, own.get(), &arrived, &status), "MPI_Iprobe");
    if (!arrived) break;
    std::uint64_t message[2] = {0, 0};
    check(MPI_Recv(message, 2, MPI_UINT64_T, status.MPI_SOURCE, kRequestTag, own.get(), MPI_STATUS_IGNORE),
          "MPI_Recv");
    answer(status.MPI_SOURCE, message);
    ++answered;
  }
  // A rank may have exhausted the claimer through its window: the takes held back then end.
  if (held_back_count > 0) answered += answer_all_held_back();
  return answered;
}

void RmaClaimer::State::receive_reply(int tag) {
  MPI_Status status;
  check(MPI_Probe(root, tag, own.get(), &status), "MPI_Probe");
  int bytes = 0;
  check(MPI_Get_count(&status, MPI_BYTE, &bytes), "MPI_Get_count");
  reply.resize(static_cast<std::size_t>(bytes));
  check(MPI_Recv(reply.data(), bytes, MPI_BYTE, root, tag, own.get(), MPI_STATUS_IGNORE), "MPI_Recv");
}

std::uint64_t RmaClaimer::State::request(Op op, std::uint64_t count) {
  if (released) throw ClaimError("RmaClaimer at rank " + std::to_string(rank) + ": used after release()");
  const std::uint64_t message[2] = {op, count};
  check(MPI_Send(message, 2, MPI_UINT64_T, root, kRequestTag, own.get()), "MPI_Send");
  receive_reply(kReplyTag);
  if (reply.size() < kWord) throw ClaimError("RmaClaimer: a reply of the root is shorter than its header");
  std::uint64_t first = 0;
  std::memcpy(&first, reply.data(), kWord);
  return first;
}

void RmaClaimer::State::answer(int source, const std::uint64_t (&message)[2]) {
  const auto op = static_cast<Op>(message[0]);
  if (op == kRelease) {
    ++releases;
    // A take this rank left open ends with its release.
    if (open() && held_back[static_cast<std::size_t>(source)]) {
      held_back[static_cast<std::size_t>(source)] = false;
      --held_back_count;
      send_take_reply(source, 0, 0);
    }
    if (open()) held_for[static_cast<std::size_t>(source)] = Tickets();
    return;
  }
  if (op == kTake) {
    answer_take(source, message[1]);
    return;
  }
  std::uint64_t value = 0;
  if (op == kRead) {
    value = claimed_so_far();
  } else if (op == kExhaust) {
    value = counter_op(kExhaustedMark, MPI_MAX);
    if (open()) limit_op(kExhaustedBit, MPI_BOR);
    answer_all_held_back();
  } else {
    throw ClaimError("RmaClaimer at the root: unknown request " + std::to_string(message[0]) + " from rank " +
                     std::to_string(source));
  }
  check(MPI_Send(&value, 1, MPI_UINT64_T, source, kReplyTag, own.get()), "MPI_Send");
}

void RmaClaimer::State::answer_take(int source, std::uint64_t count) {
  count = std::min(count, total);
  if (!open()) {
    const std::uint64_t first = counter_op(count, MPI_SUM);
    send_take_reply(source, first, first < total ? std::min(first + count, total) - first : 0);
    return;
  }
  Tickets& tickets = held_for[static_cast<std::size_t>(source)];
  if (tickets.empty()) {
    const std::uint64_t first = counter_op(count, MPI_SUM);
    if (first >= total) {
      send_take_reply(source, first, 0);
      return;
    }
    tickets = {first, std::min(first + count, total)};
  }
  held_back[static_cast<std::size_t>(source)] = true;
  ++held_back_count;
  read_limit();
  answer_held_back(source);
}

// Answers `source`'s held-back take from the limit last read, or keeps holding it.
void RmaClaimer::State::answer_held_back(int source) {
  Tickets& tickets = held_for[static_cast<std::size_t>(source)];
  const std::uint64_t limit = last_limit & kCountMask;
  const bool exhausted = (last_limit & kExhaustedBit) != 0;
  if (!exhausted && tickets.first < limit) {
    const std::uint64_t last = std::min(tickets.end, limit);
    send_take_reply(source, tickets.first, last - tickets.first);
    tickets.first = last;
  } else if (exhausted || (last_limit & kClosedBit) != 0) {
    send_take_reply(source, tickets.first, 0);
    tickets = Tickets();
  } else {
    return;
  }
  held_back[static_cast<std::size_t>(source)] = false;
  --held_back_count;
}

std::size_t RmaClaimer::State::answer_all_held_back() {
  if (held_back_count == 0) return 0;
  const std::size_t before = held_back_count;
  read_limit();
  for (int source = 0; source < size && held_back_count > 0; ++source) {
    if (held_back[static_cast<std::size_t>(source)]) answer_held_back(source);
  }
  return before - held_back_count;
}

// {first, n, published count}, then the chunk's n + 1 entries and its bytes.
void RmaClaimer::State::send_take_reply(int source, std::uint64_t first, std::uint64_t n) {
  reply.resize(kTakeHeader);
  if (n > 0) {
    const std::size_t entries = (n + 1) * sizeof(Entry);
    const Entry* run = table + first;
    const char* bytes_from = data + table[first].offset;
    std::uint64_t bytes = table[first + n].offset - table[first].offset;
    if (open()) {
      // The published positions in slot order, with offsets from the chunk's first byte.
      read_slots_local(first, first + n, composed);
      scratch.resize(n + 1);
      for (std::size_t i = 0; i <= n; ++i)
        scratch[i] = Entry{i < n ? composed.indices[i] : 0, composed.elements.offsets[i]};
      run = scratch.data();
      bytes_from = composed.elements.data.data();
      bytes = composed.elements.data.size();
    }
    if (kTakeHeader + entries + bytes > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) {
      throw ClaimError("RmaClaimer: a chunk of " + std::to_string(n) + " elements holds " +
                       std::to_string(bytes) +
                       " bytes, too many for one reply of the two-sided path; "
                       "lower the largest chunk (--chunk-max)");
    }
    reply.resize(kTakeHeader + entries + bytes);
    std::memcpy(reply.data() + kTakeHeader, run, entries);
    if (bytes > 0) std::memcpy(reply.data() + kTakeHeader + entries, bytes_from, bytes);
  }
  const std::uint64_t header[3] = {first, n, open() ? published : total};
  std::memcpy(reply.data(), header, kTakeHeader);
  check(MPI_Send(reply.data(), static_cast<int>(reply.size()), MPI_BYTE, source, kTakeReplyTag, own.get()),
        "MPI_Send");
}

// One request (at most one out at a time), one reply: {first, n, published}, entries and bytes.
ClaimStatus RmaClaimer::State::take_by_message(std::uint64_t count, Claim& out, bool block) {
  if (!take_outstanding) {
    if (last_seen >= total) {
      clear(out);
      return ClaimStatus::ended;
    }
    if (released) throw ClaimError("RmaClaimer at rank " + std::to_string(rank) + ": used after release()");
    const std::uint64_t message[2] = {kTake, std::min(count, total)};
    check(MPI_Send(message, 2, MPI_UINT64_T, root, kRequestTag, own.get()), "MPI_Send");
    take_outstanding = true;
  }
  if (!block) {
    int arrived = 0;
    check(MPI_Iprobe(root, kTakeReplyTag, own.get(), &arrived, MPI_STATUS_IGNORE), "MPI_Iprobe");
    if (!arrived) {
      clear(out);
      return ClaimStatus::wait;
    }
  }
  receive_reply(kTakeReplyTag);
  take_outstanding = false;
  if (reply.size() < kTakeHeader)
    throw ClaimError("RmaClaimer: a reply of the root is shorter than its header");
  std::uint64_t header[3] = {0, 0, 0};
  std::memcpy(header, reply.data(), kTakeHeader);
  const std::uint64_t first = header[0];
  const std::size_t n = header[1];
  last_limit = header[2];
  last_seen = std::max(last_seen, open() ? first + n : saturating_add(first, count));
  if (n == 0) {
    end_hand_out(out);
    return ClaimStatus::ended;
  }
  scratch.resize(n + 1);
  std::memcpy(scratch.data(), reply.data() + kTakeHeader, (n + 1) * sizeof(Entry));
  const std::uint64_t bytes = chunk_index(scratch.data(), n, out).second;
  out.elements.data.assign(reply.data() + kTakeHeader + (n + 1) * sizeof(Entry), bytes);
  return ClaimStatus::claimed;
}

}  // namespace mpmux
