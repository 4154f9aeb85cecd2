// The object store: the same guarantees on file:// (O_EXCL and link()) and on az:// (Azurite),
// then what only one backend has (modes and errors of files; leases, keys and errors of Azure).
#include "store/object_store.hpp"

#include <grp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <atomic>
#include <csignal>
#include <set>
#include <thread>

#include "fault_proxy.hpp"
#include "mpmux/error.hpp"
#include "store/azure_store.hpp"
#include "store_test_support.hpp"

namespace mpmux::test {
namespace {

namespace stdfs = std::filesystem;
using store::ObjectStore;

class ObjectStoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { location_ = std::make_unique<StoreLocation>(GetParam()); }
  std::unique_ptr<StoreLocation> location_;
};

TEST_P(ObjectStoreTest, PutIfAbsentCreatesOnceAndLeavesTheFirstContent) {
  auto s = location_->open();
  auto v1 = s->put_if_absent("claims/0.0", "first");
  ASSERT_TRUE(v1.has_value());
  EXPECT_FALSE(s->put_if_absent("claims/0.0", "second").has_value());
  auto got = s->get("claims/0.0");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->data, "first");
  EXPECT_EQ(got->etag, *v1);
}

TEST_P(ObjectStoreTest, GetOfAMissingKeyIsNothing) {
  auto s = location_->open();
  EXPECT_FALSE(s->get("nothing/here").has_value());
  EXPECT_FALSE(s->get("nothing").has_value());
}

TEST_P(ObjectStoreTest, PutReplacesAndChangesTheVersion) {
  auto s = location_->open();
  std::string v1 = s->put("participants/a", "beat 1");
  std::string v2 = s->put("participants/a", "beat 2 longer", false);
  EXPECT_NE(v1, v2);
  auto got = s->get("participants/a");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->data, "beat 2 longer");
  EXPECT_EQ(got->etag, v2);
}

TEST_P(ObjectStoreTest, PutIfMatchReplacesOnlyTheVersionItWasGiven) {
  auto s = location_->open();
  std::string v1 = s->put("cursor", "1");
  auto v2 = s->put_if_match("cursor", "2", v1);
  ASSERT_TRUE(v2.has_value());
  EXPECT_FALSE(s->put_if_match("cursor", "3", v1).has_value()) << "a stale version must not win";
  EXPECT_EQ(s->get("cursor")->data, "2");
  auto v3 = s->put_if_match("cursor", "3", *v2);
  ASSERT_TRUE(v3.has_value());
  EXPECT_EQ(s->get("cursor")->data, "3");
  EXPECT_FALSE(s->put_if_match("missing", "x", *v3).has_value());
  EXPECT_FALSE(s->get("missing").has_value());
}

TEST_P(ObjectStoreTest, ConcurrentCreatorsOfOneKeyHaveExactlyOneWinner) {
  constexpr int kThreads = 4, kKeys = 25;
  std::atomic<int> wins[kKeys] = {};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto s = location_->open();
      for (int k = 0; k < kKeys; ++k)
        if (s->put_if_absent("race/" + std::to_string(k), "thread " + std::to_string(t))) ++wins[k];
    });
  }
  for (auto& th : threads) th.join();
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(wins[k].load(), 1) << "key " << k;
}

