// The CSV and JSON Lines exports: one row loop over the column table, and per format how a row
// starts and ends and how each type of cell prints. See docs/formats.md.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "store/field_text.hpp"
#include "store/fs.hpp"
#include "store/results_export.hpp"

namespace mpmux::results {

namespace {

constexpr std::size_t kFlushBytes = 1u << 20;

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

// CSV: RFC 4180 quoting, a header row, LF line ends; a missing value is empty.
class Csv {
 public:
  explicit Csv(const std::vector<std::string_view>& names) {
    for (std::size_t k = 0; k < names.size(); ++k) {
      if (k > 0) out.push_back(',');
      append_csv_text(out, names[k]);
    }
    out.push_back('\n');
  }

  void cell(std::size_t k, CellType type, const Cell& v) {
    if (k > 0) out.push_back(',');
    switch (type) {
      case CellType::float64:
        append_double(out, v.real);
        break;
      case CellType::time:
        iso_.append(out, v.integer);
        break;
      case CellType::flag:
        out.append(v.integer ? "true" : "false");
        break;
      case CellType::text:
      case CellType::status:
      case CellType::result:
        append_csv_text(out, v.text);
        break;
      case CellType::uint32:
      case CellType::uint64:
      case CellType::int32:
      case CellType::int64:
        append_int(out, v.integer);
        break;
    }
  }
  void field(std::size_t k, const Fields& f, std::size_t c, std::size_t r) {
    if (f.is_missing(c, r))
      absent(k, f.cell_type(c), 0);
    else
      cell(k, f.cell_type(c), f.cell(c, r));
  }
  void absent(std::size_t k, CellType, std::int64_t) {
    if (k > 0) out.push_back(',');
  }
  void end_row() { out.push_back('\n'); }

  std::string out;

 private:
  IsoTime iso_;
};

// JSON Lines: one object per row with every column's key; a missing value is null. The fields
// of JSON elements without a table show each value as the element has it.
class Jsonl {
 public:
  explicit Jsonl(const std::vector<std::string_view>& names) {
    // Keys are escaped once; each starts with what precedes it.
    for (std::size_t k = 0; k < names.size(); ++k) {
      std::string key = k == 0 ? "{" : ",";
      append_json_text(key, names[k]);
      keys_.push_back(key + ":");
    }
  }

  void cell(std::size_t k, CellType type, const Cell& v) {
    out.append(keys_[k]);
    switch (type) {
      case CellType::float64:
        append_json_double(out, v.real);
        break;
      case CellType::time:
        out.push_back('"');
        iso_.append(out, v.integer);
        out.push_back('"');
        break;
      case CellType::flag:
        out.append(v.integer ? "true" : "false");
        break;
      case CellType::text:
      case CellType::status:
      case CellType::result:
        append_json_text(out, v.text);
        break;
      case CellType::uint32:
      case CellType::uint64:
      case CellType::int32:
      case CellType::int64:
        append_int(out, v.integer);
        break;
    }
  }
  void field(std::size_t k, const Fields& f, std::size_t c, std::size_t r) {
    if (f.from_table()) {
      cell(k, f.cell_type(c), f.cell(c, r));
    } else if (f.missing[c][r]) {
      absent(k, f.cell_type(c), 0);
    } else {
      // The element's own JSON value, as written (nested values stay JSON).
      const std::string& v = f.raw[c][r];
      out.append(keys_[k]);
      out.append(is_clean(v, true) ? v : clean_text(v, true));
    }
  }
  void absent(std::size_t k, CellType, std::int64_t) {
    out.append(keys_[k]);
    out.append("null");
  }
  void end_row() { out.append("}\n"); }

  std::string out;

 private:
  std::vector<std::string> keys_;
  IsoTime iso_;
};

template <class Format>
void write_text(const Export& e, const Sink& sink) {
  Format format(e.column_names());
  e.for_each_block([&](const Fields& f, std::uint64_t first, const std::vector<ElementResult>& rows) {
    for (const ElementResult& row : rows) {
      visit_row(row, f, row.index - first, format);
      format.end_row();
      if (format.out.size() >= kFlushBytes) {
        sink(format.out);
        format.out.clear();
      }
    }
  });
  sink(format.out);
}

}  // namespace

void write_csv(const Export& e, const Sink& sink) { write_text<Csv>(e, sink); }
void write_jsonl(const Export& e, const Sink& sink) { write_text<Jsonl>(e, sink); }

}  // namespace mpmux::results
