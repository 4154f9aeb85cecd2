// The results of a session: journals folded into one row per element, and the three exports.
#include "mpmux/results.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "store/field_text.hpp"
#include "store/fs.hpp"
#include "store/h5.hpp"
#include "store/results_fold.hpp"
#include "store/utf8.hpp"

namespace mpmux {

namespace stdfs = std::filesystem;

std::string_view to_string(ResultsFormat format) {
  switch (format) {
    case ResultsFormat::csv:
      return "csv";
    case ResultsFormat::jsonl:
      return "jsonl";
    case ResultsFormat::h5:
      return "h5";
  }
  return "unknown";
}

ResultsFormat results_format_from_string(std::string_view text) {
  if (text == "csv") return ResultsFormat::csv;
  if (text == "jsonl") return ResultsFormat::jsonl;
  if (text == "h5") return ResultsFormat::h5;
  throw UsageError("unknown results format '" + std::string(text) + "' (expected csv, jsonl or h5)");
}

stdfs::path results_file(const Session& session) { return session.dir() / "results.h5"; }

// ---------------------------------------------------------------------------------------------
// The element's own fields

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool is_clean(std::string_view s, bool allow_nul) {
  return utf8::first_invalid(s) == std::string_view::npos &&
         (allow_nul || s.find('\0') == std::string_view::npos);
}

// `s` as valid UTF-8: each invalid byte (and NUL unless allowed) becomes U+FFFD.
std::string clean_text(std::string_view s, bool allow_nul) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    std::size_t bad = utf8::first_invalid(s);
    if (!allow_nul) bad = std::min(bad, s.find('\0'));
    if (bad == std::string_view::npos) {
      out.append(s);
      break;
    }
    out.append(s.substr(0, bad));
    out.append(kReplacement);
    s.remove_prefix(bad + 1);
  }
  return out;
}

// The columns every export has after the element's fields.
constexpr const char* kResultColumns[] = {"status",
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

// The element's fields as typed columns (one vector per column, of the column's type).
struct Fields {
  std::vector<std::string> names;  // as exported
  std::vector<std::string> keys;   // in the element's JSON object
  std::vector<ColumnType> types;
  std::vector<std::vector<std::int64_t>> ints;  // [column][row], for int64 columns
  std::vector<std::vector<double>> floats;      // for float64 columns
  std::vector<std::vector<std::string>> texts;  // for string columns
  // JSON elements without a table: each element's value as written ([column][row]; JSON Lines
  // shows it as it is) and which cells it lacks (empty in CSV; NaN or "" in HDF5).
  std::vector<std::vector<std::string>> raw;
  std::vector<std::vector<bool>> missing;

  bool from_table() const { return raw.empty(); }
  bool is_missing(std::size_t c, std::size_t r) const { return !missing.empty() && missing[c][r]; }
  void add_column(std::string key, ColumnType type, std::size_t rows) {
    names.push_back(key);
    keys.push_back(std::move(key));
    types.push_back(type);
    ints.emplace_back(type == ColumnType::int64 ? rows : 0);
    floats.emplace_back(type == ColumnType::float64 ? rows : 0);
    texts.emplace_back(type == ColumnType::string ? rows : 0);
  }
};

// Rows [first, first + rows) of /elements/table; with rows 0, only the columns.
void read_table(const stdfs::path& file, std::uint64_t first, std::uint64_t rows, Fields& f) {
  static_assert(sizeof(std::int64_t) == 8 && sizeof(double) == 8 && sizeof(const char*) == 8,
                "table records are read as 8-byte slots");
  const std::string where = file.string();
  h5::Id handle = h5::open_file_read(file);
  h5::Id dataset(
      h5::check(H5Dopen2(handle.get(), "elements/table", H5P_DEFAULT), where, "open /elements/table"));
  h5::Id type(h5::check(H5Dget_type(dataset.get()), where, "get type of /elements/table"));
  const auto ncols = static_cast<std::size_t>(
      h5::check(H5Tget_nmembers(type.get()), where, "get columns of /elements/table"));
  if (ncols == 0) return;
  h5::Id str = h5::string_type(where);
  h5::Id mem(h5::check(H5Tcreate(H5T_COMPOUND, 8 * ncols), where, "create table type"));
  for (std::size_t c = 0; c < ncols; ++c) {
    char* raw = H5Tget_member_name(type.get(), static_cast<unsigned>(c));
    if (!raw) h5::fail(where, "get column name of /elements/table");
    const std::string name = raw;
    H5free_memory(raw);
    hid_t member = str.get();
    ColumnType t = ColumnType::string;
    switch (H5Tget_member_class(type.get(), static_cast<unsigned>(c))) {
      case H5T_INTEGER:
        member = H5T_NATIVE_INT64;
        t = ColumnType::int64;
        break;
      case H5T_FLOAT:
        member = H5T_NATIVE_DOUBLE;
        t = ColumnType::float64;
        break;
      case H5T_STRING:
        break;
      default:
        throw StoreError(where + ": column " + name + " of /elements/table is not a number or a string");
    }
    f.add_column(name, t, rows);
    h5::check(H5Tinsert(mem.get(), name.c_str(), 8 * c, member), where, "add table column " + name);
  }
  if (rows == 0) return;
  std::vector<unsigned char> buffer(8 * ncols * rows);
  h5::Id file_space(h5::check(H5Dget_space(dataset.get()), where, "get dataspace of /elements/table"));
  const hsize_t start[1] = {first}, count[1] = {rows};
  h5::check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), where,
            "select rows of /elements/table");
  h5::Id space(h5::check(H5Screate_simple(1, count, nullptr), where, "create memory dataspace"));
  h5::check(H5Dread(dataset.get(), mem.get(), space.get(), file_space.get(), H5P_DEFAULT, buffer.data()),
            where, "read /elements/table");
  // HDF5 allocated the strings; they are freed whatever happens below.
  h5::VlenReclaim reclaim{mem.get(), space.get(), buffer.data()};
  for (std::size_t c = 0; c < ncols; ++c) {
    const unsigned char* slot = buffer.data() + 8 * c;
    for (std::uint64_t r = 0; r < rows; ++r, slot += 8 * ncols) {
      if (f.types[c] == ColumnType::int64) {
        std::memcpy(&f.ints[c][r], slot, 8);
      } else if (f.types[c] == ColumnType::float64) {
        std::memcpy(&f.floats[c][r], slot, 8);
      } else {
        const char* text;
        std::memcpy(&text, slot, 8);
        if (text) f.texts[c][r] = text;
      }
    }
  }
}

