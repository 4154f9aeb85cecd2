#include "run/stat_text.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "store/utf8.hpp"

namespace mpmux::run {

std::string printable(std::string_view s) {
  std::string out;
  while (!s.empty()) {
    const std::size_t bad = utf8::first_invalid(s);
    const std::string_view good = s.substr(0, bad);
    for (char c : good)
      out.push_back((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7F ? '?' : c);
    if (bad == std::string_view::npos) break;
    out.push_back('?');
    s.remove_prefix(bad + 1);
  }
  return out;
}

std::string duration_text(double seconds) {
  const auto s = static_cast<unsigned long long>(std::llround(std::max(0.0, seconds)));
  const auto two = [](unsigned long long a, const char* ua, unsigned long long b, const char* ub) {
    return std::to_string(a) + " " + ua + (b ? " " + std::to_string(b) + " " + ub : std::string());
  };
  if (s < 60) return std::to_string(s) + " s";
  if (s < 3600) return two(s / 60, "min", s % 60, "s");
  if (s < 86400) return two(s / 3600, "h", s % 3600 / 60, "min");
  return two(s / 86400, "d", s % 86400 / 3600, "h");
}

std::string slurm_text(const ParticipantStat& p) {
  if (!p.slurm_array_job_id.empty() && !p.slurm_array_task_id.empty())
    return p.slurm_array_job_id + "_" + p.slurm_array_task_id;
  return p.slurm_job_id.empty() ? "-" : p.slurm_job_id;
}

std::string rate_text(double rate) {
  char buf[32];
  std::snprintf(buf, sizeof buf, rate >= 100 ? "%.0f" : "%.1f", rate);
  return buf;
}

std::size_t columns_of(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(
      text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::vector<std::string> table_lines(const std::vector<std::vector<std::string>>& rows,
                                     std::string_view align) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()), 0);
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], columns_of(row[c]));
  }
  std::vector<std::string> lines;
  for (const auto& row : rows) {
    std::string line = " ";
    for (std::size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - columns_of(row[c]), ' ');
      line += " " + (c < align.size() && align[c] == 'l' ? row[c] + pad : pad + row[c]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace mpmux::run
