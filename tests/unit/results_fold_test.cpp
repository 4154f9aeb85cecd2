// The bounded-memory fold behind every results export: sessions larger than one index block
// and than the in-memory reference budget give exactly the rows a plain fold gives.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/results.hpp"
#include "mpmux/session.hpp"
#include "test_support.hpp"

namespace mpmux {
namespace {

using mpmux::test::TempDir;

// What a fold must decide for one element, computed by the rule in results.hpp.
struct Expected {
  std::string status = "pending";
  std::uint32_t attempts = 0;
  const Outcome* decider = nullptr;
};

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::string field;
  for (char c : line) {
    if (c == ',') {
      out.push_back(field);
      field.clear();
    } else {
      field.push_back(c);
    }
  }
  out.push_back(field);
  return out;
}

TEST(ResultFold, AMillionElementsInShuffledJournalsExportExactlyTheRowsOfTheirRecords) {
  TempDir tmp;
  const std::uint64_t n = 1000000;
  ParsedElements p;
  p.encoding = Encoding::bytes;
  for (std::uint64_t i = 0; i < n; ++i) p.elements.push("e");
  const Session s = Session::create(create_mux(tmp.path() / "mux", p, ""));

  // Every element but every 10th gets a record; every 3rd fails first (every 9th for good),
  // and the retry of a failure is recorded in the other journal, before or after it.
  std::vector<Outcome> records;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (i % 10 == 9) continue;
    Outcome o;
    o.index = i;
    o.worker = static_cast<std::uint32_t>(i % 4);
    o.pid = static_cast<std::uint32_t>(100 + i % 50);
    o.t_start = 1000;
    o.t_end = 2000 + static_cast<std::int64_t>(i);
    o.host = "h" + std::to_string(i % 7);
    if (i % 3 == 0) {
      o.type = RecordType::failed;
      o.exit_code = 3;
      o.stderr_tail = "err" + std::to_string(i);
      if (i % 9 == 0) o.flags = Outcome::kFinal;
      records.push_back(o);
      if (i % 9 == 0) continue;
      o.attempt = 2;
    }
    o.type = RecordType::done;
    o.exit_code = 0;
    o.stderr_tail.clear();
    o.flags = 0;
    o.result = "r" + std::to_string(i * 7);
    records.push_back(o);
  }
  std::mt19937_64 rng(42);
  std::shuffle(records.begin(), records.end(), rng);
  {
    JournalWriter a(s, "a", 1), b(s, "b", 2);
    a.set_fsync(false);
    b.set_fsync(false);
    for (std::size_t k = 0; k < records.size(); ++k) (k % 2 ? a : b).append(records[k]);
  }
  // Several times the 2^18 references a fold buffers in memory: every block is spilled in chunks.
  ASSERT_GT(records.size(), std::size_t{1} << 20);

  std::vector<Expected> expected(n);
  for (const Outcome& o : records) {
    Expected& e = expected[o.index];
    ++e.attempts;
    if (o.type == RecordType::done) {
      e.status = "done";
      e.decider = &o;
    } else {
      if ((o.flags & Outcome::kFinal) && e.status != "done") e.status = "failed";
      if (!e.decider) e.decider = &o;
    }
  }

  std::ostringstream out;
  write_results_csv(s, out);
  std::istringstream in(out.str());
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(line,
            "index,status,attempts,host,rank,pid,start,end,duration,exit_code,signal,timed_out,result,"
            "result_truncated,stderr_tail");
  std::uint64_t rows = 0;
  for (; std::getline(in, line); ++rows) {
    ASSERT_LT(rows, n);
    const std::vector<std::string> f = split(line);
    ASSERT_EQ(f.size(), 15u) << line;
    const Expected& e = expected[rows];
    const bool ok = f[0] == std::to_string(rows) && f[1] == e.status && f[2] == std::to_string(e.attempts) &&
                    (e.decider ? f[3] == e.decider->host && f[4] == std::to_string(e.decider->worker) &&
                                     f[5] == std::to_string(e.decider->pid) &&
                                     f[9] == std::to_string(e.decider->exit_code) &&
                                     f[12] == e.decider->result && f[14] == e.decider->stderr_tail
                               : f[3].empty() && f[12].empty());
    if (!ok) FAIL() << "row " << rows << ": " << line;
  }
  EXPECT_EQ(rows, n);
}

TEST(ResultFold, JsonElementsWithoutATableAreTypedOverAllBlocks) {
  TempDir tmp;
  const std::size_t n = 140000;  // three blocks of 65536
  ParsedElements p;
  for (std::size_t i = 0; i < n; ++i) {
    std::string o = "{\"i\":" + std::to_string(i);
    // Only in the second and third blocks: typed float64, empty where missing, after "mixed".
    if (i >= 70000) o += ",\"late\":" + std::to_string(i) + ".5";
    // An integer in the first two blocks, text in the last one.
    o += ",\"mixed\":" + (i < 135000 ? std::to_string(i) : "\"x" + std::to_string(i) + "\"");
    p.elements.push(o + "}");
  }
  const Session s = Session::create(create_mux(tmp.path() / "mux", p, ""));
  std::ostringstream out;
  write_results_csv(s, out);
  std::istringstream in(out.str());
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line.substr(0, 21), "index,i,mixed,late,st");
  for (std::size_t r = 0; std::getline(in, line); ++r) {
    const std::vector<std::string> f = split(line);
    const std::string late = r >= 70000 ? std::to_string(r) + ".5" : "";
    const std::string mixed = r < 135000 ? std::to_string(r) : "x" + std::to_string(r);
    if (f[1] != std::to_string(r) || f[2] != mixed || f[3] != late) FAIL() << "row " << r << ": " << line;
  }
}

}  // namespace
}  // namespace mpmux
