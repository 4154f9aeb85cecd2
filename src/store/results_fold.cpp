// The one fold of a session's journals and what is read through it: the session state and
// counts, and the rows of the results; see results_fold.hpp.
#include "store/results_fold.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "mpmux/error.hpp"
#include "store/fs.hpp"
#include "store/journal_scan.hpp"
#include "store/utf8.hpp"

namespace mpmux {

namespace stdfs = std::filesystem;

namespace {

// Elements per block: at least 2^16, and at most 256 blocks, so a block's references and rows
// stay a few MiB for the sizes mpmux is built for and the per-block work stays negligible.
constexpr std::uint64_t kMinBlock = 1u << 16;
constexpr std::uint64_t kMaxBlocks = 256;
// References buffered in memory (8 MiB; the vectors' growth and the capacity each block keeps
// make at most four times that) before they are appended to the spill file.
constexpr std::size_t kSpillEntries = 1u << 18;
// Deciding records closer than this are read back with one pread, up to kReadRun bytes.
constexpr std::uint64_t kReadGap = 64u << 10;
constexpr std::uint64_t kReadRun = 4u << 20;

// The bits of Entry::bits: the journal flags the fold uses, and two of its own.
constexpr std::uint32_t kJournalFlags = Outcome::kFinal;
constexpr std::uint32_t kDone = 0x40;          // a done record (else failed)
constexpr std::uint32_t kBinaryResult = 0x80;  // its result is not UTF-8 without NUL bytes
constexpr std::uint32_t kMaxJournals = 1u << 24;

// What the fold needs of one record, and where to read the rest.
struct Entry {
  std::uint64_t pos;
  std::int64_t t_end;
  std::uint32_t local;  // index - first index of its block
  std::uint32_t attempt;
  std::uint32_t size;
  std::uint32_t bits;  // journal number << 8 | the bits above

  std::uint32_t file() const { return bits >> 8; }
  bool done() const { return (bits & kDone) != 0; }
};
static_assert(sizeof(Entry) == 32, "references are spilled as 32-byte records");

struct Chunk {
  std::uint64_t offset, count;
};

struct Slot {
  std::uint32_t attempts = 0;
  std::uint32_t dones = 0;   // done records
  std::uint32_t fenced = 0;  // done records the fenced rule set aside
  ElementStatus status = ElementStatus::pending;
  std::int64_t winner = -1;  // into the block's entries
  std::int64_t owned = -1;   // the deciding done record of the batch winner's journal, if any
};

// In a block's owner list: no committed batch covers the element, or its winner has no journal.
constexpr std::uint32_t kNoOwner = ~std::uint32_t{0};

// Whether `a` supersedes `b` as the deciding record; on a tie the one read later wins.
bool supersedes(const Entry& a, const Entry& b) {
  return std::tie(a.attempt, a.t_end) >= std::tie(b.attempt, b.t_end);
}

// The fold rule (documented at read_session_state and read_results), over one block's
// references in the order they were read: the only place it is written. `owner` (empty, or one
// per element of the block) names the journal of the element's committed batch winner: its done
// record decides and every other done record of the element is fenced (docs/design.md).
void decide(const std::vector<Entry>& entries, std::vector<Slot>& slots,
            const std::vector<std::uint32_t>& owner) {
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    Slot& s = slots[e.local];
    ++s.attempts;
    const Entry* kept = s.winner < 0 ? nullptr : &entries[static_cast<std::size_t>(s.winner)];
    if (e.done()) {
      ++s.dones;
      if (!owner.empty() && owner[e.local] == e.file() &&
          (s.owned < 0 || supersedes(e, entries[static_cast<std::size_t>(s.owned)])))
        s.owned = static_cast<std::int64_t>(i);
      s.status = ElementStatus::done;
      if (!kept || !kept->done() || supersedes(e, *kept)) s.winner = static_cast<std::int64_t>(i);
    } else {
      if ((e.bits & Outcome::kFinal) && s.status != ElementStatus::done) s.status = ElementStatus::failed;
      if (!kept || (!kept->done() && supersedes(e, *kept))) s.winner = static_cast<std::int64_t>(i);
    }
  }
  for (Slot& s : slots) {
    if (s.owned < 0) continue;
    s.winner = s.owned;
    s.fenced = s.dones - 1;
  }
}

// An unlinked file for the references, in the session directory (large scratch space, unlike a
// node's /tmp), else in TMPDIR when the session directory is not writable. It vanishes when
// closed, killed or not.
posix::Fd open_spill(const stdfs::path& session_dir) {
  std::vector<stdfs::path> dirs{session_dir};
  const char* tmpdir = std::getenv("TMPDIR");
  dirs.emplace_back(tmpdir && *tmpdir ? tmpdir : "/tmp");
  int last_error = 0;
  for (const stdfs::path& dir : dirs) {
    int fd = posix::open_file_noexcept(dir, O_TMPFILE | O_RDWR, 0600);
    if (fd >= 0) return posix::Fd(fd);
    // File systems without O_TMPFILE: a named file removed at once.
    const stdfs::path name = dir / (".results-fold-" + posix::random_hex(12));
    fd = posix::open_file_noexcept(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) {
      ::unlink(name.c_str());
      return posix::Fd(fd);
    }
    last_error = -fd;
  }
  throw StoreError("folding the journals of '" + session_dir.string() +
                   "': cannot create a temporary file: " + posix::error_text(last_error));
}

}  // namespace

