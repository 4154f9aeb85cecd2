// A small POSIX file layer for session storage: an owning fd, EINTR-safe whole reads and writes,
// fsync of files and directories, and atomic file replacement. Errors are StoreError naming the
// file and the operation; the noexcept variants return errno for callers that map errors
// themselves (create_mux turns an unwritable ROOT into a UsageError, the journal keeps its buffer).
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace mpmux::posix {

/// Modes of what mpmux creates: the umask applies, and write permission for others is never
/// asked for, so nothing is world-writable even under umask 000. Group write follows the umask
/// (a project directory shared under umask 002 stays writable by the group).
constexpr mode_t kFileMode = 0664;
constexpr mode_t kDirMode = 0775;

/// strerror(err), thread-safe.
std::string error_text(int err);

/// An owned file descriptor, closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept;
  /// Closes the fd (errors of close(2) are ignored: the data was already synced or is moot).
  void reset() noexcept;

 private:
  int fd_ = -1;
};

/// open(2) with O_CLOEXEC added, retried on EINTR. Throws StoreError "'<path>': cannot open: ...".
Fd open_file(const std::filesystem::path& path, int flags, mode_t mode = kFileMode);
/// open(2) with O_CLOEXEC added, retried on EINTR; returns -errno instead of throwing.
int open_file_noexcept(const std::filesystem::path& path, int flags, mode_t mode = kFileMode) noexcept;

/// Outcome of a whole read or write: bytes moved, and errno (0 when all went well).
struct IoResult {
  std::size_t bytes = 0;
  int error = 0;
};

/// Writes all n bytes unless an error occurs (short writes and EINTR are continued).
IoResult write_all(int fd, const void* data, std::size_t n) noexcept;
/// Reads until n bytes or end of file.
IoResult read_all(int fd, void* data, std::size_t n) noexcept;
/// The same at a file offset (pwrite/pread), leaving the file position alone.
IoResult write_all_at(int fd, const void* data, std::size_t n, std::uint64_t offset) noexcept;
IoResult read_all_at(int fd, void* data, std::size_t n, std::uint64_t offset) noexcept;

/// fsync / fdatasync; throw StoreError "'<path>': fsync failed: ..." (path only names the file).
void fsync_fd(int fd, const std::filesystem::path& path);
void fdatasync_fd(int fd, const std::filesystem::path& path);
/// Makes the entries of a directory (created, renamed, removed files) durable.
void fsync_dir(const std::filesystem::path& dir);

/// Reads a whole file. Throws StoreError naming the file.
std::string read_file(const std::filesystem::path& file);
/// Replaces `file` with `content` so that a reader sees the old or the new file, never a part:
/// a temporary file in the same directory is written, fsynced and renamed over `file`, and the
/// directory is fsynced (unless `durable` is false: advisory files need the atomicity only).
/// The temporary is removed on error.
void write_file_atomic(const std::filesystem::path& file, std::string_view content, mode_t mode = kFileMode,
                       bool durable = true);

/// rename(2) that fails instead of replacing an existing target (renameat2 RENAME_NOREPLACE,
/// falling back to rename(2) on file systems without it, which still refuses a non-empty
/// directory). Returns 0 or errno; EEXIST/ENOTEMPTY mean the name is taken.
int rename_noreplace(const std::filesystem::path& from, const std::filesystem::path& to) noexcept;

/// The owner of `path` when that is not this process's effective user; nullopt when it is, or
/// when `path` cannot be stat'ed (the caller's next step reports that).
std::optional<uid_t> foreign_owner(const std::filesystem::path& path) noexcept;
/// "name (uid N)", or "uid N" for a user without a name.
std::string user_name(uid_t uid);

/// `digits` lowercase hex digits from std::random_device.
std::string random_hex(std::size_t digits);

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME) and of CLOCK_MONOTONIC.
std::int64_t unix_time_ns() noexcept;
std::int64_t monotonic_ns() noexcept;

/// UTC calendar time of `unix_seconds` formatted with strftime(3).
std::string format_utc(std::int64_t unix_seconds, const char* format);

/// Refuses, with a UsageError "<name> '<file>': why", an output file the user cannot write (a
/// directory, a missing or read-only directory) before any work is done; failures after this
/// point (a full disk) are store errors.
void check_output_file(const std::filesystem::path& file, std::string_view name);

}  // namespace mpmux::posix
