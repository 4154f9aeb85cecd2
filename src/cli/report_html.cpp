// The report page: the numbers of `stat`, the charts (report_charts.cpp), the failed elements,
// the stragglers and the per-participant and per-host summaries. One file with its style and
// script inlined; its Content-Security-Policy forbids fetching anything, so it opens offline.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/report.hpp"
#include "store/fs.hpp"
#include "store/utf8.hpp"

namespace mpmux::cli::report {

namespace {

constexpr std::size_t kListedStragglers = 100;

constexpr const char* kStyle = R"css(
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em 2em;color:#222;background:#fff}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid #ccc}
code,pre{font:12px/1.3 ui-monospace,monospace}pre{margin:0;white-space:pre-wrap;max-height:14em;overflow:auto;background:#f6f6f6;padding:.3em}
table{border-collapse:collapse;margin:.3em 0}td,th{padding:.15em .6em;border-bottom:1px solid #e4e4e4;text-align:right;vertical-align:top}
th{background:#f0f0f0}td.t,th.t{text-align:left}.numbers td:first-child{text-align:left;color:#555}
.note{color:#666;font-size:.9em}.k0{fill:#3a9a4a;background:#3a9a4a}.k1{fill:#e8a020;background:#e8a020}
.k2{fill:#d02828;background:#d02828}.k3{fill:#8a3cc8;background:#8a3cc8}
.legend span.sw{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;vertical-align:-.1em}
.tl{display:grid;grid-template-columns:12em 1fr;gap:0 .4em;max-height:48em;overflow-y:auto;border:1px solid #ddd}
.tl svg{display:block}.tl .labels text{font:11px ui-monospace,monospace;fill:#333}
#tl{cursor:grab;background:#fafafa}#tl .a.s{stroke:#000;stroke-width:1.5px;vector-effect:non-scaling-stroke}
#tl-axis text,.chart text{font:11px system-ui,sans-serif;fill:#444}.chart line,#tl-axis line{stroke:#999}
.chart{width:100%;max-width:70em;height:auto}.tools button{min-width:2.2em;margin-right:.2em}
)css";

// The events of the timeline: zoom by wheel, buttons or keys, pan by dragging, and the time
// axis redrawn for the visible span.
constexpr const char* kScript = R"js(
(function () {
  var svg = document.getElementById('tl'), axis = document.getElementById('tl-axis');
  if (!svg) return;
  var W = +svg.getAttribute('data-width'), H = +svg.getAttribute('data-height');
  var span = +svg.getAttribute('data-span-s'), x0 = 0, w = W, minW = W * 1e-6;
  function label(v, step) {
    if (step >= 60) {
      var s = Math.round(v), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
      var mm = (h > 0 && m < 10 ? '0' : '') + m, ss = (r < 10 ? '0' : '') + r;
      return (h > 0 ? h + ':' : '') + mm + ':' + ss;
    }
    var d = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
    return v.toFixed(d) + ' s';
  }
  function drawAxis() {
    var from = x0 / W * span, to = (x0 + w) / W * span, raw = (to - from) / 8;
    var mag = Math.pow(10, Math.floor(Math.log10(raw))), step = mag;
    [1, 2, 5, 10].some(function (f) { step = f * mag; return f * mag >= raw; });
    var parts = [];
    for (var v = Math.ceil(from / step) * step; v <= to + 1e-12; v += step) {
      var at = (v - from) / (to - from) * 100, pct = at.toFixed(3);
      var anchor = at < 2 ? 'start' : at > 98 ? 'end' : 'middle';  // labels stay inside the axis
      parts.push('<line class="tick" x1="' + pct + '%" x2="' + pct + '%" y1="0" y2="5"></line>' +
                 '<text x="' + pct + '%" y="17" text-anchor="' + anchor + '">' + label(v, step) + '</text>');
    }
    axis.innerHTML = parts.join('');
  }
  function apply() {
    x0 = Math.min(Math.max(0, x0), W - w);
    svg.setAttribute('viewBox', x0 + ' 0 ' + w + ' ' + H);
    drawAxis();
  }
  function zoom(f, cx) {
    var nw = Math.min(W, Math.max(minW, w * f));
    x0 = cx - (cx - x0) * nw / w;
    w = nw;
    apply();
  }
  function unitAt(clientX) {
    var r = svg.getBoundingClientRect();
    return x0 + (clientX - r.left) / r.width * w;
  }
  svg.addEventListener('wheel', function (e) {
    e.preventDefault();
    zoom(e.deltaY < 0 ? 0.8 : 1.25, unitAt(e.clientX));
  }, {passive: false});
  var drag = null;
  svg.addEventListener('mousedown', function (e) { drag = {x: e.clientX, x0: x0}; svg.style.cursor = 'grabbing'; });
  window.addEventListener('mouseup', function () { drag = null; svg.style.cursor = ''; });
  window.addEventListener('mousemove', function (e) {
    if (!drag) return;
    x0 = drag.x0 - (e.clientX - drag.x) / svg.getBoundingClientRect().width * w;
    apply();
  });
  document.getElementById('tl-in').onclick = function () { zoom(0.5, x0 + w / 2); };
  document.getElementById('tl-out').onclick = function () { zoom(2, x0 + w / 2); };
  document.getElementById('tl-reset').onclick = function () { x0 = 0; w = W; apply(); };
  apply();
})();
)js";

void append(std::string& out, std::string_view a) { out.append(a); }

void append_row(std::string& out, std::initializer_list<std::string> cells) {
  out += "<tr>";
  for (const std::string& c : cells) out += "<td>" + c + "</td>";
  out += "</tr>\n";
}

std::string count_text(std::uint64_t n) { return std::to_string(n); }

std::string utc_text(std::int64_t ns) {
  return posix::format_utc(ns / 1'000'000'000, "%Y-%m-%d %H:%M:%S UTC");
}

std::string since_text(std::int64_t ns, const Span& span) {
  return "+" + number_text(static_cast<double>(ns - span.t0) * 1e-9, 4) + " s";
}

double seconds_of(const Attempt& a) { return static_cast<double>(a.duration()) * 1e-9; }

// The duration at quantile q of the sorted durations (nearest rank).
double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, k == 0 ? 0 : k - 1)];
}

void append_numbers(std::string& out, const Report& r, const std::vector<double>& durations) {
  const Span span = span_of(r.attempts);
  std::uint64_t done = 0, failed = 0;
  std::set<std::string_view> hosts;
  for (const Attempt& a : r.attempts) (a.cls == AttemptClass::done ? done : failed)++;
  for (const WorkerRow& w : r.rows) hosts.insert(w.host);
  out += "<section id=\"numbers\"><h2>Numbers</h2><table class=\"numbers\">\n";
  append_row(out, {"elements", count_text(r.stat.total)});
  append_row(out, {"done", count_text(r.stat.done)});
  append_row(out, {"failed (for good)", count_text(r.stat.failed)});
  append_row(out, {"running", count_text(r.stat.running)});
  append_row(out, {"pending", count_text(r.stat.pending)});
  append_row(out, {"attempts", count_text(r.attempts.size())});
  append_row(out, {"failed attempts", count_text(failed)});
  append_row(out,
             {"workers / hosts / participants", count_text(r.rows.size()) + " / " + count_text(hosts.size()) +
                                                    " / " + count_text(r.participants.size())});
  if (!r.attempts.empty()) {
    append_row(out, {"first start", utc_text(span.t0)});
    append_row(out, {"last end", utc_text(span.t1)});
    append_row(out, {"wall time", duration_text(span.seconds())});
    append_row(out, {"attempts done per second", number_text(static_cast<double>(done) / span.seconds())});
    append_row(out, {"median duration", duration_text(quantile(durations, 0.5))});
    append_row(out, {"99th percentile duration", duration_text(quantile(durations, 0.99))});
    append_row(out, {"longest duration", duration_text(durations.back())});
  }
  if (r.torn_bytes > 0) append_row(out, {"torn journal tail bytes (ignored)", count_text(r.torn_bytes)});
  if (!r.stat.claim_paths.empty())
    append_row(out, {"claims (live run)", html_escape(claim_paths_text(r.stat.claim_paths))});
  out += "</table></section>\n";
}

void append_failures(std::string& out, const Report& r) {
  out += "<section id=\"failures\"><h2>Failed elements</h2>\n";
  if (r.failed_total == 0) {
    out += "<p class=\"note\">No element failed for good.</p></section>\n";
    return;
  }
  out += "<p class=\"note\">" + count_text(r.failed_total) + " element(s) failed for good";
  if (r.failed_total > r.failed.size())
    out += "; the first " + count_text(r.failed.size()) +
           " are listed (<code>mpmux stat --all</code> lists every one)";
  out +=
      ".</p>\n<table><tr><th>element</th><th>attempts</th><th class=\"t\">status</th><th "
      "class=\"t\">worker</th>"
      "<th class=\"t\">stderr tail</th></tr>\n";
  for (const FailedElement& f : r.failed) {
    const Outcome& o = f.outcome;
    std::string status = exit_status(o);
    if (o.flags & Outcome::kTimedOut) status += ", timed out";
    out += "<tr class=\"failed\"><td>" + std::to_string(f.index) + "</td><td>" + std::to_string(f.attempts) +
           "</td><td class=\"t\">" + html_escape(status) + "</td><td class=\"t\">" + html_escape(o.host) +
           ":" + std::to_string(o.worker) + "</td><td class=\"t\"><pre class=\"stderr\">";
    append_escaped(out, o.stderr_tail);
    out += "</pre></td></tr>\n";
  }
  out += "</table></section>\n";
}

void append_stragglers(std::string& out, const Report& r, const std::vector<std::size_t>& slowest,
                       double median) {
  const Span span = span_of(r.attempts);
  out += "<section id=\"stragglers\"><h2>Stragglers</h2>\n";
  if (slowest.empty()) {
    out += "<p class=\"note\">No attempt recorded yet.</p></section>\n";
    return;
  }
  out += "<p class=\"note\">The slowest 1% of the attempts: " + count_text(slowest.size()) + " of " +
         count_text(r.attempts.size()) + ", from " + duration_text(seconds_of(r.attempts[slowest.back()])) +
         " (median " + duration_text(median) + ")";
  if (slowest.size() > kListedStragglers) out += "; the slowest " + count_text(kListedStragglers) + " listed";
  out +=
      ". They are outlined in the timeline.</p>\n<table><tr><th>element</th><th>attempt</th><th>duration</th>"
      "<th>&times; median</th><th class=\"t\">worker</th><th class=\"t\">outcome</th><th>start</th></tr>\n";
  for (std::size_t k = 0; k < std::min(slowest.size(), kListedStragglers); ++k) {
    const Attempt& a = r.attempts[slowest[k]];
    out += "<tr class=\"straggler\"><td>" + std::to_string(a.index) + "</td><td>" +
           std::to_string(a.attempt) + "</td><td>" + duration_text(seconds_of(a)) + "</td><td>" +
           (median > 0 ? number_text(seconds_of(a) / median) : std::string("-")) + "</td><td class=\"t\">" +
           worker_label(r, a.row) + "</td><td class=\"t\">" + class_label(a.cls) + "</td><td>" +
           since_text(a.t_start, span) + "</td></tr>\n";
  }
  out += "</table></section>\n";
}

// Counts of the attempts of one participant or one host.
struct Tally {
  std::uint64_t attempts = 0, done = 0, failed = 0;
  double busy_s = 0, longest_s = 0;
  std::int64_t first = INT64_MAX, last = INT64_MIN;
  std::set<std::uint32_t> rows;
  void add(const Attempt& a) {
    ++attempts;
    (a.cls == AttemptClass::done ? done : failed)++;
    busy_s += seconds_of(a);
    longest_s = std::max(longest_s, seconds_of(a));
    first = std::min(first, a.t_start);
    last = std::max(last, a.t_end);
    rows.insert(a.row);
  }
};

void append_participants(std::string& out, const Report& r) {
  const Span span = span_of(r.attempts);
  std::vector<Tally> tally(r.participants.size());
  for (const Attempt& a : r.attempts) tally[a.participant].add(a);
  out +=
      "<section id=\"participants\"><h2>Participants</h2>\n<p class=\"note\">One per journal: a run (its "
      "rank 0) that worked on the session";
  if (r.participants.size() > 1) out += "; <code>#N</code> before a worker names its run";
  out +=
      ".</p>\n<table><tr><th>#</th><th class=\"t\">journal</th>"
      "<th class=\"t\">host</th><th>pid</th><th>workers</th><th>attempts</th><th>done</th><th>failed</th>"
      "<th>start</th><th>end</th><th>done per second</th></tr>\n";
  for (std::size_t i = 0; i < r.participants.size(); ++i) {
    const Participant& p = r.participants[i];
    const Tally& t = tally[i];
    const bool any = t.attempts > 0;
    const double wall = any ? std::max(1e-9, static_cast<double>(t.last - t.first) * 1e-9) : 0;
    out += "<tr class=\"participant\"><td>" + std::to_string(i + 1) + "</td><td class=\"t\">" +
           html_escape(p.journal) + "</td><td class=\"t\">" + html_escape(p.host) + "</td><td>" +
           std::to_string(p.pid) + "</td><td>" + count_text(t.rows.size()) + "</td><td>" +
           count_text(t.attempts) + "</td><td>" + count_text(t.done) + "</td><td>" + count_text(t.failed) +
           "</td><td>" + (any ? since_text(t.first, span) : "-") + "</td><td>" +
           (any ? since_text(t.last, span) : "-") + "</td><td>" +
           (any ? number_text(static_cast<double>(t.done) / wall) : "-") + "</td></tr>\n";
  }
  out += "</table></section>\n";
}

void append_hosts(std::string& out, const Report& r) {
  const Span span = span_of(r.attempts);
  std::map<std::string_view, Tally> tally;
  for (const Attempt& a : r.attempts) tally[r.rows[a.row].host].add(a);
  out +=
      "<section id=\"hosts\"><h2>Hosts</h2>\n<p class=\"note\">Busy: the share of the workers' time "
      "over the whole run spent in attempts.</p>\n<table><tr><th class=\"t\">host</th><th>workers</th>"
      "<th>attempts</th><th>done</th><th>failed</th><th>mean duration</th><th>longest</th>"
      "<th>busy</th></tr>\n";
  for (const auto& [host, t] : tally) {
    const double capacity = static_cast<double>(t.rows.size()) * span.seconds();
    out += "<tr class=\"host\"><td class=\"t\">" + html_escape(host) + "</td><td>" +
           count_text(t.rows.size()) + "</td><td>" + count_text(t.attempts) + "</td><td>" +
           count_text(t.done) + "</td><td>" + count_text(t.failed) + "</td><td>" +
           duration_text(t.busy_s / static_cast<double>(t.attempts)) + "</td><td>" +
           duration_text(t.longest_s) + "</td><td>" + number_text(100 * t.busy_s / capacity) +
           "%</td></tr>\n";
  }
  out += "</table></section>\n";
}

}  // namespace

std::string worker_label(const Report& r, std::uint32_t row) {
  const WorkerRow& w = r.rows[row];
  const std::string run = r.participants.size() > 1 ? "#" + std::to_string(w.participant + 1) + " " : "";
  return run + html_escape(w.host) + ":" + std::to_string(w.rank);
}

void append_escaped(std::string& out, std::string_view s) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  while (!s.empty()) {
    const std::size_t bad = utf8::first_invalid(s);
    for (char c : s.substr(0, bad)) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&quot;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          if ((static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') || c == 0x7F)
            out += kReplacement;
          else
            out.push_back(c);
      }
    }
    if (bad == std::string_view::npos) break;
    out += kReplacement;
    s.remove_prefix(bad + 1);
  }
}

std::string html_escape(std::string_view text) {
  std::string out;
  append_escaped(out, text);
  return out;
}

std::string number_text(double value, int digits) {
  if (!std::isfinite(value)) return "-";
  char buf[64];
  if (std::fabs(value) >= 1e15 || (value != 0 && std::fabs(value) < 1e-4)) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, value);
    return buf;
  }
  // Significant digits without an exponent: 1234.5 -> "1235", 0.01234 -> "0.0123".
  const int magnitude = value == 0 ? 0 : static_cast<int>(std::floor(std::log10(std::fabs(value))));
  std::snprintf(buf, sizeof buf, "%.*f", std::max(0, digits - 1 - magnitude), value);
  std::string text = buf;
  if (text.find('.') != std::string::npos) {  // "12.0" -> "12", "0.50" -> "0.5"
    text.erase(text.find_last_not_of('0') + 1);
    if (text.back() == '.') text.pop_back();
  }
  return text;
}

std::string duration_text(double s) {
  char buf[64];
  if (s <= 0) return "0 s";
  if (s < 1e-3) {
    std::snprintf(buf, sizeof buf, "%s us", number_text(s * 1e6).c_str());
  } else if (s < 1) {
    std::snprintf(buf, sizeof buf, "%s ms", number_text(s * 1e3).c_str());
  } else if (s < 60) {
    std::snprintf(buf, sizeof buf, "%s s", number_text(s).c_str());
  } else if (s < 3600) {
    const auto whole = static_cast<long long>(std::llround(s));
    std::snprintf(buf, sizeof buf, "%lld min %02lld s", whole / 60, whole % 60);
  } else {
    const auto minutes = static_cast<long long>(std::llround(s / 60));
    std::snprintf(buf, sizeof buf, "%lld h %02lld min", minutes / 60, minutes % 60);
  }
  return buf;
}

Span span_of(const std::vector<Attempt>& attempts) {
  Span span;
  if (attempts.empty()) return span;
  span.t0 = attempts.front().t_start;  // attempts are sorted by start
  span.t1 = span.t0 + 1;
  for (const Attempt& a : attempts) span.t1 = std::max(span.t1, a.t_end);
  return span;
}

std::string render_html(const Report& r) {
  std::vector<double> durations;
  durations.reserve(r.attempts.size());
  for (const Attempt& a : r.attempts) durations.push_back(seconds_of(a));
  std::sort(durations.begin(), durations.end());

  // The slowest 1% (at least one attempt), slowest first.
  std::vector<std::size_t> slowest;
  std::vector<bool> straggler(r.attempts.size(), false);
  if (!r.attempts.empty()) {
    const std::size_t n = (r.attempts.size() + 99) / 100;
    slowest.resize(r.attempts.size());
    for (std::size_t i = 0; i < slowest.size(); ++i) slowest[i] = i;
    const auto slower = [&](std::size_t a, std::size_t b) {
      return r.attempts[a].duration() > r.attempts[b].duration() ||
             (r.attempts[a].duration() == r.attempts[b].duration() && a < b);
    };
    std::partial_sort(slowest.begin(), slowest.begin() + static_cast<std::ptrdiff_t>(n), slowest.end(),
                      slower);
    slowest.resize(n);
    for (std::size_t i : slowest) straggler[i] = true;
  }

  std::string out;
  out.reserve(1u << 20);
  append(out,
         "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
         "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
         "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
         "<link rel=\"icon\" href=\"data:,\">\n<title>mpmux report ");
  append_escaped(out, r.mux_id);
  out += "</title>\n<style>";
  out += kStyle;
  out += "</style></head>\n<body>\n<h1>mpmux report</h1>\n<p><code id=\"mux-id\">";
  append_escaped(out, r.mux_id);
  out += "</code><br><span class=\"note\">written " + r.generated + " by mpmux report</span></p>\n";
  append_numbers(out, r, durations);
  append_timeline(out, r, straggler);
  append_throughput(out, r);
  append_histogram(out, r);
  append_failures(out, r);
  append_stragglers(out, r, slowest, quantile(durations, 0.5));
  append_participants(out, r);
  append_hosts(out, r);
  out += "<script>";
  out += kScript;
  out += "</script>\n</body></html>\n";
  return out;
}

}  // namespace mpmux::cli::report
