#include "store/file_store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "mpmux/error.hpp"
#include "store/fs.hpp"
#include "store/uri.hpp"

namespace mpmux::store {

namespace stdfs = std::filesystem;

namespace {

std::string version_of(const struct stat& st) {
  return std::to_string(st.st_ino) + "." +
         std::to_string(static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec) + "." +
         std::to_string(st.st_size);
}

bool is_denied(int err) { return err == EACCES || err == EPERM || err == EROFS; }

class FileStore final : public ObjectStore {
 public:
  FileStore(stdfs::path dir, const StoreOptions& options)
      : dir_(std::move(dir)), url_("file://" + percent_encode_path(dir_.native())), options_(options) {}

  const std::string& url() const override { return url_; }

  std::optional<std::string> put_if_absent(const std::string& key, std::string_view data) override {
    const stdfs::path file = path_of(key);
    if (options_.exclusive_create == ExclusiveCreate::link) return link_create(key, file, data);
    int fd = open_making_parents(key, file, O_WRONLY | O_CREAT | O_EXCL);
    if (fd == -EEXIST) return std::nullopt;
    if (fd < 0) fail("create", key, -fd);
    posix::Fd owned(fd);
    // The object is ours from here: on a failed write it is removed again, so that nobody takes
    // an empty object for a whole one.
    posix::IoResult w = posix::write_all(fd, data.data(), data.size());
    int err = w.error;
    if (err == 0 && options_.durable && ::fsync(fd) != 0) err = errno;
    struct stat st {};
    if (err == 0 && ::fstat(fd, &st) != 0) err = errno;
    if (err != 0) {
      owned.reset();
      ::unlink(file.c_str());
      fail("write", key, err);
    }
    owned.reset();
    sync_dir(file.parent_path(), key);
    return version_of(st);
  }

  std::optional<std::string> put_if_match(const std::string& key, std::string_view data,
                                          const std::string& etag) override {
    const stdfs::path file = path_of(key);
    const stdfs::path marker = file.parent_path() / ("." + file.filename().string() + ".next." + etag);
    TempFile tmp = write_temp(key, file, data, options_.durable);
    int err = create_marker(tmp.path, marker);
    if (err == EEXIST || err == ENOENT) {  // another updater won this version, or the object is gone
      ::unlink(tmp.path.c_str());
      return std::nullopt;
    }
    if (err != 0) {
      ::unlink(tmp.path.c_str());
      fail("mark an update of", key, err);
    }
    struct stat st {};
    std::optional<std::string> result;
    if (::stat(file.c_str(), &st) == 0 && version_of(st) == etag) {
      if (::rename(tmp.path.c_str(), file.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.path.c_str());
        ::unlink(marker.c_str());
        fail("replace", key, err);
      }
      result = tmp.version;
    } else {
      ::unlink(tmp.path.c_str());
    }
    ::unlink(marker.c_str());
    if (result) sync_dir(file.parent_path(), key);
    return result;
  }

  std::string put(const std::string& key, std::string_view data, bool durable) override {
    const stdfs::path file = path_of(key);
    durable = durable && options_.durable;
    TempFile tmp = write_temp(key, file, data, durable);
    if (::rename(tmp.path.c_str(), file.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.path.c_str());
      fail("replace", key, err);
    }
    if (durable) sync_dir(file.parent_path(), key);
    return tmp.version;
  }

  std::optional<Object> get(const std::string& key) override {
    Object out;
    std::optional<std::string> data = read_from(key, 0, &out.etag);
    if (!data) return std::nullopt;
    out.data = std::move(*data);
    return out;
  }

  std::vector<ListedObject> list(const std::string& prefix) override {
    std::vector<ListedObject> out;
    walk_from(prefix, out, true);
    return out;
  }

  std::vector<std::string> list_keys(const std::string& prefix) override {
    std::vector<ListedObject> found;
    walk_from(prefix, found, false);
    std::vector<std::string> keys;
    keys.reserve(found.size());
    for (ListedObject& o : found) keys.push_back(std::move(o.key));
    return keys;
  }

  bool remove(const std::string& key) override {
    const stdfs::path file = path_of(key);
    if (::unlink(file.c_str()) == 0) return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    fail("remove", key, errno);
  }

  bool create_append(const std::string& key) override {
    const stdfs::path file = path_of(key);
    int fd = open_making_parents(key, file, O_WRONLY | O_CREAT | O_EXCL);
    if (fd == -EEXIST) return false;
    if (fd < 0) fail("create", key, -fd);
    ::close(fd);
    sync_dir(file.parent_path(), key);
    return true;
  }

