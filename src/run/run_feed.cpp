// What joins a run to its session's store (docs/design.md "Every run is a participant"): the
// heartbeat, the batches fed to the local queue or the open hand-out, their commits, and their
// release when the run ends.
#include <cstring>

#include "run/run_state.hpp"

namespace mpmux {

using namespace run_internal;  // NOLINT(google-build-using-namespace): the run's own constants

// What the heartbeat says of this participant (CONTRACT: host, job, counts, rate), refreshed
// every kStatusEvery; it replaces the run.json of earlier versions.
std::string Run::State::about() {
  const auto now = Clock::now();
  const std::uint64_t outcomes = summary.done + summary.failed;
  rate_samples.emplace_back(now, outcomes);
  while (rate_samples.size() > 2 && now - rate_samples[1].first >= std::chrono::seconds(30))
    rate_samples.pop_front();
  const double span = std::chrono::duration<double>(now - rate_samples.front().first).count();
  const double rate = span > 0 ? static_cast<double>(outcomes - rate_samples.front().second) / span : 0.0;
  // Handed to this run's ranks and not recorded: the running ones (at most one per worker),
  // and the rest waiting in chunks.
  std::uint64_t outstanding = 0;
  if (local) {
    outstanding = handed_here - finished_here;
  } else if (claimer) {
    const std::uint64_t handed = std::min(claimer->claimed(), claimer->total());
    const std::uint64_t recorded = summary.done + summary.failed - pass_base;
    outstanding = handed > recorded ? handed - recorded : 0;
  }
  const std::uint64_t running = std::min<std::uint64_t>(outstanding, static_cast<std::uint64_t>(claimers));
  const std::uint64_t open = participant ? participant->open_elements() : 0;
  nlohmann::json j = {{"host", host},
                      {"pid", pid},
                      {"started_unix_ns", started_unix_ns},
                      {"lease_ms", static_cast<std::int64_t>(options.lease_s * 1000)},
                      {"ranks", size},
                      {"workers", claimers},
                      {"done", summary.done},
                      {"failed", summary.failed_for_good},
                      {"running", running},
                      {"claimed", open > running ? open - running : 0},
                      {"rate", rate}};
  if (auto longest = running_elements(); !longest.empty()) j["running_elements"] = std::move(longest);
  if (journal) j["journal"] = journal->path().filename().string();
  if (participant) j["round"] = participant->round();
  if (auto ids = slurm_ids(); !ids.empty()) j["slurm"] = std::move(ids);
  if (claimer && size > 1) {
    nlohmann::json paths = nlohmann::json::array();
    for (const WindowPath& p : claimer->paths()) paths.push_back({{"window", p.window}, {"path", p.path}});
    j["claim_paths"] = std::move(paths);
  }
  return j.dump();
}

// Root: the kRunningListed longest-running elements, its own ranks' and those the workers told of,
// oldest first: [{"index", "attempt", "started_unix_ns", "rank"}].
nlohmann::json Run::State::running_elements() {
  const auto now = Clock::now();
  const std::int64_t unix_now = posix::unix_time_ns();
  std::vector<std::pair<std::int64_t, nlohmann::json>> all;
  all.reserve(running_here.size() + running_reported.size());
  const auto add = [&](std::uint64_t index, std::int64_t started, std::uint32_t attempt, int on_rank) {
    all.emplace_back(
        started,
        nlohmann::json{
            {"index", index}, {"attempt", attempt}, {"started_unix_ns", started}, {"rank", on_rank}});
  };
  for (const auto& [index, since] : running_here)
    add(index, unix_now - std::chrono::duration_cast<std::chrono::nanoseconds>(now - since.first).count(),
        since.second, rank);
  for (const auto& [index, r] : running_reported) add(index, r.started_unix_ns, r.attempt, r.rank);
  const std::size_t n = std::min(all.size(), kRunningListed);
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                    [](const auto& a, const auto& b) { return a.first < b.first; });
  nlohmann::json list = nlohmann::json::array();
  for (std::size_t k = 0; k < n; ++k) list.push_back(std::move(all[k].second));
  return list;
}

// Worker, while its elements run (Run::must_cancel): tells the root of its longest-running
// elements once they have run kRunningNoteAfter, when that list has one the root does not know.
void Run::State::note_running() {
  const auto now = Clock::now();
  last_running_note = now;
  std::vector<std::pair<Clock::time_point, std::uint64_t>> long_ones;
  for (const auto& [index, since] : running_here)
    if (now - since.first >= kRunningNoteAfter) long_ones.emplace_back(since.first, index);
  const std::size_t n = std::min(long_ones.size(), kRunningListed);
  std::partial_sort(long_ones.begin(), long_ones.begin() + static_cast<std::ptrdiff_t>(n), long_ones.end());
  long_ones.resize(n);
  const bool news = std::any_of(long_ones.begin(), long_ones.end(), [&](const auto& e) {
    return std::find(running_noted.begin(), running_noted.end(), e.second) == running_noted.end();
  });
  if (!news) return;
  const std::int64_t unix_now = posix::unix_time_ns();
  std::string note(n * sizeof(RunningNoteEntry), '\0');
  running_noted.clear();
  for (std::size_t k = 0; k < n; ++k) {
    const auto& [since, index] = long_ones[k];
    const RunningNoteEntry entry{
        index, unix_now - std::chrono::duration_cast<std::chrono::nanoseconds>(now - since).count(),
        running_here[index].second};
    std::memcpy(note.data() + k * sizeof entry, &entry, sizeof entry);
    running_noted.push_back(index);
  }
  reap_sends(false);
  sends.emplace_back(bmpi::request(), std::move(note));
  sends.back().first = bcomm->isend(options.root, kTagRunning, sends.back().second.data(),
                                    static_cast<int>(sends.back().second.size()));
}

