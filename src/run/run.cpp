#include "mpmux/run.hpp"

#include "run/run_state.hpp"

namespace mpmux {

using namespace run_internal;  // NOLINT(google-build-using-namespace): the run's own constants

// ----- stopping -----

void Run::State::stop(const std::string& reason) {
  if (stop_since) return;
  stop_since = Clock::now();
  summary.stopped = true;
  summary.stop_reason = reason;
  if (claimer) claimer->exhaust();  // the other ranks stop at their next claim
}

// The journal cannot be written (full disk, I/O error): nothing more can be acknowledged, so
// the run stops; what is already durable stays, the rest is handed out again by the next run.
void Run::State::lose_journal(const StoreError& e) {
  journal_broken = true;
  summary.journal_failed = true;
  stop(e.what());
}

// The session's store failed (full disk, unreachable): no batch can be claimed or committed, so
// the run stops as on a journal error; its batches are taken over after the lease.
void Run::State::lose_store(const StoreError& e) {
  store_ended = true;
  stop(e.what());
}

bool Run::State::check_stop_at(Clock::time_point now, bool starting_element) {
  if (options.stop_on_signals) {
    const int n = run::stop_signals();
    if (n > signals_seen) {
      if (!stop_since) stop("stop signal received");
      if (n >= 2) stop_since = Clock::now() - std::chrono::hours(24 * 365);  // a second: no grace
      signals_seen = n;
    }
  }
  if (options.deadline && !stop_since) {
    if (finished_here >= p90_at + 16 || (p90_at == 0 && finished_here > 0)) {
      std::vector<double> d = durations;
      auto nth = d.begin() + static_cast<std::ptrdiff_t>(d.size() * 9 / 10);
      std::nth_element(d.begin(), nth, d.end());
      p90 = *nth;
      p90_at = finished_here;
    }
    const double estimate = finished_here == 0 ? options.estimate_s.value_or(0.0) : p90;
    if (unix_seconds() + estimate > *options.deadline - options.grace_s) stop("deadline reached");
  }
  // A stop published by another rank (the root's journal failed, a signal to one rank): looked
  // for every 20 ms at most, so tiny elements do not pay an atomic read each; before an element
  // when the last one took a while, so that no element starts after a stop seen elsewhere.
  const bool due = now - last_remote_check >= std::chrono::milliseconds(20) ||
                   (starting_element && now - last_element_start >= std::chrono::milliseconds(1));
  if (!stop_since && !is_root() && claimer && due) {
    last_remote_check = now;
    if (claimer->exhausted()) stop("stopped on another rank");
  }
  return stop_since.has_value();
}

bool Run::State::cancel_now() {
  if (!check_stop()) return false;
  return Clock::now() - *stop_since >= std::chrono::duration<double>(options.grace_s);
}

// ----- set-up -----

// The root's part of the start: the session, its pending elements as tags, the journal.
std::vector<std::uint64_t> Run::State::open_session() {
  {
    auto lock = hdf5_lock();  // Session::open reads the set's attributes
    session.emplace(Session::open(id));
  }
  // A journal belongs to its one live writer: a torn tail of another's is ignored, never cut.
  SessionState state = read_session_state(*session, /*cut_torn_tails=*/false);
  {
    auto lock = hdf5_lock();
    set.emplace(ElementSet::open(session->elements_file()));
    if (set->size() > kMaxIndex) throw UsageError("the set has more elements than a run can index");
    if (options.validate) options.validate(set->info(), set->size() ? set->read(0) : std::string());
  }
  const auto retries = static_cast<std::uint32_t>(options.retries);
  std::vector<std::uint64_t> tags = state.pending_indices(options.rerun_failed);
  for (std::uint64_t& t : tags) t = make_tag(t, state.attempts[t] + 1, retries);
  journal.emplace(*session, host, pid, options.commit_interval_s);
  journal->set_fsync(options.fsync);
  summary.handed_out = tags.size();
  // With nothing to do, the run leaves the session's claims alone.
  if (!tags.empty()) {
    participant = std::make_unique<run::SessionParticipant>(
        *session, std::move(state), options.rerun_failed, journal->path().stem().string(), options.lease_s,
        about(), static_cast<std::uint64_t>(std::max(1, claimers)));
  }
  return tags;
}

// ----- passes -----

void Run::State::start_pass(std::vector<std::uint64_t> tags) {
  // What was handed in the last pass and not recorded was cut short by its end.
  running_here.clear();
  running_noted.clear();
  running_reported.clear();
  if (local) {
    local_tags = std::move(tags);
    chunk = Claim();
    next_in_chunk = 0;
    pass_base = summary.done + summary.failed;
    return;
  }
  const bool open = first_pass && published_first;
  ElementBuffer elements;
  if (is_root() && !tags.empty()) {
    std::vector<std::uint64_t> indices(tags.size());
    for (std::size_t k = 0; k < tags.size(); ++k) indices[k] = tags[k] & kMaxIndex;
    {
      auto lock = hdf5_lock();
      elements = set->read_subset(indices);
    }
    if (open) first_pass_indices = std::move(indices);
  }
  claimer.reset();  // collective
  claimer =
      std::make_unique<RmaClaimer>(comm, options.root, std::move(tags), std::move(elements), options.chunk,
                                   claimers, open ? HandOut::published : HandOut::all_at_once);
  if (open && is_root()) refill_published();
  chunk = Claim();
  next_in_chunk = 0;
  passes_done = 0;
  pass_base = summary.done + summary.failed;
}

// Collective, at the end of a pass: the root, having every worker's outcomes, decides whether a
// pass of retries follows.
bool Run::State::next_pass() {
  if (local) {
    first_pass = false;
    if (stop_since || journal_broken || retry_tags.empty()) return false;
    std::sort(retry_tags.begin(), retry_tags.end());
    std::vector<std::uint64_t> tags;
    tags.swap(retry_tags);
    start_pass(std::move(tags));
    return true;
  }
  if (!is_root()) {
    send_outbox();
    // [stopped][why]: the root reports the first reason it hears of.
    std::string done(1, stop_since ? '\1' : '\0');
    if (stop_since) done += summary.stop_reason;
    sends.emplace_back(bmpi::request(), std::move(done));
    sends.back().first = bcomm->isend(options.root, kTagPassDone, sends.back().second.data(),
                                      static_cast<int>(sends.back().second.size()));
    reap_sends(true);
  } else if (size > 1) {
    coordinate_until_pass_done();
  }
  std::uint64_t header[2] = {0, 0};  // next pass size, stopped
  if (is_root()) {
    if (worker_stopped && !stop_since) stop(worker_stop_reason);
    if (!stop_since && !journal_broken) {
      std::sort(retry_tags.begin(), retry_tags.end());
      header[0] = retry_tags.size();
    }
    header[1] = stop_since ? 1 : 0;
  }
  check_mpi(MPI_Bcast(header, 2, MPI_UINT64_T, options.root, comm), "MPI_Bcast", rank);
  if (header[1] && !stop_since) stop("stopped on another rank");
  first_pass = false;  // the root fed the open hand-out until every rank ended the pass
  if (header[0] == 0) return false;
  std::vector<std::uint64_t> tags;
  if (is_root()) tags.swap(retry_tags);
  start_pass(std::move(tags));
  return true;
}

// ----- worker side -----

void Run::State::send_outbox() {
  if (outbox.empty()) return;
  reap_sends(false);
  while (sends.size() >= kMaxSendsInFlight) {
    sends.front().first.wait();
    sends.pop_front();
  }
  sends.emplace_back(bmpi::request(), std::move(outbox));
  auto& data = sends.back().second;
  sends.back().first = bcomm->isend(options.root, kTagOutcomes, data.data(), static_cast<int>(data.size()));
  outbox.clear();
  last_send = Clock::now();
  take_unix_offset(last_send);
}

void Run::State::reap_sends(bool all) {
  while (!sends.empty()) {
    if (all)
      sends.front().first.wait();
    else if (!sends.front().first.test())
      break;
    sends.pop_front();
  }
}

// ----- root side -----

void Run::State::note_outcome(RecordType type, std::uint64_t index, std::uint32_t attempt,
                              std::uint8_t flags) {
  if (participant && (type == RecordType::done || (flags & Outcome::kFinal)))
    participant->finished(index, journal->records());
  if (!running_reported.empty()) running_reported.erase(index);
  if (type == RecordType::done) ++summary.done;
  if (type != RecordType::failed) return;
  ++summary.failed;
  if (flags & Outcome::kFinal) ++summary.failed_for_good;
  if (!(flags & Outcome::kFinal)) {
    // A failure with tries left: retried in the next pass, with one try fewer.
    const std::uint32_t failures = ++failures_in_run[index];
    const auto left = static_cast<std::uint32_t>(std::max(0, options.retries - static_cast<int>(failures)));
    retry_tags.push_back(make_tag(index, attempt + 1, left));
  }
}

void Run::State::journal_records(std::string_view records) {
  if (journal_broken) return;  // the run is stopping; nothing more can be acknowledged
  try {
    journal->append_framed(records, [this](const JournalWriter::Taken& r) {
      note_outcome(r.type, r.index, r.attempt, r.flags);
    });
  } catch (const StoreError& e) {
    lose_journal(e);
  }
}

bool Run::State::poll() {
  refill_published();
  // Two-sided claims first: a worker waits for each answer, an outcome waits for nothing.
  bool got = claimer && claimer->serve() > 0;
  while (auto status = bcomm->iprobe(bmpi::any_source, bmpi::any_tag)) {
    got = true;
    const int n = status->count<char>().value_or(0);
    inbox.resize(static_cast<std::size_t>(n));
    bcomm->recv(status->source(), status->tag(), inbox.data(), n);
    if (status->tag() == kTagOutcomes) {
      journal_records(inbox);
    } else if (status->tag() == kTagRunning) {
      take_running_note(status->source(), inbox);
    } else if (status->tag() == kTagPassDone) {
      ++passes_done;
      if (n > 0 && inbox[0] && !worker_stopped) {
        worker_stopped = true;
        worker_stop_reason = inbox.substr(1);
      }
    }
  }
  if (!journal_broken) {
    try {
      journal->sync();
    } catch (const StoreError& e) {
      lose_journal(e);
    }
  }
  if (worker_stopped && !stop_since) stop(worker_stop_reason);
  check_stop();
  if (progress) progress->update(summary.done, summary.failed_for_good);
  commit_batches();
  if (Clock::now() - last_status >= kStatusEvery) write_status();
  return got;
}

void Run::State::coordinate_until_pass_done() {
  // Rank 0 answers no claim; it only journals. It backs off when idle so that, on a node
  // with more ranks than cores, the workers get the CPU.
  auto idle = std::chrono::microseconds(20);
  while (passes_done < remote_workers()) {
    if (poll()) {
      idle = std::chrono::microseconds(20);
    } else {
      std::this_thread::sleep_for(idle);
      idle = std::min<std::chrono::microseconds>(idle * 2, std::chrono::microseconds(2000));
    }
  }
  poll();
}

// ----- Run -----

Run::Run(const MuxId& id, MPI_Comm comm, RunOptions options) : state_(std::make_unique<State>()) {
  auto& s = *state_;
  s.take_unix_offset(Clock::now());
  s.options = std::move(options);
  s.id = id;
  if (s.options.retries < 0 || s.options.retries > 254)
    throw UsageError("--retries " + std::to_string(s.options.retries) + ": must be between 0 and 254");
  if (s.options.grace_s < 0) throw UsageError("--grace must not be negative");
  if (!(s.options.lease_s >= 0.1 && s.options.lease_s <= 86400))
    throw UsageError("--lease " + std::to_string(s.options.lease_s) +
                     ": must be between 0.1 and 86400 seconds");
  int comm_size = 1;
  if (comm != MPI_COMM_NULL) {
    ensure_mpi();
    check_mpi(MPI_Comm_size(comm, &comm_size), "MPI_Comm_size", 0);
  }
  s.local = comm_size == 1;
  // With stop_on_signals, signals count from the start of the process: one that came before
  // the run (the CLI installs the handlers first thing) stops it at once.
  if (s.options.stop_on_signals) run::install_stop_handlers();
  s.signals_seen = s.options.stop_on_signals ? 0 : run::stop_signals();
  if (s.local) {
    if (s.options.root != 0)
      throw UsageError("root rank " + std::to_string(s.options.root) + " is not in the communicator");
    s.open_session();  // the first pass takes its elements from the participant's batches
    s.start_pass({});
    if (!s.participant) s.store_ended = true;
    if (s.options.progress)
      s.progress.emplace(s.summary.handed_out, s.options.progress_interval_s,
                         run::progress_display(s.options.progress_output));
    s.opened = true;
    s.started = Clock::now();
    return;
  }
  // A communicator of our own, so our messages never match the application's receives.
  int caller_rank = -1;
  check_mpi(MPI_Comm_rank(comm, &caller_rank), "MPI_Comm_rank", caller_rank);
  check_mpi(MPI_Comm_dup(comm, &s.comm), "MPI_Comm_dup", caller_rank);
  check_mpi(MPI_Comm_set_errhandler(s.comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", caller_rank);
  s.bcomm.emplace(s.comm, bmpi::comm_attach);
  check_mpi(MPI_Comm_rank(s.comm, &s.rank), "MPI_Comm_rank", caller_rank);
  check_mpi(MPI_Comm_size(s.comm, &s.size), "MPI_Comm_size", caller_rank);
  if (s.options.root < 0 || s.options.root >= s.size)
    throw UsageError("root rank " + std::to_string(s.options.root) + " is not in the communicator");
  s.works = rank_works(s.rank, s.size, s.options);
  s.claimers = s.size - ((s.size > 1 && !s.options.root_works) ? 1 : 0);

  std::vector<std::uint64_t> tags;
  try {
    run::all_or_none(s.comm, [&] {
      if (s.is_root()) tags = s.open_session();
    });
  } catch (const Error&) {
    s.bcomm.reset();
    // The error to report is the one thrown; a failure to free the duplicate would only hide it.
    MPI_Comm_free(&s.comm);
    throw;
  }
  std::uint64_t published = s.is_root() && s.participant ? 1 : 0;
  check_mpi(MPI_Bcast(&published, 1, MPI_UINT64_T, s.options.root, s.comm), "MPI_Bcast", s.rank);
  s.published_first = published != 0;
  s.start_pass(std::move(tags));
  if (s.is_root() && s.options.progress)
    s.progress.emplace(s.summary.handed_out, s.options.progress_interval_s,
                       run::progress_display(s.options.progress_output));
  if (s.is_root()) s.write_status();
  s.opened = true;
  s.started = Clock::now();
}

Run::~Run() {
  if (!state_ || state_->finished || !state_->opened) return;
  try {
    finish();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpmux: ending the run: %s\n", e.what());
  }
}

bool Run::rank_works(int rank, int size, const RunOptions& options) {
  return size == 1 || rank != options.root || options.root_works;
}

bool Run::works() const { return state_->works; }
std::vector<WindowPath> Run::claim_paths() const {
  // A run of one rank claims from its own memory: no path to speak of.
  if (state_->size == 1 || !state_->claimer) return {};
  return state_->claimer->paths();
}
bool Run::is_root() const { return state_->is_root(); }
const MuxId& Run::id() const { return state_->id; }
const std::string& Run::host() const { return state_->host; }
std::string Run::participant_id() const {
  return state_->journal ? state_->journal->path().stem().string() : std::string();
}
bool Run::stopping() { return state_->check_stop(); }
void Run::stop(const std::string& reason) { state_->stop(reason); }
bool Run::must_cancel() {
  auto& s = *state_;
  // Called while a task runs: what finished before it must not wait for it to end.
  if (!s.is_root() && !s.outbox.empty() && Clock::now() - s.last_send >= kOutboxAge) s.send_outbox();
  if (!s.is_root() && Clock::now() - s.last_running_note >= kRunningNoteAfter) s.note_running();
  // A run of one rank refreshes its heartbeat's content while long elements run, too.
  if (s.is_root() && s.size == 1 && Clock::now() - s.last_status >= kStatusEvery) s.write_status();
  // A root that works while others claim through it answers them between its own elements.
  if (s.is_root() && s.claimer) s.claimer->serve();
  return s.cancel_now();
}

bool Run::try_next(WorkItem& item) {
  auto& s = *state_;
  auto now = Clock::now();
  if (s.over || !s.works || s.check_stop_at(now, /*starting_element=*/true)) return false;
  if (s.next_in_chunk == s.chunk.size() && s.local) {
    if (!s.refill_local()) return false;
    now = Clock::now();  // the store may have taken a while
  } else if (s.next_in_chunk == s.chunk.size()) {
    if (s.is_root()) {
      if (s.size > 1) s.poll();
    } else {
      s.send_outbox();  // report before taking more, so nothing waits behind a long chunk
    }
    s.next_in_chunk = 0;
    const bool claimed =
        s.is_root() && s.published_first && s.first_pass ? s.claim_published() : s.claimer->claim(s.chunk);
    if (!claimed) {
      s.chunk = Claim();
      if (!s.is_root() && s.claimer->exhausted() && !s.stop_since) s.stop("stopped on another rank");
      return false;
    }
    now = Clock::now();  // a claim may have waited for the root to publish
  }
  const std::uint64_t tag = s.chunk.indices[s.next_in_chunk];
  item.index = tag & kMaxIndex;
  item.attempt = static_cast<std::uint32_t>((tag >> kIndexBits) & kMaxAttempt);
  item.last_try = (tag >> (kIndexBits + kAttemptBits)) == 0;
  item.bytes = s.chunk.elements.at(s.next_in_chunk);
  ++s.next_in_chunk;
  ++s.handed_here;
  item.started_unix_ns = s.unix_of(now);
  s.current = item;
  s.last_element_start = now;
  s.running_here[item.index] = {now, item.attempt};
  return true;
}

bool Run::next(WorkItem& item) {
  auto& s = *state_;
  if (s.over) return false;
  for (;;) {
    if (try_next(item)) return true;
    // This rank is done with the pass (nothing left, or stopping): all meet, and the root
    // says whether retries follow.
    if (!s.next_pass()) {
      s.over = true;
      return false;
    }
  }
}

void Run::record(Outcome& outcome) { record(state_->current, outcome); }

void Run::record(const WorkItem& item, Outcome& outcome) {
  auto& s = *state_;
  const auto now = Clock::now();
  if (outcome.t_start == 0) outcome.t_start = item.started_unix_ns;
  if (outcome.t_end == 0) outcome.t_end = s.unix_of(now);
  outcome.index = item.index;
  outcome.attempt = item.attempt;
  outcome.worker = static_cast<std::uint32_t>(s.rank);
  if (outcome.host.empty()) outcome.host = s.host;
  if (outcome.pid == 0) outcome.pid = s.pid;
  if (outcome.type == RecordType::failed && item.last_try) outcome.flags |= Outcome::kFinal;
  const double seconds = static_cast<double>(outcome.t_end - outcome.t_start) / 1e9;
  if (s.durations.size() < State::kDurationWindow)
    s.durations.push_back(seconds);
  else
    s.durations[s.finished_here % State::kDurationWindow] = seconds;
  ++s.finished_here;
  s.running_here.erase(item.index);
  if (s.is_root()) {
    if (!s.journal_broken) {
      try {
        s.journal->append(outcome);
      } catch (const StoreError& e) {
        s.lose_journal(e);
      }
    }
    s.note_outcome(outcome.type, outcome.index, outcome.attempt, outcome.flags);
    if (s.size > 1) {
      s.poll();
    } else {
      if (!s.journal_broken) {
        try {
          s.journal->sync();
        } catch (const StoreError& e) {
          s.lose_journal(e);
        }
      }
      s.commit_batches();
      if (s.progress) s.progress->update(s.summary.done, s.summary.failed_for_good);
      if (now - s.last_status >= kStatusEvery) s.write_status();
    }
    return;
  }
  append_record(s.outbox, outcome);
  if (outcome.type == RecordType::done) ++s.summary.done;
  if (outcome.type == RecordType::failed) ++s.summary.failed;
  if (outcome.flags & Outcome::kFinal) ++s.summary.failed_for_good;
  // Batched when tiny; an element that took a while is reported at once, as the next may too.
  if (s.outbox.size() >= kOutboxBytes || now - s.last_send >= kOutboxAge ||
      outcome.t_end - outcome.t_start >= kReportAtOnceNs)
    s.send_outbox();
}

RunSummary Run::finish() {
  auto& s = *state_;
  if (s.finished) return s.summary;
  WorkItem ignored;
  while (!s.over) {
    // Ending early (a break out of the loop): stop handing out, then meet the others.
    if (!s.stop_since) s.stop("the loop ended early");
    next(ignored);
  }
  s.finished = true;
  if (s.is_root()) {
    if (!s.journal_broken) {
      try {
        s.journal->flush();
      } catch (const StoreError& e) {
        s.lose_journal(e);
      }
    }
    if (s.journal_broken) s.journal->abandon();
    s.end_participation();
    s.summary.syncs = s.journal->syncs();
    if (s.progress) s.progress->finish(s.summary.done, s.summary.failed_for_good);
  }
  s.summary.seconds = std::chrono::duration<double>(Clock::now() - s.started).count();
  if (s.local) {
    auto lock = hdf5_lock();
    s.set.reset();
    return s.summary;
  }
  std::uint64_t stopped = s.summary.stopped ? 1 : 0;
  check_mpi(MPI_Bcast(&stopped, 1, MPI_UINT64_T, s.options.root, s.comm), "MPI_Bcast", s.rank);
  s.summary.stopped = s.summary.stopped || stopped;
  s.claimer.reset();  // collective: frees the windows
  s.bcomm.reset();
  check_mpi(MPI_Comm_free(&s.comm), "MPI_Comm_free", s.rank);
  return s.summary;
}

namespace detail {
std::int64_t unix_ns() { return posix::unix_time_ns(); }
}  // namespace detail

}  // namespace mpmux
