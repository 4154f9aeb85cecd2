#include "mpmux/session.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <vector>

#include "mpmux/error.hpp"
#include "store/fs.hpp"
#include "store/object_store.hpp"
#include "store/remote_mux.hpp"
#include "store/uri.hpp"

namespace mpmux {

namespace stdfs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// MuxId

namespace {

constexpr std::string_view kFileScheme = "file://";

bool is_alnum(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool is_session_byte(unsigned char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; }

using store::show_byte;

// Absolute, lexically normal, without a trailing separator.
stdfs::path normal_dir(const stdfs::path& dir) {
  stdfs::path p = stdfs::absolute(dir).lexically_normal();
  if (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p;
}

}  // namespace

std::string MuxId::str() const {
  if (is_remote()) return remote + "#s=" + session;
  return std::string(kFileScheme) + store::percent_encode_path(dir.native()) + "#s=" + session;
}

MuxId MuxId::parse(std::string_view text) {
  auto fail = [&](const std::string& why) -> UsageError {
    return UsageError("mux id '" + std::string(text) + "': " + why);
  };
  if (text.empty()) throw fail("empty");
  std::size_t colon = text.find("://");
  if (colon == std::string_view::npos) throw fail("not a URI (expected file:///path/to/mux#s=SESSION)");
  std::string_view scheme = text.substr(0, colon);
  if (scheme != "file" && scheme != "az")
    throw fail("unsupported scheme '" + std::string(scheme) + "' (mpmux knows file:// and az://)");

  const std::size_t hash = text.find('#');
  MuxId id;
  if (scheme == "az") {
    id.remote = store::remote_mux_url_named(text.substr(0, hash), "mux id '" + std::string(text) + "'");
  } else {
    std::string_view encoded =
        text.substr(kFileScheme.size(),
                    hash == std::string_view::npos ? std::string_view::npos : hash - kFileScheme.size());
    if (encoded.empty() || encoded.front() != '/')
      throw fail("the path must be absolute (file:///path/to/mux#s=SESSION)");
    id.dir = store::percent_decode_path(encoded, kFileScheme.size(), "mux id '" + std::string(text) + "'");
  }

  if (hash == std::string_view::npos) throw fail("missing '#s=SESSION' fragment");
  std::string_view fragment = text.substr(hash + 1);
  if (fragment.substr(0, 2) != "s=")
    throw fail("malformed fragment '#" + std::string(fragment) + "' (expected #s=SESSION)");
  std::string_view session = fragment.substr(2);
  if (session.empty()) throw fail("empty session id in '#s='");
  for (unsigned char c : session) {
    if (!is_session_byte(c))
      throw fail("session id '" + std::string(session) + "' has a character outside [A-Za-z0-9T._-]: '" +
                 show_byte(c) + "'");
  }
  id.session = std::string(session);
  if (id.is_remote()) id.dir = mux_cache_dir(id.remote);
  return id;
}

// ---------------------------------------------------------------------------------------------
// Mux directories

namespace {

constexpr const char* kElementsFile = "elements.h5";
constexpr std::size_t kMaxTag = 64;

}  // namespace

namespace store {

void check_tag(const std::string& tag) {
  if (tag.size() > kMaxTag)
    throw UsageError("--tag '" + tag + "': longer than " + std::to_string(kMaxTag) + " characters");
  for (unsigned char c : tag) {
    if (!(is_alnum(c) || c == '_' || c == '.' || c == '-'))
      throw UsageError("--tag '" + tag + "': character '" + show_byte(c) +
                       "' is not allowed (only letters, digits, '_', '.' and '-')");
  }
}

std::string mux_name(const std::string& tag) {
  // UTC, so that names sort in creation order whatever the time zone or DST of each node.
  std::string name = posix::format_utc(posix::unix_time_ns() / 1000000000, "%Y%m%d-%H%M%S");
  return tag.empty() ? name : name + "-" + tag;
}

std::string new_session_id() {
  return posix::format_utc(posix::unix_time_ns() / 1000000000, "%Y%m%dT%H%M%SZ") + "-" + posix::random_hex(4);
}

}  // namespace store

namespace {

using store::check_tag;

std::string root_name(const stdfs::path& root) { return "ROOT '" + root.string() + "'"; }

}  // namespace

stdfs::path create_mux(const stdfs::path& root_arg, const ParsedElements& elements, const std::string& tag) {
  check_tag(tag);
  const stdfs::path root = normal_dir(root_arg);
  std::error_code ec;
  stdfs::file_status st = stdfs::status(root, ec);
  if (stdfs::exists(st)) {
    if (!stdfs::is_directory(st)) throw UsageError(root_name(root) + ": not a directory");
  } else {
    std::vector<stdfs::path> made;  // the directories about to be created, deepest first
    for (stdfs::path p = root; !p.empty() && !stdfs::exists(p, ec) && p != p.parent_path();
         p = p.parent_path())
      made.push_back(p);
    // mkdir with mpmux's mode, not create_directories (0777 less the umask: world-writable under 000).
    for (auto p = made.rbegin(); p != made.rend(); ++p) {
      if (::mkdir(p->c_str(), posix::kDirMode) != 0 && errno != EEXIST)
        throw UsageError(root_name(root) + ": cannot create: " + posix::error_text(errno));
    }
    // A new directory is only durable once the directory holding its entry is synced.
    for (const stdfs::path& p : made) posix::fsync_dir(p.parent_path());
  }

  const std::string name = store::mux_name(tag);
  const stdfs::path tmp =
      root / (".mpmux-tmp-" + name + "-" + std::to_string(::getpid()) + "-" + posix::random_hex(8));
  if (::mkdir(tmp.c_str(), posix::kDirMode) != 0) {
    int err = errno;
    if (err == EACCES || err == EPERM || err == EROFS)
      throw UsageError(root_name(root) + ": cannot write: " + posix::error_text(err));
    throw StoreError(root_name(root) + ": cannot create '" + tmp.filename().string() +
                     "': " + posix::error_text(err));
  }
  try {
    ElementSet::write(tmp / kElementsFile, elements.elements, elements.encoding, tag,
                      elements.table ? &*elements.table : nullptr);
    posix::fsync_dir(tmp);
    // Two creators in the same second: the later one takes the next free suffix.
    for (int n = 1;; ++n) {
      stdfs::path dir = root / (n == 1 ? name : name + "." + std::to_string(n));
      int err = posix::rename_noreplace(tmp, dir);
      if (err == 0) {
        posix::fsync_dir(root);
        return dir;
      }
      if ((err != EEXIST && err != ENOTEMPTY) || n == 10000)
        throw StoreError(root_name(root) + ": cannot rename '" + tmp.filename().string() + "' to '" +
                         dir.filename().string() + "': " + posix::error_text(err));
    }
  } catch (...) {
    stdfs::remove_all(tmp, ec);
    throw;
  }
}

void destroy_mux(const stdfs::path& dir_arg) {
  const stdfs::path dir = normal_dir(dir_arg);
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) throw UsageError("'" + dir.string() + "': no such mux directory");
  if (!stdfs::is_regular_file(dir / kElementsFile, ec))
    throw UsageError("'" + dir.string() + "': not a mux directory (no elements.h5)");
  // Move it out of sight first (atomic), so a concurrent reader sees the mux whole or gone.
  stdfs::path doomed = dir.parent_path() / (".mpmux-destroy-" + dir.filename().string() + "-" +
                                            std::to_string(::getpid()) + "-" + posix::random_hex(8));
  if (::rename(dir.c_str(), doomed.c_str()) != 0) doomed = dir;
  stdfs::remove_all(doomed, ec);
  if (ec) throw StoreError("'" + dir.string() + "': cannot remove: " + ec.message());
  if (doomed != dir) posix::fsync_dir(dir.parent_path());
}

// ---------------------------------------------------------------------------------------------
// Sessions

namespace {

constexpr const char* kSessionFile = "session.json";
constexpr const char* kSessionFormat = "mpmux-session";
constexpr int kSessionFormatVersion = 1;

}  // namespace

// The creation time is the one the id was made of (new_session_id).
std::string store::session_json(const std::string& id, std::uint64_t count) {
  const std::string created = id.substr(0, 4) + "-" + id.substr(4, 2) + "-" + id.substr(6, 2) + "T" +
                              id.substr(9, 2) + ":" + id.substr(11, 2) + ":" + id.substr(13, 2) + "Z";
  nlohmann::ordered_json meta = {{"format", kSessionFormat},
                                 {"format_version", kSessionFormatVersion},
                                 {"session", id},
                                 {"created", created},
                                 {"elements", count}};
  return meta.dump(2) + "\n";
}

namespace {

void check_mux_dir(const stdfs::path& dir) {
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec))
    throw UsageError("mux directory '" + dir.string() + "' does not exist (destroyed?)");
}

}  // namespace

