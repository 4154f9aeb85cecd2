// A file replaced atomically: written under a temporary name in the same directory, then fsynced
// and renamed over the target, so a reader sees the old file, the new one or none, never a part.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>

#include "store/fs.hpp"

namespace mpmux {

class ReplacingFile {
 public:
  /// Removes the temporaries of `target` that writers on this host left when they were killed,
  /// then creates a new one (.<name>.tmp-<host>-<pid>-<random>) open for writing. Throws
  /// StoreError "'<target>': cannot write <what>: cannot create '<temporary>': ...".
  ReplacingFile(std::filesystem::path target, std::string_view what);
  /// Removes the temporary unless commit() succeeded.
  ~ReplacingFile();
  ReplacingFile(const ReplacingFile&) = delete;
  ReplacingFile& operator=(const ReplacingFile&) = delete;

  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temporary() const { return temporary_; }
  /// The temporary's descriptor, until close(); writers that open it by name close it first.
  int fd() const { return fd_.get(); }
  void close() { fd_.reset(); }
  /// Makes the temporary durable, renames it over the target and syncs the directory. Throws
  /// StoreError naming the target.
  void commit();

 private:
  std::filesystem::path target_, temporary_;
  posix::Fd fd_;
  bool committed_ = false;
};

}  // namespace mpmux
