#include "mpmux/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "mpmux/error.hpp"
#include "mpmux/session.hpp"
#include "store/fs.hpp"
#include "store/journal_scan.hpp"
#include "store/journal_upload.hpp"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace mpmux {

namespace stdfs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// CRC-32C

namespace {

constexpr std::uint32_t kCastagnoliReflected = 0x82F63B78u;

struct CrcTables {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  constexpr CrcTables() {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kCastagnoliReflected : c >> 1;
      t[0][i] = c;
    }
    // Slicing-by-8: t[k][i] is the CRC of byte i followed by k zero bytes.
    for (std::size_t k = 1; k < 8; ++k)
      for (std::size_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
  }
};
constexpr CrcTables kCrc{};

inline std::uint32_t load_le32(const unsigned char* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
         std::uint32_t(p[3]) << 24;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(const void* data, std::size_t n,
                                                             std::uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);  // x86 is little-endian, which is the order the instruction consumes
    c = _mm_crc32_u64(c, v);
  }
  auto c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; --n) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}
#endif

using CrcFunction = std::uint32_t (*)(const void*, std::size_t, std::uint32_t);

CrcFunction pick_crc32c() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) return crc32c_sse42;
#endif
  return detail::crc32c_portable;
}

}  // namespace

namespace detail {
std::uint32_t crc32c_portable(const void* data, std::size_t n, std::uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  const auto& t = kCrc.t;
  std::uint32_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    std::uint32_t lo = load_le32(p) ^ c;
    std::uint32_t hi = load_le32(p + 4);
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
  }
  for (; n > 0; --n) c = t[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
  return ~c;
}
}  // namespace detail

std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc) {
  static const CrcFunction fn = pick_crc32c();
  return fn(data, n, crc);
}

// ---------------------------------------------------------------------------------------------
// Record encoding

