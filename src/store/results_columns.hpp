// The columns of the results exports, written once: each column's name, what it holds and how
// it is read from a folded row. How each type of cell prints is the writers' (results_text.cpp
// for CSV and JSON Lines, results_h5.cpp for HDF5), so adding a column is one entry of
// kResultColumns. The element's own fields sit between kIndexColumn and kResultColumns.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "mpmux/results.hpp"

namespace mpmux::results {

/// What a cell holds, which decides how each export prints it.
enum class CellType : std::uint8_t {
  uint32,   // an integer; HDF5 u32
  uint64,   // an integer; HDF5 u64
  int32,    // an integer; HDF5 i32
  int64,    // an integer; HDF5 i64
  float64,  // the shortest text that reads back as the same double, JSON null when not finite
  time,     // ns since the epoch: ISO 8601 UTC with microseconds; in HDF5 Unix seconds (float64)
  flag,     // true or false; in HDF5 h5py's FALSE/TRUE enum
  text,     // text, its bytes that are not UTF-8 replaced; in HDF5 a variable-length string
  status,   // text; in HDF5 a 7-byte string
  result,   // text; in HDF5 a string, or a byte sequence when some result is not UTF-8 text
};

/// One cell of a row. `text` is always followed by a NUL (a whole std::string, a suffix of one
/// or a literal), so HDF5 can take text.data() as a C string.
struct Cell {
  std::int64_t integer = 0;  // integers, time (ns), flag (0 or 1)
  double real = 0;           // float64
  std::string_view text;     // text, status, result
};

inline Cell integer_cell(std::int64_t v) {
  Cell c;
  c.integer = v;
  return c;
}
inline Cell real_cell(double v) {
  Cell c;
  c.real = v;
  return c;
}
inline Cell text_cell(std::string_view v) {
  Cell c;
  c.text = v;
  return c;
}

struct ResultColumn {
  std::string_view name;
  CellType type;
  /// Read from the deciding outcome: a row never attempted has none (CSV empty, JSON null,
  /// HDF5 `absent` for integers, NaN for times and numbers, empty text, false).
  bool of_outcome;
  Cell (*read)(const ElementResult& row);
  std::int64_t absent = 0;
};

/// "pending", "done" or "failed".
inline const char* status_name(ElementStatus s) {
  switch (s) {
    case ElementStatus::done:
      return "done";
    case ElementStatus::failed:
      return "failed";
    case ElementStatus::pending:
      break;
  }
  return "pending";
}

inline double seconds(std::int64_t ns) { return static_cast<double>(ns) / 1e9; }

/// A stderr tail starts where the last 4 KiB began, possibly inside a character: those
/// continuation bytes are dropped rather than shown as replacement characters.
inline std::string_view without_cut_character(std::string_view tail) {
  std::size_t k = 0;
  while (k < 3 && k < tail.size() && (static_cast<unsigned char>(tail[k]) & 0xC0) == 0x80) ++k;
  return tail.substr(k);
}

inline constexpr ResultColumn kIndexColumn{"index", CellType::uint64, false, [](const ElementResult& r) {
                                             return integer_cell(static_cast<std::int64_t>(r.index));
                                           }};

// Every export has these after the element's fields, in this order (docs/formats.md).
inline constexpr ResultColumn kResultColumns[] = {
    {"status", CellType::status, false,
     [](const ElementResult& r) { return text_cell(status_name(r.status)); }},
    {"attempts", CellType::uint32, false, [](const ElementResult& r) { return integer_cell(r.attempts); }},
    {"host", CellType::text, true, [](const ElementResult& r) { return text_cell(r.outcome->host); }},
    {"rank", CellType::int32, true, [](const ElementResult& r) { return integer_cell(r.outcome->worker); },
     -1},
    {"pid", CellType::int64, true, [](const ElementResult& r) { return integer_cell(r.outcome->pid); }, -1},
    {"start", CellType::time, true, [](const ElementResult& r) { return integer_cell(r.outcome->t_start); }},
    {"end", CellType::time, true, [](const ElementResult& r) { return integer_cell(r.outcome->t_end); }},
    {"duration", CellType::float64, true,
     [](const ElementResult& r) { return real_cell(seconds(r.outcome->t_end - r.outcome->t_start)); }},
    {"exit_code", CellType::int32, true,
     [](const ElementResult& r) { return integer_cell(r.outcome->exit_code); }, -1},
    {"signal", CellType::int32, true, [](const ElementResult& r) { return integer_cell(r.outcome->signal); }},
    {"timed_out", CellType::flag, true,
     [](const ElementResult& r) { return integer_cell((r.outcome->flags & Outcome::kTimedOut) != 0); }},
    {"result", CellType::result, true, [](const ElementResult& r) { return text_cell(r.outcome->result); }},
    {"result_truncated", CellType::flag, true,
     [](const ElementResult& r) {
       return integer_cell((r.outcome->flags & Outcome::kResultTruncated) != 0);
     }},
    {"stderr_tail", CellType::text, true,
     [](const ElementResult& r) { return text_cell(without_cut_character(r.outcome->stderr_tail)); }},
};

/// Whether `s` is valid UTF-8 (and free of NUL bytes unless `allow_nul`).
bool is_clean(std::string_view s, bool allow_nul);
/// `s` as valid UTF-8: each invalid byte (and NUL unless allowed) becomes U+FFFD.
std::string clean_text(std::string_view s, bool allow_nul);

}  // namespace mpmux::results
