// The report's charts, drawn by mpmux as inline SVG (docs/design.md says why): the timeline of
// every attempt, throughput over time and the histogram of durations.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/report.hpp"

namespace mpmux::cli::report {

namespace {

// The timeline's time axis spans kWidth user units, zoomed by changing the viewBox.
constexpr double kWidth = 1000;
// Up to this many attempts each gets a bar of its own; beyond it a row is drawn as kBuckets
// time buckets (one per pixel of a 1000-pixel-wide timeline), so the page stays small and fast.
constexpr std::size_t kMaxBars = 20000;
constexpr int kBuckets = 1000;
// Narrowest bar, in units: a 1 ms attempt of an hour-long run would vanish otherwise.
constexpr double kMinBarWidth = 0.3;

std::string fixed(double v, int decimals = 2) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Severity of an outcome when attempts share a bucket: a failure is never hidden by successes.
int severity(AttemptClass c) {
  switch (c) {
    case AttemptClass::done:
      return 1;
    case AttemptClass::failed_retried:
      return 2;
    case AttemptClass::timed_out:
      return 3;
    case AttemptClass::failed_final:
      return 4;
  }
  return 0;
}
constexpr AttemptClass kBySeverity[] = {AttemptClass::done, AttemptClass::done, AttemptClass::failed_retried,
                                        AttemptClass::timed_out, AttemptClass::failed_final};

// Round steps (1, 2, 5 times a power of ten) giving about `count` ticks over [0, top].
double nice_step(double top, int count) {
  if (top <= 0) return 1;
  const double raw = top / count, mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double f : {1.0, 2.0, 5.0})
    if (f * mag >= raw) return f * mag;
  return 10 * mag;
}

// One bar of a chart: done and failed counts stacked, with its tooltip.
struct Bin {
  double done = 0, failed = 0;
  std::string tip;
};
struct Tick {
  double at = 0;  // 0..1 along the x axis
  std::string label;
};

// A bar chart of stacked done/failed bins with labelled axes, scaled as one picture; with
// `counts` the y axis counts attempts and its ticks are whole numbers.
void append_bar_chart(std::string& out, const std::string& id, const std::vector<Bin>& bins,
                      const std::vector<Tick>& x_ticks, const std::string& y_unit, bool counts) {
  constexpr double kLeft = 70, kRight = 960, kTop = 24, kBottom = 210;
  double top = 0;
  for (const Bin& b : bins) top = std::max(top, b.done + b.failed);
  const double step = counts ? std::max(1.0, nice_step(top, 4)) : nice_step(top, 4);  // no half attempts
  const double y_max = std::max(step, std::ceil(top / step) * step);
  const auto y_of = [&](double v) { return kBottom - v / y_max * (kBottom - kTop); };
  out += "<svg class=\"chart\" id=\"" + id + "\" viewBox=\"0 0 1000 240\" role=\"img\">\n";
  for (double v = 0; v <= y_max * (1 + 1e-9); v += step) {
    out += "<line x1=\"" + fixed(kLeft - 4) + "\" x2=\"" + fixed(kRight) + "\" y1=\"" + fixed(y_of(v)) +
           "\" y2=\"" + fixed(y_of(v)) + "\" stroke-opacity=\".3\"/><text x=\"" + fixed(kLeft - 7) +
           "\" y=\"" + fixed(y_of(v) + 4) + "\" text-anchor=\"end\">" + number_text(v) + "</text>\n";
  }
  out += "<text x=\"8\" y=\"12\">" + y_unit + "</text>\n";
  const double w = (kRight - kLeft) / static_cast<double>(std::max<std::size_t>(1, bins.size()));
  for (std::size_t i = 0; i < bins.size(); ++i) {
    const Bin& b = bins[i];
    if (b.done + b.failed <= 0) continue;
    const double x = kLeft + w * static_cast<double>(i);
    out += "<g class=\"bin\"><title>" + b.tip + "</title>";
    if (b.done > 0)
      out += "<rect class=\"k0\" x=\"" + fixed(x) + "\" y=\"" + fixed(y_of(b.done)) + "\" width=\"" +
             fixed(std::max(0.5, w - 1)) + "\" height=\"" + fixed(kBottom - y_of(b.done)) + "\"/>";
    if (b.failed > 0)
      out += "<rect class=\"k2\" x=\"" + fixed(x) + "\" y=\"" + fixed(y_of(b.done + b.failed)) +
             "\" width=\"" + fixed(std::max(0.5, w - 1)) + "\" height=\"" +
             fixed(y_of(b.done) - y_of(b.done + b.failed)) + "\"/>";
    out += "</g>\n";
  }
  out += "<line x1=\"" + fixed(kLeft) + "\" x2=\"" + fixed(kRight) + "\" y1=\"" + fixed(kBottom) +
         "\" y2=\"" + fixed(kBottom) + "\"/>\n";
  for (const Tick& t : x_ticks) {
    const double x = kLeft + t.at * (kRight - kLeft);
    out += "<line x1=\"" + fixed(x) + "\" x2=\"" + fixed(x) + "\" y1=\"" + fixed(kBottom) + "\" y2=\"" +
           fixed(kBottom + 5) + "\"/><text x=\"" + fixed(x) + "\" y=\"" + fixed(kBottom + 19) +
           "\" text-anchor=\"middle\">" + t.label + "</text>\n";
  }
  out += "</svg>\n";
}

// Ticks of a time axis over [0, seconds], labelled in seconds from the first start.
std::vector<Tick> time_ticks(double seconds) {
  std::vector<Tick> ticks;
  const double step = nice_step(seconds, 8);
  for (double v = 0; v <= seconds * (1 + 1e-9); v += step)
    ticks.push_back({v / seconds, "+" + number_text(v, 4) + " s"});
  return ticks;
}

void append_legend(std::string& out) {
  out += "<span class=\"legend\">";
  for (int k = 0; k < kAttemptClasses; ++k)
    out +=
        "<span class=\"sw k" + std::to_string(k) + "\"></span>" + class_label(static_cast<AttemptClass>(k));
  out += "</span>";
}

// The bars of one row: each attempt its own rect, titled with what it was.
void append_row_bars(std::string& out, const Report& r, const std::vector<std::size_t>& row_attempts,
                     double y, double h, const Span& span, const std::vector<bool>& straggler) {
  const double scale = kWidth / static_cast<double>(span.t1 - span.t0);
  for (std::size_t i : row_attempts) {
    const Attempt& a = r.attempts[i];
    const double x = static_cast<double>(a.t_start - span.t0) * scale;
    const double w = std::max(kMinBarWidth, static_cast<double>(a.duration()) * scale);
    out += "<rect class=\"a k" + std::to_string(static_cast<int>(a.cls)) + (straggler[i] ? " s" : "") +
           "\" x=\"" + fixed(x, 3) + "\" y=\"" + fixed(y, 1) + "\" width=\"" + fixed(w, 3) + "\" height=\"" +
           fixed(h, 1) + "\"><title>element " + std::to_string(a.index) + ", attempt " +
           std::to_string(a.attempt) + ": " + class_label(a.cls) + ", " +
           duration_text(static_cast<double>(a.duration()) * 1e-9) + "</title></rect>";
  }
  out += '\n';
}

// The buckets of one row: each time bucket takes the most severe outcome of the attempts that
// overlap it; runs of buckets of one outcome become one rect that counts the attempts started
// in it (data-n), so the counts over all rects add up to the attempts.
void append_row_buckets(std::string& out, const Report& r, const std::vector<std::size_t>& row_attempts,
                        double y, double h, const Span& span) {
  std::vector<std::uint8_t> worst(kBuckets, 0);
  std::vector<std::uint32_t> started(kBuckets, 0), failed(kBuckets, 0);
  const double per_bucket = static_cast<double>(span.t1 - span.t0) / kBuckets;
  const auto bucket_of = [&](std::int64_t t) {
    return std::clamp(static_cast<int>(static_cast<double>(t - span.t0) / per_bucket), 0, kBuckets - 1);
  };
  for (std::size_t i : row_attempts) {
    const Attempt& a = r.attempts[i];
    const int b0 = bucket_of(a.t_start), b1 = bucket_of(a.t_end);
    ++started[b0];
    if (a.cls != AttemptClass::done) ++failed[b0];
    const auto s = static_cast<std::uint8_t>(severity(a.cls));
    for (int b = b0; b <= b1; ++b) worst[b] = std::max(worst[b], s);
  }
  for (int b = 0; b < kBuckets;) {
    if (worst[b] == 0) {
      ++b;
      continue;
    }
    int e = b;
    std::uint64_t n = 0, f = 0;
    while (e < kBuckets && worst[e] == worst[b]) n += started[e], f += failed[e], ++e;
    const double unit = kWidth / kBuckets;
    const double from_s = b * per_bucket * 1e-9, to_s = e * per_bucket * 1e-9;
    out += "<rect class=\"g k" + std::to_string(static_cast<int>(kBySeverity[worst[b]])) + "\" data-n=\"" +
           std::to_string(n) + "\" x=\"" + fixed(b * unit, 1) + "\" y=\"" + fixed(y, 1) + "\" width=\"" +
           fixed((e - b) * unit, 1) + "\" height=\"" + fixed(h, 1) + "\"><title>+" + number_text(from_s, 4) +
           " s to +" + number_text(to_s, 4) + " s: " + std::to_string(n) + " attempts started, " +
           std::to_string(f) + " failed</title></rect>";
    b = e;
  }
  out += '\n';
}

}  // namespace

