// Mux directories, read sessions and mux ids.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/export.hpp"

namespace mpmux {

/// A printable reference to one read session of one mux, safe in an environment variable and as
/// a shell word: file:///abs/path/to/20261121-233500-grid#s=20261121T233512Z-7f3a (path bytes
/// outside [A-Za-z0-9/._~-] are percent-encoded) for a mux directory, or
/// az://ACCOUNT/CONTAINER/PREFIX/20261121-233500-grid#s=20261121T233512Z-7f3a for a mux on Azure
/// Blob storage (bytes outside [A-Za-z0-9/._~-] are refused). An id never holds a secret.
struct MPMUX_EXPORT MuxId {
  std::filesystem::path dir;  // the mux directory, absolute; of a remote mux, its local mirror
  std::string session;        // the session id
  std::string remote;         // az://ACCOUNT/CONTAINER/PREFIX/<mux>, or empty for a mux directory

  bool is_remote() const { return !remote.empty(); }
  std::string str() const;
  /// Throws UsageError naming the id for anything malformed or of an unknown scheme.
  static MuxId parse(std::string_view text);
};

/// The URL of a mux on Azure Blob storage, az://ACCOUNT/CONTAINER[/PREFIX]/<mux> without a
/// trailing '/'. Throws UsageError naming `what` and the text when it is malformed.
MPMUX_EXPORT std::string remote_mux_url(std::string_view text, std::string_view what);

/// Where a remote mux is mirrored on this machine: $MPMUX_CACHE, else $XDG_CACHE_HOME/mpmux,
/// else ~/.cache/mpmux, then az/ACCOUNT/CONTAINER/PREFIX/<mux>. Session::open of a remote
/// session fills it (folders 0700); nothing in it is needed again, it is a cache.
MPMUX_EXPORT std::filesystem::path mux_cache_dir(const std::string& remote_mux);

/// Creates ROOT/<YYYYMMDD-HHMMSS>[-tag]/elements.h5 (UTC time) atomically (built in a hidden
/// temporary directory under ROOT, then renamed; on a name collision within the same second
/// ".2", ".3" ... is appended). ROOT is created when missing. Throws UsageError for an
/// unwritable ROOT or a tag outside [A-Za-z0-9_.-] or longer than 64; nothing is left behind on
/// error. Returns the mux directory, absolute. Durable on return.
MPMUX_EXPORT std::filesystem::path create_mux(const std::filesystem::path& root,
                                              const ParsedElements& elements, const std::string& tag);

/// Removes a mux directory with its element set and all its sessions. Throws UsageError when
/// `dir` is missing or is not a mux directory (no elements.h5), so it never removes anything
/// else. The directory is first renamed out of sight, so readers see the mux whole or gone.
MPMUX_EXPORT void destroy_mux(const std::filesystem::path& dir);

/// The same on Azure Blob storage under ROOT = az://ACCOUNT/CONTAINER[/PREFIX] (the container
/// must exist): elements.h5 is built locally, uploaded by exclusive create under
/// ROOT/<name>/elements.h5, then the marker ROOT/<name>/mux.json (its checksum, size and count)
/// is created, which makes the mux visible whole. Returns az://.../<name>.
MPMUX_EXPORT std::string create_remote_mux(const std::string& root_url, const ParsedElements& elements,
                                           const std::string& tag);

/// Removes every blob of a remote mux (the marker first, so readers see it gone) and its local
/// mirror. Throws UsageError when there is no mux (no mux.json) at `mux_url`.
MPMUX_EXPORT void destroy_remote_mux(const std::string& mux_url);

/// A mux as a user names it: a mux directory, its file:// URL, an az:// mux URL, or the mux id
/// of one of its sessions. Exactly one of `dir` (absolute) and `remote` is set; `session` when a
/// mux id was given.
struct MPMUX_EXPORT MuxLocation {
  std::filesystem::path dir;
  std::string remote;
  std::string session;
  /// Throws UsageError naming `what` and the text for an unknown scheme or a malformed URL.
  static MuxLocation parse(std::string_view text, std::string_view what);
  /// Elements of the set (of a remote mux only through a mux id: UsageError otherwise).
  std::uint64_t size() const;
  /// Session::create or Session::create_remote.
  class Session create_session() const;
  /// destroy_mux or destroy_remote_mux.
  void destroy() const;
};

/// Where `mpmux new` makes a mux: a directory, a file:// URL or az://ACCOUNT/CONTAINER[/PREFIX].
struct MPMUX_EXPORT MuxRoot {
  std::filesystem::path dir;
  std::string remote;
  /// Throws UsageError naming `what` and the text for any other scheme.
  static MuxRoot parse(std::string_view text, std::string_view what);
  /// create_mux or create_remote_mux; returns the mux directory or the az:// URL of the mux.
  std::string create(const ParsedElements& elements, const std::string& tag) const;
};

/// An element a participant is running, from its heartbeat: the longest-running few of it.
struct MPMUX_EXPORT RunningElement {
  std::uint64_t index = 0;
  std::uint32_t attempt = 0;         // 0 when the heartbeat did not say
  std::int64_t started_unix_ns = 0;  // when it was handed to a worker, by the participant's clock
  std::int64_t rank = -1;            // the rank of the participant's job running it; -1 unknown
};

/// A live participant of a session (a run or Multiplexer loop whose heartbeat is within its
/// lease), as its last heartbeat tells; fields it did not report are empty or 0.
struct MPMUX_EXPORT ParticipantStat {
  std::string id;  // its journal's file stem
  std::string host;
  std::int64_t pid = 0;
  /// Slurm's SLURM_JOB_ID, SLURM_ARRAY_JOB_ID and SLURM_ARRAY_TASK_ID of its job; empty outside Slurm.
  std::string slurm_job_id, slurm_array_job_id, slurm_array_task_id;
  std::uint64_t ranks = 0;
  double heartbeat_age_s = 0;  // since its last heartbeat, by this machine's wall clock
  std::uint64_t done = 0, failed = 0, running = 0, claimed = 0;
  double rate = 0;  // elements per second over its last ~30 s
  /// Its longest-running elements, oldest first (at most 8; in an MPI job only those running for
  /// a second or more on ranks other than the root); empty when its heartbeat does not say.
  std::vector<RunningElement> running_elements;
};

/// A batch of the latest round that nobody works on, waiting for a participant to reclaim it:
/// no done record, and its owner's heartbeat is missing or older than the round's lease (by wall
/// clock; advisory, the claimers judge staleness on their own clocks). `participant` is empty
/// for a released batch.
struct MPMUX_EXPORT StaleBatch {
  std::uint32_t round = 0;
  std::uint64_t first = 0, count = 0, epoch = 0;
  std::string participant;
};

/// Counts of a session. pending = total - done - failed - running - claimed.
struct MPMUX_EXPORT Stat {
  std::uint64_t total = 0, done = 0, failed = 0, pending = 0;
  /// Summed over live participants: elements executing now, and elements handed to their ranks
  /// but not started.
  std::uint64_t running = 0, claimed = 0;
  /// Done records set aside by the fenced rule (late results of batches another participant
  /// committed).
  std::uint64_t fenced = 0;
  /// Elements per second of all live participants, and the seconds the open elements (pending,
  /// claimed, running) take at that rate; eta_s < 0 when the rate is 0.
  double rate = 0, eta_s = -1;
  std::vector<ParticipantStat> participants;
  std::vector<StaleBatch> stale_batches;
  /// While a run is live: how its claimer serves each window, {window, path} ("counter", "sm").
  std::vector<std::pair<std::string, std::string>> claim_paths;
};

/// One read session: DIR/sessions/<id>/ with session.json (immutable), journal/ and results.h5.
class MPMUX_EXPORT Session {
 public:
  /// Creates a new, independent session on a mux directory; id like 20261121T233512Z-7f3a
  /// (UTC time and 4 random hex digits). The session directory appears whole (session.json and
  /// an empty journal/) and durable, or not at all. Throws UsageError when the mux directory is
  /// missing or its elements.h5 is not a valid set, StoreError when writing fails.
  static Session create(const std::filesystem::path& mux_dir);
  /// The same on a remote mux (remote_mux_url): session.json is created exclusively under
  /// MUX/sessions/<id>/; nothing is downloaded.
  static Session create_remote(const std::string& mux_url);
  /// Opens an existing session. Throws UsageError when the mux directory or the session does
  /// not exist (destroyed, mistyped), session.json is unreadable or disagrees with elements.h5,
  /// or elements.h5 is not a valid set. Reads attributes only, no element data.
  /// A remote session is first mirrored into id.dir: session.json, elements.h5 once per
  /// checksum (verified after download), and the journals from the length already mirrored.
  static Session open(const MuxId& id);

  const MuxId& id() const { return id_; }
  std::filesystem::path mux_dir() const { return id_.dir; }
  std::filesystem::path dir() const;            // DIR/sessions/<id>
  std::filesystem::path journal_dir() const;    // DIR/sessions/<id>/journal
  std::filesystem::path elements_file() const;  // DIR/elements.h5
  /// Where the session's claim objects live (claim/session_claims.hpp): the session directory
  /// as an absolute path for a local session; az://ACCOUNT/CONTAINER/PREFIX/<mux>/sessions/<id>
  /// for a session on Azure Blob storage (its journals are journal/<name>.mjl there).
  std::string store_url() const;
  std::uint64_t total() const { return total_; }

 private:
  Session(MuxId id, std::uint64_t total) : id_(std::move(id)), total_(total) {}
  MuxId id_;
  std::uint64_t total_ = 0;
};

}  // namespace mpmux
