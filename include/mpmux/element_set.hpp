// The element set: the read-only list of work elements of a mux, stored in elements.h5.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mpmux/export.hpp"

namespace mpmux {

/// How the bytes of each element are to be read.
enum class Encoding { json, bytes, boost_binary };
MPMUX_EXPORT std::string_view to_string(Encoding);
MPMUX_EXPORT Encoding encoding_from_string(std::string_view);  // throws UsageError

/// Elements as one byte string plus n+1 offsets: element i is data[offsets[i], offsets[i+1]).
struct MPMUX_EXPORT ElementBuffer {
  std::string data;
  std::vector<std::uint64_t> offsets{0};

  void push(std::string_view element) {
    data.append(element);
    offsets.push_back(data.size());
  }
  std::size_t size() const { return offsets.size() - 1; }
  std::string_view at(std::size_t i) const {
    return std::string_view(data).substr(offsets[i], offsets[i + 1] - offsets[i]);
  }
};

/// A typed table (CSV, JSON Lines of flat objects, a --grid product). Stored next to the
/// elements as the compound dataset /elements/table.
enum class ColumnType { int64, float64, string };
using Cell = std::variant<std::int64_t, double, std::string>;

/// One column of a Table, stored by its type (no per-cell allocation): cell r is ints[r] or
/// floats[r], or for a string column the NUL-terminated text at text.data() + (r ? ends[r - 1] : 0),
/// ends[r] being the offset just past its NUL (so HDF5 takes the texts without a copy).
struct MPMUX_EXPORT TableColumn {
  std::vector<std::int64_t> ints;
  std::vector<double> floats;
  std::string text;
  std::vector<std::size_t> ends;

  void push_text(std::string_view s) {
    text.append(s);
    text.push_back('\0');
    ends.push_back(text.size());
  }
  std::string_view text_at(std::size_t r) const {
    const std::size_t begin = r ? ends[r - 1] : 0;
    return std::string_view(text).substr(begin, ends[r] - 1 - begin);
  }
};

struct MPMUX_EXPORT Table {
  std::vector<std::string> names;
  std::vector<ColumnType> types;
  std::vector<TableColumn> columns;  // columns[c] holds the cells of types[c]

