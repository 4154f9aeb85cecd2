// A small RAII layer over the HDF5 C API. Every call is checked; a failure throws StoreError
// whose message names the file, what was being done and HDF5's error stack. HDF5's automatic
// printing of errors to stderr is switched off for every thread that goes through this layer.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mpmux::h5 {

/// Switches off HDF5's automatic error printing for the calling thread (the library is built
/// thread-safe, which makes that setting per thread). Cheap after the first call.
void quiet();

/// HDF5's error stack of the calling thread as one line, innermost cause last
/// ("H5Fopen: unable to open file; H5F__super_read: file signature not found"); clears it.
std::string error_stack();

/// Throws StoreError("<where>: <what>: <error stack>").
[[noreturn]] void fail(std::string_view where, std::string_view what);

/// Returns `status`, or throws through fail() when it is negative (herr_t, hid_t, htri_t).
template <class T>
T check(T status, std::string_view where, std::string_view what) {
  if (status < 0) fail(where, what);
  return status;
}

/// Owns one HDF5 identifier (file, group, dataset, dataspace, datatype, attribute, property
/// list). Never wrap a predefined identifier such as H5T_NATIVE_INT.
class Id {
 public:
  Id() = default;
  explicit Id(hid_t id) noexcept : id_(id) {}
  Id(Id&& other) noexcept : id_(other.id_) { other.id_ = H5I_INVALID_HID; }
  Id& operator=(Id&& other) noexcept;
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  /// Releases quietly: a destructor runs during unwinding and must not throw; a close whose
  /// outcome matters (a file being written) goes through close().
  ~Id() { reset(); }

  hid_t get() const noexcept { return id_; }
  explicit operator bool() const noexcept { return id_ >= 0; }
  void reset() noexcept;
  /// Closes now and throws StoreError when HDF5 reports a failure (for files: the final flush).
  void close(std::string_view where);

 private:
  hid_t id_ = H5I_INVALID_HID;
};

/// File access properties for every file mpmux opens: no HDF5 file locking, because files live
/// on shared filesystems where flock is missing or lies, and mpmux does its own claiming. Use
/// them everywhere: HDF5 refuses to open a file that is already open in the process with other
/// locking settings.
Id file_access(std::string_view where);

/// Creates `file`, failing when it exists.
Id create_file(const std::filesystem::path& file);
/// Opens `file` read-only.
Id open_file_read(const std::filesystem::path& file);

/// Whether `path` (relative to `loc`) is a link that exists, checking each component.
bool exists(hid_t loc, const std::string& path, std::string_view where);
bool has_attribute(hid_t obj, const char* name, std::string_view where);

/// Variable-length UTF-8 C string type (memory and file).
Id string_type(std::string_view where);

void write_attribute(hid_t obj, const char* name, const std::string& value, std::string_view where);
void write_attribute(hid_t obj, const char* name, std::uint64_t value, std::string_view where);
void write_attribute(hid_t obj, const char* name, std::int32_t value, std::string_view where);

/// Reads a scalar string attribute (fixed or variable length); nullopt when it is not a string.
std::optional<std::string> read_string_attribute(hid_t obj, const char* name, std::string_view where);
/// Reads a scalar integer attribute (any integer type, converted by HDF5); nullopt when it is
/// not an integer.
std::optional<std::int64_t> read_int64_attribute(hid_t obj, const char* name, std::string_view where);
std::optional<std::uint64_t> read_uint64_attribute(hid_t obj, const char* name, std::string_view where);

/// Frees the strings HDF5 allocated while reading variable-length data into `data` (of memory
/// type `type` and dataspace `space`), whatever happens after the read; a failure only clears
/// HDF5's error stack, as in a destructor.
struct VlenReclaim {
  hid_t type, space;
  void* data;
  VlenReclaim(hid_t type_, hid_t space_, void* data_) : type(type_), space(space_), data(data_) {}
  VlenReclaim(const VlenReclaim&) = delete;
  VlenReclaim& operator=(const VlenReclaim&) = delete;
  ~VlenReclaim() {
    if (H5Dvlen_reclaim(type, space, H5P_DEFAULT, data) < 0) H5Eclear2(H5E_DEFAULT);
  }
};

/// Current dimensions of a dataset.
std::vector<hsize_t> dims(hid_t dataset, std::string_view where);

/// Held around HDF5 calls made by code that may run in several threads of one process (runs,
/// the C ABI): an HDF5 built without thread safety must see one call at a time.
inline std::unique_lock<std::mutex> hdf5_lock() {
  static std::mutex mutex;
  static const bool threadsafe = [] {
    hbool_t safe = 0;
    return H5is_library_threadsafe(&safe) >= 0 && safe > 0;
  }();
  return threadsafe ? std::unique_lock<std::mutex>() : std::unique_lock<std::mutex>(mutex);
}

}  // namespace mpmux::h5
