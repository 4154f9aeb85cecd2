// elements.h5: the element set of a mux, written once and read-only afterwards.
#include "mpmux/element_set.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>

#include "mpmux/error.hpp"
#include "store/fs.hpp"
#include "store/h5.hpp"

namespace mpmux {

namespace {

constexpr const char* kFormat = "mpmux-elements";
constexpr std::int32_t kFormatVersion = 1;
// Chunks of /elements/data: large enough for streaming reads, small enough that a read of a
// few elements does not drag in much more.
constexpr hsize_t kMaxChunkBytes = hsize_t{1} << 20;

std::string now_utc_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Contract checks on what the caller hands to write(): violations are programming errors.
void check_buffer(const ElementBuffer& elements) {
  const auto& off = elements.offsets;
  if (off.empty() || off.front() != 0 || off.back() != elements.data.size())
    throw std::invalid_argument("ElementSet::write: offsets do not span the data");
  for (std::size_t i = 1; i < off.size(); ++i)
    if (off[i] < off[i - 1]) throw std::invalid_argument("ElementSet::write: offsets decrease");
}

void check_table(const Table& table, std::size_t count) {
  if (table.names.empty() || table.names.size() != table.types.size())
    throw std::invalid_argument("ElementSet::write: the table needs one type per column and a column");
  std::unordered_set<std::string> seen;
  for (const auto& name : table.names)
    if (name.empty() || name.find('\0') != std::string::npos || !seen.insert(name).second)
      throw std::invalid_argument("ElementSet::write: bad or repeated column name '" + name + "'");
  if (table.columns.size() != table.names.size())
    throw std::invalid_argument("ElementSet::write: the table needs one column of cells per name");
  for (std::size_t c = 0; c < table.columns.size(); ++c) {
    const TableColumn& column = table.columns[c];
    const std::size_t ints = column.ints.size(), floats = column.floats.size(), texts = column.ends.size();
    const bool typed = table.types[c] == ColumnType::int64     ? ints == count && floats + texts == 0
                       : table.types[c] == ColumnType::float64 ? floats == count && ints + texts == 0
                                                               : texts == count && ints + floats == 0;
    if (!typed)
      throw std::invalid_argument("ElementSet::write: column '" + table.names[c] +
                                  "' does not hold one cell of its type per element (" +
                                  std::to_string(count) + " elements)");
    // Each text ends with its own NUL: one more would cut a cell short in HDF5.
    if (texts && static_cast<std::size_t>(std::count(column.text.begin(), column.text.end(), '\0')) != texts)
      throw std::invalid_argument("ElementSet::write: NUL byte in column '" + table.names[c] + "'");
  }
}

void write_table(hid_t group, const Table& table, const std::string& where) {
  static_assert(sizeof(std::int64_t) == 8 && sizeof(double) == 8 && sizeof(const char*) == 8,
                "table records are packed as 8-byte slots");
  const std::size_t ncols = table.names.size();
  const std::size_t nrows = table.row_count();
  const std::size_t record = 8 * ncols;

  h5::Id str = h5::string_type(where);
  h5::Id file_type(h5::check(H5Tcreate(H5T_COMPOUND, record), where, "create table type"));
  h5::Id mem_type(h5::check(H5Tcreate(H5T_COMPOUND, record), where, "create table type"));
  for (std::size_t c = 0; c < ncols; ++c) {
    hid_t file_member = str.get(), mem_member = str.get();
    if (table.types[c] == ColumnType::int64) {
      file_member = H5T_STD_I64LE;
      mem_member = H5T_NATIVE_INT64;
    } else if (table.types[c] == ColumnType::float64) {
      file_member = H5T_IEEE_F64LE;
      mem_member = H5T_NATIVE_DOUBLE;
    }
    const std::string what = "add table column " + table.names[c];
    h5::check(H5Tinsert(file_type.get(), table.names[c].c_str(), 8 * c, file_member), where, what);
    h5::check(H5Tinsert(mem_type.get(), table.names[c].c_str(), 8 * c, mem_member), where, what);
  }

  // One packed buffer and one H5Dwrite: per-row HDF5 calls would dominate for 10^6 rows.
  std::vector<unsigned char> buffer(record * nrows);
  for (std::size_t r = 0; r < nrows; ++r) {
    unsigned char* slot = buffer.data() + r * record;
    for (std::size_t c = 0; c < ncols; ++c, slot += 8) {
      const TableColumn& column = table.columns[c];
      if (table.types[c] == ColumnType::int64) {
        std::memcpy(slot, &column.ints[r], 8);
      } else if (table.types[c] == ColumnType::float64) {
        std::memcpy(slot, &column.floats[r], 8);
      } else {
        const char* text = column.text.data() + (r ? column.ends[r - 1] : 0);
        std::memcpy(slot, &text, 8);
      }
    }
  }
  const hsize_t dims[1] = {nrows};
  h5::Id space(h5::check(H5Screate_simple(1, dims, nullptr), where, "create table dataspace"));
  h5::Id dataset(h5::check(
      H5Dcreate2(group, "table", file_type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), where,
      "create /elements/table"));
  if (nrows > 0)
    h5::check(H5Dwrite(dataset.get(), mem_type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data()), where,
              "write /elements/table");
  dataset.close(where);
}

void write_contents(hid_t file, const ElementBuffer& elements, Encoding encoding, const std::string& tag,
                    const Table* table, const std::string& where) {
  h5::Id group(h5::check(H5Gcreate2(file, "elements", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), where,
                         "create group /elements"));

  // /elements/data: chunked, unlimited; chunks are evened out so the last one is not mostly empty.
  const hsize_t bytes = elements.data.size();
  const hsize_t nchunks = bytes == 0 ? 1 : (bytes + kMaxChunkBytes - 1) / kMaxChunkBytes;
  const hsize_t chunk[1] = {bytes == 0 ? 1 : (bytes + nchunks - 1) / nchunks};
  {
    const hsize_t dims[1] = {bytes}, maxdims[1] = {H5S_UNLIMITED};
    h5::Id space(h5::check(H5Screate_simple(1, dims, maxdims), where, "create data dataspace"));
    h5::Id dcpl(h5::check(H5Pcreate(H5P_DATASET_CREATE), where, "create dataset properties"));
    h5::check(H5Pset_chunk(dcpl.get(), 1, chunk), where, "set chunk size of /elements/data");
    h5::check(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), where, "set fill time of /elements/data");
    h5::Id data(h5::check(
        H5Dcreate2(group.get(), "data", H5T_STD_U8LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
        where, "create /elements/data"));
    if (bytes > 0)
      h5::check(H5Dwrite(data.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, elements.data.data()),
                where, "write /elements/data");
    data.close(where);
  }
  {
    const hsize_t dims[1] = {elements.offsets.size()};
    h5::Id space(h5::check(H5Screate_simple(1, dims, nullptr), where, "create offsets dataspace"));
    h5::Id offsets(h5::check(
        H5Dcreate2(group.get(), "offsets", H5T_STD_U64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
        where, "create /elements/offsets"));
    h5::check(
        H5Dwrite(offsets.get(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, elements.offsets.data()),
        where, "write /elements/offsets");
    offsets.close(where);
  }
  if (table) write_table(group.get(), *table, where);

  h5::write_attribute(group.get(), "format", std::string(kFormat), where);
  h5::write_attribute(group.get(), "format_version", kFormatVersion, where);
  h5::write_attribute(group.get(), "count", static_cast<std::uint64_t>(elements.size()), where);
  h5::write_attribute(group.get(), "created", now_utc_iso8601(), where);
  h5::write_attribute(group.get(), "tag", tag, where);
  h5::write_attribute(group.get(), "encoding", std::string(to_string(encoding)), where);
  group.close(where);
}

}  // namespace

std::string_view to_string(Encoding encoding) {
  switch (encoding) {
    case Encoding::json:
      return "json";
    case Encoding::bytes:
      return "bytes";
    case Encoding::boost_binary:
      return "boost-binary";
  }
  return "unknown";
}

Encoding encoding_from_string(std::string_view text) {
  if (text == "json") return Encoding::json;
  if (text == "bytes") return Encoding::bytes;
  if (text == "boost-binary") return Encoding::boost_binary;
  throw UsageError("unknown encoding '" + std::string(text) + "' (expected json, bytes or boost-binary)");
}

struct ElementSet::State {
  std::filesystem::path path;
  std::string where;
  h5::Id file;  // declared before the dataset, so it is released after it
  h5::Id data;
  h5::Id offsets_dataset;
  ElementSetInfo info;
  // Read on first use: opening a set (to learn its size or columns) costs no memory per element.
  mutable std::vector<std::uint64_t> offsets;
  mutable bool offsets_read = false;

  const std::vector<std::uint64_t>& element_offsets() const {
    if (!offsets_read) {
      h5::quiet();
      offsets.resize(info.count + 1);
      h5::check(
          H5Dread(offsets_dataset.get(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offsets.data()),
          where, "read /elements/offsets");
      offsets_read = true;
    }
    return offsets;
  }

  // Reads the disjoint ascending byte ranges (start, length) of /elements/data, packed in
  // order, into `out`.
  void read_ranges(const std::vector<std::pair<hsize_t, hsize_t>>& ranges, char* out) const;
  void read_bytes(hsize_t start, hsize_t length, char* out) const;
};

void ElementSet::State::read_bytes(hsize_t start, hsize_t length, char* out) const {
  if (length == 0) return;
  h5::quiet();
  h5::Id file_space(h5::check(H5Dget_space(data.get()), where, "get dataspace of /elements/data"));
  const hsize_t s[1] = {start}, n[1] = {length};
  h5::check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, s, nullptr, n, nullptr), where,
            "select bytes of /elements/data");
  h5::Id mem_space(h5::check(H5Screate_simple(1, n, nullptr), where, "create memory dataspace"));
  h5::check(H5Dread(data.get(), H5T_NATIVE_UINT8, mem_space.get(), file_space.get(), H5P_DEFAULT, out), where,
            "read /elements/data");
}

void ElementSet::State::read_ranges(const std::vector<std::pair<hsize_t, hsize_t>>& ranges, char* out) const {
  // One H5Dread costs about as much as copying a few KiB, and a union of many hyperslabs costs
  // more per range than separate reads, so ranges closer than kGap are read as one span
  // (through a scratch buffer of at most kMaxSpan) and the others one by one.
  constexpr hsize_t kGap = 4096;
  constexpr hsize_t kMaxSpan = hsize_t{1} << 20;
  std::vector<char> scratch;
  std::size_t i = 0;
  while (i < ranges.size()) {
    const hsize_t span_start = ranges[i].first;
    hsize_t span_end = span_start + ranges[i].second;
    std::size_t j = i;
    while (j + 1 < ranges.size() && ranges[j + 1].first - span_end <= kGap &&
           ranges[j + 1].first + ranges[j + 1].second - span_start <= kMaxSpan) {
      ++j;
      span_end = ranges[j].first + ranges[j].second;
    }
    if (j == i) {
      read_bytes(span_start, ranges[i].second, out);
      out += ranges[i].second;
    } else {
      scratch.resize(span_end - span_start);
      read_bytes(span_start, span_end - span_start, scratch.data());
      for (std::size_t k = i; k <= j; ++k) {
        std::memcpy(out, scratch.data() + (ranges[k].first - span_start), ranges[k].second);
        out += ranges[k].second;
      }
    }
    i = j + 1;
  }
}

void ElementSet::write(const std::filesystem::path& file, const ElementBuffer& elements, Encoding encoding,
                       const std::string& tag, const Table* table) {
  check_buffer(elements);
  if (table) check_table(*table, elements.size());
  const std::string where = file.string();
  std::error_code ec;
  if (std::filesystem::symlink_status(file, ec).type() != std::filesystem::file_type::not_found)
    throw UsageError(where + ": already exists; an element set is never overwritten");

  h5::Id handle = h5::create_file(file);  // exclusive: fails if another writer got there first
  try {
    write_contents(handle.get(), elements, encoding, tag, table, where);
    handle.close(where);
    // HDF5 does not sync on close; the set must survive a node crash once write() returns.
    posix::fsync_fd(posix::open_file(file, O_RDONLY).get(), file);
    posix::fsync_dir(file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path());
  } catch (...) {
    handle.reset();
    std::filesystem::remove(file, ec);  // ours (created exclusively): never leave half a set behind
    throw;
  }
}

ElementSet ElementSet::open(const std::filesystem::path& file) {
  auto state = std::make_unique<State>();
  state->path = file;
  state->where = file.string();
  const std::string& where = state->where;
  auto bad = [&](const std::string& why) {
    return UsageError(where + ": not an mpmux element set (" + why + ")");
  };

  struct stat st {};
  if (::stat(file.c_str(), &st) != 0)
    throw bad(errno == ENOENT ? std::string("no such file") : posix::error_text(errno));
  if (!S_ISREG(st.st_mode)) throw bad("not a regular file");
  if (::access(file.c_str(), R_OK) != 0) throw bad(posix::error_text(errno));

  ElementSetInfo& info = state->info;
  try {
    state->file = h5::open_file_read(file);
    const hid_t f = state->file.get();
    if (!h5::exists(f, "elements", where)) throw bad("no group /elements");
    h5::Id group(h5::check(H5Gopen2(f, "elements", H5P_DEFAULT), where, "open /elements"));
    const hid_t g = group.get();

    auto string_attr = [&](const char* name) {
      if (!h5::has_attribute(g, name, where)) throw bad(std::string("no attribute ") + name);
      auto value = h5::read_string_attribute(g, name, where);
      if (!value) throw bad(std::string("attribute ") + name + " is not a string");
      return *value;
    };
    info.format = string_attr("format");
    if (info.format != kFormat) throw bad("format is '" + info.format + "'");
    if (!h5::has_attribute(g, "format_version", where)) throw bad("no attribute format_version");
    const auto version = h5::read_int64_attribute(g, "format_version", where);
    if (!version) throw bad("attribute format_version is not an integer");
    if (*version != kFormatVersion)
      throw bad("format version " + std::to_string(*version) + ", this mpmux reads version " +
                std::to_string(kFormatVersion));
    if (!h5::has_attribute(g, "count", where)) throw bad("no attribute count");
    const auto count = h5::read_uint64_attribute(g, "count", where);
    if (!count) throw bad("attribute count is not an integer");
    info.count = *count;
    info.created = string_attr("created");
    info.tag = string_attr("tag");
    const std::string encoding = string_attr("encoding");
    try {
      info.encoding = encoding_from_string(encoding);
    } catch (const UsageError&) {
      throw bad("unknown encoding '" + encoding + "'");
    }

    auto open_vector = [&](const char* name, std::size_t element_size) {
      const std::string path = std::string("elements/") + name;
      if (!h5::exists(f, path, where)) throw bad("no dataset /" + path);
      h5::Id dataset(h5::check(H5Dopen2(f, path.c_str(), H5P_DEFAULT), where, "open /" + path));
      h5::Id type(h5::check(H5Dget_type(dataset.get()), where, "get type of /" + path));
      if (H5Tget_class(type.get()) != H5T_INTEGER || H5Tget_size(type.get()) != element_size)
        throw bad("/" + path + " is not of " + std::to_string(element_size) + "-byte integers");
      if (h5::dims(dataset.get(), where).size() != 1) throw bad("/" + path + " is not one-dimensional");
      return dataset;
    };
    state->data = open_vector("data", 1);
    const hsize_t data_size = h5::dims(state->data.get(), where)[0];
    h5::Id offsets = open_vector("offsets", 8);
    const hsize_t n_offsets = h5::dims(offsets.get(), where)[0];
    if (n_offsets != info.count + 1)
      throw bad("/elements/offsets has " + std::to_string(n_offsets) + " entries for count " +
                std::to_string(info.count));
    // Checked in blocks, so that opening a set of any size takes little memory.
    constexpr hsize_t kCheckBlock = 1u << 16;
    std::vector<std::uint64_t> off;
    std::uint64_t front = 0, last = 0;
    std::optional<hsize_t> decrease;  // the first index where the offsets go down
    h5::Id file_space(h5::check(H5Dget_space(offsets.get()), where, "get offsets dataspace"));
    for (hsize_t first = 0; first < n_offsets; first += kCheckBlock) {
      const hsize_t start[1] = {first}, n[1] = {std::min(kCheckBlock, n_offsets - first)};
      off.resize(n[0]);
      h5::check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, n, nullptr), where,
                "select /elements/offsets");
      h5::Id mem_space(h5::check(H5Screate_simple(1, n, nullptr), where, "create memory dataspace"));
      h5::check(H5Dread(offsets.get(), H5T_NATIVE_UINT64, mem_space.get(), file_space.get(), H5P_DEFAULT,
                        off.data()),
                where, "read /elements/offsets");
      if (first == 0) front = last = off.front();
      for (std::size_t k = 0; k < off.size(); ++k) {
        if (off[k] < last && !decrease) decrease = first + k;
        last = off[k];
      }
    }
    if (front != 0 || last != data_size) throw bad("/elements/offsets does not span /elements/data");
    if (decrease) throw bad("/elements/offsets decreases at " + std::to_string(*decrease));
    state->offsets_dataset = std::move(offsets);

