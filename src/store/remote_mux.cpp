// Muxes and sessions on Azure Blob storage, read through a local mirror (remote_mux.hpp).
#include "store/remote_mux.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "store/azure_store.hpp"
#include "store/fs.hpp"
#include "store/object_store.hpp"
#include "store/uri.hpp"

namespace mpmux {

namespace stdfs = std::filesystem;

namespace {

constexpr const char* kMarker = "mux.json";
constexpr const char* kMarkerFormat = "mpmux-mux";
constexpr int kMarkerFormatVersion = 1;
constexpr const char* kElements = "elements.h5";
// The checksum of the mirrored elements.h5, written after it was verified.
constexpr const char* kElementsChecksum = ".elements.sha256";
constexpr mode_t kPrivateDir = 0700;

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1)
    throw StoreError("OpenSSL: SHA-256 failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xF]);
  }
  return out;
}

// The folders of `dir` that are missing, made 0700: the mirror is this user's alone.
void make_private_dirs(const stdfs::path& dir) {
  std::vector<stdfs::path> missing;
  std::error_code ec;
  for (stdfs::path p = dir; !p.empty() && !stdfs::exists(p, ec) && p != p.parent_path(); p = p.parent_path())
    missing.push_back(p);
  for (auto p = missing.rbegin(); p != missing.rend(); ++p) {
    if (::mkdir(p->c_str(), kPrivateDir) != 0 && errno != EEXIST) {
      const int err = errno;
      const std::string message =
          "cache folder '" + p->string() + "': cannot create: " + posix::error_text(err);
      if (err == EACCES || err == EPERM || err == EROFS) throw UsageError(message);
      throw StoreError(message);
    }
  }
}

stdfs::path cache_root() {
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
  };
  if (!env("MPMUX_CACHE").empty()) return stdfs::absolute(env("MPMUX_CACHE"));
  if (!env("XDG_CACHE_HOME").empty()) return stdfs::absolute(stdfs::path(env("XDG_CACHE_HOME")) / "mpmux");
  if (!env("HOME").empty()) return stdfs::path(env("HOME")) / ".cache" / "mpmux";
  throw UsageError("no folder for the mirror of az:// sessions: set MPMUX_CACHE (or HOME)");
}

struct Marker {
  std::uint64_t elements = 0, bytes = 0;
  std::string sha256;
};

Marker read_marker(store::ObjectStore& mux) {
  const std::string name = mux.url() + "/" + kMarker;
  std::optional<store::Object> blob = mux.get(kMarker);
  if (!blob) throw UsageError("mux '" + mux.url() + "' does not exist (destroyed, or mistyped?)");
  try {
    const nlohmann::json j = nlohmann::json::parse(blob->data);
    if (!j.is_object() || j.value("format", "") != kMarkerFormat)
      throw UsageError("'" + name + "': not an mpmux mux marker");
    if (j.value("format_version", 0) != kMarkerFormatVersion)
      throw UsageError("'" + name + "': unsupported format_version " +
                       j.value("format_version", nlohmann::json()).dump());
    return Marker{j.at("elements").get<std::uint64_t>(), j.at("elements_bytes").get<std::uint64_t>(),
                  j.at("elements_sha256").get<std::string>()};
  } catch (const nlohmann::json::exception& e) {
    throw UsageError("'" + name + "': malformed: " + e.what());
  }
}

std::string read_small_file(const stdfs::path& file) {
  std::error_code ec;
  if (!stdfs::is_regular_file(file, ec)) return {};
  return posix::read_file(file);
}