// Root: a worker's running note; its elements leave the list with their outcome (note_outcome).
void Run::State::take_running_note(int source, std::string_view note) {
  for (std::size_t at = 0; at + sizeof(RunningNoteEntry) <= note.size(); at += sizeof(RunningNoteEntry)) {
    RunningNoteEntry entry{};
    std::memcpy(&entry, note.data() + at, sizeof entry);
    running_reported[entry.index] = {entry.started_unix_ns, entry.attempt, source};
  }
}

void Run::State::write_status() {
  last_status = Clock::now();
  take_unix_offset(last_status);
  if (participant) participant->set_about(about());
}

// A batch is committed once the journal holds each of its outcomes durably: the commit is what
// makes this run's records of the batch the ones kept (the fenced rule of the fold). The journal's
// own group commit makes them durable, so that small batches never cost an fdatasync each; of a
// session on Azure Blob storage, the blob must hold them, which only flush() waits for.
void Run::State::commit_batches() {
  if (!participant || !participant->has_complete() || journal_broken) return;
  if (journal->uploads()) {
    try {
      journal->flush();
    } catch (const StoreError& e) {
      lose_journal(e);
      return;
    }
  }
  participant->commit_complete(journal->durable_records());
}

// Local hand-out: the next chunk of the pass. The first pass takes one store batch at a time;
// retry passes take what failed all at once, as an MPI run does.
bool Run::State::refill_local() {
  chunk = Claim();
  next_in_chunk = 0;
  if (local_tags.empty() && first_pass && participant && !store_ended) {
    std::vector<run::PendingElement> got;
    for (;;) {
      run::SessionParticipant::ClaimStatus status;
      try {
        status = participant->claim(got);
      } catch (const StoreError& e) {
        lose_store(e);
        return false;
      }
      commit_batches();
      if (status == run::SessionParticipant::ClaimStatus::claimed) break;
      if (status == run::SessionParticipant::ClaimStatus::ended) {
        store_ended = true;
        return false;
      }
      // Not ready yet (the store thread claims ahead), or another participant's batch may turn
      // out stale: wait for it, unless elements of ours still run (their end brings this rank
      // back here).
      if (handed_here > finished_here || check_stop()) return false;
      participant->wait_ready(participant->poll_interval());
    }
    const auto retries = static_cast<std::uint32_t>(options.retries);
    for (const run::PendingElement& e : got) local_tags.push_back(make_tag(e.index, e.attempt, retries));
  }
  if (local_tags.empty()) return false;
  std::vector<std::uint64_t> indices(local_tags.size());
  for (std::size_t k = 0; k < local_tags.size(); ++k) indices[k] = local_tags[k] & kMaxIndex;
  {
    auto lock = hdf5_lock();
    chunk.elements = set->read_subset(indices);
  }
  chunk.indices = std::move(local_tags);
  local_tags.clear();
  return true;
}

// Root, MPI: publishes the participant's next batches into the open hand-out while less than
// about one batch (and at least two chunks per worker) is left for the ranks; closes it when the
// store has nothing more to give, so that the ranks end their pass.
void Run::State::refill_published() {
  if (!published_first || !first_pass || !is_root() || !participant || store_ended || !claimer || stop_since)
    return;
  // The root's loop polls every few microseconds; the counter is looked at twice a millisecond.
  const auto now = Clock::now();
  if (now - last_refill < std::chrono::microseconds(500)) return;
  last_refill = now;
  const std::uint64_t published = claimer->published();
  const std::uint64_t left = published - std::min(claimer->claimed(), published);
  const std::uint64_t want =
      std::max<std::uint64_t>(2 * static_cast<std::uint64_t>(claimers) * options.chunk.min, last_batch);
  std::vector<std::uint64_t> positions;
  while (left + positions.size() < want) {
    std::vector<run::PendingElement> got;
    run::SessionParticipant::ClaimStatus status;
    try {
      status = participant->claim(got);
    } catch (const StoreError& e) {
      lose_store(e);
      break;
    }
    if (status == run::SessionParticipant::ClaimStatus::claimed) {
      for (const run::PendingElement& e : got)
        positions.push_back(static_cast<std::uint64_t>(
            std::lower_bound(first_pass_indices.begin(), first_pass_indices.end(), e.index) -
            first_pass_indices.begin()));
      last_batch = got.size();
      continue;
    }
    if (status == run::SessionParticipant::ClaimStatus::ended) store_ended = true;
    break;
  }
  if (!positions.empty()) claimer->publish(positions);
  if (store_ended) claimer->close();
  commit_batches();  // batches that had nothing left to do
}

// Root, MPI, open hand-out: the root must not block in claim(), as it alone publishes.
bool Run::State::claim_published() {
  auto idle = std::chrono::microseconds(20);
  for (;;) {
    refill_published();
    const ClaimStatus status = claimer->try_claim(chunk);
    if (status == ClaimStatus::claimed) return true;
    if (status == ClaimStatus::ended) return false;
    if (!poll()) {
      std::this_thread::sleep_for(idle);
      idle = std::min<std::chrono::microseconds>(idle * 2, std::chrono::microseconds(2000));
    }
  }
}

// The end of this run's part: what it could not finish goes back to the store at once, and the
// heartbeat goes away.
void Run::State::end_participation() {
  if (!participant) return;
  try {
    if (!journal_broken) commit_batches();
    participant->release_open();
    summary.fenced_batches = participant->fenced();
    if (store_ended || !summary.stopped) summary.held_by_others = participant->held_by_others();
  } catch (const Error&) {
    // The store failed: what this run held becomes stale after the lease and is taken over.
  }
  participant.reset();
}

}  // namespace mpmux
