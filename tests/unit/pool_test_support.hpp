// Helpers shared by the pool tests: a counting generator and CPU-set probes.
#pragma once
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <iterator>
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

}  // namespace mpmux::test
