#include "store/fs.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <random>

#include "mpmux/error.hpp"

namespace mpmux::posix {

namespace stdfs = std::filesystem;

std::string error_text(int err) {
  char buf[256];
  // GNU strerror_r returns the message, which may or may not live in buf.
  return ::strerror_r(err, buf, sizeof buf);
}

namespace {
[[noreturn]] void throw_errno(const stdfs::path& path, const char* what, int err) {
  throw StoreError("'" + path.string() + "': " + what + " failed: " + error_text(err));
}
}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

int Fd::release() noexcept {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::reset() noexcept {
  // Linux releases the descriptor even when close() reports EINTR, so it is never retried.
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int open_file_noexcept(const stdfs::path& path, int flags, mode_t mode) noexcept {
  for (;;) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd >= 0) return fd;
    if (errno != EINTR) return -errno;
  }
}

Fd open_file(const stdfs::path& path, int flags, mode_t mode) {
  int fd = open_file_noexcept(path, flags, mode);
  if (fd < 0) throw_errno(path, "open", -fd);
  return Fd(fd);
}

namespace {
// The loop of every *_all call: `step(done)` moves the next bytes (from byte `done` on) and
// returns what read/write/pread/pwrite returned; EINTR is retried, a read's 0 is the end.
template <class Step>
IoResult transfer_all(std::size_t n, bool reading, Step step) noexcept {
  IoResult r;
  while (r.bytes < n) {
    const ssize_t moved = step(r.bytes);
    if (moved < 0) {
      if (errno == EINTR) continue;
      r.error = errno;
      break;
    }
    if (moved == 0 && reading) break;
    r.bytes += static_cast<std::size_t>(moved);
  }
  return r;
}
}  // namespace

IoResult write_all(int fd, const void* data, std::size_t n) noexcept {
  const char* p = static_cast<const char*>(data);
  return transfer_all(n, false, [&](std::size_t done) { return ::write(fd, p + done, n - done); });
}

IoResult read_all(int fd, void* data, std::size_t n) noexcept {
  char* p = static_cast<char*>(data);
  return transfer_all(n, true, [&](std::size_t done) { return ::read(fd, p + done, n - done); });
}

IoResult write_all_at(int fd, const void* data, std::size_t n, std::uint64_t offset) noexcept {
  const char* p = static_cast<const char*>(data);
  return transfer_all(n, false, [&](std::size_t done) {
    return ::pwrite(fd, p + done, n - done, static_cast<off_t>(offset + done));
  });
}

IoResult read_all_at(int fd, void* data, std::size_t n, std::uint64_t offset) noexcept {
  char* p = static_cast<char*>(data);
  return transfer_all(n, true, [&](std::size_t done) {
    return ::pread(fd, p + done, n - done, static_cast<off_t>(offset + done));
  });
}

void fsync_fd(int fd, const stdfs::path& path) {
  if (::fsync(fd) != 0) throw_errno(path, "fsync", errno);
}

void fdatasync_fd(int fd, const stdfs::path& path) {
  if (::fdatasync(fd) != 0) throw_errno(path, "fdatasync", errno);
}

void fsync_dir(const stdfs::path& dir) {
  Fd fd = open_file(dir, O_RDONLY | O_DIRECTORY);
  // Some file systems (e.g. certain network mounts) cannot fsync a directory; that is not an
  // error of ours, the rename itself is still atomic there.
  if (::fsync(fd.get()) != 0 && errno != EINVAL && errno != ENOTSUP) throw_errno(dir, "fsync", errno);
}

std::string read_file(const stdfs::path& file) {
  Fd fd = open_file(file, O_RDONLY);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno(file, "stat", errno);
  std::string out(static_cast<std::size_t>(st.st_size), '\0');
  IoResult r = read_all(fd.get(), out.data(), out.size());
  if (r.error != 0) throw_errno(file, "read", r.error);
  out.resize(r.bytes);
  // The file may have grown since fstat; read the rest too.
  char buf[4096];
  for (;;) {
    IoResult more = read_all(fd.get(), buf, sizeof buf);
    if (more.error != 0) throw_errno(file, "read", more.error);
    out.append(buf, more.bytes);
    if (more.bytes < sizeof buf) break;
  }
  return out;
}

void write_file_atomic(const stdfs::path& file, std::string_view content, mode_t mode, bool durable) {
  stdfs::path dir = file.parent_path().empty() ? stdfs::path(".") : file.parent_path();
  stdfs::path tmp =
      dir / ("." + file.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" + random_hex(8));
  Fd fd = open_file(tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
  try {
    IoResult w = write_all(fd.get(), content.data(), content.size());
    if (w.error != 0) throw_errno(tmp, "write", w.error);
    if (durable) fsync_fd(fd.get(), tmp);
    fd.reset();
    if (::rename(tmp.c_str(), file.c_str()) != 0) throw_errno(file, "rename", errno);
  } catch (...) {
    fd.reset();
    ::unlink(tmp.c_str());
    throw;
  }
  if (durable) fsync_dir(dir);
}

int rename_noreplace(const stdfs::path& from, const stdfs::path& to) noexcept {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  int err = errno;
  if (err != EINVAL && err != ENOSYS) return err;
  // No RENAME_NOREPLACE here: plain rename(2) replaces only an empty directory or a file, so
  // check first; the remaining race can only lose to an empty directory.
  struct stat st {};
  if (::lstat(to.c_str(), &st) == 0) return EEXIST;
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

std::optional<uid_t> foreign_owner(const stdfs::path& path) noexcept {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || st.st_uid == ::geteuid()) return std::nullopt;
  return st.st_uid;
}

std::string user_name(uid_t uid) {
  struct passwd entry {};
  struct passwd* found = nullptr;
  char buf[4096];
  std::string id = "uid " + std::to_string(uid);
  if (::getpwuid_r(uid, &entry, buf, sizeof buf, &found) != 0 || found == nullptr) return id;
  return std::string(found->pw_name) + " (" + id + ")";
}

std::string random_hex(std::size_t digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::string out;
  out.reserve(digits);
  while (out.size() < digits) {
    std::uint32_t bits = rd();
    for (int k = 0; k < 8 && out.size() < digits; ++k, bits >>= 4) out.push_back(kHex[bits & 0xF]);
  }
  return out;
}

std::int64_t unix_time_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::int64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string format_utc(std::int64_t unix_seconds, const char* format) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::size_t n = ::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}

void check_output_file(const std::filesystem::path& file, std::string_view name) {
  const std::string what = std::string(name) + " '" + file.string() + "'";
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) throw UsageError(what + ": is a directory");
  const std::filesystem::path dir =
      file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path();
  if (!std::filesystem::is_directory(dir, ec))
    throw UsageError(what + ": no directory '" + dir.string() + "'");
  if (::access(dir.c_str(), W_OK) != 0)
    throw UsageError(what + ": cannot write in '" + dir.string() + "': " + error_text(errno));
}

}  // namespace mpmux::posix
