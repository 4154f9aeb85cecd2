// The C ABI's run loop (include/mpmux/mpmux.h): options by name, opening a session as a run over
// a communicator (or none), next / record, the callback loop, finish with the run's verdict.
#include <mpi.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "capi/boundary.hpp"
#include "mpmux/run.hpp"
#include "mpmux/runner.hpp"
#include "mpmux/session.hpp"
#include "run/collective.hpp"
#include "run/deadline.hpp"
#include "store/h5.hpp"

using namespace mpmux;        // NOLINT(google-build-using-namespace): the boundary's own file
using namespace mpmux::capi;  // NOLINT(google-build-using-namespace)

struct mpmux_options {
  RunOptions run;
};

struct mpmux_run {
  std::unique_ptr<Run> run;
  MPI_Comm comm = MPI_COMM_NULL;  // the caller's, for the verdict's broadcast; NULL without MPI
  int root = 0;
  std::string worker_id;
  WorkItem item;
  bool current = false;  // an element was handed out and is not recorded yet
  std::string bytes;     // the current element's bytes, NUL-terminated
  std::string result;    // set by mpmux_set_result
  std::string message;   // set by mpmux_set_message
  bool finished = false;
};

namespace {

// ------------------------------------------------------------------------------- options

std::string option_text(std::string_view name, std::string_view value) {
  return "option " + std::string(name) + " '" + std::string(value) + "'";
}

double number_of(std::string_view name, const std::string& value) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    throw UsageError(option_text(name, value) + ": not a number");
  return v;
}

double seconds_of(std::string_view name, const std::string& value, bool zero_ok) {
  const double v = number_of(name, value);
  if (v < 0 || (v == 0 && !zero_ok))
    throw UsageError(option_text(name, value) + (zero_ok ? ": give seconds >= 0" : ": give seconds > 0"));
  return v;
}

std::uint64_t count_of(std::string_view name, const std::string& value, std::uint64_t least,
                       std::uint64_t most) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
  if (value.empty() || value[0] == '-' || *end != '\0' || errno == ERANGE || v < least || v > most)
    throw UsageError(option_text(name, value) + ": give a whole number from " + std::to_string(least) +
                     " to " + std::to_string(most));
  return v;
}

bool bool_of(std::string_view name, const std::string& value) {
  if (value == "true" || value == "1" || value == "yes") return true;
  if (value == "false" || value == "0" || value == "no") return false;
  throw UsageError(option_text(name, value) + ": give true or false");
}

void set_option(RunOptions& o, std::string_view name, const std::string& value) {
  if (name == "retries") {
    o.retries = static_cast<int>(count_of(name, value, 0, 254));
  } else if (name == "root-works") {
    o.root_works = bool_of(name, value);
  } else if (name == "rerun-failed") {
    o.rerun_failed = bool_of(name, value);
  } else if (name == "lease") {
    o.lease_s = seconds_of(name, value, false);
  } else if (name == "chunk-min") {
    o.chunk.min = count_of(name, value, 1, UINT64_MAX);
  } else if (name == "chunk-max") {
    o.chunk.max = count_of(name, value, 1, UINT64_MAX);
  } else if (name == "deadline") {
    o.deadline = run::parse_deadline(value, static_cast<double>(detail::unix_ns()) / 1e9);
  } else if (name == "grace") {
    o.grace_s = seconds_of(name, value, true);
  } else if (name == "estimate") {
    o.estimate_s = seconds_of(name, value, true);
  } else if (name == "stop-on-signals") {
    o.stop_on_signals = bool_of(name, value);
  } else if (name == "progress") {
    if (value != "none" && value != "auto" && value != "bar" && value != "lines")
      throw UsageError(option_text(name, value) + ": give none, auto, bar or lines");
    o.progress = value != "none";
    o.progress_output = value == "bar"     ? ProgressOutput::bar
                        : value == "lines" ? ProgressOutput::lines
                                           : ProgressOutput::automatic;
  } else if (name == "progress-interval") {
    o.progress_interval_s = seconds_of(name, value, false);
  } else if (name == "commit-interval") {
    o.commit_interval_s = seconds_of(name, value, false);
  } else if (name == "fsync") {
    o.fsync = bool_of(name, value);
  } else {
    throw UsageError(
        "unknown option '" + std::string(name) +
        "' (options: retries, root-works, rerun-failed, lease, chunk-min, chunk-max, deadline, "
        "grace, estimate, stop-on-signals, progress, progress-interval, commit-interval, fsync)");
  }
}

