#include "mpmux/rma_claimer.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "claim/rma_state.hpp"
#include "claim/transport.hpp"
#include "claim/window.hpp"
#include "mpmux/error.hpp"
#include "mpmux/mpi.hpp"

namespace mpmux {

using namespace claim::rma;

namespace {

using claim::Window;
using Creation = claim::Window::Creation;

constexpr const char* kNoSharedVariable = "MPMUX_RMA_NO_SHARED";
constexpr const char* kClaimVariable = "MPMUX_CLAIM";

enum class ClaimMode { automatic, two_sided, one_sided };

// The bad argument of this rank, if any. Checked before any collective call would hang on it.
struct ArgumentError {
  bool usage = false;  // user input (environment) rather than a caller's mistake
  std::string message;
};

std::optional<ArgumentError> validate(int rank, int root, const std::vector<std::uint64_t>& pending,
                                      const ElementBuffer& elements, const ChunkPolicy& policy, int workers,
                                      bool& no_shared, ClaimMode& mode) {
  auto fail = [&](std::string what) {
    return ArgumentError{false, "RmaClaimer at rank " + std::to_string(rank) + ": " + std::move(what)};
  };
  const char* env = std::getenv(kNoSharedVariable);
  const std::string value = env ? env : "";
  if (value != "" && value != "0" && value != "1") {
    return ArgumentError{true, std::string(kNoSharedVariable) + "=" + value + " at rank " +
                                   std::to_string(rank) + ": expected 0 or 1"};
  }
  no_shared = value == "1";
  const char* claim_env = std::getenv(kClaimVariable);
  const std::string claim = claim_env ? claim_env : "";
  if (claim == "" || claim == "auto") {
    mode = ClaimMode::automatic;
  } else if (claim == "two-sided") {
    mode = ClaimMode::two_sided;
  } else if (claim == "one-sided") {
    mode = ClaimMode::one_sided;
  } else {
    return ArgumentError{true, std::string(kClaimVariable) + "=" + claim + " at rank " +
                                   std::to_string(rank) + ": expected auto, one-sided or two-sided"};
  }
  if (workers < 1) return fail("workers = " + std::to_string(workers) + ", expected at least 1");
  if (policy.min < 1 || policy.max < policy.min) {
    return fail("chunk policy min = " + std::to_string(policy.min) + ", max = " + std::to_string(policy.max) +
                ", expected 1 <= min <= max");
  }
  if (rank != root) return std::nullopt;
  const auto& offsets = elements.offsets;
  if (offsets.empty() || offsets.size() != pending.size() + 1) {
    return fail(std::to_string(pending.size()) + " pending indices but " +
                std::to_string(offsets.empty() ? 0 : offsets.size() - 1) + " elements");
  }
  if (offsets.front() != 0 || offsets.back() != elements.data.size() ||
      !std::is_sorted(offsets.begin(), offsets.end())) {
    return fail("element offsets do not describe the " + std::to_string(elements.data.size()) +
                " data bytes");
  }
  return std::nullopt;
}

}  // namespace

namespace {

// What was tried for one window and failed, for the path report and the error of one-sided mode.
struct Failures {
  std::string text;
  void add(std::string what) { text += (text.empty() ? "" : "; ") + std::move(what); }
};

// Info keys that tell the MPI what a window is used for: only this claimer's own accesses, no
// ordering between them (every access is flushed on its own).
class WindowInfo {
 public:
  explicit WindowInfo(bool atomics) {
    if (MPI_Info_create(&info_) != MPI_SUCCESS) {
      info_ = MPI_INFO_NULL;
      return;
    }
    MPI_Info_set(info_, "accumulate_ordering", "none");
    MPI_Info_set(info_, "same_disp_unit", "true");
    if (!atomics) MPI_Info_set(info_, "accumulate_ops", "same_op");
  }
  ~WindowInfo() {
    if (info_ != MPI_INFO_NULL) MPI_Info_free(&info_);
  }
  WindowInfo(const WindowInfo&) = delete;
  WindowInfo& operator=(const WindowInfo&) = delete;
  MPI_Info get() const { return info_; }

