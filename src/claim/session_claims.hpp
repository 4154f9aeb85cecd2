// Where a session's claim objects live in its store (Session::store_url()). Claims are kept per
// round: the first run of a session starts round 1, and a run that finds the latest round
// finished while it still has elements to hand out (--rerun-failed) starts the next one. Every
// participant of a round claims through a SharedStoreClaimer opened on round_url().
//
//   rounds/<R>.json   the round's marker, made by exclusive create: {"rerun_failed": bool,
//                     "unix_ns": creation time}; R has 6 digits, from 000001
//   round-<R>/        the round's claims/, done/, fenced/ and participants/ (shared_claimer.hpp)
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "store/object_store.hpp"

namespace mpmux::claim {

/// "rounds/000001.json"
std::string round_marker_key(std::uint32_t round);
/// "round-000001"
std::string round_prefix(std::uint32_t round);
/// The URL of round `round`'s claim objects under the session store `session_url`.
std::string round_url(std::string_view session_url, std::uint32_t round);
/// The highest round with a marker in `store` (the session's store), or 0 when there is none.
std::uint32_t latest_round(store::ObjectStore& store);

}  // namespace mpmux::claim
