#include "run/progress_printer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
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

ProgressPrinter::ProgressPrinter(std::uint64_t total, double interval_s, ProgressDisplay display,
                                 std::FILE* out)
    : total_(total),
      out_(out),
      display_(display),
      bar_(display.kind == ProgressDisplay::Kind::bar),
      // A terminal is redrawn ten times a second; a log file gets a line per interval.
      interval_(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(bar_ ? 0.1 : interval_s))),
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
  if (bar_ && !display_.whole_lines) std::fputc('\n', out_);
  std::fflush(out_);
}

void ProgressPrinter::draw(std::uint64_t done, std::uint64_t failed, bool final) {
  const std::uint64_t finished = done + failed;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(finished) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - std::min(total_, finished)) / rate : -1.0;
  const double frac = total_ ? static_cast<double>(finished) / static_cast<double>(total_) : 1.0;
  char failed_text[48] = "";
  if (failed)
    std::snprintf(failed_text, sizeof failed_text, ", %llu failed", static_cast<unsigned long long>(failed));
  if (bar_) {
    char text[160];
    std::snprintf(text, sizeof text, "%llu/%llu %5.1f%% %.1f/s %s %s%s",
                  static_cast<unsigned long long>(finished), static_cast<unsigned long long>(total_),
                  frac * 100, rate, final ? "in" : "ETA", hms(final ? elapsed : eta).c_str(), failed_text);
    // The bar gives way to the numbers on a narrow terminal: a wrapped line cannot be redrawn.
    constexpr int kWidth = 30;
    const int room =
        display_.columns > 0 ? display_.columns - 1 - static_cast<int>(std::strlen(text)) - 3 : kWidth;
    const int width = std::min(kWidth, room);
    std::string bar;
    if (width >= 5) {
      bar.assign(static_cast<std::size_t>(width) + 3, ' ');
      bar.front() = '[';
      bar[static_cast<std::size_t>(width) + 1] = ']';
      // Retried attempts and batches taken over from others can finish more than the total.
      std::fill_n(bar.begin() + 1, static_cast<int>(std::min(1.0, frac) * width), '#');
    }
    // Through srun, which forwards whole lines only, each redraw is a line that first moves the
    // cursor up over the previous one; elsewhere a carriage return redraws in place.
    if (display_.whole_lines)
      std::fprintf(out_, "%s%s%s\x1b[K\n", drawn_ ? "\x1b[A\r" : "", bar.c_str(), text);
    else
      std::fprintf(out_, "\r%s%s\x1b[K", bar.c_str(), text);
    drawn_ = true;
  } else {
    std::fprintf(out_, "mpmux: %llu/%llu elements (%.1f%%)%s, %.1f/s, %s %s\n",
                 static_cast<unsigned long long>(finished), static_cast<unsigned long long>(total_),
                 frac * 100, failed_text, rate, final ? "elapsed" : "ETA",
                 hms(final ? elapsed : eta).c_str());
  }
  std::fflush(out_);
}

}  // namespace mpmux::run