// JSON elements without a table: the union of their keys in first-seen order, typed on each
// value's text by the rule of the typed table (store/input.cpp): int64 when every element has
// the key and every value prints back as written as an int64, float64 when the values present
// all print back as written as float64, else text (a string's characters, any other value as
// written). So every export shows each value's text as the input had it.
// With a `schema` (a block of a larger set), its columns and types are taken instead.
void read_json_fields(const ElementBuffer& all, Fields& f, const Fields* schema = nullptr) {
  const std::size_t rows = all.size();
  std::unordered_map<std::string, std::size_t> column_of;
  std::vector<std::string> keys;
  std::vector<std::uint64_t> present;
  std::vector<bool> all_int, all_float;
  std::vector<field_text::JsonMember> members;
  for (std::size_t r = 0; r < rows; ++r) {
    // An element that is not an object (not from the CLI) contributes no fields.
    if (!field_text::json_members(all.at(r), members)) continue;
    for (const auto& m : members) {
      auto [it, fresh] = column_of.emplace(m.key, keys.size());
      if (fresh) {
        keys.push_back(m.key);
        present.push_back(0);
        all_int.push_back(true);
        all_float.push_back(true);
        f.raw.emplace_back(rows);
        f.missing.emplace_back(rows, true);
      }
      const std::size_t c = it->second;
      if (!f.missing[c][r]) continue;  // a repeated key: the first one counts
      ++present[c];
      all_int[c] = all_int[c] && field_text::exact_int64(m.value).has_value();
      all_float[c] = all_float[c] && field_text::exact_float64(m.value).has_value();
      f.raw[c][r] = m.value;
      f.missing[c][r] = false;
    }
  }
  std::vector<ColumnType> types(keys.size());
  for (std::size_t c = 0; c < keys.size(); ++c)
    types[c] = all_int[c] && present[c] == rows ? ColumnType::int64
               : all_float[c]                   ? ColumnType::float64
                                                : ColumnType::string;
  if (schema) {
    // The schema's columns in its order; a key this block lacks is missing in every row.
    std::vector<std::vector<std::string>> raw;
    std::vector<std::vector<bool>> missing;
    for (const std::string& key : schema->keys) {
      auto it = column_of.find(key);
      if (it == column_of.end()) {
        raw.emplace_back(rows);
        missing.emplace_back(rows, true);
      } else {
        raw.push_back(std::move(f.raw[it->second]));
        missing.push_back(std::move(f.missing[it->second]));
      }
    }
    f.raw = std::move(raw);
    f.missing = std::move(missing);
    keys = schema->keys;
    types = schema->types;
  }
  for (std::size_t c = 0; c < keys.size(); ++c) {
    f.add_column(keys[c], types[c], rows);
    for (std::size_t r = 0; r < rows; ++r) {
      const std::string& v = f.raw[c][r];
      if (f.types[c] == ColumnType::int64)
        f.ints[c][r] = *field_text::exact_int64(v);
      else if (f.types[c] == ColumnType::float64)
        f.floats[c][r] =
            f.missing[c][r] ? std::numeric_limits<double>::quiet_NaN() : *field_text::exact_float64(v);
      else if (!f.missing[c][r])
        f.texts[c][r] = field_text::value_text(v);
    }
  }
}

