// The az:// object store: Azure Blob storage over its REST API (libcurl), SharedKey
// authentication (HMAC-SHA256 with OpenSSL). URL: az://ACCOUNT/CONTAINER[/PREFIX]; every key
// is the blob PREFIX/key.
//
// Credentials and endpoint, from the environment:
//  - the key: AZURE_STORAGE_KEY, else the AccountKey of AZURE_STORAGE_CONNECTION_STRING (whose
//    AccountName, when given, must be the URL's account);
//  - the endpoint: AZURE_STORAGE_BLOB_ENDPOINT, else the connection string's BlobEndpoint, else
//    https://ACCOUNT.blob.<EndpointSuffix or core.windows.net>. An endpoint with a path is
//    path-style, as Azurite's http://127.0.0.1:10000/devstoreaccount1.
// The key never appears in a message, an exception or the store's url().
//
// Conditional writes map to If-None-Match: * (put_if_absent) and If-Match (put_if_match);
// leases to Lease Blob. Every request is retried with exponential back-off and jitter on 408,
// 429, 5xx, timeouts and connection errors within StoreOptions::retry_budget; a conditional
// write that may have taken effect before a retry is resolved by reading the blob back.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/object_store.hpp"

namespace mpmux::store {

/// The parts of az://ACCOUNT/CONTAINER[/PREFIX].
struct AzureUrl {
  std::string account, container;
  std::string prefix;  // "" or "a/b" (no '/' at either end)
  /// az://ACCOUNT/CONTAINER[/PREFIX] without a trailing '/'.
  std::string str() const;
};

/// Throws UsageError "store '<url>': <why>" for a malformed URL (account of letters and digits,
/// container of 3 to 63 lowercase letters, digits and single dashes, no empty prefix part).
AzureUrl parse_azure_url(std::string_view url);

/// Throws UsageError for a malformed URL, missing or malformed credentials or endpoint. With
/// StoreOptions::create_container a missing container is created; otherwise it is reported by
/// the first operation.
std::unique_ptr<ObjectStore> open_azure_store(std::string_view url, const StoreOptions& options);

/// The SharedKey string to sign of a request (exposed for tests). `headers` are lowercase name
/// and value; `resource` the canonicalized resource without the query; `query` decoded pairs.
std::string azure_string_to_sign(const std::string& method,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 const std::string& resource,
                                 std::vector<std::pair<std::string, std::string>> query);

}  // namespace mpmux::store