namespace {

constexpr std::size_t kFrameHead = 8;                             // [u32 length][u32 crc32c]
constexpr std::size_t kFixedBody = 1 + 8 + 4 + 4 + 8 + 8;         // type..t_end
constexpr std::size_t kOutcomeFixed = 4 + 4 + 4 + 1 + 2 + 4 + 4;  // payload without strings
constexpr std::size_t kMaxShortString = 0xFFFF;                   // host and session id have a u16 length
constexpr std::size_t kWriteThreshold = 8u << 20;                 // sync() writes a buffer this large early
// Group commit (see JournalWriter): how often sync() writes, and the bounds of the fdatasync interval.
constexpr std::int64_t kWriteEveryNs = 1'000'000;
constexpr std::int64_t kMinCommitNs = 10'000'000;
constexpr std::int64_t kCommitPerDuration = 4;    // the interval is at most a quarter of the median task
constexpr std::int64_t kCommitPerFdatasync = 10;  // and at least ten fdatasyncs long

// Explicit little-endian stores and loads, so the format does not depend on the host.
struct Put {
  char* p;
  void u8(std::uint8_t v) { *p++ = static_cast<char>(v); }
  void u16(std::uint16_t v) {
    u8(static_cast<std::uint8_t>(v));
    u8(static_cast<std::uint8_t>(v >> 8));
  }
  void u32(std::uint32_t v) {
    for (int k = 0; k < 32; k += 8) u8(static_cast<std::uint8_t>(v >> k));
  }
  void u64(std::uint64_t v) {
    for (int k = 0; k < 64; k += 8) u8(static_cast<std::uint8_t>(v >> k));
  }
  void bytes(std::string_view s) {
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
};

struct Get {
  const unsigned char* p;
  const unsigned char* end;
  bool ok = true;
  bool need(std::size_t n) {
    if (ok && static_cast<std::size_t>(end - p) < n) ok = false;
    return ok;
  }
  std::uint8_t u8() { return need(1) ? *p++ : 0; }
  std::uint16_t u16() {
    if (!need(2)) return 0;
    std::uint16_t v = static_cast<std::uint16_t>(p[0] | p[1] << 8);
    p += 2;
    return v;
  }
  std::uint32_t u32() {
    if (!need(4)) return 0;
    std::uint32_t v = load_le32(p);
    p += 4;
    return v;
  }
  std::uint64_t u64() {
    if (!need(8)) return 0;
    std::uint64_t v = std::uint64_t(load_le32(p)) | std::uint64_t(load_le32(p + 4)) << 32;
    p += 8;
    return v;
  }
  std::string_view bytes(std::size_t n) {
    if (!need(n)) return {};
    std::string_view v(reinterpret_cast<const char*>(p), n);
    p += n;
    return v;
  }
};

// Appends a frame whose body is `body_size` bytes, filled in by `fill`, and seals it.
template <class Fill>
void frame(std::string& out, std::size_t body_size, Fill&& fill) {
  std::size_t start = out.size();
  out.resize(start + kFrameHead + body_size);
  char* body = out.data() + start + kFrameHead;
  fill(Put{body});
  Put head{out.data() + start};
  head.u32(static_cast<std::uint32_t>(body_size));
  head.u32(crc32c(body, body_size));
}

void put_fixed(Put& w, RecordType type, std::uint64_t index, std::uint32_t attempt, std::uint32_t worker,
               std::int64_t t_start, std::int64_t t_end) {
  w.u8(static_cast<std::uint8_t>(type));
  w.u64(index);
  w.u32(attempt);
  w.u32(worker);
  w.u64(static_cast<std::uint64_t>(t_start));
  w.u64(static_cast<std::uint64_t>(t_end));
}

void append_header(std::string& out, std::string_view session, std::string_view host, std::uint32_t pid,
                   std::int64_t created_ns) {
  session = session.substr(0, kMaxShortString);
  host = host.substr(0, kMaxShortString);
  std::size_t body = kFixedBody + 2 + session.size() + 2 + host.size() + 4 + 8;
  frame(out, body, [&](Put w) {
    put_fixed(w, RecordType::header, 0, 0, 0, created_ns, created_ns);
    w.u16(static_cast<std::uint16_t>(session.size()));
    w.bytes(session);
    w.u16(static_cast<std::uint16_t>(host.size()));
    w.bytes(host);
    w.u32(pid);
    w.u64(static_cast<std::uint64_t>(created_ns));
  });
}

}  // namespace

void append_record(std::string& out, const Outcome& o) {
  if (o.type != RecordType::done && o.type != RecordType::failed)
    throw StoreError("journal record of element " + std::to_string(o.index) +
                     ": only done and failed outcomes can be recorded");
  std::string_view host = std::string_view(o.host).substr(0, kMaxShortString);
  std::uint64_t body =
      kFixedBody + kOutcomeFixed + host.size() + std::uint64_t(o.result.size()) + o.stderr_tail.size();
  if (body > kMaxRecordBytes)
    throw StoreError("journal record of element " + std::to_string(o.index) + " would be " +
                     std::to_string(body) + " bytes, more than the limit of " +
                     std::to_string(kMaxRecordBytes));
  frame(out, static_cast<std::size_t>(body), [&](Put w) {
    put_fixed(w, o.type, o.index, o.attempt, o.worker, o.t_start, o.t_end);
    w.u32(o.pid);
    w.u32(static_cast<std::uint32_t>(o.exit_code));
    w.u32(static_cast<std::uint32_t>(o.signal));
    w.u8(o.flags);
    w.u16(static_cast<std::uint16_t>(host.size()));
    w.bytes(host);
    w.u32(static_cast<std::uint32_t>(o.result.size()));
    w.bytes(o.result);
    w.u32(static_cast<std::uint32_t>(o.stderr_tail.size()));
    w.bytes(o.stderr_tail);
  });
}

// ---------------------------------------------------------------------------------------------
// Record decoding

namespace {

enum class FrameCheck { ok, short_head, bad_length, past_eof, bad_crc };

struct Frame {
  std::uint32_t length = 0;  // of the body
  RecordType type{};
  std::uint64_t index = 0;
  std::uint32_t attempt = 0, worker = 0;
  std::int64_t t_start = 0, t_end = 0;
  const unsigned char* payload = nullptr;
  std::size_t payload_size = 0;
};

struct OutcomePayload {
  std::uint32_t pid = 0;
  std::int32_t exit_code = 0, signal = 0;
  std::uint8_t flags = 0;
  std::string_view host, result, stderr_tail;
};

// Checks the frame at `at`, of which `remaining` bytes are left in the file or batch; `at` must
// hold min(remaining, 8 + length) bytes.
FrameCheck check_frame(const unsigned char* at, std::uint64_t remaining, Frame& f) {
  if (remaining < kFrameHead) return FrameCheck::short_head;
  std::uint32_t length = load_le32(at);
  if (length < kFixedBody || length > kMaxRecordBytes) return FrameCheck::bad_length;
  if (remaining - kFrameHead < length) return FrameCheck::past_eof;
  const unsigned char* body = at + kFrameHead;
  if (crc32c(body, length) != load_le32(at + 4)) return FrameCheck::bad_crc;
  Get r{body, body + length};
  f.length = length;
  f.type = static_cast<RecordType>(r.u8());
  f.index = r.u64();
  f.attempt = r.u32();
  f.worker = r.u32();
  f.t_start = static_cast<std::int64_t>(r.u64());
  f.t_end = static_cast<std::int64_t>(r.u64());
  f.payload = r.p;
  f.payload_size = length - kFixedBody;
  return FrameCheck::ok;
}

const char* describe(FrameCheck c) {
  switch (c) {
    case FrameCheck::short_head:
      return "fewer bytes than a record head";
    case FrameCheck::bad_length:
      return "impossible record length";
    case FrameCheck::past_eof:
      return "record runs past the end";
    case FrameCheck::bad_crc:
      return "checksum mismatch";
    case FrameCheck::ok:
      break;
  }
  return "ok";
}

bool parse_outcome(const Frame& f, OutcomePayload& out) {
  Get r{f.payload, f.payload + f.payload_size};
  out.pid = r.u32();
  out.exit_code = static_cast<std::int32_t>(r.u32());
  out.signal = static_cast<std::int32_t>(r.u32());
  out.flags = r.u8();
  out.host = r.bytes(r.u16());
  out.result = r.bytes(r.u32());
  out.stderr_tail = r.bytes(r.u32());
  return r.ok && r.p == r.end;
}

struct HeaderPayload {
  std::string_view session, host;
  std::uint32_t pid = 0;
  std::int64_t created_ns = 0;
};

bool parse_header(const Frame& f, HeaderPayload& out) {
  Get r{f.payload, f.payload + f.payload_size};
  out.session = r.bytes(r.u16());
  out.host = r.bytes(r.u16());
  out.pid = r.u32();
  out.created_ns = static_cast<std::int64_t>(r.u64());
  return r.ok && r.p == r.end;
}

bool is_outcome(RecordType t) { return t == RecordType::done || t == RecordType::failed; }

std::string journal_name(const stdfs::path& file) { return "journal '" + file.string() + "'"; }

// A journal this user may not open (permissions, a read-only file system) is the user's to fix,
// like an unwritable root: a UsageError (exit 2). Other errors are the store's.
[[noreturn]] void throw_open_failed(const stdfs::path& file, const char* what, int err) {
  std::string message = journal_name(file) + ": " + what + ": " + posix::error_text(err);
  if (err == EACCES || err == EPERM || err == EROFS) throw UsageError(message);
  throw StoreError(message);
}

// Whether a whole, valid outcome record starts anywhere in data[from, size): then the bad record
// before it is damage in the middle of the journal, not a torn tail (e.g. a flipped bit in a
// length field must not make us cut off every record after it).
bool valid_record_after(const unsigned char* data, std::size_t size, std::size_t from) {
  Frame f;
  for (std::size_t q = from; q + kFrameHead + kFixedBody <= size; ++q) {
    std::uint32_t length = load_le32(data + q);
    if (length < kFixedBody || length > size - q - kFrameHead) continue;
    if (!is_outcome(static_cast<RecordType>(data[q + kFrameHead]))) continue;
    if (check_frame(data + q, size - q, f) == FrameCheck::ok) return true;
  }
  return false;
}

// Reads one journal file through a window of a few MiB (a window grows only to hold one large
// record), so reading a journal of any size costs little memory. The file is judged as it was
// when opened: a live writer may append more, which is not read.
class JournalFileReader {
 public:
  JournalFileReader(const stdfs::path& file, bool writable) : file_(file) {
    int fd = posix::open_file_noexcept(file, writable ? O_RDWR : O_RDONLY);
    if (fd < 0) throw_open_failed(file, "cannot open", -fd);
    fd_ = posix::Fd(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0)
      throw StoreError(journal_name(file) + ": stat failed: " + posix::error_text(errno));
    size_ = static_cast<std::uint64_t>(st.st_size);
  }