// ---------------------------------------------------------------------------------- runs

mpmux_run* open_run(std::uint32_t abi_version, const char* call, const char* mux_id, MPI_Comm comm,
                    const mpmux_options* options) {
  check_abi(abi_version, call);
  require(mux_id, call, "mux_id");
  RunOptions run_options = options ? options->run : RunOptions();
  if (run_options.chunk.min > run_options.chunk.max)
    throw UsageError("option chunk-min " + std::to_string(run_options.chunk.min) + " exceeds chunk-max " +
                     std::to_string(run_options.chunk.max));
  const MuxId id = MuxId::parse(mux_id);
  auto handle = std::make_unique<mpmux_run>();
  handle->root = run_options.root;
  int size = 1, rank = 0;
  if (comm != MPI_COMM_NULL) {
    run::check_mpi(MPI_Comm_size(comm, &size), "MPI_Comm_size", 0);
    run::check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank", 0);
  }
  if (size > 1) handle->comm = comm;
  handle->run = std::make_unique<Run>(id, comm, std::move(run_options));
  // Every rank learns the root's participant id, so that each can name itself.
  std::string participant = handle->run->participant_id();
  if (handle->comm != MPI_COMM_NULL) {
    int length = static_cast<int>(participant.size());
    run::check_mpi(MPI_Bcast(&length, 1, MPI_INT, handle->root, comm), "MPI_Bcast", rank);
    participant.resize(static_cast<std::size_t>(length));
    run::check_mpi(MPI_Bcast(participant.data(), length, MPI_CHAR, handle->root, comm), "MPI_Bcast", rank);
  }
  handle->worker_id = handle->run->is_root() ? participant : participant + "/" + std::to_string(rank);
  return handle.release();
}

void require_open(const mpmux_run* run, const char* call) {
  require(run, call, "run");
  if (run->finished) throw CallError(MPMUX_USAGE, std::string(call) + ": the run is finished");
}

void require_current(const mpmux_run* run, const char* call) {
  require_open(run, call);
  if (!run->current)
    throw CallError(MPMUX_USAGE, std::string(call) + ": no element to record (call mpmux_next first)");
}

void record(mpmux_run& run, Outcome& outcome) {
  run.current = false;  // even when recording throws: the element is not recorded twice
  run.run->record(outcome);
}

void record_done(mpmux_run& run, std::string result) {
  Outcome outcome;
  outcome.type = RecordType::done;
  outcome.result = std::move(result);
  record(run, outcome);
}

void record_failed(mpmux_run& run, int exit_code, std::string message) {
  Outcome outcome;
  outcome.type = RecordType::failed;
  outcome.exit_code = exit_code;
  outcome.stderr_tail = std::move(message);
  record(run, outcome);
}

void next(mpmux_run& run, mpmux_element& element) {
  if (element.size < sizeof(mpmux_element))
    throw CallError(MPMUX_USAGE, "mpmux_next: element->size is " + std::to_string(element.size) +
                                     "; set it to sizeof(mpmux_element)");
  if (run.current) record_done(run, std::move(run.result));
  mpmux_element out{};
  out.size = element.size;
  run.result.clear();
  run.message.clear();
  if (run.run->next(run.item)) {
    run.current = true;
    run.bytes.assign(run.item.bytes);
    out.valid = 1;
    out.last_try = run.item.last_try ? 1 : 0;
    out.index = run.item.index;
    out.attempt = run.item.attempt;
    out.data = run.bytes.c_str();
    out.length = run.bytes.size();
  }
  element = out;
}

