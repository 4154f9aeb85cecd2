// The element's own fields in the results exports: the columns of /elements/table, or for JSON
// elements without a table the union of their keys, read block by block so that an export never
// holds all of them. See docs/formats.md ("results.h5 and mpmux results").
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/session.hpp"
#include "store/results_columns.hpp"

namespace mpmux::results {

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

  // Column c as a result column: the writers print fields as they print the other cells.
  CellType cell_type(std::size_t c) const {
    return types[c] == ColumnType::int64     ? CellType::int64
           : types[c] == ColumnType::float64 ? CellType::float64
                                             : CellType::text;
  }
  Cell cell(std::size_t c, std::size_t r) const {
    if (types[c] == ColumnType::int64) return integer_cell(ints[c][r]);
    if (types[c] == ColumnType::float64) return real_cell(floats[c][r]);
    return text_cell(texts[c][r]);
  }
};

// The element's fields block by block: the columns and their types are fixed for the whole set
// first (for JSON elements without a table by a pass over all of them, which types each column
// as if read at once), then each block of rows is read on its own. Bytes and boost-binary
// elements are opaque to mpmux, so they contribute no columns.
class FieldSource {
 public:
  static constexpr std::uint64_t kSchemaBlock = 1u << 16;

  explicit FieldSource(const Session& session);

  // The columns, named as exported (a name taken by a result column is renamed element_<name>).
  const Fields& schema() const { return schema_; }
  // Rows [first, first + count), indexed from 0, named as in the schema.
  Fields block(std::uint64_t first, std::uint64_t count) const;

 private:
  enum class Kind { opaque, table, json };
  std::filesystem::path file_;
  Kind kind_ = Kind::opaque;
  Fields schema_;
  std::optional<ElementSet> set_;

  ElementBuffer elements(std::uint64_t first, std::uint64_t count) const;
  void json_schema(std::uint64_t total);
};

}  // namespace mpmux::results
