// Input readers: CSV, JSON Lines, --grid and --range, each producing JSON elements and a table.
//
// Fields are text: a cell reaches templates, plugins and exports exactly as written. The typed
// table follows one rule, shared by CSV cells, JSON Lines values and --grid values: a column is
// int64 when every cell's text is exactly what field_text::append_int64 prints for its value,
// float64 when every cell's text is exactly what field_text::append_float64 prints (finite values
// only), else string. So "007", "+1", "-0", "1.10", "1e3", "NaN", "" or a "3" among floats make
// a string column, and printing a typed column gives back the text it was read from.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "store/field_text.hpp"
#include "store/utf8.hpp"

namespace mpmux {

namespace {

using ordered_json = nlohmann::ordered_json;

// Guards against a typo such as x=0:1e12 exhausting memory; a search this large is split anyway.
constexpr std::uint64_t kMaxGeneratedElements = 100'000'000;

std::string read_whole_file(const std::filesystem::path& file) {
  const std::string where = file.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UsageError(where + ": cannot read: " + std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) throw UsageError(where + ": cannot read: is a directory");
  // Read to EOF rather than trusting st_size, so pipes and /dev/stdin work too. A regular file
  // gets a buffer of its size and one byte more (to see EOF), not a zeroed MiB per small file.
  std::string text(st.st_size > 0 ? static_cast<std::size_t>(st.st_size) + 1 : 0, '\0');
  std::size_t used = 0;
  for (;;) {
    if (used == text.size()) text.resize(std::max<std::size_t>(text.size() * 2, used + (1 << 16)));
    const ssize_t got = ::read(fd, text.data() + used, text.size() - used);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw UsageError(where + ": cannot read: " + std::strerror(errno));
    }
    if (got == 0) break;
    used += static_cast<std::size_t>(got);
  }
  text.resize(used);
  return text;
}

std::size_t line_of(std::string_view text, std::size_t offset) {
  return 1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + offset, '\n'));
}

std::string hex_byte(unsigned char c) {
  static const char digits[] = "0123456789abcdef";
  return std::string("0x") + digits[c >> 4] + digits[c & 15];
}

// 1-based column, in bytes, of `offset` in its line.
std::size_t column_of(std::string_view text, std::size_t offset) {
  const std::size_t newline = text.rfind('\n', offset == 0 ? 0 : offset - 1);
  return newline == std::string_view::npos || offset == 0 ? offset + 1 : offset - newline;
}

// Rejects bytes that are not UTF-8, and NUL bytes (table strings are C strings in HDF5).
void check_text(std::string_view text, std::size_t base, const std::string& where, std::string_view all) {
  const std::size_t bad = utf8::first_invalid(text);
  const std::size_t nul = text.find('\0');
  if (bad != std::string_view::npos && (nul == std::string_view::npos || bad < nul))
    throw UsageError(where + ":" + std::to_string(line_of(all, base + bad)) + ": invalid UTF-8 (byte " +
                     hex_byte(static_cast<unsigned char>(text[bad])) + " at column " +
                     std::to_string(column_of(all, base + bad)) +
                     "); if the file is Latin-1, add --encoding latin-1");
  if (nul != std::string_view::npos)
    throw UsageError(where + ":" + std::to_string(line_of(all, base + nul)) + ": NUL byte");
}

