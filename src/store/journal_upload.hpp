// The copy of one journal in an append blob of its session on Azure Blob storage. JournalWriter
// hands it every write; a thread of its own appends them, so the run's loop never waits on HTTP.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "store/object_store.hpp"

namespace mpmux::store {

class JournalUpload {
 public:
  /// Creates the empty append object `key` in the store at `url`. Throws StoreError (or
  /// UsageError for a wrong key or a missing container).
  JournalUpload(const std::string& url, std::string key);
  /// Appends what is queued, then stops.
  ~JournalUpload();
  JournalUpload(const JournalUpload&) = delete;
  JournalUpload& operator=(const JournalUpload&) = delete;

  /// Queues the journal's next bytes. Never waits on the store.
  void push(std::string_view bytes);
  /// Waits until every byte pushed is in the object. Throws StoreError when an append failed
  /// (after the store's retries); nothing is appended after a failure.
  void wait();
  /// Throws that StoreError without waiting.
  void check();
  /// The object's URL and key, for messages.
  std::string name() const { return store_->url() + "/" + key_; }

  /// Appends are at least this far apart unless wait() asks: an append blob holds at most
  /// 50,000 appends, which is then about 14 hours of continuous writing.
  static constexpr std::chrono::milliseconds kMinGap{1000};

 private:
  void loop();

  std::unique_ptr<ObjectStore> store_;
  std::string key_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::string pending_;
  std::uint64_t pushed_ = 0, uploaded_ = 0;
  int waiters_ = 0;
  bool stop_ = false;
  std::string error_;
  std::thread thread_;
};

}  // namespace mpmux::store