    if (h5::exists(f, "elements/table", where)) {
      h5::Id table(h5::check(H5Dopen2(f, "elements/table", H5P_DEFAULT), where, "open /elements/table"));
      h5::Id type(h5::check(H5Dget_type(table.get()), where, "get type of /elements/table"));
      if (H5Tget_class(type.get()) != H5T_COMPOUND) throw bad("/elements/table is not a compound dataset");
      const auto table_dims = h5::dims(table.get(), where);
      if (table_dims.size() != 1 || table_dims[0] != info.count)
        throw bad("/elements/table does not have count rows");
      const int members = h5::check(H5Tget_nmembers(type.get()), where, "get columns of /elements/table");
      for (int m = 0; m < members; ++m) {
        char* name = H5Tget_member_name(type.get(), static_cast<unsigned>(m));
        if (!name) h5::fail(where, "get column name of /elements/table");
        info.columns.emplace_back(name);
        H5free_memory(name);
      }
    }
  } catch (const StoreError& e) {
    // A file HDF5 cannot make sense of (truncated, foreign, damaged) is bad input, not an I/O fault.
    std::string why = e.what();
    if (why.rfind(where + ": ", 0) == 0) why.erase(0, where.size() + 2);
    throw bad(why);
  }
  return ElementSet(std::move(state));
}

