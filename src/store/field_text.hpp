// Fields are text: how a field's text is kept in an element's JSON, read back for a template or
// an export, and printed from a typed column. One formatter serves both the import check (is a
// column numeric?) and the exports, so a typed column always prints the text it was read from.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mpmux::field_text {

/// Decimal text of v ("-5").
void append_int64(std::string& out, std::int64_t v);
/// Shortest text that reads back as v, with ".0" when it would look like an integer ("2.0",
/// "-0.0", "1e+20"); "nan", "inf" or "-inf" for a non-finite v.
void append_float64(std::string& out, double v);
/// `text` as an int64 when append_int64 prints that value as exactly `text` ("007", "+1" and
/// "-0" are not such texts).
std::optional<std::int64_t> exact_int64(std::string_view text);
/// `text` as a finite double when append_float64 prints that value as exactly `text` ("2.50",
/// "3", "1e3" and "NaN" are not such texts).
std::optional<double> exact_float64(std::string_view text);

/// True when `text` is a JSON number literal (RFC 8259): -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
bool is_json_number(std::string_view text);
/// Appends `s` (valid UTF-8) as a JSON string.
void append_json_string(std::string& out, std::string_view s);
/// Appends a cell's text as a JSON value: a JSON number literal as it is ("1.10", "-0"),
/// anything else as a JSON string ("007", "+1", "NaN", "").
void append_json_cell(std::string& out, std::string_view text);

/// One top-level member of a JSON object: its key (unescaped) and its value's text as written.
struct JsonMember {
  std::string key;
  std::string_view value;
};
/// The top-level members of the JSON object `json`, in order, into `members`. False (members
/// cleared) when `json` is not a well-formed object; nested values are checked only for
/// balanced brackets and closed strings.
bool json_members(std::string_view json, std::vector<JsonMember>& members);
/// A JSON value's text as a field: a string's characters, unescaped; any other value as written.
std::string value_text(std::string_view json_value);
/// The well-formed JSON `json` without whitespace outside strings; numbers and string escapes
/// stay as written.
std::string compact_json(std::string_view json);

}  // namespace mpmux::field_text
