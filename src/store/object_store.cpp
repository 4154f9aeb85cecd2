#include "store/object_store.hpp"

#include "mpmux/error.hpp"
#include "store/azure_store.hpp"
#include "store/file_store.hpp"
#include "store/uri.hpp"

namespace mpmux::store {

std::vector<std::string> ObjectStore::list_keys(const std::string& prefix) {
  std::vector<std::string> keys;
  for (ListedObject& o : list(prefix)) keys.push_back(std::move(o.key));
  return keys;
}

std::optional<std::string> ObjectStore::acquire_lease(const std::string& key, std::chrono::seconds) {
  throw StoreError(url() + ": cannot lease '" + key + "': this store has no leases");
}

bool ObjectStore::renew_lease(const std::string& key, const std::string&) {
  throw StoreError(url() + ": cannot renew a lease of '" + key + "': this store has no leases");
}

void ObjectStore::release_lease(const std::string& key, const std::string&) {
  throw StoreError(url() + ": cannot release a lease of '" + key + "': this store has no leases");
}

std::string url_scheme(std::string_view text) {
  std::size_t colon = text.find(':');
  if (colon == 0 || colon == std::string_view::npos || colon + 1 >= text.size() || text[colon + 1] != '/')
    return {};
  auto first = static_cast<unsigned char>(text[0]);
  if (!((first >= 'A' && first <= 'Z') || (first >= 'a' && first <= 'z'))) return {};
  for (std::size_t i = 1; i < colon; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '-' || c == '.';
    if (!ok) return {};
  }
  return std::string(text.substr(0, colon));
}

std::string local_path_of(std::string_view text, std::string_view what) {
  const std::string scheme = url_scheme(text);
  if (scheme.empty()) return std::string(text);
  const std::string named = std::string(what) + " '" + std::string(text) + "'";
  if (scheme == "file") {
    constexpr std::string_view kPrefix = "file://";
    if (text.substr(0, kPrefix.size()) != kPrefix || text.size() == kPrefix.size() ||
        text[kPrefix.size()] != '/')
      throw UsageError(named + ": a file URL names an absolute path (file:///path)");
    return percent_decode_path(text.substr(kPrefix.size()), kPrefix.size(), named);
  }
  if (scheme == "az") throw UsageError(named + ": an az:// URL names blobs, not a directory here");
  throw UsageError(named + ": unknown scheme '" + scheme +
                   "' (mpmux knows file:// and plain paths; write ./" + std::string(text) +
                   " for a relative directory)");
}

std::unique_ptr<ObjectStore> open_store(std::string_view url, const StoreOptions& options) {
  const std::string scheme = url_scheme(url);
  if (scheme == "az") return open_azure_store(url, options);
  if (scheme.empty() || scheme == "file") return open_file_store(local_path_of(url, "store"), options);
  throw UsageError("store '" + std::string(url) + "': unknown scheme '" + scheme +
                   "' (mpmux knows file:// and az://)");
}

}  // namespace mpmux::store
