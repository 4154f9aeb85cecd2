// The public folds of a session, with the committed batches of its store: see session_fold.hpp.
#include "run/session_fold.hpp"

#include "claim/session_claims.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/results.hpp"
#include "store/object_store.hpp"

namespace mpmux {

namespace run {

std::vector<BatchWinner> session_winners(const Session& session) {
  store::StoreOptions options;
  options.read_only = true;
  const std::unique_ptr<store::ObjectStore> store = store::open_store(session.store_url(), options);
  return claim::read_batch_winners(*store);
}

}  // namespace run

SessionState read_session_state(const Session& session, bool cut_torn_tails) {
  return fold::read_session_state(session, run::session_winners(session), cut_torn_tails);
}

SessionCounts read_session_counts(const Session& session) {
  return fold::read_session_counts(session, run::session_winners(session));
}

void for_each_result(const Session& session, const std::function<void(const ElementResult&)>& each,
                     std::optional<ElementStatus> only) {
  fold::for_each_result(session, run::session_winners(session), each, only);
}

std::vector<ElementResult> read_results(const Session& session) {
  std::vector<ElementResult> rows;
  rows.reserve(session.total());
  for_each_result(session, [&](const ElementResult& r) { rows.push_back(r); });
  return rows;
}

void write_results_csv(const Session& session, std::ostream& out) {
  fold::write_results_csv(session, run::session_winners(session), out);
}

void write_results_jsonl(const Session& session, std::ostream& out) {
  fold::write_results_jsonl(session, run::session_winners(session), out);
}

std::filesystem::path write_results_h5(const Session& session, const std::filesystem::path& file) {
  return fold::write_results_h5(session, run::session_winners(session), file);
}

void write_results_file(const Session& session, ResultsFormat format, const std::filesystem::path& file) {
  fold::write_results_file(session, run::session_winners(session), format, file);
}

}  // namespace mpmux
