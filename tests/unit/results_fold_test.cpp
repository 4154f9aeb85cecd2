// The bounded-memory fold behind every results export: sessions larger than one index block
// and than the in-memory reference budget give exactly the rows a plain fold gives; and the
// fenced rule across participants: the committed batch winner's done record counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "claim/session_claims.hpp"
#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/results.hpp"
#include "mpmux/session.hpp"
#include "store/h5.hpp"
#include "store/object_store.hpp"
#include "store/results_fold.hpp"
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

// Two participants' journals of one session of 8 elements; each done record's result names its
// writer and element ("a0", "b3"), and B's records end later, so that without winners B's count.
struct TwoParticipants {
  TempDir tmp;
  Session s;
  std::string a, b;  // participant ids: the journals' file stems

  TwoParticipants() : s(make_session(tmp)) {
    JournalWriter ja(s, "a", 1), jb(s, "b", 2);
    ja.set_fsync(false);
    jb.set_fsync(false);
    a = ja.path().stem().string();
    b = jb.path().stem().string();
    for (std::uint64_t i : {0, 1, 5}) ja.append(record(RecordType::done, i, 100, "a"));
    ja.append(record(RecordType::failed, 3, 100, "a"));
    for (std::uint64_t i : {0, 1, 3, 5}) jb.append(record(RecordType::done, i, i == 5 ? 50 : 200, "b"));
    // Element 2: two done records of B only.
    jb.append(record(RecordType::done, 2, 150, "b"));
    jb.append(record(RecordType::done, 2, 250, "B"));
  }

  static Session make_session(const TempDir& tmp) {
    ParsedElements p;
    p.encoding = Encoding::bytes;
    for (int i = 0; i < 8; ++i) p.elements.push("e");
    return Session::create(create_mux(tmp.path() / "mux", p, ""));
  }
  static Outcome record(RecordType type, std::uint64_t index, std::int64_t t_end, const std::string& who) {
    Outcome o;
    o.type = type;
    o.index = index;
    o.t_start = 10;
    o.t_end = t_end;
    o.host = who;
    if (type == RecordType::done) o.result = who + std::to_string(index);
    if (type == RecordType::failed) o.flags = Outcome::kFinal;
    return o;
  }

  // Element -> the result of its deciding record ("" when none), through the fold with `winners`.
  std::vector<std::string> results(const std::vector<BatchWinner>& winners) const {
    std::vector<std::string> out;
    fold::for_each_result(
        s, winners, [&](const ElementResult& r) { out.push_back(r.outcome ? r.outcome->result : ""); },
        std::nullopt);
    return out;
  }
};

TEST(FencedFold, TheWinnersDoneRecordCountsAndEveryOtherDoneRecordOfItsElementsIsFenced) {
  const TwoParticipants t;
  const std::vector<BatchWinner> winners{{0, 4, t.a, 1}};
  // 0 and 1: A's record, B's fenced. 2: A has no record, B's latest counts as without winners,
  // and nothing is fenced. 3: A only failed, B's done record counts. 5: outside every batch.
  EXPECT_EQ(t.results(winners), (std::vector<std::string>{"a0", "a1", "B2", "b3", "", "a5", "", ""}));
  const SessionCounts counts = fold::read_session_counts(t.s, winners);
  EXPECT_EQ(counts.fenced, 2u);
  EXPECT_EQ(counts.done, 5u);
  const SessionState state = fold::read_session_state(t.s, winners, false);
  EXPECT_EQ(state.fenced, 2u);
  EXPECT_EQ(state.status[3], ElementStatus::done);
  // A fenced record is still an attempt.
  EXPECT_EQ(state.attempts[0], 2u);
}

TEST(FencedFold, WithoutWinnersTheFoldIsThatOfOneParticipant) {
  const TwoParticipants t;
  EXPECT_EQ(t.results({}), (std::vector<std::string>{"b0", "b1", "B2", "b3", "", "a5", "", ""}));
  EXPECT_EQ(fold::read_session_counts(t.s, {}).fenced, 0u);
  // A winner whose journal is not in the session changes nothing either.
  EXPECT_EQ(t.results({{0, 8, "elsewhere-1-2", 1}}), t.results({}));
}

