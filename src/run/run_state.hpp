// The state of a Run, shared by its two source files: run.cpp (set-up, passes, the worker and
// root loops, the public calls) and run_feed.cpp (what joins the run to its session's store: the
// heartbeat, batches fed to the hand-out, their commits and release). Private to src/run.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <boost/mpi/communicator.hpp>
#include <boost/mpi/request.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <unordered_map>

#include <hdf5.h>

#include "mpmux/error.hpp"
#include "mpmux/mpi.hpp"
#include "mpmux/run.hpp"
#include "run/collective.hpp"
#include "run/participant.hpp"
#include "run/progress_printer.hpp"
#include "run/signals.hpp"
#include "store/fs.hpp"
#include "store/h5.hpp"

namespace mpmux {

namespace run_internal {

namespace bmpi = boost::mpi;

inline constexpr int kTagOutcomes = 1;  // framed journal records
inline constexpr int kTagPassDone = 2;  // a worker has nothing left in this pass; 1 byte: it stopped
inline constexpr int kTagRunning = 3;   // a worker's long-running elements: RunningNoteEntry each

// Workers send what they recorded when this much is buffered or this long has passed, so
// tiny tasks are batched and long ones are reported at once.
inline constexpr std::size_t kOutboxBytes = std::size_t{256} * 1024;
inline constexpr auto kOutboxAge = std::chrono::milliseconds(50);
inline constexpr std::int64_t kReportAtOnceNs = 5'000'000;
inline constexpr std::size_t kMaxSendsInFlight = 16;
inline constexpr auto kStatusEvery = std::chrono::seconds(2);
// The heartbeat lists the longest-running elements of the participant, at most this many. A
// worker rank tells the root of those it has run this long, at most once per this interval and
// only when the list has an element the root was not told of: a message per long element, none
// per short one.
inline constexpr std::size_t kRunningListed = 8;
inline constexpr auto kRunningNoteAfter = std::chrono::seconds(1);

// What a running note carries per element (native layout: the ranks of one job share it).
struct RunningNoteEntry {
  std::uint64_t index;
  std::int64_t started_unix_ns;
  std::uint32_t attempt;
};

// The claimer hands out opaque 64-bit tags; a tag carries the element index with the attempt
// number and the tries left after it, so workers need no other message to record them.
inline constexpr int kIndexBits = 40;
inline constexpr int kAttemptBits = 16;
inline constexpr std::uint64_t kMaxIndex = (std::uint64_t{1} << kIndexBits) - 1;
inline constexpr std::uint32_t kMaxAttempt = (1u << kAttemptBits) - 1;

inline std::uint64_t make_tag(std::uint64_t index, std::uint32_t attempt, std::uint32_t tries_left) {
  return index | (std::uint64_t{std::min(attempt, kMaxAttempt)} << kIndexBits) |
         (std::uint64_t{tries_left} << (kIndexBits + kAttemptBits));
}

using Clock = std::chrono::steady_clock;

inline std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

using run::check_mpi;  // the run's communicator returns errors; a failed call becomes an MpiError

inline double unix_seconds() { return static_cast<double>(posix::unix_time_ns()) / 1e9; }

using h5::hdf5_lock;

// What the heartbeat says of the Slurm job this process belongs to, if any.
inline nlohmann::json slurm_ids() {
  nlohmann::json ids = nlohmann::json::object();
  for (const auto& [field, var] :
       {std::pair{"job_id", "SLURM_JOB_ID"}, std::pair{"array_job_id", "SLURM_ARRAY_JOB_ID"},
        std::pair{"array_task_id", "SLURM_ARRAY_TASK_ID"}, std::pair{"step_id", "SLURM_STEP_ID"}})
    if (const char* v = std::getenv(var); v && *v) ids[field] = v;
  return ids;
}

}  // namespace run_internal

struct Run::State {
  RunOptions options;
  MPI_Comm comm = MPI_COMM_NULL;
  std::optional<boost::mpi::communicator> bcomm;
  int rank = 0, size = 1;
  bool works = true;
  int claimers = 1;
  // No MPI at all (MPI_COMM_NULL, or one rank): elements come from a local queue fed by the
  // participant, and the retry passes from retry_tags.
  bool local = false;
  bool opened = false;                    // set up done: finish() has something to end
  std::vector<std::uint64_t> local_tags;  // local: the tags of the current pass not yet in a chunk
  bool first_pass = true;
  bool store_ended = false;       // the participant has nothing more to claim
  std::uint64_t handed_here = 0;  // elements this rank got from try_next
  // MPI: the first pass is an open hand-out (RmaClaimer HandOut::published) that the root feeds
  // with the participant's batches, refilled before the ranks run dry.
  bool published_first = false;
  std::vector<std::uint64_t> first_pass_indices;  // root: the element index at each position
  std::uint64_t last_batch = 0;                   // elements of the last batch published
  run_internal::Clock::time_point last_refill;
  MuxId id;
  std::string host = run_internal::hostname();
  std::uint32_t pid = static_cast<std::uint32_t>(::getpid());
  std::unique_ptr<RmaClaimer> claimer;
  Claim chunk;
  std::size_t next_in_chunk = 0;
  WorkItem current;
  bool over = false;  // next() returned false
  bool finished = false;
  RunSummary summary;
  run_internal::Clock::time_point started = run_internal::Clock::now();

