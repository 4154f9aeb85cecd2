#include "run/participant.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "claim/session_claims.hpp"
#include "mpmux/error.hpp"
#include "store/fs.hpp"

namespace mpmux::run {

namespace {

using Clock = std::chrono::steady_clock;

// Batches claimed ahead of the one being worked: the store's latency (an fsync, an HTTP round
// trip) stays off the elements' path even while the batches are small (slow start).
constexpr std::size_t kReadyAhead = 2;

std::chrono::milliseconds lease_ms(double lease_s) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(lease_s * 1000.0));
}

}  // namespace

SessionParticipant::SessionParticipant(const Session& session, SessionState state, bool rerun_failed,
                                       std::string id, double lease_s, std::string about,
                                       std::uint64_t first_batch)
    : session_(session),
      state_(std::move(state)),
      start_attempts_(state_.attempts),
      pending_(state_.pending_indices(rerun_failed)),
      rerun_failed_(rerun_failed) {
  options_.id = std::move(id);
  options_.about = std::move(about);
  options_.ttl = lease_ms(lease_s);
  options_.heartbeat_interval = options_.ttl / 4;
  options_.first_batch = first_batch;
  join_round(false);
  if (!pending_.empty()) {
    first_ = claimer_->try_claim();
    // The latest round is over, yet elements are left to hand out (--rerun-failed, or records
    // lost): they go to a new round.
    if (!first_ && claimer_->finished()) {
      join_round(true);
      first_ = claimer_->try_claim();
    }
  }
  store_thread_ = std::thread([this] { store_loop(); });
}

SessionParticipant::~SessionParticipant() { stop_store_thread(); }

void SessionParticipant::stop_store_thread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  store_wake_.notify_all();
  ready_wake_.notify_all();
  if (store_thread_.joinable()) store_thread_.join();
}

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

void SessionParticipant::store_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    if (!to_commit_.empty()) {
      std::vector<OpenBatch> batches;
      batches.swap(to_commit_);
      lock.unlock();
      try {
        commit(batches);
      } catch (const std::exception& e) {
        lock.lock();
        error_ = e.what();
        ended_ = true;
        ready_wake_.notify_all();
        continue;
      }
      lock.lock();
      continue;
    }
    if (!ended_ && ready_.size() < kReadyAhead && error_.empty()) {
      lock.unlock();
      bool got = false;
      std::string error;
      try {
        got = claim_one();
      } catch (const std::exception& e) {
        error = e.what();
      }
      lock.lock();
      if (!error.empty()) {
        error_ = error;
        ended_ = true;
        ready_wake_.notify_all();
      } else if (!got && !ended_) {
        // A batch of another may turn out stale: look again after a tenth of the lease.
        store_wake_.wait_for(lock, poll_interval(), [this] { return stopping_ || !to_commit_.empty(); });
      }
      continue;
    }
    store_wake_.wait(lock, [this] {
      return stopping_ || !to_commit_.empty() || (!ended_ && ready_.size() < kReadyAhead && error_.empty());
    });
  }
}

// Store thread: claims one batch and makes its elements ready. False when nothing could be
// claimed now (ended_ is set when nothing ever will).
bool SessionParticipant::claim_one() {
  std::optional<claim::Batch> batch;
  if (first_) {
    batch.swap(first_);
  } else if (!pending_.empty()) {
    batch = claimer_->try_claim();
  }
  if (!batch) {
    if (pending_.empty() || claimer_->finished() || claimer_->unproven_batches() == 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      ended_ = true;
      ready_wake_.notify_all();
    }
    return false;
  }
  // A batch taken over from a stale owner: what that owner recorded before it went silent is in
  // its journal and is not done again. The journals are read once per such owner.
  if (batch->epoch > 0 && reread_for_.insert(batch->previous_owner).second)
    state_ = read_session_state(session_, /*cut_torn_tails=*/false);
  OpenBatch open{*batch, 0, 0, {}, {}};
  std::vector<PendingElement> elements;
  auto it = std::lower_bound(pending_.begin(), pending_.end(), batch->first);
  for (; it != pending_.end() && *it < batch->first + batch->count; ++it) {
    const std::uint64_t i = *it;
    if (state_.attempts[i] > start_attempts_[i] && state_.status[i] != ElementStatus::pending) continue;
    elements.push_back({i, state_.attempts[i] + 1});
  }
  open.left = elements.size();
  if (open.left == 0) {  // nothing of it left to do: no journal record to wait for
    commit({open});
    return true;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  open_.emplace(batch->first, open);
  ready_.emplace_back(batch->first, std::move(elements));
  ready_wake_.notify_all();
  return true;
}

void SessionParticipant::commit(const std::vector<OpenBatch>& batches) {
  // Timed from its hand-out to its last outcome: neither the batches waiting ahead nor the
  // journal's group commit count as time spent on its elements.
  for (const OpenBatch& done : batches) claimer_->commit(done.batch, done.until - done.since);
}

SessionParticipant::ClaimStatus SessionParticipant::claim(std::vector<PendingElement>& out) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!error_.empty()) throw StoreError(session_.store_url() + ": " + error_);
  if (!ready_.empty()) {
    const auto& [first, elements] = ready_.front();
    out.insert(out.end(), elements.begin(), elements.end());
    if (auto it = open_.find(first); it != open_.end()) it->second.since = Clock::now();
    ready_.pop_front();
    store_wake_.notify_all();  // claim the next one ahead
    return ClaimStatus::claimed;
  }
  return ended_ ? ClaimStatus::ended : ClaimStatus::wait;
}

void SessionParticipant::wait_ready(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  ready_wake_.wait_for(lock, timeout, [this] { return !ready_.empty() || ended_ || stopping_; });
}

void SessionParticipant::finished(std::uint64_t index, std::uint64_t journal_record) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = open_.upper_bound(index);
  if (it == open_.begin()) return;
  --it;
  OpenBatch& open = it->second;
  if (index >= open.batch.first + open.batch.count || open.left == 0) return;
  open.last_record = std::max(open.last_record, journal_record);
  if (--open.left == 0) {
    open.until = Clock::now();
    complete_.push_back(open);
    open_.erase(it);
  }
}

bool SessionParticipant::has_complete() {
  std::lock_guard<std::mutex> lock(mutex_);
  return !complete_.empty();
}

void SessionParticipant::commit_complete(std::uint64_t durable_records) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto durable = std::stable_partition(complete_.begin(), complete_.end(), [&](const OpenBatch& b) {
      return b.last_record <= durable_records;
    });
    if (durable == complete_.begin()) return;
    to_commit_.insert(to_commit_.end(), complete_.begin(), durable);
    complete_.erase(complete_.begin(), durable);
  }
  store_wake_.notify_all();
}

void SessionParticipant::release_open() {
  stop_store_thread();
  commit(to_commit_);
  to_commit_.clear();
  // Batches not durable in the journal (it failed) are given back like the unfinished ones.
  for (const auto& [first, open] : open_) claimer_->release(open.batch);
  for (const OpenBatch& open : complete_) claimer_->release(open.batch);
  open_.clear();
  complete_.clear();
  ready_.clear();
  if (!error_.empty()) throw StoreError(session_.store_url() + ": " + error_);
}

std::uint64_t SessionParticipant::open_elements() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::uint64_t n = 0;
  for (const auto& [first, open] : open_) n += open.left;
  return n;
}

}  // namespace mpmux::run