  std::uint64_t size() const { return size_; }

  bool holds(std::uint64_t pos, std::size_t n) const { return pos >= begin_ && pos + n <= begin_ + filled_; }

  // Bytes [pos, pos + n) of the file, n <= size() - pos; valid until the next call. A read
  // fetches at least `read_ahead` bytes (less at the end of the file).
  const unsigned char* window(std::uint64_t pos, std::size_t n, std::size_t read_ahead = kChunk) {
    if (holds(pos, n)) return buf_.get() + (pos - begin_);
    std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(std::max(n, read_ahead), size_ - pos));
    if (want > capacity_) {
      // No zero-fill of a buffer that pread() overwrites anyway.
      buf_ = std::make_unique_for_overwrite<unsigned char[]>(want);
      capacity_ = want;
    }
    std::size_t got = 0;
    while (got < want) {
      ssize_t r = ::pread(fd_.get(), buf_.get() + got, want - got, static_cast<off_t>(pos + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw StoreError(journal_name(file_) + ": read failed: " + posix::error_text(errno));
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    begin_ = pos;
    filled_ = got;
    if (got < n) throw StoreError(journal_name(file_) + ": shrank while being read");
    return buf_.get();
  }

  bool all_zero(std::uint64_t from) {
    for (std::uint64_t q = from; q < size_;) {
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, size_ - q));
      const unsigned char* p = window(q, n);
      if (!std::all_of(p, p + n, [](unsigned char c) { return c == 0; })) return false;
      q += n;
    }
    return true;
  }

