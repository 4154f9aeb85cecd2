#include "store/field_text.hpp"

#include <charconv>
#include <cmath>
#include <cstring>

namespace mpmux::field_text {

void append_int64(std::string& out, std::int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_float64(std::string& out, double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back exactly
  const std::string_view text(buf, static_cast<std::size_t>(r.ptr - buf));
  out.append(text);
  // Keep a float a float for the reader: 2.0 is written "2.0", not "2".
  if (std::isfinite(v) && text.find_first_of(".e") == std::string_view::npos) out.append(".0");
}

std::optional<std::int64_t> exact_int64(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  if (std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)) != text) return std::nullopt;
  return value;
}

std::optional<double> exact_float64(std::string_view text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value))
    return std::nullopt;
  std::string printed;
  append_float64(printed, value);
  if (printed != text) return std::nullopt;
  return value;
}

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// End of the JSON number starting at `pos`, or npos when none starts there.
std::size_t number_end(std::string_view s, std::size_t pos) {
  std::size_t i = pos;
  const std::size_t n = s.size();
  if (i < n && s[i] == '-') ++i;
  if (i >= n || !is_digit(s[i])) return std::string_view::npos;
  if (s[i] == '0') {
    ++i;
  } else {
    while (i < n && is_digit(s[i])) ++i;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (i >= n || !is_digit(s[i])) return std::string_view::npos;
    while (i < n && is_digit(s[i])) ++i;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (i >= n || !is_digit(s[i])) return std::string_view::npos;
    while (i < n && is_digit(s[i])) ++i;
  }
  return i;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::size_t skip_space(std::string_view s, std::size_t pos) {
  while (pos < s.size() && is_space(s[pos])) ++pos;
  return pos;
}

// End (past the closing quote) of the JSON string whose opening quote is at `pos`, or npos.
std::size_t string_end(std::string_view s, std::size_t pos) {
  for (std::size_t i = pos + 1; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// End of the JSON value starting at `pos` (no leading space), or npos. Objects and arrays are
// matched by their brackets only.
std::size_t value_end(std::string_view s, std::size_t pos) {
  if (pos >= s.size()) return std::string_view::npos;
  const char c = s[pos];
  if (c == '"') return string_end(s, pos);
  if (c == '{' || c == '[') {
    std::vector<char> open{c};
    for (std::size_t i = pos + 1; i < s.size(); ++i) {
      const char d = s[i];
      if (d == '"') {
        i = string_end(s, i);
        if (i == std::string_view::npos) return i;
        --i;
      } else if (d == '{' || d == '[') {
        open.push_back(d);
      } else if (d == '}' || d == ']') {
        if (open.back() != (d == '}' ? '{' : '[')) return std::string_view::npos;
        open.pop_back();
        if (open.empty()) return i + 1;
      }
    }
    return std::string_view::npos;
  }
  for (std::string_view word : {"true", "false", "null"})
    if (s.substr(pos, word.size()) == word) return pos + word.size();
  return number_end(s, pos);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The four hex digits at s[pos..pos+4) as a code unit, or -1.
long hex4(std::string_view s, std::size_t pos) {
  if (pos + 4 > s.size()) return -1;
  long v = 0;
  for (std::size_t k = 0; k < 4; ++k) {
    const int h = hex_value(s[pos + k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

void append_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The characters of the JSON string `quoted` (with its quotes); a lone surrogate becomes U+FFFD.
std::string unescape(std::string_view quoted) {
  const std::string_view s = quoted.substr(1, quoted.size() - 2);
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      out += s[i];
      continue;
    }
    const char e = s[++i];
    switch (e) {
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        long cp = hex4(s, i + 1);
        if (cp < 0) {
          out += e;
          break;
        }
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          const long low = i + 2 < s.size() && s[i + 1] == '\\' && s[i + 2] == 'u' ? hex4(s, i + 3) : -1;
          if (low >= 0xDC00 && low <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            i += 6;
          } else {
            cp = 0xFFFD;
          }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          cp = 0xFFFD;
        }
        append_utf8(out, static_cast<unsigned long>(cp));
        break;
      }
      default:  // '"', '\\', '/'
        out += e;
        break;
    }
  }
  return out;
}

}  // namespace

bool is_json_number(std::string_view text) { return !text.empty() && number_end(text, 0) == text.size(); }

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the pending run of bytes that need no escape
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
        break;
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

void append_json_cell(std::string& out, std::string_view text) {
  if (is_json_number(text)) {
    out.append(text);
  } else {
    append_json_string(out, text);
  }
}

bool json_members(std::string_view json, std::vector<JsonMember>& members) {
  members.clear();
  auto fail = [&] {
    members.clear();
    return false;
  };
  std::size_t i = skip_space(json, 0);
  if (i >= json.size() || json[i] != '{') return fail();
  i = skip_space(json, i + 1);
  if (i < json.size() && json[i] == '}') return skip_space(json, i + 1) == json.size() || fail();
  for (;;) {
    if (i >= json.size() || json[i] != '"') return fail();
    const std::size_t key_end = string_end(json, i);
    if (key_end == std::string_view::npos) return fail();
    std::string key = unescape(json.substr(i, key_end - i));
    i = skip_space(json, key_end);
    if (i >= json.size() || json[i] != ':') return fail();
    i = skip_space(json, i + 1);
    const std::size_t end = value_end(json, i);
    if (end == std::string_view::npos) return fail();
    members.push_back({std::move(key), json.substr(i, end - i)});
    i = skip_space(json, end);
    if (i < json.size() && json[i] == ',') {
      i = skip_space(json, i + 1);
      continue;
    }
    if (i < json.size() && json[i] == '}') return skip_space(json, i + 1) == json.size() || fail();
    return fail();
  }
}

std::string value_text(std::string_view json_value) {
  if (json_value.size() >= 2 && json_value.front() == '"') return unescape(json_value);
  return std::string(json_value);
}

std::string compact_json(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  for (std::size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (is_space(c)) continue;
    if (c == '"') {
      const std::size_t end = string_end(json, i);
      const std::size_t stop = end == std::string_view::npos ? json.size() : end;
      out.append(json.substr(i, stop - i));
      i = stop - 1;
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace mpmux::field_text
