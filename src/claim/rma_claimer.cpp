#include "mpmux/rma_claimer.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "claim/transport.hpp"
#include "claim/window.hpp"
#include "mpmux/error.hpp"
#include "mpmux/mpi.hpp"

namespace mpmux {

namespace {

using claim::Window;
using Creation = claim::Window::Creation;

constexpr std::uint64_t kWord = sizeof(std::uint64_t);

// Position k of the region's table: the element index pending[k] and where its bytes start in
// data (entry total holds the end). One table instead of two arrays saves a Get per remote claim.
struct Entry {
  std::uint64_t index;
  std::uint64_t offset;
};
static_assert(sizeof(Entry) == 2 * kWord);

// A chunk's indices and offsets (from its first byte) out of its n + 1 table entries; returns
// the chunk's first byte and its size.
std::pair<std::uint64_t, std::uint64_t> chunk_index(const Entry* entries, std::size_t n, Claim& out) {
  const std::uint64_t begin = entries[0].offset;
  out.indices.resize(n);
  out.elements.offsets.resize(n + 1);
  for (std::size_t i = 0; i < n; ++i) {
    out.indices[i] = entries[i].index;
    out.elements.offsets[i] = entries[i].offset - begin;
  }
  out.elements.offsets[n] = entries[n].offset - begin;
  return {begin, entries[n].offset - begin};
}
constexpr const char* kNoSharedVariable = "MPMUX_RMA_NO_SHARED";
constexpr const char* kClaimVariable = "MPMUX_CLAIM";

enum class ClaimMode { automatic, two_sided, one_sided };

// The two-sided service: a request is {op, count} (uint64); a take is answered with {first}
// followed, when first < total, by the chunk's n + 1 table entries and its bytes.
constexpr int kRequestTag = 1;
constexpr int kReplyTag = 2;
enum Op : std::uint64_t { kTake = 1, kRead = 2, kExhaust = 3, kRelease = 4 };

// A communicator this file created; freed on scope exit.
class Communicator {
 public:
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator() {
    if (comm_ != MPI_COMM_NULL && claim::mpi_is_live()) MPI_Comm_free(&comm_);
  }
  MPI_Comm get() const { return comm_; }
  MPI_Comm* out() { return &comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

void check(int rc, const char* call, int rank, int size) {
  if (rc != MPI_SUCCESS) {
    throw ClaimError(std::string("RmaClaimer: ") + call + " at rank " + std::to_string(rank) + " of " +
                     std::to_string(size) + " failed: " + claim::mpi_error_text(rc));
  }
}

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

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
  return a > std::numeric_limits<std::uint64_t>::max() - b ? std::numeric_limits<std::uint64_t>::max()
                                                           : a + b;
}

void clear(Claim& out) {
  out.indices.clear();
  out.elements.data.clear();
  out.elements.offsets.assign(1, 0);
}

}  // namespace

struct RmaClaimer::State {
  int root = 0;
  int rank = 0;
  int size = 1;
  std::uint64_t workers = 1;
  ChunkPolicy policy;
  std::uint64_t total = 0;
  std::uint64_t data_bytes = 0;
  // Largest counter value this rank knows of: the guided chunk is computed from it, and once it
  // reaches total, claims fail without touching the counter.
  std::uint64_t last_seen = 0;

  // Region layout (bytes): Entry table[total + 1] | data[data_bytes].
  MPI_Aint data_disp = 0;
  // Displacements at the root: 0, or the root's addresses in dynamic windows.
  MPI_Aint counter_disp = 0;
  MPI_Aint remote_base = 0;

  // Set when this rank reads the region directly (the root, and ranks sharing its node).
  const Entry* table = nullptr;
  const char* data = nullptr;
  std::vector<Entry> scratch;  // the remote path's copy of a chunk's entries

  // Two-sided paths. counter_by_message: the counter is root memory that only the root touches.
  bool counter_by_message = false;
  bool by_message = false;   // this rank claims by request and reply
  int message_claimers = 0;  // ranks that claim by message (root: how many releases to await)
  int releases = 0;          // root: releases received
  bool released = false;
  std::uint64_t local_counter = 0;  // root, when counter_by_message
  std::uint64_t counter_word = 0;   // root: the counter's memory for MPI_Win_create / dynamic windows
  std::vector<char> region_memory;  // root: the region when no node-shared window holds it
  std::vector<char> reply;
  std::vector<WindowPath> paths;

  Communicator own;  // private duplicate of the caller's communicator; returns errors

  // Declaration order is the (collective) free order reversed: remote refers to the shared memory.
  Window counter;
  Window shared;
  Window remote;

