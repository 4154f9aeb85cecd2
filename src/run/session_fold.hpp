// The committed batches of a session, read from its store for the fold (store/results_fold.hpp):
// the store layer cannot read claims, so the public folds of a session (read_session_state,
// read_session_counts, for_each_result, read_results, the exports) are defined here, at the
// run layer, and read them first.
#pragma once
#include <vector>

#include "mpmux/session.hpp"
#include "store/results_fold.hpp"

namespace mpmux::run {

/// The committed batches of every round of the session's store (empty for a session no
/// participant claimed from). Throws StoreError for a damaged done record or an unreadable store.
std::vector<BatchWinner> session_winners(const Session& session);

}  // namespace mpmux::run