// Collective: the same verdict on every rank, decided by the root from the session's counts.
int finish(mpmux_run& run, mpmux_summary* summary) {
  if (run.current) record_done(run, std::move(run.result));
  run.finished = true;
  const RunSummary s = run.run->finish();
  int end = static_cast<int>(RunEnd::all_done);
  if (run.run->is_root()) {
    const SessionCounts counts = [&] {
      auto lock = h5::hdf5_lock();  // Session::open reads the set's attributes
      return read_session_counts(Session::open(run.run->id()));
    }();
    end = static_cast<int>(run_end(s, counts.total, counts.done, counts.failed));
  }
  if (run.comm != MPI_COMM_NULL)
    run::check_mpi(MPI_Bcast(&end, 1, MPI_INT, run.root, run.comm), "MPI_Bcast", 0);
  if (summary != nullptr) {
    mpmux_summary out{};
    out.size = summary->size;
    out.handed_out = s.handed_out;
    out.done = s.done;
    out.failed = s.failed;
    out.failed_for_good = s.failed_for_good;
    out.fenced_batches = s.fenced_batches;
    out.held_by_others = s.held_by_others;
    out.seconds = s.seconds;
    out.stopped = s.stopped ? 1 : 0;
    *summary = out;
  }
  switch (static_cast<RunEnd>(end)) {
    case RunEnd::all_done:
      return MPMUX_OK;
    case RunEnd::some_failed:
      return fail(MPMUX_FAILED, "some elements of the session failed for good (mpmux stat lists them)");
    case RunEnd::stopped:
      return fail(MPMUX_STOPPED,
                  "stopped (" + (s.stop_reason.empty() ? std::string("on another rank") : s.stop_reason) +
                      "); the rest stays pending: open the session again to resume");
  }
  return MPMUX_FAILED;
}

void check_summary(const mpmux_summary* summary, const char* call) {
  if (summary != nullptr && summary->size < sizeof(mpmux_summary))
    throw CallError(MPMUX_USAGE, std::string(call) + ": summary->size is " + std::to_string(summary->size) +
                                     "; set it to sizeof(mpmux_summary)");
}

}  // namespace

extern "C" {

// ------------------------------------------------------------------------------- options

int mpmux_options_new_abi(uint32_t abi_version, mpmux_options** out) {
  return guarded([&] {
    check_abi(abi_version, "mpmux_options_new");
    require(out, "mpmux_options_new", "out");
    *out = new mpmux_options;
  });
}

int mpmux_options_set(mpmux_options* options, const char* name, const char* value) {
  return guarded([&] {
    require(options, "mpmux_options_set", "options");
    require(name, "mpmux_options_set", "name");
    require(value, "mpmux_options_set", "value");
    RunOptions changed = options->run;  // a bad value leaves the options as they were
    set_option(changed, name, value);
    options->run = std::move(changed);
  });
}

void mpmux_options_free(mpmux_options* options) { delete options; }

// ---------------------------------------------------------------------------------- runs

int mpmux_open_comm_abi(uint32_t abi_version, const char* mux_id, MPI_Comm comm, const mpmux_options* options,
                        mpmux_run** out) {
  return guarded([&] {
    check_abi(abi_version, "mpmux_open_comm");
    require(out, "mpmux_open_comm", "out");
    if (comm != MPI_COMM_NULL) {
      int initialized = 0;
      MPI_Initialized(&initialized);
      if (!initialized) throw CallError(MPMUX_USAGE, "mpmux_open_comm: MPI is not initialized");
    }
    *out = open_run(abi_version, "mpmux_open_comm", mux_id, comm, options);
  });
}

int mpmux_open_fint_abi(uint32_t abi_version, const char* mux_id, MPI_Fint comm, const mpmux_options* options,
                        mpmux_run** out) {
  return guarded([&] {
    check_abi(abi_version, "mpmux_open_fint");
    require(out, "mpmux_open_fint", "out");
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized)
      throw CallError(MPMUX_USAGE, "mpmux_open_fint: MPI is not initialized, so " + std::to_string(comm) +
                                       " is no communicator");
    *out = open_run(abi_version, "mpmux_open_fint", mux_id, MPI_Comm_f2c(comm), options);
  });
}