  bool take(std::uint64_t count, Claim& out);
  bool take_by_message(std::uint64_t count, Claim& out);
  void read_local(std::uint64_t first, std::uint64_t last, Claim& out) const;
  void read_remote(std::uint64_t first, std::uint64_t last, Claim& out);
  std::uint64_t counter_op(std::uint64_t operand, MPI_Op op);
  std::uint64_t request(Op op, std::uint64_t count);
  std::size_t serve_waiting();
  void answer(int source, const std::uint64_t (&request)[2]);
  void check(int rc, const char* call) const { mpmux::check(rc, call, rank, size); }
};

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
                       ChunkPolicy policy, int workers)
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
  // One reduction tells every rank whether someone's arguments are bad, the count, the size, and
  // whether some rank asks for the two-sided path or forbids it.
  std::uint64_t facts[5] = {error ? static_cast<std::uint64_t>(rank) + 1 : 0,
                            rank == root ? pending.size() : 0, rank == root ? elements.data.size() : 0,
                            mode == ClaimMode::two_sided ? 1u : 0u, mode == ClaimMode::one_sided ? 1u : 0u};
  check(MPI_Allreduce(MPI_IN_PLACE, facts, 5, MPI_UINT64_T, MPI_MAX, own.get()), "MPI_Allreduce", rank, size);
  if (error) {
    if (error->usage) throw UsageError(error->message);
    throw ClaimError(error->message);
  }
  if (facts[0] != 0) {
    throw ClaimError("RmaClaimer at rank " + std::to_string(rank) + ": rank " + std::to_string(facts[0] - 1) +
                     " passed invalid arguments (see its error)");
  }
  const bool force_two_sided = facts[3] != 0;
  const bool one_sided_only = facts[4] != 0 && !force_two_sided;

  s.root = root;
  s.workers = static_cast<std::uint64_t>(workers);
  s.policy = policy;
  s.total = facts[1];
  s.data_bytes = facts[2];
  s.data_disp = static_cast<MPI_Aint>((s.total + 1) * sizeof(Entry));
  const MPI_Aint region = s.data_disp + static_cast<MPI_Aint>(s.data_bytes);
  const bool is_root = rank == root;

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
    s.counter = first_window_that_works(own.get(), ways, is_root ? &s.counter_word : nullptr,
                                        is_root ? static_cast<MPI_Aint>(kWord) : 0, static_cast<int>(kWord),
                                        /*atomics=*/true, "counter", counter_failures);
    if (!s.counter && one_sided_only) no_one_sided_path("counter", counter_failures);
  }
  s.counter_by_message = !s.counter;
  s.counter_disp = root_displacement(s.counter, own.get(), root, rank, size);

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
    if (is_root) *static_cast<std::uint64_t*>(s.counter.base()) = 0;
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

bool RmaClaimer::claim(Claim& out) {
  State& s = *state_;
  const std::uint64_t remaining = s.total > s.last_seen ? s.total - s.last_seen : 0;
  const std::uint64_t share = (remaining + 2 * s.workers - 1) / (2 * s.workers);
  return s.take(std::clamp(share, s.policy.min, s.policy.max), out);
}

bool RmaClaimer::claim_n(std::uint64_t count, Claim& out) {
  if (count < 1) throw ClaimError("RmaClaimer::claim_n: count = 0, expected at least 1");
  return state_->take(count, out);
}

std::uint64_t RmaClaimer::claimed() const {
  State& s = *state_;
  if (s.by_message) return s.request(kRead, 0);
  return s.counter_op(0, MPI_NO_OP);
}

std::uint64_t RmaClaimer::total() const { return state_->total; }

// A counter at or past this mark was ended early; claims alone never take it that far.
constexpr std::uint64_t kExhaustedMark = std::uint64_t{1} << 62;

void RmaClaimer::exhaust() {
  State& s = *state_;
  if (s.by_message) {
    s.request(kExhaust, 0);
  } else {
    s.counter_op(kExhaustedMark, MPI_MAX);
  }
  s.last_seen = std::max(s.last_seen, s.total);
}

bool RmaClaimer::exhausted() const { return claimed() >= kExhaustedMark; }

bool RmaClaimer::reads_shared_memory() const { return state_->table != nullptr; }

bool RmaClaimer::serves_requests() const { return state_->message_claimers > 0; }

const std::vector<WindowPath>& RmaClaimer::paths() const { return state_->paths; }

std::size_t RmaClaimer::serve() { return state_->serve_waiting(); }

std::size_t RmaClaimer::State::serve_waiting() {
  if (rank != root || message_claimers == 0) return 0;
  std::size_t answered = 0;
  for (;;) {
    int arrived = 0;
    MPI_Status status;
    check(MPI_Iprobe(MPI_ANY_SOURCE, kRequestTag, own.get(), &arrived, &status), "MPI_Iprobe");
    if (!arrived) return answered;
    std::uint64_t message[2] = {0, 0};
    check(MPI_Recv(message, 2, MPI_UINT64_T, status.MPI_SOURCE, kRequestTag, own.get(), MPI_STATUS_IGNORE),
          "MPI_Recv");
    answer(status.MPI_SOURCE, message);
    ++answered;
  }
}

