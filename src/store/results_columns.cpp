// Text cleaning shared by the results writers; the column table is in results_columns.hpp.
#include "store/results_columns.hpp"

#include <algorithm>

#include "store/utf8.hpp"

namespace mpmux::results {

namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
}  // namespace

bool is_clean(std::string_view s, bool allow_nul) {
  return utf8::first_invalid(s) == std::string_view::npos &&
         (allow_nul || s.find('\0') == std::string_view::npos);
}

std::string clean_text(std::string_view s, bool allow_nul) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    std::size_t bad = utf8::first_invalid(s);
    if (!allow_nul) bad = std::min(bad, s.find('\0'));
    if (bad == std::string_view::npos) {
      out.append(s);
      break;
    }
    out.append(s.substr(0, bad));
    out.append(kReplacement);
    s.remove_prefix(bad + 1);
  }
  return out;
}

}  // namespace mpmux::results
