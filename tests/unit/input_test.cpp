// Input readers: read_csv, read_jsonl, make_grid, make_range, and the JSON of table rows.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "store/utf8.hpp"
#include "test_support.hpp"

namespace mpmux {
namespace {

namespace stdfs = std::filesystem;
using mpmux::test::TempDir;
using mpmux::test::usage_error_message;
using ordered_json = nlohmann::ordered_json;

std::vector<std::string> elements_of(const ParsedElements& p) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < p.elements.size(); ++i) out.emplace_back(p.elements.at(i));
  return out;
}

// --------------------------------------------------------------------------------------------- CSV

TEST(Csv, ColumnsAreTypedAndRowsBecomeJsonObjects) {
  TempDir tmp;
  auto parsed = read_csv(tmp.write("grid.csv", "seed,alpha,model\n1,0.5,resnet\n-2,3.0,vit\n"));
  EXPECT_EQ(parsed.encoding, Encoding::json);
  ASSERT_TRUE(parsed.table);
  EXPECT_EQ(parsed.table->names, (std::vector<std::string>{"seed", "alpha", "model"}));
  EXPECT_EQ(parsed.table->types,
            (std::vector<ColumnType>{ColumnType::int64, ColumnType::float64, ColumnType::string}));
  EXPECT_EQ(elements_of(parsed), (std::vector<std::string>{R"({"seed":1,"alpha":0.5,"model":"resnet"})",
                                                           R"({"seed":-2,"alpha":3.0,"model":"vit"})"}));
  EXPECT_EQ(std::get<std::int64_t>(parsed.table->cell(1, 0)), -2);
  EXPECT_EQ(std::get<double>(parsed.table->cell(1, 1)), 3.0);
  EXPECT_EQ(std::get<std::string>(parsed.table->cell(0, 2)), "resnet");
}

TEST(Csv, QuotedFieldsKeepCommasDoubledQuotesAndNewlines) {
  TempDir tmp;
  auto parsed =
      read_csv(tmp.write("q.csv", "a,b,c\n\"x,y\",\"say \"\"hi\"\"\",\"line1\nline2\"\n\"\",2,3\n"));
  ASSERT_TRUE(parsed.table);
  ASSERT_EQ(parsed.table->row_count(), 2u);
  EXPECT_EQ(std::get<std::string>(parsed.table->cell(0, 0)), "x,y");
  EXPECT_EQ(std::get<std::string>(parsed.table->cell(0, 1)), "say \"hi\"");
  EXPECT_EQ(std::get<std::string>(parsed.table->cell(0, 2)), "line1\nline2");
  EXPECT_EQ(std::get<std::string>(parsed.table->cell(1, 0)), "");
  EXPECT_EQ(parsed.elements.at(0), R"({"a":"x,y","b":"say \"hi\"","c":"line1\nline2"})");
}

TEST(Csv, CrlfBomBlankLinesAndAMissingFinalNewlineAreAccepted) {
  TempDir tmp;
  auto parsed = read_csv(tmp.write("w.csv", "\xEF\xBB\xBFn,s\r\n1,\"a\r\nb\"\r\n\r\n2,c"));
  ASSERT_TRUE(parsed.table);
  EXPECT_EQ(parsed.table->names, (std::vector<std::string>{"n", "s"}));
  EXPECT_EQ(elements_of(parsed), (std::vector<std::string>{R"({"n":1,"s":"a\r\nb"})", R"({"n":2,"s":"c"})"}));
}

TEST(Csv, TrailingCommaMakesAnEmptyLastField) {
  TempDir tmp;
  auto parsed = read_csv(tmp.write("t.csv", "a,b\n1,\n"));
  EXPECT_EQ(parsed.elements.at(0), R"({"a":1,"b":""})");
}

