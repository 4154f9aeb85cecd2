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
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "store/element_input.hpp"
#include "store/field_text.hpp"
#include "store/h5_input.hpp"
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

// An input file's text as UTF-8, checked (see check_text); a byte order mark stays in front, so
// that the lines and columns of errors count from the file's first byte.
std::string read_input_text(const std::filesystem::path& file, TextEncoding encoding) {
  std::string content = to_utf8(read_whole_file(file), encoding);
  const std::size_t bom = utf8::bom_length(content);
  check_text(std::string_view(content).substr(bom), bom, file.string(), content);
  return content;
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

// Types a string column by the rule at the top of this file, converting it in place: a typed
// column keeps only its numbers.
ColumnType type_column(TableColumn& column) {
  const std::size_t n = column.ends.size();
  auto convert = [&](auto parse, auto& values) {
    values.reserve(n);
    for (std::size_t r = 0; r < n; ++r) {
      const auto v = parse(column.text_at(r));
      if (!v) {
        values = {};
        return false;
      }
      values.push_back(*v);
    }
    column.text = {};
    column.ends = {};
    return true;
  };
  if (convert(field_text::exact_int64, column.ints)) return ColumnType::int64;
  if (convert(field_text::exact_float64, column.floats)) return ColumnType::float64;
  return ColumnType::string;
}

void fill_elements_from_table(ParsedElements& parsed) {
  const Table& table = *parsed.table;
  const std::size_t nrows = table.row_count();
  parsed.elements.offsets.reserve(nrows + 1);
  for (std::size_t r = 0; r < nrows; ++r) {
    table.append_row_json(r, parsed.elements.data);
    parsed.elements.offsets.push_back(parsed.elements.data.size());
    // Sized from the first row (with a margin), so the JSON of a large table is not copied as it grows.
    if (r == 0) parsed.elements.data.reserve(parsed.elements.data.size() * nrows * 5 / 4);
  }
}

std::string fields(std::size_t n) { return std::to_string(n) + (n == 1 ? " field" : " fields"); }

}  // namespace

std::size_t Table::row_count() const {
  if (columns.empty()) return 0;
  switch (types[0]) {
    case ColumnType::int64:
      return columns[0].ints.size();
    case ColumnType::float64:
      return columns[0].floats.size();
    case ColumnType::string:
      break;
  }
  return columns[0].ends.size();
}

Cell Table::cell(std::size_t r, std::size_t c) const {
  switch (types[c]) {
    case ColumnType::int64:
      return columns[c].ints.at(r);
    case ColumnType::float64:
      return columns[c].floats.at(r);
    case ColumnType::string:
      break;
  }
  return std::string(columns[c].text_at(r));
}

// A cell's variant index is its ColumnType's value.
static_assert(
    std::is_same_v<std::variant_alternative_t<std::size_t(ColumnType::int64), Cell>, std::int64_t> &&
    std::is_same_v<std::variant_alternative_t<std::size_t(ColumnType::float64), Cell>, double> &&
    std::is_same_v<std::variant_alternative_t<std::size_t(ColumnType::string), Cell>, std::string>);

void Table::push_row(const std::vector<Cell>& row) {
  if (row.size() != names.size() || types.size() != names.size())
    throw std::invalid_argument("Table::push_row: the row has " + std::to_string(row.size()) + " cells for " +
                                std::to_string(names.size()) + " columns");
  columns.resize(names.size());
  for (std::size_t c = 0; c < row.size(); ++c) {
    if (row[c].index() != static_cast<std::size_t>(types[c]))
      throw std::invalid_argument("Table::push_row: cell type differs from column '" + names[c] + "'");
    if (const auto* i = std::get_if<std::int64_t>(&row[c])) {
      columns[c].ints.push_back(*i);
    } else if (const auto* d = std::get_if<double>(&row[c])) {
      columns[c].floats.push_back(*d);
    } else {
      columns[c].push_text(std::get<std::string>(row[c]));
    }
  }
}

// Written by hand because it runs once per element. A typed cell prints as the text it was read
// from (see top); a text cell that is a JSON number literal is written as that number, any other
// as a string.
void Table::append_row_json(std::size_t r, std::string& out) const {
  out += '{';
  for (std::size_t c = 0; c < columns.size(); ++c) {
    if (c) out += ',';
    field_text::append_json_string(out, names[c]);
    out += ':';
    switch (types[c]) {
      case ColumnType::int64:
        field_text::append_int64(out, columns[c].ints[r]);
        break;
      case ColumnType::float64:
        // A non-finite value has no JSON number form; readers never produce one (see top).
        if (std::isfinite(columns[c].floats[r])) {
          field_text::append_float64(out, columns[c].floats[r]);
        } else {
          out += "null";
        }
        break;
      case ColumnType::string:
        field_text::append_json_cell(out, columns[c].text_at(r));
        break;
    }
  }
  out += '}';
}