// Renames fields that would collide with the result columns (or with an earlier rename), and
// makes every name a non-empty C string, as HDF5 member names must be.
void rename_collisions(Fields& f) {
  for (std::string& name : f.names)
    if (!is_clean(name, false)) name = clean_text(name, false);
  auto taken = [&](const std::string& name, std::size_t self) {
    if (name.empty() || name == "index") return true;
    for (const char* fixed : kResultColumns)
      if (name == fixed) return true;
    for (std::size_t k = 0; k < f.names.size(); ++k)
      if (k != self && f.names[k] == name) return true;
    return false;
  };
  for (std::size_t c = 0; c < f.names.size(); ++c)
    while (taken(f.names[c], c)) f.names[c] = "element_" + f.names[c];
}

// The narrower of two column types (int64 < float64 < string in what they can hold).
// A column's type over two blocks: a value prints back as written in one type only, so two
// different types make text.
ColumnType joined(ColumnType a, ColumnType b) { return a == b ? a : ColumnType::string; }
// A column's type when some rows lack it: an int64 column has a value in every row.
ColumnType with_missing(ColumnType t) { return t == ColumnType::int64 ? ColumnType::string : t; }

// The element's fields block by block, so an export never holds all of them: the columns and
// their types are fixed for the whole set first (for JSON elements without a table by a pass
// over all of them, which types each column as read_json_fields would over the whole set),
// then each block of rows is read on its own. Bytes and boost-binary elements are opaque to
// mpmux, so they contribute no columns.
class FieldSource {
 public:
  static constexpr std::uint64_t kSchemaBlock = 1u << 16;

  explicit FieldSource(const Session& session) : file_(session.elements_file()) {
    ElementSet set = ElementSet::open(file_);
    const ElementSetInfo info = set.info();
    if (info.encoding != Encoding::json) {
      kind_ = Kind::opaque;
    } else if (!info.columns.empty()) {
      kind_ = Kind::table;
      read_table(file_, 0, 0, schema_);
    } else {
      kind_ = Kind::json;
      set_.emplace(std::move(set));
      json_schema(info.count);
    }
    rename_collisions(schema_);
  }

  const Fields& schema() const { return schema_; }

  // Rows [first, first + count), indexed from 0, named as in the schema.
  Fields block(std::uint64_t first, std::uint64_t count) const {
    Fields f;
    if (kind_ == Kind::table)
      read_table(file_, first, count, f);
    else if (kind_ == Kind::json)
      read_json_fields(elements(first, count), f, &schema_);
    f.names = schema_.names;
    return f;
  }

 private:
  enum class Kind { opaque, table, json };
  stdfs::path file_;
  Kind kind_ = Kind::opaque;
  Fields schema_;
  std::optional<ElementSet> set_;

  ElementBuffer elements(std::uint64_t first, std::uint64_t count) const {
    std::vector<std::uint64_t> indices(count);
    for (std::uint64_t k = 0; k < count; ++k) indices[k] = first + k;
    return set_->read_subset(indices);
  }

