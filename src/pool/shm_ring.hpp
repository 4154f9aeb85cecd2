// Single-producer single-consumer byte rings in shared memory, with futex wake-ups, used
// between the process pool's event loop and one worker process.
#pragma once
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

namespace mpmux::pool_detail {

inline void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t seen, long timeout_ms) {
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000};
  // Not FUTEX_PRIVATE: the word is shared between processes.
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

inline void futex_wake(std::atomic<std::uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

/// Positions only grow; the byte at position p lives at data[p & (capacity - 1)]. The
/// worker is the only side that ever sleeps on the ring (on wake_seq); the event loop sleeps
/// on an eventfd instead and is woken through the control block.
struct RingHeader {
  alignas(64) std::atomic<std::uint64_t> head{0};  // written by the producer
  alignas(64) std::atomic<std::uint64_t> tail{0};  // written by the consumer
  alignas(64) std::atomic<std::uint32_t> worker_waiting{0};
  std::atomic<std::uint32_t> wake_seq{0};
  std::atomic<std::uint32_t> parent_waiting{0};  // the event loop has bytes it could not write
};

class Ring {
 public:
  Ring() = default;
  Ring(RingHeader* h, char* data, std::uint64_t capacity) : h_(h), data_(data), cap_(capacity) {}

  std::uint64_t readable() const { return h_->head.load() - h_->tail.load(); }
  std::uint64_t writable() const { return cap_ - readable(); }
  std::uint64_t capacity() const { return cap_; }
  RingHeader* header() const { return h_; }

  /// Copies up to n bytes in; returns how many. Never blocks.
  std::size_t write_some(const char* src, std::size_t n) {
    std::uint64_t head = h_->head.load(std::memory_order_relaxed);
    std::uint64_t space = cap_ - (head - h_->tail.load(std::memory_order_acquire));
    std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(space, n));
    copy_in(head, src, k);
    h_->head.store(head + k);  // seq_cst: pairs with the reader's waiting flag
    return k;
  }

  /// Copies up to n bytes out; returns how many. Never blocks.
  std::size_t read_some(char* dst, std::size_t n) {
    std::uint64_t tail = h_->tail.load(std::memory_order_relaxed);
    std::uint64_t avail = h_->head.load(std::memory_order_acquire) - tail;
    std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(avail, n));
    copy_out(tail, dst, k);
    h_->tail.store(tail + k);
    return k;
  }

  /// Wakes the worker if it sleeps on this ring (called by the event loop after it moved data).
  void wake_worker() {
    if (h_->worker_waiting.load()) {
      h_->worker_waiting.store(0);
      h_->wake_seq.fetch_add(1);
      futex_wake(&h_->wake_seq);
    }
  }

  /// Worker side: sleeps until `ready()` holds or timeout_ms passed.
  template <class Pred>
  void worker_wait(Pred ready, long timeout_ms) {
    std::uint32_t seq = h_->wake_seq.load();
    h_->worker_waiting.store(1);
    if (!ready()) futex_wait(&h_->wake_seq, seq, timeout_ms);
    h_->worker_waiting.store(0);
  }

  void reset() {
    h_->head.store(0);
    h_->tail.store(0);
    h_->worker_waiting.store(0);
    h_->parent_waiting.store(0);
  }

 private:
  void copy_in(std::uint64_t pos, const char* src, std::size_t n) {
    std::size_t at = static_cast<std::size_t>(pos & (cap_ - 1));
    std::size_t first = std::min<std::size_t>(n, static_cast<std::size_t>(cap_) - at);
    std::memcpy(data_ + at, src, first);
    std::memcpy(data_, src + first, n - first);
  }
  void copy_out(std::uint64_t pos, char* dst, std::size_t n) {
    std::size_t at = static_cast<std::size_t>(pos & (cap_ - 1));
    std::size_t first = std::min<std::size_t>(n, static_cast<std::size_t>(cap_) - at);
    std::memcpy(dst, data_ + at, first);
    std::memcpy(dst + first, data_, n - first);
  }

  RingHeader* h_ = nullptr;
  char* data_ = nullptr;
  std::uint64_t cap_ = 0;
};

}  // namespace mpmux::pool_detail
