// One run of a read session inside an MPI job: the coordinator on the root rank, the workers
// on the others, the journal, progress.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/export.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/rma_claimer.hpp"
#include "mpmux/session.hpp"

namespace mpmux {

/// How rank 0 shows progress: `automatic` draws a bar when the user's terminal is at the end of
/// its stderr, also through mpirun's or srun's forwarding (docs/design.md), plain lines otherwise.
enum class ProgressOutput { automatic, bar, lines };

struct MPMUX_EXPORT RunOptions {
  ChunkPolicy chunk;
  int root = 0;
  /// The root also processes elements (it always does when it is the only rank).
  bool root_works = false;
  /// Hand out elements recorded as failed for good, too.
  bool rerun_failed = false;
  /// A failed attempt is retried up to this many times in the run (0 to 254), on any rank:
  /// after each pass over the pending elements, the ones that failed and have tries left are
  /// handed out again.
  int retries = 0;
  /// Drain on SIGUSR1, SIGTERM or SIGINT: stop claiming, let running elements finish within
  /// grace_s (a second signal makes it zero), leave the rest pending. Installs signal handlers.
  bool stop_on_signals = false;
  double grace_s = 60.0;
  /// End time (Unix seconds): no element is started that its runtime estimate says cannot end
  /// before deadline - grace_s (p90 of the durations this rank has seen, or estimate_s before
  /// any); the run then drains as on a signal.
  std::optional<double> deadline;
  std::optional<double> estimate_s;
  /// Rank 0 draws a progress bar on a terminal, or prints a line every progress_interval_s
  /// seconds when stderr is a file (as progress_output says).
  bool progress = false;
  ProgressOutput progress_output = ProgressOutput::automatic;
  double progress_interval_s = 10.0;
  /// Group commit: the journal is fdatasynced at most this often (and at the end); less for
  /// short elements (a quarter of their median time, at least 10 ms: JournalWriter).
  double commit_interval_s = 0.2;
  /// false: the journal is written but never fdatasynced (survives a crash of the process, not
  /// of the node). For benchmarks and scratch sessions.
  bool fsync = true;
  /// The run is a participant of its session (any number of runs and Multiplexer loops may
  /// work one session): a batch of elements it claimed from the session's store is taken over
  /// by others when its heartbeat (every lease_s / 4) has not changed for lease_s seconds.
  double lease_s = 30.0;
  /// Called on the root before anything is handed out, with the set's attributes and its first
  /// element; an exception thrown there ends the run on every rank before it starts.
  std::function<void(const ElementSetInfo&, std::string_view first_element)> validate;
};

/// What a run did, as seen by the root (other ranks see their own counts).
struct MPMUX_EXPORT RunSummary {
  std::uint64_t handed_out = 0;       // pending elements at the start of this run
  std::uint64_t done = 0;             // successful outcomes recorded in this run
  std::uint64_t failed = 0;           // failed attempts recorded in this run
  std::uint64_t failed_for_good = 0;  // of those, the final ones (no retry left)
  std::uint64_t syncs = 0;            // fdatasyncs of the journal (root)
  double seconds = 0;                 // from the end of set-up to the end of finish()
  /// The run stopped before handing out everything (signal, deadline, journal write error);
  /// what was not recorded stays pending. The same on every rank after finish().
  bool stopped = false;
  std::string stop_reason;      // on the rank that saw it first, and on the root
  bool journal_failed = false;  // the root could not write the journal
  /// Root: batches whose commit lost to another participant's (the batch was taken over while
  /// this run was silent past its lease); their records here are not the ones kept.
  std::uint64_t fenced_batches = 0;
  /// Root: elements that other live participants of the session still held when this run
  /// ended (they finish them; this run does not wait).
  std::uint64_t held_by_others = 0;
};

/// One element handed to this rank.
struct MPMUX_EXPORT WorkItem {
  std::uint64_t index = 0;
  std::string_view bytes;            // valid until the next call to Run::next
  std::uint32_t attempt = 1;         // 1 for the first attempt ever (counted across runs)
  bool last_try = true;              // a failure now is final (no retry left in this run)
  std::int64_t started_unix_ns = 0;  // when next() handed it (wall clock, ns since the epoch)
};

/// A run of one session over a communicator, as one participant of the session: any number of
/// runs (MPI jobs, plain processes, threads) may work one session at once, each element being
/// handed to one of them (again only after a participant went silent past its lease). With
/// MPI_COMM_NULL, or a communicator of one rank, the run makes no MPI call (MPI_COMM_NULL does
/// not even need MPI initialized): its elements come from a local queue fed from the session's
/// store. Construction and destruction are collective.
/// Each pending element is handed by next() to exactly one rank. An outcome is durable when it
/// is in the journal: the root appends what workers report and fdatasyncs at most every
/// commit_interval_s and when the run ends, so after finish() returns every outcome recorded by
/// any rank is durable.
class MPMUX_EXPORT Run {
 public:
  /// Collective. Throws UsageError on every rank when the root finds the session unusable or
  /// `validate` throws (the root's exception carries the message).
  Run(const MuxId& id, MPI_Comm comm, RunOptions options = {});
  ~Run();
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  /// True when this rank takes elements (all ranks but the root, unless root_works or size 1).
  bool works() const;
  /// The rule of works(), for a rank of a run not made yet: whether rank `rank` of `size` will
  /// take elements.
  static bool rank_works(int rank, int size, const RunOptions& options);
  bool is_root() const;