  // A column keeps a numeric type only when every block gives it that type (int64 also needs
  // the column in every row: a block lacking it has rows without it); otherwise it is text, as
  // read_json_fields would type it over the whole set.
  void json_schema(std::uint64_t total) {
    std::unordered_map<std::string, std::size_t> column_of;
    for (std::uint64_t first = 0; first < total; first += kSchemaBlock) {
      Fields b;
      read_json_fields(elements(first, std::min(kSchemaBlock, total - first)), b);
      std::vector<bool> seen(schema_.keys.size(), false);
      for (std::size_t c = 0; c < b.keys.size(); ++c) {
        auto [it, fresh] = column_of.emplace(b.keys[c], schema_.keys.size());
        if (fresh) {
          // Rows before this block lack the key.
          const ColumnType t = first > 0 ? with_missing(b.types[c]) : b.types[c];
          schema_.add_column(b.keys[c], t, 0);
        } else {
          schema_.types[it->second] = joined(schema_.types[it->second], b.types[c]);
          seen[it->second] = true;
        }
      }
      for (std::size_t c = 0; c < seen.size(); ++c)
        if (!seen[c]) schema_.types[c] = with_missing(schema_.types[c]);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Text

// A stderr tail starts where the last 4 KiB began, possibly inside a character: those
// continuation bytes are dropped rather than shown as replacement characters.
std::string_view without_cut_character(std::string_view tail) {
  std::size_t k = 0;
  while (k < 3 && k < tail.size() && (static_cast<unsigned char>(tail[k]) & 0xC0) == 0x80) ++k;
  return tail.substr(k);
}

// The formatters that decided, at import, which columns are typed: a typed cell prints as the
// text it was read from.
void append_int(std::string& out, std::int64_t v) { field_text::append_int64(out, v); }
void append_double(std::string& out, double v) { field_text::append_float64(out, v); }

// ISO 8601 UTC with microseconds; strftime runs once per distinct second.
class IsoTime {
 public:
  void append(std::string& out, std::int64_t ns) {
    std::int64_t sec = ns / 1000000000, rem = ns % 1000000000;
    if (rem < 0) {
      --sec;
      rem += 1000000000;
    }
    if (sec != second_ || prefix_.empty()) {
      second_ = sec;
      prefix_ = posix::format_utc(sec, "%Y-%m-%dT%H:%M:%S");
    }
    out.append(prefix_);
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%06d", static_cast<int>(rem / 1000));
    out.append(frac);
    out.push_back('Z');
  }

 private:
  std::int64_t second_ = 0;
  std::string prefix_;
};

const char* status_name(ElementStatus s) {
  switch (s) {
    case ElementStatus::done:
      return "done";
    case ElementStatus::failed:
      return "failed";
    case ElementStatus::pending:
      break;
  }
  return "pending";
}

double seconds(std::int64_t ns) { return static_cast<double>(ns) / 1e9; }

// What an export reads, block by block: the element's fields and the fold of the journals. Both
// are read (the fold's first pass) before any output, so a bad journal leaves no trace.
struct Export {
  explicit Export(const Session& session) : fields(session), fold(session) {}
  FieldSource fields;
  ResultFold fold;

  // Calls each(fields, first, rows) for consecutive blocks; fields rows count from `first`.
  template <class Each>
  void for_each_block(Each&& each) const {
    fold.for_each_block([&](std::uint64_t first, const std::vector<ElementResult>& rows) {
      const Fields f = fields.block(first, rows.size());
      each(f, first, rows);
    });
  }
};

// Receives the export in pieces of about a MiB.
using Sink = std::function<void(std::string_view)>;
constexpr std::size_t kFlushBytes = 1u << 20;

// ---------------------------------------------------------------------------------------------
// CSV

void append_csv(std::string& out, std::string_view field) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) {
    out.append(field);
    return;
  }
  out.push_back('"');
  for (char c : field) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
}

void append_csv_text(std::string& out, std::string_view s) {
  if (is_clean(s, true))
    append_csv(out, s);
  else
    append_csv(out, clean_text(s, true));
}

// One block of rows; `f` holds the fields of rows[0..], element `first` onwards.
void write_csv_rows(const Fields& f, std::uint64_t first, const std::vector<ElementResult>& rows,
                    IsoTime& iso, std::string& out, const Sink& sink) {
  for (const ElementResult& row : rows) {
    append_int(out, static_cast<std::int64_t>(row.index));
    for (std::size_t c = 0; c < f.names.size(); ++c) {
      out.push_back(',');
      const std::size_t r = row.index - first;
      if (f.is_missing(c, r)) continue;  // empty
      if (f.types[c] == ColumnType::int64)
        append_int(out, f.ints[c][r]);
      else if (f.types[c] == ColumnType::float64)
        append_double(out, f.floats[c][r]);
      else
        append_csv_text(out, f.texts[c][r]);
    }
    out.push_back(',');
    out.append(status_name(row.status));
    out.push_back(',');
    append_int(out, row.attempts);
    if (const auto& o = row.outcome) {
      out.push_back(',');
      append_csv_text(out, o->host);
      out.push_back(',');
      append_int(out, o->worker);
      out.push_back(',');
      append_int(out, o->pid);
      out.push_back(',');
      iso.append(out, o->t_start);
      out.push_back(',');
      iso.append(out, o->t_end);
      out.push_back(',');
      append_double(out, seconds(o->t_end - o->t_start));
      out.push_back(',');
      append_int(out, o->exit_code);
      out.push_back(',');
      append_int(out, o->signal);
      out.append(o->flags & Outcome::kTimedOut ? ",true," : ",false,");
      append_csv_text(out, o->result);
      out.append(o->flags & Outcome::kResultTruncated ? ",true," : ",false,");
      append_csv_text(out, clean_text(without_cut_character(o->stderr_tail), true));
    } else {
      out.append(",,,,,,,,,,,,");
    }
    out.push_back('\n');
    if (out.size() >= kFlushBytes) {
      sink(out);
      out.clear();
    }
  }
}

void write_csv(const Export& e, const Sink& sink) {
  std::string out = "index";
  for (const std::string& name : e.fields.schema().names) {
    out.push_back(',');
    append_csv_text(out, name);
  }
  for (const char* name : kResultColumns) {
    out.push_back(',');
    out.append(name);
  }
  out.push_back('\n');
  IsoTime iso;
  e.for_each_block([&](const Fields& f, std::uint64_t first, const std::vector<ElementResult>& rows) {
    write_csv_rows(f, first, rows, iso, out, sink);
  });
  sink(out);
}

// ---------------------------------------------------------------------------------------------
// JSON Lines

void append_json_text(std::string& out, std::string_view s) {
  if (is_clean(s, true))
    field_text::append_json_string(out, s);
  else
    field_text::append_json_string(out, clean_text(s, true));
}

void append_json_double(std::string& out, double v) {
  if (std::isfinite(v))
    append_double(out, v);
  else
    out.append("null");
}

// One block of rows; `f` holds the fields of rows[0..], element `first` onwards.
void write_jsonl_rows(const Fields& f, std::uint64_t first, const std::vector<ElementResult>& rows,
                      const std::vector<std::string>& keys, IsoTime& iso, std::string& out,
                      const Sink& sink) {
  for (const ElementResult& row : rows) {
    out.append("{\"index\":");
    append_int(out, static_cast<std::int64_t>(row.index));
    for (std::size_t c = 0; c < f.names.size(); ++c) {
      out.append(keys[c]);
      const std::size_t r = row.index - first;
      if (!f.from_table()) {
        // The element's own JSON value, as written (nested values stay JSON).
        const std::string& v = f.raw[c][r];
        if (f.missing[c][r])
          out.append("null");
        else
          out.append(is_clean(v, true) ? v : clean_text(v, true));
      } else if (f.types[c] == ColumnType::int64) {
        append_int(out, f.ints[c][r]);
      } else if (f.types[c] == ColumnType::float64) {
        append_json_double(out, f.floats[c][r]);
      } else {
        append_json_text(out, f.texts[c][r]);
      }
    }
    out.append(",\"status\":\"");
    out.append(status_name(row.status));
    out.append("\",\"attempts\":");
    append_int(out, row.attempts);
    if (const auto& o = row.outcome) {
      out.append(",\"host\":");
      append_json_text(out, o->host);
      out.append(",\"rank\":");
      append_int(out, o->worker);
      out.append(",\"pid\":");
      append_int(out, o->pid);
      out.append(",\"start\":\"");
      iso.append(out, o->t_start);
      out.append("\",\"end\":\"");
      iso.append(out, o->t_end);
      out.append("\",\"duration\":");
      append_json_double(out, seconds(o->t_end - o->t_start));
      out.append(",\"exit_code\":");
      append_int(out, o->exit_code);
      out.append(",\"signal\":");
      append_int(out, o->signal);
      out.append(o->flags & Outcome::kTimedOut ? ",\"timed_out\":true" : ",\"timed_out\":false");
      out.append(",\"result\":");
      append_json_text(out, o->result);
      out.append(o->flags & Outcome::kResultTruncated ? ",\"result_truncated\":true"
                                                      : ",\"result_truncated\":false");
      out.append(",\"stderr_tail\":");
      append_json_text(out, without_cut_character(o->stderr_tail));
    } else {
      out.append(
          ",\"host\":null,\"rank\":null,\"pid\":null,\"start\":null,\"end\":null,\"duration\":null,"
          "\"exit_code\":null,\"signal\":null,\"timed_out\":null,\"result\":null,\"result_truncated\":null,"
          "\"stderr_tail\":null");
    }
    out.append("}\n");
    if (out.size() >= kFlushBytes) {
      sink(out);
      out.clear();
    }
  }
}

void write_jsonl(const Export& e, const Sink& sink) {
  // Keys are escaped once; each starts with the separator that precedes it.
  std::vector<std::string> keys;
  for (const std::string& name : e.fields.schema().names) {
    std::string k = ",";
    append_json_text(k, name);
    keys.push_back(k + ":");
  }
  std::string out;
  IsoTime iso;
  e.for_each_block([&](const Fields& f, std::uint64_t first, const std::vector<ElementResult>& rows) {
    write_jsonl_rows(f, first, rows, keys, iso, out, sink);
  });
  sink(out);
}

// ---------------------------------------------------------------------------------------------
// HDF5

constexpr const char* kFormat = "mpmux-results";
constexpr std::int32_t kFormatVersion = 1;
constexpr std::size_t kBatchRows = 1u << 16;  // rows per H5Dwrite: bounded memory, few calls

// The row type, in memory (8-byte aligned slots) and in the file (packed, little-endian).
class RowType {
 public:
  explicit RowType(std::string where) : where_(std::move(where)) {}

