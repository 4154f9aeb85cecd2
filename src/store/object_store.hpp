// A small object store: the few operations that cross-job claiming needs, with the same meaning
// on a POSIX file system (file://) and on Azure Blob storage (az://). Keys are relative names
// with '/' separators ("claims/000000000016.0"); every key lives under the store's prefix.
//
// What every backend guarantees:
//  - put_if_absent is an exclusive create: of any number of concurrent creators of one key,
//    exactly one is told it created it;
//  - put_if_match replaces an object only while it still has the given version (ETag);
//  - a get sees a whole object written by put or put_if_match, never a part;
//  - a write whose outcome is ambiguous (a timeout or a reset after the request left, a 5xx) is
//    resolved by reading the object back: it counts as ours when the object holds exactly our
//    bytes, so callers write something unique (the claim protocol writes its participant id).
// Errors are StoreError (or UsageError for a bad URL or missing credentials), one line naming
// the store's URL, never its key.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mpmux::store {

/// An object's bytes and its version: the ETag on Azure, "<inode>.<mtime ns>.<size>" on file://.
struct Object {
  std::string data;
  std::string etag;
};

struct ListedObject {
  std::string key;
  std::string etag;
};

/// How file:// makes an exclusive create: open(O_CREAT | O_EXCL), or a temporary file linked to
/// the name and then checked by its link count (for file systems whose O_EXCL is not atomic,
/// such as old NFS; link() also makes the object appear with its whole content at once).
enum class ExclusiveCreate { o_excl, link };

/// Options of a store; every field has a default that suits a run.
struct StoreOptions {
  ExclusiveCreate exclusive_create = ExclusiveCreate::o_excl;
  /// file://: fsync each object and its directory before a write returns (a claim or a done
  /// record survives a crash of the node). Heartbeats pass durable=false to put().
  bool durable = true;
  /// az://: the time one HTTP request may take, and how long retries of one operation may go on.
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds retry_budget{60000};
  /// az://: first back-off (doubled per retry, with jitter, up to 8 s).
  std::chrono::milliseconds first_backoff{100};
  /// az://: blobs per page of a list (the service's most is 5000).
  int list_page_size = 5000;
  /// az://: create the container when it is missing (file:// always creates its directory).
  bool create_container = false;
  /// For readers (stat, the exports): file:// neither creates the directory nor asks for write
  /// access, so that anyone who may read a session can read its claims.
  bool read_only = false;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  /// The store's URL as the user wrote it less any secret (file:///abs/dir, az://acct/cont/prefix).
  virtual const std::string& url() const = 0;

  /// Creates `key` holding `data` unless it exists. Returns the new version, or nullopt when the
  /// key existed already (another creator won).
  virtual std::optional<std::string> put_if_absent(const std::string& key, std::string_view data) = 0;
  /// Replaces `key` with `data` if its version is still `etag`. Returns the new version, or
  /// nullopt when the object changed or is gone.
  virtual std::optional<std::string> put_if_match(const std::string& key, std::string_view data,
                                                  const std::string& etag) = 0;
  /// Creates or replaces `key` (last writer wins). `durable` false skips fsync on file:// for
  /// advisory objects such as heartbeats. Returns the new version.
  virtual std::string put(const std::string& key, std::string_view data, bool durable = true) = 0;
  /// The object, or nullopt when it does not exist.
  virtual std::optional<Object> get(const std::string& key) = 0;
  /// Every object whose key starts with `prefix`, in key order (all pages).
  virtual std::vector<ListedObject> list(const std::string& prefix) = 0;
  /// The same keys without their versions, which file:// lists without a stat per object.
  virtual std::vector<std::string> list_keys(const std::string& prefix);
  /// Removes `key`; false when it did not exist.
  virtual bool remove(const std::string& key) = 0;

  // Append objects (journals): one writer appends to an object of its own, any number read it
  // while it grows. A reader sees a prefix of what was appended, each append whole or not at all.
  /// Creates the empty append object `key`; false when it exists (an ambiguous create counts as
  /// ours when the object is there and empty: the writer owns the name).
  virtual bool create_append(const std::string& key) = 0;
  /// Appends `data` to `key` if its length is still `expected_length` (Azure's append position
  /// condition), so that a retried append is never doubled; returns the new length. An append
  /// whose outcome is ambiguous is resolved by reading the object back: it took effect when the
  /// object is `expected_length + data.size()` long and ends with `data`. Throws StoreError when
  /// the length is another (a second writer, or the object is gone).
  virtual std::uint64_t append(const std::string& key, std::string_view data,
                               std::uint64_t expected_length) = 0;
  /// The bytes of `key` from `offset` to its end (empty when `offset` is at or past the end), or
  /// nullopt when it does not exist: how a reader follows a growing object.
  virtual std::optional<std::string> get_range(const std::string& key, std::uint64_t offset) = 0;

  /// True when the backend has locks with expiry (Azure blob leases); file:// has none.
  virtual bool has_leases() const { return false; }
  /// Takes an exclusive lease of an existing object for `duration` (Azure: 15 to 60 s, or
  /// negative for no expiry). Returns the lease id, or nullopt when someone else holds one.
  virtual std::optional<std::string> acquire_lease(const std::string& key, std::chrono::seconds duration);
  /// Extends a lease we hold; false when it was lost (expired and taken by someone else).
  virtual bool renew_lease(const std::string& key, const std::string& lease_id);
  virtual void release_lease(const std::string& key, const std::string& lease_id);
};

/// Opens the store a URL names: file:///abs/dir or a plain path (a directory, created when
/// missing), or az://ACCOUNT/CONTAINER[/PREFIX] (credentials from the environment, see
/// azure_store.hpp). Throws UsageError naming the URL for an unknown scheme or a malformed URL.
std::unique_ptr<ObjectStore> open_store(std::string_view url, const StoreOptions& options = {});

/// The scheme of `text` when it starts like a URL ("az" for "az://x", "s3" for "s3:/x"), else
/// empty. A word of letters, digits, '+', '-' and '.' followed by ":/" counts: a relative
/// directory named like "az:" is written ./az:/... to be taken as a path.
std::string url_scheme(std::string_view text);

/// The local directory `text` names where a mux directory or ROOT is expected: a plain path or
/// file:///abs/path (percent-decoded). Throws UsageError, naming `what` and the text, for any
/// other scheme: "az" (the commands that take az:// muxes handle them before asking for a
/// directory) and unknown ones ("s3", "gs", ...), so that such text never becomes a relative
/// directory.
std::string local_path_of(std::string_view text, std::string_view what);

}  // namespace mpmux::store
