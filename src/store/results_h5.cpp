// The HDF5 export: the compound dataset /results, its row type made from the column table.
// See docs/formats.md.
#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "store/fs.hpp"
#include "store/h5.hpp"
#include "store/results_export.hpp"

namespace mpmux::results {

namespace {

constexpr const char* kFormat = "mpmux-results";
constexpr std::int32_t kFormatVersion = 1;
constexpr std::size_t kBatchRows = 1u << 16;  // rows per H5Dwrite: bounded memory, few calls

// The row type, in memory (8-byte aligned slots) and in the file (packed, little-endian).
class RowType {
 public:
  explicit RowType(std::string where) : where_(std::move(where)) {}

  // Adds a member; returns its offset in the memory row.
  std::size_t add(std::string_view name, hid_t mem_type, hid_t file_type) {
    const std::size_t mem_size = H5Tget_size(mem_type), file_size = H5Tget_size(file_type);
    if (mem_size == 0 || file_size == 0) h5::fail(where_, "get size of member " + std::string(name));
    members_.push_back({std::string(name), mem_type, file_type, mem_offset_, file_offset_});
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

// The HDF5 types of each type of cell, and how a cell goes into a row of them.
class H5Cells {
 public:
  // The result column is text when every result is UTF-8 without NUL (C strings in HDF5), else
  // a variable-length sequence of bytes, so a binary result is never cut or altered.
  H5Cells(const std::string& where, bool text_results)
      : text_results_(text_results),
        str_(h5::string_type(where)),
        bool_(bool_type(where)),
        status_(status_type(where)),
        bytes_(h5::check(H5Tvlen_create(H5T_NATIVE_UINT8), where, "create byte sequence type")) {}

  // {memory type, file type}
  std::pair<hid_t, hid_t> types(CellType type) const {
    switch (type) {
      case CellType::uint32:
        return {H5T_NATIVE_UINT32, H5T_STD_U32LE};
      case CellType::uint64:
        return {H5T_NATIVE_UINT64, H5T_STD_U64LE};
      case CellType::int32:
        return {H5T_NATIVE_INT32, H5T_STD_I32LE};
      case CellType::int64:
        return {H5T_NATIVE_INT64, H5T_STD_I64LE};
      case CellType::float64:
      case CellType::time:
        return {H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE};
      case CellType::flag:
        return {bool_.get(), bool_.get()};
      case CellType::status:
        return {status_.get(), status_.get()};
      case CellType::result:
        if (!text_results_) return {bytes_.get(), bytes_.get()};
        break;
      case CellType::text:
        break;
    }
    return {str_.get(), str_.get()};
  }

  // Starts a batch of rows: the cleaned copies of the last one are no longer pointed to.
  void clear() { scratch_.clear(); }

  void put_cell(unsigned char* row, std::size_t at, CellType type, const Cell& v) {
    switch (type) {
      case CellType::uint32:
        return put(row, at, static_cast<std::uint32_t>(v.integer));
      case CellType::uint64:
        return put(row, at, static_cast<std::uint64_t>(v.integer));
      case CellType::int32:
        return put(row, at, static_cast<std::int32_t>(v.integer));
      case CellType::int64:
        return put(row, at, v.integer);
      case CellType::float64:
        return put(row, at, v.real);
      case CellType::time:
        return put(row, at, seconds(v.integer));
      case CellType::flag:
        return put(row, at, static_cast<std::int8_t>(v.integer != 0));
      case CellType::status:
        std::memcpy(row + at, v.text.data(), v.text.size());
        return;
      case CellType::result:
        if (text_results_) return put(row, at, v.text.data());  // clean: checked by the fold
        return put(row, at, hvl_t{v.text.size(), const_cast<char*>(v.text.data())});
      case CellType::text:
        return put(row, at, c_text(v.text));
    }
  }

  // A row never attempted: no worker, no times, no exit status.
  void put_absent(unsigned char* row, std::size_t at, CellType type, std::int64_t absent) {
    static const char kEmpty[] = "";
    switch (type) {
      case CellType::float64:
      case CellType::time:
        return put(row, at, std::numeric_limits<double>::quiet_NaN());
      case CellType::text:
      case CellType::status:
        return put(row, at, static_cast<const char*>(kEmpty));
      case CellType::result:
        if (text_results_) return put(row, at, static_cast<const char*>(kEmpty));
        return put(row, at, hvl_t{0, nullptr});
      case CellType::uint32:
      case CellType::uint64:
      case CellType::int32:
      case CellType::int64:
      case CellType::flag:
        return put_cell(row, at, type, integer_cell(absent));
    }
  }

 private:
  bool text_results_;
  h5::Id str_, bool_, status_, bytes_;
  std::deque<std::string> scratch_;  // cleaned copies the row pointers point into, per batch

  // A C string HDF5 can store: the text itself when it is clean, else a cleaned copy.
  const char* c_text(std::string_view s) {
    if (is_clean(s, false)) return s.data();  // NUL-terminated: see Cell
    return scratch_.emplace_back(clean_text(s, false)).c_str();
  }
};

// One row of the memory buffer, filled by visit_row.
struct H5Row {
  H5Cells& cells;
  const std::vector<std::size_t>& offsets;  // per column
  unsigned char* row;

  void cell(std::size_t k, CellType type, const Cell& v) { cells.put_cell(row, offsets[k], type, v); }
  void field(std::size_t k, const Fields& f, std::size_t c, std::size_t r) {
    if (f.is_missing(c, r))
      absent(k, f.cell_type(c), 0);
    else
      cell(k, f.cell_type(c), f.cell(c, r));
  }
  void absent(std::size_t k, CellType type, std::int64_t value) {
    cells.put_absent(row, offsets[k], type, value);
  }
};

void write_attributes(hid_t d, const Session& session, std::uint64_t total, std::uint64_t done,
                      std::uint64_t failed, bool text_results, const std::string& where) {
  h5::write_attribute(d, "format", std::string(kFormat), where);
  h5::write_attribute(d, "format_version", kFormatVersion, where);
  h5::write_attribute(d, "session", session.id().session, where);
  h5::write_attribute(d, "mux_id", session.id().str(), where);
  h5::write_attribute(d, "created",
                      posix::format_utc(posix::unix_time_ns() / 1000000000, "%Y-%m-%dT%H:%M:%SZ"), where);
  h5::write_attribute(d, "total", total, where);
  h5::write_attribute(d, "done", done, where);
  h5::write_attribute(d, "failed", failed, where);
  h5::write_attribute(d, "pending", std::uint64_t{total - done - failed}, where);
  h5::write_attribute(d, "result_encoding", std::string(text_results ? "utf-8" : "bytes"), where);
}

void write_contents(hid_t file, const Session& session, const Export& e, const std::string& where) {
  const Fields& schema = e.fields.schema();
  const bool text_results = !e.fold.any_binary_result();
  H5Cells cells(where, text_results);
  RowType type(where);
  std::vector<std::size_t> offsets;
  const std::vector<std::string_view> names = e.column_names();
  const auto add = [&](CellType t) {
    const auto [mem, in_file] = cells.types(t);
    offsets.push_back(type.add(names[offsets.size()], mem, in_file));
  };
  add(kIndexColumn.type);
  for (std::size_t c = 0; c < schema.names.size(); ++c) add(schema.cell_type(c));
  for (const ResultColumn& column : kResultColumns) add(column.type);
  h5::Id mem_type = type.build(false);
  h5::Id file_type = type.build(true);

  const hsize_t nrows = e.fold.total();
  const hsize_t dims[1] = {nrows};
  h5::Id file_space(h5::check(H5Screate_simple(1, dims, nullptr), where, "create /results dataspace"));
  h5::Id dataset(h5::check(
      H5Dcreate2(file, "results", file_type.get(), file_space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
      where, "create /results"));

  const std::size_t row_size = type.row_size();
  std::vector<unsigned char> buffer;
  std::uint64_t done = 0, failed = 0;
  e.for_each_block([&](const Fields& f, std::uint64_t block_first, const std::vector<ElementResult>& rows) {
    for (hsize_t offset = 0; offset < rows.size(); offset += kBatchRows) {
      const hsize_t first = block_first + offset;
      const hsize_t count = std::min<hsize_t>(kBatchRows, rows.size() - offset);
      buffer.assign(row_size * count, 0);
      cells.clear();
      for (hsize_t k = 0; k < count; ++k) {
        const ElementResult& r = rows[offset + k];
        done += r.status == ElementStatus::done;
        failed += r.status == ElementStatus::failed;
        H5Row row{cells, offsets, buffer.data() + k * row_size};
        visit_row(r, f, offset + k, row);
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
  write_attributes(dataset.get(), session, nrows, done, failed, text_results, where);
  dataset.close(where);
}

}  // namespace

void write_h5(const std::filesystem::path& file, const Session& session, const Export& e) {
  const std::string where = file.string();
  h5::Id fapl = h5::file_access(where);
  h5::Id handle(
      h5::check(H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), where, "create HDF5 file"));
  write_contents(handle.get(), session, e, where);
  handle.close(where);
}

}  // namespace mpmux::results