  // Adds a member; returns its offset in the memory row.
  std::size_t add(const std::string& name, hid_t mem_type, hid_t file_type) {
    const std::size_t mem_size = H5Tget_size(mem_type), file_size = H5Tget_size(file_type);
    if (mem_size == 0 || file_size == 0) h5::fail(where_, "get size of member " + name);
    members_.push_back({name, mem_type, file_type, mem_offset_, file_offset_});
    const std::size_t at = mem_offset_;
    mem_offset_ += (mem_size + 7) / 8 * 8;
    file_offset_ += file_size;
    return at;
  }
  std::size_t row_size() const { return mem_offset_; }

  h5::Id build(bool file) const {
    h5::Id t(
        h5::check(H5Tcreate(H5T_COMPOUND, file ? file_offset_ : mem_offset_), where_, "create row type"));
    for (const Member& m : members_)
      h5::check(H5Tinsert(t.get(), m.name.c_str(), file ? m.file_offset : m.mem_offset,
                          file ? m.file_type : m.mem_type),
                where_, "add member " + m.name);
    return t;
  }

 private:
  struct Member {
    std::string name;
    hid_t mem_type, file_type;
    std::size_t mem_offset, file_offset;
  };
  std::string where_;
  std::vector<Member> members_;
  std::size_t mem_offset_ = 0, file_offset_ = 0;
};

// h5py reads an 8-bit enum of FALSE and TRUE as numpy bool.
h5::Id bool_type(const std::string& where) {
  h5::Id t(h5::check(H5Tenum_create(H5T_NATIVE_INT8), where, "create bool type"));
  const std::int8_t no = 0, yes = 1;
  h5::check(H5Tenum_insert(t.get(), "FALSE", &no), where, "create bool type");
  h5::check(H5Tenum_insert(t.get(), "TRUE", &yes), where, "create bool type");
  return t;
}

// Fixed 7 bytes ("pending" fills them), which numpy reads as S7 and compares vectorised.
h5::Id status_type(const std::string& where) {
  h5::Id t(h5::check(H5Tcopy(H5T_C_S1), where, "create status type"));
  h5::check(H5Tset_size(t.get(), 7), where, "create status type");
  h5::check(H5Tset_strpad(t.get(), H5T_STR_NULLPAD), where, "create status type");
  return t;
}

template <class T>
void put(unsigned char* row, std::size_t offset, T value) {
  std::memcpy(row + offset, &value, sizeof value);
}

void write_h5_contents(hid_t file, const Session& session, const Export& e, const std::string& where) {
  const Fields& schema = e.fields.schema();
  // The result column is text when every result is UTF-8 without NUL (C strings in HDF5), else
  // a variable-length sequence of bytes, so a binary result is never cut or altered.
  const bool text_results = !e.fold.any_binary_result();

  h5::Id str = h5::string_type(where);
  h5::Id boolean = bool_type(where);
  h5::Id status = status_type(where);
  h5::Id bytes(h5::check(H5Tvlen_create(H5T_NATIVE_UINT8), where, "create byte sequence type"));
  RowType type(where);
  const std::size_t o_index = type.add("index", H5T_NATIVE_UINT64, H5T_STD_U64LE);
  std::vector<std::size_t> o_fields;
  for (std::size_t c = 0; c < schema.names.size(); ++c) {
    if (schema.types[c] == ColumnType::int64)
      o_fields.push_back(type.add(schema.names[c], H5T_NATIVE_INT64, H5T_STD_I64LE));
    else if (schema.types[c] == ColumnType::float64)
      o_fields.push_back(type.add(schema.names[c], H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE));
    else
      o_fields.push_back(type.add(schema.names[c], str.get(), str.get()));
  }
  const std::size_t o_status = type.add("status", status.get(), status.get());
  const std::size_t o_attempts = type.add("attempts", H5T_NATIVE_UINT32, H5T_STD_U32LE);
  const std::size_t o_host = type.add("host", str.get(), str.get());
  const std::size_t o_rank = type.add("rank", H5T_NATIVE_INT32, H5T_STD_I32LE);
  const std::size_t o_pid = type.add("pid", H5T_NATIVE_INT64, H5T_STD_I64LE);
  const std::size_t o_start = type.add("start", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE);
  const std::size_t o_end = type.add("end", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE);
  const std::size_t o_duration = type.add("duration", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE);
  const std::size_t o_exit = type.add("exit_code", H5T_NATIVE_INT32, H5T_STD_I32LE);
  const std::size_t o_signal = type.add("signal", H5T_NATIVE_INT32, H5T_STD_I32LE);
  const std::size_t o_timed_out = type.add("timed_out", boolean.get(), boolean.get());
  const hid_t result_type = text_results ? str.get() : bytes.get();
  const std::size_t o_result = type.add("result", result_type, result_type);
  const std::size_t o_truncated = type.add("result_truncated", boolean.get(), boolean.get());
  const std::size_t o_stderr = type.add("stderr_tail", str.get(), str.get());
  h5::Id mem_type = type.build(false);
  h5::Id file_type = type.build(true);

  const hsize_t nrows = e.fold.total();
  const hsize_t dims[1] = {nrows};
  h5::Id file_space(h5::check(H5Screate_simple(1, dims, nullptr), where, "create /results dataspace"));
  h5::Id dataset(h5::check(
      H5Dcreate2(file, "results", file_type.get(), file_space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
      where, "create /results"));

  static const char kEmpty[] = "";
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::size_t row_size = type.row_size();
  std::vector<unsigned char> buffer;
  std::deque<std::string> scratch;  // cleaned copies the row pointers point into, per batch
  // A C string HDF5 can store: the text itself when it is clean, else a cleaned copy.
  auto c_text = [&](const std::string& s) -> const char* {
    if (is_clean(s, false)) return s.c_str();
    return scratch.emplace_back(clean_text(s, false)).c_str();
  };
  std::uint64_t done = 0, failed = 0;
  e.for_each_block([&](const Fields& f, std::uint64_t block_first, const std::vector<ElementResult>& rows) {
    for (hsize_t offset = 0; offset < rows.size(); offset += kBatchRows) {
      const hsize_t first = block_first + offset;
      const hsize_t count = std::min<hsize_t>(kBatchRows, rows.size() - offset);
      buffer.assign(row_size * count, 0);
      scratch.clear();
      for (hsize_t k = 0; k < count; ++k) {
        const ElementResult& r = rows[offset + k];
        done += r.status == ElementStatus::done;
        failed += r.status == ElementStatus::failed;
        unsigned char* row = buffer.data() + k * row_size;
        put(row, o_index, std::uint64_t{r.index});
        const std::size_t fr = offset + k;
        for (std::size_t c = 0; c < f.names.size(); ++c) {
          if (f.types[c] == ColumnType::int64)
            put(row, o_fields[c], f.ints[c][fr]);
          else if (f.types[c] == ColumnType::float64)
            put(row, o_fields[c], f.floats[c][fr]);
          else
            put(row, o_fields[c], c_text(f.texts[c][fr]));
        }
        const char* name = status_name(r.status);
        std::memcpy(row + o_status, name, std::strlen(name));
        put(row, o_attempts, std::uint32_t{r.attempts});
        if (const auto& o = r.outcome) {
          put(row, o_host, c_text(o->host));
          put(row, o_rank, static_cast<std::int32_t>(o->worker));
          put(row, o_pid, std::int64_t{o->pid});
          put(row, o_start, seconds(o->t_start));
          put(row, o_end, seconds(o->t_end));
          put(row, o_duration, seconds(o->t_end - o->t_start));
          put(row, o_exit, o->exit_code);
          put(row, o_signal, o->signal);
          put(row, o_timed_out, static_cast<std::int8_t>((o->flags & Outcome::kTimedOut) != 0));
          if (text_results) {
            put(row, o_result, o->result.c_str());
          } else {
            put(row, o_result, hvl_t{o->result.size(), const_cast<char*>(o->result.data())});
          }
          put(row, o_truncated, static_cast<std::int8_t>((o->flags & Outcome::kResultTruncated) != 0));
          const std::string_view tail = without_cut_character(o->stderr_tail);
          put(row, o_stderr,
              c_text(tail.size() == o->stderr_tail.size() ? o->stderr_tail : scratch.emplace_back(tail)));
        } else {
          // Never attempted: no worker, no times, no exit status.
          put(row, o_host, static_cast<const char*>(kEmpty));
          put(row, o_rank, std::int32_t{-1});
          put(row, o_pid, std::int64_t{-1});
          put(row, o_start, nan);
          put(row, o_end, nan);
          put(row, o_duration, nan);
          put(row, o_exit, std::int32_t{-1});
          if (text_results)
            put(row, o_result, static_cast<const char*>(kEmpty));
          else
            put(row, o_result, hvl_t{0, nullptr});
          put(row, o_stderr, static_cast<const char*>(kEmpty));
        }
      }
      const hsize_t start[1] = {first}, n[1] = {count};
      h5::check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, n, nullptr), where,
                "select rows of /results");
      h5::Id mem_space(h5::check(H5Screate_simple(1, n, nullptr), where, "create memory dataspace"));
      h5::check(H5Dwrite(dataset.get(), mem_type.get(), mem_space.get(), file_space.get(), H5P_DEFAULT,
                         buffer.data()),
                where, "write /results");
    }
  });
  const hid_t d = dataset.get();
  h5::write_attribute(d, "format", std::string(kFormat), where);
  h5::write_attribute(d, "format_version", kFormatVersion, where);
  h5::write_attribute(d, "session", session.id().session, where);
  h5::write_attribute(d, "mux_id", session.id().str(), where);
  h5::write_attribute(d, "created",
                      posix::format_utc(posix::unix_time_ns() / 1000000000, "%Y-%m-%dT%H:%M:%SZ"), where);
  h5::write_attribute(d, "total", std::uint64_t{nrows}, where);
  h5::write_attribute(d, "done", done, where);
  h5::write_attribute(d, "failed", failed, where);
  h5::write_attribute(d, "pending", std::uint64_t{nrows - done - failed}, where);
  h5::write_attribute(d, "result_encoding", std::string(text_results ? "utf-8" : "bytes"), where);
  dataset.close(where);
}

