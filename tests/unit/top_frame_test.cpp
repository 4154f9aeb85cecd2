// The frame of `mpmux top` (run/top_frame.hpp): what it shows of a Stat, and that it fits any
// terminal: no line wider than the width, no more lines than the height, no control characters.
#include "run/top_frame.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "run/stat_text.hpp"

namespace mpmux::run {
namespace {

constexpr std::int64_t kNow = 1'800'000'000'000'000'000;
constexpr std::int64_t kSecond = 1'000'000'000;

ParticipantStat participant(std::string host, std::uint64_t done, std::vector<RunningElement> running = {}) {
  ParticipantStat p;
  p.id = host + "-42-1";
  p.host = std::move(host);
  p.pid = 42;
  p.ranks = 3;
  p.done = done;
  p.running = running.size();
  p.rate = 2.5;
  p.heartbeat_age_s = 1.2;
  p.running_elements = std::move(running);
  return p;
}

TopView busy_view(std::size_t participants = 2) {
  TopView v;
  v.mux_id = "file:///scratch/mux/20261205-062000#s=20261205T062001Z-ab12";
  v.now_unix_ns = kNow;
  Stat& st = v.stat;
  st.total = 100;
  st.done = 40;
  st.failed = 2;
  st.running = 3;
  st.claimed = 10;
  st.pending = 45;
  st.rate = 5;
  st.eta_s = 58 / 5.0;
  for (std::size_t k = 0; k < participants; ++k) {
    std::vector<RunningElement> running;
    if (k == 0) running = {{17, 1, kNow - 75 * kSecond, 2}, {23, 2, kNow - 3 * kSecond, 1}};
    if (k == 1) running = {{61, 1, kNow - 300 * kSecond, 4}};
    st.participants.push_back(participant("node" + std::to_string(k), 20, std::move(running)));
  }
  return v;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string all;
  for (const std::string& l : lines) all += l + "\n";
  return all;
}

std::size_t line_of(const std::vector<std::string>& lines, const std::string& part) {
  for (std::size_t k = 0; k < lines.size(); ++k)
    if (lines[k].find(part) != std::string::npos) return k;
  return lines.size();
}

TEST(TopFrame, ShowsTheCountsTheBarTheParticipantsAndTheLongestRunningElementsOldestFirst) {
  const auto lines = top_frame(busy_view(), 100, 40);
  const std::string all = joined(lines);
  EXPECT_NE(all.find("total 100  done 40  failed 2  running 3  claimed 10  pending 45"), std::string::npos)
      << all;
  EXPECT_EQ(all.find("fenced"), std::string::npos) << "fenced shows only when there are any\n" << all;
  EXPECT_NE(all.find(" 42.0%  5.0/s  ETA 12 s"), std::string::npos) << all;
  EXPECT_NE(all.find("participants (2)"), std::string::npos) << all;
  EXPECT_LT(line_of(lines, "node0"), line_of(lines, "node1")) << all;
  EXPECT_NE(all.find("1 s ago"), std::string::npos) << all;
  // Element 61 has run longest (5 min), then 17 (1 min 15 s), then 23.
  const std::size_t e61 = line_of(lines, "   61 "), e17 = line_of(lines, "   17 "),
                    e23 = line_of(lines, "   23 ");
  ASSERT_LT(e23, lines.size()) << all;
  EXPECT_LT(e61, e17) << all;
  EXPECT_LT(e17, e23) << all;
  EXPECT_NE(lines[e61].find("5 min"), std::string::npos) << lines[e61];
  EXPECT_NE(lines[e61].find("node1"), std::string::npos) << lines[e61];
  EXPECT_NE(lines[e17].find("1 min 15 s"), std::string::npos) << lines[e17];
}

TEST(TopFrame, TheBarIsFilledInProportionToTheFinishedElements) {
  TopView v = busy_view();
  v.stat.done = 48;
  v.stat.failed = 2;  // half of 100 finished
  const auto lines = top_frame(v, 80, 30);
  const std::string& bar = lines[2];
  ASSERT_EQ(bar.front(), '[') << bar;
  const std::size_t close = bar.find(']');
  const auto hashes = static_cast<std::size_t>(std::count(bar.begin(), bar.begin() + close, '#'));
  EXPECT_EQ(hashes, (close - 1) / 2) << bar;
}

TEST(TopFrame, NoLineIsWiderThanTheTerminalAtAnyWidth) {
  TopView v = busy_view();
  v.stat.participants[0].host = "a-very-long-host-name-" + std::string(200, 'x');
  for (std::size_t width : {1, 5, 20, 40, 79, 80, 132}) {
    for (const std::string& line : top_frame(v, width, 40)) {
      EXPECT_LE(columns_of(line), width) << "width " << width << ": " << line;
    }
  }
}

TEST(TopFrame, ACutLineEndsWithAMarkAndALineThatFitsIsKeptWhole) {
  EXPECT_EQ(clip("abcdefg", 5), "abcd>");
  EXPECT_EQ(clip("abcde", 5), "abcde");
  EXPECT_EQ(clip("abc", 0), "");
  EXPECT_EQ(clip("h\xC3\xA9llo w\xC3\xB6rld", 6), "h\xC3\xA9llo>");  // characters, not bytes
  EXPECT_EQ(clip("a\tb", 5), "a b");
}

TEST(TopFrame, AShortTerminalKeepsTheCountsAndSaysHowManyParticipantsAreLeftOut) {
  TopView v = busy_view(30);
  for (std::size_t height : {1, 3, 8, 12, 20}) {
    const auto lines = top_frame(v, 100, height);
    EXPECT_LE(lines.size(), height) << joined(lines);
    EXPECT_NE(lines[0].find("mpmux top"), std::string::npos);
  }
  const auto lines = top_frame(v, 100, 20);
  const std::string all = joined(lines);
  EXPECT_NE(all.find("participants (30)"), std::string::npos) << all;
  EXPECT_NE(all.find("more"), std::string::npos) << all;
  // The running elements keep a place of their own under a long list of participants.
  EXPECT_NE(all.find("longest running elements"), std::string::npos) << all;
  EXPECT_NE(all.find("   61 "), std::string::npos) << all;
  // The count of those left out adds up with those shown.
  std::size_t shown = 0;
  for (const std::string& l : lines) shown += l.find("  node") == 0 || l.find(" node") != std::string::npos;
  const std::size_t more_at = all.find("... and ");
  ASSERT_NE(more_at, std::string::npos) << all;
  const std::size_t left_out = std::stoul(all.substr(more_at + 8));
  // node0 and node1 also appear in the running elements' rows.
  EXPECT_EQ(shown - 3 + left_out, 30u) << all;
}

TEST(TopFrame, HostNamesFromHeartbeatsCannotSendEscapesToTheTerminal) {
  TopView v = busy_view();
  v.stat.participants[0].host = "evil\x1b[2Jhost";
  for (const std::string& line : top_frame(v, 120, 40))
    for (char c : line) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7F) << line;
}

TEST(TopFrame, WithoutParticipantsOrRunningElementsItSaysSo) {
  TopView v = busy_view(0);
  v.stat.running = 0;
  v.stat.rate = 0;
  const std::string all = joined(top_frame(v, 100, 40));
  EXPECT_NE(all.find("no live participant"), std::string::npos) << all;
  EXPECT_NE(all.find("longest running elements\n  none\n"), std::string::npos) << all;
  EXPECT_NE(all.find("no rate yet"), std::string::npos) << all;
}

TEST(TopFrame, AFailedReadIsShownUnderTheCounts) {
  TopView v = busy_view();
  v.trouble = "az://acct/c/mux: GET failed: 503";
  const auto lines = top_frame(v, 100, 40);
  EXPECT_NE(lines[3].find("read failed"), std::string::npos) << joined(lines);
  EXPECT_NE(lines[3].find("503"), std::string::npos) << joined(lines);
}

}  // namespace
}  // namespace mpmux::run