  // Stopping (every rank).
  int signals_seen = 0;
  std::optional<run_internal::Clock::time_point> stop_since;
  run_internal::Clock::time_point last_remote_check = run_internal::Clock::now();
  run_internal::Clock::time_point last_element_start = run_internal::Clock::now();
  // Elements this rank was handed in this pass and has not recorded: when, which attempt.
  std::unordered_map<std::uint64_t, std::pair<run_internal::Clock::time_point, std::uint32_t>> running_here;
  // Worker: the elements of the last running note sent to the root, and when it was looked for.
  std::vector<std::uint64_t> running_noted;
  run_internal::Clock::time_point last_running_note = run_internal::Clock::now();
  // Seconds of the last kDurationWindow elements this rank finished: the deadline's estimate.
  static constexpr std::size_t kDurationWindow = 1024;
  std::vector<double> durations;
  std::uint64_t finished_here = 0;
  double p90 = 0;
  std::size_t p90_at = 0;

  // Worker side.
  std::string outbox;
  run_internal::Clock::time_point last_send = run_internal::Clock::now();
  std::deque<std::pair<boost::mpi::request, std::string>> sends;

  // Root side.
  std::optional<Session> session;
  std::optional<ElementSet> set;
  std::optional<JournalWriter> journal;
  bool journal_broken = false;
  std::optional<run::ProgressPrinter> progress;
  int passes_done = 0;          // workers done with the current pass
  std::uint64_t pass_base = 0;  // outcomes recorded before the current pass
  bool worker_stopped = false;
  std::string worker_stop_reason;
  std::vector<std::uint64_t> retry_tags;  // failed, not final: the next pass
  std::unordered_map<std::uint64_t, std::uint32_t> failures_in_run;
  std::string inbox;
  run_internal::Clock::time_point last_status = run_internal::Clock::now();
  std::unique_ptr<run::SessionParticipant> participant;
  std::int64_t started_unix_ns = posix::unix_time_ns();
  std::deque<std::pair<run_internal::Clock::time_point, std::uint64_t>> rate_samples;  // (when, outcomes)
  // Elements worker ranks said they have been running for a while, until their outcome comes.
  struct ReportedRunning {
    std::int64_t started_unix_ns = 0;
    std::uint32_t attempt = 0;
    int rank = 0;
  };
  std::unordered_map<std::uint64_t, ReportedRunning> running_reported;

  bool is_root() const { return rank == options.root; }
  int remote_workers() const { return size - 1; }

  void stop(const std::string& reason);
  void lose_journal(const StoreError& e);
  void lose_store(const StoreError& e);
  bool check_stop(bool starting_element = false) {
    return check_stop_at(run_internal::Clock::now(), starting_element);
  }
  bool check_stop_at(run_internal::Clock::time_point now, bool starting_element);
  // Wall-clock ns of a steady time point: what journal records store, one clock read per element
  // boundary instead of one of each clock. The offset is taken again with each report sent
  // (workers) and heartbeat (root), so that it follows the wall clock's adjustments.
  std::int64_t unix_offset_ns = 0;
  void take_unix_offset(run_internal::Clock::time_point now) {
    unix_offset_ns = posix::unix_time_ns() -
                     std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  }
  std::int64_t unix_of(run_internal::Clock::time_point t) const {
    return unix_offset_ns +
           std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }
  bool cancel_now();
  std::vector<std::uint64_t> open_session();
  void start_pass(std::vector<std::uint64_t> tags);
  bool next_pass();
  void send_outbox();
  void reap_sends(bool all);
  void journal_records(std::string_view records);
  bool poll();
  void coordinate_until_pass_done();
  void write_status();
  std::string about();
  nlohmann::json running_elements();
  void note_running();
  void take_running_note(int source, std::string_view note);
  bool refill_local();
  void refill_published();
  bool claim_published();
  void commit_batches();
  void end_participation();
  void note_outcome(RecordType type, std::uint64_t index, std::uint32_t attempt, std::uint8_t flags);
};

}  // namespace mpmux
