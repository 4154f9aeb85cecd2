// The readers under fuzzing take a file: each input is written to one file in a private
// directory (on /dev/shm when it exists, so no disk is touched), rewritten per input.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace fuzz {

inline const std::filesystem::path& scratch_dir() {
  // Never destroyed: the atexit handler that removes it runs after static destructors.
  static const auto* dir = [] {
    std::string tmpl = std::string(std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp") + "/mpmux-fuzz-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    auto* p = new std::filesystem::path(tmpl);
    std::atexit([] { std::filesystem::remove_all(scratch_dir()); });
    return p;
  }();
  return *dir;
}

/// Writes `data` to scratch_dir()/name (replacing it) and returns the path.
inline std::filesystem::path write_file(const std::string& name, const std::uint8_t* data, std::size_t size) {
  auto path = scratch_dir() / name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) std::abort();
  return path;
}

}  // namespace fuzz
