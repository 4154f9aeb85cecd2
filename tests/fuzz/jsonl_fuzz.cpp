// read_jsonl on any bytes: UsageError, or at least one element; a table, when kept, has a JSON
// object for every row.
#include <cstdint>
#include <cstdlib>

#include "fuzz_file.hpp"
#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto path = fuzz::write_file("in.jsonl", data, size);
  try {
    auto parsed = mpmux::read_jsonl(path);
    if (parsed.table)
      for (std::size_t r = 0; r < parsed.table->row_count(); ++r) (void)parsed.table->row_json(r);
  } catch (const mpmux::UsageError&) {
  }
  return 0;
}
