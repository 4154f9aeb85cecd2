#include "run/progress_printer.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

namespace mpmux::run {

namespace {
std::string hms(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "--:--";
  auto s = std::llround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", s / 60, s % 60);
  return buf;
}
}  // namespace

namespace {
// A bar on a terminal; plain lines in a file. In a Slurm batch job mpirun may hand the ranks a
// terminal while their output goes to the job's file, so there lines too (srun --pty aside).
bool draws_bar(std::FILE* out) {
  if (!::isatty(::fileno(out))) return false;
  return std::getenv("SLURM_JOB_ID") == nullptr || std::getenv("SLURM_PTY_PORT") != nullptr;
}
}  // namespace

ProgressPrinter::ProgressPrinter(std::uint64_t total, double interval_s, std::FILE* out)
    : total_(total),
      out_(out),
      tty_(draws_bar(out_)),
      // A terminal is redrawn ten times a second; a log file gets a line per interval.
      interval_(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(tty_ ? 0.1 : interval_s))),
      start_(Clock::now()),
      last_(start_) {}

void ProgressPrinter::update(std::uint64_t done, std::uint64_t failed) {
  auto now = Clock::now();
  if (now - last_ < interval_) return;
  last_ = now;
  draw(done, failed, false);
}

void ProgressPrinter::finish(std::uint64_t done, std::uint64_t failed) {
  draw(done, failed, true);
  if (tty_) std::fputc('\n', out_);
  std::fflush(out_);
}

void ProgressPrinter::draw(std::uint64_t done, std::uint64_t failed, bool final) {
  const std::uint64_t finished = done + failed;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(finished) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - std::min(total_, finished)) / rate : -1.0;
  const double frac = total_ ? static_cast<double>(finished) / static_cast<double>(total_) : 1.0;
  char failed_text[48] = "";
  if (failed) std::snprintf(failed_text, sizeof failed_text, ", %llu failed", static_cast<unsigned long long>(failed));
  if (tty_) {
    constexpr int kWidth = 30;
    std::string bar(kWidth, ' ');
    std::fill_n(bar.begin(), static_cast<int>(frac * kWidth), '#');
    std::fprintf(out_, "\r[%s] %llu/%llu %5.1f%% %.1f/s %s %s%s\x1b[K", bar.c_str(),
                 static_cast<unsigned long long>(finished), static_cast<unsigned long long>(total_), frac * 100,
                 rate, final ? "in" : "ETA", hms(final ? elapsed : eta).c_str(), failed_text);
  } else {
    std::fprintf(out_, "mpmux: %llu/%llu elements (%.1f%%)%s, %.1f/s, %s %s\n",
                 static_cast<unsigned long long>(finished), static_cast<unsigned long long>(total_), frac * 100,
                 failed_text, rate, final ? "elapsed" : "ETA", hms(final ? elapsed : eta).c_str());
  }
  std::fflush(out_);
}

}  // namespace mpmux::run