TEST(Csv, TypingFollowsEveryCellOfAColumn) {
  TempDir tmp;
  // A column is typed only when every cell is exactly the text its value prints as.
  auto parsed = read_csv(tmp.write("t.csv",
                                   "i,plus,big,e,f,inf,empty,zip,text,neg0,wide,mixed\n"
                                   "1,+5,9223372036854775807,1e3,-0.025,inf,1,007,1,-0,1.10,1\n"
                                   "2,+6,9223372036854775808,-2.5E-2,1e+20,1,,010,x,0,2.5,2.5\n"));
  const auto& t = *parsed.table;
  EXPECT_EQ(t.types, (std::vector<ColumnType>{ColumnType::int64, ColumnType::string, ColumnType::string,
                                              ColumnType::string, ColumnType::float64, ColumnType::string,
                                              ColumnType::string, ColumnType::string, ColumnType::string,
                                              ColumnType::string, ColumnType::string, ColumnType::string}));
  EXPECT_EQ(std::get<std::string>(t.cell(0, 1)), "+5");
  EXPECT_EQ(std::get<std::string>(t.cell(1, 2)), "9223372036854775808");  // past int64, not a float's text
  EXPECT_EQ(std::get<double>(t.cell(1, 4)), 1e20);
  EXPECT_EQ(std::get<std::string>(t.cell(0, 7)), "007");
  EXPECT_EQ(std::get<std::string>(t.cell(0, 9)), "-0");
  EXPECT_EQ(std::get<std::string>(t.cell(0, 10)), "1.10");
  // In the element, a JSON number literal stays that literal; any other cell is a string.
  EXPECT_EQ(parsed.elements.at(0),
            R"({"i":1,"plus":"+5","big":9223372036854775807,"e":1e3,"f":-0.025,)"
            R"("inf":"inf","empty":1,"zip":"007","text":1,"neg0":-0,"wide":1.10,"mixed":1})");
  EXPECT_EQ(parsed.elements.at(1),
            R"({"i":2,"plus":"+6","big":9223372036854775808,"e":-2.5E-2,"f":1e+20,)"
            R"("inf":1,"empty":"","zip":"010","text":"x","neg0":0,"wide":2.5,"mixed":2.5})");
}

TEST(Csv, AFloatColumnNeedsEveryCellInItsShortestForm) {
  TempDir tmp;
  auto parsed = read_csv(tmp.write("f.csv", "a,b,c\n2.0,0.1,2.0\n-0.0,1e+300,3\n"));
  EXPECT_EQ(parsed.table->types,
            (std::vector<ColumnType>{ColumnType::float64, ColumnType::float64, ColumnType::string}));
  EXPECT_TRUE(std::signbit(std::get<double>(parsed.table->cell(1, 0))));
  EXPECT_EQ(parsed.elements.at(1), R"({"a":-0.0,"b":1e+300,"c":3})");
}

TEST(Csv, LatinOneIsConvertedToUtf8OnRequest) {
  TempDir tmp;
  auto f = tmp.write("l.csv", "caf\xe9,n\n\xbd \xe0 \xff,1\n");
  auto parsed = read_csv(f, TextEncoding::latin1);
  EXPECT_EQ(parsed.table->names[0], "caf\xC3\xA9");
  EXPECT_EQ(std::get<std::string>(parsed.table->cell(0, 0)), "\xC2\xBD \xC3\xA0 \xC3\xBF");
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }),
            f.string() +
                ":1: invalid UTF-8 (byte 0xe9 at column 4); if the file is Latin-1, add "
                "--encoding latin-1");
}

TEST(Csv, EncodingNamesAreUtf8OrLatinOne) {
  EXPECT_EQ(text_encoding_from_string("UTF-8"), TextEncoding::utf8);
  EXPECT_EQ(text_encoding_from_string("utf8"), TextEncoding::utf8);
  EXPECT_EQ(text_encoding_from_string("latin-1"), TextEncoding::latin1);
  EXPECT_EQ(text_encoding_from_string("ISO-8859-1"), TextEncoding::latin1);
  EXPECT_EQ(usage_error_message([] { text_encoding_from_string("cp1252"); }),
            "--encoding 'cp1252': unknown encoding (expected utf-8 or latin-1)");
}