 private:
  MPI_Info info_ = MPI_INFO_NULL;
};

// The first of `ways` that every rank of `comm` made; an empty Window when none. Creation is
// collective, so all ranks agree on each outcome before trying the next way.
Window first_window_that_works(MPI_Comm comm, const std::vector<Creation>& ways, void* memory, MPI_Aint bytes,
                               int disp_unit, bool atomics, const std::string& name, Failures& failures) {
  const WindowInfo info(atomics);
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  for (Creation how : ways) {
    const bool caller_memory = how == Creation::create || how == Creation::dynamic;
    int rc = MPI_SUCCESS;
    Window attempt = Window::try_make(how, comm, caller_memory ? memory : nullptr, bytes,
                                      how == Creation::dynamic ? 1 : disp_unit, info.get(), name, rc);
    int made = rc == MPI_SUCCESS ? 1 : 0;
    check(MPI_Allreduce(MPI_IN_PLACE, &made, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce", rank, size);
    if (made) return attempt;
    failures.add(rc != MPI_SUCCESS ? attempt.creation_failure(how, bytes, rc)
                                   : std::string(Window::call_name(how)) + " on window '" + name +
                                         "' failed on another rank");
  }
  return Window();
}

// The root's address of a dynamic window's memory (its displacements), 0 for other windows.
MPI_Aint root_displacement(const Window& w, MPI_Comm comm, int root, int rank, int size) {
  if (!w || w.creation() != Creation::dynamic) return 0;
  MPI_Aint address = 0;
  if (rank == root) check(MPI_Get_address(w.base(), &address), "MPI_Get_address", rank, size);
  check(MPI_Bcast(&address, 1, MPI_AINT, root, comm), "MPI_Bcast", rank, size);
  return address;
}

WindowPath path_of(const Window& w, std::string window, const Failures& failures) {
  const char* call = Window::call_name(w.creation());
  WindowPath p{std::move(window), w.component().empty() ? call : w.component(), call};
  if (!failures.text.empty()) p.detail += " (after: " + failures.text + ")";
  return p;
}

// The one line of MPMUX_CLAIM=one-sided when a window has no one-sided way.
[[noreturn]] void no_one_sided_path(const std::string& window, const Failures& failures) {
  throw ClaimError("no one-sided path for window '" + window + "' over " + claim::transport_description() +
                   ": " + failures.text + "; " + claim::one_sided_remedy() +
                   ", or unset MPMUX_CLAIM for the two-sided fallback");
}

}  // namespace

RmaClaimer::RmaClaimer(MPI_Comm comm, int root, std::vector<std::uint64_t> pending, ElementBuffer elements,
                       ChunkPolicy policy, int workers, HandOut handout)
    : state_(std::make_unique<State>()) {
  ensure_mpi();
  int size = 0;
  int rank = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  if (root < 0 || root >= size) {
    throw ClaimError("RmaClaimer at rank " + std::to_string(rank) + ": root " + std::to_string(root) +
                     " is not a rank of the communicator of size " + std::to_string(size));
  }
  State& s = *state_;
  s.rank = rank;
  s.size = size;

  // A private duplicate: our collectives and messages never match the caller's, and it returns errors.
  Communicator& own = s.own;
  check(MPI_Comm_dup(comm, own.out()), "MPI_Comm_dup", rank, size);
  check(MPI_Comm_set_errhandler(own.get(), MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", rank, size);

  bool no_shared = false;
  ClaimMode mode = ClaimMode::automatic;
  const auto error = validate(rank, root, pending, elements, policy, workers, no_shared, mode);
  // One reduction tells every rank whether someone's arguments are bad, the count, the size,
  // whether some rank asks for the two-sided path or forbids it, and which hand-outs were asked for.
  const bool open = handout == HandOut::published;
  std::uint64_t facts[7] = {error ? static_cast<std::uint64_t>(rank) + 1 : 0,
                            rank == root ? pending.size() : 0,
                            rank == root ? elements.data.size() : 0,
                            mode == ClaimMode::two_sided ? 1u : 0u,
                            mode == ClaimMode::one_sided ? 1u : 0u,
                            open ? 1u : 0u,
                            open ? 0u : 1u};
  check(MPI_Allreduce(MPI_IN_PLACE, facts, 7, MPI_UINT64_T, MPI_MAX, own.get()), "MPI_Allreduce", rank, size);
  if (error) {
    if (error->usage) throw UsageError(error->message);
    throw ClaimError(error->message);
  }
  if (facts[0] != 0) {
    throw ClaimError("RmaClaimer at rank " + std::to_string(rank) + ": rank " + std::to_string(facts[0] - 1) +
                     " passed invalid arguments (see its error)");
  }
  if (facts[5] != 0 && facts[6] != 0) {
    throw ClaimError("RmaClaimer at rank " + std::to_string(rank) +
                     ": the ranks disagree on the hand-out (some published, some all at once)");
  }
  const bool force_two_sided = facts[3] != 0;
  const bool one_sided_only = facts[4] != 0 && !force_two_sided;

  s.root = root;
  s.workers = static_cast<std::uint64_t>(workers);
  s.policy = policy;
  s.handout = handout;
  s.total = facts[1];
  s.data_bytes = facts[2];
  s.slots_disp = static_cast<MPI_Aint>((s.total + 1) * sizeof(Entry));
  s.data_disp = s.slots_disp + static_cast<MPI_Aint>(open ? s.total * kWord : 0);
  const MPI_Aint region = s.data_disp + static_cast<MPI_Aint>(s.data_bytes);
  const bool is_root = rank == root;
  // The counter, and with an open hand-out the limit word right after it.
  const MPI_Aint counter_bytes = static_cast<MPI_Aint>(open ? 2 * kWord : kWord);

  Communicator node;
  check(MPI_Comm_split_type(own.get(), MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, node.out()),
        "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)", rank, size);
  check(MPI_Comm_set_errhandler(node.get(), MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", rank, size);
  int root_in_node = MPI_UNDEFINED;
  {
    MPI_Group all = MPI_GROUP_NULL;
    MPI_Group local = MPI_GROUP_NULL;
    check(MPI_Comm_group(own.get(), &all), "MPI_Comm_group", rank, size);
    check(MPI_Comm_group(node.get(), &local), "MPI_Comm_group", rank, size);
    const int rc = MPI_Group_translate_ranks(all, 1, &root, local, &root_in_node);
    MPI_Group_free(&local);
    MPI_Group_free(&all);
    check(rc, "MPI_Group_translate_ranks", rank, size);
  }
  int node_size = 0;
  check(MPI_Comm_size(node.get(), &node_size), "MPI_Comm_size", rank, size);

  // The counter. Within one node it is osc/sm memory: Open MPI 4.1's osc/rdma names its backing
  // file after the communicator id, which disjoint communicators share, so claimers on two halves
  // of a split would corrupt each other's state (open-mpi/ompi#9492, fixed in 5.0). osc/sm is also
  // the faster of the two here.
  Failures counter_failures;
  if (!force_two_sided) {
    std::vector<Creation> ways = {Creation::allocate, Creation::create, Creation::dynamic};
    if (node_size == size) ways.insert(ways.begin(), Creation::allocate_shared);
    s.counter = first_window_that_works(own.get(), ways, is_root ? s.counter_words : nullptr,
                                        is_root ? counter_bytes : 0, static_cast<int>(kWord),
                                        /*atomics=*/true, "counter", counter_failures);
    if (!s.counter && one_sided_only) no_one_sided_path("counter", counter_failures);
  }
  s.counter_by_message = !s.counter;
  s.counter_disp = root_displacement(s.counter, own.get(), root, rank, size);
  // Dynamic windows count displacements in bytes, the others in words.
  s.limit_disp = s.counter_disp +
                 static_cast<MPI_Aint>(s.counter && s.counter.creation() == Creation::dynamic ? kWord : 1);

  // The region: in the root node's shared memory (only the root's node makes that window), else
  // in the root's heap.
  char* base = nullptr;
  Failures shared_failures;
  if (!s.counter_by_message && root_in_node != MPI_UNDEFINED) {
    s.shared =
        first_window_that_works(node.get(), {Creation::allocate_shared}, nullptr, is_root ? region : 0, 1,
                                /*atomics=*/false, "elements (node-shared)", shared_failures);
    if (s.shared) {
      s.shared.lock_all();
      base = static_cast<char*>(s.shared.shared_query(root_in_node).base);
    }
  }
  if (is_root) {
    if (base == nullptr) {
      s.region_memory.resize(static_cast<std::size_t>(region));
      base = s.region_memory.data();
    }
    auto* table = reinterpret_cast<Entry*>(base);
    for (std::uint64_t k = 0; k <= s.total; ++k)
      table[k] = Entry{k < s.total ? pending[k] : 0, elements.offsets[k]};
    if (s.data_bytes > 0) std::memcpy(base + s.data_disp, elements.data.data(), s.data_bytes);
    if (open) {
      s.root_slots = reinterpret_cast<std::uint64_t*>(base + s.slots_disp);
      std::fill_n(s.root_slots, s.total, kUnwrittenSlot);
      s.is_published.assign(s.total, false);
      s.held_for.resize(static_cast<std::size_t>(size));
      s.held_back.assign(static_cast<std::size_t>(size), false);
    }
    if (s.shared) s.shared.sync();
  }
  // The window holds the only copy from here on.
  std::vector<std::uint64_t>().swap(pending);
  std::string().swap(elements.data);
  std::vector<std::uint64_t>().swap(elements.offsets);
  const bool read_local = is_root || (s.shared && !no_shared);

  int need_remote = read_local || s.counter_by_message ? 0 : 1;
  check(MPI_Allreduce(MPI_IN_PLACE, &need_remote, 1, MPI_INT, MPI_MAX, own.get()), "MPI_Allreduce", rank,
        size);
  bool remote_by_message = false;
  Failures remote_failures;
  if (need_remote) {
    if (!force_two_sided) {
      s.remote = first_window_that_works(own.get(), {Creation::create, Creation::dynamic},
                                         is_root ? base : nullptr, is_root ? region : 0, 1, /*atomics=*/false,
                                         "elements (remote)", remote_failures);
      if (!s.remote && one_sided_only) no_one_sided_path("elements (remote)", remote_failures);
    }
    remote_by_message = !s.remote;
    if (s.remote) s.remote.lock_all();
    s.remote_base = root_displacement(s.remote, own.get(), root, rank, size);
  }
  s.by_message = !is_root && (s.counter_by_message || (!read_local && remote_by_message));
  int message_claimers = s.by_message ? 1 : 0;
  check(MPI_Allreduce(MPI_IN_PLACE, &message_claimers, 1, MPI_INT, MPI_SUM, own.get()), "MPI_Allreduce", rank,
        size);
  s.message_claimers = message_claimers;

  if (s.counter) {
    if (is_root) std::fill_n(static_cast<std::uint64_t*>(s.counter.base()), open ? 2 : 1, std::uint64_t{0});
    s.counter.lock_all();
    if (is_root) s.counter.sync();
  }

  const std::string forced = force_two_sided ? "MPMUX_CLAIM=two-sided" : "";
  if (s.counter_by_message) {
    const std::string why = forced.empty() ? "no one-sided way: " + counter_failures.text : forced;
    s.paths = {{"counter", "two-sided", why}, {"elements", "two-sided", why}};
  } else {
    s.paths.push_back(path_of(s.counter, "counter", counter_failures));
    if (s.shared) s.paths.push_back(path_of(s.shared, "elements (node-shared)", shared_failures));
    if (need_remote && s.remote) s.paths.push_back(path_of(s.remote, "elements (remote)", remote_failures));
    if (need_remote && !s.remote) {
      std::string why = forced.empty() ? "no one-sided way: " + remote_failures.text : forced;
      if (!shared_failures.text.empty()) why += "; " + shared_failures.text;
      s.paths.push_back({"elements (remote)", "two-sided", why});
    }
  }

  // After the barrier the root's stores to the counter and the region are visible to all.
  check(MPI_Barrier(own.get()), "MPI_Barrier", rank, size);
  if (read_local) {
    if (s.shared) s.shared.sync();
    s.table = reinterpret_cast<const Entry*>(base);
    if (open) s.slots = reinterpret_cast<const std::uint64_t*>(base + s.slots_disp);
    s.data = base + s.data_disp;
  }
}

RmaClaimer::~RmaClaimer() {
  if (!state_ || !claim::mpi_is_live()) return;
  try {
    release();
  } catch (const std::exception& e) {
    // Destructors only log: throwing here would terminate during unwinding.
    std::fprintf(stderr, "mpmux: releasing the claimer: %s\n", e.what());
  }
}

std::uint64_t RmaClaimer::State::guided_count() const {
  // An open hand-out shares out what is published and not yet claimed, as far as this rank knows.
  const std::uint64_t known = open() ? std::min(last_limit & kCountMask, total) : total;
  const std::uint64_t remaining = known > last_seen ? known - last_seen : 0;
  const std::uint64_t share = (remaining + 2 * workers - 1) / (2 * workers);
  return std::clamp(share, policy.min, policy.max);
}

bool RmaClaimer::claim(Claim& out) {
  State& s = *state_;
  if (!s.open()) return s.take(s.guided_count(), out);
  return s.claim_blocking(0, out) == ClaimStatus::claimed;
}

bool RmaClaimer::claim_n(std::uint64_t count, Claim& out) {
  if (count < 1) throw ClaimError("RmaClaimer::claim_n: count = 0, expected at least 1");
  State& s = *state_;
  if (!s.open()) return s.take(count, out);
  return s.claim_blocking(count, out) == ClaimStatus::claimed;
}

ClaimStatus RmaClaimer::try_claim(Claim& out) {
  State& s = *state_;
  if (!s.open()) return s.take(s.guided_count(), out) ? ClaimStatus::claimed : ClaimStatus::ended;
  return s.take_published(0, out, /*block=*/false);
}

void RmaClaimer::publish(const std::vector<std::uint64_t>& positions) {
  State& s = *state_;
  s.require_open_root("publish");
  if (s.closed) throw ClaimError("RmaClaimer::publish: the hand-out was closed");
  // Every position is checked before any is published, so a bad one publishes nothing.
  for (std::size_t i = 0; i < positions.size(); ++i) {
    const std::uint64_t p = positions[i];
    const bool bad = p >= s.total || s.is_published[p];
    if (!bad) {
      s.is_published[p] = true;
      continue;
    }
    for (std::size_t k = 0; k < i; ++k) s.is_published[positions[k]] = false;
    throw ClaimError(
        "RmaClaimer::publish: position " + std::to_string(p) +
        (p >= s.total ? " is not below total " + std::to_string(s.total) : " was published before"));
  }
  if (positions.empty()) return;
  // The slots first, made visible to the node's loads and to remote Gets, and only then the limit.
  std::copy(positions.begin(), positions.end(), s.root_slots + s.published);
  if (s.shared) s.shared.sync();
  if (s.remote) s.remote.sync();
  s.published += positions.size();
  s.limit_op(positions.size(), MPI_SUM);
  s.answer_all_held_back();
}

void RmaClaimer::close() {
  State& s = *state_;
  s.require_open_root("close");
  if (s.closed) return;
  s.closed = true;
  s.limit_op(kClosedBit, MPI_BOR);
  s.answer_all_held_back();
}

std::uint64_t RmaClaimer::published() const {
  const State& s = *state_;
  if (!s.open()) return s.total;
  return s.rank == s.root ? s.published : s.last_limit & kCountMask;
}

std::uint64_t RmaClaimer::claimed() const {
  State& s = *state_;
  if (s.by_message) return s.request(kRead, 0);
  return s.claimed_so_far();
}

std::uint64_t RmaClaimer::total() const { return state_->total; }

void RmaClaimer::exhaust() {
  State& s = *state_;
  if (s.by_message) {
    s.request(kExhaust, 0);
  } else {
    s.counter_op(kExhaustedMark, MPI_MAX);
    // The ranks that wait for a publish read only the limit word: the bit there ends them.
    if (s.open()) s.limit_op(kExhaustedBit, MPI_BOR);
    s.answer_all_held_back();
  }
  s.last_seen = std::max(s.last_seen, s.total);
  s.held = Tickets();
}

bool RmaClaimer::exhausted() const { return claimed() >= kExhaustedMark; }

bool RmaClaimer::reads_shared_memory() const { return state_->table != nullptr; }

bool RmaClaimer::serves_requests() const { return state_->message_claimers > 0; }

const std::vector<WindowPath>& RmaClaimer::paths() const { return state_->paths; }

std::size_t RmaClaimer::serve() { return state_->serve_waiting(); }

void RmaClaimer::State::require_open_root(const char* what) const {
  if (!open()) throw ClaimError(std::string("RmaClaimer::") + what + ": the claimer hands out all at once");
  if (rank != root) {
    throw ClaimError(std::string("RmaClaimer::") + what + " at rank " + std::to_string(rank) +
                     ": only the root (rank " + std::to_string(root) + ") publishes");
  }
}

void RmaClaimer::release() {
  State& s = *state_;
  if (s.released) return;
  // The root alone publishes: once it is done claiming, the ranks waiting for more must end.
  if (s.open() && s.rank == s.root) close();
  s.released = true;
  s.last_seen = std::max(s.last_seen, s.total);
  s.held = Tickets();
  if (s.by_message) {
    const std::uint64_t request[2] = {kRelease, 0};
    s.check(MPI_Send(request, 2, MPI_UINT64_T, s.root, kRequestTag, s.own.get()), "MPI_Send");
    // The root answers a take it holds back when this release reaches it, if not before.
    if (s.take_outstanding) s.receive_reply(kTakeReplyTag);
    s.take_outstanding = false;
  }
  if (s.rank == s.root) {
    // Blocking receives: the root has nothing else to do until every rank is done claiming.
    while (s.releases < s.message_claimers) {
      std::uint64_t request[2] = {0, 0};
      MPI_Status status;
      s.check(MPI_Recv(request, 2, MPI_UINT64_T, MPI_ANY_SOURCE, kRequestTag, s.own.get(), &status),
              "MPI_Recv");
      s.answer(status.MPI_SOURCE, request);
    }
  }
  s.check(MPI_Barrier(s.own.get()), "MPI_Barrier");
}

// The root's own access to the counter: through its window when there is one, so that it stays
// atomic with the other ranks' one-sided claims.
std::uint64_t RmaClaimer::State::counter_op(std::uint64_t operand, MPI_Op op) {
  if (counter_by_message) {
    const std::uint64_t old = local_counter;
    if (op == MPI_SUM) local_counter += operand;
    if (op == MPI_MAX) local_counter = std::max(local_counter, operand);
    return old;
  }
  std::uint64_t old = 0;
  counter.fetch_and_op(&operand, &old, MPI_UINT64_T, root, counter_disp, op);
  counter.flush(root);
  return old;
}

// The limit word beside the counter, the same way (only the root touches it without a window).
std::uint64_t RmaClaimer::State::limit_op(std::uint64_t operand, MPI_Op op) {
  if (counter_by_message) {
    const std::uint64_t old = local_limit;
    if (op == MPI_SUM) local_limit += operand;
    if (op == MPI_BOR) local_limit |= operand;
    return old;
  }
  std::uint64_t old = 0;
  counter.fetch_and_op(&operand, &old, MPI_UINT64_T, root, limit_disp, op);
  counter.flush(root);
  return old;
}

std::uint64_t RmaClaimer::State::read_limit() {
  last_limit = limit_op(0, MPI_NO_OP);
  // The slots below the limit were written before it was raised: our loads of them come after.
  if (shared && rank != root) shared.sync();
  return last_limit;
}

std::uint64_t RmaClaimer::State::claimed_so_far() {
  const std::uint64_t tickets = counter_op(0, MPI_NO_OP);
  if (!open() || tickets >= kExhaustedMark) return tickets;
  return std::min(tickets, rank == root ? published : read_limit() & kCountMask);
}

bool RmaClaimer::State::take(std::uint64_t count, Claim& out) {
  if (last_seen >= total) {
    clear(out);
    return false;
  }
  // Never add more than total: failed claims then cannot wrap the counter around.
  count = std::min(count, total);
  if (by_message) return take_by_message(count, out, /*block=*/true) == ClaimStatus::claimed;
  std::uint64_t first = 0;
  if (counter_by_message || message_claimers > 0) {
    // The root of a two-sided claimer answers the others before it takes for itself.
    serve_waiting();
    first = counter_op(count, MPI_SUM);
  } else {
    counter.fetch_and_op(&count, &first, MPI_UINT64_T, root, counter_disp, MPI_SUM);
    counter.flush(root);
  }
  last_seen = std::max(last_seen, saturating_add(first, count));
  if (first >= total) {
    clear(out);
    return false;
  }
  const std::uint64_t last = std::min(first + count, total);
  if (table != nullptr) {
    read_local(first, last, out);
  } else {
    read_remote(first, last, out);
  }
  return true;
}

void RmaClaimer::State::read_local(std::uint64_t first, std::uint64_t last, Claim& out) const {
  const std::size_t n = last - first;
  const auto [begin, bytes] = chunk_index(table + first, n, out);
  out.elements.data.assign(data + begin, bytes);
}

// One round trip for the bytes, and one more for the chunk's entries when the last block read
// does not hold them.
void RmaClaimer::State::read_remote(std::uint64_t first, std::uint64_t last, Claim& out) {
  const std::size_t n = last - first;
  const auto [begin, bytes] = chunk_index(remote_entries(first, n + 1), n, out);
  out.elements.data.resize(bytes);
  if (bytes > 0) {
    remote.get_bytes(out.elements.data.data(), bytes, root,
                     remote_base + data_disp + static_cast<MPI_Aint>(begin));
    remote.flush(root);
  }
}

// Entries [first, first + count) of the root's table: from the copy of the last block read, else
// read now with the block that starts there.
const Entry* RmaClaimer::State::remote_entries(std::uint64_t first, std::uint64_t count) {
  if (first < entry_cache_first || first + count > entry_cache_first + entry_cache.size()) {
    const std::uint64_t n = std::min(std::max(count, kEntryBlock), total + 1 - first);
    entry_cache.resize(n);
    remote.get_bytes(entry_cache.data(), n * sizeof(Entry), root,
                     remote_base + static_cast<MPI_Aint>(first * sizeof(Entry)));
    remote.flush(root);
    entry_cache_first = first;
  }
  return entry_cache.data() + (first - entry_cache_first);
}

}  // namespace mpmux
