// Session results: journals folded into one row per element, and the CSV, JSON Lines and HDF5
// exports with their atomic replacement.
#include "mpmux/results.hpp"

#include <grp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <csignal>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "mpmux/error.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/session.hpp"
#include "store/h5.hpp"
#include "test_support.hpp"

namespace mpmux {
namespace {

namespace stdfs = std::filesystem;
using mpmux::test::in_child;
using mpmux::test::TempDir;
using Json = nlohmann::ordered_json;  // keeps the key order of each line

std::vector<std::string> names_in(const stdfs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : stdfs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string bytes_of(const stdfs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A session on a grid of three typed columns: a (int64), x (float64), name (string).
Session grid_session(const TempDir& tmp, std::size_t n) {
  ParsedElements p;
  Table t;
  t.names = {"a", "x", "name"};
  t.types = {ColumnType::int64, ColumnType::float64, ColumnType::string};
  for (std::size_t i = 0; i < n; ++i) {
    t.push_row({std::int64_t(i) * 10, 0.5 + double(i), "n,\"" + std::to_string(i) + "\""});
    p.elements.push(t.row_json(i));
  }
  p.table = std::move(t);
  return Session::create(create_mux(tmp.path() / "mux", p, ""));
}

Session json_session(const TempDir& tmp, const std::vector<std::string>& objects) {
  ParsedElements p;
  for (const auto& o : objects) p.elements.push(o);
  return Session::create(create_mux(tmp.path() / "mux", p, ""));
}

Session bytes_session(const TempDir& tmp, std::size_t n) {
  ParsedElements p;
  p.encoding = Encoding::boost_binary;
  for (std::size_t i = 0; i < n; ++i) p.elements.push(std::string("\0\1", 2) + std::to_string(i));
  return Session::create(create_mux(tmp.path() / "mux", p, ""));
}

constexpr std::int64_t kSecond = 1000000000;
constexpr std::int64_t kT0 = 1795304112 * kSecond;  // 2026-11-21T23:35:12Z

Outcome outcome(RecordType type, std::uint64_t index, std::uint32_t attempt, std::int64_t t_end = 0) {
  Outcome o;
  o.type = type;
  o.index = index;
  o.attempt = attempt;
  o.worker = 1 + static_cast<std::uint32_t>(index % 3);
  o.pid = 4000 + static_cast<std::uint32_t>(index);
  o.host = "node" + std::to_string(attempt);
  o.t_start = kT0 + static_cast<std::int64_t>(index) * kSecond;
  o.t_end = t_end != 0 ? t_end : o.t_start + 1500000 + attempt;
  if (type == RecordType::done) {
    o.result = "r" + std::to_string(index) + "." + std::to_string(attempt);
  } else {
    o.exit_code = static_cast<std::int32_t>(attempt);
    o.stderr_tail = "try " + std::to_string(attempt) + "\nfailed " + std::to_string(index) + "\n";
  }
  return o;
}

Outcome done(std::uint64_t index, std::uint32_t attempt = 1) {
  return outcome(RecordType::done, index, attempt);
}
Outcome failed(std::uint64_t index, std::uint32_t attempt, bool final_attempt) {
  Outcome o = outcome(RecordType::failed, index, attempt);
  if (final_attempt) o.flags |= Outcome::kFinal;
  return o;
}

void journal(const Session& s, const std::vector<Outcome>& outcomes, std::uint32_t pid = 77) {
  JournalWriter w(s, "host", pid);
  for (const Outcome& o : outcomes) w.append(o);
  w.flush();
}

// RFC 4180 records (quoted fields, doubled quotes, newlines inside quotes, LF or CRLF).
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field.push_back(c);
      }
    } else if (c == '"') {
      quoted = any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      row.push_back(std::move(field));
      field.clear();
      rows.push_back(std::move(row));
      row.clear();
    } else {
      field.push_back(c);
      any = true;
    }
  }
  EXPECT_FALSE(quoted) << "unterminated quote";
  if (!field.empty() || !row.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  (void)any;
  return rows;
}

std::string csv_of(const Session& s) {
  std::ostringstream out;
  write_results_csv(s, out);
  return out.str();
}

std::vector<Json> jsonl_of(const Session& s) {
  std::ostringstream out;
  write_results_jsonl(s, out);
  std::vector<Json> rows;
  std::istringstream in(out.str());
  for (std::string line; std::getline(in, line);) rows.push_back(Json::parse(line));
  return rows;
}

// Reads one member of /results with the memory type `mem` (HDF5 picks a member by name).
template <class T>
std::vector<T> h5_column(const stdfs::path& file, const char* member, hid_t mem) {
  const std::string where = file.string();
  h5::Id f = h5::open_file_read(file);
  h5::Id d(h5::check(H5Dopen2(f.get(), "results", H5P_DEFAULT), where, "open"));
  const hsize_t n = h5::dims(d.get(), where).at(0);
  h5::Id type(h5::check(H5Tcreate(H5T_COMPOUND, sizeof(T)), where, "type"));
  h5::check(H5Tinsert(type.get(), member, 0, mem), where, "insert");
  std::vector<T> out(n);
  if (n > 0)
    h5::check(H5Dread(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), where, "read");
  return out;
}

std::vector<std::string> h5_strings(const stdfs::path& file, const char* member) {
  h5::Id str = h5::string_type("test");
  std::vector<std::string> out;
  for (char* p : h5_column<char*>(file, member, str.get())) {
    out.emplace_back(p ? p : "(null)");
    H5free_memory(p);
  }
  return out;
}

std::string h5_type_of(const stdfs::path& file, const char* member) {
  h5::Id f = h5::open_file_read(file);
  h5::Id d(H5Dopen2(f.get(), "results", H5P_DEFAULT));
  h5::Id type(H5Dget_type(d.get()));
  const int m = H5Tget_member_index(type.get(), member);
  if (m < 0) return "(missing)";
  h5::Id t(H5Tget_member_type(type.get(), static_cast<unsigned>(m)));
  switch (H5Tget_class(t.get())) {
    case H5T_INTEGER:
      return std::string(H5Tget_sign(t.get()) == H5T_SGN_NONE ? "u" : "i") +
             std::to_string(8 * H5Tget_size(t.get()));
    case H5T_FLOAT:
      return "f" + std::to_string(8 * H5Tget_size(t.get()));
    case H5T_STRING:
      return H5Tis_variable_str(t.get()) > 0 ? "vlen-str" : "S" + std::to_string(H5Tget_size(t.get()));
    case H5T_ENUM:
      return "enum";
    case H5T_VLEN:
      return "vlen";
    default:
      return "other";
  }
}

std::vector<std::string> h5_members(const stdfs::path& file) {
  h5::Id f = h5::open_file_read(file);
  h5::Id d(H5Dopen2(f.get(), "results", H5P_DEFAULT));
  h5::Id type(H5Dget_type(d.get()));
  std::vector<std::string> out;
  for (int m = 0; m < H5Tget_nmembers(type.get()); ++m) {
    char* name = H5Tget_member_name(type.get(), static_cast<unsigned>(m));
    out.emplace_back(name);
    H5free_memory(name);
  }
  return out;
}

const std::vector<std::string> kResultNames = {"status",
                                               "attempts",
                                               "host",
                                               "rank",
                                               "pid",
                                               "start",
                                               "end",
                                               "duration",
                                               "exit_code",
                                               "signal",
                                               "timed_out",
                                               "result",
                                               "result_truncated",
                                               "stderr_tail"};

std::vector<std::string> with_fields(std::vector<std::string> fields) {
  fields.insert(fields.begin(), "index");
  fields.insert(fields.end(), kResultNames.begin(), kResultNames.end());
  return fields;
}

// ---------------------------------------------------------------------------------------------
// Folding

TEST(Results, ADoneRecordDecidesWhateverFailedBeforeOrAfterIt) {
  TempDir tmp;
  Session s = grid_session(tmp, 3);
  journal(s, {failed(0, 1, false), done(0, 2), failed(1, 1, true)});
  // A late failure of element 0 (a duplicate run after a crash) and a done for element 1 in a
  // second journal.
  journal(s, {failed(0, 3, true), done(1, 2)}, 78);
  const auto rows = read_results(s);
  ASSERT_EQ(rows.size(), 3u);
  for (std::uint64_t i : {0, 1}) {
    SCOPED_TRACE(i);
    EXPECT_EQ(rows[i].index, i);
    EXPECT_EQ(rows[i].status, ElementStatus::done);
    ASSERT_TRUE(rows[i].outcome);
    EXPECT_EQ(rows[i].outcome->type, RecordType::done);
    EXPECT_EQ(rows[i].outcome->attempt, 2u);
    EXPECT_EQ(rows[i].outcome->result, "r" + std::to_string(i) + ".2");
  }
  EXPECT_EQ(rows[0].attempts, 3u);
  EXPECT_EQ(rows[1].attempts, 2u);
}

TEST(Results, TheLatestFailedRecordDecidesAFailedElement) {
  TempDir tmp;
  Session s = grid_session(tmp, 2);
  // Attempts in two journals, read in an order that is not the order of the attempts.
  journal(s, {failed(1, 3, true)}, 70);
  journal(s, {failed(1, 1, false), failed(1, 2, false)}, 80);
  const auto rows = read_results(s);
  EXPECT_EQ(rows[1].status, ElementStatus::failed);
  EXPECT_EQ(rows[1].attempts, 3u);
  ASSERT_TRUE(rows[1].outcome);
  EXPECT_EQ(rows[1].outcome->attempt, 3u);
  EXPECT_EQ(rows[1].outcome->exit_code, 3);
  EXPECT_TRUE(rows[1].outcome->flags & Outcome::kFinal);
}

TEST(Results, ATieOnAttemptIsDecidedByTheLaterEnd) {
  TempDir tmp;
  Session s = grid_session(tmp, 1);
  Outcome late = outcome(RecordType::done, 0, 1, kT0 + 9 * kSecond);
  late.result = "late";
  Outcome early = outcome(RecordType::done, 0, 1, kT0 + 5 * kSecond);
  early.result = "early";
  journal(s, {late, early});
  EXPECT_EQ(read_results(s)[0].outcome->result, "late");
}

TEST(Results, ElementsNeverAttemptedArePendingWithoutOutcome) {
  TempDir tmp;
  Session s = grid_session(tmp, 4);
  journal(s, {done(0), failed(2, 1, false)});
  const auto rows = read_results(s);
  EXPECT_EQ(rows[1].status, ElementStatus::pending);
  EXPECT_EQ(rows[1].attempts, 0u);
  EXPECT_FALSE(rows[1].outcome);
  // A failure with a retry left keeps the element pending, and shows why it is not done.
  EXPECT_EQ(rows[2].status, ElementStatus::pending);
  EXPECT_EQ(rows[2].attempts, 1u);
  ASSERT_TRUE(rows[2].outcome);
  EXPECT_EQ(rows[2].outcome->exit_code, 1);
  EXPECT_FALSE(rows[3].outcome);
}

TEST(Results, StatusAndAttemptsAgreeWithTheSessionState) {
  TempDir tmp;
  const std::size_t n = 300;
  Session s = grid_session(tmp, n);
  std::mt19937 rng(42);
  for (std::uint32_t j = 0; j < 4; ++j) {
    std::vector<Outcome> records;
    for (int k = 0; k < 200; ++k) {
      const std::uint64_t i = rng() % n;
      const std::uint32_t attempt = 1 + rng() % 3;
      records.push_back(rng() % 3 == 0 ? done(i, attempt) : failed(i, attempt, rng() % 2 == 0));
    }
    journal(s, records, 100 + j);
  }
  const SessionState state = read_session_state(s);
  const auto rows = read_results(s);
  ASSERT_EQ(rows.size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(rows[i].status, state.status[i]);
    EXPECT_EQ(rows[i].attempts, state.attempts[i]);
    EXPECT_EQ(rows[i].outcome.has_value(), state.attempts[i] > 0);
    if (rows[i].outcome)
      EXPECT_EQ(rows[i].outcome->type == RecordType::done, state.status[i] == ElementStatus::done);
  }
}

TEST(Results, ForEachResultHandsOutTheRowsOfOneStatusWithTheirOutcomes) {
  TempDir tmp;
  Session s = grid_session(tmp, 5);
  journal(s, {done(0), failed(1, 1, true), failed(2, 1, false), failed(3, 1, true), done(3, 2)});
  auto rows_of = [&](std::optional<ElementStatus> only) {
    std::vector<ElementResult> rows;
    for_each_result(
        s, [&](const ElementResult& r) { rows.push_back(r); }, only);
    return rows;
  };
  const auto failed_rows = rows_of(ElementStatus::failed);
  ASSERT_EQ(failed_rows.size(), 1u);
  EXPECT_EQ(failed_rows[0].index, 1u);
  ASSERT_TRUE(failed_rows[0].outcome);
  EXPECT_EQ(failed_rows[0].outcome->stderr_tail, "try 1\nfailed 1\n");

  // A failure with a retry left keeps element 2 pending, with that outcome; 4 has none.
  const auto pending = rows_of(ElementStatus::pending);
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].index, 2u);
  ASSERT_TRUE(pending[0].outcome);
  EXPECT_EQ(pending[0].outcome->exit_code, 1);
  EXPECT_EQ(pending[1].index, 4u);
  EXPECT_FALSE(pending[1].outcome);

  const auto all = rows_of(std::nullopt);
  const auto read = read_results(s);
  ASSERT_EQ(all.size(), read.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(all[i].index, i);
    EXPECT_EQ(all[i].status, read[i].status);
    EXPECT_EQ(all[i].attempts, read[i].attempts);
    ASSERT_EQ(all[i].outcome.has_value(), read[i].outcome.has_value());
    if (all[i].outcome) EXPECT_EQ(all[i].outcome->result, read[i].outcome->result);
  }
  EXPECT_EQ(all[3].outcome->result, "r3.2");
}

