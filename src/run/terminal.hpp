// Whether the user's terminal is at the end of rank 0's stderr, also when a launcher forwards
// that stderr through a pipe (mpirun, srun), and so how progress is shown: the rule and its
// limits are in docs/design.md ("Progress where the user is").
#pragma once
#include <sys/types.h>

#include <cstdlib>
#include <filesystem>
#include <functional>

#include "mpmux/run.hpp"

namespace mpmux::run {

/// How the progress of a run is shown.
struct ProgressDisplay {
  enum class Kind { lines, bar };
  Kind kind = Kind::lines;
  /// The launcher forwards whole lines only (srun): each redraw of the bar is a line of its own
  /// that first moves the cursor up over the previous one, instead of a carriage return.
  bool whole_lines = false;
  /// The terminal's width in columns, 0 when unknown.
  int columns = 0;
};

/// What the decision looks at; the defaults are this process's. Tests give a made-up /proc.
struct ProcessContext {
  std::function<const char*(const char*)> env = [](const char* name) { return std::getenv(name); };
  std::filesystem::path proc = "/proc";
  int stderr_fd = 2;
  pid_t parent = -1;  // -1: getppid()
};

/// A bar when the user's terminal is at the end of stderr (lines in a Slurm batch job whatever
/// the descriptors say); `bar` and `lines` force the kind. Never throws.
ProgressDisplay progress_display(ProgressOutput wanted, const ProcessContext& context = {});

}  // namespace mpmux::run
