// Atomic replacement of a file through a temporary beside it; see replacing_file.hpp.
#include "store/replacing_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include "mpmux/error.hpp"

namespace mpmux {

namespace stdfs = std::filesystem;

namespace {

std::string this_host() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "host";
  std::string out;
  for (const char* p = buf; *p; ++p) {
    const char c = *p;
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    out.push_back(ok ? c : '_');
  }
  return out.empty() ? "host" : out;
}

// Temporary files are named .<name>.tmp-<host>-<pid>-<random>, so a writer can tell which ones
// belong to processes of this host that no longer exist (killed mid-write) and remove them.
std::string temp_prefix(const stdfs::path& target) {
  return "." + target.filename().string() + ".tmp-" + this_host() + "-";
}

stdfs::path dir_of(const stdfs::path& target) {
  return target.parent_path().empty() ? stdfs::path(".") : target.parent_path();
}

void remove_stale_temps(const stdfs::path& dir, const stdfs::path& target) {
  const std::string prefix = temp_prefix(target);
  std::error_code ec;
  for (stdfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());  // <pid>-<random>
    pid_t pid = 0;
    auto [p, err] = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
    if (err != std::errc() || p == rest.data() || *p != '-' || pid <= 0) continue;
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code ignore;
    stdfs::remove(it->path(), ignore);  // another cleaner may have won; that is fine
  }
}

}  // namespace

ReplacingFile::ReplacingFile(stdfs::path target, std::string_view what) : target_(std::move(target)) {
  const stdfs::path dir = dir_of(target_);
  remove_stale_temps(dir, target_);
  temporary_ = dir / (temp_prefix(target_) + std::to_string(::getpid()) + "-" + posix::random_hex(8));
  const int raw = posix::open_file_noexcept(temporary_, O_WRONLY | O_CREAT | O_EXCL, posix::kFileMode);
  if (raw < 0)
    throw StoreError("'" + target_.string() + "': cannot write " + std::string(what) + ": cannot create '" +
                     temporary_.string() + "': " + posix::error_text(-raw));
  fd_ = posix::Fd(raw);
}

ReplacingFile::~ReplacingFile() {
  fd_.reset();
  if (!committed_) ::unlink(temporary_.c_str());
}

void ReplacingFile::commit() {
  fd_.reset();
  posix::fsync_fd(posix::open_file(temporary_, O_RDONLY).get(), temporary_);
  if (::rename(temporary_.c_str(), target_.c_str()) != 0)
    throw StoreError("'" + target_.string() + "': cannot replace with '" + temporary_.string() +
                     "': " + posix::error_text(errno));
  committed_ = true;
  posix::fsync_dir(dir_of(target_));
}

}  // namespace mpmux