const char* class_label(AttemptClass c) {
  switch (c) {
    case AttemptClass::done:
      return "done";
    case AttemptClass::failed_retried:
      return "failed, retried";
    case AttemptClass::failed_final:
      return "failed for good";
    case AttemptClass::timed_out:
      return "timed out";
  }
  return "";
}

void append_timeline(std::string& out, const Report& r, const std::vector<bool>& straggler) {
  out += "<section id=\"timeline\"><h2>Timeline</h2>\n";
  if (r.attempts.empty()) {
    out += "<p class=\"note\">No attempt recorded yet.</p></section>\n";
    return;
  }
  const Span span = span_of(r.attempts);
  const bool aggregated = r.attempts.size() > kMaxBars;
  const std::size_t rows = r.rows.size();
  // Rows shrink with their number, down to 3 px, so that a big job still shows as one picture.
  const double row_h = std::clamp(std::floor(640.0 / static_cast<double>(rows)), 3.0, 16.0);
  const double bar_h = row_h >= 8 ? row_h - 3 : row_h - 1;
  const double height = row_h * static_cast<double>(rows);

  std::vector<std::vector<std::size_t>> by_row(rows);
  for (std::size_t i = 0; i < r.attempts.size(); ++i) by_row[r.attempts[i].row].push_back(i);

  out +=
      "<p class=\"tools\"><button id=\"tl-in\" title=\"zoom in\">+</button><button id=\"tl-out\" "
      "title=\"zoom out\">&minus;</button><button id=\"tl-reset\">whole run</button> <span class=\"note\">"
      "wheel to zoom, drag to pan</span>";
  append_legend(out);
  out += "</p>\n";
  if (aggregated)
    out += "<p class=\"note\">" + std::to_string(r.attempts.size()) + " attempts: each row is drawn as " +
           std::to_string(kBuckets) + " time buckets of " + duration_text(span.seconds() / kBuckets) +
           ", coloured by the worst outcome in each; hover for counts.</p>\n";
  out += "<div class=\"tl\"><svg class=\"labels\" width=\"100%\" height=\"" + fixed(height, 0) + "\">";
  if (row_h >= 9) {
    for (std::size_t k = 0; k < rows; ++k) {
      out += "<text x=\"4\" y=\"" + fixed(row_h * static_cast<double>(k) + bar_h - 1, 1) + "\">";
      out += worker_label(r, static_cast<std::uint32_t>(k)) + "</text>";
    }
  } else {
    out += "<text x=\"4\" y=\"12\">" + std::to_string(rows) + " workers</text>";
  }
  out += "</svg>\n<div><svg id=\"tl\" data-mode=\"" + std::string(aggregated ? "buckets" : "bars") +
         "\" data-attempts=\"" + std::to_string(r.attempts.size()) + "\" data-width=\"" + fixed(kWidth, 0) +
         "\" data-height=\"" + fixed(height, 0) + "\" data-span-s=\"" + fixed(span.seconds(), 9) +
         "\" viewBox=\"0 0 " + fixed(kWidth, 0) + " " + fixed(height, 0) +
         "\" preserveAspectRatio=\"none\" width=\"100%\" height=\"" + fixed(height, 0) + "\">\n";
  for (std::size_t k = 0; k < rows; ++k) {
    const double y = row_h * static_cast<double>(k) + (row_h - bar_h) / 2;
    out += "<g class=\"row\">";
    if (aggregated)
      append_row_buckets(out, r, by_row[k], y, bar_h, span);
    else
      append_row_bars(out, r, by_row[k], y, bar_h, span, straggler);
    out += "</g>";
  }
  out += "</svg>\n<svg id=\"tl-axis\" width=\"100%\" height=\"22\"></svg></div></div></section>\n";
}

