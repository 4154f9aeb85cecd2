// Element sets from a dataset of an existing HDF5 file; see h5_input.hpp.
#include "store/h5_input.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include "mpmux/error.hpp"
#include "store/h5.hpp"
#include "store/utf8.hpp"

namespace mpmux {

namespace stdfs = std::filesystem;

namespace {

bool has_h5_extension(std::string_view name) {
  const std::size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return false;
  std::string ext(name.substr(dot));
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".h5" || ext == ".hdf5" || ext == ".he5";
}

// Reads of one dataset, with errors that name the file and the dataset.
class DatasetReader {
 public:
  explicit DatasetReader(const H5Dataset& source)
      : where_("--from '" + source.file.string() + ":" + source.dataset + "'") {}

  [[noreturn]] void refuse(const std::string& why) const { throw UsageError(where_ + ": " + why); }
  const std::string& where() const { return where_; }

  // HDF5 failures past the checks below are damage in the file: the user's input error too.
  template <class T>
  T check(T status, const std::string& what) const {
    if (status < 0) refuse(what + " failed: " + h5::error_stack());
    return status;
  }

 private:
  std::string where_;
};

struct Column {
  std::string name;
  ColumnType type = ColumnType::int64;
  std::vector<Cell> cells;
};

// A float as the shortest text that reads back as the same value of its width, and that text's
// double, so the element's JSON and the table agree (a float32 0.1 is 0.1, not 0.10000000149).
double shortest(double v, bool single) {
  if (!single) return v;
  char buf[32];
  const auto end = std::to_chars(buf, buf + sizeof buf, static_cast<float>(v)).ptr;
  double out = 0;
  std::from_chars(buf, end, out);
  return out;
}

// A float column holding NaN or infinity becomes a string column, as in CSV (JSON has no
// number for them).
void settle_floats(Column& c, bool single) {
  bool finite = true;
  for (Cell& cell : c.cells) {
    double& v = std::get<double>(cell);
    v = shortest(v, single);
    finite = finite && std::isfinite(v);
  }
  if (finite) return;
  c.type = ColumnType::string;
  for (Cell& cell : c.cells) {
    const double v = std::get<double>(cell);
    char buf[32];
    const auto end = single ? std::to_chars(buf, buf + sizeof buf, static_cast<float>(v)).ptr
                            : std::to_chars(buf, buf + sizeof buf, v).ptr;
    cell = std::string(buf, end);
  }
}

// Reads `rows` values of the numeric type `file_type` through `read(mem_type, buffer)`; floats
// as they are (settle_floats gives them their text).
template <class Read>
Column read_numeric(const DatasetReader& in, const std::string& name, hid_t file_type, std::size_t rows,
                    Read&& read) {
  Column c;
  c.name = name;
  c.cells.reserve(rows);
  const H5T_class_t cls = H5Tget_class(file_type);
  if (cls == H5T_INTEGER) {
    c.type = ColumnType::int64;
    if (H5Tget_sign(file_type) == H5T_SGN_NONE && H5Tget_size(file_type) >= 8) {
      std::vector<std::uint64_t> v(rows);
      read(H5T_NATIVE_UINT64, v.data());
      for (std::size_t r = 0; r < rows; ++r) {
        if (v[r] > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          in.refuse("row " + std::to_string(r) + " of " + name + ": " + std::to_string(v[r]) +
                    " is beyond the int64 range of element fields");
        c.cells.emplace_back(static_cast<std::int64_t>(v[r]));
      }
    } else {
      std::vector<std::int64_t> v(rows);
      read(H5T_NATIVE_INT64, v.data());
      for (std::int64_t x : v) c.cells.emplace_back(x);
    }
  } else {
    c.type = ColumnType::float64;
    std::vector<double> v(rows);
    read(H5T_NATIVE_DOUBLE, v.data());
    for (double x : v) c.cells.emplace_back(x);
  }
  return c;
}

void check_text(const DatasetReader& in, const Column& c, std::size_t r, std::string_view s) {
  if (utf8::first_invalid(s) != std::string_view::npos)
    in.refuse("row " + std::to_string(r) + " of " + c.name + ": text that is not UTF-8");
}

// A string member, fixed or variable length, read in its own type (HDF5 does not convert
// between ASCII and UTF-8 strings).
Column read_strings(const DatasetReader& in, hid_t dataset, const std::string& name, hid_t member_type,
                    std::size_t rows) {
  Column c;
  c.name = name;
  c.type = ColumnType::string;
  c.cells.reserve(rows);
  h5::Id mem_member(in.check(H5Tcopy(member_type), "copy the type of " + name));
  const std::size_t size = H5Tget_size(member_type);
  h5::Id mem(in.check(H5Tcreate(H5T_COMPOUND, size), "create a type for " + name));
  in.check(H5Tinsert(mem.get(), name.c_str(), 0, mem_member.get()), "create a type for " + name);
  std::vector<char> buffer(size * rows);
  in.check(H5Dread(dataset, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data()), "read " + name);
  if (H5Tis_variable_str(member_type) > 0) {
    h5::Id space(in.check(H5Dget_space(dataset), "get the dataspace"));
    h5::VlenReclaim reclaim{mem.get(), space.get(), buffer.data()};
    for (std::size_t r = 0; r < rows; ++r) {
      const char* p;
      std::memcpy(&p, buffer.data() + r * size, sizeof p);
      const std::string_view s = p ? std::string_view(p) : std::string_view();
      check_text(in, c, r, s);
      c.cells.emplace_back(std::string(s));
    }
    return c;
  }
  const bool space_padded = H5Tget_strpad(member_type) == H5T_STR_SPACEPAD;
  for (std::size_t r = 0; r < rows; ++r) {
    std::string_view s(buffer.data() + r * size, size);
    s = s.substr(0, s.find('\0'));
    if (space_padded) s = s.substr(0, s.find_last_not_of(' ') + 1);
    check_text(in, c, r, s);
    c.cells.emplace_back(std::string(s));
  }
  return c;
}

const char* class_name(H5T_class_t cls) {
  switch (cls) {
    case H5T_ENUM:
      return "an enum";
    case H5T_REFERENCE:
      return "a reference";
    case H5T_VLEN:
      return "a variable-length sequence";
    case H5T_ARRAY:
      return "an array";
    case H5T_COMPOUND:
      return "a compound";
    case H5T_OPAQUE:
      return "opaque";
    case H5T_BITFIELD:
      return "a bitfield";
    case H5T_TIME:
      return "a time";
    default:
      return "an unsupported type";
  }
}

std::vector<Column> read_compound(const DatasetReader& in, hid_t dataset, hid_t type, std::size_t rows) {
  const int n = in.check(H5Tget_nmembers(type), "count the members");
  std::vector<Column> columns;
  for (int m = 0; m < n; ++m) {
    char* raw = H5Tget_member_name(type, static_cast<unsigned>(m));
    if (!raw) in.refuse("get the name of member " + std::to_string(m) + " failed");
    const std::string name = raw;
    H5free_memory(raw);
    h5::Id member(in.check(H5Tget_member_type(type, static_cast<unsigned>(m)), "get the type of " + name));
    const H5T_class_t cls = H5Tget_class(member.get());
    if (cls == H5T_STRING) {
      columns.push_back(read_strings(in, dataset, name, member.get(), rows));
    } else if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
      columns.push_back(read_numeric(in, name, member.get(), rows, [&](hid_t native, void* out) {
        h5::Id mem(in.check(H5Tcreate(H5T_COMPOUND, H5Tget_size(native)), "create a type for " + name));
        in.check(H5Tinsert(mem.get(), name.c_str(), 0, native), "create a type for " + name);
        in.check(H5Dread(dataset, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out), "read " + name);
      }));
      if (cls == H5T_FLOAT) settle_floats(columns.back(), H5Tget_size(member.get()) <= 4);
    } else {
      in.refuse("member " + name + " is " + class_name(cls) +
                "; element fields are integers, floats or strings");
    }
  }
  return columns;
}

// Column names of a 2-D dataset: its string-array attribute `columns`, else c0..cN-1.
std::vector<std::string> matrix_names(const DatasetReader& in, hid_t dataset, std::size_t ncols) {
  std::vector<std::string> names;
  if (in.check(H5Aexists(dataset, "columns"), "look for the attribute columns") == 0) {
    for (std::size_t c = 0; c < ncols; ++c) names.push_back("c" + std::to_string(c));
    return names;
  }
  h5::Id attr(in.check(H5Aopen(dataset, "columns", H5P_DEFAULT), "open the attribute columns"));
  h5::Id type(in.check(H5Aget_type(attr.get()), "get the type of the attribute columns"));
  h5::Id space(in.check(H5Aget_space(attr.get()), "get the shape of the attribute columns"));
  const hssize_t count = H5Sget_simple_extent_npoints(space.get());
  if (H5Tget_class(type.get()) != H5T_STRING || H5Sget_simple_extent_ndims(space.get()) != 1 ||
      count != static_cast<hssize_t>(ncols))
    in.refuse("the attribute columns must be a 1-D array of " + std::to_string(ncols) + " strings");
  const std::size_t size = H5Tget_size(type.get());
  std::vector<char> buffer(size * ncols);
  in.check(H5Aread(attr.get(), type.get(), buffer.data()), "read the attribute columns");
  if (H5Tis_variable_str(type.get()) > 0) {
    h5::VlenReclaim reclaim{type.get(), space.get(), buffer.data()};
    for (std::size_t c = 0; c < ncols; ++c) {
      const char* p;
      std::memcpy(&p, buffer.data() + c * size, sizeof p);
      names.emplace_back(p ? p : "");
    }
  } else {
    for (std::size_t c = 0; c < ncols; ++c) {
      std::string_view s(buffer.data() + c * size, size);
      names.emplace_back(s.substr(0, s.find('\0')));
    }
  }
  return names;
}

std::vector<Column> read_matrix(const DatasetReader& in, hid_t dataset, hid_t type, std::size_t rows,
                                std::size_t ncols) {
  const H5T_class_t cls = H5Tget_class(type);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT)
    in.refuse(std::string("a 2-D dataset must hold integers or floats, not ") +
              (cls == H5T_STRING ? "strings" : class_name(cls)));
  const std::vector<std::string> names = matrix_names(in, dataset, ncols);
  // One read of the whole matrix, then one column per field.
  Column all = read_numeric(in, "the dataset", type, rows * ncols, [&](hid_t native, void* out) {
    in.check(H5Dread(dataset, native, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), "read the dataset");
  });
  std::vector<Column> columns(ncols);
  for (std::size_t c = 0; c < ncols; ++c) {
    columns[c].name = names[c];
    columns[c].type = all.type;
    columns[c].cells.reserve(rows);
    for (std::size_t r = 0; r < rows; ++r) columns[c].cells.push_back(std::move(all.cells[r * ncols + c]));
  }
  // A float column is typed on its own cells: NaN in one column leaves the others numbers.
  if (cls == H5T_FLOAT)
    for (Column& c : columns) settle_floats(c, H5Tget_size(type) <= 4);
  return columns;
}

}  // namespace

