#include "run/participant.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "claim/session_claims.hpp"
#include "mpmux/error.hpp"
#include "store/fs.hpp"

namespace mpmux::run {

namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds lease_ms(double lease_s) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(lease_s * 1000.0));
}

}  // namespace

SessionParticipant::SessionParticipant(const Session& session, SessionState state, bool rerun_failed,
                                       std::string id, double lease_s, std::string about)
    : session_(session),
      state_(std::move(state)),
      start_attempts_(state_.attempts),
      pending_(state_.pending_indices(rerun_failed)),
      rerun_failed_(rerun_failed) {
  options_.id = std::move(id);
  options_.about = std::move(about);
  options_.ttl = lease_ms(lease_s);
  options_.heartbeat_interval = options_.ttl / 4;
  join_round(false);
}

SessionParticipant::~SessionParticipant() = default;

void SessionParticipant::join_round(bool create_next) {
  const std::string url = session_.store_url();
  auto store = store::open_store(url);
  std::uint32_t round = claim::latest_round(*store);
  if (round == 0 || create_next) {
    ++round;
    const std::string marker = nlohmann::json({{"rerun_failed", rerun_failed_},
                                               {"unix_ns", posix::unix_time_ns()},
                                               {"lease_ms", options_.ttl.count()}})
                                   .dump();
    // Another run may make the same round at the same moment: then both join it.
    if (!store->put_if_absent(claim::round_marker_key(round), marker)) round = claim::latest_round(*store);
  }
  round_ = round;
  claimer_.reset();  // its heartbeat is removed before the next one is written
  claimer_ = std::make_unique<claim::SharedStoreClaimer>(claim::round_url(url, round), store::StoreOptions{},
                                                         session_.total(), options_);
}

// A batch taken over from a stale owner: what that owner recorded before it went silent is in
// its journal, and is not done again. Read once per such owner.
void SessionParticipant::reread_journals() { state_ = read_session_state(session_, /*cut_torn_tails=*/false); }

SessionParticipant::ClaimStatus SessionParticipant::claim(std::vector<PendingElement>& out) {
  for (;;) {
    std::optional<claim::Batch> batch = claimer_->try_claim();
    if (!batch && claimer_->finished() && !joined_next_ && !pending_.empty() && open_.empty() &&
        complete_.empty() && claimer_->stats().claimed + claimer_->stats().reclaimed == 0) {
      // The latest round is over before this run did anything in it, yet elements are left to
      // hand out (--rerun-failed, or records lost): they go to a new round.
      joined_next_ = true;
      join_round(true);
      continue;
    }
    if (!batch) {
      if (claimer_->finished() || claimer_->unproven_batches() == 0) return ClaimStatus::ended;
      return ClaimStatus::wait;
    }
    if (batch->epoch > 0 && reread_for_.insert(batch->previous_owner).second) reread_journals();
    OpenBatch open{*batch, 0, Clock::now()};
    auto it = std::lower_bound(pending_.begin(), pending_.end(), batch->first);
    for (; it != pending_.end() && *it < batch->first + batch->count; ++it) {
      const std::uint64_t i = *it;
      // Recorded since the start by the owner this batch was taken from: not again.
      if (state_.attempts[i] > start_attempts_[i] && state_.status[i] != ElementStatus::pending) continue;
      out.push_back({i, state_.attempts[i] + 1});
      ++open.left;
    }
    if (open.left == 0) {
      complete_.push_back(open);
      continue;
    }
    open_.emplace(batch->first, open);
    return ClaimStatus::claimed;
  }
}

void SessionParticipant::finished(std::uint64_t index) {
  auto it = open_.upper_bound(index);
  if (it == open_.begin()) return;
  --it;
  OpenBatch& open = it->second;
  if (index >= open.batch.first + open.batch.count || open.left == 0) return;
  if (--open.left == 0) {
    complete_.push_back(open);
    open_.erase(it);
  }
}

void SessionParticipant::commit_complete() {
  for (const OpenBatch& done : complete_) claimer_->commit(done.batch, Clock::now() - done.since);
  complete_.clear();
}

void SessionParticipant::release_open() {
  for (const auto& [first, open] : open_) claimer_->release(open.batch);
  open_.clear();
}

std::uint64_t SessionParticipant::open_elements() const {
  std::uint64_t n = 0;
  for (const auto& [first, open] : open_) n += open.left;
  return n;
}

}  // namespace mpmux::run
