// One run of a read session inside an MPI job: the coordinator on the root rank, the workers
// on the others, the journal, progress.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "mpmux/element_set.hpp"
#include "mpmux/export.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/rma_claimer.hpp"
#include "mpmux/session.hpp"

namespace mpmux {

struct MPMUX_EXPORT RunOptions {
  ChunkPolicy chunk;
  int root = 0;
  /// The root also processes elements (it always does when it is the only rank).
  bool root_works = false;
  /// Hand out elements recorded as failed for good, too.
  bool rerun_failed = false;
  /// Rank 0 draws a progress bar on a terminal, or prints a line every progress_interval_s
  /// seconds when stderr is a file.
  bool progress = false;
  double progress_interval_s = 10.0;
  /// Group commit: the journal is fdatasynced at most this often (and at the end).
  double commit_interval_s = 0.2;
  /// Called on the root before anything is handed out, with the set's attributes and its first
  /// element; an exception thrown there ends the run on every rank before it starts.
  std::function<void(const ElementSetInfo&, std::string_view first_element)> validate;
};

/// What a run did, as seen by the root (other ranks see their own counts).
struct MPMUX_EXPORT RunSummary {
  std::uint64_t handed_out = 0;  // pending elements at the start of this run
  std::uint64_t done = 0;        // successful outcomes recorded in this run
  std::uint64_t failed = 0;      // failed outcomes recorded in this run
};

/// One element handed to this rank.
struct MPMUX_EXPORT WorkItem {
  std::uint64_t index = 0;
  std::string_view bytes;  // valid until the next call to Run::next
};

/// A run of one session over a communicator. Construction and destruction are collective.
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
  bool is_root() const;

  /// Worker side: the next element, or false when none is left for this rank. On the root,
  /// false comes only after every worker has finished (the root coordinates meanwhile).
  bool next(WorkItem& item);
  /// Records the outcome of an element this rank got from next(). index, worker, host and pid
  /// are filled in here.
  void record(Outcome& outcome);
  /// Collective end of the run: flushes this rank's outcomes; the root coordinates until every
  /// worker has finished, then flushes the journal. Called by the destructor when needed.
  RunSummary finish();

  const MuxId& id() const;
  const std::string& host() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

namespace detail {
/// Wall-clock time in ns since the Unix epoch, as journal records store it.
MPMUX_EXPORT std::int64_t unix_ns();
}  // namespace detail

/// Counts of a session read from its journals; `running` comes from the live coordinator's
/// status file when it was updated within the last 30 seconds.
MPMUX_EXPORT Stat session_stat(const Session& session);

}  // namespace mpmux
