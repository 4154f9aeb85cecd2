// The stores the store and claim tests run on: file:// (O_EXCL and link()) in a temporary
// directory, and az:// on the Azurite that ctest's fixture `azurite` starts
// (scripts/start-azurite.sh BUILD/azurite), each test in a container of its own.
#pragma once
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

#include "store/fs.hpp"
#include "store/object_store.hpp"
#include "test_support.hpp"

namespace mpmux::test {

/// Azurite's well-known development account and key (from its README); tests only.
inline constexpr const char* kAzuriteAccount = "devstoreaccount1";
inline constexpr const char* kAzuriteKey =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The endpoint of the fixture's Azurite; throws when it does not run, saying how to start it.
inline std::string azurite_endpoint() {
  const std::string file = std::string(MPMUX_BINARY_DIR) + "/azurite/endpoint";
  std::ifstream in(file);
  std::string endpoint;
  if (!(in >> endpoint))
    throw std::runtime_error(
        "no Azurite: run this test through ctest (fixture azurite) or start one with "
        "scripts/start-azurite.sh " MPMUX_BINARY_DIR "/azurite");
  return endpoint;
}

/// Points the az:// store at Azurite for this process.
inline void use_azurite(const std::string& endpoint) {
  ::setenv("AZURE_STORAGE_BLOB_ENDPOINT", endpoint.c_str(), 1);
  ::setenv("AZURE_STORAGE_KEY", kAzuriteKey, 1);
  ::unsetenv("AZURE_STORAGE_CONNECTION_STRING");
}

/// A fresh container name (lowercase, 3-63 characters).
inline std::string fresh_container() { return "t" + posix::random_hex(20); }

enum class Backend { kFileExcl, kFileLink, kAzurite };

inline std::string backend_name(Backend b) {
  switch (b) {
    case Backend::kFileExcl:
      return "FileOExcl";
    case Backend::kFileLink:
      return "FileLink";
    case Backend::kAzurite:
      return "Azurite";
  }
  return "?";
}

/// One store location per test: a directory or a container with a prefix. open() gives each
/// caller (thread) a store of its own over the same objects.
class StoreLocation {
 public:
  explicit StoreLocation(Backend backend) : backend_(backend) {
    if (backend_ == Backend::kAzurite) {
      use_azurite(azurite_endpoint());
      url_ = std::string("az://") + kAzuriteAccount + "/" + fresh_container() + "/sweep";
      store::StoreOptions create;
      create.create_container = true;
      store::open_store(url_, create);
    } else {
      url_ = (dir_.path() / "store").string();
    }
  }

  const std::string& url() const { return url_; }

  store::StoreOptions options() const {
    store::StoreOptions o;
    o.exclusive_create =
        backend_ == Backend::kFileLink ? store::ExclusiveCreate::link : store::ExclusiveCreate::o_excl;
    return o;
  }

  std::unique_ptr<store::ObjectStore> open() const { return store::open_store(url_, options()); }
  std::unique_ptr<store::ObjectStore> open(const store::StoreOptions& o) const {
    return store::open_store(url_, o);
  }

 private:
  Backend backend_;
  TempDir dir_;
  std::string url_;
};

}  // namespace mpmux::test
