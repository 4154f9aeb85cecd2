#include "mpmux/rma_claimer.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "claim/window.hpp"
#include "mpmux/error.hpp"
#include "mpmux/mpi.hpp"

namespace mpmux {

namespace {

using claim::Window;

constexpr std::uint64_t kWord = sizeof(std::uint64_t);

// Position k of the region's table: the element index pending[k] and where its bytes start in
// data (entry total holds the end). One table instead of two arrays saves a Get per remote claim.
struct Entry {
  std::uint64_t index;
  std::uint64_t offset;
};
static_assert(sizeof(Entry) == 2 * kWord);
constexpr const char* kNoSharedVariable = "MPMUX_RMA_NO_SHARED";

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
                                      bool& no_shared) {
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
  std::uint64_t workers = 1;
  ChunkPolicy policy;
  std::uint64_t total = 0;
  std::uint64_t data_bytes = 0;
  // Largest counter value this rank knows of: the guided chunk is computed from it, and once it
  // reaches total, claims fail without touching the counter.
  std::uint64_t last_seen = 0;

  // Region layout (bytes): Entry table[total + 1] | data[data_bytes].
  MPI_Aint data_disp = 0;

  // Set when this rank reads the region directly (it shares the root's node).
  const Entry* table = nullptr;
  const char* data = nullptr;
  std::vector<Entry> scratch;  // the remote path's copy of a chunk's entries

  // Declaration order is the (collective) free order reversed: remote refers to the shared memory.
  Window counter;
  Window shared;
  Window remote;

  bool take(std::uint64_t count, Claim& out);
  void read_local(std::uint64_t first, std::uint64_t last, Claim& out) const;
  void read_remote(std::uint64_t first, std::uint64_t last, Claim& out);
};

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