TEST(Csv, AnyNonEmptyHeaderNamesAColumn) {
  TempDir tmp;
  auto parsed =
      read_csv(tmp.write("h.csv", "Contact Phone Number,alpha (deg),2theta,\" x \",\"{a}\"\n1,2,3,4,5\n"));
  EXPECT_EQ(parsed.table->names,
            (std::vector<std::string>{"Contact Phone Number", "alpha (deg)", "2theta", " x ", "{a}"}));
  EXPECT_EQ(parsed.elements.at(0),
            R"j({"Contact Phone Number":1,"alpha (deg)":2,"2theta":3," x ":4,"{a}":5})j");
  auto f = tmp.write("g2.csv", "\n\na,,b\n1,2,3\n");
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }), f.string() + ":3: column 2 of the header has no name");
}

TEST(Csv, DuplicateColumnNameIsRejected) {
  TempDir tmp;
  auto f = tmp.write("grid.csv", "a,b,a\n1,2,3\n");
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }), f.string() + ":1: duplicate column name 'a'");
}

TEST(Csv, RaggedRowNamesItsLine) {
  TempDir tmp;
  auto f = tmp.write("grid.csv", "a,b,c\n1,2,3\n1,2,3\n1,2,3\n1,2,3\n1,2,3\n1,2\n1,2,3\n");
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }), f.string() + ":7: 2 fields, the header has 3");
  f = tmp.write("g2.csv", "a,b\n1,2\n1,2,3\n");
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }), f.string() + ":3: 3 fields, the header has 2");
  f = tmp.write("g3.csv", "a,b\n1,2\n1\n");
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }), f.string() + ":3: 1 field, the header has 2");
}

TEST(Csv, LinesInsideQuotesCountForLaterLineNumbers) {
  TempDir tmp;
  auto f = tmp.write("grid.csv", "a,b\r\n\"x\r\ny\r\nz\",1\r\n\r\n1,2,3\r\n");
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }), f.string() + ":6: 3 fields, the header has 2");
}

TEST(Csv, InvalidUtf8NamesLineAndByte) {
  TempDir tmp;
  auto f = tmp.write("grid.csv", "a,b\n1,2\n\"x\ny\",3\n4,\xff\n");
  const std::string hint = "); if the file is Latin-1, add --encoding latin-1";
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }),
            f.string() + ":5: invalid UTF-8 (byte 0xff at column 3" + hint);
  f = tmp.write("g2.csv", "a\n\xC3\n");  // a lead byte without its continuation
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }),
            f.string() + ":2: invalid UTF-8 (byte 0xc3 at column 1" + hint);
}

TEST(Csv, NulByteIsRejected) {
  TempDir tmp;
  auto f = tmp.write("grid.csv", std::string("a\nx\n\0\n", 6));
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }), f.string() + ":3: NUL byte");
}

TEST(Csv, EmptyFileOrHeaderOnlyHasNoRows) {
  TempDir tmp;
  for (const char* content : {"", "\n\n", "a,b\n", "a,b",
                              "\xEF\xBB\xBF"
                              "a\r\n\r\n"}) {
    auto f = tmp.write("grid.csv", content);
    EXPECT_EQ(usage_error_message([&] { read_csv(f); }), f.string() + ": no rows") << content;
  }
}

TEST(Csv, UnterminatedQuoteNamesTheLineWhereItOpens) {
  TempDir tmp;
  auto f = tmp.write("grid.csv", "a,b\n1,2\n3,\"four\n5,6\n");
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }), f.string() + ":3: quoted field is not closed");
}

