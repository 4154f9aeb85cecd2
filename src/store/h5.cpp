#include "store/h5.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "mpmux/error.hpp"
#include "store/fs.hpp"

namespace mpmux::h5 {

namespace {

// HDF5 closes what is still open from an atexit handler; a file whose close failed (a full disk)
// is then closed once more and HDF5 1.10 crashes there. Every file mpmux writes is a temporary
// that is renamed only after a successful close, so nothing is lost by leaving the rest to the OS.
[[maybe_unused]] const bool kNoAtexit = [] {  // NOLINT(cert-err58-cpp): H5dont_atexit is C
  H5dont_atexit();
  return true;
}();

herr_t walk_error(unsigned /*n*/, const H5E_error2_t* err, void* data) {
  auto& out = *static_cast<std::string*>(data);
  if (!out.empty()) out += "; ";
  out += err->func_name ? err->func_name : "?";
  out += ": ";
  // Some descriptions hold a ctime() with its newline: the message must stay one line.
  for (const char* c = err->desc && *err->desc ? err->desc : "error"; *c != '\0'; ++c)
    out += *c == '\n' || *c == '\r' ? ' ' : *c;
  return 0;
}

herr_t close_id(hid_t id) noexcept {
  switch (H5Iget_type(id)) {
    case H5I_FILE:
      return H5Fclose(id);
    case H5I_GROUP:
      return H5Gclose(id);
    case H5I_DATASET:
      return H5Dclose(id);
    case H5I_DATASPACE:
      return H5Sclose(id);
    case H5I_DATATYPE:
      return H5Tclose(id);
    case H5I_ATTR:
      return H5Aclose(id);
    case H5I_GENPROP_LST:
      return H5Pclose(id);
    default:
      return H5Idec_ref(id) < 0 ? -1 : 0;
  }
}

std::string str(std::string_view s) { return std::string(s); }

}  // namespace

void quiet() {
  thread_local bool done = false;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    done = true;
  }
}

std::string error_stack() {
  std::string out;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_error, &out);
  H5Eclear2(H5E_DEFAULT);
  return out.empty() ? "no HDF5 error stack" : out;
}

void fail(std::string_view where, std::string_view what) {
  throw StoreError(str(where) + ": " + str(what) + ": " + error_stack());
}

Id& Id::operator=(Id&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = other.id_;
    other.id_ = H5I_INVALID_HID;
  }
  return *this;
}

void Id::reset() noexcept {
  if (id_ >= 0) {
    // Nothing can be reported from here; drop the stack so it does not leak into the next error.
    if (close_id(id_) < 0) H5Eclear2(H5E_DEFAULT);
    id_ = H5I_INVALID_HID;
  }
}

void Id::close(std::string_view where) {
  if (id_ < 0) return;
  const hid_t id = id_;
  id_ = H5I_INVALID_HID;
  if (close_id(id) < 0) fail(where, "close");
}

Id file_access(std::string_view where) {
  quiet();
  Id fapl(check(H5Pcreate(H5P_FILE_ACCESS), where, "create file access properties"));
#if H5_VERSION_GE(1, 10, 7)
  check(H5Pset_file_locking(fapl.get(), false, true), where, "switch off HDF5 file locking");
#endif  // older libraries: HDF5_USE_FILE_LOCKING=FALSE in the environment does the same
  return fapl;
}

Id create_file(const std::filesystem::path& file) {
  const std::string where = file.string();
  Id fapl = file_access(where);
  // Created exclusively here, with mpmux's mode: HDF5 would ask for 0666, world-writable under
  // umask 000.
  const int fd = posix::open_file_noexcept(file, O_WRONLY | O_CREAT | O_EXCL, posix::kFileMode);
  if (fd < 0) throw StoreError(where + ": create HDF5 file: " + posix::error_text(-fd));
  ::close(fd);
  const hid_t id = H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (id < 0) ::unlink(file.c_str());  // ours, empty: not left behind
  return Id(check(id, where, "create HDF5 file"));
}

Id open_file_read(const std::filesystem::path& file) {
  const std::string where = file.string();
  Id fapl = file_access(where);
  return Id(check(H5Fopen(file.c_str(), H5F_ACC_RDONLY, fapl.get()), where, "open as HDF5 file"));
}

bool exists(hid_t loc, const std::string& path, std::string_view where) {
  quiet();
  // H5Lexists fails (instead of answering false) when an intermediate group is missing.
  std::size_t pos = 0;
  while (pos <= path.size()) {
    std::size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    const std::string prefix = path.substr(0, slash);
    if (!prefix.empty() && prefix != "/") {
      if (check(H5Lexists(loc, prefix.c_str(), H5P_DEFAULT), where, "look up " + prefix) == 0) return false;
    }
    pos = slash + 1;
  }
  return true;
}