// ---------------------------------------------------------------------------------------------
// Atomic replacement

std::string this_host() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "host";
  std::string out;
  for (const char* p = buf; *p; ++p) {
    const char c = *p;
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    out.push_back(ok ? c : '_');
  }
  return out.empty() ? "host" : out;
}

// Temporary files are named .<name>.tmp-<host>-<pid>-<random>, so a writer can tell which ones
// belong to processes of this host that no longer exist (killed mid-write) and remove them.
std::string temp_prefix(const stdfs::path& target) {
  return "." + target.filename().string() + ".tmp-" + this_host() + "-";
}

void remove_stale_temps(const stdfs::path& dir, const stdfs::path& target) {
  const std::string prefix = temp_prefix(target);
  std::error_code ec;
  for (stdfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());  // <pid>-<random>
    pid_t pid = 0;
    auto [p, err] = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
    if (err != std::errc() || p == rest.data() || *p != '-' || pid <= 0) continue;
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code ignore;
    stdfs::remove(it->path(), ignore);  // another cleaner may have won; that is fine
  }
}

// Creates the temporary file for `target`; its fd is returned for the caller to write to.
stdfs::path create_temp(const stdfs::path& target, posix::Fd& fd) {
  const stdfs::path dir = target.parent_path().empty() ? stdfs::path(".") : target.parent_path();
  remove_stale_temps(dir, target);
  stdfs::path tmp = dir / (temp_prefix(target) + std::to_string(::getpid()) + "-" + posix::random_hex(8));
  const int raw = posix::open_file_noexcept(tmp, O_WRONLY | O_CREAT | O_EXCL, posix::kFileMode);
  if (raw < 0)
    throw StoreError("'" + target.string() + "': cannot write results: cannot create '" + tmp.string() +
                     "': " + posix::error_text(-raw));
  fd = posix::Fd(raw);
  return tmp;
}