ElementSet::ElementSet(std::unique_ptr<State> state) : state_(std::move(state)) {}
ElementSet::ElementSet(ElementSet&&) noexcept = default;
ElementSet& ElementSet::operator=(ElementSet&&) noexcept = default;
ElementSet::~ElementSet() = default;

const ElementSetInfo& ElementSet::info() const { return state_->info; }
std::uint64_t ElementSet::size() const { return state_->info.count; }
const std::filesystem::path& ElementSet::path() const { return state_->path; }

std::string ElementSet::read(std::uint64_t index) const {
  if (index >= size())
    throw std::out_of_range(state_->where + ": element " + std::to_string(index) + " of " +
                            std::to_string(size()));
  const auto& off = state_->element_offsets();
  const hsize_t length = off[index + 1] - off[index];
  std::string out(length, '\0');
  state_->read_bytes(off[index], length, out.data());
  return out;
}

ElementBuffer ElementSet::read_subset(const std::vector<std::uint64_t>& indices) const {
  const auto& off = state_->element_offsets();
  ElementBuffer out;
  out.offsets.reserve(indices.size() + 1);
  // Consecutive indices are adjacent in the file and are read as one range.
  std::vector<std::pair<hsize_t, hsize_t>> ranges;
  for (std::size_t k = 0; k < indices.size(); ++k) {
    const std::uint64_t i = indices[k];
    if (i >= size())
      throw std::out_of_range(state_->where + ": element " + std::to_string(i) + " of " +
                              std::to_string(size()));
    if (k > 0 && i <= indices[k - 1])
      throw std::invalid_argument(state_->where + ": read_subset needs ascending indices");
    const hsize_t length = off[i + 1] - off[i];
    out.offsets.push_back(out.offsets.back() + length);
    if (length == 0) continue;
    if (!ranges.empty() && ranges.back().first + ranges.back().second == off[i]) {
      ranges.back().second += length;
    } else {
      ranges.emplace_back(off[i], length);
    }
  }
  out.data.resize(out.offsets.back());
  state_->read_ranges(ranges, out.data.data());
  return out;
}

ElementBuffer ElementSet::read_all() const {
  ElementBuffer out;
  out.offsets = state_->element_offsets();
  out.data.resize(out.offsets.back());
  state_->read_bytes(0, out.data.size(), out.data.data());
  return out;
}

}  // namespace mpmux
