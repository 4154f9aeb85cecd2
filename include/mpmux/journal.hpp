// The session journal: the truth of a session. Append-only files, one per writer process,
// under DIR/sessions/<id>/journal/. See docs/formats.md.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/export.hpp"

namespace mpmux {

class Session;
namespace store {
class JournalUpload;
}

enum class RecordType : std::uint8_t {
  header = 1,  // first record of every journal file: session id, host, pid
  done = 2,    // an attempt that succeeded
  failed = 3,  // an attempt that failed (flag final: no retry remains)
};

/// What one attempt at one element ended with.
struct MPMUX_EXPORT Outcome {
  static constexpr std::uint8_t kFinal = 1;            // failed and no retry remains
  static constexpr std::uint8_t kResultTruncated = 2;  // result cut at the size limit
  static constexpr std::uint8_t kTimedOut = 4;         // killed by --timeout

  RecordType type = RecordType::done;
  std::uint64_t index = 0;
  std::uint32_t attempt = 1;  // 1 for the first attempt
  std::uint32_t worker = 0;   // MPI rank of the worker
  std::int64_t t_start = 0;   // ns since the Unix epoch
  std::int64_t t_end = 0;
  std::uint32_t pid = 0;
  std::int32_t exit_code = 0;  // -1 when killed by a signal
  std::int32_t signal = 0;
  std::uint8_t flags = 0;
  std::string host;
  std::string result;       // the task's result (stdout of --exec, bytes recorded by the API)
  std::string stderr_tail;  // last 4 KiB of stderr
};

/// Frames one record: [u32 length][u32 crc32c][u8 type][u64 index][u32 attempt][u32 worker]
/// [i64 t_start][i64 t_end][payload], little-endian; length and crc cover type..payload.
/// Payload of done/failed: [u32 pid][i32 exit_code][i32 signal][u8 flags][u16 host_len][host]
/// [u32 result_len][result][u32 stderr_len][stderr]. Throws StoreError when the record would
/// exceed kMaxRecordBytes (the host is cut at 65535 bytes).
MPMUX_EXPORT void append_record(std::string& out, const Outcome& outcome);
/// Largest value of a record's length field; readers treat anything larger as damage.
inline constexpr std::uint32_t kMaxRecordBytes = 1u << 30;

/// CRC-32C (Castagnoli). Chains: crc32c(b, nb, crc32c(a, na)) == crc32c of a then b.
/// Uses the SSE4.2 crc32 instruction when the CPU has it.
MPMUX_EXPORT std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0);
namespace detail {
/// The table-driven CRC-32C that crc32c() falls back to; exposed so tests can compare both.
MPMUX_EXPORT std::uint32_t crc32c_portable(const void* data, std::size_t n, std::uint32_t crc = 0);
}  // namespace detail

/// Appends framed records to a new journal file of its own. Group commit in two steps, both
/// done by sync(), which is cheap to call often:
/// - write: buffered records are written to the file at most every millisecond. Written records
///   survive the death of the process (SIGKILL, the OOM killer), not that of the node.
/// - fdatasync: at most every commit_interval(), which adapts to the work: a quarter of the
///   median duration (t_end - t_start) of the last 64 records, so that a kill of the node
///   re-runs few elements that had ended, but no less than 10 ms nor less than ten times what an
///   fdatasync took here (its cost stays under a tenth of the time), and never more than the
///   `commit_interval_s` given (the bound before any record).
/// A record is durable once flush() has returned after it was appended, or once a sync() that
/// did fdatasync (see syncs()) has returned. append() makes no system call. Not thread-safe.
///
/// Of a session on Azure Blob storage, the journal is written to the local mirror as above and
/// copied to the append blob journal/<name>.mjl of Session::store_url() by a thread of its own
/// (store/journal_upload.hpp); flush() also waits until the blob holds every byte written, sync()
/// never waits on it.
class MPMUX_EXPORT JournalWriter {
 public:
  /// Creates DIR/journal/<host>-<pid>-<time>.mjl with its header record; the file and its
  /// directory entry are durable on return. Throws StoreError.
  JournalWriter(const Session& session, std::string_view host, std::uint32_t pid,
                double commit_interval_s = 0.2);
  /// The same in any journal directory, for a session known by its id.
  JournalWriter(const std::filesystem::path& journal_dir, std::string_view session_id, std::string_view host,
                std::uint32_t pid, double commit_interval_s = 0.2);
  ~JournalWriter();  // flush(), errors only logged
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;

