// The journals of a session folded into one row per element in bounded memory, for exports of
// any size. A first pass reads every journal once and keeps of each record only a 32-byte
// reference, partitioned by block of element indices (spilled to an unlinked temporary file
// past a budget); then each block is folded on its own and only its deciding records are read
// back. Memory: about the references of one block plus its rows, whatever the session's size.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "mpmux/results.hpp"
#include "mpmux/session.hpp"

namespace mpmux {

class ResultFold {
 public:
  /// Reads every journal of the session (the first pass). Throws StoreError for a corrupt
  /// journal, one of another session, or an index >= total, before anything is handed out.
  explicit ResultFold(const Session& session);
  ~ResultFold();
  ResultFold(const ResultFold&) = delete;
  ResultFold& operator=(const ResultFold&) = delete;

  std::uint64_t total() const;
  /// Whether some element's deciding record holds a result that is not UTF-8 without NUL.
  bool any_binary_result() const;
  /// Calls `each` with the rows of consecutive index blocks, in index order; rows[k] is element
  /// first + k, decided by the rules documented at read_results.
  void for_each_block(
      const std::function<void(std::uint64_t first, const std::vector<ElementResult>& rows)>& each) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mpmux
