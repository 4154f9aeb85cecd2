#include "mpmux/run.hpp"

#include <unistd.h>

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/mpi/request.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "mpmux/error.hpp"
#include "mpmux/mpi.hpp"
#include "run/progress.hpp"
#include "store/fs.hpp"

namespace mpmux {

namespace {

namespace bmpi = boost::mpi;

constexpr int kTagOutcomes = 1;  // framed journal records
constexpr int kTagFinished = 2;  // a worker has nothing left

// Workers send what they recorded when this much is buffered or this long has passed, so
// tiny tasks are batched and long ones are reported at once.
constexpr std::size_t kOutboxBytes = 256 * 1024;
constexpr auto kOutboxAge = std::chrono::milliseconds(50);
constexpr std::size_t kMaxSendsInFlight = 16;
constexpr auto kStatusEvery = std::chrono::seconds(2);

using Clock = std::chrono::steady_clock;

std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

std::uint32_t read_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

enum class Failure : int { none = 0, usage = 1, store = 2, other = 3 };

}  // namespace

struct Run::State {
  RunOptions options;
  MPI_Comm comm = MPI_COMM_NULL;
  std::optional<bmpi::communicator> bcomm;
  int rank = 0, size = 1;
  bool works = true;
  MuxId id;
  std::string host = hostname();
  std::uint32_t pid = static_cast<std::uint32_t>(::getpid());
  std::unique_ptr<RmaClaimer> claimer;
  Claim chunk;
  std::size_t next_in_chunk = 0;
  bool exhausted = false;
  bool finished = false;
  RunSummary summary;

  // Worker side.
  std::string outbox;
  Clock::time_point last_send = Clock::now();
  std::deque<std::pair<bmpi::request, std::string>> sends;

  // Root side.
  std::optional<Session> session;
  std::optional<JournalWriter> journal;
  std::optional<run::Progress> progress;
  int finished_workers = 0;
  std::string inbox;
  Clock::time_point last_status = Clock::now();

  bool is_root() const { return rank == options.root; }
  int remote_workers() const { return size - 1; }

