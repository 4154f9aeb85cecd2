// The root of a run as a participant of its session (claim/shared_claimer.hpp): it joins the
// latest round, claims batches of element indices from the session's store, maps them to the
// run's pending elements, commits a batch once each of its elements has a final outcome in this
// run (after the journal holds them durably), and gives back what it could not finish.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "claim/shared_claimer.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/session.hpp"

namespace mpmux::run {

/// One element to hand out: its index and the attempt it will be (1 for the first ever).
struct PendingElement {
  std::uint64_t index = 0;
  std::uint32_t attempt = 1;
};

class SessionParticipant {
 public:
  /// Joins the latest round of `session` (creating round 1, or the next round when the latest
  /// is finished and `state` still has elements to hand out) as participant `id` (the run's
  /// journal stem), with a heartbeat every lease_s / 4 carrying `about`. `state` is the fold of
  /// the journals at the start of the run. Throws StoreError when the store fails.
  SessionParticipant(const Session& session, SessionState state, bool rerun_failed, std::string id,
                     double lease_s, std::string about);
  /// Removes the heartbeat. Call release_open() first when batches are left unfinished.
  ~SessionParticipant();
  SessionParticipant(const SessionParticipant&) = delete;
  SessionParticipant& operator=(const SessionParticipant&) = delete;

  enum class ClaimStatus {
    claimed,  // elements were appended
    wait,     // nothing now, but a batch of another may turn out stale: ask again in a moment
    ended,    // nothing to claim: the rest is done or held by participants seen alive
  };
  /// Claims store batches until one of them has elements left to do, and appends those to
  /// `out` in index order. A batch with nothing left to do is complete at once (commit it).
  /// Before saying `ended`, it waits (`wait`) until the owner of every unfinished batch has
  /// been seen beating or its batch was reclaimed, so that a dead participant's batch is done by
  /// whoever is left, while a run never idles for the batches of live ones.
  ClaimStatus claim(std::vector<PendingElement>& out);
  /// Element `index` of an open batch has its final outcome in this run (done, or failed with
  /// no retry left).
  void finished(std::uint64_t index);
  /// True when some batch has every element finished and waits for its commit.
  bool has_complete() const { return !complete_.empty(); }
  /// Commits the complete batches. Call once the journal holds their records durably.
  void commit_complete();
  /// Gives every batch not committed back to the store (after the journal was flushed), so that
  /// others take them at once instead of after the lease.
  void release_open();

  void set_about(std::string about) { claimer_->set_about(std::move(about)); }
  std::uint32_t round() const { return round_; }
  /// Elements claimed and not yet finished (in open batches).
  std::uint64_t open_elements() const;
  /// Commits that lost to another participant's (fenced), so far.
  std::uint64_t fenced() const { return claimer_->stats().fenced; }
  /// After claim() said `ended`: elements of the round that other live participants hold.
  std::uint64_t held_by_others() const { return claimer_->held_by_others(); }
  /// The lease's poll interval: how long to wait after `wait`.
  std::chrono::milliseconds poll_interval() const {
    return std::clamp(options_.ttl / 10, std::chrono::milliseconds(5), std::chrono::milliseconds(1000));
  }

 private:
  struct OpenBatch {
    claim::Batch batch;
    std::uint64_t left = 0;  // elements of this run without a final outcome yet
    std::chrono::steady_clock::time_point since;
  };
  void join_round(bool create_next);
  void reread_journals();

  Session session_;
  SessionState state_;
  std::vector<std::uint32_t> start_attempts_;  // attempts per element when the run started
  std::vector<std::uint64_t> pending_;         // sorted: what this run hands out
  bool rerun_failed_;
  claim::SharedClaimOptions options_;
  std::uint32_t round_ = 0;
  bool joined_next_ = false;
  std::unique_ptr<claim::SharedStoreClaimer> claimer_;
  std::map<std::uint64_t, OpenBatch> open_;  // by first index
  std::vector<OpenBatch> complete_;
  std::set<std::string> reread_for_;  // stale owners whose journals were read again
};

}  // namespace mpmux::run
