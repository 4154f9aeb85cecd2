// MuxId::parse: any text is either refused with UsageError or parsed into an id whose printed
// form parses back to the same id.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mpmux/error.hpp"
#include "mpmux/session.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  mpmux::MuxId id;
  try {
    id = mpmux::MuxId::parse(text);
  } catch (const mpmux::UsageError&) {
    return 0;
  }
  auto again = mpmux::MuxId::parse(id.str());
  if (again.dir != id.dir || again.session != id.session) std::abort();
  return 0;
}