// The file's text as UTF-8: Latin-1 maps each byte to the code point of the same value.
std::string to_utf8(std::string content, TextEncoding encoding) {
  if (encoding == TextEncoding::utf8) return content;
  std::string out;
  out.reserve(content.size() + content.size() / 8);
  for (const char ch : content) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out += ch;
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

// A leading '+' is accepted as in strtod; from_chars would refuse it.
std::string_view strip_plus(std::string_view s) {
  if (s.size() >= 2 && s[0] == '+' && s[1] != '+' && s[1] != '-') s.remove_prefix(1);
  return s;
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  s = strip_plus(s);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

std::optional<double> parse_number(std::string_view s) {
  s = strip_plus(s);
  double value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty() || !std::isfinite(value))
    return std::nullopt;
  return value;
}

// Converts every text with `parse` into `cells`; false, with `cells` cleared, at the first that
// does not parse.
template <class Parse>
bool convert_all(const std::vector<std::string>& texts, Parse parse, std::vector<Cell>& cells) {
  cells.clear();
  cells.reserve(texts.size());
  for (const auto& t : texts) {
    auto v = parse(t);
    if (!v) {
      cells.clear();
      return false;
    }
    cells.emplace_back(*v);
  }
  return true;
}

// Types a column of texts by the rule at the top of this file and converts it.
ColumnType type_cells(std::vector<std::string>& texts, std::vector<Cell>& cells) {
  if (convert_all(texts, field_text::exact_int64, cells)) return ColumnType::int64;
  if (convert_all(texts, field_text::exact_float64, cells)) return ColumnType::float64;
  cells.clear();
  for (auto& t : texts) cells.emplace_back(std::move(t));
  return ColumnType::string;
}

// Row r of `table` as a compact JSON object; written by hand because it runs once per element.
// A typed cell prints as the text it was read from (see top); a text cell that is a JSON number
// literal is written as that number, any other as a string.
void append_row_json(const Table& table, std::size_t r, std::string& out) {
  out += '{';
  const auto& row = table.rows[r];
  for (std::size_t c = 0; c < row.size(); ++c) {
    if (c) out += ',';
    field_text::append_json_string(out, table.names[c]);
    out += ':';
    if (const auto* i = std::get_if<std::int64_t>(&row[c])) {
      field_text::append_int64(out, *i);
    } else if (const auto* d = std::get_if<double>(&row[c])) {
      // A non-finite value has no JSON number form; readers never produce one (see top).
      if (std::isfinite(*d)) {
        field_text::append_float64(out, *d);
      } else {
        out += "null";
      }
    } else {
      field_text::append_json_cell(out, std::get<std::string>(row[c]));
    }
  }
  out += '}';
}

void fill_elements_from_table(ParsedElements& parsed) {
  const Table& table = *parsed.table;
  parsed.elements.offsets.reserve(table.rows.size() + 1);
  for (std::size_t r = 0; r < table.rows.size(); ++r) {
    append_row_json(table, r, parsed.elements.data);
    parsed.elements.offsets.push_back(parsed.elements.data.size());
    // Sized from the first row (with a margin), so the JSON of a large table is not copied as it grows.
    if (r == 0) parsed.elements.data.reserve(parsed.elements.data.size() * table.rows.size() * 5 / 4);
  }
}

// Builds row-major rows from typed columns.
void rows_from_columns(Table& table, std::vector<std::vector<Cell>>& columns, std::size_t nrows) {
  table.rows.resize(nrows);
  for (std::size_t r = 0; r < nrows; ++r) {
    auto& row = table.rows[r];
    row.reserve(columns.size());
    for (auto& column : columns) row.push_back(std::move(column[r]));
  }
  columns.clear();
}

std::string fields(std::size_t n) { return std::to_string(n) + (n == 1 ? " field" : " fields"); }

}  // namespace

std::string Table::row_json(std::size_t r) const {
  std::string out;
  append_row_json(*this, r, out);
  return out;
}

// ---------------------------------------------------------------------------------------------- CSV

TextEncoding text_encoding_from_string(std::string_view name) {
  std::string lower;
  for (const char c : name) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (lower == "utf-8" || lower == "utf8") return TextEncoding::utf8;
  if (lower == "latin-1" || lower == "latin1" || lower == "iso-8859-1") return TextEncoding::latin1;
  throw UsageError("--encoding '" + std::string(name) + "': unknown encoding (expected utf-8 or latin-1)");
}