TEST(Results, ARecordNamingAnIndexBeyondTheSetIsAStoreError) {
  TempDir tmp;
  Session s = grid_session(tmp, 2);
  journal(s, {done(2)});
  try {
    read_results(s);
    FAIL() << "no StoreError";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("names element 2, but the session has 2"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(write_results_h5(s), StoreError);
  EXPECT_FALSE(stdfs::exists(results_file(s)));
  EXPECT_EQ(names_in(s.dir()), (std::vector<std::string>{"journal", "session.json"}));
}

TEST(Results, FormatNamesRoundTripAndUnknownOnesAreUsageErrors) {
  for (ResultsFormat f : {ResultsFormat::csv, ResultsFormat::jsonl, ResultsFormat::h5})
    EXPECT_EQ(results_format_from_string(to_string(f)), f);
  EXPECT_THROW(results_format_from_string("xlsx"), UsageError);
}

// ---------------------------------------------------------------------------------------------
// CSV

TEST(ResultsCsv, OneRowPerElementWithTheTableFieldsAndTheOutcome) {
  TempDir tmp;
  Session s = grid_session(tmp, 3);
  Outcome f = failed(1, 2, true);
  f.signal = 9;
  f.exit_code = -1;
  f.flags |= Outcome::kTimedOut;
  Outcome d = done(0);
  d.result = "line 1, with comma\nline \"2\"\n";
  d.flags |= Outcome::kResultTruncated;
  d.t_start = kT0 + 123456789;  // .123456789 s: microseconds are kept, the rest cut
  d.t_end = d.t_start + 2 * kSecond + 500000000;
  journal(s, {d, f});
  const auto rows = parse_csv(csv_of(s));
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0], with_fields({"a", "x", "name"}));
  std::map<std::string, std::string> r0;
  for (std::size_t c = 0; c < rows[0].size(); ++c) r0[rows[0][c]] = rows[1].at(c);
  EXPECT_EQ(r0["index"], "0");
  EXPECT_EQ(r0["a"], "0");
  EXPECT_EQ(r0["x"], "0.5");
  EXPECT_EQ(r0["name"], "n,\"0\"");
  EXPECT_EQ(r0["status"], "done");
  EXPECT_EQ(r0["attempts"], "1");
  EXPECT_EQ(r0["host"], "node1");
  EXPECT_EQ(r0["rank"], "1");
  EXPECT_EQ(r0["pid"], "4000");
  EXPECT_EQ(r0["start"], "2026-11-21T23:35:12.123456Z");
  EXPECT_EQ(r0["end"], "2026-11-21T23:35:14.623456Z");
  EXPECT_EQ(r0["duration"], "2.5");
  EXPECT_EQ(r0["exit_code"], "0");
  EXPECT_EQ(r0["signal"], "0");
  EXPECT_EQ(r0["timed_out"], "false");
  EXPECT_EQ(r0["result"], d.result);
  EXPECT_EQ(r0["result_truncated"], "true");
  EXPECT_EQ(r0["stderr_tail"], "");

  EXPECT_EQ(rows[2][0], "1");
  EXPECT_EQ(rows[2][1], "10");
  EXPECT_EQ(rows[2][2], "1.5");
  const std::vector<std::string> tail1(rows[2].begin() + 4, rows[2].end());
  EXPECT_EQ(tail1,
            (std::vector<std::string>{"failed", "1", "node2", "2", "4001", "2026-11-21T23:35:13.000000Z",
                                      "2026-11-21T23:35:13.001500Z", "0.001500002", "-1", "9", "true", "",
                                      "false", "try 2\nfailed 1\n"}));
  // Element 2 was never attempted: everything past the attempts is empty.
  const std::vector<std::string> tail2(rows[3].begin() + 4, rows[3].end());
  EXPECT_EQ(tail2,
            (std::vector<std::string>{"pending", "0", "", "", "", "", "", "", "", "", "", "", "", ""}));
}

