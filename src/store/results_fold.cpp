// The bounded-memory fold of a session's journals; see results_fold.hpp.
#include "store/results_fold.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <tuple>

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
// References buffered in memory (8 MiB, at most twice that with the vectors' growth) before they
// are appended to the spill file.
constexpr std::size_t kSpillEntries = 1u << 18;
// Deciding records closer than this are read back with one pread, up to kReadRun bytes.
constexpr std::uint64_t kReadGap = 64u << 10;
constexpr std::uint64_t kReadRun = 4u << 20;

// Not a journal flag: marks a record whose result is not UTF-8 without NUL bytes.
constexpr std::uint8_t kBinaryResult = 0x80;

// What the fold needs of one record, and where to read the rest.
struct Entry {
  std::uint64_t pos;
  std::int64_t t_end;
  std::uint32_t local;  // index - first index of its block
  std::uint32_t attempt;
  std::uint32_t size;
  std::uint16_t file;
  RecordType type;
  std::uint8_t flags;
};
static_assert(sizeof(Entry) == 32, "references are spilled as 32-byte records");

struct Chunk {
  std::uint64_t offset, count;
};

struct Slot {
  std::uint32_t attempts = 0;
  ElementStatus status = ElementStatus::pending;
  std::int64_t winner = -1;  // into the block's entries
};

// Whether `a` supersedes `b` as the deciding record; on a tie the one read later wins.
bool supersedes(const Entry& a, const Entry& b) {
  return std::tie(a.attempt, a.t_end) >= std::tie(b.attempt, b.t_end);
}

// The fold rule of read_results, over one block's references in the order they were read.
void fold(const std::vector<Entry>& entries, std::vector<Slot>& slots) {
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    Slot& s = slots[e.local];
    ++s.attempts;
    const Entry* kept = s.winner < 0 ? nullptr : &entries[static_cast<std::size_t>(s.winner)];
    if (e.type == RecordType::done) {
      s.status = ElementStatus::done;
      if (!kept || kept->type != RecordType::done || supersedes(e, *kept))
        s.winner = static_cast<std::int64_t>(i);
    } else {
      if ((e.flags & Outcome::kFinal) && s.status != ElementStatus::done) s.status = ElementStatus::failed;
      if (!kept || (kept->type == RecordType::failed && supersedes(e, *kept)))
        s.winner = static_cast<std::int64_t>(i);
    }
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

struct ResultFold::State {
  std::uint64_t total = 0, block = 0, blocks = 0;
  stdfs::path dir;
  std::vector<stdfs::path> files;
  std::vector<std::vector<Entry>> buffered;  // per block, the references not spilled yet
  std::vector<std::vector<Chunk>> spilled;   // per block, in the order they were read
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
      v.shrink_to_fit();
    }
    buffered_count = 0;
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

ResultFold::ResultFold(const Session& session) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.total = session.total();
  s.dir = session.dir();
  s.block = std::max(kMinBlock, (s.total + kMaxBlocks - 1) / kMaxBlocks);
  s.blocks = (s.total + s.block - 1) / s.block;
  s.buffered.resize(s.blocks);
  s.spilled.resize(s.blocks);
  s.files = journal_scan::journal_files(session.journal_dir());
  if (s.files.size() > 0xFFFF)
    throw StoreError("journal directory '" + session.journal_dir().string() + "': more than 65535 journals");
  for (std::size_t f = 0; f < s.files.size(); ++f) {
    const stdfs::path& file = s.files[f];
    journal_scan::for_each_record(file, session.id().session, [&](const journal_scan::RecordRef& r) {
      if (r.index >= s.total)
        throw StoreError("journal '" + file.string() + "': a record names element " +
                         std::to_string(r.index) + ", but the session has " + std::to_string(s.total));
      const bool binary = utf8::first_invalid(r.result) != std::string_view::npos ||
                          r.result.find('\0') != std::string_view::npos;
      const std::uint64_t b = r.index / s.block;
      s.buffered[b].push_back({r.pos, r.t_end, static_cast<std::uint32_t>(r.index - b * s.block), r.attempt,
                               r.size, static_cast<std::uint16_t>(f), r.type,
                               static_cast<std::uint8_t>(r.flags | (binary ? kBinaryResult : 0))});
      if (++s.buffered_count >= kSpillEntries) s.spill_all();
    });
  }
}

ResultFold::~ResultFold() = default;

std::uint64_t ResultFold::total() const { return state_->total; }

bool ResultFold::any_binary_result() const {
  const State& s = *state_;
  std::vector<Slot> slots;
  for (std::size_t b = 0; b < s.blocks; ++b) {
    const std::vector<Entry> entries = s.entries_of(b);
    slots.assign(std::min(s.block, s.total - b * s.block), Slot{});
    fold(entries, slots);
    for (const Slot& slot : slots)
      if (slot.winner >= 0 && (entries[static_cast<std::size_t>(slot.winner)].flags & kBinaryResult))
        return true;
  }
  return false;
}

void ResultFold::for_each_block(
    const std::function<void(std::uint64_t first, const std::vector<ElementResult>& rows)>& each) const {
  const State& s = *state_;
  std::vector<Slot> slots;
  std::vector<ElementResult> rows;
  std::vector<const Entry*> wanted;
  for (std::size_t b = 0; b < s.blocks; ++b) {
    const std::uint64_t first = b * s.block;
    const std::vector<Entry> entries = s.entries_of(b);
    slots.assign(std::min(s.block, s.total - first), Slot{});
    fold(entries, slots);
    rows.resize(slots.size());
    wanted.clear();
    for (std::size_t k = 0; k < slots.size(); ++k) {
      rows[k].index = first + k;
      rows[k].status = slots[k].status;
      rows[k].attempts = slots[k].attempts;
      rows[k].outcome.reset();
      if (slots[k].winner >= 0) wanted.push_back(&entries[static_cast<std::size_t>(slots[k].winner)]);
    }
    // Deciding records in file order, nearby ones read together.
    std::sort(wanted.begin(), wanted.end(), [](const Entry* a, const Entry* b) {
      return std::tie(a->file, a->pos) < std::tie(b->file, b->pos);
    });
    std::unique_ptr<journal_scan::RecordReader> reader;
    std::size_t run_end = 0;  // wanted[..run_end) are covered by the last read
    std::uint64_t read_until = 0;
    for (std::size_t j = 0; j < wanted.size(); ++j) {
      const Entry& e = *wanted[j];
      if (j == 0 || e.file != wanted[j - 1]->file)
        reader = std::make_unique<journal_scan::RecordReader>(s.files[e.file]);
      if (j >= run_end) {
        run_end = j + 1;
        read_until = e.pos + e.size;
        while (run_end < wanted.size() && wanted[run_end]->file == e.file &&
               wanted[run_end]->pos - read_until <= kReadGap &&
               wanted[run_end]->pos + wanted[run_end]->size - e.pos <= kReadRun) {
          read_until = wanted[run_end]->pos + wanted[run_end]->size;
          ++run_end;
        }
      }
      rows[e.local].outcome = reader->read(e.pos, e.size, read_until);
    }
    each(first, rows);
  }
}

}  // namespace mpmux