// A committed batch with its winner's journal (a number into the fold's files, or kNoOwner).
struct OwnedBatch {
  std::uint64_t first, end;
  std::uint32_t file;
};

struct ResultFold::State {
  std::uint64_t total = 0, block = 0, blocks = 0, torn_bytes = 0;
  stdfs::path dir;
  std::vector<stdfs::path> files;
  std::vector<OwnedBatch> batches;                     // by round, so a later round's batch overrides
  std::vector<std::vector<std::uint32_t>> batches_of;  // per block, into batches
  std::vector<std::vector<Entry>> buffered;            // per block, the references not spilled yet
  std::vector<std::vector<Chunk>> spilled;             // per block, in the order they were read
  std::size_t buffered_count = 0;
  posix::Fd spill;
  std::uint64_t spill_size = 0;

  void spill_all() {
    if (!spill) spill = open_spill(dir);
    for (std::size_t b = 0; b < blocks; ++b) {
      std::vector<Entry>& v = buffered[b];
      if (v.empty()) continue;
      const std::size_t bytes = v.size() * sizeof(Entry);
      const posix::IoResult w = posix::write_all(spill.get(), v.data(), bytes);
      if (w.error != 0)
        throw StoreError("folding the journals of '" + dir.string() +
                         "': writing a temporary file failed: " + posix::error_text(w.error));
      spilled[b].push_back({spill_size, v.size()});
      spill_size += bytes;
      v.clear();
      // Twice a block's share of the budget stays allocated for the next round (fresh memory
      // costs a page fault per 4 KiB, the most of a fold's time); more is given back.
      if (v.capacity() > 2 * kSpillEntries / blocks) v.shrink_to_fit();
    }
    buffered_count = 0;
  }

  // Reads block b's references and folds them into one slot per element.
  void fold_block(std::size_t b, std::vector<Entry>& entries, std::vector<Slot>& slots,
                  std::vector<std::uint32_t>& owner) const;
  // Whose journal decides each element of the block: the winners of its batches.
  void owners_of(std::size_t b, std::vector<std::uint32_t>& owner) const {
    owner.clear();
    if (batches_of[b].empty()) return;
    const std::uint64_t first = b * block, end = std::min(total, first + block);
    owner.assign(end - first, kNoOwner);
    for (const std::uint32_t k : batches_of[b]) {
      const OwnedBatch& w = batches[k];
      for (std::uint64_t i = std::max(w.first, first); i < std::min(w.end, end); ++i)
        owner[i - first] = w.file;
    }
  }