  void append(const Outcome& outcome);
  /// What append_framed tells of each record it took.
  struct Taken {
    RecordType type;
    std::uint64_t index;
    std::uint32_t attempt;
    std::uint8_t flags;
  };
  /// Appends records framed elsewhere (by append_record on a worker) verbatim. Every record's
  /// length, checksum, type (done or failed) and payload are checked first; on a bad frame
  /// StoreError is thrown and nothing of `records` is appended. Then `each` hears of every
  /// record, in order.
  void append_framed(std::string_view records, const std::function<void(const Taken&)>& each = {});
  /// Writes what is buffered when 1 ms has passed since the last write (or beyond 8 MiB), and
  /// fdatasyncs when commit_interval() has passed since the last fdatasync; otherwise makes no
  /// system call.
  void sync();
  /// The fdatasync interval in force now, in seconds (see the class comment).
  double commit_interval() const;
  /// Writes and fdatasyncs now (and waits for the blob of a remote session). Throws StoreError on
  /// a write error (full disk...); the records not written stay buffered, so a later flush() can
  /// still make them durable.
  void flush();
  /// After a write error: drops what is buffered (never acknowledged) and closes the file, so
  /// the journal on disk is exactly what was acknowledged. Appending afterwards is an error.
  void abandon();
  const std::filesystem::path& path() const { return path_; }
  std::uint64_t records() const { return records_; }
  /// How many of the records() are durable: written and fdatasynced (only written with
  /// set_fsync(false)); of a remote session's journal, also in its blob (as of the last flush()).
  std::uint64_t durable_records() const { return durable_records_; }
  /// True for the journal of a session on Azure Blob storage, copied to its blob.
  bool uploads() const { return upload_ != nullptr; }
  /// fdatasyncs done so far (the header's included).
  std::uint64_t syncs() const { return syncs_; }
  /// Bytes appended but not yet written to the file.
  std::size_t buffered_bytes() const { return buffer_.size(); }
  /// With false, flush() and sync() write but never fdatasync: records survive a crash of the
  /// process but not of the node. For benchmarks and scratch sessions.
  void set_fsync(bool on) { fsync_ = on; }
  /// Replaces the monotonic clock (ns) that group commit is measured with; for tests.
  void set_clock(std::function<std::int64_t()> clock);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::string buffer_;
  std::uint64_t records_ = 0;
  std::uint64_t durable_records_ = 0;
  std::uint64_t syncs_ = 0;
  std::int64_t last_sync_ns_ = 0;             // of the last fdatasync (or flush)
  std::int64_t last_write_ns_ = 0;            // of the last write
  std::int64_t interval_ns_ = 0;              // the longest commit interval
  std::int64_t fdatasync_ns_ = 0;             // what the last fdatasync took
  std::array<std::int64_t, 64> durations_{};  // of the last records appended, a ring
  std::uint64_t durations_seen_ = 0;
  bool unsynced_ = false;  // bytes written since the last fdatasync
  bool fsync_ = true;
  std::function<std::int64_t()> clock_;
  std::unique_ptr<store::JournalUpload> upload_;  // of a session on Azure Blob storage
  JournalWriter(const std::filesystem::path& journal_dir, std::string_view session_id, std::string_view host,
                std::uint32_t pid, double commit_interval_s, const std::string& upload_url);
  void commit();  // write and fdatasync
  void write_buffer();
  void note_duration(std::int64_t t_start, std::int64_t t_end);
  std::int64_t commit_interval_ns() const;
  std::int64_t now() const;
};

/// Result of reading one journal file.
struct MPMUX_EXPORT JournalFile {
  std::filesystem::path path;
  std::string session;  // from the header record
  std::vector<Outcome> outcomes;
  std::uint64_t valid_bytes = 0;  // bytes of whole, valid records
  std::uint64_t torn_bytes = 0;   // bytes of an incomplete or torn last record (ignored)
};

/// Reads one journal. A torn tail (a last record that is incomplete, fails its checksum and
/// reaches the end of the file, or trailing zeros) is ignored and counted in torn_bytes; with
/// `cut_torn_tail` the file is truncated to valid_bytes and fsynced (never do that to a journal
/// a live writer still appends to). A bad record followed by more data is corruption: throws
/// StoreError naming the file and byte offset, and nothing is rewritten. A journal whose header
/// names another session than `expect_session` is refused (StoreError); an empty
/// `expect_session` accepts any. A file too short to hold its header is all torn tail.
MPMUX_EXPORT JournalFile read_journal(const std::filesystem::path& file, std::string_view expect_session,
                                      bool cut_torn_tail = false);

enum class ElementStatus : std::uint8_t { pending = 0, done = 1, failed = 2 };

/// The state of every element of a session, folded from all its journals.
struct MPMUX_EXPORT SessionState {
  std::vector<ElementStatus> status;    // per element
  std::vector<std::uint32_t> attempts;  // outcome records seen per element
  std::uint64_t done = 0, failed = 0;   // failed: failed for good (final flag), not done
  std::uint64_t fenced = 0;             // done records set aside by the fenced rule
  std::uint64_t torn_bytes = 0;

  /// Indices to hand out: pending ones, and failed ones when `include_failed`.
  std::vector<std::uint64_t> pending_indices(bool include_failed = false) const;
};

/// Folds every journal (*.mjl) of the session. A done record makes an element done whatever else
/// was recorded for it; a failed record with the kFinal flag makes it failed unless a done
/// exists; attempts counts done and failed records. When the session's store holds committed
/// batches (runs across participants), the done record of an element's batch winner decides and
/// its other done records are fenced (docs/design.md "The fenced rule"). Reads the journals
/// through the same fold as read_results(), in memory bounded but for the per-element vectors
/// returned. Throws StoreError for a corrupt journal, one of another session, or a record naming
/// an index >= total.
MPMUX_EXPORT SessionState read_session_state(const Session& session, bool cut_torn_tails = false);
/// The same for the journals in `journal_dir` of session `session_id` with `total` elements,
/// without committed batches (the fold of one participant).
MPMUX_EXPORT SessionState read_session_state(const std::filesystem::path& journal_dir,
                                             std::string_view session_id, std::uint64_t total,
                                             bool cut_torn_tails = false);

/// The counts of SessionState without its per-element vectors.
struct MPMUX_EXPORT SessionCounts {
  std::uint64_t total = 0, done = 0, failed = 0, fenced = 0, torn_bytes = 0;
};
/// The counts of read_session_state(session), read in memory bounded whatever the session's
/// size (what `mpmux stat` and `mpmux done` need). Throws as read_session_state.
MPMUX_EXPORT SessionCounts read_session_counts(const Session& session);

}  // namespace mpmux