  // A private duplicate: our collectives never match the caller's, and it returns errors.
  Communicator own;
  check(MPI_Comm_dup(comm, own.out()), "MPI_Comm_dup", rank, size);
  check(MPI_Comm_set_errhandler(own.get(), MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", rank, size);

  bool no_shared = false;
  const auto error = validate(rank, root, pending, elements, policy, workers, no_shared);
  // One reduction tells every rank whether someone's arguments are bad, the count and the size.
  std::uint64_t facts[3] = {error ? static_cast<std::uint64_t>(rank) + 1 : 0,
                            rank == root ? pending.size() : 0, rank == root ? elements.data.size() : 0};
  check(MPI_Allreduce(MPI_IN_PLACE, facts, 3, MPI_UINT64_T, MPI_MAX, own.get()), "MPI_Allreduce", rank, size);
  if (error) {
    if (error->usage) throw UsageError(error->message);
    throw ClaimError(error->message);
  }
  if (facts[0] != 0) {
    throw ClaimError("RmaClaimer at rank " + std::to_string(rank) + ": rank " + std::to_string(facts[0] - 1) +
                     " passed invalid arguments (see its error)");
  }

  State& s = *state_;
  s.root = root;
  s.workers = static_cast<std::uint64_t>(workers);
  s.policy = policy;
  s.total = facts[1];
  s.data_bytes = facts[2];
  s.data_disp = static_cast<MPI_Aint>((s.total + 1) * sizeof(Entry));
  const MPI_Aint region = s.data_disp + static_cast<MPI_Aint>(s.data_bytes);

  Communicator node;
  check(MPI_Comm_split_type(own.get(), MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, node.out()),
        "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)", rank, size);
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

  // Only the root's node shares the region; other nodes' ranks create no shared window.
  char* base = nullptr;
  if (root_in_node != MPI_UNDEFINED) {
    s.shared = Window::allocate_shared(node.get(), rank == root ? region : 0, 1, "elements (node-shared)");
    s.shared.lock_all();
    base = static_cast<char*>(s.shared.shared_query(root_in_node).base);
    if (rank == root) {
      auto* table = reinterpret_cast<Entry*>(base);
      for (std::uint64_t k = 0; k <= s.total; ++k) {
        table[k] = Entry{k < s.total ? pending[k] : 0, elements.offsets[k]};
      }
      if (s.data_bytes > 0) std::memcpy(base + s.data_disp, elements.data.data(), s.data_bytes);
      s.shared.sync();
    }
  }
  // The window holds the only copy from here on.
  std::vector<std::uint64_t>().swap(pending);
  std::string().swap(elements.data);
  std::vector<std::uint64_t>().swap(elements.offsets);
  const bool read_local = root_in_node != MPI_UNDEFINED && (rank == root || !no_shared);

  int need_remote = read_local ? 0 : 1;
  check(MPI_Allreduce(MPI_IN_PLACE, &need_remote, 1, MPI_INT, MPI_MAX, own.get()), "MPI_Allreduce", rank,
        size);
  if (need_remote) {
    s.remote = Window::create(rank == root ? base : nullptr, rank == root ? region : 0, 1, own.get(),
                              "elements (remote)");
    s.remote.lock_all();
  }

  // Within one node the counter is osc/sm memory: Open MPI 4.1's osc/rdma names its backing file
  // after the communicator id, which disjoint communicators share, so claimers on two halves of a
  // split would corrupt each other's state (open-mpi/ompi#9492, fixed in 5.0). osc/sm is also the
  // faster of the two here.
  int node_size = 0;
  check(MPI_Comm_size(node.get(), &node_size), "MPI_Comm_size", rank, size);
  const MPI_Aint counter_bytes = rank == root ? static_cast<MPI_Aint>(kWord) : 0;
  s.counter = node_size == size
                  ? Window::allocate_shared(own.get(), counter_bytes, static_cast<int>(kWord), "counter")
                  : Window::allocate(own.get(), counter_bytes, static_cast<int>(kWord), "counter");
  if (rank == root) *static_cast<std::uint64_t*>(s.counter.base()) = 0;
  s.counter.lock_all();
  if (rank == root) s.counter.sync();

  // After the barrier the root's stores to the counter and the region are visible to all.
  check(MPI_Barrier(own.get()), "MPI_Barrier", rank, size);
  if (read_local) {
    s.shared.sync();
    s.table = reinterpret_cast<const Entry*>(base);
    s.data = base + s.data_disp;
  }
}

RmaClaimer::~RmaClaimer() = default;

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
  const State& s = *state_;
  const std::uint64_t unused = 0;
  std::uint64_t value = 0;
  s.counter.fetch_and_op(&unused, &value, MPI_UINT64_T, s.root, 0, MPI_NO_OP);
  s.counter.flush(s.root);
  return value;
}

std::uint64_t RmaClaimer::total() const { return state_->total; }

// A counter at or past this mark was ended early; claims alone never take it that far.
constexpr std::uint64_t kExhaustedMark = std::uint64_t{1} << 62;

void RmaClaimer::exhaust() {
  State& s = *state_;
  std::uint64_t old = 0;
  const std::uint64_t mark = kExhaustedMark;
  s.counter.fetch_and_op(&mark, &old, MPI_UINT64_T, s.root, 0, MPI_MAX);
  s.counter.flush(s.root);
  s.last_seen = std::max(s.last_seen, s.total);
}

bool RmaClaimer::exhausted() const { return claimed() >= kExhaustedMark; }

bool RmaClaimer::reads_shared_memory() const { return state_->table != nullptr; }

bool RmaClaimer::State::take(std::uint64_t count, Claim& out) {
  if (last_seen >= total) {
    clear(out);
    return false;
  }
  // Never add more than total: failed claims then cannot wrap the counter around.
  count = std::min(count, total);
  std::uint64_t first = 0;
  counter.fetch_and_op(&count, &first, MPI_UINT64_T, root, 0, MPI_SUM);
  counter.flush(root);
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
  const Entry* entries = table + first;
  const std::uint64_t begin = entries[0].offset;
  out.indices.resize(n);
  out.elements.offsets.resize(n + 1);
  for (std::size_t i = 0; i < n; ++i) {
    out.indices[i] = entries[i].index;
    out.elements.offsets[i] = entries[i].offset - begin;
  }
  out.elements.offsets[n] = entries[n].offset - begin;
  out.elements.data.assign(data + begin, entries[n].offset - begin);
}

// Two round trips: the chunk's table entries, then its bytes.
void RmaClaimer::State::read_remote(std::uint64_t first, std::uint64_t last, Claim& out) {
  const std::size_t n = last - first;
  scratch.resize(n + 1);
  remote.get_bytes(scratch.data(), (n + 1) * sizeof(Entry), root,
                   static_cast<MPI_Aint>(first * sizeof(Entry)));
  remote.flush(root);
  const std::uint64_t begin = scratch[0].offset;
  const std::uint64_t bytes = scratch[n].offset - begin;
  out.elements.data.resize(bytes);
  if (bytes > 0) {
    remote.get_bytes(out.elements.data.data(), bytes, root, data_disp + static_cast<MPI_Aint>(begin));
  }
  out.indices.resize(n);
  out.elements.offsets.resize(n + 1);
  for (std::size_t i = 0; i < n; ++i) {
    out.indices[i] = scratch[i].index;
    out.elements.offsets[i] = scratch[i].offset - begin;
  }
  out.elements.offsets[n] = bytes;
  if (bytes > 0) remote.flush(root);
}

}  // namespace mpmux