Session Session::create(const stdfs::path& mux_dir_arg) {
  const stdfs::path mux_dir = normal_dir(mux_dir_arg);
  check_mux_dir(mux_dir);
  const std::uint64_t count = ElementSet::open(mux_dir / kElementsFile).size();

  const stdfs::path sessions = mux_dir / "sessions";
  if (::mkdir(sessions.c_str(), posix::kDirMode) == 0) {
    posix::fsync_dir(mux_dir);
  } else if (errno != EEXIST) {
    throw StoreError("'" + sessions.string() + "': cannot create: " + posix::error_text(errno));
  }

  // The session is built in a hidden directory and renamed into place, so a session directory
  // always has its session.json and journal/.
  for (int tries = 0;; ++tries) {
    const std::string id = store::new_session_id();
    const stdfs::path tmp =
        sessions / (".tmp-" + id + "-" + std::to_string(::getpid()) + "-" + posix::random_hex(8));
    if (::mkdir(tmp.c_str(), posix::kDirMode) != 0)
      throw StoreError("'" + tmp.string() + "': cannot create: " + posix::error_text(errno));
    try {
      posix::write_file_atomic(tmp / kSessionFile, store::session_json(id, count));
      if (::mkdir((tmp / "journal").c_str(), posix::kDirMode) != 0)
        throw StoreError("'" + (tmp / "journal").string() + "': cannot create: " + posix::error_text(errno));
      posix::fsync_dir(tmp);
      int err = posix::rename_noreplace(tmp, sessions / id);
      if (err == 0) {
        posix::fsync_dir(sessions);
        return Session(MuxId{mux_dir, id, {}}, count);
      }
      if ((err != EEXIST && err != ENOTEMPTY) || tries == 1000)
        throw StoreError("'" + (sessions / id).string() + "': cannot create: " + posix::error_text(err));
    } catch (...) {
      std::error_code ec;
      stdfs::remove_all(tmp, ec);
      throw;
    }
    std::error_code ec;
    stdfs::remove_all(tmp, ec);
  }
}