TEST(Csv, TextAfterAClosingQuoteIsRejected) {
  TempDir tmp;
  auto f = tmp.write("grid.csv", "a,b\n1,2\n\"x\"y,2\n");
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }),
            f.string() +
                ":3: unexpected character after a closing quote (a quote inside a quoted field is "
                "written twice)");
}

TEST(Csv, MissingFileIsUsageError) {
  TempDir tmp;
  const auto f = tmp.path() / "nope.csv";
  EXPECT_EQ(usage_error_message([&] { read_csv(f); }),
            f.string() + ": cannot read: No such file or directory");
  EXPECT_EQ(usage_error_message([&] { read_csv(tmp.path()); }),
            tmp.path().string() + ": cannot read: is a directory");
}

// -------------------------------------------------------------------------------------- JSON Lines

TEST(Jsonl, LinesAreStoredAsWrittenWithoutSpacesInTheirKeyOrder) {
  TempDir tmp;
  auto parsed = read_jsonl(tmp.write(
      "d.jsonl", "{ \"b\": 1, \"a\": \"x\\u00e9\" ,\"n\" : [ 1.10, -0 ]}\r\n{\"b\":2,\"a\":\"y\",\"n\":[]}"));
  EXPECT_EQ(parsed.encoding, Encoding::json);
  EXPECT_EQ(elements_of(parsed), (std::vector<std::string>{R"({"b":1,"a":"x\u00e9","n":[1.10,-0]})",
                                                           R"({"b":2,"a":"y","n":[]})"}));
  EXPECT_FALSE(parsed.table);  // a nested value
  parsed = read_jsonl(tmp.write("e.jsonl", "{ \"b\": 1, \"a\": \"x\\u00e9\" }\r\n{\"b\":2,\"a\":\"y\"}"));
  ASSERT_TRUE(parsed.table);
  EXPECT_EQ(parsed.table->names, (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(parsed.table->types, (std::vector<ColumnType>{ColumnType::int64, ColumnType::string}));
  EXPECT_EQ(std::get<std::string>(parsed.table->cell(0, 1)), "x\xC3\xA9");
}

TEST(Jsonl, TableColumnsAreTypedLikeCsv) {
  TempDir tmp;
  auto parsed = read_jsonl(tmp.write("d.jsonl",
                                     "{\"i\":1,\"f\":1.0,\"b\":true,\"s\":1,\"u\":18446744073709551615,"
                                     "\"m\":1,\"t\":1.10,\"q\":\"7\"}\n"
                                     "{\"i\":2,\"f\":2.5,\"b\":false,\"s\":\"x\",\"u\":1,"
                                     "\"m\":2.5,\"t\":-0,\"q\":\"8\"}\n"));
  ASSERT_TRUE(parsed.table);
  const auto& t = *parsed.table;
  EXPECT_EQ(t.types, (std::vector<ColumnType>{ColumnType::int64, ColumnType::float64, ColumnType::string,
                                              ColumnType::string, ColumnType::string, ColumnType::string,
                                              ColumnType::string, ColumnType::string}));
  EXPECT_EQ(std::get<double>(t.cell(0, 1)), 1.0);
  EXPECT_EQ(std::get<std::string>(t.cell(0, 2)), "true");
  EXPECT_EQ(std::get<std::string>(t.cell(0, 3)), "1");  // its JSON text
  EXPECT_EQ(std::get<std::string>(t.cell(0, 4)), "18446744073709551615");
  EXPECT_EQ(std::get<std::string>(t.cell(1, 5)), "2.5");
  EXPECT_EQ(std::get<std::string>(t.cell(0, 6)), "1.10");
  EXPECT_EQ(std::get<std::string>(t.cell(1, 6)), "-0");
  EXPECT_EQ(std::get<std::string>(t.cell(0, 7)), "7");  // a string of digits stays a string
  // The elements keep the lines' own values.
  EXPECT_EQ(parsed.elements.at(0),
            R"({"i":1,"f":1.0,"b":true,"s":1,"u":18446744073709551615,"m":1,"t":1.10,"q":"7"})");
}

TEST(Jsonl, AKeyGivenTwiceInALineIsRejected) {
  TempDir tmp;
  auto f = tmp.write("d.jsonl", "{\"a\":1}\n{\"a\":1,\"b\":2,\"a\":3}\n");
  EXPECT_EQ(usage_error_message([&] { read_jsonl(f); }), f.string() + ":2: duplicate key 'a'");
}

TEST(Jsonl, NoTableUnlessFlatObjectsWithTheSameKeysInTheSameOrder) {
  TempDir tmp;
  for (const char* content : {"{\"a\":1,\"b\":2}\n{\"b\":2,\"a\":1}\n", "{\"a\":1}\n{\"a\":1,\"b\":2}\n",
                              "{\"a\":1}\n{\"a\":[1]}\n", "{\"a\":{\"x\":1}}\n", "{\"a\":null}\n", "{}\n{}\n",
                              "{\"a\":\"x\\u0000y\"}\n", "{\"\":1}\n"}) {
    auto parsed = read_jsonl(tmp.write("d.jsonl", content));
    EXPECT_FALSE(parsed.table) << content;
    EXPECT_GE(parsed.elements.size(), 1u);
  }
}

TEST(Jsonl, BlankLinesAreSkippedButCounted) {
  TempDir tmp;
  std::string content = "{\"a\":1}\n\n  \n{\"a\":2}\n";
  for (int line = 5; line < 12; ++line) content += "{\"a\":3}\n";
  content += "{\"a\":x}\n";
  auto f = tmp.write("data.jsonl", content);
  EXPECT_EQ(usage_error_message([&] { read_jsonl(f); }),
            f.string() +
                ":12: invalid JSON: column 6: syntax error while parsing value - invalid literal; "
                "last read: '\"a\":x'");
  auto ok = read_jsonl(tmp.write("ok.jsonl", "\n{\"a\":1}\n\t\n{\"a\":2}\n\n"));
  EXPECT_EQ(ok.elements.size(), 2u);
}

TEST(Jsonl, TruncatedLineIsInvalidJson) {
  TempDir tmp;
  auto f = tmp.write("data.jsonl", "{\"a\":1}\n{\"a\":\n");
  const std::string message = usage_error_message([&] { read_jsonl(f); });
  EXPECT_EQ(message.rfind(f.string() + ":2: invalid JSON: column ", 0), 0u) << message;
}

TEST(Jsonl, NonObjectIsRejected) {
  TempDir tmp;
  auto f = tmp.write("data.jsonl", "{\"a\":1}\n{\"a\":2}\n[1,2]\n");
  EXPECT_EQ(usage_error_message([&] { read_jsonl(f); }), f.string() + ":3: not a JSON object");
  f = tmp.write("d2.jsonl", "42\n");
  EXPECT_EQ(usage_error_message([&] { read_jsonl(f); }), f.string() + ":1: not a JSON object");
}

TEST(Jsonl, InvalidUtf8NamesTheLine) {
  TempDir tmp;
  auto f = tmp.write("data.jsonl", "{\"a\":1}\n\n{\"a\":\"\xed\xa0\x80\"}\n");  // an encoded surrogate
  EXPECT_EQ(usage_error_message([&] { read_jsonl(f); }),
            f.string() +
                ":3: invalid UTF-8 (byte 0xed at column 7); if the file is Latin-1, add --encoding latin-1");
  auto parsed = read_jsonl(tmp.write("l.jsonl", "{\"a\":\"\xe9\"}\n"), TextEncoding::latin1);
  EXPECT_EQ(parsed.elements.at(0), "{\"a\":\"\xC3\xA9\"}");
}

TEST(Jsonl, EmptyInputHasNoRows) {
  TempDir tmp;
  for (const char* content : {"", "\n", " \n\r\n\t\n"}) {
    auto f = tmp.write("data.jsonl", content);
    EXPECT_EQ(usage_error_message([&] { read_jsonl(f); }), f.string() + ": no rows");
  }
}

// ------------------------------------------------------------------------------------------ --grid

TEST(Grid, LastParameterVariesFastest) {
  auto parsed = make_grid({"a=1,2", "b=x,y,z"});
  EXPECT_EQ(elements_of(parsed),
            (std::vector<std::string>{R"({"a":1,"b":"x"})", R"({"a":1,"b":"y"})", R"({"a":1,"b":"z"})",
                                      R"({"a":2,"b":"x"})", R"({"a":2,"b":"y"})", R"({"a":2,"b":"z"})"}));
  ASSERT_TRUE(parsed.table);
  EXPECT_EQ(parsed.table->names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(parsed.table->types, (std::vector<ColumnType>{ColumnType::int64, ColumnType::string}));
  EXPECT_EQ(parsed.table->row_count(), 6u);
}

TEST(Grid, ThreeParametersFormTheFullProduct) {
  auto parsed = make_grid({"a=0:3", "b=0:4", "c=0:5"});
  ASSERT_EQ(parsed.elements.size(), 60u);
  for (std::size_t r = 0; r < 60; ++r) {
    const Table& t = *parsed.table;
    EXPECT_EQ(std::get<std::int64_t>(t.cell(r, 0)) * 20 + std::get<std::int64_t>(t.cell(r, 1)) * 5 +
                  std::get<std::int64_t>(t.cell(r, 2)),
              static_cast<std::int64_t>(r));
  }
}

TEST(Grid, IntegerRangesExcludeStopLikePythonRange) {
  auto values = [](const std::string& spec) {
    std::vector<std::int64_t> out;
    auto parsed = make_grid({spec});
    EXPECT_EQ(parsed.table->types[0], ColumnType::int64) << spec;
    for (std::int64_t v : parsed.table->columns[0].ints) out.push_back(v);
    return out;
  };
  EXPECT_EQ(values("n=0:10:3"), (std::vector<std::int64_t>{0, 3, 6, 9}));
  EXPECT_EQ(values("n=0:9:3"), (std::vector<std::int64_t>{0, 3, 6}));
  EXPECT_EQ(values("n=2:5"), (std::vector<std::int64_t>{2, 3, 4}));
  EXPECT_EQ(values("n=5:0:-2"), (std::vector<std::int64_t>{5, 3, 1}));
  EXPECT_EQ(values("n=-3:-1"), (std::vector<std::int64_t>{-3, -2}));
  EXPECT_EQ(values("n=9223372036854775806:9223372036854775807"),
            (std::vector<std::int64_t>{9223372036854775806}));
}

TEST(Grid, FloatRangesAreStartPlusKTimesStep) {
  auto parsed = make_grid({"x=0:1:0.1"});
  ASSERT_EQ(parsed.table->types[0], ColumnType::float64);
  ASSERT_EQ(parsed.table->row_count(), 10u);
  for (std::size_t k = 0; k < 10; ++k)
    EXPECT_EQ(std::get<double>(parsed.table->cell(k, 0)), 0.0 + static_cast<double>(k) * 0.1) << k;
  EXPECT_EQ(parsed.elements.at(3), R"({"x":0.30000000000000004})");  // 3*0.1, not 0.1+0.1+0.1

  EXPECT_EQ(make_grid({"x=0:0.3:0.1"}).elements.size(), 3u);
  EXPECT_EQ(make_grid({"x=1:2:0.25"}).elements.at(3), R"({"x":1.75})");
  EXPECT_EQ(make_grid({"x=1.5:4"}).elements.size(), 3u);  // 1.5, 2.5, 3.5
  auto down = make_grid({"x=1:0:-0.5"});
  EXPECT_EQ(elements_of(down), (std::vector<std::string>{R"({"x":1.0})", R"({"x":0.5})"}));
}

TEST(Grid, ValuesAreTypedPerParameter) {
  auto parsed = make_grid({"i=1,2", "f=1.0,2.5", "s=1,x", "e=1e-3", "m=1,2.5", "z=007,+1"});
  EXPECT_EQ(parsed.table->types,
            (std::vector<ColumnType>{ColumnType::int64, ColumnType::float64, ColumnType::string,
                                     ColumnType::string, ColumnType::string, ColumnType::string}));
  EXPECT_EQ(parsed.elements.at(0), R"({"i":1,"f":1.0,"s":1,"e":1e-3,"m":1,"z":"007"})");
}

TEST(Grid, SpacesAroundValuesAreDropped) {
  auto parsed = make_grid({"a=0.1, 0.2", "b= 0 : 4 : 2 ", "c=x y ,z"});
  EXPECT_EQ(parsed.table->types,
            (std::vector<ColumnType>{ColumnType::float64, ColumnType::int64, ColumnType::string}));
  EXPECT_EQ(parsed.elements.at(0), R"({"a":0.1,"b":0,"c":"x y"})");
  EXPECT_EQ(parsed.elements.size(), 8u);
  EXPECT_EQ(usage_error_message([] { make_grid({"a=1, ,2"}); }),
            "--grid 'a=1, ,2': expected NAME=v1,v2,... or NAME=start:stop[:step]");
}

TEST(Grid, ZeroStepWrongDirectionAndEmptyRangesAreRejected) {
  EXPECT_EQ(usage_error_message([] { make_grid({"x=0:5:0"}); }), "--grid 'x=0:5:0': the step is zero");
  EXPECT_EQ(usage_error_message([] { make_grid({"x=0:1:0.0"}); }), "--grid 'x=0:1:0.0': the step is zero");
  for (const std::string spec : {"x=0:5:-1", "x=5:0", "x=3:3", "x=0.5:0.1:0.1", "x=0:1:-0.5"})
    EXPECT_EQ(usage_error_message([&] { make_grid({spec}); }),
              "--grid '" + spec + "': empty range (the step does not lead from start to stop)");
}

TEST(Grid, MalformedSpecsAreRejected) {
  for (const std::string spec : {"x", "x=", "=1", "x=1:2:3:4", "x=a:b", "x=1,,2", "x=1,", "x=1:", "x=inf:3"})
    EXPECT_EQ(usage_error_message([&] {
                make_grid({"ok=1", spec});
              }),
              "--grid '" + spec + "': expected NAME=v1,v2,... or NAME=start:stop[:step]");
}

TEST(Grid, NamesAreAnyUniqueText) {
  EXPECT_EQ(make_grid({"2theta=1", "alpha (deg)=2", "a-b=x"}).elements.at(0),
            R"j({"2theta":1,"alpha (deg)":2,"a-b":"x"})j");
  EXPECT_EQ(usage_error_message([] {
              make_grid({"a=1", "a=2"});
            }),
            "--grid 'a=2': parameter 'a' is given twice");
  EXPECT_EQ(usage_error_message([] { make_grid({}); }), "--grid: no parameters");
}

TEST(Grid, HugeProductsAreRefusedBeforeAllocating) {
  EXPECT_EQ(usage_error_message([] {
              make_grid({"a=0:100000", "b=0:100000"});
            }),
            "--grid: the product has more than 100000000 elements");
  EXPECT_EQ(usage_error_message([] { make_grid({"a=0:1e12:0.5"}); }),
            "--grid 'a=0:1e12:0.5': 2000000000000 values, too many");
}

// ----------------------------------------------------------------------------------------- --range

TEST(Range, MakesIndexObjectsWithAnIntegerColumn) {
  auto parsed = make_range(3);
  EXPECT_EQ(elements_of(parsed), (std::vector<std::string>{R"({"i":0})", R"({"i":1})", R"({"i":2})"}));
  ASSERT_TRUE(parsed.table);
  EXPECT_EQ(parsed.table->names, (std::vector<std::string>{"i"}));
  EXPECT_EQ(parsed.table->types, (std::vector<ColumnType>{ColumnType::int64}));
  EXPECT_EQ(std::get<std::int64_t>(parsed.table->cell(2, 0)), 2);
}

TEST(Range, ZeroIsUsageError) {
  EXPECT_EQ(usage_error_message([] { make_range(0); }), "--range 0: need at least one element");
}

// ----------------------------------------------------------------------------- encoding, row JSON

TEST(Encoding, RoundTripsThroughItsName) {
  for (Encoding e : {Encoding::json, Encoding::bytes, Encoding::boost_binary})
    EXPECT_EQ(encoding_from_string(to_string(e)), e);
  EXPECT_EQ(to_string(Encoding::boost_binary), "boost-binary");
  EXPECT_EQ(usage_error_message([] { encoding_from_string("xml"); }),
            "unknown encoding 'xml' (expected json, bytes or boost-binary)");
}

TEST(Table, RowJsonEscapesStringsAndReadsBackExactly) {
  Table t;
  t.names = {"s", "q", "f", "i"};
  t.types = {ColumnType::string, ColumnType::string, ColumnType::float64, ColumnType::int64};
  const std::vector<double> floats = {
      0.1, 2.0, -0.0, 1e300, 5e-324, 123456789.125, 1e21, 1e-7, 0.30000000000000004};
  for (double f : floats)
    t.push_row({std::string("a\"b\\c\n\t\x01\x1f\xC3\xA9 \xF0\x9F\x98\x80"), std::string("/"), f,
                std::numeric_limits<std::int64_t>::min()});
  for (std::size_t r = 0; r < t.row_count(); ++r) {
    const std::string text = t.row_json(r);
    const auto j = ordered_json::parse(text);
    EXPECT_EQ(j.dump(), ordered_json::parse(j.dump()).dump());
    ASSERT_TRUE(j["f"].is_number_float()) << text;
    EXPECT_EQ(j["f"].get<double>(), floats[r]) << text;
    EXPECT_EQ(std::signbit(j["f"].get<double>()), std::signbit(floats[r])) << text;
    EXPECT_EQ(j["s"].get<std::string>(), std::get<std::string>(t.cell(r, 0)));
    EXPECT_EQ(j["i"].get<std::int64_t>(), std::numeric_limits<std::int64_t>::min());
    EXPECT_EQ(text.find('\n'), std::string::npos);
  }
  EXPECT_EQ(t.row_json(1), R"({"s":"a\"b\\c\n\t\u0001\u001f)"
                           "\xC3\xA9 \xF0\x9F\x98\x80"
                           R"(","q":"/","f":2.0,"i":-9223372036854775808})");
}

TEST(Utf8, StrictValidationRejectsOverlongSurrogatesAndTooLarge) {
  EXPECT_EQ(utf8::first_invalid("plain ascii, longer than eight bytes"), std::string_view::npos);
  EXPECT_EQ(utf8::first_invalid("\xC3\xA9\xE6\xBC\xA2\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF"),
            std::string_view::npos);
  EXPECT_EQ(utf8::first_invalid("ab\xC0\xAF"), 2u);                // overlong '/'
  EXPECT_EQ(utf8::first_invalid("abc\xE0\x80\xAF"), 3u);           // overlong
  EXPECT_EQ(utf8::first_invalid("\xED\xA0\x80"), 0u);              // surrogate
  EXPECT_EQ(utf8::first_invalid("12345678\xF4\x90\x80\x80"), 8u);  // above U+10FFFF
  EXPECT_EQ(utf8::first_invalid("x\xE6\xBC"), 1u);                 // cut short
  EXPECT_EQ(utf8::first_invalid("x\x80"), 1u);                     // stray continuation
  EXPECT_EQ(utf8::first_invalid("\xF5\x80\x80\x80"), 0u);
}

}  // namespace
}  // namespace mpmux