void RmaClaimer::release() {
  State& s = *state_;
  if (s.released) return;
  s.released = true;
  s.last_seen = std::max(s.last_seen, s.total);
  if (s.by_message) {
    const std::uint64_t request[2] = {kRelease, 0};
    s.check(MPI_Send(request, 2, MPI_UINT64_T, s.root, kRequestTag, s.own.get()), "MPI_Send");
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

std::uint64_t RmaClaimer::State::request(Op op, std::uint64_t count) {
  if (released) throw ClaimError("RmaClaimer at rank " + std::to_string(rank) + ": used after release()");
  const std::uint64_t message[2] = {op, count};
  check(MPI_Send(message, 2, MPI_UINT64_T, root, kRequestTag, own.get()), "MPI_Send");
  MPI_Status status;
  check(MPI_Probe(root, kReplyTag, own.get(), &status), "MPI_Probe");
  int bytes = 0;
  check(MPI_Get_count(&status, MPI_BYTE, &bytes), "MPI_Get_count");
  reply.resize(static_cast<std::size_t>(bytes));
  check(MPI_Recv(reply.data(), bytes, MPI_BYTE, root, kReplyTag, own.get(), MPI_STATUS_IGNORE), "MPI_Recv");
  if (reply.size() < kWord) throw ClaimError("RmaClaimer: a reply of the root is shorter than its header");
  std::uint64_t first = 0;
  std::memcpy(&first, reply.data(), kWord);
  return first;
}

void RmaClaimer::State::answer(int source, const std::uint64_t (&message)[2]) {
  const auto op = static_cast<Op>(message[0]);
  if (op == kRelease) {
    ++releases;
    return;
  }
  std::uint64_t value = 0;
  reply.resize(kWord);
  if (op == kTake) {
    const std::uint64_t count = std::min(message[1], total);
    value = counter_op(count, MPI_SUM);
    if (value < total) {
      const std::uint64_t last = std::min(value + count, total);
      const std::size_t entries = (last - value + 1) * sizeof(Entry);
      const std::uint64_t begin = table[value].offset;
      const std::uint64_t bytes = table[last].offset - begin;
      if (kWord + entries + bytes > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) {
        throw ClaimError("RmaClaimer: a chunk of " + std::to_string(last - value) + " elements holds " +
                         std::to_string(bytes) +
                         " bytes, too many for one reply of the two-sided path; "
                         "lower the largest chunk (--chunk-max)");
      }
      reply.resize(kWord + entries + bytes);
      std::memcpy(reply.data() + kWord, table + value, entries);
      if (bytes > 0) std::memcpy(reply.data() + kWord + entries, data + begin, bytes);
    }
  } else if (op == kRead) {
    value = counter_op(0, MPI_NO_OP);
  } else if (op == kExhaust) {
    value = counter_op(kExhaustedMark, MPI_MAX);
  } else {
    throw ClaimError("RmaClaimer at the root: unknown request " + std::to_string(message[0]) + " from rank " +
                     std::to_string(source));
  }
  std::memcpy(reply.data(), &value, kWord);
  check(MPI_Send(reply.data(), static_cast<int>(reply.size()), MPI_BYTE, source, kReplyTag, own.get()),
        "MPI_Send");
}

bool RmaClaimer::State::take(std::uint64_t count, Claim& out) {
  if (last_seen >= total) {
    clear(out);
    return false;
  }
  // Never add more than total: failed claims then cannot wrap the counter around.
  count = std::min(count, total);
  if (by_message) return take_by_message(count, out);
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

// One request, one reply: {first}, then the chunk's table entries and bytes.
bool RmaClaimer::State::take_by_message(std::uint64_t count, Claim& out) {
  const std::uint64_t first = request(kTake, count);
  last_seen = std::max(last_seen, saturating_add(first, count));
  if (first >= total) {
    clear(out);
    return false;
  }
  const std::size_t n = std::min(first + count, total) - first;
  scratch.resize(n + 1);
  std::memcpy(scratch.data(), reply.data() + kWord, (n + 1) * sizeof(Entry));
  const std::uint64_t bytes = chunk_index(scratch.data(), n, out).second;
  out.elements.data.assign(reply.data() + kWord + (n + 1) * sizeof(Entry), bytes);
  return true;
}

void RmaClaimer::State::read_local(std::uint64_t first, std::uint64_t last, Claim& out) const {
  const std::size_t n = last - first;
  const auto [begin, bytes] = chunk_index(table + first, n, out);
  out.elements.data.assign(data + begin, bytes);
}

// Two round trips: the chunk's table entries, then its bytes.
void RmaClaimer::State::read_remote(std::uint64_t first, std::uint64_t last, Claim& out) {
  const std::size_t n = last - first;
  scratch.resize(n + 1);
  remote.get_bytes(scratch.data(), (n + 1) * sizeof(Entry), root,
                   remote_base + static_cast<MPI_Aint>(first * sizeof(Entry)));
  remote.flush(root);
  const auto [begin, bytes] = chunk_index(scratch.data(), n, out);
  out.elements.data.resize(bytes);
  if (bytes > 0) {
    remote.get_bytes(out.elements.data.data(), bytes, root,
                     remote_base + data_disp + static_cast<MPI_Aint>(begin));
    remote.flush(root);
  }
}

}  // namespace mpmux
