// The event loop of a ProcessPool: on its own thread in the caller, it moves chunks into the
// workers' task rings and results out of their result rings, starts and replaces workers
// through the fork server, enforces task_timeout, and cuts and files the chunks of direct maps.
#pragma once
#include <any>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pool/process_state.hpp"

namespace mpmux::pool_detail {

struct Chunk {
  ChunkTask task;                               // a direct chunk has no inputs here and no done callback
  DirectJob* direct = nullptr;                  // set for a chunk of a direct map
  std::string results;                          // posted chunks: the records so far
  std::uint32_t received = 0;                   // elements [0, received) have a result record
  std::map<std::uint32_t, int> crashes;         // element position -> deaths while it ran
  std::map<std::uint32_t, std::string> forced;  // position -> the failure record it gets
  bool completed = false;

  bool cancelled() const {
    return direct ? direct->cancelled.load() : task.cancelled && task.cancelled->load();
  }
};

/// A chunk's elements [chunk->received, stop) given to one worker. A chunk is either pending
/// or held by one worker, never both; stop ends before an element with a forced outcome.
struct ChunkSlice {
  std::shared_ptr<Chunk> chunk;
  std::uint32_t begin = 0;  // chunk->received when it was sent
  std::uint32_t stop = 0;
};

enum class Phase { spawning, running, stopping, ended };

struct SlotState {
  Phase phase = Phase::spawning;
  std::uint32_t gen = 0;
  bool goodbye = false;  // the worker sent its exit record (lifespan or stop)
  bool stop_sent = false;
  bool ready_seen = false;
  std::deque<ChunkSlice> assigned;
  std::uint64_t held_elements = 0;        // elements of `assigned` not yet answered when sent
  std::uint32_t posted_held = 0;          // of `assigned`, chunks whose caller waits for each
  std::uint32_t tasks_sent = 0;           // mirrors SlotShm::tasks_sent
  std::uint32_t wake_left = kWakeAlways;  // mirrors SlotShm::wake_left
  Bytes outbuf;
  std::size_t out_off = 0;
  Bytes inbuf;
  std::size_t in_off = 0;
  std::int64_t timeout_index = -1;  // element we killed the worker for
  std::chrono::steady_clock::time_point spawn_time;
};

/// How fast one worker slot runs the elements of one task, for the depth of its queue.
struct SlotSpeed {
  std::uintptr_t key = 0;     // the runner and function it was measured on
  double ns_per_element = 0;  // 0: not measured yet
};

/// One run of the event loop, from the pool's start to its stop. Its members are the loop's
/// state; ProcessState::run_loop builds one and calls run().
class EventLoop {
 public:
  EventLoop(ProcessState& state, int initial_workers);
  /// Runs until stop() asked and every worker ended; hands back every direct map.
  void run();

 private:
  using Clock = std::chrono::steady_clock;

  // One round of run(), in order; each returns whether it did anything.
  bool take_inboxes();
  bool watch_slots();
  bool dispatch();
  /// Flushes outgoing bytes and sets the refill marks; false once every slot ended.
  bool flush_outgoing(bool& progressed);
  /// Asks the server to kill a worker whose element overran; returns how long to sleep at most
  /// (-1: no limit).
  long enforce_timeouts();
  /// Sleeps until a worker, the server or a caller rings, unless something is visible already.
  void sleep(long sleep_ms);
  /// Hands back the direct maps when the loop ends.
  void finish();

  // What parse() gathers over the records it reads, to report under one lock.
  struct ParseTally {
    std::uint64_t elements = 0;
    std::uint64_t chunks = 0;
    std::vector<SlowTask> slow;
    std::string one;  // one record rewritten without its ns
  };
  void file_results(int k, std::uint32_t len, ParseTally& tally);
  void on_control(int k, std::uint8_t kind, const char* body, std::size_t body_len);

  void spawn(int k);
  void complete(const std::shared_ptr<Chunk>& c, bool skipped);
  // Files `count` result records (without ns) of the chunk's next elements: a direct map's go
  // straight to its output, a posted chunk keeps them until it completes.
  void accept(Chunk& c, const char* records, std::size_t bytes, std::uint32_t count);
  // Files the forced failures (timeouts, repeated crashes) due at the chunk's next position.
  bool advance(Chunk& c);
  std::string failure_record(std::uint8_t kind, const std::string& msg);
  // The next work for slot k: re-runs first; then a posted chunk by the affinity rule (only
  // the worker's own requestor's, or one that waited too long, when `preferred_only`); then a
  // new chunk of a direct map, the maps taking turns.
  bool take_next(int k, ChunkSlice& out, bool preferred_only);
  // Queues the task message for elements [received, stop) of the item's chunk. False when the
  // inputs of a direct map could not be read or encoded (on this thread): then that map ends
  // with the exception, and nothing was queued.
  bool send_task(int k, SlotState& st, ChunkSlice& item);
  // Whether slot k takes another chunk now (see kQueueNs).
  bool wants_more(int k);
  // Handles the records of slot k now in its inbuf.
  void parse(int k);
  bool read_results(int k);
  void on_death(int k);
  void sweep();
  // Starts slots active..to-1. The server learns of them from ctl->workers before it is rung.
  void add_slots(int to);

  ProcessState& ps_;
  std::vector<SlotState> slots_;
  std::vector<SlotSpeed> speeds_;
  int active_ = 0;               // slots in use: 0..active_-1 (grow_to adds)
  std::vector<int> hand_order_;  // the slots in the order they are offered others' work
  std::vector<bool> was_ready_;
  std::deque<ChunkSlice> reruns_;    // the rest of chunks a worker gave back: before new work
  std::vector<DirectJob*> sources_;  // direct maps still cutting chunks or waiting for them
  std::size_t next_source_ = 0;      // the direct maps take turns
  bool stopping_ = false;
  const bool with_ns_;
  const std::uint64_t timeout_ns_;
};

}  // namespace mpmux::pool_detail