std::string Table::row_json(std::size_t r) const {
  std::string out;
  append_row_json(r, out);
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
  const std::string content = read_input_text(file, encoding);
  const std::string_view text = std::string_view(content).substr(utf8::bom_length(content));
  auto error = [&](std::size_t line, const std::string& what) {
    return UsageError(where + ":" + std::to_string(line) + ": " + what);
  };

  const std::size_t n = text.size();
  std::size_t pos = 0, line = 1;
  // Cells go straight into their column's text (one buffer per column, no per-cell string);
  // the header's go into `names`.
  std::vector<std::string> names;
  std::vector<TableColumn> columns;
  std::string field;  // a quoted field, unescaped
  bool have_header = false;
  std::size_t nrows = 0;

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
    std::size_t count = 0;
    auto take = [&](std::string_view cell) {
      if (!have_header) {
        names.emplace_back(cell);
      } else if (count < columns.size()) {
        columns[count].push_text(cell);
      }
      ++count;
    };
    for (;;) {
      if (pos < n && text[pos] == '"') {
        const std::size_t quote_line = line;
        field.clear();
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
        take(field);
      } else {
        std::size_t end = pos;
        while (end < n && text[end] != ',' && text[end] != '\n') ++end;
        std::size_t field_end = end;
        if (end < n && text[end] == '\n' && field_end > pos && text[field_end - 1] == '\r') --field_end;
        take(text.substr(pos, field_end - pos));
        pos = end;
      }
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

    if (!have_header) {
      // Any name is a column name (spaces, parentheses, a leading digit): templates take it as
      // written. Only an empty or repeated one cannot name a column.
      std::unordered_set<std::string> seen;
      for (std::size_t c = 0; c < names.size(); ++c) {
        if (names[c].empty())
          throw error(record_line, "column " + std::to_string(c + 1) + " of the header has no name");
        if (!seen.insert(names[c]).second)
          throw error(record_line, "duplicate column name '" + names[c] + "'");
      }
      // About one record per remaining line, and the remaining bytes shared among the columns:
      // no regrowth for a million rows (pages reserved but never written cost no memory).
      const auto lines = static_cast<std::size_t>(std::count(text.begin() + pos, text.end(), '\n') + 1);
      columns.resize(names.size());
      for (auto& column : columns) {
        column.ends.reserve(lines);
        column.text.reserve((n - pos) / names.size() + lines);
      }
      have_header = true;
    } else if (count != names.size()) {
      throw error(record_line, fields(count) + ", the header has " + std::to_string(names.size()));
    } else {
      ++nrows;
    }
  }
  if (nrows == 0) throw UsageError(where + ": no rows");

  ParsedElements parsed;
  parsed.encoding = Encoding::json;
  Table table;
  table.names = std::move(names);
  for (auto& column : columns) table.types.push_back(type_column(column));
  table.columns = std::move(columns);
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

JsonElements::JsonElements(bool objects_only) : objects_only_(objects_only) {}

void JsonElements::add(std::string_view text, const std::string& at) {
  if (!ordered_json::accept(text.begin(), text.end())) {
    try {
      [[maybe_unused]] const auto only_for_the_reason = ordered_json::parse(text.begin(), text.end());
    } catch (const ordered_json::exception& e) {
      throw UsageError(at + "invalid JSON: " + short_reason(e.what()));
    }
  }
  const bool object = field_text::json_members(text, members_);
  if (!object && objects_only_) throw UsageError(at + "not a JSON object");
  seen_.clear();
  for (const auto& m : members_)
    if (!seen_.insert(m.key).second) throw UsageError(at + "duplicate key '" + m.key + "'");
  // Stored as written, less the spaces: numbers keep their text (1.10 stays 1.10).
  parsed_.elements.push(field_text::compact_json(text));

  if (!tabular_) return;
  if (!object) {
    tabular_ = false;
  } else if (parsed_.elements.size() == 1) {
    for (const auto& m : members_) keys_.push_back(m.key);
    tabular_ = !keys_.empty() && std::none_of(keys_.begin(), keys_.end(), [](const std::string& k) {
      return k.empty() || k.find('\0') != std::string::npos;
    });
    texts_.resize(keys_.size());
    all_numbers_.assign(keys_.size(), true);
  }
  if (tabular_ && members_.size() != keys_.size()) tabular_ = false;
  for (std::size_t c = 0; tabular_ && c < members_.size(); ++c) {
    std::string cell = field_text::value_text(members_[c].value);
    if (members_[c].key != keys_[c] || !table_scalar(members_[c].value, cell)) {
      tabular_ = false;
    } else {
      texts_[c].push_text(cell);
      if (!is_number(members_[c].value)) all_numbers_[c] = false;
    }
  }
  if (!tabular_) texts_ = {};
}

ParsedElements JsonElements::take() {
  ParsedElements parsed = std::move(parsed_);
  parsed.encoding = Encoding::json;
  if (tabular_ && parsed.elements.size() > 0) {
    // Typed as CSV, on each value's text; a string holding digits ("7") stays a string.
    Table table;
    table.names = std::move(keys_);
    for (std::size_t c = 0; c < texts_.size(); ++c)
      table.types.push_back(all_numbers_[c] ? type_column(texts_[c]) : ColumnType::string);
    table.columns = std::move(texts_);
    parsed.table = std::move(table);
  }
  parsed_ = ParsedElements();
  keys_.clear();
  texts_.clear();
  return parsed;
}

void JsonElements::give_back(ParsedElements&& parsed) {
  if (parsed.table) {
    keys_ = std::move(parsed.table->names);
    texts_ = std::move(parsed.table->columns);
    parsed.table.reset();
  }
  parsed_ = std::move(parsed);
}

ParsedElements read_jsonl(const std::filesystem::path& file, TextEncoding encoding) {
  const std::string where = file.string();
  const std::string content = read_input_text(file, encoding);
  const std::string_view text = std::string_view(content).substr(utf8::bom_length(content));

  JsonElements elements(/*objects_only=*/true);
  std::size_t pos = 0, line = 0;
  while (pos < text.size()) {
    ++line;
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view row = text.substr(pos, end - pos);
    pos = end + 1;
    if (is_blank(row)) continue;
    elements.add(row, where + ":" + std::to_string(line) + ": ");
  }
  if (elements.size() == 0) throw UsageError(where + ": no rows");
  return elements.take();
}

ParsedElements read_input_file(const std::string& from, const std::string& format,
                               const std::string& encoding_name) {
  const TextEncoding encoding = text_encoding_from_string(encoding_name);
  if (format.empty()) {
    if (const auto dataset = h5_dataset_of(from)) {
      if (encoding != TextEncoding::utf8)
        throw UsageError("--encoding '" + encoding_name + "': an HDF5 dataset's strings are UTF-8 already");
      return read_h5(*dataset);
    }
  }
  std::string kind = format;
  if (kind.empty()) {
    const auto ext = std::filesystem::path(from).extension().string();
    if (ext == ".csv")
      kind = "csv";
    else if (ext == ".jsonl" || ext == ".ndjson")
      kind = "jsonl";
    else
      throw UsageError("--from '" + from +
                       "': cannot tell the format from the name; give --format csv|jsonl");
  }
  if (kind == "csv") return read_csv(from, encoding);
  if (kind == "jsonl") return read_jsonl(from, encoding);
  throw UsageError("--format '" + kind + "': give csv or jsonl");
}

// --------------------------------------------------------------------------------- --grid, --range

namespace {

struct Parameter {
  std::string name;
  ColumnType type = ColumnType::string;
  TableColumn values;

  std::size_t size() const {
    return type == ColumnType::int64     ? values.ints.size()
           : type == ColumnType::float64 ? values.floats.size()
                                         : values.ends.size();
  }
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
    for (const auto& part : parts) p.values.push_text(part);
    p.type = type_column(p.values);
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
    p.values.ints.reserve(count);
    for (std::uint64_t k = 0; k < count; ++k)
      p.values.ints.push_back(static_cast<std::int64_t>(static_cast<std::uint64_t>(start) +
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
  p.values.floats.reserve(count);
  for (std::uint64_t k = 0; k < count; ++k) p.values.floats.push_back(value_at(k));
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
    const std::uint64_t size = params.back().size();
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
  // Row-major order: the last parameter varies fastest, as itertools.product; so row r holds
  // value (r / repeat) % size of a parameter, repeat being the product of the later sizes.
  table.columns.resize(params.size());
  std::uint64_t repeat = 1;
  for (std::size_t c = params.size(); c-- > 0;) {
    const Parameter& p = params[c];
    TableColumn& column = table.columns[c];
    const std::uint64_t size = p.size();
    for (std::uint64_t r = 0; r < total; ++r) {
      const std::size_t k = static_cast<std::size_t>((r / repeat) % size);
      if (p.type == ColumnType::int64) {
        column.ints.push_back(p.values.ints[k]);
      } else if (p.type == ColumnType::float64) {
        column.floats.push_back(p.values.floats[k]);
      } else {
        column.push_text(p.values.text_at(k));
      }
    }
    repeat *= size;
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
  table.columns.resize(1);
  table.columns[0].ints.resize(n);
  for (std::uint64_t k = 0; k < n; ++k) table.columns[0].ints[k] = static_cast<std::int64_t>(k);
  parsed.table = std::move(table);
  fill_elements_from_table(parsed);
  return parsed;
}

}  // namespace mpmux