  std::vector<Entry> entries_of(std::size_t b) const {
    std::uint64_t n = buffered[b].size();
    for (const Chunk& c : spilled[b]) n += c.count;
    std::vector<Entry> out(n);
    std::size_t at = 0;
    for (const Chunk& c : spilled[b]) {
      const std::size_t bytes = c.count * sizeof(Entry);
      std::size_t got = 0;
      while (got < bytes) {
        const ssize_t r = ::pread(spill.get(), reinterpret_cast<char*>(out.data() + at) + got, bytes - got,
                                  static_cast<off_t>(c.offset + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
          throw StoreError("folding the journals of '" + dir.string() +
                           "': reading a temporary file failed: " + posix::error_text(r < 0 ? errno : EIO));
        got += static_cast<std::size_t>(r);
      }
      at += c.count;
    }
    std::copy(buffered[b].begin(), buffered[b].end(), out.begin() + static_cast<std::ptrdiff_t>(at));
    return out;
  }
};

ResultFold::ResultFold(const stdfs::path& journal_dir, std::string_view session_id, std::uint64_t total,
                       const std::vector<BatchWinner>& winners, bool cut_torn_tails)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.total = total;
  s.dir = journal_dir.parent_path();
  s.block = std::max(kMinBlock, (s.total + kMaxBlocks - 1) / kMaxBlocks);
  s.blocks = (s.total + s.block - 1) / s.block;
  s.buffered.resize(s.blocks);
  s.spilled.resize(s.blocks);
  s.files = journal_scan::journal_files(journal_dir);
  if (s.files.size() >= kMaxJournals)
    throw StoreError("journal directory '" + journal_dir.string() + "': more than " +
                     std::to_string(kMaxJournals - 1) + " journals");
  // A participant's id is its journal's file stem.
  std::unordered_map<std::string, std::uint32_t> journal_of;
  for (std::size_t f = 0; f < s.files.size(); ++f)
    journal_of.emplace(s.files[f].stem().string(), static_cast<std::uint32_t>(f));
  std::vector<const BatchWinner*> by_round;
  for (const BatchWinner& w : winners)
    if (w.count > 0 && w.first < s.total) by_round.push_back(&w);
  std::stable_sort(by_round.begin(), by_round.end(),
                   [](const BatchWinner* a, const BatchWinner* b) { return a->round < b->round; });
  s.batches_of.resize(s.blocks);
  for (const BatchWinner* w : by_round) {
    const auto it = journal_of.find(w->participant);
    const std::uint64_t end = w->first + std::min(w->count, s.total - w->first);
    s.batches.push_back({w->first, end, it == journal_of.end() ? kNoOwner : it->second});
    for (std::uint64_t b = w->first / s.block; b <= (end - 1) / s.block; ++b)
      s.batches_of[b].push_back(static_cast<std::uint32_t>(s.batches.size() - 1));
  }
  for (std::size_t f = 0; f < s.files.size(); ++f) {
    const stdfs::path& file = s.files[f];
    const auto each = [&](const journal_scan::RecordRef& r) {
      if (r.index >= s.total)
        throw StoreError("journal '" + file.string() + "': record at byte " + std::to_string(r.pos) +
                         " names element " + std::to_string(r.index) + ", but the session has " +
                         std::to_string(s.total));
      const bool binary = utf8::first_invalid(r.result) != std::string_view::npos ||
                          r.result.find('\0') != std::string_view::npos;
      const std::uint32_t bits = static_cast<std::uint32_t>(f) << 8 | (r.flags & kJournalFlags) |
                                 (r.type == RecordType::done ? kDone : 0) | (binary ? kBinaryResult : 0);
      const std::uint64_t b = r.index / s.block;
      s.buffered[b].push_back(
          {r.pos, r.t_end, static_cast<std::uint32_t>(r.index - b * s.block), r.attempt, r.size, bits});
      if (++s.buffered_count >= kSpillEntries) s.spill_all();
    };
    s.torn_bytes += journal_scan::for_each_record(file, session_id, each, cut_torn_tails);
  }
}

ResultFold::ResultFold(const Session& session, const std::vector<BatchWinner>& winners, bool cut_torn_tails)
    : ResultFold(session.journal_dir(), session.id().session, session.total(), winners, cut_torn_tails) {}

ResultFold::~ResultFold() = default;

std::uint64_t ResultFold::total() const { return state_->total; }
std::uint64_t ResultFold::torn_bytes() const { return state_->torn_bytes; }

void ResultFold::State::fold_block(std::size_t b, std::vector<Entry>& entries, std::vector<Slot>& slots,
                                   std::vector<std::uint32_t>& owner) const {
  entries = entries_of(b);
  slots.assign(std::min(block, total - b * block), Slot{});
  owners_of(b, owner);
  decide(entries, slots, owner);
}

bool ResultFold::any_binary_result() const {
  std::vector<Entry> entries;
  std::vector<Slot> slots;
  std::vector<std::uint32_t> owner;
  for (std::size_t b = 0; b < state_->blocks; ++b) {
    state_->fold_block(b, entries, slots, owner);
    for (const Slot& slot : slots)
      if (slot.winner >= 0 && (entries[static_cast<std::size_t>(slot.winner)].bits & kBinaryResult))
        return true;
  }
  return false;
}

void ResultFold::for_each_state(
    const std::function<void(std::uint64_t index, ElementStatus status, std::uint32_t attempts,
                             std::uint32_t fenced)>& each) const {
  std::vector<Entry> entries;
  std::vector<Slot> slots;
  std::vector<std::uint32_t> owner;
  for (std::size_t b = 0; b < state_->blocks; ++b) {
    state_->fold_block(b, entries, slots, owner);
    const std::uint64_t first = b * state_->block;
    for (std::size_t k = 0; k < slots.size(); ++k)
      each(first + k, slots[k].status, slots[k].attempts, slots[k].fenced);
  }
}

namespace {

// Reads the records `wanted` points to into their rows, in file order, nearby ones together.
void read_deciding(const std::vector<stdfs::path>& files, std::vector<const Entry*>& wanted,
                   std::vector<ElementResult>& rows) {
  std::sort(wanted.begin(), wanted.end(), [](const Entry* a, const Entry* b) {
    return std::pair(a->file(), a->pos) < std::pair(b->file(), b->pos);
  });
  std::unique_ptr<journal_scan::RecordReader> reader;
  std::size_t run_end = 0;  // wanted[..run_end) are covered by the last read
  std::uint64_t read_until = 0;
  for (std::size_t j = 0; j < wanted.size(); ++j) {
    const Entry& e = *wanted[j];
    if (j == 0 || e.file() != wanted[j - 1]->file())
      reader = std::make_unique<journal_scan::RecordReader>(files[e.file()]);
    if (j >= run_end) {
      run_end = j + 1;
      read_until = e.pos + e.size;
      while (run_end < wanted.size() && wanted[run_end]->file() == e.file() &&
             wanted[run_end]->pos - read_until <= kReadGap &&
             wanted[run_end]->pos + wanted[run_end]->size - e.pos <= kReadRun) {
        read_until = wanted[run_end]->pos + wanted[run_end]->size;
        ++run_end;
      }
    }
    rows[e.local].outcome = reader->read(e.pos, e.size, read_until);
  }
}

}  // namespace

void ResultFold::for_each_block(
    const std::function<void(std::uint64_t first, const std::vector<ElementResult>& rows)>& each,
    const std::function<bool(ElementStatus)>& read_outcome) const {
  std::vector<Entry> entries;
  std::vector<Slot> slots;
  std::vector<std::uint32_t> owner;
  std::vector<ElementResult> rows;
  std::vector<const Entry*> wanted;
  for (std::size_t b = 0; b < state_->blocks; ++b) {
    state_->fold_block(b, entries, slots, owner);
    const std::uint64_t first = b * state_->block;
    rows.resize(slots.size());
    wanted.clear();
    for (std::size_t k = 0; k < slots.size(); ++k) {
      rows[k].index = first + k;
      rows[k].status = slots[k].status;
      rows[k].attempts = slots[k].attempts;
      rows[k].outcome.reset();
      if (slots[k].winner >= 0 && (!read_outcome || read_outcome(slots[k].status)))
        wanted.push_back(&entries[static_cast<std::size_t>(slots[k].winner)]);
    }
    read_deciding(state_->files, wanted, rows);
    each(first, rows);
  }
}

// ---------------------------------------------------------------------------------------------
// What is read through the fold

std::vector<std::uint64_t> SessionState::pending_indices(bool include_failed) const {
  std::vector<std::uint64_t> out;
  out.reserve(status.size() - std::min<std::uint64_t>(status.size(), done));
  for (std::size_t i = 0; i < status.size(); ++i) {
    if (status[i] == ElementStatus::pending || (include_failed && status[i] == ElementStatus::failed))
      out.push_back(i);
  }
  return out;
}

namespace {

SessionState read_state(const ResultFold& fold) {
  SessionState state;
  state.status.reserve(fold.total());
  state.attempts.reserve(fold.total());
  state.torn_bytes = fold.torn_bytes();
  fold.for_each_state([&](std::uint64_t, ElementStatus status, std::uint32_t attempts, std::uint32_t fenced) {
    state.status.push_back(status);
    state.attempts.push_back(attempts);
    state.done += status == ElementStatus::done;
    state.failed += status == ElementStatus::failed;
    state.fenced += fenced;
  });
  return state;
}

}  // namespace

SessionState read_session_state(const stdfs::path& journal_dir, std::string_view session_id,
                                std::uint64_t total, bool cut_torn_tails) {
  return read_state(ResultFold(journal_dir, session_id, total, {}, cut_torn_tails));
}

namespace fold {

SessionState read_session_state(const Session& session, const std::vector<BatchWinner>& winners,
                                bool cut_torn_tails) {
  return read_state(ResultFold(session, winners, cut_torn_tails));
}

SessionCounts read_session_counts(const Session& session, const std::vector<BatchWinner>& winners) {
  const ResultFold fold(session, winners);
  SessionCounts counts;
  counts.total = fold.total();
  counts.torn_bytes = fold.torn_bytes();
  fold.for_each_state([&](std::uint64_t, ElementStatus status, std::uint32_t, std::uint32_t fenced) {
    counts.done += status == ElementStatus::done;
    counts.failed += status == ElementStatus::failed;
    counts.fenced += fenced;
  });
  return counts;
}

void for_each_result(const Session& session, const std::vector<BatchWinner>& winners,
                     const std::function<void(const ElementResult&)>& each,
                     std::optional<ElementStatus> only) {
  const ResultFold fold(session, winners);
  const auto wanted = [&](ElementStatus s) { return !only || s == *only; };
  fold.for_each_block(
      [&](std::uint64_t, const std::vector<ElementResult>& rows) {
        for (const ElementResult& r : rows)
          if (wanted(r.status)) each(r);
      },
      wanted);
}

}  // namespace fold

}  // namespace mpmux
