// Claiming elements inside one MPI job with one-sided atomics.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/export.hpp"

namespace mpmux {

/// Guided chunking: from the last counter value seen, a claim takes
/// c = clamp(ceil(remaining / (2 * workers)), min, max) elements.
struct MPMUX_EXPORT ChunkPolicy {
  std::uint64_t min = 1;
  std::uint64_t max = 1024;
};

/// One claimed chunk: elements indices[k], bytes at(k).
struct MPMUX_EXPORT Claim {
  std::vector<std::uint64_t> indices;
  ElementBuffer elements;
  std::size_t size() const { return indices.size(); }
};

/// How positions become claimable. all_at_once: every pending position from the start.
/// published: a position only once the root has published it, in the order the root publishes,
/// and the hand-out ends only when the root closes it (or someone calls exhaust()).
enum class HandOut { all_at_once, published };

/// What try_claim() got: a chunk; nothing yet (the rank keeps its place: positions the root
/// publishes later are handed to it first); or nothing ever again on this rank.
enum class ClaimStatus { claimed, wait, ended };

/// How one window of a claimer is served.
struct MPMUX_EXPORT WindowPath {
  /// "counter", "elements (node-shared)", "elements (remote)", or "elements" when the counter
  /// is two-sided (the replies then carry the elements too).
  std::string window;
  /// The MPI component serving it when the MPI names it ("sm", "rdma", "ucx", "pt2pt"), else
  /// the call that made it ("MPI_Win_allocate"); "two-sided" when the root answers requests.
  std::string path;
  /// The call that made the window, and what failed before it ("MPI_Win_create on window ...
  /// failed: MPI_ERR_WIN: invalid window").
  std::string detail;
};

/// The root rank holds a counter window (one uint64; MPI_Win_allocate, or MPI_Win_allocate_shared
/// when the whole communicator is on one node) and one region: a table of n+1 entries (position
/// k: the element index pending[k] and the offset of its bytes into data) and data (the elements'
/// bytes, packed in pending order, so a chunk is one contiguous range). The region is
/// MPI_Win_allocate_shared memory on the root's node: ranks there read it directly, with no copy
/// and no MPI call; ranks on other nodes read it with MPI_Get through an MPI_Win_create window over
/// the same memory (two round trips: the chunk's entries, then its bytes). Every rank holds one
/// passive epoch (MPI_Win_lock_all) for the claimer's lifetime and claims with
/// MPI_Fetch_and_op(+c) and MPI_Win_flush, so the root never has to answer a request.
///
/// Guarantee: every pending position is returned by claim()/claim_n() to exactly one caller across
/// the communicator (with HandOut::published: every published position; one never published is
/// never returned). The root holds the element bytes once (the buffers passed in are released
/// after being copied into the window); a worker holds only what it claimed.
///
/// Each window is made the first way that works, agreed by all its ranks (creation is collective):
/// the counter by MPI_Win_allocate_shared (one node only), MPI_Win_allocate, MPI_Win_create, then
/// MPI_Win_create_dynamic; the remote region by MPI_Win_create, then MPI_Win_create_dynamic. When
/// none works (Open MPI's osc/rdma over btl/tcp, with osc/pt2pt excluded as in Debian), the window
/// falls back to a two-sided claim service on the root: a rank sends a small request and gets the
/// chunk's indices and bytes in one reply. The root must then answer: it does in claim(), serve()
/// and release(). paths() says which way each window went.
///
/// Environment, read by the constructor on every rank:
/// - MPMUX_RMA_NO_SHARED=1 makes that rank read through MPI_Get even when it shares the root's
///   node (tests and benchmarks of the remote path).
/// - MPMUX_CLAIM=two-sided (on any rank) makes every window two-sided; MPMUX_CLAIM=one-sided makes
///   a window that has no one-sided way an error (ClaimError naming the window, the transport and
///   the settings that would help) instead of a fallback; auto (or unset) is the default.
///
/// The open hand-out (HandOut::published) adds a table of n slots to the region (slot k: the
/// position published k-th; written by the root before it raises the limit) and a limit word beside
/// the counter (the published count; bit 63: closed, bit 62: exhausted). A claim still takes tickets
/// [t, t + c) with one MPI_Fetch_and_op; tickets below the limit are read as slots, then entries and
/// bytes; tickets above it stay with the rank (wait) until the root publishes up to them or closes.
/// A rank holding tickets must go on claiming until ended, or the positions published into them are
/// never handed out. On the two-sided path the root holds such a request and answers it from
/// publish(), close() or serve().
///
/// One thread at a time may call a claimer (MPI_THREAD_FUNNELED).
///
/// Open MPI before 5.0 (open-mpi/ompi#9492): windows that span nodes must not be created at the
/// same moment by disjoint communicators sharing a node (e.g. two halves of one MPI_Comm_split),
/// as their osc/rdma backing files collide. Claimers within one node are not affected (unless
/// MPMUX_RMA_NO_SHARED is set).
class MPMUX_EXPORT RmaClaimer {
 public:
  /// Collective over `comm`. On `root`, `pending` lists the element indices to hand out and
  /// `elements.at(k)` holds the bytes of element pending[k]; other ranks pass empty values.
  /// `workers` is the number of ranks that will claim (for the guided chunk size).
  /// `handout` must be the same on every rank.
  /// Throws ClaimError on every rank when any rank's arguments are invalid (root out of range,
  /// pending and elements of different sizes, workers < 1, policy.min < 1 or max < min, ranks
  /// disagreeing on `handout`), and on the calling rank when an MPI call fails. `comm` is
  /// duplicated; the caller may go on using it.
  RmaClaimer(MPI_Comm comm, int root, std::vector<std::uint64_t> pending, ElementBuffer elements,
             ChunkPolicy policy, int workers, HandOut handout = HandOut::all_at_once);
  /// Collective (frees the windows).
  ~RmaClaimer();
  RmaClaimer(const RmaClaimer&) = delete;
  RmaClaimer& operator=(const RmaClaimer&) = delete;

