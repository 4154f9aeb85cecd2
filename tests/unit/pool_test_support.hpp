// Helpers shared by the pool tests: a counting generator, CPU-set probes, and a board in shared
// memory with a polling wait, so that one test body can serve a ThreadPool and a ProcessPool.
#pragma once
#include <sched.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mpmux::test {

/// An input-only range of 0..n-1 that counts how many items were read (like a Python
/// generator: it cannot be rewound or sized).
class CountingGenerator {
 public:
  CountingGenerator(std::uint64_t n, std::atomic<std::uint64_t>& produced) : n_(n), produced_(&produced) {}
  class iterator {
   public:
    using value_type = std::uint64_t;
    using difference_type = std::ptrdiff_t;
    using iterator_category = std::input_iterator_tag;
    iterator() = default;
    explicit iterator(CountingGenerator* g) : g_(g) {}
    std::uint64_t operator*() const {
      g_->produced_->fetch_add(1);
      return g_->next_;
    }
    iterator& operator++() {
      ++g_->next_;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return g_->next_ >= g_->n_; }

   private:
    CountingGenerator* g_ = nullptr;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::uint64_t n_;
  std::uint64_t next_ = 0;
  std::atomic<std::uint64_t>* produced_;
};

inline std::vector<int> cpus_of(const cpu_set_t& set) {
  std::vector<int> out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

/// The CPUs the calling thread may run on.
inline std::vector<int> thread_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof set, &set);
  return cpus_of(set);
}

/// The CPUs this test process may use (its affinity when the test starts).
inline std::vector<int> allowed_cpus() { return thread_cpus(); }

/// A T in anonymous shared memory, made before a pool forks, so that the test and the pool's
/// workers (threads or forked processes) see the same object. T holds plain data and lock-free
/// atomics only.
template <class T>
class SharedBoard {
 public:
  SharedBoard() {
    void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap of a shared test board failed");
    t_ = new (p) T();
  }
  ~SharedBoard() {
    t_->~T();
    munmap(t_, sizeof(T));
  }
  SharedBoard(const SharedBoard&) = delete;
  SharedBoard& operator=(const SharedBoard&) = delete;
  T* get() const { return t_; }
  T* operator->() const { return t_; }

 private:
  T* t_;
};

/// A SharedBoard published through a global pointer that plain-function tasks read, for the
/// lifetime of one test.
template <class T>
class BoardScope {
 public:
  explicit BoardScope(T*& global) : global_(global) { global_ = board_.get(); }
  ~BoardScope() { global_ = nullptr; }
  BoardScope(const BoardScope&) = delete;
  BoardScope& operator=(const BoardScope&) = delete;
  T* operator->() const { return board_.get(); }

 private:
  SharedBoard<T> board_;
  T*& global_;
};

/// Polls `done` until it holds (true) or `limit` passed (false). It polls because the other
/// party may be a forked worker, where a condition variable cannot reach.
template <class Pred>
bool wait_until(Pred done, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  auto end = std::chrono::steady_clock::now() + limit;
  for (int spins = 0; !done(); ++spins) {
    if (std::chrono::steady_clock::now() > end) return false;
    if (spins < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  return true;
}

}  // namespace mpmux::test