std::optional<H5Dataset> h5_dataset_of(std::string_view from) {
  for (std::size_t pos = from.rfind(":/"); pos != std::string_view::npos;
       pos = pos == 0 ? std::string_view::npos : from.rfind(":/", pos - 1)) {
    if (has_h5_extension(from.substr(0, pos)))
      return H5Dataset{std::string(from.substr(0, pos)), std::string(from.substr(pos + 1))};
  }
  if (has_h5_extension(from))
    throw UsageError("--from '" + std::string(from) + "': name the dataset too, as " + std::string(from) +
                     ":/path/to/dataset");
  return std::nullopt;
}

ParsedElements read_h5(const H5Dataset& source) {
  h5::quiet();
  const DatasetReader in(source);
  std::error_code ec;
  if (!stdfs::is_regular_file(source.file, ec)) in.refuse("no such file '" + source.file.string() + "'");
  h5::Id fapl = h5::file_access(in.where());
  if (H5Fis_hdf5(source.file.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    in.refuse("'" + source.file.string() + "' is not an HDF5 file");
  }
  h5::Id file(in.check(H5Fopen(source.file.c_str(), H5F_ACC_RDONLY, fapl.get()), "open the file"));
  bool found = false;
  try {
    found = source.dataset != "/" && h5::exists(file.get(), source.dataset, in.where());
  } catch (const StoreError&) {
    found = false;  // a path through something that is not a group
  }
  if (!found) in.refuse("no dataset " + source.dataset + " in the file");
  h5::Id object(in.check(H5Oopen(file.get(), source.dataset.c_str(), H5P_DEFAULT), "open " + source.dataset));
  const H5I_type_t kind = H5Iget_type(object.get());
  if (kind == H5I_GROUP) in.refuse(source.dataset + " is a group, not a dataset");
  if (kind != H5I_DATASET) in.refuse(source.dataset + " is not a dataset");
  const hid_t dataset = object.get();

  h5::Id type(in.check(H5Dget_type(dataset), "get the type"));
  const std::vector<hsize_t> dims = h5::dims(dataset, in.where());
  std::vector<Column> columns;
  const H5T_class_t cls = H5Tget_class(type.get());
  if (dims.size() == 1 && cls == H5T_COMPOUND) {
    columns = read_compound(in, dataset, type.get(), dims[0]);
  } else if (dims.size() == 2) {
    columns = read_matrix(in, dataset, type.get(), dims[0], dims[1]);
  } else if (dims.size() == 1) {
    in.refuse("a 1-D dataset must be compound (one field per member); a 2-D one holds one element per row");
  } else {
    in.refuse("a " + std::to_string(dims.size()) +
              "-D dataset cannot be read as elements (1-D compound or 2-D numeric datasets can)");
  }
  const std::size_t rows = dims[0];
  if (rows == 0) in.refuse("the dataset has no rows");
  if (columns.empty()) in.refuse("the dataset has no fields");
  std::set<std::string> seen;
  for (const Column& c : columns) {
    if (c.name.empty()) in.refuse("a field has an empty name");
    if (utf8::first_invalid(c.name) != std::string_view::npos || c.name.find('\0') != std::string::npos)
      in.refuse("the field name '" + c.name + "' is not UTF-8");
    if (!seen.insert(c.name).second) in.refuse("the field name '" + c.name + "' appears twice");
  }

  ParsedElements parsed;
  Table table;
  for (const Column& c : columns) {
    table.names.push_back(c.name);
    table.types.push_back(c.type);
  }
  for (Column& c : columns) {
    TableColumn& column = table.columns.emplace_back();
    for (Cell& cell : c.cells) {
      if (c.type == ColumnType::int64) {
        column.ints.push_back(std::get<std::int64_t>(cell));
      } else if (c.type == ColumnType::float64) {
        column.floats.push_back(std::get<double>(cell));
      } else {
        column.push_text(std::get<std::string>(cell));
      }
    }
    c.cells = {};
  }
  parsed.elements.offsets.reserve(rows + 1);
  for (std::size_t r = 0; r < rows; ++r) {
    table.append_row_json(r, parsed.elements.data);
    parsed.elements.offsets.push_back(parsed.elements.data.size());
  }
  parsed.table = std::move(table);
  return parsed;
}

}  // namespace mpmux