int mpmux_open_abi(uint32_t abi_version, const char* mux_id, const mpmux_options* options, mpmux_run** out) {
  return guarded([&] {
    require(out, "mpmux_open", "out");
    *out = open_run(abi_version, "mpmux_open", mux_id, MPI_COMM_NULL, options);
  });
}

int mpmux_next(mpmux_run* run, mpmux_element* element) {
  return guarded([&] {
    require_open(run, "mpmux_next");
    require(element, "mpmux_next", "element");
    next(*run, *element);
  });
}

int mpmux_set_result(mpmux_run* run, const void* data, size_t length) {
  return guarded([&] {
    require_current(run, "mpmux_set_result");
    if (length > 0) require(data, "mpmux_set_result", "data");
    run->result.assign(static_cast<const char*>(data), length);
  });
}

int mpmux_set_message(mpmux_run* run, const char* message) {
  return guarded([&] {
    require_current(run, "mpmux_set_message");
    run->message = message ? message : "";
  });
}

int mpmux_record_done(mpmux_run* run, const void* data, size_t length) {
  return guarded([&] {
    require_current(run, "mpmux_record_done");
    if (length > 0) require(data, "mpmux_record_done", "data");
    record_done(*run, std::string(static_cast<const char*>(data), length));
  });
}

int mpmux_record_failed(mpmux_run* run, int exit_code, const char* message) {
  return guarded([&] {
    require_current(run, "mpmux_record_failed");
    if (exit_code == 0)
      throw CallError(MPMUX_USAGE, "mpmux_record_failed: exit_code 0 means done; give a non-zero code");
    record_failed(*run, exit_code, message ? message : "");
  });
}

int mpmux_run_each(mpmux_run* run, mpmux_element_fn fn, void* user_data, mpmux_summary* summary) {
  int status = MPMUX_OK;
  const int rc = guarded([&] {
    require_open(run, "mpmux_run_each");
    if (fn == nullptr) throw CallError(MPMUX_USAGE, "mpmux_run_each: fn is NULL");
    check_summary(summary, "mpmux_run_each");
    mpmux_element element{};
    element.size = sizeof element;
    for (next(*run, element); element.valid; next(*run, element)) {
      const int code = fn(user_data, &element, run);
      if (!run->current) continue;  // fn recorded it itself
      if (code == 0)
        record_done(*run, std::move(run->result));
      else
        record_failed(*run, code, std::move(run->message));
    }
    status = finish(*run, summary);
  });
  return rc != MPMUX_OK ? rc : status;
}

int mpmux_finish(mpmux_run* run, mpmux_summary* summary) {
  int status = MPMUX_OK;
  const int rc = guarded([&] {
    require_open(run, "mpmux_finish");
    check_summary(summary, "mpmux_finish");
    status = finish(*run, summary);
  });
  return rc != MPMUX_OK ? rc : status;
}

void mpmux_close(mpmux_run* run) {
  if (run == nullptr) return;
  if (!run->finished) mpmux_finish(run, nullptr);
  // The Run's destructor is collective and must not throw out of here.
  guarded([&] { run->run.reset(); });
  delete run;
}

int mpmux_run_worker_id(const mpmux_run* run, char** worker_id) {
  return guarded([&] {
    require(run, "mpmux_run_worker_id", "run");
    require(worker_id, "mpmux_run_worker_id", "worker_id");
    copy_out(run->worker_id, worker_id);
  });
}

}  // extern "C"
