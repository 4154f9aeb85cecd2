#include "store/journal_upload.hpp"

#include "mpmux/error.hpp"

namespace mpmux::store {

JournalUpload::JournalUpload(const std::string& url, std::string key)
    : store_(open_store(url)), key_(std::move(key)) {
  if (!store_->create_append(key_))
    throw StoreError(name() + ": exists already (another writer of this name?)");
  thread_ = std::thread([this] { loop(); });
}

JournalUpload::~JournalUpload() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void JournalUpload::push(std::string_view bytes) {
  if (bytes.empty()) return;
  {
    std::lock_guard lock(mutex_);
    if (!error_.empty()) return;
    pending_.append(bytes);
    pushed_ += bytes.size();
  }
  cv_.notify_all();
}

void JournalUpload::wait() {
  std::unique_lock lock(mutex_);
  ++waiters_;
  cv_.notify_all();
  cv_.wait(lock, [&] { return uploaded_ == pushed_ || !error_.empty(); });
  --waiters_;
  if (!error_.empty()) throw StoreError(error_);
}

void JournalUpload::check() {
  std::lock_guard lock(mutex_);
  if (!error_.empty()) throw StoreError(error_);
}

void JournalUpload::loop() {
  std::uint64_t length = 0;
  auto last = std::chrono::steady_clock::now() - kMinGap;
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
    if (pending_.empty()) return;  // stopping, all appended
    // What comes meanwhile joins this append, so appends stay few whatever the write rate.
    cv_.wait_until(lock, last + kMinGap, [&] { return stop_ || waiters_ > 0; });
    std::string data = std::move(pending_);
    pending_.clear();
    lock.unlock();
    std::string failed;
    try {
      length = store_->append(key_, data, length);
    } catch (const std::exception& e) {
      failed = e.what();
    }
    last = std::chrono::steady_clock::now();
    lock.lock();
    if (!failed.empty()) {
      error_ = failed + " (the journal's copy in the store stops at " + std::to_string(length) + " bytes)";
      pending_.clear();
      cv_.notify_all();
      return;
    }
    uploaded_ += data.size();
    cv_.notify_all();
  }
}

}  // namespace mpmux::store
