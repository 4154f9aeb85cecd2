#include "run/top_frame.hpp"

#include <algorithm>
#include <cstdio>

#include "run/stat_text.hpp"

namespace mpmux::run {

namespace {

constexpr std::size_t kBarMax = 100;

std::string count_text(std::uint64_t n) { return std::to_string(n); }

// "[#######.......]  40.0%  12.5/s  ETA 8 s" filling the width (at least a bar of 10).
std::string bar_line(const Stat& st, std::size_t width) {
  const std::uint64_t finished = std::min(st.total, st.done + st.failed);
  const double fraction = st.total == 0 ? 1.0 : static_cast<double>(finished) / static_cast<double>(st.total);
  char percent[16];
  std::snprintf(percent, sizeof percent, "%5.1f%%", fraction * 100);
  std::string tail = std::string("  ") + percent;
  if (st.rate > 0) {
    tail += "  " + rate_text(st.rate) + "/s";
    if (finished < st.total && st.eta_s >= 0) tail += "  ETA " + duration_text(st.eta_s);
  } else {
    tail += finished < st.total ? "  no rate yet" : "";
  }
  // As wide as the terminal allows, from 10 to kBarMax characters.
  const std::size_t inside =
      std::min(kBarMax, width > tail.size() + 2 + 10 ? width - tail.size() - 2 : std::size_t{10});
  const auto filled = static_cast<std::size_t>(fraction * static_cast<double>(inside));
  return "[" + std::string(filled, '#') + std::string(inside - filled, '.') + "]" + tail;
}

std::vector<std::string> participant_lines(const Stat& st) {
  if (st.participants.empty()) return {"  no live participant"};
  std::vector<std::vector<std::string>> rows{
      {"host", "pid", "slurm", "ranks", "heartbeat", "done", "failed", "running", "rate/s"}};
  for (const ParticipantStat& p : st.participants)
    rows.push_back({printable(p.host.empty() ? "-" : p.host), p.pid > 0 ? std::to_string(p.pid) : "-",
                    printable(slurm_text(p)), count_text(p.ranks), duration_text(p.heartbeat_age_s) + " ago",
                    count_text(p.done), count_text(p.failed), count_text(p.running), rate_text(p.rate)});
  return table_lines(rows, "lrl");
}

std::vector<std::string> running_lines(const Stat& st, std::int64_t now_unix_ns) {
  struct Row {
    const RunningElement* e;
    const ParticipantStat* p;
  };
  std::vector<Row> all;
  for (const ParticipantStat& p : st.participants)
    for (const RunningElement& e : p.running_elements) all.push_back({&e, &p});
  if (all.empty()) return {st.running > 0 ? "  none reported yet" : "  none"};
  std::sort(all.begin(), all.end(), [](const Row& a, const Row& b) {
    return a.e->started_unix_ns != b.e->started_unix_ns ? a.e->started_unix_ns < b.e->started_unix_ns
                                                        : a.e->index < b.e->index;
  });
  std::vector<std::vector<std::string>> rows{{"element", "attempt", "running", "host", "rank", "slurm"}};
  for (const Row& r : all) {
    const double elapsed = static_cast<double>(now_unix_ns - r.e->started_unix_ns) / 1e9;
    rows.push_back({count_text(r.e->index), r.e->attempt > 0 ? std::to_string(r.e->attempt) : "-",
                    duration_text(elapsed), printable(r.p->host.empty() ? "-" : r.p->host),
                    r.e->rank >= 0 ? std::to_string(r.e->rank) : "-", printable(slurm_text(*r.p))});
  }
  return table_lines(rows, "rrrlrl");
}

// A titled section cut to `room` lines, the last of them then saying how many are left out.
void add_section(std::vector<std::string>& out, const std::string& title, std::vector<std::string> body,
                 std::size_t room, bool has_heading) {
  if (room == 0) return;
  out.push_back(title);
  if (--room == 0) return;
  if (body.size() > room) {
    const std::size_t rows = body.size() - (has_heading ? 1 : 0);
    const std::size_t kept = room - 1;
    const std::size_t shown = kept > (has_heading ? 1 : 0) ? kept - (has_heading ? 1 : 0) : 0;
    body.resize(kept);
    body.push_back("  ... and " + std::to_string(rows - shown) + " more");
  }
  out.insert(out.end(), body.begin(), body.end());
}

}  // namespace

std::string clip(std::string_view line, std::size_t width) {
  std::string out;
  std::size_t columns = 0;
  for (std::size_t i = 0; i < line.size();) {
    std::size_t len = 1;
    const auto lead = static_cast<unsigned char>(line[i]);
    while (i + len < line.size() && (static_cast<unsigned char>(line[i + len]) & 0xC0) == 0x80 &&
           lead >= 0xC0)
      ++len;
    if (columns + 1 > width || (columns + 1 == width && i + len < line.size())) {
      if (width > 0) out += '>';
      return out;
    }
    out.append(line[i] == '\t' ? std::string_view(" ") : line.substr(i, len));
    ++columns;
    i += len;
  }
  return out;
}

std::vector<std::string> top_frame(const TopView& view, std::size_t width, std::size_t height) {
  const Stat& st = view.stat;
  std::vector<std::string> lines;
  lines.push_back("mpmux top  " + printable(view.mux_id));
  std::string counts = "total " + count_text(st.total) + "  done " + count_text(st.done) + "  failed " +
                       count_text(st.failed) + "  running " + count_text(st.running) + "  claimed " +
                       count_text(st.claimed) + "  pending " + count_text(st.pending);
  if (st.fenced > 0) counts += "  fenced " + count_text(st.fenced);
  lines.push_back(counts);
  lines.push_back(bar_line(st, width));
  if (!view.trouble.empty())
    lines.push_back("read failed, showing the last read: " + printable(view.trouble));

  std::vector<std::string> participants = participant_lines(st);
  std::vector<std::string> running = running_lines(st, view.now_unix_ns);
  const bool running_heading = running.size() > 1;  // a table, not the line saying there is none
  // Each section: a blank line, its title, its lines. What does not fit is cut, the running
  // elements keeping at least their heading and a few rows.
  const std::size_t used = lines.size();
  const std::size_t room = height > used ? height - used : 0;
  const std::size_t want_participants = 2 + participants.size(), want_running = 2 + running.size();
  std::size_t for_running = std::min(want_running, room);
  std::size_t for_participants = room - for_running;
  if (for_participants < want_participants) {
    const std::size_t running_floor = std::min(want_running, std::size_t{6});
    for_running = std::max(running_floor, room > want_participants ? room - want_participants : 0);
    for_running = std::min(for_running, room);
    for_participants = std::min(want_participants, room - for_running);
  }
  if (for_participants >= 1) {
    lines.emplace_back();
    add_section(lines, "participants (" + std::to_string(st.participants.size()) + ")",
                std::move(participants), for_participants - 1, !st.participants.empty());
  }
  if (for_running >= 1) {
    lines.emplace_back();
    add_section(lines, "longest running elements", std::move(running), for_running - 1, running_heading);
  }
  if (lines.size() > height) lines.resize(height);
  for (std::string& line : lines) line = clip(line, width);
  return lines;
}

}  // namespace mpmux::run
