// Progress of a run on the root rank's stderr: a redrawn bar where the user's terminal is at the
// end of it (run/terminal.hpp), a plain line every `interval` seconds otherwise (Slurm output).
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>

#include "run/terminal.hpp"

namespace mpmux::run {

class ProgressPrinter {
 public:
  ProgressPrinter(std::uint64_t total, double interval_s, ProgressDisplay display, std::FILE* out = stderr);
  /// Cheap to call often: draws only when due.
  void update(std::uint64_t done, std::uint64_t failed);
  /// Draws the final state and ends the line.
  void finish(std::uint64_t done, std::uint64_t failed);

 private:
  void draw(std::uint64_t done, std::uint64_t failed, bool final);
  using Clock = std::chrono::steady_clock;
  std::uint64_t total_;
  std::FILE* out_;
  ProgressDisplay display_;
  bool bar_;
  bool drawn_ = false;  // a bar line is on the screen (the whole-line redraw moves up over it)
  Clock::duration interval_;
  Clock::time_point start_, last_;
};

}  // namespace mpmux::run
