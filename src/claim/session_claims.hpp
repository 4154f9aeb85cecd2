// Where a session's claim objects live in its store (Session::store_url()). Claims are kept per
// round: the first run of a session starts round 1, and a run that finds the latest round
// finished while it still has elements to hand out (--rerun-failed) starts the next one. Every
// participant of a round claims through a SharedStoreClaimer opened on round_url().
//
//   rounds/<R>.json   the round's marker, made by exclusive create: {"rerun_failed": bool,
//                     "unix_ns": creation time, "lease_ms": the lease of its batches}; R has 6
//                     digits, from 000001
//   round-<R>/        the round's claims/, done/, fenced/ and participants/ (shared_claimer.hpp)
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mpmux/session.hpp"
#include "store/object_store.hpp"
#include "store/results_fold.hpp"

namespace mpmux::claim {

/// "rounds/000001.json"
std::string round_marker_key(std::uint32_t round);
/// "round-000001"
std::string round_prefix(std::uint32_t round);
/// The URL of round `round`'s claim objects under the session store `session_url`.
std::string round_url(std::string_view session_url, std::uint32_t round);
/// The highest round with a marker in `store` (the session's store), or 0 when there is none.
std::uint32_t latest_round(store::ObjectStore& store);

/// A round's marker as read back; a field the marker lacks keeps its default.
struct RoundMarker {
  std::uint32_t round = 0;
  bool rerun_failed = false;
  std::int64_t unix_ns = 0;
  std::int64_t lease_ms = 30000;
};
/// Every round's marker in `store` (the session's store), by round. Throws StoreError naming a
/// marker that is not a JSON object.
std::vector<RoundMarker> read_rounds(store::ObjectStore& store);

/// The committed batches of every round: one per done record (done/<first>:
/// {"participant", "epoch", "count"}), for ResultFold, which lets the latest round's batch decide
/// an element that batches of several rounds cover. Throws StoreError naming a damaged record.
std::vector<BatchWinner> read_batch_winners(store::ObjectStore& session_store);

/// A participant's heartbeat (round-<R>/participants/<id>) as read back, with what its `about`
/// says (docs/formats.md "The session store"): what a field does not say is empty or 0.
struct Heartbeat {
  std::uint32_t round = 0;
  std::int64_t unix_ns = 0;
  std::int64_t lease_ms = 0;    // about.lease_ms; 0 when it did not say
  ParticipantStat participant;  // heartbeat_age_s left 0: the reader's clock decides it
  std::vector<std::pair<std::string, std::string>> claim_paths;  // {window, path}
};
/// The heartbeats of every round, by round and id. One that vanishes while it is read (its
/// participant ended) or is not a heartbeat object is left out: heartbeats are advisory.
std::vector<Heartbeat> read_heartbeats(store::ObjectStore& session_store);

/// A batch of a round without a done record, as its highest epoch's claim says; `participant`
/// is empty for a released batch. Claims still being written (empty) are left out.
struct OpenBatch {
  std::uint64_t first = 0, count = 0, epoch = 0;
  std::string participant;
};
std::vector<OpenBatch> read_open_batches(store::ObjectStore& session_store, std::uint32_t round);

}  // namespace mpmux::claim