// elements.h5 once per checksum: downloaded only when the mirror's verified checksum is not the
// marker's (a first open, or a mux made again under the same name).
void mirror_elements(store::ObjectStore& mux, const stdfs::path& dir, const Marker& marker) {
  const stdfs::path file = dir / kElements;
  std::error_code ec;
  if (read_small_file(dir / kElementsChecksum) == marker.sha256 && stdfs::file_size(file, ec) == marker.bytes)
    return;
  std::optional<store::Object> blob = mux.get(kElements);
  const std::string name = mux.url() + "/" + kElements;
  if (!blob) throw UsageError("'" + name + "': missing (the mux is damaged)");
  const std::string sum = sha256_hex(blob->data);
  if (sum != marker.sha256 || blob->data.size() != marker.bytes)
    throw StoreError("'" + name + "': SHA-256 " + sum + " of " + std::to_string(blob->data.size()) +
                     " bytes, but mux.json says " + marker.sha256 + " of " + std::to_string(marker.bytes) +
                     " (damaged or replaced)");
  posix::write_file_atomic(file, blob->data, posix::kFileMode, false);
  posix::write_file_atomic(dir / kElementsChecksum, sum, posix::kFileMode, false);
}

// Each journal from the length already mirrored. The bytes go to their own offset (not
// appended), so that two processes mirroring at once, or a local writer ahead of its upload,
// write the same bytes to the same place.
void mirror_journals(store::ObjectStore& mux, const std::string& prefix, const stdfs::path& dir) {
  for (const std::string& key : mux.list_keys(prefix)) {
    const std::string name = key.substr(prefix.size());
    if (name.find('/') != std::string::npos || name.size() < 5 || name.substr(name.size() - 4) != ".mjl")
      continue;
    const stdfs::path file = dir / name;
    posix::Fd fd = posix::open_file(file, O_RDWR | O_CREAT);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
      throw StoreError("'" + file.string() + "': cannot stat: " + posix::error_text(errno));
    std::optional<std::string> more = mux.get_range(key, static_cast<std::uint64_t>(st.st_size));
    if (!more || more->empty()) continue;
    const posix::IoResult w =
        posix::write_all_at(fd.get(), more->data(), more->size(), static_cast<std::uint64_t>(st.st_size));
    if (w.error != 0)
      throw StoreError("'" + file.string() + "': cannot write the mirror of '" + mux.url() + "/" + key +
                       "': " + posix::error_text(w.error));
  }
}

}  // namespace

std::string remote_mux_url(std::string_view text, std::string_view what) {
  return store::remote_mux_url_named(text, std::string(what) + " '" + std::string(text) + "'");
}

stdfs::path mux_cache_dir(const std::string& remote_mux) {
  const store::AzureUrl url = store::parse_azure_url(remote_mux);
  return cache_root() / "az" / url.account / url.container / url.prefix;
}

std::string create_remote_mux(const std::string& root_arg, const ParsedElements& elements,
                              const std::string& tag) {
  store::check_tag(tag);
  store::check_az_bytes(root_arg, "ROOT '" + root_arg + "'");
  const std::string root = store::parse_azure_url(root_arg).str();
  std::unique_ptr<store::ObjectStore> store = store::open_store(root);
  const std::string name = store::mux_name(tag);
  // A first request before the set is built: a wrong key or a missing container is told at once.
  store->list_keys(name);

  const stdfs::path base = cache_root();
  make_private_dirs(base);
  const stdfs::path tmp = base / (".new-" + std::to_string(::getpid()) + "-" + posix::random_hex(8));
  std::string data;
  make_private_dirs(tmp);
  try {
    ElementSet::write(tmp / kElements, elements.elements, elements.encoding, tag,
                      elements.table ? &*elements.table : nullptr);
    data = posix::read_file(tmp / kElements);
  } catch (...) {
    std::error_code ec;
    stdfs::remove_all(tmp, ec);
    throw;
  }
  std::error_code ec;
  stdfs::remove_all(tmp, ec);

  const nlohmann::ordered_json marker = {{"format", kMarkerFormat},
                                         {"format_version", kMarkerFormatVersion},
                                         {"elements", elements.elements.size()},
                                         {"elements_bytes", data.size()},
                                         {"elements_sha256", sha256_hex(data)}};
  // The set is created exclusively under a free name (".2", ".3" ... as for directories), so
  // no other mux's set is ever replaced; the marker then makes the mux visible.
  for (int n = 1;; ++n) {
    const std::string candidate = n == 1 ? name : name + "." + std::to_string(n);
    if (store->put_if_absent(candidate + "/" + kElements, data)) {
      if (!store->put_if_absent(candidate + "/" + kMarker, marker.dump(2) + "\n"))
        throw StoreError(root + "/" + candidate + ": another mux marker appeared beside our elements.h5");
      return root + "/" + candidate;
    }
    if (n == 10000) throw StoreError(root + ": no free name for '" + name + "'");
  }
}

