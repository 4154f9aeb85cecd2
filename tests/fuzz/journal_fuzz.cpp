// read_journal on any bytes (torn tails, bad CRCs, damaged headers): either StoreError or a
// result whose counts add up; cutting the torn tail leaves a journal that reads the same
// outcomes with nothing torn.
#include <cstdint>
#include <cstdlib>
#include <filesystem>

#include "fuzz_file.hpp"
#include "mpmux/error.hpp"
#include "mpmux/journal.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto path = fuzz::write_file("j.mjl", data, size);
  mpmux::JournalFile first;
  try {
    first = mpmux::read_journal(path, "");
  } catch (const mpmux::StoreError&) {
    return 0;
  }
  if (first.valid_bytes + first.torn_bytes != size) std::abort();
  auto cut = mpmux::read_journal(path, "", true);
  if (cut.outcomes.size() != first.outcomes.size() || cut.valid_bytes != first.valid_bytes) std::abort();
  auto after = mpmux::read_journal(path, "");
  if (after.torn_bytes != 0 || after.outcomes.size() != first.outcomes.size() ||
      std::filesystem::file_size(path) != first.valid_bytes)
    std::abort();
  return 0;
}
