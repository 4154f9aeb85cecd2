#include "store/uri.hpp"

#include "mpmux/error.hpp"

namespace mpmux::store {

namespace {

bool is_alnum(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

constexpr char kHex[] = "0123456789ABCDEF";

}  // namespace

bool is_plain_path_byte(unsigned char c) {
  return is_alnum(c) || c == '/' || c == '.' || c == '_' || c == '~' || c == '-';
}

std::string show_byte(unsigned char c) {
  if (c >= 0x20 && c < 0x7F) return std::string(1, static_cast<char>(c));
  return std::string("\\x") + kHex[c >> 4] + kHex[c & 0xF];
}

std::string percent_encode_path(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (unsigned char c : path) {
    if (is_plain_path_byte(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

std::string percent_decode_path(std::string_view encoded, std::size_t offset, const std::string& context) {
  auto fail = [&](const std::string& why) { return UsageError(context + ": " + why); };
  std::string path;
  path.reserve(encoded.size());
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    auto c = static_cast<unsigned char>(encoded[i]);
    if (c == '%') {
      bool whole = i + 2 < encoded.size();
      int hi = whole ? hex_value(encoded[i + 1]) : -1;
      int lo = whole ? hex_value(encoded[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        throw fail("bad percent escape '" + std::string(encoded.substr(i, 3)) + "' at byte " +
                   std::to_string(offset + i));
      char decoded = static_cast<char>(hi << 4 | lo);
      if (decoded == '\0') throw fail("the path contains a NUL byte (%00)");
      path.push_back(decoded);
      i += 2;
    } else if (is_plain_path_byte(c)) {
      path.push_back(static_cast<char>(c));
    } else {
      throw fail("character '" + show_byte(c) + "' in the path must be percent-encoded");
    }
  }
  return path;
}

}  // namespace mpmux::store
