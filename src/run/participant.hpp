// The root of a run as a participant of its session (claim/shared_claimer.hpp): it joins the
// latest round, claims batches of element indices from the session's store, maps them to the
// run's pending elements, commits a batch once each of its elements has a final outcome in this
// run (after the journal holds them durably), and gives back what it could not finish.
#pragma once
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
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

/// The store is worked by a thread of its own (claims ahead, commits, heartbeat content), so
/// that its latency (an fsync or an HTTP request per object) never holds up the elements: the
/// run's thread only takes ready batches and reports outcomes, each a short critical section.
class SessionParticipant {
 public:
  /// Joins the latest round of `session` (creating round 1, or the next round when the latest
  /// is finished and `state` still has elements to hand out) as participant `id` (the run's
  /// journal stem), with a heartbeat every lease_s / 4 carrying `about`, and starts claiming,
  /// `first_batch` elements first (one per worker of the run). `state` is the fold of the
  /// journals at the start of the run. Throws StoreError when the store fails.
  SessionParticipant(const Session& session, SessionState state, bool rerun_failed, std::string id,
                     double lease_s, std::string about, std::uint64_t first_batch = 1);
  /// Stops claiming and removes the heartbeat. Call release_open() first to give back what is
  /// left unfinished at once.
  ~SessionParticipant();
  SessionParticipant(const SessionParticipant&) = delete;
  SessionParticipant& operator=(const SessionParticipant&) = delete;

  enum class ClaimStatus {
    claimed,  // elements were appended
    wait,     // nothing ready yet: ask again (wait_ready() blocks until there may be)
    ended,    // nothing more to claim: the rest is done or held by participants seen alive
  };
  /// Takes the next claimed batch that has elements left to do, appending them to `out` in
  /// index order; never blocks on the store. A batch with nothing left to do is committed by
  /// the store thread at once. Before `ended`, the store thread waits until the owner of every
  /// unfinished batch has been seen beating or its batch was reclaimed, so that a dead
  /// participant's batch is done by whoever is left, while a run never idles for live ones.
  /// Throws StoreError when the store failed.
  ClaimStatus claim(std::vector<PendingElement>& out);
  /// Blocks until a batch is ready, the claiming ended, or `timeout` passed.
  void wait_ready(std::chrono::milliseconds timeout);
  /// Element `index` of an open batch has its final outcome in this run (done, or failed with
  /// no retry left), recorded as the journal's record number `journal_record` (its count of
  /// records once that outcome was appended).
  void finished(std::uint64_t index, std::uint64_t journal_record);
  /// True when some batch has every element finished and waits for its commit.
  bool has_complete();
  /// Commits (in the store thread) the complete batches whose records are among the first
  /// `durable_records` of the journal, those it holds durably.
  void commit_complete(std::uint64_t durable_records);
  /// Stops claiming, makes the pending commits, and gives every batch not committed back to the
  /// store (after the journal was flushed), so that others take them at once instead of after
  /// the lease. Throws StoreError when the store failed.
  void release_open();

  void set_about(std::string about) { claimer_->set_about(std::move(about)); }
  /// A tenth of the lease (5 ms to 1 s): how often the store is asked again while waiting.
  std::chrono::milliseconds poll_interval() const {
    return std::clamp(options_.ttl / 10, std::chrono::milliseconds(5), std::chrono::milliseconds(1000));
  }
  std::uint32_t round() const { return round_; }
  /// Elements claimed and not yet finished (in open batches).
  std::uint64_t open_elements();
  /// After release_open(): commits that lost to another participant's (fenced), and elements
  /// of the round that other live participants held when claiming ended.
  std::uint64_t fenced() const { return claimer_->stats().fenced; }
  std::uint64_t held_by_others() const { return claimer_->held_by_others(); }

 private:
  struct OpenBatch {
    claim::Batch batch;
    std::uint64_t left = 0;                              // elements of this run without a final outcome yet
    std::uint64_t last_record = 0;                       // the journal's count after its last outcome
    std::chrono::steady_clock::time_point since, until;  // handed to the run; finished
  };
  void join_round(bool create_next);
  void store_loop();
  bool claim_one();  // store thread: false when nothing more is to be claimed now
  void commit(const std::vector<OpenBatch>& batches);
  void stop_store_thread();

  // Owned by the store thread (and by the constructor before it starts).
  Session session_;
  SessionState state_;
  std::vector<std::uint32_t> start_attempts_;  // attempts per element when the run started
  std::vector<std::uint64_t> pending_;         // sorted: what this run hands out
  bool rerun_failed_;
  claim::SharedClaimOptions options_;
  std::uint32_t round_ = 0;
  std::optional<claim::Batch> first_;  // claimed by the constructor
  std::unique_ptr<claim::SharedStoreClaimer> claimer_;
  std::set<std::string> reread_for_;  // stale owners whose journals were read again

  // Shared between the run's thread and the store thread.
  std::mutex mutex_;
  std::condition_variable store_wake_, ready_wake_;
  std::map<std::uint64_t, OpenBatch> open_;                                  // by first index
  std::deque<std::pair<std::uint64_t, std::vector<PendingElement>>> ready_;  // claimed, by first index
  std::vector<OpenBatch> complete_;   // every element finished: journal flush, then commit
  std::vector<OpenBatch> to_commit_;  // flushed: the store thread commits them
  bool ended_ = false;
  bool stopping_ = false;
  std::string error_;  // the store's failure, rethrown to the run
  std::thread store_thread_;
};

}  // namespace mpmux::run
