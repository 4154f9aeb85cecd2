// Reading journals record by record without keeping their outcomes, for folds that must run in
// bounded memory (the results export): a scan hands out small references to each record, and a
// RecordReader reads back only the records a fold decided to keep.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "mpmux/journal.hpp"

namespace mpmux::journal_scan {

/// The journals (*.mjl) of `dir`, sorted by name: the order every fold reads them in.
std::vector<std::filesystem::path> journal_files(const std::filesystem::path& dir);

/// One done or failed record of a journal, as a scan sees it.
struct RecordRef {
  std::uint64_t pos = 0;   // byte offset of the frame in its journal
  std::uint32_t size = 0;  // bytes of the whole frame
  RecordType type{};
  std::uint64_t index = 0;
  std::uint32_t attempt = 0;
  std::uint32_t worker = 0;  // MPI rank that ran the attempt
  std::int64_t t_start = 0;
  std::int64_t t_end = 0;
  std::uint32_t pid = 0;
  std::uint8_t flags = 0;
  std::string_view host;    // valid during the callback only
  std::string_view result;  // valid during the callback only
};

/// Calls `each` for every outcome record of `file`, in file order, with the checks and torn-tail
/// rule of read_journal (a torn tail is ignored, and cut after the scan with `cut_torn_tail`).
/// Returns the bytes of the torn tail. Throws StoreError as read_journal.
std::uint64_t for_each_record(const std::filesystem::path& file, std::string_view expect_session,
                              const std::function<void(const RecordRef&)>& each, bool cut_torn_tail = false);

/// Reads single records of one journal back by position. Not thread-safe.
class RecordReader {
 public:
  explicit RecordReader(const std::filesystem::path& file);
  ~RecordReader();
  RecordReader(RecordReader&&) noexcept;
  RecordReader& operator=(RecordReader&&) noexcept;

  /// The record of `size` bytes at `pos` (as a scan reported it). When the bytes are not
  /// buffered, reads [pos, max(pos + size, read_until)) at once, so that callers asking for
  /// records in ascending order read nearby records with one call. Throws StoreError when the
  /// record no longer checks out.
  Outcome read(std::uint64_t pos, std::uint32_t size, std::uint64_t read_until = 0);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mpmux::journal_scan
