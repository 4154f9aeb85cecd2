// The results of a session: one row per element, folded from its journals, exported as CSV,
// JSON Lines or a consolidated HDF5 file (results.h5). See docs/formats.md.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <ostream>
#include <string_view>
#include <vector>

#include "mpmux/export.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/session.hpp"

namespace mpmux {

/// What the journals say about one element.
struct MPMUX_EXPORT ElementResult {
  std::uint64_t index = 0;
  ElementStatus status = ElementStatus::pending;
  std::uint32_t attempts = 0;  // done and failed records seen, over all journals
  /// The record that decides the row: the latest done record (by attempt, then t_end) when
  /// there is one, else the latest failed record; absent when the element was never attempted.
  /// A pending element whose attempt failed with a retry left keeps that failed record.
  std::optional<Outcome> outcome;
};

/// Folds every journal of the session into one row per element, in index order, through the
/// fold of read_session_state() (torn tails ignored, never cut; the same rules for status and
/// attempts). Holds the deciding outcome of every element in memory, results included.
/// Throws StoreError for a corrupt journal, one of another session, or an index >= total.
MPMUX_EXPORT std::vector<ElementResult> read_results(const Session& session);
/// The rows of read_results() handed to `each` one by one, in index order, holding one block of
/// rows at a time (bounded memory for a session of any size); with `only`, just the rows of
/// elements with that status, and only their deciding records are read back. Throws as
/// read_results(), before `each` is called.
MPMUX_EXPORT void for_each_result(const Session& session,
                                  const std::function<void(const ElementResult&)>& each,
                                  std::optional<ElementStatus> only = std::nullopt);

enum class ResultsFormat { csv, jsonl, h5 };
MPMUX_EXPORT std::string_view to_string(ResultsFormat format);
/// "csv", "jsonl" or "h5"; throws UsageError naming the value otherwise.
MPMUX_EXPORT ResultsFormat results_format_from_string(std::string_view text);

/// Columns of every export, in order: index; the element's own fields (the columns of
/// /elements/table, typed as there; for JSON elements without a table the union of their keys
/// in first-seen order; none for bytes and boost-binary sets, whose elements are opaque); then
/// status, attempts, host, rank, pid, start, end, duration, exit_code, signal, timed_out,
/// result, result_truncated, stderr_tail. An element field whose name is taken by one of these
/// columns is renamed element_<name>.
///
/// CSV: RFC 4180 quoting, a header row, LF line ends; times ISO 8601 UTC with microseconds,
/// missing values empty, booleans true/false. Text that is not valid UTF-8 (a binary result, a
/// stderr tail cut inside a character) has the bad bytes replaced by U+FFFD.
MPMUX_EXPORT void write_results_csv(const Session& session, std::ostream& out);
/// JSON Lines: one object per element with the same keys, typed (numbers as numbers, null for
/// missing values); text as for CSV.
MPMUX_EXPORT void write_results_jsonl(const Session& session, std::ostream& out);

/// DIR/sessions/<id>/results.h5.
MPMUX_EXPORT std::filesystem::path results_file(const Session& session);

/// Writes the HDF5 form to `file` (default: results_file(session)) so that a reader sees the
/// old file, the new one or none, never a part: it is built in a temporary file in the same
/// directory, fsynced and renamed over `file`, and the directory is fsynced. Temporary files
/// that killed writers on this host left behind are removed first. Returns the path written.
/// Throws StoreError naming the file; the old file is intact then.
///
/// The compound dataset /results has one row per element, in index order: index u64; the
/// fields as in /elements/table (int64, float64, variable-length UTF-8 string); status 7-byte
/// string; attempts u32; host string; rank i32; pid i64; start, end (Unix seconds) and duration
/// float64; exit_code, signal i32; timed_out, result_truncated bool (h5py's FALSE/TRUE enum);
/// result a UTF-8 string when every result is UTF-8 without NUL bytes, else a variable-length
/// sequence of uint8 (attribute result_encoding "utf-8" or "bytes"); stderr_tail string. Rows
/// never attempted have rank, pid and exit_code -1, NaN times and empty strings. Attributes of
/// /results: format "mpmux-results", format_version 1, session, mux_id, created, total, done,
/// failed, pending, result_encoding.
MPMUX_EXPORT std::filesystem::path write_results_h5(const Session& session,
                                                    const std::filesystem::path& file = {});

/// Writes any format to `file` atomically, as write_results_h5 does.
MPMUX_EXPORT void write_results_file(const Session& session, ResultsFormat format,
                                     const std::filesystem::path& file);

}  // namespace mpmux
