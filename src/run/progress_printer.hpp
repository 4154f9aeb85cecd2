// Progress of a run on the root rank's stderr: a redrawn bar on a terminal, a plain line every
// `interval` seconds when stderr is a file (Slurm output).
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace mpmux::run {

class ProgressPrinter {
 public:
  ProgressPrinter(std::uint64_t total, double interval_s, std::FILE* out = stderr);
  /// Cheap to call often: draws only when due.
  void update(std::uint64_t done, std::uint64_t failed);
  /// Draws the final state and ends the line.
  void finish(std::uint64_t done, std::uint64_t failed);

 private:
  void draw(std::uint64_t done, std::uint64_t failed, bool final);
  using Clock = std::chrono::steady_clock;
  std::uint64_t total_;
  std::FILE* out_;
  bool tty_;
  Clock::duration interval_;
  Clock::time_point start_, last_;
};

}  // namespace mpmux::run