Session Session::open(const MuxId& id) {
  if (id.is_remote()) store::mirror_session(id);
  check_mux_dir(id.dir);
  const stdfs::path dir = id.dir / "sessions" / id.session;
  const stdfs::path meta_file = dir / kSessionFile;
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec))
    throw UsageError("session '" + id.session + "' of mux directory '" + id.dir.string() +
                     "' does not exist (mistyped?)");
  auto malformed = [&](const std::string& why) { return UsageError("'" + meta_file.string() + "': " + why); };
  if (!stdfs::exists(meta_file, ec)) throw malformed("missing (not a session directory)");

  std::uint64_t count = 0;
  try {
    nlohmann::json meta = nlohmann::json::parse(posix::read_file(meta_file));
    if (!meta.is_object() || meta.value("format", "") != kSessionFormat)
      throw malformed("not an mpmux session file");
    if (!meta.contains("format_version") || !meta["format_version"].is_number_integer() ||
        meta["format_version"].get<int>() != kSessionFormatVersion)
      throw malformed("unsupported format_version " + meta.value("format_version", nlohmann::json()).dump());
    if (meta.value("session", "") != id.session)
      throw malformed("names session '" + meta.value("session", "") + "', not '" + id.session + "'");
    if (!meta.contains("elements") || !meta["elements"].is_number_unsigned())
      throw malformed("no element count");
    count = meta["elements"].get<std::uint64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw malformed(std::string("malformed: ") + e.what());
  } catch (const StoreError& e) {
    throw UsageError(e.what());
  }

  // Opening the set reads only its attributes; it proves the set is still there and whole.
  ElementSet set = ElementSet::open(id.dir / kElementsFile);
  if (set.size() != count)
    throw UsageError("'" + meta_file.string() + "': " + std::to_string(count) + " elements, but '" +
                     set.path().string() + "' holds " + std::to_string(set.size()));
  if (!stdfs::is_directory(dir / "journal", ec))
    throw UsageError("session directory '" + dir.string() + "' has no journal/ (damaged)");
  return Session(id, count);
}

stdfs::path Session::dir() const { return id_.dir / "sessions" / id_.session; }
stdfs::path Session::journal_dir() const { return dir() / "journal"; }
stdfs::path Session::elements_file() const { return id_.dir / kElementsFile; }

std::string Session::store_url() const {
  if (id_.is_remote()) return id_.remote + "/sessions/" + id_.session;
  return dir().string();
}

// ---------------------------------------------------------------------------------------------
// Muxes named by users

MuxLocation MuxLocation::parse(std::string_view text, std::string_view what) {
  MuxLocation mux;
  if (text.find('#') != std::string_view::npos && !store::url_scheme(text).empty()) {
    MuxId id = MuxId::parse(text);
    mux.session = id.session;
    if (id.is_remote())
      mux.remote = std::move(id.remote);
    else
      mux.dir = std::move(id.dir);
  } else if (store::url_scheme(text) == "az") {
    mux.remote = remote_mux_url(text, what);
  } else {
    mux.dir = stdfs::absolute(store::local_path_of(text, what));
  }
  return mux;
}

std::uint64_t MuxLocation::size() const {
  if (!session.empty())
    return Session::open(MuxId{remote.empty() ? dir : mux_cache_dir(remote), session, remote}).total();
  if (!remote.empty())
    throw UsageError("'" + remote +
                     "': the size of a mux on az:// is read through a mux id of one of its sessions");
  check_mux_dir(dir);
  return ElementSet::open(dir / kElementsFile).size();
}

Session MuxLocation::create_session() const {
  return remote.empty() ? Session::create(dir) : Session::create_remote(remote);
}

void MuxLocation::destroy() const {
  if (remote.empty())
    destroy_mux(dir);
  else
    destroy_remote_mux(remote);
}

MuxRoot MuxRoot::parse(std::string_view text, std::string_view what) {
  MuxRoot root;
  if (store::url_scheme(text) == "az")
    root.remote = std::string(text);
  else
    root.dir = store::local_path_of(text, what);
  return root;
}

std::string MuxRoot::create(const ParsedElements& elements, const std::string& tag) const {
  return remote.empty() ? create_mux(dir, elements, tag).string() : create_remote_mux(remote, elements, tag);
}

}  // namespace mpmux