  // One writer per append object, so the length check and the write at that offset need no
  // lock; the check catches a second writer or a truncated object rather than preventing them.
  std::uint64_t append(const std::string& key, std::string_view data,
                       std::uint64_t expected_length) override {
    const stdfs::path file = path_of(key);
    int fd = posix::open_file_noexcept(file, O_WRONLY);
    if (fd < 0) fail("append to", key, -fd);
    posix::Fd owned(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail("append to", key, errno);
    if (static_cast<std::uint64_t>(st.st_size) != expected_length)
      throw StoreError(url_ + ": cannot append to '" + key + "': it is " + std::to_string(st.st_size) +
                       " bytes long, not " + std::to_string(expected_length) + " (another writer?)");
    posix::IoResult w = posix::write_all_at(fd, data.data(), data.size(), expected_length);
    int err = w.error;
    if (err == 0 && options_.durable && ::fdatasync(fd) != 0) err = errno;
    if (err != 0) {
      // Cut what was written of this append, so that a retry starts at the same length; should
      // the cut fail too, the retry's length check says so.
      [[maybe_unused]] const int cut = ::ftruncate(fd, static_cast<off_t>(expected_length));
      fail("append to", key, err);
    }
    return expected_length + data.size();
  }

  std::optional<std::string> get_range(const std::string& key, std::uint64_t offset) override {
    return read_from(key, offset, nullptr);
  }

 private:
  // The object's bytes from `offset` on, and its version into *etag when asked; nullopt when
  // it does not exist.
  std::optional<std::string> read_from(const std::string& key, std::uint64_t offset, std::string* etag) {
    const stdfs::path file = path_of(key);
    int fd = posix::open_file_noexcept(file, O_RDONLY);
    if (fd == -ENOENT || fd == -ENOTDIR) return std::nullopt;
    if (fd < 0) fail("read", key, -fd);
    posix::Fd owned(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail("read", key, errno);
    if (etag != nullptr) *etag = version_of(st);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    std::string out;
    if (offset >= size) return out;
    out.resize(size - offset);
    posix::IoResult r = posix::read_all_at(fd, out.data(), out.size(), offset);
    if (r.error != 0) fail("read", key, r.error);
    out.resize(r.bytes);
    return out;
  }

  struct TempFile {
    stdfs::path path;
    std::string version;
  };

  [[noreturn]] void fail(const char* what, const std::string& key, int err) const {
    std::string message = url_ + ": cannot " + what + " '" + key + "': " + posix::error_text(err);
    if (is_denied(err)) throw UsageError(message);
    throw StoreError(message);
  }

  // Keys are relative names whose parts are neither empty, "." nor "..", and do not start with
  // '.', which the store keeps for its temporary files and markers.
  void check_key(const std::string& key) const {
    bool ok = !key.empty() && key.find('\0') == std::string::npos;
    for (std::size_t begin = 0; ok && begin <= key.size();) {
      std::size_t end = key.find('/', begin);
      if (end == std::string::npos) end = key.size();
      ok = end > begin && key[begin] != '.';
      begin = end + 1;
    }
    if (!ok) throw StoreError(url_ + ": '" + key + "' is not a valid object key");
  }

  stdfs::path path_of(const std::string& key) const {
    check_key(key);
    return dir_ / key;
  }

  int open_making_parents(const std::string& key, const stdfs::path& file, int flags) const {
    int fd = posix::open_file_noexcept(file, flags);
    if (fd != -ENOENT) return fd;
    make_parents(key, file);
    return posix::open_file_noexcept(file, flags);
  }

  void make_parents(const std::string& key, const stdfs::path& file) const {
    std::vector<stdfs::path> missing;
    for (stdfs::path p = file.parent_path(); p != dir_ && !p.empty(); p = p.parent_path())
      missing.push_back(p);
    for (auto p = missing.rbegin(); p != missing.rend(); ++p) {
      if (::mkdir(p->c_str(), posix::kDirMode) != 0 && errno != EEXIST)
        fail("create the folder of", key, errno);
    }
  }

  void sync_dir(const stdfs::path& dir, const std::string& key) const {
    if (!options_.durable) return;
    int fd = posix::open_file_noexcept(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) fail("sync the folder of", key, -fd);
    // Some network file systems cannot fsync a directory; their renames are atomic all the same.
    if (::fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) {
      int err = errno;
      ::close(fd);
      fail("sync the folder of", key, err);
    }
    ::close(fd);
  }

  TempFile write_temp(const std::string& key, const stdfs::path& file, std::string_view data,
                      bool durable) const {
    TempFile tmp;
    tmp.path = file.parent_path() / ("." + file.filename().string() + ".tmp-" + std::to_string(::getpid()) +
                                     "-" + posix::random_hex(8));
    int fd = open_making_parents(key, tmp.path, O_WRONLY | O_CREAT | O_EXCL);
    if (fd < 0) fail("write", key, -fd);
    posix::Fd owned(fd);
    posix::IoResult w = posix::write_all(fd, data.data(), data.size());
    int err = w.error;
    if (err == 0 && durable && ::fsync(fd) != 0) err = errno;
    struct stat st {};
    if (err == 0 && ::fstat(fd, &st) != 0) err = errno;
    if (err != 0) {
      owned.reset();
      ::unlink(tmp.path.c_str());
      fail("write", key, err);
    }
    tmp.version = version_of(st);
    return tmp;
  }

  // The exclusive create of an update's marker, the same way as objects are created: O_EXCL, or
  // a link to the update's temporary file, checked by its link count. Returns 0 or errno.
  int create_marker(const stdfs::path& tmp, const stdfs::path& marker) const {
    if (options_.exclusive_create == ExclusiveCreate::o_excl) {
      int fd = posix::open_file_noexcept(marker, O_WRONLY | O_CREAT | O_EXCL);
      if (fd < 0) return -fd;
      ::close(fd);
      return 0;
    }
    int err = ::link(tmp.c_str(), marker.c_str()) == 0 ? 0 : errno;
    struct stat st {};
    if (::stat(tmp.c_str(), &st) != 0) return errno;
    return st.st_nlink == 2 ? 0 : (err == 0 ? EEXIST : err);
  }

  // link() of a whole temporary file: the object appears with its content. Over NFS a link()
  // whose reply was lost reports an error although it was made, so the temporary's link count
  // (2 once the name exists) decides, not link()'s return value.
  std::optional<std::string> link_create(const std::string& key, const stdfs::path& file,
                                         std::string_view data) {
    TempFile tmp = write_temp(key, file, data, options_.durable);
    int rc = ::link(tmp.path.c_str(), file.c_str());
    int err = rc == 0 ? 0 : errno;
    struct stat st {};
    int st_rc = ::stat(tmp.path.c_str(), &st);
    int st_err = errno;
    ::unlink(tmp.path.c_str());
    if (st_rc != 0) fail("check the link of", key, st_err);
    if (st.st_nlink == 2) {
      sync_dir(file.parent_path(), key);
      return tmp.version;
    }
    if (err == EEXIST || err == 0) return std::nullopt;
    fail("create", key, err);
  }

  // Walks from the deepest directory the prefix names whole; out sorted by key.
  void walk_from(const std::string& prefix, std::vector<ListedObject>& out, bool versions) const {
    const std::size_t slash = prefix.rfind('/');
    const std::string start = slash == std::string::npos ? std::string() : prefix.substr(0, slash + 1);
    if (!start.empty()) check_key(start.substr(0, start.size() - 1));
    walk(start, prefix, out, versions);
    std::sort(out.begin(), out.end(),
              [](const ListedObject& a, const ListedObject& b) { return a.key < b.key; });
  }

  void walk(const std::string& sub, const std::string& prefix, std::vector<ListedObject>& out,
            bool versions) const {
    const stdfs::path dir = sub.empty() ? dir_ : dir_ / sub;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
      if (errno == ENOENT || errno == ENOTDIR) return;
      fail("list", sub.empty() ? prefix : sub, errno);
    }
    std::vector<std::string> subdirs;
    errno = 0;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const std::string key = sub + e->d_name;
      struct stat st {};
      // The entry's type comes with it on most file systems; a stat only for versions or when not.
      if (e->d_type == DT_REG && !versions) {
        st.st_mode = S_IFREG;
      } else if (e->d_type == DT_DIR) {
        st.st_mode = S_IFDIR;
      } else if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        continue;  // removed meanwhile
      }
      if (S_ISDIR(st.st_mode)) {
        const std::string as_dir = key + "/";
        if (as_dir.compare(0, std::min(as_dir.size(), prefix.size()), prefix, 0,
                           std::min(as_dir.size(), prefix.size())) == 0)
          subdirs.push_back(as_dir);
      } else if (S_ISREG(st.st_mode) && key.compare(0, prefix.size(), prefix) == 0) {
        out.push_back({key, versions ? version_of(st) : std::string()});
      }
    }
    ::closedir(d);
    for (const std::string& s : subdirs) walk(s, prefix, out, versions);
  }

