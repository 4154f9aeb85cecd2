// Claiming batches of a session's elements across participants (jobs, plain processes, threads)
// through an object store (file:// or az://), with heartbeats, reclaim of stale batches and
// fenced done commits. docs/design.md "Claims across participants" gives the protocol and why
// it is safe; the objects, under the store's prefix:
//
//   claims/<first>.<epoch>   exclusive create; {"participant","first","count","epoch"}
//   done/<first>             exclusive create: the first commit of a batch wins
//   fenced/<first>.<epoch>.<participant>   a commit that lost, kept so that stat can count it
//   participants/<id>        the heartbeat, rewritten every heartbeat_interval
//
// <first> is the batch's first element index, 13 digits (indices stay below 2^40).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "store/object_store.hpp"

namespace mpmux::claim {

struct SharedClaimOptions {
  /// A batch whose owner's heartbeat has not changed for `ttl`, on the observer's own monotonic
  /// clock, is reclaimed. The heartbeat is rewritten every `heartbeat_interval` (< ttl / 2).
  std::chrono::milliseconds ttl{30000};
  std::chrono::milliseconds heartbeat_interval{5000};
  /// Batch sizes: a batch lasts about 1 / store_touches_per_s seconds at the measured element
  /// rate, within [min_batch, max_batch], and no more than remaining / (2 * participants) near
  /// the end. Before a batch has been timed, the first is first_batch (0: min_batch; a job gives
  /// one element per worker) and each next one is 4 times the one before; once timed, a batch is
  /// at most 16 times the one before, so that one quick sample cannot take much.
  std::uint64_t min_batch = 1;
  std::uint64_t max_batch = 65536;
  std::uint64_t first_batch = 0;
  double store_touches_per_s = 2.0;
  /// The index range is cut into at most this many regions of at least 256 elements, each
  /// claimed from its start; a participant starts in a region of its own choosing (by its id)
  /// and moves to the one with most left when its region is used up, so that participants
  /// rarely race for the same batch.
  std::uint64_t regions = 16;
  /// A thread rewrites the heartbeat; false leaves it to beat() (tests of a silent participant).
  bool heartbeat_thread = true;
  /// What the heartbeat says about the participant besides its id (host, job), JSON object text.
  std::string about = "{}";
  /// The participant's id in claims, done records and its heartbeat (a run uses its journal's
  /// file stem); empty: <host>-<pid>-<random>.
  std::string id;
};

/// A claimed batch: element indices [first, first + count), owned at `epoch`.
struct Batch {
  std::uint64_t first = 0;
  std::uint64_t count = 0;
  std::uint64_t epoch = 0;
  /// For a reclaimed batch (epoch > 0): the participant that held it before, or released it.
  std::string previous_owner;
};

struct SharedClaimStats {
  std::uint64_t claimed = 0;    // fresh batches created
  std::uint64_t reclaimed = 0;  // stale batches taken over at a higher epoch
  std::uint64_t committed = 0;  // done records that won
  std::uint64_t fenced = 0;     // done records that lost (the batch was committed by another)
  std::uint64_t released = 0;   // batches given back unfinished (release)
  std::uint64_t heartbeat_failures = 0;
};

/// One participant of a session. Not thread-safe: each thread that claims has its own claimer
/// (and its own store). Every index is handed out by exactly one fresh batch; after a reclaim
/// it may be handed out again (at-least-once execution), but each batch has exactly one counted
/// done record (exactly-once recording).
class SharedStoreClaimer {
 public:
  /// Joins the session whose claim objects live in the store at `url` (opened twice: one
  /// connection for the claims, one for the heartbeat thread) and writes the first heartbeat.
  SharedStoreClaimer(std::string_view url, const store::StoreOptions& store_options, std::uint64_t total,
                     const SharedClaimOptions& options = {});
  /// Stops the heartbeat and removes it: batches still held become stale after ttl.
  ~SharedStoreClaimer();
  SharedStoreClaimer(const SharedStoreClaimer&) = delete;
  SharedStoreClaimer& operator=(const SharedStoreClaimer&) = delete;