  std::size_t row_count() const;
  /// Cell (r, c) as a variant, for callers that want one cell (tests, small tables).
  Cell cell(std::size_t r, std::size_t c) const;
  /// Appends a row; each cell must have its column's type (else std::invalid_argument).
  void push_row(const std::vector<Cell>& row);
  /// Row r as a compact JSON object, fields in column order ({"alpha":0.1,"seed":3}).
  std::string row_json(std::size_t r) const;
  /// Appends row r's JSON to `out`.
  void append_row_json(std::size_t r, std::string& out) const;
};

/// Elements parsed from user input, ready to be stored.
struct MPMUX_EXPORT ParsedElements {
  Encoding encoding = Encoding::json;
  ElementBuffer elements;
  std::optional<Table> table;  // set when the input was tabular
};

/// The character encoding of an input file; its text is converted to UTF-8 on import.
enum class TextEncoding { utf8, latin1 };
/// "utf-8" (or "utf8") and "latin-1" (or "latin1", "iso-8859-1"), any case; throws UsageError
/// "--encoding 'x': unknown encoding (expected utf-8 or latin-1)" for anything else.
MPMUX_EXPORT TextEncoding text_encoding_from_string(std::string_view name);

/// Input readers. Each throws UsageError with a one-line message naming the file and line
/// ("grid.csv:7: 2 fields, the header has 3") for: an empty input, a ragged row, bytes that are
/// not UTF-8 (naming the byte and its column, suggesting --encoding latin-1) or NUL bytes, an
/// invalid JSON line, a line that is not an object. Elements are compact JSON objects (encoding
/// json); a UTF-8 BOM is skipped.
///
/// Fields are text: every cell reaches a template, a plugin and the exports exactly as written.
/// CSV follows RFC 4180 (quoted fields, doubled quotes, CRLF or LF, newlines inside quotes);
/// blank lines are skipped; the first row is the header, whose names may be any non-empty,
/// unique text ("alpha (deg)", "2theta"). In the element, a cell that is a JSON number literal
/// is that number as written (1.10, -0, 1e3), any other cell a JSON string ("007", "+1", "").
/// The table's column is int64 when every cell's text is exactly the decimal text of its value,
/// float64 when every cell's text is exactly the shortest round-trip text of its value with ".0"
/// for a whole number ("2.5", "2.0", "1e+20"), else string; so a typed column prints back as
/// written.
MPMUX_EXPORT ParsedElements read_csv(const std::filesystem::path& file,
                                     TextEncoding encoding = TextEncoding::utf8);
/// JSON Lines: one object per non-blank line, stored as written less the spaces between tokens
/// (numbers and string escapes keep their text); a key given twice in a line is an error. A
/// table is kept when every line is a flat object with the same keys in the same order and
/// scalar values (numbers, strings, booleans), typed as for CSV on each value's text (a
/// string's characters, a number or boolean as written); a column holding a string or a
/// boolean is a string column.
MPMUX_EXPORT ParsedElements read_jsonl(const std::filesystem::path& file,
                                       TextEncoding encoding = TextEncoding::utf8);
/// --grid NAME=v1,v2,... NAME=start:stop[:step] ...: the cartesian product in row-major order
/// (the last parameter varies fastest). start:stop:step excludes stop, as Python's range; float
/// values are start + k*step. Values are typed per parameter as CSV columns; NAME is any
/// non-empty text before the first '='.
MPMUX_EXPORT ParsedElements make_grid(const std::vector<std::string>& specs);
/// --range N: elements {"i": 0} ... {"i": N-1}.
MPMUX_EXPORT ParsedElements make_range(std::uint64_t n);

/// Attributes of an element set.
struct MPMUX_EXPORT ElementSetInfo {
  std::string format;  // "mpmux-elements"
  int format_version = 1;
  std::uint64_t count = 0;
  std::string created;  // ISO 8601 UTC
  std::string tag;
  Encoding encoding = Encoding::json;
  std::vector<std::string> columns;  // names of /elements/table, empty when there is none
};

/// elements.h5: /elements/data (uint8, chunked), /elements/offsets (uint64, n+1),
/// optional /elements/table (compound), attributes on /elements. An ElementSet is not
/// synchronized: use it from one thread at a time.
class MPMUX_EXPORT ElementSet {
 public:
  /// Writes a new elements.h5 at `file` (which must not exist). Durable (file and directory
  /// entry fsynced) on return. Throws UsageError when `file` exists, StoreError when writing
  /// fails (the partial file is removed), std::invalid_argument when `table` does not match
  /// `elements` (row count, cell types).
  static void write(const std::filesystem::path& file, const ElementBuffer& elements, Encoding encoding,
                    const std::string& tag, const Table* table);

  /// Opens an existing set read-only. Throws UsageError when the file is missing, is not HDF5,
  /// is truncated or is not an mpmux element set.
  static ElementSet open(const std::filesystem::path& file);

  ElementSet(ElementSet&&) noexcept;
  ElementSet& operator=(ElementSet&&) noexcept;
  ~ElementSet();

  const ElementSetInfo& info() const;
  std::uint64_t size() const;
  const std::filesystem::path& path() const;

  /// The bytes of element i (std::out_of_range past the end).
  std::string read(std::uint64_t index) const;
  /// The elements at `indices` (strictly ascending, else std::invalid_argument), packed in that
  /// order: result.at(k) is element indices[k]. Reads only what is needed, plus gaps of at
  /// most a few KiB between wanted elements.
  ElementBuffer read_subset(const std::vector<std::uint64_t>& indices) const;
  /// All elements.
  ElementBuffer read_all() const;

 private:
  struct State;
  explicit ElementSet(std::unique_ptr<State>);
  std::unique_ptr<State> state_;
};

}  // namespace mpmux