  /// Worker side: the next element, or false when none is left for this rank. On the root,
  /// false comes only after every worker has finished (the root coordinates meanwhile).
  bool next(WorkItem& item);
  /// The next element when one can be had without ending the pass; false otherwise (nothing
  /// left in this pass, stopping, or this rank does not work). For ranks that run several
  /// elements at once: record those running, then call next(), which ends the pass with the
  /// other ranks and may start a pass of retries.
  bool try_next(WorkItem& item);
  /// Records the outcome of the element this rank got last from next(): index, attempt,
  /// worker, host, pid and (for a failure on the last try) the final flag are filled in here,
  /// and a t_start or t_end left 0 with the element's started_unix_ns or the time now.
  void record(Outcome& outcome);
  /// The same for any element this rank got from next() and has not recorded yet, for ranks
  /// that run several elements at once (call it from the thread that calls next()).
  void record(const WorkItem& item, Outcome& outcome);
  /// True once this rank was asked to stop: a signal (with stop_on_signals), the deadline, or a
  /// stop the root published. next() then returns false.
  bool stopping();
  /// True when a running element must be killed now: the grace after the stop has passed, or
  /// a second signal came. The element is then not recorded and stays pending.
  bool must_cancel();
  /// Stops this rank as a drain signal does (no element started after it, the other ranks stop
  /// at their next claim), with `reason` as the run's stop reason: for a task that cannot go on.
  void stop(const std::string& reason);
  /// Collective end of the run: flushes this rank's outcomes; the root coordinates until every
  /// worker has finished, then flushes the journal. Called by the destructor when needed.
  RunSummary finish();

  const MuxId& id() const;
  const std::string& host() const;
  /// Root: this run's name among the session's participants (its journal's file stem, as
  /// `mpmux stat` lists it). Empty on the other ranks.
  std::string participant_id() const;
  /// How the current pass's claimer serves each window (RmaClaimer::paths): sm, rdma, ucx,
  /// pt2pt or two-sided; empty for a run of one rank. Also in the participant's heartbeat while
  /// the run lasts.
  std::vector<WindowPath> claim_paths() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

namespace detail {
/// Wall-clock time in ns since the Unix epoch, as journal records store it.
MPMUX_EXPORT std::int64_t unix_ns();
}  // namespace detail

/// Counts of a session read from its journals with the committed batches of its store; what
/// the live participants hold (running, claimed), their rates and the stale batches come from
/// their heartbeats (advisory). Reads only: works for anyone who may read the session.
MPMUX_EXPORT Stat session_stat(const Session& session);
/// The Stat as the one-line JSON object `mpmux stat --json` prints (docs/formats.md).
MPMUX_EXPORT std::string stat_json(const Stat& stat);

}  // namespace mpmux
