// store/field_text: the formatter shared by the import's typing and the exports, and the JSON
// scanner that keeps each value's text as written.
#include "store/field_text.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace mpmux::field_text {
namespace {

std::string float_text(double v) {
  std::string out;
  append_float64(out, v);
  return out;
}

TEST(FieldText, FloatsPrintInTheirShortestFormWithAPointForWholeNumbers) {
  EXPECT_EQ(float_text(2.0), "2.0");
  EXPECT_EQ(float_text(-0.0), "-0.0");
  EXPECT_EQ(float_text(0.1), "0.1");
  EXPECT_EQ(float_text(100.0), "100.0");
  EXPECT_EQ(float_text(1e15), "1e+15");
  EXPECT_EQ(float_text(1e-7), "1e-07");
  EXPECT_EQ(float_text(std::numeric_limits<double>::quiet_NaN()), "nan");
  EXPECT_EQ(float_text(-std::numeric_limits<double>::infinity()), "-inf");
}

TEST(FieldText, ATextIsTypedOnlyWhenItsValuePrintsBackAsIt) {
  for (const char* text : {"0", "-5", "9223372036854775807", "-9223372036854775808"})
    EXPECT_TRUE(exact_int64(text).has_value()) << text;
  for (const char* text : {"007", "+1", "-0", "", " 1", "1 ", "9223372036854775808", "1.0", "0x10"})
    EXPECT_FALSE(exact_int64(text).has_value()) << text;
  for (const char* text : {"2.0", "-0.0", "0.5", "1e+15", "1e-07", "0.30000000000000004"})
    EXPECT_TRUE(exact_float64(text).has_value()) << text;
  for (const char* text :
       {"1.10", "2.50", "3", "1e3", "1E+15", "+1.5", "NaN", "nan", "inf", ".5", "", "1e+400"})
    EXPECT_FALSE(exact_float64(text).has_value()) << text;
  EXPECT_TRUE(std::signbit(*exact_float64("-0.0")));
}

TEST(FieldText, CellsThatAreJsonNumbersStayNumbersAndOthersBecomeStrings) {
  std::string out;
  for (const char* text : {"1.10", "-0", "1e3", "007", "+1", "NaN", "", "1.", "-", "2E-2", "0.5x"}) {
    append_json_cell(out, text);
    out += ' ';
  }
  EXPECT_EQ(out, R"(1.10 -0 1e3 "007" "+1" "NaN" "" "1." "-" 2E-2 "0.5x" )");
}

TEST(FieldText, MembersKeepEachValuesTextAsWritten) {
  std::vector<JsonMember> m;
  ASSERT_TRUE(json_members(R"( { "a b" : 1.10 , "s":"x\"}y", "o":{"k":[1, "]"]},"t":true,"n":null } )", m));
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[0].key, "a b");
  EXPECT_EQ(m[0].value, "1.10");
  EXPECT_EQ(m[1].value, R"("x\"}y")");
  EXPECT_EQ(value_text(m[1].value), "x\"}y");
  EXPECT_EQ(m[2].value, R"({"k":[1, "]"]})");
  EXPECT_EQ(m[3].value, "true");
  EXPECT_EQ(m[4].value, "null");
  ASSERT_TRUE(json_members("{}", m));
  EXPECT_TRUE(m.empty());
  for (const char* bad : {"", "[1]", "{", R"({"a":})", R"({"a":1,})", R"({"a" 1})", R"({"a":1} x)",
                          R"({"a":"open})", R"({"a":[1})", R"({"a":{]})", R"({"a":01x})", "{a:1}"}) {
    EXPECT_FALSE(json_members(bad, m)) << bad;
    EXPECT_TRUE(m.empty()) << bad;
  }
}

TEST(FieldText, StringEscapesAreUndoneIncludingSurrogatePairs) {
  EXPECT_EQ(value_text(R"("\u00e9\ud83d\ude00 \/ \\ \b\f\n\r\t")"),
            "\xC3\xA9\xF0\x9F\x98\x80 / \\ \b\f\n\r\t");
  EXPECT_EQ(value_text(R"("\ud800x")"), "\xEF\xBF\xBDx");  // a lone surrogate
  EXPECT_EQ(value_text("-0"), "-0");
  EXPECT_EQ(value_text("[1.50, 2]"), "[1.50, 2]");
}

TEST(FieldText, CompactingRemovesOnlySpacesOutsideStrings) {
  EXPECT_EQ(compact_json("{ \"a b\" : [ 1.10 , -0 ],\r\n \"c\":\"x \\\" y\" }"),
            R"({"a b":[1.10,-0],"c":"x \" y"})");
}

}  // namespace
}  // namespace mpmux::field_text