ParsedElements read_csv(const std::filesystem::path& file, TextEncoding encoding) {
  const std::string where = file.string();
  const std::string content = to_utf8(read_whole_file(file), encoding);
  const std::string_view all(content);
  const std::size_t bom = utf8::bom_length(all);
  const std::string_view text = all.substr(bom);
  check_text(text, bom, where, all);
  auto error = [&](std::size_t line, const std::string& what) {
    return UsageError(where + ":" + std::to_string(line) + ": " + what);
  };

  const std::size_t n = text.size();
  std::size_t pos = 0, line = 1;
  std::vector<std::string> names;
  std::vector<std::string> cells;  // row-major, names.size() per row
  bool have_header = false;

  while (pos < n) {
    // Blank lines are skipped (as pandas does), so a trailing newline or two is harmless.
    if (text[pos] == '\n') {
      ++pos;
      ++line;
      continue;
    }
    if (text[pos] == '\r' && pos + 1 < n && text[pos + 1] == '\n') {
      pos += 2;
      ++line;
      continue;
    }
    const std::size_t record_line = line;
    const std::size_t first = cells.size();
    for (;;) {
      std::string field;
      if (pos < n && text[pos] == '"') {
        const std::size_t quote_line = line;
        ++pos;
        for (;;) {
          const std::size_t q = text.find('"', pos);
          if (q == std::string_view::npos) throw error(quote_line, "quoted field is not closed");
          line += static_cast<std::size_t>(std::count(text.begin() + pos, text.begin() + q, '\n'));
          field.append(text.substr(pos, q - pos));
          pos = q + 1;
          if (pos < n && text[pos] == '"') {
            field += '"';
            ++pos;
            continue;
          }
          break;
        }
        if (pos < n && text[pos] != ',' && text[pos] != '\n' &&
            !(text[pos] == '\r' && pos + 1 < n && text[pos + 1] == '\n'))
          throw error(line,
                      "unexpected character after a closing quote (a quote inside a quoted "
                      "field is written twice)");
      } else {
        std::size_t end = pos;
        while (end < n && text[end] != ',' && text[end] != '\n') ++end;
        std::size_t field_end = end;
        if (end < n && text[end] == '\n' && field_end > pos && text[field_end - 1] == '\r') --field_end;
        field.assign(text.substr(pos, field_end - pos));
        pos = end;
      }
      cells.push_back(std::move(field));
      if (pos < n && text[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < n) {  // at "\n" or "\r\n"
        pos += text[pos] == '\r' ? 2 : 1;
        ++line;
      }
      break;
    }

    const std::size_t count = cells.size() - first;
    if (!have_header) {
      // Any name is a column name (spaces, parentheses, a leading digit): templates take it as
      // written. Only an empty or repeated one cannot name a column.
      std::unordered_set<std::string> seen;
      for (std::size_t c = 0; c < cells.size(); ++c) {
        if (cells[c].empty())
          throw error(record_line, "column " + std::to_string(c + 1) + " of the header has no name");
        if (!seen.insert(cells[c]).second)
          throw error(record_line, "duplicate column name '" + cells[c] + "'");
      }
      names = std::move(cells);
      cells.clear();
      // About one record per remaining line: no regrowth of the cells of a million rows.
      cells.reserve(static_cast<std::size_t>(std::count(text.begin() + pos, text.end(), '\n') + 1) *
                    names.size());
      have_header = true;
    } else if (count != names.size()) {
      throw error(record_line, fields(count) + ", the header has " + std::to_string(names.size()));
    }
  }
  if (cells.empty()) throw UsageError(where + ": no rows");

  const std::size_t ncols = names.size();
  const std::size_t nrows = cells.size() / ncols;
  ParsedElements parsed;
  parsed.encoding = Encoding::json;
  Table table;
  table.names = std::move(names);
  std::vector<std::vector<Cell>> columns(ncols);
  {
    std::vector<std::string> texts;
    for (std::size_t c = 0; c < ncols; ++c) {
      texts.clear();
      texts.reserve(nrows);
      for (std::size_t r = 0; r < nrows; ++r) texts.push_back(std::move(cells[r * ncols + c]));
      table.types.push_back(type_cells(texts, columns[c]));
    }
  }
  cells = {};
  rows_from_columns(table, columns, nrows);
  parsed.table = std::move(table);
  fill_elements_from_table(parsed);
  return parsed;
}

// ------------------------------------------------------------------------------------- JSON Lines

namespace {

// "[json.exception.parse_error.101] parse error at line 1, column 4: syntax error ..." ->
// "column 4: syntax error ...": the file's line number is already in front.
std::string short_reason(std::string_view what) {
  if (const auto p = what.find("] "); p != std::string_view::npos) what.remove_prefix(p + 2);
  constexpr std::string_view prefix = "parse error at line 1, ";
  if (what.substr(0, prefix.size()) == prefix) what.remove_prefix(prefix.size());
  constexpr std::string_view prefix2 = "parse error: ";
  if (what.substr(0, prefix2.size()) == prefix2) what.remove_prefix(prefix2.size());
  return std::string(what);
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// A value the table can hold: a string without NUL, a number or a boolean.
bool table_scalar(std::string_view raw, std::string_view text) {
  if (raw.front() == '"') return text.find('\0') == std::string_view::npos;
  return raw.front() == '-' || (raw.front() >= '0' && raw.front() <= '9') || raw == "true" || raw == "false";
}

bool is_number(std::string_view raw) {
  return raw.front() == '-' || (raw.front() >= '0' && raw.front() <= '9');
}

}  // namespace

ParsedElements read_jsonl(const std::filesystem::path& file, TextEncoding encoding) {
  const std::string where = file.string();
  const std::string content = to_utf8(read_whole_file(file), encoding);
  const std::string_view all(content);
  const std::size_t bom = utf8::bom_length(all);
  const std::string_view text = all.substr(bom);
  check_text(text, bom, where, all);

  ParsedElements parsed;
  parsed.encoding = Encoding::json;
  // The table: kept while every object is flat with the keys of the first one, in its order.
  // Cells hold each value's text: a string's characters, a number or boolean as written.
  bool tabular = true;
  std::vector<std::string> keys;
  std::vector<std::vector<std::string>> texts;
  std::vector<std::vector<bool>> numbers;
  std::vector<field_text::JsonMember> members;
  std::unordered_set<std::string_view> seen;

  std::size_t pos = 0, line = 0;
  while (pos < text.size()) {
    ++line;
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view row = text.substr(pos, end - pos);
    pos = end + 1;
    if (is_blank(row)) continue;

    const std::string at = where + ":" + std::to_string(line) + ": ";
    if (!ordered_json::accept(row.begin(), row.end())) {
      try {
        [[maybe_unused]] const auto only_for_the_reason = ordered_json::parse(row.begin(), row.end());
      } catch (const ordered_json::exception& e) {
        throw UsageError(at + "invalid JSON: " + short_reason(e.what()));
      }
    }
    if (!field_text::json_members(row, members)) throw UsageError(at + "not a JSON object");
    seen.clear();
    for (const auto& m : members)
      if (!seen.insert(m.key).second) throw UsageError(at + "duplicate key '" + m.key + "'");
    // Stored as written, less the spaces: numbers keep their text (1.10 stays 1.10).
    parsed.elements.push(field_text::compact_json(row));

    if (!tabular) continue;
    if (parsed.elements.size() == 1) {
      for (const auto& m : members) keys.push_back(m.key);
      tabular = !keys.empty() && std::none_of(keys.begin(), keys.end(), [](const std::string& k) {
        return k.empty() || k.find('\0') != std::string::npos;
      });
      texts.resize(keys.size());
      numbers.resize(keys.size());
    }
    if (tabular && members.size() != keys.size()) tabular = false;
    for (std::size_t c = 0; tabular && c < members.size(); ++c) {
      std::string cell = field_text::value_text(members[c].value);
      if (members[c].key != keys[c] || !table_scalar(members[c].value, cell)) {
        tabular = false;
      } else {
        texts[c].push_back(std::move(cell));
        numbers[c].push_back(is_number(members[c].value));
      }
    }
    if (!tabular) texts = {};
  }
  if (parsed.elements.size() == 0) throw UsageError(where + ": no rows");
  if (!tabular) return parsed;

  // Typed as CSV, on each value's text; a string holding digits ("7") stays a string.
  const std::size_t nrows = parsed.elements.size();
  Table table;
  table.names = std::move(keys);
  std::vector<std::vector<Cell>> cells(texts.size());
  for (std::size_t c = 0; c < texts.size(); ++c) {
    const bool all_numbers = std::all_of(numbers[c].begin(), numbers[c].end(), [](bool b) { return b; });
    if (all_numbers) {
      table.types.push_back(type_cells(texts[c], cells[c]));
    } else {
      table.types.push_back(ColumnType::string);
      cells[c].reserve(nrows);
      for (auto& t : texts[c]) cells[c].emplace_back(std::move(t));
    }
    texts[c] = {};
  }
  rows_from_columns(table, cells, nrows);
  parsed.table = std::move(table);
  return parsed;
}

// --------------------------------------------------------------------------------- --grid, --range

namespace {

struct Parameter {
  std::string name;
  ColumnType type = ColumnType::string;
  std::vector<Cell> values;
};

Parameter parse_grid_spec(const std::string& spec) {
  const std::string quoted = "--grid '" + spec + "'";
  const auto malformed = [&] { return UsageError(quoted + ": expected NAME=v1,v2,... or NAME=start:stop[:step]"); };
  const std::size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) throw malformed();
  Parameter p;
  p.name = spec.substr(0, eq);
  const std::string_view value = std::string_view(spec).substr(eq + 1);

  std::vector<std::string> parts;
  const bool is_range =
      value.find(':') != std::string_view::npos && value.find(',') == std::string_view::npos;
  const char sep = is_range ? ':' : ',';
  for (std::size_t pos = 0;;) {
    const std::size_t end = std::min(value.find(sep, pos), value.size());
    // Spaces around values are dropped: --grid 'alpha=0.1, 0.2' means 0.1 and 0.2.
    std::string_view part = value.substr(pos, end - pos);
    while (!part.empty() && (part.front() == ' ' || part.front() == '\t')) part.remove_prefix(1);
    while (!part.empty() && (part.back() == ' ' || part.back() == '\t')) part.remove_suffix(1);
    if (part.empty()) throw malformed();
    parts.emplace_back(part);
    if (end == value.size()) break;
    pos = end + 1;
  }

  if (!is_range) {
    std::vector<Cell> cells;
    p.type = type_cells(parts, cells);
    p.values = std::move(cells);
    return p;
  }

  if (parts.size() > 3) throw malformed();
  std::vector<std::optional<std::int64_t>> ints;
  std::vector<double> numbers;
  for (const auto& part : parts) {
    const auto number = parse_number(part);
    if (!number) throw malformed();
    numbers.push_back(*number);
    ints.push_back(parse_int(part));
  }
  const bool integral = std::all_of(ints.begin(), ints.end(), [](const auto& v) { return v.has_value(); });
  if (integral) {
    const std::int64_t start = *ints[0], stop = *ints[1], step = parts.size() == 3 ? *ints[2] : 1;
    if (step == 0) throw UsageError(quoted + ": the step is zero");
    // Python's len(range(start, stop, step)), computed in unsigned arithmetic to avoid overflow.
    std::uint64_t count = 0;
    if (step > 0 && stop > start) {
      const std::uint64_t span = static_cast<std::uint64_t>(stop) - static_cast<std::uint64_t>(start);
      const std::uint64_t s = static_cast<std::uint64_t>(step);
      count = span / s + (span % s != 0);
    } else if (step < 0 && stop < start) {
      const std::uint64_t span = static_cast<std::uint64_t>(start) - static_cast<std::uint64_t>(stop);
      const std::uint64_t s = std::uint64_t{0} - static_cast<std::uint64_t>(step);
      count = span / s + (span % s != 0);
    }
    if (count == 0) throw UsageError(quoted + ": empty range (the step does not lead from start to stop)");
    if (count > kMaxGeneratedElements)
      throw UsageError(quoted + ": " + std::to_string(count) + " values, too many");
    p.type = ColumnType::int64;
    p.values.reserve(count);
    for (std::uint64_t k = 0; k < count; ++k)
      p.values.emplace_back(static_cast<std::int64_t>(static_cast<std::uint64_t>(start) +
                                                      k * static_cast<std::uint64_t>(step)));
    return p;
  }

  const double start = numbers[0], stop = numbers[1], step = parts.size() == 3 ? numbers[2] : 1.0;
  if (step == 0) throw UsageError(quoted + ": the step is zero");
  const double estimate = std::ceil((stop - start) / step);
  if (!(estimate >= 1))
    throw UsageError(quoted + ": empty range (the step does not lead from start to stop)");
  if (estimate > static_cast<double>(kMaxGeneratedElements))
    throw UsageError(quoted + ": " + std::to_string(static_cast<std::uint64_t>(estimate)) +
                     " values, too many");
  // Each value is start + k*step (no accumulated rounding); a value that rounds onto or past
  // stop is dropped, as stop is excluded.
  auto value_at = [&](std::uint64_t k) { return start + static_cast<double>(k) * step; };
  auto inside = [&](double v) { return step > 0 ? v < stop : v > stop; };
  auto count = static_cast<std::uint64_t>(estimate);
  while (count > 0 && !inside(value_at(count - 1))) --count;
  if (count == 0) throw UsageError(quoted + ": empty range (the step does not lead from start to stop)");
  p.type = ColumnType::float64;
  p.values.reserve(count);
  for (std::uint64_t k = 0; k < count; ++k) p.values.emplace_back(value_at(k));
  return p;
}

}  // namespace

ParsedElements make_grid(const std::vector<std::string>& specs) {
  if (specs.empty()) throw UsageError("--grid: no parameters");
  std::vector<Parameter> params;
  std::unordered_set<std::string> seen;
  std::uint64_t total = 1;
  for (const auto& spec : specs) {
    params.push_back(parse_grid_spec(spec));
    if (!seen.insert(params.back().name).second)
      throw UsageError("--grid '" + spec + "': parameter '" + params.back().name + "' is given twice");
    const std::uint64_t size = params.back().values.size();
    if (total > kMaxGeneratedElements / size)
      throw UsageError("--grid: the product has more than " + std::to_string(kMaxGeneratedElements) +
                       " elements");
    total *= size;
  }

  Table table;
  for (const auto& p : params) {
    table.names.push_back(p.name);
    table.types.push_back(p.type);
  }
  table.rows.resize(total);
  // Row-major: the last parameter varies fastest, as itertools.product.
  std::vector<std::size_t> at(params.size(), 0);
  for (std::uint64_t r = 0; r < total; ++r) {
    auto& row = table.rows[r];
    row.reserve(params.size());
    for (std::size_t c = 0; c < params.size(); ++c) row.push_back(params[c].values[at[c]]);
    for (std::size_t c = params.size(); c-- > 0;) {
      if (++at[c] < params[c].values.size()) break;
      at[c] = 0;
    }
  }
  ParsedElements parsed;
  parsed.encoding = Encoding::json;
  parsed.table = std::move(table);
  fill_elements_from_table(parsed);
  return parsed;
}

ParsedElements make_range(std::uint64_t n) {
  if (n == 0) throw UsageError("--range 0: need at least one element");
  if (n > kMaxGeneratedElements)
    throw UsageError("--range " + std::to_string(n) + ": more than " + std::to_string(kMaxGeneratedElements) +
                     " elements");
  ParsedElements parsed;
  parsed.encoding = Encoding::json;
  Table table;
  table.names = {"i"};
  table.types = {ColumnType::int64};
  table.rows.resize(n);
  for (std::uint64_t k = 0; k < n; ++k) table.rows[k].emplace_back(static_cast<std::int64_t>(k));
  parsed.table = std::move(table);
  fill_elements_from_table(parsed);
  return parsed;
}

}  // namespace mpmux