TEST(ResultsCsv, BytesThatAreNotUtf8BecomeReplacementCharacters) {
  TempDir tmp;
  Session s = grid_session(tmp, 1);
  Outcome d = done(0);
  d.result = std::string("ok\xff\x00!", 5);
  d.stderr_tail = "\xa9 tail cut inside a character";  // the end of a 2-byte character
  journal(s, {d});
  const auto rows = parse_csv(csv_of(s));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1][rows[1].size() - 3], std::string("ok\xEF\xBF\xBD\0!", 7));
  EXPECT_EQ(rows[1].back(), " tail cut inside a character");
}

TEST(ResultsCsv, AFieldNamedLikeAResultColumnIsRenamed) {
  TempDir tmp;
  Session s = json_session(tmp, {R"({"status":"x","element_status":1,"index":5})"});
  const auto rows = parse_csv(csv_of(s));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], with_fields({"element_element_status", "element_status", "element_index"}));
  EXPECT_EQ(rows[1][0], "0");
  EXPECT_EQ(std::vector<std::string>(rows[1].begin() + 1, rows[1].begin() + 5),
            (std::vector<std::string>{"x", "1", "5", "pending"}));
}

TEST(ResultsCsv, OpaqueElementsContributeNoFields) {
  TempDir tmp;
  Session s = bytes_session(tmp, 2);
  journal(s, {done(1)});
  const auto rows = parse_csv(csv_of(s));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], with_fields({}));
  EXPECT_EQ(rows[2][1], "done");
  EXPECT_EQ(rows[2][12], "r1.1");
}