void append_throughput(std::string& out, const Report& r) {
  out += "<section id=\"throughput\"><h2>Throughput</h2>\n";
  if (r.attempts.empty()) {
    out += "<p class=\"note\">No attempt recorded yet.</p></section>\n";
    return;
  }
  const Span span = span_of(r.attempts);
  // About one bin per 10 attempts, between 10 and 120 bins.
  const int n = static_cast<int>(std::clamp<std::size_t>(r.attempts.size() / 10, 10, 120));
  const double bin_s = span.seconds() / n;
  std::vector<Bin> bins(n);
  for (const Attempt& a : r.attempts) {
    const int b =
        std::clamp(static_cast<int>(static_cast<double>(a.t_end - span.t0) * 1e-9 / bin_s), 0, n - 1);
    (a.cls == AttemptClass::done ? bins[b].done : bins[b].failed) += 1;
  }
  for (int b = 0; b < n; ++b) {
    bins[b].tip = "+" + number_text(b * bin_s, 4) + " s to +" + number_text((b + 1) * bin_s, 4) +
                  " s: " + number_text(bins[b].done / bin_s) + " done/s, " +
                  number_text(bins[b].failed / bin_s) + " failed/s";
    bins[b].done /= bin_s;
    bins[b].failed /= bin_s;
  }
  out += "<p class=\"note\">Attempts ended per second, in bins of " + duration_text(bin_s) +
         "; failed attempts stacked on top in red.</p>\n";
  append_bar_chart(out, "throughput-chart", bins, time_ticks(span.seconds()), "per s", false);
  out += "</section>\n";
}