TEST_P(ObjectStoreTest, ConcurrentUpdatersOfOneVersionHaveExactlyOneWinner) {
  constexpr int kThreads = 4, kRounds = 15;
  auto s = location_->open();
  std::string version = s->put("counter", "0");
  // Each thread increments the counter by compare-and-swap; no increment may be lost.
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto mine = location_->open();
      for (int done = 0; done < kRounds;) {
        auto now = mine->get("counter");
        if (!now) {
          ++failures;
          return;
        }
        if (mine->put_if_match("counter", std::to_string(std::stoi(now->data) + 1), now->etag)) ++done;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(s->get("counter")->data, std::to_string(kThreads * kRounds));
}

TEST_P(ObjectStoreTest, ListReturnsEveryKeyUnderThePrefixInOrderAcrossPages) {
  store::StoreOptions small = location_->options();
  small.list_page_size = 3;  // several pages on az:// (continuation markers)
  auto s = location_->open(small);
  std::set<std::string> keys;
  for (int i = 0; i < 8; ++i) {
    std::string key = "claims/" + std::to_string(100 + i) + ".0";
    keys.insert(key);
    ASSERT_TRUE(s->put_if_absent(key, "x"));
  }
  s->put("claimsX", "not under claims/");
  s->put("done/100", "y");
  auto listed = s->list("claims/");
  ASSERT_EQ(listed.size(), keys.size());
  auto it = keys.begin();
  for (const auto& o : listed) {
    EXPECT_EQ(o.key, *it++);
    EXPECT_EQ(o.etag, s->get(o.key)->etag);
  }
  EXPECT_EQ(s->list("claims/10").size(), 8u);
  EXPECT_EQ(s->list("claims/105").size(), 1u);
  EXPECT_EQ(s->list("").size(), 10u);
  EXPECT_TRUE(s->list("nothing/").empty());
}

TEST_P(ObjectStoreTest, RemoveSaysWhetherTheObjectExisted) {
  auto s = location_->open();
  s->put("a/b", "x");
  EXPECT_TRUE(s->remove("a/b"));
  EXPECT_FALSE(s->remove("a/b"));
  EXPECT_FALSE(s->get("a/b").has_value());
  EXPECT_TRUE(s->put_if_absent("a/b", "again").has_value()) << "a removed key can be created again";
}

TEST_P(ObjectStoreTest, AnAppendObjectGrowsByWholeAppendsAndIsReadFromAnyOffset) {
  auto s = location_->open();
  EXPECT_FALSE(s->get_range("journal/a.mjl", 0).has_value());
  ASSERT_TRUE(s->create_append("journal/a.mjl"));
  EXPECT_FALSE(s->create_append("journal/a.mjl"));
  EXPECT_EQ(s->get_range("journal/a.mjl", 0), std::optional<std::string>(""));
  EXPECT_EQ(s->append("journal/a.mjl", "abc", 0), 3u);
  EXPECT_EQ(s->append("journal/a.mjl", "defg", 3), 7u);
  EXPECT_EQ(s->append("journal/a.mjl", "", 7), 7u);
  EXPECT_EQ(s->get_range("journal/a.mjl", 0), std::optional<std::string>("abcdefg"));
  EXPECT_EQ(s->get_range("journal/a.mjl", 3), std::optional<std::string>("defg"));
  EXPECT_EQ(s->get_range("journal/a.mjl", 7), std::optional<std::string>(""));
  EXPECT_EQ(s->get_range("journal/a.mjl", 100), std::optional<std::string>(""));
  // A second reader of its own follows it too.
  EXPECT_EQ(location_->open()->get_range("journal/a.mjl", 5), std::optional<std::string>("fg"));
}

TEST_P(ObjectStoreTest, AnAppendAtAnotherLengthIsRefusedAndChangesNothing) {
  auto s = location_->open();
  ASSERT_TRUE(s->create_append("journal/b.mjl"));
  s->append("journal/b.mjl", "abc", 0);
  EXPECT_THROW(s->append("journal/b.mjl", "xyz", 0), StoreError);
  EXPECT_THROW(s->append("journal/b.mjl", "xyz", 5), StoreError);
  EXPECT_EQ(s->get_range("journal/b.mjl", 0), std::optional<std::string>("abc"));
  EXPECT_THROW(s->append("journal/none.mjl", "xyz", 0), StoreError);
}

TEST_P(ObjectStoreTest, AnAppendLargerThanOneBlockArrivesWhole) {
  auto s = location_->open();
  std::string big(9u << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
  ASSERT_TRUE(s->create_append("journal/big.mjl"));
  EXPECT_EQ(s->append("journal/big.mjl", "head", 0), 4u);
  EXPECT_EQ(s->append("journal/big.mjl", big, 4), 4 + big.size());
  EXPECT_EQ(s->get_range("journal/big.mjl", 4), std::optional<std::string>(big));
}

INSTANTIATE_TEST_SUITE_P(Backends, ObjectStoreTest,
                         ::testing::Values(Backend::kFileExcl, Backend::kFileLink, Backend::kAzurite),
                         [](const auto& info) { return backend_name(info.param); });

// ---------------------------------------------------------------------------------------------
// file://

TEST(FileStore, ObjectsAreNeverWorldWritableEvenUnderUmaskZero) {
  TempDir tmp;
  mode_t old = ::umask(0);
  {
    auto s = store::open_store((tmp.path() / "st").string());
    s->put_if_absent("claims/deep/1.0", "x");
    s->put("participants/p", "y");
  }
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat((tmp.path() / "st/claims/deep/1.0").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0664u);
  ASSERT_EQ(::stat((tmp.path() / "st/participants/p").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0664u);
  for (const char* dir : {"st", "st/claims", "st/claims/deep", "st/participants"}) {
    ASSERT_EQ(::stat((tmp.path() / dir).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0775u) << dir;
  }
}

TEST(FileStore, TemporaryFilesAndMarkersAreNotListed) {
  TempDir tmp;
  auto s = store::open_store("file://" + (tmp.path() / "st").string());
  std::string v = s->put("k", "1");
  tmp.write("st/.k.tmp-1-abc", "left by a crash");
  tmp.write("st/.k.next." + v, "left by a crash");
  auto listed = s->list("");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].key, "k");
  EXPECT_FALSE(s->put_if_match("k", "2", v).has_value()) << "a leftover marker holds its version";
  EXPECT_TRUE(s->put_if_match("k", "2", s->put("k", "1b")).has_value()) << "a put gives a new version";
}

TEST(FileStore, KeysThatLeaveTheStoreAreRefused) {
  TempDir tmp;
  auto s = store::open_store((tmp.path() / "st").string());
  for (const char* bad : {"../x", "a/../../x", "/abs", "a//b", ".hidden", "a/.b", ""}) {
    EXPECT_THROW(s->put(bad, "x"), StoreError) << bad;
    EXPECT_THROW(s->get(bad), StoreError) << bad;
  }
}

// Root ignores file modes, so the unwritable case runs in a child that became 'nobody'.
TEST(FileStore, AnUnwritableDirectoryIsAUsageErrorNamingIt) {
  TempDir tmp;
  stdfs::create_directory(tmp.path() / "ro");
  stdfs::permissions(tmp.path(),
                     stdfs::perms::owner_all | stdfs::perms::others_exec | stdfs::perms::group_exec);
  std::string url = "file://" + (tmp.path() / "ro").string();
  std::string error = in_child([&]() -> std::string {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0)
      return "cannot drop privileges";
    return usage_error_message([&] { store::open_store(url); });
  });
  EXPECT_EQ(error, "store '" + url + "': cannot write: Permission denied");
}

// A file size limit stands in for a full disk: the write fails with EFBIG, and the object that
// could not be written whole is not left behind.
TEST(FileStore, AFullDiskIsAStoreErrorAndLeavesNoPartialObject) {
  TempDir tmp;
  std::string url = (tmp.path() / "st").string();
  std::string outcome = in_child([&]() -> std::string {
    std::signal(SIGXFSZ, SIG_IGN);
    auto s = store::open_store(url);
    rlimit limit{100, 100};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return "setrlimit failed";
    std::string report;
    for (auto* call : {"create", "put"}) {
      try {
        if (std::string(call) == "create")
          s->put_if_absent("big", std::string(1000, 'x'));
        else
          s->put("big", std::string(1000, 'x'));
        report += std::string(call) + ": no error\n";
      } catch (const StoreError& e) {
        report += std::string(call) + ": " + e.what() + "\n";
      }
    }
    report += s->get("big") ? "left behind" : "nothing left";
    return report;
  });
  std::string head = "file://" + url + ": cannot write 'big': File too large\n";
  EXPECT_EQ(outcome, "create: " + head + "put: " + head + "nothing left");
}

TEST(StoreUrl, UnknownSchemesAreRefusedNamingTheScheme) {
  EXPECT_EQ(usage_error_message([] { store::open_store("s3://bucket/x"); }),
            "store 's3://bucket/x': unknown scheme 's3' (mpmux knows file:// and az://)");
  EXPECT_EQ(usage_error_message([] { store::open_store("gs:/bucket"); }),
            "store 'gs:/bucket': unknown scheme 'gs' (mpmux knows file:// and az://)");
  EXPECT_EQ(store::url_scheme("az:/x"), "az");
  EXPECT_EQ(store::url_scheme("./az:/x"), "");
  EXPECT_EQ(store::url_scheme("dir/a:b"), "");
  EXPECT_EQ(store::url_scheme("c++:/x"), "c++");
}

TEST(StoreUrl, LocalPathsAcceptPlainPathsAndFileUrlsOnly) {
  EXPECT_EQ(store::local_path_of("scratch/runs", "ROOT"), "scratch/runs");
  EXPECT_EQ(store::local_path_of("./az:/x", "ROOT"), "./az:/x");
  EXPECT_EQ(store::local_path_of("file:///scr/a%20b", "ROOT"), "/scr/a b");
  EXPECT_EQ(usage_error_message([] { store::local_path_of("az://acct/c/p", "ROOT"); }),
            "ROOT 'az://acct/c/p': an az:// URL names blobs, not a directory here");
  EXPECT_EQ(
      usage_error_message([] { store::local_path_of("s3://b/p", "ROOT"); }),
      "ROOT 's3://b/p': unknown scheme 's3' (mpmux knows file:// and plain paths; write ./s3://b/p for a "
      "relative directory)");
  EXPECT_EQ(usage_error_message([] { store::local_path_of("file://rel/x", "MUX_DIR"); }),
            "MUX_DIR 'file://rel/x': a file URL names an absolute path (file:///path)");
}

// ---------------------------------------------------------------------------------------------
// az://

class AzureStore : public ::testing::Test {
 protected:
  void SetUp() override {
    endpoint_ = azurite_endpoint();
    use_azurite(endpoint_);
    url_ = std::string("az://") + kAzuriteAccount + "/" + fresh_container();
    store::StoreOptions create;
    create.create_container = true;
    store_ = store::open_store(url_ + "/p", create);
  }
  std::string endpoint_, url_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_F(AzureStore, ALeaseIsExclusiveUntilReleased) {
  ASSERT_TRUE(store_->has_leases());
  store_->put("lock", "x");
  auto other = store::open_store(url_ + "/p");
  auto id = store_->acquire_lease("lock", std::chrono::seconds(15));
  ASSERT_TRUE(id.has_value());
  EXPECT_FALSE(other->acquire_lease("lock", std::chrono::seconds(15)).has_value());
  EXPECT_TRUE(store_->renew_lease("lock", *id));
  EXPECT_FALSE(other->renew_lease("lock", "00000000-0000-0000-0000-000000000000"));
  EXPECT_THROW(other->put("lock", "taken"), StoreError) << "a leased blob is written only with its lease";
  store_->release_lease("lock", *id);
  EXPECT_TRUE(other->acquire_lease("lock", std::chrono::seconds(15)).has_value());
}

TEST_F(AzureStore, AWrongKeyIsAUsageErrorThatNeverShowsAKey) {
  const std::string wrong =
      "d3Jvbmcga2V5IG9mIHNpeHR5LWZvdXIgYnl0ZXMsIG5vdCB0aGUgYWNjb3VudCBvbmUgYXQgYWxsISEhISEhIQ==";
  ::setenv("AZURE_STORAGE_KEY", wrong.c_str(), 1);
  auto s = store::open_store(url_ + "/p");
  std::string message = usage_error_message([&] { s->get("x"); });
  EXPECT_EQ(message.rfind(url_ + "/p: cannot read 'x': HTTP 403 ", 0), 0u) << message;
  EXPECT_NE(message.find(": the key is not the account 'devstoreaccount1''s (check AZURE_STORAGE_KEY or "
                         "AZURE_STORAGE_CONNECTION_STRING)"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find(wrong), std::string::npos);
  EXPECT_EQ(message.find(kAzuriteKey), std::string::npos);
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_EQ(s->url().find(wrong), std::string::npos);
}

TEST_F(AzureStore, TheKeyNeverAppearsInAnyErrorMessage) {
  // Every way of failing that names the store, with the key set both ways.
  std::vector<std::string> messages;
  auto collect = [&](auto&& fn) {
    try {
      fn();
      messages.push_back("(no error)");
    } catch (const Error& e) {
      messages.push_back(e.what());
    }
  };
  for (bool connection_string : {false, true}) {
    if (connection_string) {
      ::unsetenv("AZURE_STORAGE_KEY");
      std::string cs = std::string("DefaultEndpointsProtocol=http;AccountName=") + kAzuriteAccount +
                       ";AccountKey=" + kAzuriteKey + ";BlobEndpoint=" + endpoint_ + ";";
      ::setenv("AZURE_STORAGE_CONNECTION_STRING", cs.c_str(), 1);
      ::unsetenv("AZURE_STORAGE_BLOB_ENDPOINT");
    }
    collect([&] {
      store::open_store(std::string("az://") + kAzuriteAccount + "/nocontainer" + posix::random_hex(6))
          ->get("x");
    });
    collect([&] { store::open_store("az://otheraccount/c0ntainer")->get("x"); });
    collect([&] { store::open_store("az://" + std::string(kAzuriteAccount) + "/BAD_NAME"); });
    ::setenv("AZURE_STORAGE_BLOB_ENDPOINT", "http://127.0.0.1:1/devstoreaccount1", 1);
    store::StoreOptions quick;
    quick.retry_budget = std::chrono::milliseconds(300);
    collect([&] { store::open_store(url_, quick)->get("x"); });
    ::unsetenv("AZURE_STORAGE_BLOB_ENDPOINT");
    if (!connection_string) ::setenv("AZURE_STORAGE_BLOB_ENDPOINT", endpoint_.c_str(), 1);
  }
  ASSERT_EQ(messages.size(), 8u);
  for (const std::string& m : messages) {
    EXPECT_NE(m, "(no error)");
    EXPECT_EQ(m.find(kAzuriteKey), std::string::npos) << m;
    EXPECT_EQ(m.find("Eby8vdM02x"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  EXPECT_NE(messages[0].find("container 'nocontainer"), std::string::npos) << messages[0];
  EXPECT_NE(messages[5].find("is for account 'devstoreaccount1', not 'otheraccount'"), std::string::npos)
      << messages[5];
  EXPECT_NE(messages[3].find("cannot reach http://127.0.0.1:1/devstoreaccount1"), std::string::npos)
      << messages[3];
}

TEST_F(AzureStore, AMissingContainerIsAUsageErrorNamingIt) {
  auto s = store::open_store(std::string("az://") + kAzuriteAccount + "/absent-container");
  EXPECT_EQ(usage_error_message([&] { s->put_if_absent("claims/0.0", "x"); }),
            "az://devstoreaccount1/absent-container: cannot create 'claims/0.0': HTTP 404 ContainerNotFound: "
            "container 'absent-container' does not exist");
}

TEST_F(AzureStore, AnUnreachableEndpointIsAStoreErrorNamingItAfterRetries) {
  ::setenv("AZURE_STORAGE_BLOB_ENDPOINT", "http://127.0.0.1:1/devstoreaccount1", 1);
  store::StoreOptions quick;
  quick.retry_budget = std::chrono::milliseconds(500);
  quick.first_backoff = std::chrono::milliseconds(50);
  auto s = store::open_store(url_, quick);
  try {
    s->get("x");
    FAIL() << "no error";
  } catch (const UsageError& e) {
    FAIL() << "a usage error: " << e.what();
  } catch (const StoreError& e) {
    std::string m = e.what();
    EXPECT_EQ(m.rfind(url_ + ": cannot read 'x': cannot reach http://127.0.0.1:1/devstoreaccount1: ", 0), 0u)
        << m;
    EXPECT_NE(m.find(" tries in "), std::string::npos) << m;
  }
}

TEST_F(AzureStore, MissingOrMalformedCredentialsAreUsageErrors) {
  ::unsetenv("AZURE_STORAGE_KEY");
  EXPECT_EQ(usage_error_message([&] { store::open_store(url_); }),
            "store '" + url_ +
                "': no key: set AZURE_STORAGE_KEY (the account's access key) or "
                "AZURE_STORAGE_CONNECTION_STRING");
  ::setenv("AZURE_STORAGE_KEY", "not base64!", 1);
  EXPECT_EQ(usage_error_message([&] { store::open_store(url_); }),
            "store '" + url_ +
                "': the account key is not base64 (check AZURE_STORAGE_KEY or "
                "AZURE_STORAGE_CONNECTION_STRING)");
  ::setenv("AZURE_STORAGE_KEY", kAzuriteKey, 1);
  ::setenv("AZURE_STORAGE_BLOB_ENDPOINT", "ftp://127.0.0.1/x", 1);
  EXPECT_EQ(usage_error_message([&] { store::open_store(url_); }),
            "store '" + url_ + "': the blob endpoint 'ftp://127.0.0.1/x' is not an http:// or https:// URL");
}

TEST_F(AzureStore, TheConnectionStringGivesKeyAndEndpoint) {
  ::unsetenv("AZURE_STORAGE_KEY");
  ::unsetenv("AZURE_STORAGE_BLOB_ENDPOINT");
  std::string cs = std::string("DefaultEndpointsProtocol=http;AccountName=") + kAzuriteAccount +
                   ";AccountKey=" + kAzuriteKey + ";BlobEndpoint=" + endpoint_ + ";";
  ::setenv("AZURE_STORAGE_CONNECTION_STRING", cs.c_str(), 1);
  auto s = store::open_store(url_ + "/p");
  EXPECT_TRUE(s->put_if_absent("from-cs", "x").has_value());
  EXPECT_EQ(store_->get("from-cs")->data, "x");
}

// The example of the SharedKey documentation's layout: every field in its place, x-ms-* headers
// sorted, query parameters lowercased and sorted after the resource.
TEST(AzureSigning, TheStringToSignFollowsTheSharedKeyLayout) {
  std::string s =
      store::azure_string_to_sign("PUT",
                                  {{"x-ms-version", "2021-12-02"},
                                   {"content-length", "5"},
                                   {"if-none-match", "*"},
                                   {"x-ms-date", "Sat, 05 Dec 2026 00:10:00 GMT"},
                                   {"content-type", "application/octet-stream"},
                                   {"x-ms-blob-type", "BlockBlob"}},
                                  "/acct/acct/cont/p/claims/0.0", {{"comp", "lease"}, {"Restype", "x"}});
  EXPECT_EQ(s,
            "PUT\n\n\n5\n\napplication/octet-stream\n\n\n\n*\n\n\n"
            "x-ms-blob-type:BlockBlob\nx-ms-date:Sat, 05 Dec 2026 00:10:00 GMT\nx-ms-version:2021-12-02\n"
            "/acct/acct/cont/p/claims/0.0\ncomp:lease\nrestype:x");
  EXPECT_EQ(store::azure_string_to_sign("GET", {{"content-length", "0"}}, "/a/b", {}),
            "GET\n\n\n\n\n\n\n\n\n\n\n\n/a/b");
}

// Through dropped connections, answers after the timeout, 503s, and 500s or resets after the
// append took effect, every append lands exactly once and in order.
TEST(AzureAppendFaults, ThroughAFaultyProxyEveryAppendLandsExactlyOnce) {
  const std::string endpoint = azurite_endpoint();
  const int upstream = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  use_azurite(endpoint);
  const std::string url = std::string("az://") + kAzuriteAccount + "/" + fresh_container() + "/faults";
  store::StoreOptions direct;
  direct.create_container = true;
  auto truth = store::open_store(url, direct);

  FaultProxy proxy(upstream, 11, 0.3, 1.5);
  const std::string via_proxy = "http://127.0.0.1:" + std::to_string(proxy.port()) + "/" + kAzuriteAccount;
  ::setenv("AZURE_STORAGE_BLOB_ENDPOINT", via_proxy.c_str(), 1);
  store::StoreOptions faulty;
  faulty.request_timeout = std::chrono::milliseconds(1000);
  faulty.first_backoff = std::chrono::milliseconds(20);
  auto s = store::open_store(url, faulty);
  ASSERT_TRUE(s->create_append("journal/p.mjl"));
  std::string expected;
  std::uint64_t length = 0;
  for (int i = 0; i < 40; ++i) {
    const std::string chunk =
        "record " + std::to_string(i) + std::string(static_cast<std::size_t>(i), '.') + "\n";
    length = s->append("journal/p.mjl", chunk, length);
    expected += chunk;
    ASSERT_EQ(length, expected.size());
  }
  const std::string report = proxy.stop();
  ::setenv("AZURE_STORAGE_BLOB_ENDPOINT", endpoint.c_str(), 1);
  EXPECT_EQ(truth->get_range("journal/p.mjl", 0), std::optional<std::string>(expected)) << report;
  // The run must have met the faults that make an append ambiguous, or it proved nothing.
  EXPECT_GT(count_of(report, "500-after") + count_of(report, "reset-after"), 0) << report;
  EXPECT_GT(count_of(report, "delay"), 0) << report;
}

}  // namespace
}  // namespace mpmux::test
