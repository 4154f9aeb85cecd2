// read_csv on any bytes: UsageError, or elements that are one JSON object per table row.
#include <cstdint>
#include <cstdlib>

#include "fuzz_file.hpp"
#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto path = fuzz::write_file("in.csv", data, size);
  try {
    auto parsed = mpmux::read_csv(path);
    if (!parsed.table || parsed.table->row_count() == 0) std::abort();
    for (std::size_t r = 0; r < parsed.table->row_count(); ++r) (void)parsed.table->row_json(r);
  } catch (const mpmux::UsageError&) {
  }
  return 0;
}