// ---------------------------------------------------------------------------------------------
// JSON Lines

TEST(ResultsJsonl, ValuesAreTypedAndMissingOnesAreNull) {
  TempDir tmp;
  Session s = grid_session(tmp, 2);
  Outcome d = done(1);
  d.result = "tab\there \"quoted\" \x01";
  journal(s, {d});
  const auto rows = jsonl_of(s);
  ASSERT_EQ(rows.size(), 2u);
  for (const Json& row : rows) {
    std::vector<std::string> keys;
    for (auto it = row.begin(); it != row.end(); ++it) keys.push_back(it.key());
    EXPECT_EQ(keys, with_fields({"a", "x", "name"}));
  }

  const Json& r1 = rows[1];
  EXPECT_EQ(r1["index"], 1);
  EXPECT_TRUE(r1["a"].is_number_integer());
  EXPECT_EQ(r1["a"], 10);
  EXPECT_TRUE(r1["x"].is_number_float());
  EXPECT_EQ(r1["x"], 1.5);
  EXPECT_EQ(r1["name"], "n,\"1\"");
  EXPECT_EQ(r1["status"], "done");
  EXPECT_EQ(r1["attempts"], 1);
  EXPECT_EQ(r1["host"], "node1");
  EXPECT_EQ(r1["rank"], 2);
  EXPECT_EQ(r1["pid"], 4001);
  EXPECT_EQ(r1["start"], "2026-11-21T23:35:13.000000Z");
  EXPECT_EQ(r1["end"], "2026-11-21T23:35:13.001500Z");
  EXPECT_EQ(r1["duration"].get<double>(), 1500001 / 1e9);
  EXPECT_EQ(r1["exit_code"], 0);
  EXPECT_EQ(r1["signal"], 0);
  EXPECT_EQ(r1["timed_out"], false);
  EXPECT_EQ(r1["result"], d.result);
  EXPECT_EQ(r1["result_truncated"], false);
  EXPECT_EQ(r1["stderr_tail"], "");

  const Json& r0 = rows[0];
  EXPECT_EQ(r0["status"], "pending");
  EXPECT_EQ(r0["attempts"], 0);
  for (const char* key : {"host", "rank", "pid", "start", "end", "duration", "exit_code", "signal",
                          "timed_out", "result", "result_truncated", "stderr_tail"})
    EXPECT_TRUE(r0[key].is_null()) << key;
}