  stdfs::path dir_;
  std::string url_;
  StoreOptions options_;
};

}  // namespace

std::unique_ptr<ObjectStore> open_file_store(const stdfs::path& dir_arg, const StoreOptions& options) {
  stdfs::path dir = stdfs::absolute(dir_arg).lexically_normal();
  if (!dir.has_filename() && dir.has_relative_path()) dir = dir.parent_path();
  const std::string name = "store 'file://" + percent_encode_path(dir.native()) + "'";
  std::vector<stdfs::path> missing;
  std::error_code ec;
  for (stdfs::path p = dir; !p.empty() && !stdfs::exists(p, ec) && p != p.parent_path(); p = p.parent_path())
    missing.push_back(p);
  if (options.read_only) missing.clear();
  for (auto p = missing.rbegin(); p != missing.rend(); ++p) {
    if (::mkdir(p->c_str(), posix::kDirMode) != 0 && errno != EEXIST) {
      int err = errno;
      std::string message = name + ": cannot create: " + posix::error_text(err);
      if (is_denied(err)) throw UsageError(message);
      throw StoreError(message);
    }
  }
  if (!stdfs::is_directory(dir, ec)) throw UsageError(name + ": not a directory");
  if (::access(dir.c_str(), options.read_only ? R_OK | X_OK : W_OK | X_OK) != 0)
    throw UsageError(name + (options.read_only ? ": cannot read: " : ": cannot write: ") +
                     posix::error_text(errno));
  return std::make_unique<FileStore>(std::move(dir), options);
}

}  // namespace mpmux::store