void append_histogram(std::string& out, const Report& r) {
  out += "<section id=\"durations\"><h2>Durations</h2>\n";
  if (r.attempts.empty()) {
    out += "<p class=\"note\">No attempt recorded yet.</p></section>\n";
    return;
  }
  constexpr int kBins = 40;
  double lo = INFINITY, hi = 0;
  for (const Attempt& a : r.attempts) {
    const double d = static_cast<double>(a.duration()) * 1e-9;
    if (d > 0) lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  if (!(lo < INFINITY)) lo = hi = 1e-9;  // every attempt took no measurable time
  const bool log_bins = hi / lo >= 100;
  // Bin edges: log-spaced from the shortest to the longest, or linear from zero.
  std::vector<double> edges(kBins + 1);
  for (int k = 0; k <= kBins; ++k)
    edges[k] = log_bins ? lo * std::pow(hi / lo, static_cast<double>(k) / kBins) : hi * k / kBins;
  std::vector<Bin> bins(kBins);
  for (const Attempt& a : r.attempts) {
    const double d = static_cast<double>(a.duration()) * 1e-9;
    const auto it = std::upper_bound(edges.begin() + 1, edges.end() - 1, d);
    (a.cls == AttemptClass::done ? bins[it - edges.begin() - 1].done : bins[it - edges.begin() - 1].failed) +=
        1;
  }
  for (int k = 0; k < kBins; ++k)
    bins[k].tip = duration_text(edges[k]) + " to " + duration_text(edges[k + 1]) + ": " +
                  std::to_string(static_cast<long long>(bins[k].done)) + " done, " +
                  std::to_string(static_cast<long long>(bins[k].failed)) + " failed";
  std::vector<Tick> ticks;
  for (int k = 0; k <= kBins; k += 8)
    ticks.push_back({static_cast<double>(k) / kBins, duration_text(edges[k])});
  out += "<p class=\"note\">Attempts by duration, " + std::string(log_bins ? "log-spaced" : "linear") +
         " bins; failed attempts stacked on top in red.</p>\n";
  append_bar_chart(out, "durations-chart", bins, ticks, "attempts", true);
  out += "</section>\n";
}

}  // namespace mpmux::cli::report