// Makes the written temporary durable and moves it over `target`.
void commit_temp(const stdfs::path& tmp, const stdfs::path& target) {
  posix::fsync_fd(posix::open_file(tmp, O_RDONLY).get(), tmp);
  if (::rename(tmp.c_str(), target.c_str()) != 0)
    throw StoreError("'" + target.string() + "': cannot replace with '" + tmp.string() +
                     "': " + posix::error_text(errno));
  posix::fsync_dir(target.parent_path().empty() ? stdfs::path(".") : target.parent_path());
}

}  // namespace

void write_results_csv(const Session& session, std::ostream& out) {
  const Export e(session);
  write_csv(e, [&](std::string_view chunk) {
    if (!out.write(chunk.data(), static_cast<std::streamsize>(chunk.size())))
      throw StoreError("writing CSV results of session " + session.id().session + " failed");
  });
  out.flush();
}

void write_results_jsonl(const Session& session, std::ostream& out) {
  const Export e(session);
  write_jsonl(e, [&](std::string_view chunk) {
    if (!out.write(chunk.data(), static_cast<std::streamsize>(chunk.size())))
      throw StoreError("writing JSON Lines results of session " + session.id().session + " failed");
  });
  out.flush();
}

stdfs::path write_results_h5(const Session& session, const stdfs::path& file) {
  stdfs::path target = file.empty() ? results_file(session) : file;
  const Export e(session);  // read before anything is created: a bad journal leaves no trace
  posix::Fd fd;
  const stdfs::path tmp = create_temp(target, fd);
  fd.reset();
  const std::string where = tmp.string();
  h5::Id handle;
  try {
    h5::Id fapl = h5::file_access(where);
    handle = h5::Id(
        h5::check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), where, "create HDF5 file"));
    write_h5_contents(handle.get(), session, e, where);
    handle.close(where);
    commit_temp(tmp, target);
  } catch (...) {
    handle.reset();
    ::unlink(tmp.c_str());
    throw;
  }
  return target;
}

void write_results_file(const Session& session, ResultsFormat format, const stdfs::path& file) {
  if (format == ResultsFormat::h5) {
    write_results_h5(session, file);
    return;
  }
  const Export e(session);
  posix::Fd fd;
  const stdfs::path tmp = create_temp(file, fd);
  try {
    const Sink sink = [&](std::string_view chunk) {
      const posix::IoResult w = posix::write_all(fd.get(), chunk.data(), chunk.size());
      if (w.error != 0)
        throw StoreError("'" + file.string() + "': cannot write results: writing '" + tmp.string() +
                         "' failed: " + posix::error_text(w.error));
    };
    if (format == ResultsFormat::csv)
      write_csv(e, sink);
    else
      write_jsonl(e, sink);
    fd.reset();
    commit_temp(tmp, file);
  } catch (...) {
    fd.reset();
    ::unlink(tmp.c_str());
    throw;
  }
}

}  // namespace mpmux
