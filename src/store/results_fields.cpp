// The element's own fields in the results exports; see results_fields.hpp.
#include "store/results_fields.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <utility>

#include "mpmux/error.hpp"
#include "store/field_text.hpp"
#include "store/h5.hpp"

namespace mpmux::results {

namespace stdfs = std::filesystem;

namespace {

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

std::string_view trimmed(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
}

// JSON elements without a table: the union of their keys in first-seen order, typed on each
// value's text by the rule of the typed table (store/input.cpp): int64 when every element has
// the key and every value prints back as written as an int64, float64 when the values present
// all print back as written as float64, else text (a string's characters, any other value as
// written). So every export shows each value's text as the input had it. An element that is not
// an object counts as {"value": element}.
// With a `schema` (a block of a larger set), its columns and types are taken instead.
void read_json_fields(const ElementBuffer& all, Fields& f, const Fields* schema = nullptr) {
  const std::size_t rows = all.size();
  std::unordered_map<std::string, std::size_t> column_of;
  std::vector<std::string> keys;
  std::vector<std::uint64_t> present;
  std::vector<bool> all_int, all_float;
  std::vector<field_text::JsonMember> members;
  for (std::size_t r = 0; r < rows; ++r) {
    // An element that is not an object (a number, string or list of the C ABI or Python) is
    // shown whole, as written, in a column `value`.
    if (!field_text::json_members(all.at(r), members)) members.assign(1, {"value", trimmed(all.at(r))});
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
    if (name.empty() || name == kIndexColumn.name) return true;
    for (const ResultColumn& fixed : kResultColumns)
      if (name == fixed.name) return true;
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

}  // namespace

FieldSource::FieldSource(const Session& session) : file_(session.elements_file()) {
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

Fields FieldSource::block(std::uint64_t first, std::uint64_t count) const {
  Fields f;
  if (kind_ == Kind::table)
    read_table(file_, first, count, f);
  else if (kind_ == Kind::json)
    read_json_fields(elements(first, count), f, &schema_);
  f.names = schema_.names;
  return f;
}

ElementBuffer FieldSource::elements(std::uint64_t first, std::uint64_t count) const {
  std::vector<std::uint64_t> indices(count);
  for (std::uint64_t k = 0; k < count; ++k) indices[k] = first + k;
  return set_->read_subset(indices);
}

// A column keeps a numeric type only when every block gives it that type (int64 also needs the
// column in every row: a block lacking it has rows without it); otherwise it is text, as
// read_json_fields would type it over the whole set.
void FieldSource::json_schema(std::uint64_t total) {
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

}  // namespace mpmux::results