  const std::string& id() const { return id_; }

  /// The next batch: a fresh one while any index is unclaimed, then a stale one of another
  /// participant. Waits (polling the store) while the only unfinished batches are live ones of
  /// others; nullopt when every batch of the session is done.
  std::optional<Batch> claim();
  /// As claim(), without waiting: nullopt also when nothing can be claimed now (see finished()).
  std::optional<Batch> try_claim();
  /// True once every batch has a done record (as seen by the last try_claim).
  bool finished() const { return finished_; }
  /// After a try_claim that found nothing: batches of others that are not done and whose owner
  /// has not been seen beating since this participant first looked (it may be dead: waiting
  /// up to the lease tells), and the elements that others hold in unfinished batches.
  std::uint64_t unproven_batches() const { return unproven_; }
  std::uint64_t held_by_others() const { return held_by_others_; }

  /// True when a higher epoch of the batch exists: start no further element of it. One read.
  bool superseded(const Batch& batch);

  /// Records the batch done: true when this commit is the one that counts; false when another
  /// commit of the batch came first (this one is fenced: counted in stats() and under fenced/).
  /// `elapsed` is how long the batch took, for the batch size.
  bool commit(const Batch& batch, std::chrono::nanoseconds elapsed);

  /// Gives an unfinished batch back: creates its next epoch with no owner, which others take
  /// at once (take_stale sees it stale without waiting for the lease). Nothing happens when a
  /// higher epoch exists already. Start no further element of it afterwards.
  void release(const Batch& batch);

  /// Rewrites the heartbeat now.
  void beat();
  /// Replaces what the heartbeat says about the participant (JSON object text); the next beat
  /// carries it. Thread-safe. Throws UsageError when `about` is not JSON.
  void set_about(std::string about);

  SharedClaimStats stats() const;

 private:
  struct ClaimRecord {
    std::string participant;
    std::uint64_t first = 0, count = 0, epoch = 0;
    std::string released_by;  // a claim with no participant made by release()
  };
  struct Sighting {  // an owner's heartbeat version and when it last changed, on our clock
    std::string etag;
    std::chrono::steady_clock::time_point since;
    bool beating = false;  // it changed since the first sighting: the owner was alive then
  };

  std::uint64_t next_size() const;
  std::uint64_t region_end(std::size_t region) const;
  std::uint64_t remaining() const;
  void learn_cursors();
  std::string claim_content(std::uint64_t first, std::uint64_t count, std::uint64_t epoch) const;
  std::optional<ClaimRecord> read_claim(const std::string& key);
  std::optional<Batch> take_fresh();
  std::optional<Batch> take_stale();
  void heartbeat_loop();
  std::string heartbeat_text();

  std::unique_ptr<store::ObjectStore> store_;
  std::unique_ptr<store::ObjectStore> heartbeat_store_;  // the heartbeat thread's own connection
  std::uint64_t total_;
  SharedClaimOptions options_;
  std::string id_;
  std::uint64_t region_length_ = 0;
  std::vector<std::uint64_t> cursor_;  // per region: no fresh batch starts below this index
  std::size_t region_ = 0;             // the region fresh batches are taken from
  bool cursors_known_ = false;
  bool finished_ = false;
  std::uint64_t unproven_ = 0;
  std::uint64_t held_by_others_ = 0;
  double rate_ = 0;  // elements per second, smoothed
  std::uint64_t last_size_ = 0;
  std::atomic<std::uint64_t> participants_{1};
  std::map<std::string, Sighting> sightings_;
  SharedClaimStats stats_;
  std::atomic<std::uint64_t> heartbeat_failures_{0};
  std::atomic<std::uint64_t> beats_{0};

  std::mutex about_mutex_;  // guards options_.about, read by the heartbeat thread

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread heartbeat_;
};

}  // namespace mpmux::claim
