// CommandTemplate::parse on any text, with and without a shell (the first byte chooses): either
// UsageError, or a template that renders for an element holding every field it names.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mpmux/command.hpp"
#include "mpmux/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  bool shell = (data[0] & 1) != 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    auto tmpl = mpmux::CommandTemplate::parse(text, shell);
    tmpl.check_fields(tmpl.fields());
    nlohmann::json element = nlohmann::json::object();
    for (const auto& f : tmpl.fields()) element[f] = "it's a {value} \"with\" spaces";
    (void)tmpl.render(7, element.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } catch (const mpmux::UsageError&) {
  }
  return 0;
}
