// Parts of a session's Stat as text for people, shared by `mpmux stat` and `mpmux top`.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/session.hpp"

namespace mpmux::run {

/// Text from a task or a heartbeat, made safe for a terminal: invalid UTF-8 and control
/// characters (escape sequences included) become '?'.
std::string printable(std::string_view s);
/// "45 s", "12 min 5 s", "3 h 20 min", "2 d 4 h".
std::string duration_text(double seconds);
/// "123", "120_3" for task 3 of array job 120, or "-" outside Slurm.
std::string slurm_text(const ParticipantStat& p);
/// "8.5", "120": elements per second.
std::string rate_text(double rate);

/// Columns of a UTF-8 text as a terminal shows it: one per character (wide characters are
/// taken for one).
std::size_t columns_of(std::string_view text);
/// The rows (the first one the heading) as aligned lines, indented by two spaces: column c to
/// the left when align[c] is 'l' (names), else to the right (numbers).
std::vector<std::string> table_lines(const std::vector<std::vector<std::string>>& rows,
                                     std::string_view align);

}  // namespace mpmux::run
