// The frame `mpmux top` draws of a session: its counts, a progress bar with rate and ETA, the
// live participants and the longest-running elements, laid out in lines that fit the terminal.
// A pure function of what session_stat read, so that its layout is tested without a terminal.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/session.hpp"

namespace mpmux::run {

struct TopView {
  std::string mux_id;
  Stat stat;
  /// The reader's wall clock when the stat was read: how long the running elements have run.
  std::int64_t now_unix_ns = 0;
  /// Why the last read failed, shown under the counts (which are then those of the read before).
  std::string trouble;
};

/// At most `height` lines of at most `width` columns each (a line cut short ends with '>'), no
/// control characters. When the terminal is short, the participants and the running elements
/// are cut to what fits, each with a line saying how many are left out.
std::vector<std::string> top_frame(const TopView& view, std::size_t width, std::size_t height);

/// `line` cut to `width` columns: a cut line ends with '>'; tabs become spaces.
std::string clip(std::string_view line, std::size_t width);

}  // namespace mpmux::run
