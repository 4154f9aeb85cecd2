// The one fold of a session's journals, in bounded memory for sessions of any size. Every reader
// of a session's state goes through it: the run's pending list (read_session_state), the counts
// of `stat` and `done` (read_session_counts), and the rows of the exports and of `stat`'s failure
// list (for_each_result). A first pass reads every journal once and keeps of each record only a
// 32-byte reference, partitioned by block of element indices (spilled to an unlinked temporary
// file past a budget); then each block is folded on its own and only the deciding records asked
// for are read back. Memory: about the references of one block plus its rows.
//
// Across participants (docs/design.md "The fenced rule"), the committed batches of the session's
// store decide which done record of an element counts: the fold is given them as BatchWinner
// values, read by the layers above (claim::read_batch_winners) since the store layer cannot
// read claims.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/results.hpp"
#include "mpmux/session.hpp"

namespace mpmux {

/// A committed batch of a session's store: elements [first, first + count) of round `round`,
/// whose done record names `participant` (the file stem of that participant's journal).
struct BatchWinner {
  std::uint64_t first = 0, count = 0;
  std::string participant;
  std::uint32_t round = 0;
};

class ResultFold {
 public:
  /// Reads every journal (*.mjl) of `journal_dir` (the first pass); with `cut_torn_tails`, each
  /// journal's torn tail is cut off once it has been read. Throws StoreError for a corrupt
  /// journal, one of another session, or an index >= total, before anything is handed out.
  /// `winners` (any order, rounds may overlap: the latest round's batch covering an element
  /// counts) apply the fenced rule; without them the fold is that of a single participant.
  ResultFold(const std::filesystem::path& journal_dir, std::string_view session_id, std::uint64_t total,
             const std::vector<BatchWinner>& winners = {}, bool cut_torn_tails = false);
  explicit ResultFold(const Session& session, const std::vector<BatchWinner>& winners = {},
                      bool cut_torn_tails = false);
  ~ResultFold();
  ResultFold(const ResultFold&) = delete;
  ResultFold& operator=(const ResultFold&) = delete;

  std::uint64_t total() const;
  /// Bytes of torn tails over all journals (ignored, and cut when the fold was asked to).
  std::uint64_t torn_bytes() const;
  /// Whether some element's deciding record holds a result that is not UTF-8 without NUL.
  bool any_binary_result() const;
  /// Calls `each` with the status and attempts of every element, in index order, without
  /// reading any record back; `fenced` counts its done records that the fenced rule set aside.
  void for_each_state(const std::function<void(std::uint64_t index, ElementStatus status,
                                               std::uint32_t attempts, std::uint32_t fenced)>& each) const;
  /// Calls `each` with the rows of consecutive index blocks, in index order; rows[k] is element
  /// first + k, decided by the rules documented at read_results. The deciding outcome of a row
  /// is read back from its journal only when `read_outcome(status)` says so (always when empty);
  /// the other rows have none.
  void for_each_block(
      const std::function<void(std::uint64_t first, const std::vector<ElementResult>& rows)>& each,
      const std::function<bool(ElementStatus)>& read_outcome = {}) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// What is read through the fold with the winners given; the public functions of the same names
// (mpmux/journal.hpp, mpmux/results.hpp) read the winners of the session's store and call these.
namespace fold {
SessionState read_session_state(const Session& session, const std::vector<BatchWinner>& winners,
                                bool cut_torn_tails);
SessionCounts read_session_counts(const Session& session, const std::vector<BatchWinner>& winners);
void for_each_result(const Session& session, const std::vector<BatchWinner>& winners,
                     const std::function<void(const ElementResult&)>& each,
                     std::optional<ElementStatus> only);
void write_results_csv(const Session& session, const std::vector<BatchWinner>& winners, std::ostream& out);
void write_results_jsonl(const Session& session, const std::vector<BatchWinner>& winners, std::ostream& out);
std::filesystem::path write_results_h5(const Session& session, const std::vector<BatchWinner>& winners,
                                       const std::filesystem::path& file);
void write_results_file(const Session& session, const std::vector<BatchWinner>& winners, ResultsFormat format,
                        const std::filesystem::path& file);
}  // namespace fold

}  // namespace mpmux
