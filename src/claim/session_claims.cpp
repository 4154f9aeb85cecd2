#include "claim/session_claims.hpp"

#include <algorithm>
#include <cstdio>

namespace mpmux::claim {

namespace {
std::string six_digits(std::uint32_t round) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06u", round);
  return buf;
}
}  // namespace

std::string round_marker_key(std::uint32_t round) { return "rounds/" + six_digits(round) + ".json"; }

std::string round_prefix(std::uint32_t round) { return "round-" + six_digits(round); }

std::string round_url(std::string_view session_url, std::uint32_t round) {
  std::string url(session_url);
  if (url.empty() || url.back() != '/') url += '/';
  return url + round_prefix(round);
}

std::uint32_t latest_round(store::ObjectStore& store) {
  std::uint32_t latest = 0;
  for (const std::string& key : store.list_keys("rounds/")) {
    unsigned r = 0;
    char tail = 0;
    // Only whole markers count: "rounds/000001.json", nothing else that may lie there.
    if (key.size() == 18 && std::sscanf(key.c_str(), "rounds/%6u.jso%c", &r, &tail) == 2 && tail == 'n')
      latest = std::max<std::uint32_t>(latest, r);
  }
  return latest;
}

}  // namespace mpmux::claim
