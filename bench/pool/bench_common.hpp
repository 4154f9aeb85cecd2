// Shared by the pool benchmark contenders: the tiny element function, timing and output.
// Each program prints "sample <question> <contender> <seconds>" lines that run.sh aggregates.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace bench {

constexpr std::uint64_t kThreadElements = 10'000'000;
constexpr std::uint64_t kProcessElements = 1'000'000;
constexpr int kProcessChunk = 1000;  // python_mp.py uses the same chunksize

/// The "tiny element": a few integer operations, so that the pool's overhead dominates.
inline std::uint64_t tiny(std::uint64_t x) { return (x * 2654435761u) ^ (x >> 7); }

inline int reps(int argc, char** argv) { return argc > 1 ? std::atoi(argv[1]) : 5; }

template <class F>
double seconds(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline void sample(const char* question, const char* contender, double s) {
  std::printf("sample %s %s %.9f\n", question, contender, s);
  std::fflush(stdout);
}

}  // namespace bench