TEST(FencedFold, TheLatestRoundsBatchDecidesAnElementThatBatchesOfSeveralRoundsCover) {
  const TwoParticipants t;
  // Given out of order: round 2's A decides 0 and 1; round 1's B decides 2 and 3, and of B's two
  // done records of element 2 the later counts and the other is fenced.
  const std::vector<BatchWinner> winners{{0, 2, t.a, 2}, {0, 4, t.b, 1}};
  EXPECT_EQ(t.results(winners), (std::vector<std::string>{"a0", "a1", "B2", "b3", "", "a5", "", ""}));
  EXPECT_EQ(fold::read_session_counts(t.s, winners).fenced, 3u);
}

// Reads the string member `member` of /results.
std::vector<std::string> h5_strings(const std::filesystem::path& file, const char* member) {
  const std::string where = file.string();
  h5::Id f = h5::open_file_read(file);
  h5::Id d(h5::check(H5Dopen2(f.get(), "results", H5P_DEFAULT), where, "open"));
  const hsize_t n = h5::dims(d.get(), where).at(0);
  h5::Id str = h5::string_type(where);
  h5::Id type(h5::check(H5Tcreate(H5T_COMPOUND, sizeof(char*)), where, "type"));
  h5::check(H5Tinsert(type.get(), member, 0, str.get()), where, "insert");
  std::vector<char*> cells(n);
  h5::check(H5Dread(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, cells.data()), where, "read");
  std::vector<std::string> out;
  for (char* p : cells) {
    out.emplace_back(p ? p : "");
    H5free_memory(p);
  }
  return out;
}

TEST(FencedFold, ThePublicFoldsAndExportsReadTheWinnersFromTheSessionsStore) {
  const TwoParticipants t;
  auto store = store::open_store(t.s.store_url());
  store->put_if_absent(claim::round_marker_key(1), R"({"rerun_failed":false,"unix_ns":1,"lease_ms":30000})");
  store->put_if_absent(claim::round_prefix(1) + "/done/0000000000000",
                       R"({"participant":")" + t.a + R"(","epoch":0,"count":4})");

  const std::vector<BatchWinner> winners = claim::read_batch_winners(*store);
  ASSERT_EQ(winners.size(), 1u);
  EXPECT_EQ(std::tie(winners[0].first, winners[0].count, winners[0].participant, winners[0].round),
            std::make_tuple(std::uint64_t{0}, std::uint64_t{4}, t.a, std::uint32_t{1}));

  EXPECT_EQ(read_session_counts(t.s).fenced, 2u);
  EXPECT_EQ(read_session_state(t.s).fenced, 2u);
  const std::vector<ElementResult> rows = read_results(t.s);
  EXPECT_EQ(rows[0].outcome->result, "a0");
  EXPECT_EQ(rows[1].outcome->result, "a1");
  std::ostringstream csv;
  write_results_csv(t.s, csv);
  EXPECT_NE(csv.str().find(",a0,"), std::string::npos) << csv.str();
  EXPECT_EQ(csv.str().find(",b0,"), std::string::npos) << csv.str();
  const std::vector<std::string> h5 = h5_strings(write_results_h5(t.s), "result");
  EXPECT_EQ(h5, (std::vector<std::string>{"a0", "a1", "B2", "b3", "", "a5", "", ""}));
}

TEST(FencedFold, ADamagedDoneRecordIsAStoreErrorNamingIt) {
  const TwoParticipants t;
  auto store = store::open_store(t.s.store_url());
  store->put_if_absent(claim::round_marker_key(1), R"({"rerun_failed":false,"unix_ns":1})");
  store->put_if_absent(claim::round_prefix(1) + "/done/0000000000000", R"({"epoch":0})");
  try {
    read_session_counts(t.s);
    FAIL() << "no error";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("round-000001/done/0000000000000"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mpmux
