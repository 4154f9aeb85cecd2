// mpmux report: what a session's journals say about every attempt, gathered once (report.cpp)
// and drawn as one self-contained HTML page (report_html.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/journal.hpp"
#include "mpmux/session.hpp"

namespace mpmux::cli::report {

/// How an attempt ended, in the order the page's legend lists them.
enum class AttemptClass : std::uint8_t { done = 0, failed_retried = 1, failed_final = 2, timed_out = 3 };
inline constexpr int kAttemptClasses = 4;
/// "done", "failed, retried", "failed for good", "timed out".
const char* class_label(AttemptClass c);

/// One attempt, kept small: a session of 10^6 attempts holds 40 MB of them.
struct Attempt {
  std::int64_t t_start = 0, t_end = 0;  // ns since the Unix epoch
  std::uint64_t index = 0;
  std::uint32_t attempt = 0;
  std::uint32_t row = 0;          // into Report::rows
  std::uint32_t participant = 0;  // into Report::participants
  AttemptClass cls = AttemptClass::done;
  std::int64_t duration() const { return t_end - t_start; }
};

/// A timeline row: one worker, a rank of one participant, named by its host and MPI rank.
struct WorkerRow {
  std::uint32_t participant = 0;  // into Report::participants
  std::string host;
  std::uint32_t rank = 0;
};

/// One participant of the session: one journal file, the writer of one run.
struct Participant {
  std::string journal;  // the file's name
  std::string host;     // of its first record
  std::uint32_t pid = 0;
};

/// An element that failed for good, with the outcome that decided it.
struct FailedElement {
  std::uint64_t index = 0;
  std::uint32_t attempts = 0;
  Outcome outcome;
};

struct Report {
  std::string mux_id;
  std::string generated;  // ISO 8601 UTC
  Stat stat;
  std::uint64_t torn_bytes = 0;
  std::vector<Attempt> attempts;  // sorted by t_start
  std::vector<WorkerRow> rows;    // sorted by participant, host, then rank
  std::vector<Participant> participants;
  std::vector<FailedElement> failed;  // the first kListedFailures, by index
  std::uint64_t failed_total = 0;     // elements failed for good, listed or not
};

/// Failed elements shown with their stderr tail; `mpmux stat --all` lists the rest.
inline constexpr std::size_t kListedFailures = 500;

/// The page. Every text that comes from a user or a task is escaped.
std::string render_html(const Report& report);

// What the page is built from, shared by report_html.cpp and report_charts.cpp.

/// The time span of the attempts, [t0, t1] in ns; t1 > t0 even for a single instant.
struct Span {
  std::int64_t t0 = 0, t1 = 1;
  double seconds() const { return static_cast<double>(t1 - t0) * 1e-9; }
};
Span span_of(const std::vector<Attempt>& attempts);

/// Appends the zoomable timeline (an SVG of one row per worker) with its legend and script.
/// Marks the attempts flagged in `straggler` (by position in report.attempts).
void append_timeline(std::string& out, const Report& report, const std::vector<bool>& straggler);
/// Appends attempts ended per second over the run, done and failed stacked.
void append_throughput(std::string& out, const Report& report);
/// Appends the histogram of attempt durations (log-spaced bins when they span two decades).
void append_histogram(std::string& out, const Report& report);

/// "host:rank" of a timeline row, escaped; "#2 host:rank" when several participants have rows.
std::string worker_label(const Report& report, std::uint32_t row);
/// "850 us", "1.25 s", "3 min 20 s", "2 h 05 min".
std::string duration_text(double seconds);
/// A number with up to `digits` significant digits and no exponent for everyday sizes.
std::string number_text(double value, int digits = 3);
/// Appends `text` escaped (see html_escape).
void append_escaped(std::string& out, std::string_view text);

/// `text` made safe inside HTML text and attribute values: markup characters become entities,
/// invalid UTF-8 and control characters (but tab and newline) U+FFFD.
std::string html_escape(std::string_view text);

}  // namespace mpmux::cli::report