void destroy_remote_mux(const std::string& mux_arg) {
  const std::string url = remote_mux_url(mux_arg, "MUX_DIR");
  std::unique_ptr<store::ObjectStore> mux = store::open_store(url);
  // A set without its marker is what a `new` that died before the marker left behind.
  if (!mux->get(kMarker) && mux->list_keys(kElements).empty())
    throw UsageError("'" + url + "': no such mux (no mux.json)");
  mux->remove(kMarker);
  for (const std::string& key : mux->list_keys("")) mux->remove(key);
  std::error_code ec;
  stdfs::remove_all(mux_cache_dir(url), ec);
}

Session Session::create_remote(const std::string& mux_arg) {
  const std::string url = remote_mux_url(mux_arg, "MUX_DIR");
  std::unique_ptr<store::ObjectStore> mux = store::open_store(url);
  const Marker marker = read_marker(*mux);
  for (int tries = 0;; ++tries) {
    const std::string id = store::new_session_id();
    if (mux->put_if_absent("sessions/" + id + "/session.json", store::session_json(id, marker.elements)))
      return Session(MuxId{mux_cache_dir(url), id, url}, marker.elements);
    if (tries == 1000) throw StoreError("'" + url + "': cannot find a free session id");
  }
}

namespace store {

// Only the bytes of a plain path, so that the URL is one shell word and no byte needs escaping.
void check_az_bytes(std::string_view text, const std::string& named) {
  for (std::size_t i = std::string_view("az://").size(); i < text.size(); ++i) {
    if (!is_plain_path_byte(static_cast<unsigned char>(text[i])))
      throw UsageError(named + ": character '" + show_byte(static_cast<unsigned char>(text[i])) +
                       "' is not allowed in an az:// URL (only letters, digits, '/', '.', '_', '~' and '-')");
  }
}

std::string remote_mux_url_named(std::string_view text, const std::string& named) {
  check_az_bytes(text, named);
  AzureUrl url;
  try {
    url = parse_azure_url(text);
  } catch (const UsageError& e) {
    const std::string why = e.what();  // "store '<url>': <why>"
    throw UsageError(named + why.substr(why.find("': ") + 1));
  }
  if (url.prefix.empty())
    throw UsageError(named + ": names a container, not a mux (az://ACCOUNT/CONTAINER/[PREFIX/]MUX)");
  return url.str();
}

void mirror_session(const MuxId& id) {
  std::unique_ptr<ObjectStore> mux = open_store(id.remote);
  const Marker marker = read_marker(*mux);
  const std::string prefix = "sessions/" + id.session + "/";
  std::optional<Object> meta = mux->get(prefix + "session.json");
  if (!meta)
    throw UsageError("session '" + id.session + "' of mux '" + id.remote + "' does not exist (mistyped?)");
  const stdfs::path dir = id.dir / "sessions" / id.session;
  make_private_dirs(dir / "journal");
  if (read_small_file(dir / "session.json") != meta->data)
    posix::write_file_atomic(dir / "session.json", meta->data, posix::kFileMode, false);
  mirror_elements(*mux, id.dir, marker);
  mirror_journals(*mux, prefix + "journal/", dir / "journal");
}

void upload_results(const Session& session, const stdfs::path& file) {
  open_store(session.store_url())->put("results.h5", posix::read_file(file));
}

}  // namespace store

}  // namespace mpmux