  void truncate(std::uint64_t length) {
    if (::ftruncate(fd_.get(), static_cast<off_t>(length)) != 0)
      throw StoreError(journal_name(file_) + ": cutting the torn tail failed: " + posix::error_text(errno));
    if (::fsync(fd_.get()) != 0)
      throw StoreError(journal_name(file_) + ": fsync failed: " + posix::error_text(errno));
  }

 private:
  static constexpr std::size_t kChunk = 4u << 20;
  stdfs::path file_;
  posix::Fd fd_;
  std::uint64_t size_ = 0;
  std::unique_ptr<unsigned char[]> buf_;
  std::size_t capacity_ = 0;
  std::uint64_t begin_ = 0;  // file offset of buf_[0]
  std::size_t filled_ = 0;
};

// Whether the bad record at `pos` is a torn tail (see read_journal in journal.hpp).
bool is_torn_tail(JournalFileReader& r, std::uint64_t pos, FrameCheck check) {
  if (check == FrameCheck::short_head) return true;
  if (r.all_zero(pos)) return true;
  std::uint32_t length = load_le32(r.window(pos, kFrameHead));
  if (check == FrameCheck::past_eof) {
    // Less than one record (at most kMaxRecordBytes) is left.
    auto rest = static_cast<std::size_t>(r.size() - pos);
    return !valid_record_after(r.window(pos, rest), rest, 1);
  }
  if (check == FrameCheck::bad_crc) return r.all_zero(pos + kFrameHead + length);
  return false;
}

struct ScanResult {
  std::string session;
  std::uint64_t valid_bytes = 0;
  std::uint64_t torn_bytes = 0;
};

[[noreturn]] void throw_corrupt(const stdfs::path& file, std::uint64_t pos, std::string_view why) {
  throw StoreError(journal_name(file) + ": corrupt record at byte " + std::to_string(pos) + ": " +
                   std::string(why));
}

// Walks the records of one journal, calling on_outcome(pos, frame, payload) for each done/failed
// record after checking the header. Throws StoreError on corruption.
template <class OnOutcome>
ScanResult scan_journal(const stdfs::path& file, JournalFileReader& r, std::string_view expect_session,
                        OnOutcome&& on_outcome) {
  ScanResult res;
  const std::uint64_t size = r.size();
  std::uint64_t pos = 0;
  bool have_header = false;
  Frame f;
  OutcomePayload payload;
  while (pos < size) {
    const std::uint64_t remaining = size - pos;
    const unsigned char* at =
        r.window(pos, static_cast<std::size_t>(std::min<std::uint64_t>(remaining, kFrameHead)));
    if (remaining >= kFrameHead) {
      std::uint64_t whole = kFrameHead + std::uint64_t(load_le32(at));
      if (whole <= remaining && whole <= kFrameHead + kMaxRecordBytes) at = r.window(pos, whole);
    }
    FrameCheck check = check_frame(at, remaining, f);
    if (check != FrameCheck::ok) {
      if (!is_torn_tail(r, pos, check)) throw_corrupt(file, pos, describe(check));
      break;
    }
    if (!have_header) {
      HeaderPayload h;
      if (f.type != RecordType::header) throw_corrupt(file, pos, "the first record is not a header");
      if (!parse_header(f, h)) throw_corrupt(file, pos, "malformed header payload");
      if (!expect_session.empty() && h.session != expect_session)
        throw StoreError(journal_name(file) + " belongs to session " + std::string(h.session) + ", not " +
                         std::string(expect_session));
      res.session = h.session;
      have_header = true;
    } else {
      if (!is_outcome(f.type)) throw_corrupt(file, pos, "unexpected record type");
      if (!parse_outcome(f, payload)) throw_corrupt(file, pos, "malformed outcome payload");
      on_outcome(pos, f, payload);
    }
    pos += kFrameHead + f.length;
  }
  res.valid_bytes = pos;
  res.torn_bytes = size - pos;
  return res;
}

Outcome to_outcome(const Frame& f, const OutcomePayload& p) {
  Outcome o;
  o.type = f.type;
  o.index = f.index;
  o.attempt = f.attempt;
  o.worker = f.worker;
  o.t_start = f.t_start;
  o.t_end = f.t_end;
  o.pid = p.pid;
  o.exit_code = p.exit_code;
  o.signal = p.signal;
  o.flags = p.flags;
  o.host = p.host;
  o.result = p.result;
  o.stderr_tail = p.stderr_tail;
  return o;
}

}  // namespace

JournalFile read_journal(const stdfs::path& file, std::string_view expect_session, bool cut_torn_tail) {
  JournalFileReader reader(file, cut_torn_tail);
  JournalFile out;
  out.path = file;
  ScanResult res =
      scan_journal(file, reader, expect_session, [&](std::uint64_t, const Frame& f, const OutcomePayload& p) {
        out.outcomes.push_back(to_outcome(f, p));
      });
  out.session = std::move(res.session);
  out.valid_bytes = res.valid_bytes;
  out.torn_bytes = res.torn_bytes;
  if (cut_torn_tail && res.torn_bytes > 0) reader.truncate(res.valid_bytes);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Record by record

namespace journal_scan {

std::vector<stdfs::path> journal_files(const stdfs::path& dir) {
  std::vector<stdfs::path> files;
  std::error_code ec;
  for (stdfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".mjl") files.push_back(it->path());
  }
  if (ec) throw StoreError("journal directory '" + dir.string() + "': cannot list: " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

std::uint64_t for_each_record(const stdfs::path& file, std::string_view expect_session,
                              const std::function<void(const RecordRef&)>& each, bool cut_torn_tail) {
  JournalFileReader reader(file, cut_torn_tail);
  RecordRef ref;
  const auto on_outcome = [&](std::uint64_t pos, const Frame& f, const OutcomePayload& p) {
    ref.pos = pos;
    ref.size = static_cast<std::uint32_t>(kFrameHead + f.length);
    ref.type = f.type;
    ref.index = f.index;
    ref.attempt = f.attempt;
    ref.worker = f.worker;
    ref.t_start = f.t_start;
    ref.t_end = f.t_end;
    ref.pid = p.pid;
    ref.flags = p.flags;
    ref.host = p.host;
    ref.result = p.result;
    each(ref);
  };
  const ScanResult res = scan_journal(file, reader, expect_session, on_outcome);
  if (cut_torn_tail && res.torn_bytes > 0) reader.truncate(res.valid_bytes);
  return res.torn_bytes;
}

struct RecordReader::State {
  stdfs::path file;
  JournalFileReader reader;
};

RecordReader::RecordReader(const stdfs::path& file)
    : state_(std::make_unique<State>(State{file, JournalFileReader(file, false)})) {}
RecordReader::~RecordReader() = default;
RecordReader::RecordReader(RecordReader&&) noexcept = default;
RecordReader& RecordReader::operator=(RecordReader&&) noexcept = default;

Outcome RecordReader::read(std::uint64_t pos, std::uint32_t size, std::uint64_t read_until) {
  JournalFileReader& r = state_->reader;
  if (pos + size > r.size()) throw_corrupt(state_->file, pos, "record runs past the end");
  const unsigned char* at = nullptr;
  if (r.holds(pos, size)) {
    at = r.window(pos, size);
  } else {
    const std::uint64_t end = std::min(std::max(pos + size, read_until), r.size());
    at = r.window(pos, static_cast<std::size_t>(end - pos), 0);
  }
  Frame f;
  OutcomePayload payload;
  const FrameCheck check = check_frame(at, size, f);
  if (check != FrameCheck::ok) throw_corrupt(state_->file, pos, describe(check));
  if (!is_outcome(f.type) || !parse_outcome(f, payload))
    throw_corrupt(state_->file, pos, "malformed outcome payload");
  return to_outcome(f, payload);
}

}  // namespace journal_scan

// ---------------------------------------------------------------------------------------------
// JournalWriter

namespace {
// The host name goes into the file name, so keep it to safe characters.
std::string file_safe(std::string_view host) {
  std::string out;
  for (char c : host.substr(0, 64)) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-';
    out.push_back(ok ? c : '_');
  }
  return out.empty() ? "host" : out;
}
}  // namespace

JournalWriter::JournalWriter(const Session& session, std::string_view host, std::uint32_t pid,
                             double commit_interval_s)
    : JournalWriter(session.journal_dir(), session.id().session, host, pid, commit_interval_s,
                    session.id().is_remote() ? session.store_url() : std::string()) {}

JournalWriter::JournalWriter(const stdfs::path& journal_dir, std::string_view session_id,
                             std::string_view host, std::uint32_t pid, double commit_interval_s)
    : JournalWriter(journal_dir, session_id, host, pid, commit_interval_s, std::string()) {}

JournalWriter::JournalWriter(const stdfs::path& journal_dir, std::string_view session_id,
                             std::string_view host, std::uint32_t pid, double commit_interval_s,
                             const std::string& upload_url)
    : interval_ns_(static_cast<std::int64_t>(commit_interval_s * 1e9)) {
  std::int64_t created = posix::unix_time_ns();
  const std::string prefix = file_safe(host) + "-" + std::to_string(pid) + "-";
  // The name is unique unless the same host and pid open two journals in one nanosecond.
  for (int tries = 0;; ++tries, ++created) {
    path_ = journal_dir / (prefix + std::to_string(created) + ".mjl");
    fd_ = posix::open_file_noexcept(path_, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, posix::kFileMode);
    if (fd_ >= 0) break;
    if (-fd_ != EEXIST || tries == 100) throw_open_failed(path_, "cannot create", -fd_);
  }
  try {
    // The local file first: a mirror that sees the blob finds the file it would fill there.
    if (!upload_url.empty())
      upload_ = std::make_unique<store::JournalUpload>(upload_url, "journal/" + path_.filename().string());
    append_header(buffer_, session_id, host, pid, created);
    flush();
    posix::fsync_dir(journal_dir);
  } catch (...) {
    // A journal without its header is useless; do not leave it behind.
    ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
    throw;
  }
}

JournalWriter::~JournalWriter() {
  if (fd_ < 0) return;
  try {
    flush();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpmux: %s (%zu bytes of journal records lost)\n", e.what(), buffer_.size());
  }
  ::close(fd_);
}

void JournalWriter::abandon() {
  buffer_.clear();
  upload_.reset();  // appends what was written, which is what was acknowledged
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void JournalWriter::append(const Outcome& outcome) {
  append_record(buffer_, outcome);
  ++records_;
  note_duration(outcome.t_start, outcome.t_end);
}

void JournalWriter::note_duration(std::int64_t t_start, std::int64_t t_end) {
  durations_[durations_seen_++ % durations_.size()] = std::max<std::int64_t>(0, t_end - t_start);
}

std::int64_t JournalWriter::commit_interval_ns() const {
  if (durations_seen_ == 0) return interval_ns_;
  const std::size_t n = std::min<std::size_t>(durations_seen_, durations_.size());
  std::array<std::int64_t, 64> sorted;
  std::copy_n(durations_.begin(), n, sorted.begin());
  std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.begin() + n);
  const std::int64_t median = sorted[n / 2];
  const std::int64_t floor = std::max(kMinCommitNs, fsync_ ? kCommitPerFdatasync * fdatasync_ns_ : 0);
  return std::min(interval_ns_, std::max(floor, median / kCommitPerDuration));
}

double JournalWriter::commit_interval() const { return static_cast<double>(commit_interval_ns()) / 1e9; }

void JournalWriter::append_framed(std::string_view records, const std::function<void(const Taken&)>& each) {
  const auto* data = reinterpret_cast<const unsigned char*>(records.data());
  std::size_t pos = 0, count = 0;
  Frame f;
  OutcomePayload payload;
  std::vector<Taken> taken;
  while (pos < records.size()) {
    FrameCheck check = check_frame(data + pos, records.size() - pos, f);
    const char* why = check != FrameCheck::ok      ? describe(check)
                      : !is_outcome(f.type)        ? "not a done or failed record"
                      : !parse_outcome(f, payload) ? "malformed outcome payload"
                                                   : nullptr;
    if (why)
      throw StoreError(journal_name(path_) + ": bad framed record at byte " + std::to_string(pos) + " of " +
                       std::to_string(records.size()) + " received: " + why);
    if (each) taken.push_back({f.type, f.index, f.attempt, payload.flags});
    note_duration(f.t_start, f.t_end);
    pos += kFrameHead + f.length;
    ++count;
  }
  buffer_.append(records);
  records_ += count;
  for (const Taken& t : taken) each(t);
}

std::int64_t JournalWriter::now() const { return clock_ ? clock_() : posix::monotonic_ns(); }

void JournalWriter::set_clock(std::function<std::int64_t()> clock) {
  clock_ = std::move(clock);
  last_sync_ns_ = last_write_ns_ = now();
}

void JournalWriter::sync() {
  if (buffer_.empty() && !unsynced_) return;
  const std::int64_t t = now();
  // Written at once, the records survive a killed process; the fdatasync, which costs far more,
  // waits for its interval (the median is worked out only when the shortest one has passed).
  if (!buffer_.empty() && (t - last_write_ns_ >= kWriteEveryNs || buffer_.size() >= kWriteThreshold))
    write_buffer();
  if (t - last_sync_ns_ >= kMinCommitNs && t - last_sync_ns_ >= commit_interval_ns()) commit();
  if (upload_) upload_->check();
}

void JournalWriter::flush() {
  commit();
  if (upload_) {
    upload_->wait();
    durable_records_ = records_;
  }
}

void JournalWriter::commit() {
  write_buffer();
  if (unsynced_ && fsync_) {
    const std::int64_t started = posix::monotonic_ns();
    if (::fdatasync(fd_) != 0)
      throw StoreError(journal_name(path_) + ": fdatasync failed: " + posix::error_text(errno));
    fdatasync_ns_ = posix::monotonic_ns() - started;
    unsynced_ = false;
    ++syncs_;
  }
  if (!upload_) durable_records_ = records_;  // write_buffer() wrote every record or threw
  last_sync_ns_ = now();
}

void JournalWriter::write_buffer() {
  last_write_ns_ = now();
  if (buffer_.empty()) return;
  posix::IoResult r = posix::write_all(fd_, buffer_.data(), buffer_.size());
  if (r.bytes > 0) unsynced_ = true;
  if (upload_) upload_->push(std::string_view(buffer_).substr(0, r.bytes));
  if (r.error == 0) {
    buffer_.clear();
    return;
  }
  // Keep what was not written: O_APPEND and a single writer mean a later write continues
  // exactly where this one stopped, completing the record it may have cut.
  buffer_.erase(0, r.bytes);
  throw StoreError(journal_name(path_) + ": write failed: " + posix::error_text(r.error));
}

}  // namespace mpmux