TEST(ResultsJsonl, JsonElementsWithoutATableGiveTheUnionOfTheirKeys) {
  TempDir tmp;
  Session s =
      json_session(tmp, {R"({"b":1,"a":{"deep":[1,2]}})", R"({"c":"x","b":2})", R"({"b":3,"c":2.5})"});
  const auto rows = jsonl_of(s);
  ASSERT_EQ(rows.size(), 3u);
  std::vector<std::string> keys;
  for (auto it = rows[0].begin(); it != rows[0].end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, with_fields({"b", "a", "c"}));  // first-seen order
  EXPECT_EQ(rows[0]["a"], Json::parse(R"({"deep":[1,2]})"));
  EXPECT_TRUE(rows[0]["c"].is_null());
  EXPECT_TRUE(rows[1]["a"].is_null());
  EXPECT_EQ(rows[1]["c"], "x");
  EXPECT_EQ(rows[2]["c"], 2.5);
  EXPECT_EQ(rows[2]["b"], 3);
  const auto csv = parse_csv(csv_of(s));
  EXPECT_EQ(csv[0], with_fields({"b", "a", "c"}));
  EXPECT_EQ(csv[1][2], R"({"deep":[1,2]})");
  EXPECT_EQ(csv[1][3], "");
  EXPECT_EQ(csv[3][3], "2.5");
}

// Exports show each field's text as the input had it, from the table (CSV) or from the JSON.
TEST(ResultsCsv, FieldsShowTheTextOfTheInput) {
  TempDir tmp;
  const auto input =
      tmp.write("awkward.csv", "id,version,price,code,f\n007,1.10,2.50,+1,2.0\n010,2.0,3,1e3,-0.0\n");
  ParsedElements p = read_csv(input);
  Session s = Session::create(create_mux(tmp.path() / "mux", p, ""));
  const auto csv = parse_csv(csv_of(s));
  EXPECT_EQ(std::vector<std::string>(csv[1].begin() + 1, csv[1].begin() + 6),
            (std::vector<std::string>{"007", "1.10", "2.50", "+1", "2.0"}));
  EXPECT_EQ(std::vector<std::string>(csv[2].begin() + 1, csv[2].begin() + 6),
            (std::vector<std::string>{"010", "2.0", "3", "1e3", "-0.0"}));
  std::ostringstream out;
  write_results_jsonl(s, out);
  EXPECT_NE(out.str().find(R"({"index":0,"id":"007","version":"1.10","price":"2.50","code":"+1","f":2.0,)"),
            std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find(R"({"index":1,"id":"010","version":"2.0","price":"3","code":"1e3","f":-0.0,)"),
            std::string::npos)
      << out.str();
}