  void send_outbox();
  void reap_sends(bool all);
  bool poll();  // root: takes in what workers sent; true when something came
  void coordinate_until_workers_finish();
  void write_status(bool final);
  void count_records(std::string_view records);
};

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

void Run::State::count_records(std::string_view records) {
  // Frame: [u32 length][u32 crc][u8 type]...; length covers type..payload.
  std::size_t at = 0;
  while (at + 9 <= records.size()) {
    const std::uint32_t length = read_u32(records.data() + at);
    const auto type = static_cast<RecordType>(records[at + 8]);
    if (type == RecordType::done) ++summary.done;
    if (type == RecordType::failed) ++summary.failed;
    at += 8 + length;
  }
}

bool Run::State::poll() {
  bool got = false;
  while (auto status = bcomm->iprobe(bmpi::any_source, bmpi::any_tag)) {
    got = true;
    const int n = status->count<char>().value_or(0);
    inbox.resize(static_cast<std::size_t>(n));
    bcomm->recv(status->source(), status->tag(), inbox.data(), n);
    if (status->tag() == kTagOutcomes) {
      journal->append_framed(inbox);
      count_records(inbox);
    } else if (status->tag() == kTagFinished) {
      ++finished_workers;
    }
  }
  journal->sync();
  if (progress) progress->update(summary.done, summary.failed);
  if (Clock::now() - last_status >= kStatusEvery) write_status(false);
  return got;
}

void Run::State::coordinate_until_workers_finish() {
  // Rank 0 answers no claim; it only journals. It backs off when idle so that, on a node
  // with more ranks than cores, the workers get the CPU.
  auto idle = std::chrono::microseconds(20);
  while (finished_workers < remote_workers()) {
    if (poll()) {
      idle = std::chrono::microseconds(20);
    } else {
      std::this_thread::sleep_for(idle);
      idle = std::min<std::chrono::microseconds>(idle * 2, std::chrono::microseconds(2000));
    }
  }
  poll();
}

void Run::State::write_status(bool final) {
  last_status = Clock::now();
  const auto status_file = session->run_status_file();
  if (final) {
    std::error_code ignored;
    std::filesystem::remove(status_file, ignored);
    return;
  }
  const std::uint64_t claimed = std::min(claimer->claimed(), summary.handed_out);
  const std::uint64_t finished_here = summary.done + summary.failed;
  nlohmann::json j = {{"host", host},
                      {"pid", pid},
                      {"updated", std::chrono::duration_cast<std::chrono::seconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count()},
                      {"running", claimed > finished_here ? claimed - finished_here : 0}};
  // Advisory: atomic so a reader never sees half a file, but not fsynced, and a failure to
  // write it costs nothing but a stale `running` count.
  try {
    posix::write_file_atomic(status_file, j.dump() + "\n", 0644, /*durable=*/false);
  } catch (const StoreError&) {
  }
}

Run::Run(const MuxId& id, MPI_Comm comm, RunOptions options) : state_(std::make_unique<State>()) {
  auto& s = *state_;
  ensure_mpi();
  s.options = std::move(options);
  s.id = id;
  // A communicator of our own, so our messages never match the application's receives.
  MPI_Comm_dup(comm, &s.comm);
  s.bcomm.emplace(s.comm, bmpi::comm_attach);
  MPI_Comm_rank(s.comm, &s.rank);
  MPI_Comm_size(s.comm, &s.size);
  if (s.options.root < 0 || s.options.root >= s.size)
    throw UsageError("root rank " + std::to_string(s.options.root) + " is not in the communicator");
  s.works = s.size == 1 || !s.is_root() || s.options.root_works;
  const int workers = s.size - ((s.size > 1 && !s.options.root_works) ? 1 : 0);

  std::vector<std::uint64_t> pending;
  ElementBuffer elements;
  Failure failure = Failure::none;
  std::string message;
  if (s.is_root()) {
    try {
      s.session.emplace(Session::open(id));
      const SessionState state = read_session_state(*s.session, /*cut_torn_tails=*/true);
      pending = state.pending_indices(s.options.rerun_failed);
      ElementSet set = ElementSet::open(s.session->elements_file());
      if (s.options.validate) s.options.validate(set.info(), set.size() ? set.read(0) : std::string());
      elements = set.read_subset(pending);
      s.journal.emplace(*s.session, s.host, s.pid, s.options.commit_interval_s);
      s.summary.handed_out = pending.size();
    } catch (const UsageError& e) {
      failure = Failure::usage;
      message = e.what();
    } catch (const StoreError& e) {
      failure = Failure::store;
      message = e.what();
    } catch (const std::exception& e) {
      failure = Failure::other;
      message = e.what();
    }
  }
  int code = static_cast<int>(failure);
  MPI_Bcast(&code, 1, MPI_INT, s.options.root, s.comm);
  if (code != 0) {
    boost::mpi::broadcast(*s.bcomm, message, s.options.root);
    MPI_Comm_free(&s.comm);
    if (!s.is_root()) message = "rank " + std::to_string(s.options.root) + ": " + message;
    if (code == static_cast<int>(Failure::usage)) throw UsageError(message);
    if (code == static_cast<int>(Failure::store)) throw StoreError(message);
    throw Error(message);
  }
  s.claimer = std::make_unique<RmaClaimer>(s.comm, s.options.root, std::move(pending), std::move(elements),
                                           s.options.chunk, workers);
  if (s.is_root() && s.options.progress) s.progress.emplace(s.summary.handed_out, s.options.progress_interval_s);
  if (s.is_root()) s.write_status(false);
}

Run::~Run() {
  if (!state_ || state_->finished) return;
  try {
    finish();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpmux: ending the run: %s\n", e.what());
  }
}

bool Run::works() const { return state_->works; }
bool Run::is_root() const { return state_->is_root(); }
const MuxId& Run::id() const { return state_->id; }
const std::string& Run::host() const { return state_->host; }

bool Run::next(WorkItem& item) {
  auto& s = *state_;
  if (s.works && !s.exhausted) {
    if (s.next_in_chunk == s.chunk.size()) {
      if (s.is_root()) {
        if (s.size > 1) s.poll();
      } else {
        s.send_outbox();  // report before taking more, so nothing waits behind a long chunk
      }
      s.next_in_chunk = 0;
      if (!s.claimer->claim(s.chunk)) {
        s.chunk = Claim();
        s.exhausted = true;
      }
    }
    if (!s.exhausted) {
      item.index = s.chunk.indices[s.next_in_chunk];
      item.bytes = s.chunk.elements.at(s.next_in_chunk);
      ++s.next_in_chunk;
      return true;
    }
  }
  s.exhausted = true;
  if (s.is_root() && s.size > 1) s.coordinate_until_workers_finish();
  return false;
}

void Run::record(Outcome& outcome) {
  auto& s = *state_;
  outcome.worker = static_cast<std::uint32_t>(s.rank);
  if (outcome.host.empty()) outcome.host = s.host;
  if (outcome.pid == 0) outcome.pid = s.pid;
  if (s.is_root()) {
    s.journal->append(outcome);
    if (outcome.type == RecordType::done) ++s.summary.done;
    if (outcome.type == RecordType::failed) ++s.summary.failed;
    if (s.size > 1) {
      s.poll();
    } else {
      s.journal->sync();
      if (s.progress) s.progress->update(s.summary.done, s.summary.failed);
      if (Clock::now() - s.last_status >= kStatusEvery) s.write_status(false);
    }
    return;
  }
  append_record(s.outbox, outcome);
  if (outcome.type == RecordType::done) ++s.summary.done;
  if (outcome.type == RecordType::failed) ++s.summary.failed;
  if (s.outbox.size() >= kOutboxBytes || Clock::now() - s.last_send >= kOutboxAge) s.send_outbox();
}

RunSummary Run::finish() {
  auto& s = *state_;
  if (s.finished) return s.summary;
  s.finished = true;
  if (s.is_root()) {
    if (s.size > 1) s.coordinate_until_workers_finish();
    s.journal->flush();
    if (s.progress) s.progress->finish(s.summary.done, s.summary.failed);
    s.write_status(true);
  } else {
    s.send_outbox();
    s.sends.emplace_back(s.bcomm->isend(s.options.root, kTagFinished, s.outbox.data(), 0), std::string());
    s.reap_sends(true);
  }
  s.claimer.reset();  // collective: frees the windows
  s.bcomm.reset();
  MPI_Comm_free(&s.comm);
  return s.summary;
}

Stat session_stat(const Session& session) {
  const SessionState state = read_session_state(session);
  Stat st;
  st.total = session.total();
  st.done = state.done;
  st.failed = state.failed;
  const std::uint64_t open = st.total - std::min(st.total, st.done + st.failed);
  std::ifstream in(session.run_status_file());
  if (in) {
    const auto j = nlohmann::json::parse(in, nullptr, false);
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    // A status file not rewritten for 30 s belongs to a run that died.
    if (j.is_object() && j.value("updated", std::int64_t{0}) >= now - 30)
      st.running = std::min<std::uint64_t>(open, j.value("running", std::uint64_t{0}));
  }
  st.pending = open - st.running;
  return st;
}

}  // namespace mpmux

namespace mpmux::detail {
std::int64_t unix_ns() { return posix::unix_time_ns(); }
}  // namespace mpmux::detail