  /// Claims the next guided chunk into `out` (replacing its contents). Returns false when
  /// nothing is left. Any rank may call it, the root included. With HandOut::published it blocks
  /// while try_claim() would say wait; at the root, which alone can publish, that throws
  /// ClaimError instead of hanging.
  bool claim(Claim& out);
  /// Claims exactly `count` elements (or what is left; with HandOut::published, what is published
  /// of the tickets taken); used by benchmarks and tests. count >= 1. Blocks as claim() does.
  bool claim_n(std::uint64_t count, Claim& out);
  /// Never blocks: a guided chunk from what this rank knows is published and unclaimed (`out`
  /// empty unless claimed). With HandOut::all_at_once it never returns wait. A rank claiming by
  /// message has at most one request out: a call while it is unanswered checks for the reply.
  ClaimStatus try_claim(Claim& out);

  /// Root, HandOut::published: makes `positions` (indices into `pending`, each published at most
  /// once over the claimer's life) claimable, in this order, after those published before. The
  /// slots are written before the limit is raised, so no rank reads one unwritten. Throws
  /// ClaimError, publishing nothing, on a position out of range or published before, after
  /// close(), on another rank or with HandOut::all_at_once.
  void publish(const std::vector<std::uint64_t>& positions);
  /// Root, HandOut::published: nothing more will be published; ranks waiting beyond the last
  /// published position end. Repeating it does nothing.
  void close();
  /// Root: the number of positions published so far (total() with HandOut::all_at_once); on
  /// other ranks, the count this rank last read.
  std::uint64_t published() const;

  /// Ends the hand-out early: every later claim, on any rank, fails (the counter is raised to a
  /// mark far past total with MPI_MAX, so a chunk already taken is not given again; an open
  /// hand-out also gets the exhausted bit, which ends the ranks that wait). Any rank may call it.
  void exhaust();
  /// True once some rank called exhaust(): one atomic read of the counter.
  bool exhausted() const;

  /// Number of pending elements handed out so far (may exceed total() once exhausted is seen).
  /// With HandOut::published, tickets beyond the published count are not counted, so
  /// published() - claimed() is what is left for the ranks (0 while some of them wait).
  std::uint64_t claimed() const;
  std::uint64_t total() const;
  /// True when this rank reads elements straight from the root node's shared memory (no MPI_Get).
  bool reads_shared_memory() const;
  /// True when some rank claims through the root's two-sided service (the root must answer).
  bool serves_requests() const;
  /// How each window is served. The same on every rank of the root's node; the root's view is
  /// the job's.
  const std::vector<WindowPath>& paths() const;

  /// Root: answers every claim request that has arrived (two-sided path), without blocking, and
  /// with HandOut::published the held-back takes that an exhaust() ended. Returns how many it
  /// answered; 0 at once on other ranks. An open hand-out's root calls it in its loop while it
  /// does not publish: osc/pt2pt serves the others' reads of its region only while it calls MPI.
  std::size_t serve();
  /// Collective: this rank is done claiming (later claims fail); returns once every rank called
  /// it, the root answering requests until then. The destructor calls it when nobody did. With
  /// HandOut::published the root's release closes the hand-out first (nothing can be published
  /// after it, and the ranks that wait must reach their own release).
  void release();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mpmux
