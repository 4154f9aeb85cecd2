#include "run/deadline.hpp"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include "mpmux/error.hpp"

namespace mpmux::run {

namespace {

[[noreturn]] void bad(std::string_view text) {
  throw UsageError("--deadline '" + std::string(text) +
                   "': expected an ISO time (2026-11-22T02:10:00, local unless Z) or +DURATION (+90s, +15m, +2h)");
}

std::optional<double> parse_iso(std::string_view text) {
  std::tm tm{};
  int consumed = 0;
  const std::string s(text);
  // The field widths (at most 4 digits) keep every conversion within int.
  // NOLINTNEXTLINE(cert-err34-c)
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &consumed) != 5)
    return std::nullopt;
  std::size_t at = static_cast<std::size_t>(consumed);
  if (at < s.size() && s[at] == ':') {
    int seconds = 0, n = 0;
    // NOLINTNEXTLINE(cert-err34-c): 2 digits
    if (std::sscanf(s.c_str() + at, ":%2d%n", &seconds, &n) != 1) return std::nullopt;
    tm.tm_sec = seconds;
    at += static_cast<std::size_t>(n);
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  if (at == s.size()) {  // local time
    tm.tm_isdst = -1;
    const std::time_t t = std::mktime(&tm);
    if (t == -1) return std::nullopt;
    return static_cast<double>(t);
  }
  long offset = 0;
  if (s.substr(at) == "Z") {
    offset = 0;
  } else {
    int hh = 0, mm = 0, n = 0;
    const char sign = s[at];
    // NOLINTNEXTLINE(cert-err34-c): 2 digits
    if ((sign != '+' && sign != '-') || std::sscanf(s.c_str() + at + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 ||
        at + 1 + static_cast<std::size_t>(n) != s.size())
      return std::nullopt;
    offset = (sign == '+' ? 1 : -1) * (hh * 3600L + mm * 60L);
  }
  const std::time_t t = ::timegm(&tm);
  if (t == -1) return std::nullopt;
  return static_cast<double>(t - offset);
}

std::optional<double> parse_duration(std::string_view text) {
  double total = 0;
  std::size_t at = 0;
  bool any = false;
  while (at < text.size()) {
    std::size_t start = at;
    while (at < text.size() && (std::isdigit(static_cast<unsigned char>(text[at])) || text[at] == '.')) ++at;
    if (at == start) return std::nullopt;
    const double value = std::strtod(std::string(text.substr(start, at - start)).c_str(), nullptr);
    double unit = 1;
    if (at < text.size()) {
      switch (text[at]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: return std::nullopt;
      }
      ++at;
    } else if (any) {
      return std::nullopt;  // "1h30" is ambiguous
    }
    total += value * unit;
    any = true;
  }
  if (!any) return std::nullopt;
  return total;
}

}  // namespace

double parse_deadline(std::string_view text, double now) {
  if (!text.empty() && text[0] == '+') {
    if (auto d = parse_duration(text.substr(1))) return now + *d;
    bad(text);
  }
  if (auto t = parse_iso(text)) return *t;
  bad(text);
}

std::optional<double> slurm_job_end(double now) {
  const char* job = std::getenv("SLURM_JOB_ID");
  if (job == nullptr || *job == '\0') return std::nullopt;
  for (const char* p = job; *p; ++p)
    if (!std::isdigit(static_cast<unsigned char>(*p)) && *p != '_') return std::nullopt;
  // A user's SLURM_TIME_FORMAT (e.g. "relative") would change what %e prints.
  const std::string command = std::string("SLURM_TIME_FORMAT=standard squeue -h -j ") + job + " -o %e 2>/dev/null";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  char line[128] = {};
  const bool got = std::fgets(line, sizeof line, pipe) != nullptr;
  ::pclose(pipe);
  if (!got) return std::nullopt;
  std::string end(line);
  while (!end.empty() && std::isspace(static_cast<unsigned char>(end.back()))) end.pop_back();
  auto t = parse_iso(end);  // "Unknown", "N/A", "NONE" when the job has no limit
  if (!t || *t <= now) return std::nullopt;
  return t;
}

}  // namespace mpmux::run