TEST(ResultsJsonl, JsonElementsKeepTheirNumbersAsWritten) {
  TempDir tmp;
  Session s = json_session(tmp, {R"({"v":1.10,"z":-0,"e":1e3,"o":{"x": 2.50}})"});
  std::ostringstream out;
  write_results_jsonl(s, out);
  EXPECT_EQ(out.str().rfind(R"({"index":0,"v":1.10,"z":-0,"e":1e3,"o":{"x": 2.50},)", 0), 0u) << out.str();
  const auto csv = parse_csv(csv_of(s));
  EXPECT_EQ(std::vector<std::string>(csv[1].begin() + 1, csv[1].begin() + 5),
            (std::vector<std::string>{"1.10", "-0", "1e3", R"({"x": 2.50})"}));
}

// ---------------------------------------------------------------------------------------------
// HDF5

TEST(ResultsH5, TheResultsDatasetHoldsTypedColumnsAndAttributes) {
  TempDir tmp;
  Session s = grid_session(tmp, 3);
  Outcome f = failed(2, 1, true);
  f.signal = 9;
  f.exit_code = -1;
  f.flags |= Outcome::kTimedOut;
  journal(s, {done(0), f});
  const stdfs::path file = write_results_h5(s);
  EXPECT_EQ(file, s.dir() / "results.h5");
  EXPECT_EQ(h5_members(file), with_fields({"a", "x", "name"}));
  const std::map<std::string, std::string> types = {{"index", "u64"},
                                                    {"a", "i64"},
                                                    {"x", "f64"},
                                                    {"name", "vlen-str"},
                                                    {"status", "S7"},
                                                    {"attempts", "u32"},
                                                    {"host", "vlen-str"},
                                                    {"rank", "i32"},
                                                    {"pid", "i64"},
                                                    {"start", "f64"},
                                                    {"end", "f64"},
                                                    {"duration", "f64"},
                                                    {"exit_code", "i32"},
                                                    {"signal", "i32"},
                                                    {"timed_out", "enum"},
                                                    {"result", "vlen-str"},
                                                    {"result_truncated", "enum"},
                                                    {"stderr_tail", "vlen-str"}};
  for (const auto& [name, type] : types) EXPECT_EQ(h5_type_of(file, name.c_str()), type) << name;

  EXPECT_EQ(h5_column<std::uint64_t>(file, "index", H5T_NATIVE_UINT64),
            (std::vector<std::uint64_t>{0, 1, 2}));
  EXPECT_EQ(h5_column<std::int64_t>(file, "a", H5T_NATIVE_INT64), (std::vector<std::int64_t>{0, 10, 20}));
  EXPECT_EQ(h5_column<double>(file, "x", H5T_NATIVE_DOUBLE), (std::vector<double>{0.5, 1.5, 2.5}));
  EXPECT_EQ(h5_strings(file, "name"), (std::vector<std::string>{"n,\"0\"", "n,\"1\"", "n,\"2\""}));
  EXPECT_EQ(h5_strings(file, "host"), (std::vector<std::string>{"node1", "", "node1"}));
  EXPECT_EQ(h5_strings(file, "result"), (std::vector<std::string>{"r0.1", "", ""}));
  EXPECT_EQ(h5_strings(file, "stderr_tail"), (std::vector<std::string>{"", "", "try 1\nfailed 2\n"}));
  EXPECT_EQ(h5_column<std::int32_t>(file, "rank", H5T_NATIVE_INT32), (std::vector<std::int32_t>{1, -1, 3}));
  EXPECT_EQ(h5_column<std::int64_t>(file, "pid", H5T_NATIVE_INT64),
            (std::vector<std::int64_t>{4000, -1, 4002}));
  EXPECT_EQ(h5_column<std::int32_t>(file, "exit_code", H5T_NATIVE_INT32),
            (std::vector<std::int32_t>{0, -1, -1}));
  EXPECT_EQ(h5_column<std::int32_t>(file, "signal", H5T_NATIVE_INT32), (std::vector<std::int32_t>{0, 0, 9}));
  EXPECT_EQ(h5_column<std::int8_t>(file, "timed_out", H5T_NATIVE_INT8), (std::vector<std::int8_t>{0, 0, 1}));
  EXPECT_EQ(h5_column<std::uint32_t>(file, "attempts", H5T_NATIVE_UINT32),
            (std::vector<std::uint32_t>{1, 0, 1}));
  const auto start = h5_column<double>(file, "start", H5T_NATIVE_DOUBLE);
  EXPECT_DOUBLE_EQ(start[0], 1795304112.0);
  EXPECT_TRUE(std::isnan(start[1]));
  const auto duration = h5_column<double>(file, "duration", H5T_NATIVE_DOUBLE);
  EXPECT_EQ(duration[2], 1500001 / 1e9);
  using Status = std::array<char, 7>;
  h5::Id st(H5Tcopy(H5T_C_S1));
  H5Tset_size(st.get(), 7);
  H5Tset_strpad(st.get(), H5T_STR_NULLPAD);
  std::vector<std::string> status;
  for (const Status& v : h5_column<Status>(file, "status", st.get()))
    status.emplace_back(v.data(), strnlen(v.data(), 7));
  EXPECT_EQ(status, (std::vector<std::string>{"done", "pending", "failed"}));

  h5::Id handle = h5::open_file_read(file);
  h5::Id d(H5Dopen2(handle.get(), "results", H5P_DEFAULT));
  EXPECT_EQ(h5::read_string_attribute(d.get(), "format", "t"), "mpmux-results");
  EXPECT_EQ(h5::read_int64_attribute(d.get(), "format_version", "t"), 1);
  EXPECT_EQ(h5::read_string_attribute(d.get(), "session", "t"), s.id().session);
  EXPECT_EQ(h5::read_string_attribute(d.get(), "mux_id", "t"), s.id().str());
  EXPECT_EQ(h5::read_uint64_attribute(d.get(), "total", "t"), 3u);
  EXPECT_EQ(h5::read_uint64_attribute(d.get(), "done", "t"), 1u);
  EXPECT_EQ(h5::read_uint64_attribute(d.get(), "failed", "t"), 1u);
  EXPECT_EQ(h5::read_uint64_attribute(d.get(), "pending", "t"), 1u);
  EXPECT_EQ(h5::read_string_attribute(d.get(), "result_encoding", "t"), "utf-8");
  EXPECT_TRUE(std::regex_match(h5::read_string_attribute(d.get(), "created", "t").value_or(""),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
}

TEST(ResultsH5, BinaryResultsAreStoredAsExactBytes) {
  TempDir tmp;
  Session s = bytes_session(tmp, 2);
  Outcome d = done(0);
  d.result = std::string("\x00\x01\xff binary", 10);
  journal(s, {d});
  const stdfs::path file = write_results_h5(s);
  EXPECT_EQ(h5_members(file), with_fields({}));
  EXPECT_EQ(h5_type_of(file, "result"), "vlen");
  h5::Id bytes(H5Tvlen_create(H5T_NATIVE_UINT8));
  std::vector<std::string> results;
  for (hvl_t v : h5_column<hvl_t>(file, "result", bytes.get())) {
    results.emplace_back(static_cast<const char*>(v.p), v.len);
    H5free_memory(v.p);
  }
  EXPECT_EQ(results, (std::vector<std::string>{d.result, ""}));
  h5::Id handle = h5::open_file_read(file);
  h5::Id ds(H5Dopen2(handle.get(), "results", H5P_DEFAULT));
  EXPECT_EQ(h5::read_string_attribute(ds.get(), "result_encoding", "t"), "bytes");
}

TEST(ResultsH5, JsonFieldsWithoutATableAreTypedByTheirValuesText) {
  TempDir tmp;
  Session s = json_session(tmp, {R"({"n":1,"f":1.0,"s":"a","o":true,"m":1,"t":1.10})",
                                 R"({"n":2,"f":2.5,"s":3,"o":false,"m":2.5,"t":-0})", R"({"n":3,"o":true})"});
  const stdfs::path file = write_results_h5(s);
  EXPECT_EQ(h5_type_of(file, "n"), "i64");
  EXPECT_EQ(h5_type_of(file, "f"), "f64");
  EXPECT_EQ(h5_type_of(file, "s"), "vlen-str");
  EXPECT_EQ(h5_type_of(file, "o"), "vlen-str");
  EXPECT_EQ(h5_type_of(file, "m"), "vlen-str");  // 1 would print back as 1.0
  EXPECT_EQ(h5_type_of(file, "t"), "vlen-str");
  EXPECT_EQ(h5_column<std::int64_t>(file, "n", H5T_NATIVE_INT64), (std::vector<std::int64_t>{1, 2, 3}));
  const auto f = h5_column<double>(file, "f", H5T_NATIVE_DOUBLE);
  EXPECT_EQ(f[0], 1.0);
  EXPECT_EQ(f[1], 2.5);
  EXPECT_TRUE(std::isnan(f[2]));
  EXPECT_EQ(h5_strings(file, "s"), (std::vector<std::string>{"a", "3", ""}));
  EXPECT_EQ(h5_strings(file, "o"), (std::vector<std::string>{"true", "false", "true"}));
  EXPECT_EQ(h5_strings(file, "m"), (std::vector<std::string>{"1", "2.5", ""}));
  EXPECT_EQ(h5_strings(file, "t"), (std::vector<std::string>{"1.10", "-0", ""}));
}

TEST(ResultsH5, RowsBeyondOneWriteBatchAreAllWritten) {
  TempDir tmp;
  const std::size_t n = 70000;  // more than one batch of 65536 rows
  Session s = grid_session(tmp, n);
  std::vector<Outcome> records;
  for (std::uint64_t i = 0; i < n; i += 7) records.push_back(done(i));
  journal(s, records);
  const stdfs::path file = write_results_h5(s);
  const auto index = h5_column<std::uint64_t>(file, "index", H5T_NATIVE_UINT64);
  const auto a = h5_column<std::int64_t>(file, "a", H5T_NATIVE_INT64);
  const auto results = h5_strings(file, "result");
  ASSERT_EQ(index.size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    if (index[i] != i || a[i] != std::int64_t(i) * 10 ||
        results[i] != (i % 7 == 0 ? "r" + std::to_string(i) + ".1" : ""))
      FAIL() << "row " << i << ": " << index[i] << " " << a[i] << " " << results[i];
  }
}

// ---------------------------------------------------------------------------------------------
// Atomic replacement

TEST(ResultsFile, AnExistingResultsFileIsReplacedAndNoTemporaryIsLeft) {
  TempDir tmp;
  Session s = grid_session(tmp, 2);
  std::ofstream(results_file(s)) << "an old results file";
  journal(s, {done(1)});
  write_results_h5(s);
  EXPECT_EQ(names_in(s.dir()), (std::vector<std::string>{"journal", "results.h5", "session.json"}));
  EXPECT_EQ(h5_strings(results_file(s), "result"), (std::vector<std::string>{"", "r1.1"}));
}

TEST(ResultsFile, AnUnwritableDirectoryLeavesTheOldFileIntact) {
  TempDir tmp;
  Session s = grid_session(tmp, 2);
  write_results_h5(s);
  const std::string before = bytes_of(results_file(s));
  journal(s, {done(0)});
  // Everything readable by 'nobody', nothing writable.
  ::chmod(tmp.path().c_str(), 0755);
  for (const auto& e : stdfs::recursive_directory_iterator(tmp.path()))
    ::chmod(e.path().c_str(), e.is_directory() ? 0755 : 0644);
  // Root ignores file modes, so the write is tried by 'nobody'.
  const std::string error = in_child([&]() -> std::string {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0)
      return "cannot drop privileges";
    try {
      write_results_h5(s);
    } catch (const StoreError& e) {
      return e.what();
    }
    return "(no StoreError)";
  });
  EXPECT_NE(error.find("'" + results_file(s).string() + "': cannot write results: cannot create"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("Permission denied"), std::string::npos) << error;
  EXPECT_EQ(bytes_of(results_file(s)), before);
  EXPECT_EQ(names_in(s.dir()), (std::vector<std::string>{"journal", "results.h5", "session.json"}));
}

TEST(ResultsFile, AWriteThatFailsPartWayLeavesTheOldFileAndNoTemporary) {
  TempDir tmp;
  const std::size_t n = 20000;
  Session s = grid_session(tmp, n);
  write_results_h5(s);
  const std::string before = bytes_of(results_file(s));
  std::vector<Outcome> records;
  for (std::uint64_t i = 0; i < n; ++i) {
    records.push_back(done(i));
    records.back().result = std::string(100, 'r');
  }
  journal(s, records);
  // A file size limit makes HDF5's writes fail part-way (EFBIG), as a full disk would.
  const std::string outcome = in_child([&]() -> std::string {
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{before.size() + 64 * 1024, RLIM_INFINITY};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return "setrlimit failed";
    try {
      write_results_h5(s);
    } catch (const StoreError&) {
      return "StoreError";
    }
    return "no error";
  });
  EXPECT_EQ(outcome, "StoreError");
  EXPECT_EQ(bytes_of(results_file(s)), before);
  EXPECT_EQ(names_in(s.dir()), (std::vector<std::string>{"journal", "results.h5", "session.json"}));
}

std::string host_name() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

TEST(ResultsFile, TemporariesOfDeadWritersAreRemovedAndThoseOfLiveOnesKept) {
  TempDir tmp;
  Session s = grid_session(tmp, 2);
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const std::string prefix = ".results.h5.tmp-" + host_name() + "-";
  const std::string stale = prefix + std::to_string(dead) + "-0badc0de";
  const std::string live = prefix + std::to_string(::getppid()) + "-0000beef";
  const std::string other_host = ".results.h5.tmp-elsewhere-" + std::to_string(dead) + "-12345678";
  for (const auto& name : {stale, live, other_host}) std::ofstream(s.dir() / name) << "partial";
  write_results_h5(s);
  std::vector<std::string> expected{other_host, live, "journal", "results.h5", "session.json"};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names_in(s.dir()), expected);
}

TEST(ResultsFile, CsvAndJsonlFilesAreWrittenWholeUnderTheirName) {
  TempDir tmp;
  Session s = grid_session(tmp, 3);
  journal(s, {done(2)});
  const stdfs::path csv = tmp.path() / "out.csv", jsonl = tmp.path() / "out.jsonl";
  std::ofstream(csv) << "old";
  write_results_file(s, ResultsFormat::csv, csv);
  write_results_file(s, ResultsFormat::jsonl, jsonl);
  EXPECT_EQ(bytes_of(csv), csv_of(s));
  std::ostringstream expected;
  write_results_jsonl(s, expected);
  EXPECT_EQ(bytes_of(jsonl), expected.str());
  EXPECT_EQ(names_in(tmp.path()), (std::vector<std::string>{"mux", "out.csv", "out.jsonl"}));
  EXPECT_THROW(write_results_file(s, ResultsFormat::csv, tmp.path() / "no" / "such.csv"), StoreError);
}

}  // namespace
}  // namespace mpmux