bool has_attribute(hid_t obj, const char* name, std::string_view where) {
  quiet();
  return check(H5Aexists(obj, name), where, std::string("look up attribute ") + name) > 0;
}

Id string_type(std::string_view where) {
  quiet();
  Id type(check(H5Tcopy(H5T_C_S1), where, "copy string type"));
  check(H5Tset_size(type.get(), H5T_VARIABLE), where, "make string type variable-length");
  check(H5Tset_cset(type.get(), H5T_CSET_UTF8), where, "make string type UTF-8");
  return type;
}

namespace {

Id scalar_space(std::string_view where) {
  return Id(check(H5Screate(H5S_SCALAR), where, "create scalar dataspace"));
}

void write_scalar_attribute(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, const void* value,
                            std::string_view where) {
  const std::string what = std::string("write attribute ") + name;
  Id space = scalar_space(where);
  Id attr(check(H5Acreate2(obj, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT), where, what));
  check(H5Awrite(attr.get(), mem_type, value), where, what);
  attr.close(where);
}

// Opens a scalar (one-element) attribute and its type; false when it holds more than one value.
bool open_scalar_attribute(hid_t obj, const char* name, std::string_view where, Id& attr, Id& type) {
  const std::string what = std::string("read attribute ") + name;
  attr = Id(check(H5Aopen(obj, name, H5P_DEFAULT), where, what));
  Id space(check(H5Aget_space(attr.get()), where, what));
  if (check(H5Sget_simple_extent_npoints(space.get()), where, what) != 1) return false;
  type = Id(check(H5Aget_type(attr.get()), where, what));
  return true;
}

template <class T>
std::optional<T> read_integer_attribute(hid_t obj, const char* name, hid_t mem_type, std::string_view where) {
  quiet();
  Id attr, type;
  if (!open_scalar_attribute(obj, name, where, attr, type)) return std::nullopt;
  if (H5Tget_class(type.get()) != H5T_INTEGER) return std::nullopt;
  T value{};
  check(H5Aread(attr.get(), mem_type, &value), where, std::string("read attribute ") + name);
  return value;
}

}  // namespace

void write_attribute(hid_t obj, const char* name, const std::string& value, std::string_view where) {
  quiet();
  Id type = string_type(where);
  const char* text = value.c_str();
  write_scalar_attribute(obj, name, type.get(), type.get(), &text, where);
}

void write_attribute(hid_t obj, const char* name, std::uint64_t value, std::string_view where) {
  quiet();
  write_scalar_attribute(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &value, where);
}

void write_attribute(hid_t obj, const char* name, std::int32_t value, std::string_view where) {
  quiet();
  write_scalar_attribute(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &value, where);
}

std::optional<std::string> read_string_attribute(hid_t obj, const char* name, std::string_view where) {
  quiet();
  const std::string what = std::string("read attribute ") + name;
  Id attr, type;
  if (!open_scalar_attribute(obj, name, where, attr, type)) return std::nullopt;
  if (H5Tget_class(type.get()) != H5T_STRING) return std::nullopt;
  if (check(H5Tis_variable_str(type.get()), where, what) > 0) {
    Id mem = string_type(where);
    char* text = nullptr;
    check(H5Aread(attr.get(), mem.get(), &text), where, what);
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }
  const std::size_t size = H5Tget_size(type.get());
  if (size == 0) fail(where, what);
  Id mem(check(H5Tcopy(H5T_C_S1), where, what));
  check(H5Tset_size(mem.get(), size), where, what);
  std::string value(size, '\0');
  check(H5Aread(attr.get(), mem.get(), value.data()), where, what);
  value.resize(value.find('\0') == std::string::npos ? size : value.find('\0'));
  if (H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD)
    while (!value.empty() && value.back() == ' ') value.pop_back();
  return value;
}

std::optional<std::int64_t> read_int64_attribute(hid_t obj, const char* name, std::string_view where) {
  return read_integer_attribute<std::int64_t>(obj, name, H5T_NATIVE_INT64, where);
}

std::optional<std::uint64_t> read_uint64_attribute(hid_t obj, const char* name, std::string_view where) {
  return read_integer_attribute<std::uint64_t>(obj, name, H5T_NATIVE_UINT64, where);
}

std::vector<hsize_t> dims(hid_t dataset, std::string_view where) {
  quiet();
  Id space(check(H5Dget_space(dataset), where, "get dataspace"));
  const int rank = check(H5Sget_simple_extent_ndims(space.get()), where, "get rank");
  std::vector<hsize_t> out(static_cast<std::size_t>(rank));
  if (rank > 0) check(H5Sget_simple_extent_dims(space.get(), out.data(), nullptr), where, "get dimensions");
  return out;
}

}  // namespace mpmux::h5
