// The C++ face of mpmux: an element set of any Boost-serializable type, read sessions on it,
// and a range-for that yields each element to exactly one rank of a communicator.
//
//   auto mux = mpmux::Multiplexer<Params>::create(grid, "/scratch/ana/mux", {.tag = "sweep"});
//   std::string id = mux.create_read_session();
//   mpmux::Multiplexer<Params> work(id, MPI_COMM_WORLD);   // or work(id): a process without MPI
//   for (auto& e : work) e.set_result(simulate(e.value()));
#pragma once
#include <mpi.h>

#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/iostreams/device/back_inserter.hpp>
#include <boost/iostreams/stream.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <memory>
#include <optional>
#include <streambuf>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "mpmux/element_set.hpp"
#include "mpmux/error.hpp"
#include "mpmux/journal.hpp"
#include "mpmux/mpi.hpp"
#include "mpmux/results.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"

namespace mpmux {

/// Options of Multiplexer<T>::create.
struct CreateOptions {
  std::string tag;
};

namespace detail {
// A read-only stream buffer over bytes, much lighter than a std::istringstream copy.
class MemoryBuf : public std::streambuf {
 public:
  explicit MemoryBuf(std::string_view bytes) {
    char* p = const_cast<char*>(bytes.data());
    setg(p, p, p + bytes.size());
  }
};

// Boost's binary archive stores an arithmetic value as its raw bytes; for those the archive
// is skipped on the hot path, with the same bytes as a result.
template <class T>
std::string serialize(const T& value) {
  if constexpr (std::is_arithmetic_v<T>) {
    return std::string(reinterpret_cast<const char*>(&value), sizeof value);
  } else {
    std::string bytes;
    {
      boost::iostreams::stream<boost::iostreams::back_insert_device<std::string>> out(bytes);
      boost::archive::binary_oarchive archive(out, boost::archive::no_header);
      archive << value;
    }
    return bytes;
  }
}
template <class T>
T deserialize(std::string_view bytes) {
  T value;
  if constexpr (std::is_arithmetic_v<T>) {
    if (bytes.size() != sizeof value)
      throw UsageError("element of " + std::to_string(bytes.size()) + " bytes is not a value of " +
                       std::to_string(sizeof value));
    std::memcpy(&value, bytes.data(), sizeof value);
  } else {
    MemoryBuf buf(bytes);
    boost::archive::binary_iarchive archive(buf, boost::archive::no_header);
    archive >> value;
  }
  return value;
}
}  // namespace detail

template <class T>
class Multiplexer {
 public:
  /// One element handed to this rank. Its outcome is recorded when the loop moves on: done,
  /// with the result set by set_result (empty by default).
  class Element {
   public:
    std::uint64_t index() const { return index_; }
    /// 1 on the first attempt at this element, counted across runs of the session.
    std::uint32_t attempt() const { return attempt_; }
    /// The element, deserialized on first use.
    const T& value() const {
      if (!value_) value_.emplace(detail::deserialize<T>(bytes_));
      return *value_;
    }
    /// The result kept for this element in the session (bytes, any size).
    void set_result(std::string result) { result_ = std::move(result); }

   private:
    friend class Multiplexer;
    std::uint64_t index_ = 0;
    std::uint32_t attempt_ = 1;
    std::string_view bytes_;
    mutable std::optional<T> value_;
    std::string result_;
  };

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Element;
    using difference_type = std::ptrdiff_t;
    using pointer = Element*;
    using reference = Element&;

    iterator() = default;
    Element& operator*() const { return owner_->current_; }
    Element* operator->() const { return &owner_->current_; }
    iterator& operator++() {
      owner_->advance();
      if (!owner_->has_current_) owner_ = nullptr;
      return *this;
    }
    bool operator==(const iterator& other) const { return owner_ == other.owner_; }

   private:
    friend class Multiplexer;
    explicit iterator(Multiplexer* owner) : owner_(owner) {}
    Multiplexer* owner_ = nullptr;
  };

  /// Stores `data` (any range of Boost-serializable T) as a new element set under `root` and
  /// returns a handle on it. Durable when it returns. Not collective: call it on one rank.
  template <class Range>
  static Multiplexer create(const Range& data, const std::filesystem::path& root,
                            const CreateOptions& options = {}) {
    ParsedElements parsed;
    parsed.encoding = Encoding::boost_binary;
    for (const auto& value : data) parsed.elements.push(detail::serialize<T>(value));
    if (parsed.elements.size() == 0) throw UsageError("Multiplexer::create: the range is empty");
    return Multiplexer(create_mux(root, parsed, options.tag));
  }

  /// A handle on an existing mux directory.
  explicit Multiplexer(std::filesystem::path mux_dir) : dir_(std::move(mux_dir)) {}

  /// Binds to a read session. Iterating is collective over `comm`: every rank must run the loop.
  /// With MPI_COMM_NULL (or MPI_COMM_SELF, or any communicator of one rank) the loop is a plain
  /// participant of the session that makes no MPI call: several processes or threads may each
  /// iterate the same session, and each element goes to one of them.
  Multiplexer(std::string_view mux_id, MPI_Comm comm, RunOptions options = {})
      : dir_(MuxId::parse(mux_id).dir),
        id_(MuxId::parse(mux_id)),
        comm_(comm),
        options_(std::move(options)) {}
  /// Given a mux id (file://...#s=SESSION): binds to that read session without MPI, as
  /// Multiplexer(mux_id, MPI_COMM_NULL, options). Given anything else: a handle on the mux
  /// directory of that path, as the constructor from a path.
  explicit Multiplexer(std::string_view mux_id_or_dir, RunOptions options = {})
      : options_(std::move(options)) {
    if (mux_id_or_dir.find("://") == std::string_view::npos) {
      dir_ = std::filesystem::path(mux_id_or_dir);
    } else {
      id_ = MuxId::parse(mux_id_or_dir);
      dir_ = id_->dir;
    }
  }
  explicit Multiplexer(const std::string& mux_id_or_dir, RunOptions options = {})
      : Multiplexer(std::string_view(mux_id_or_dir), std::move(options)) {}
  explicit Multiplexer(const char* mux_id_or_dir, RunOptions options = {})
      : Multiplexer(std::string_view(mux_id_or_dir), std::move(options)) {}

  /// Creates a new, independent read session and returns its mux id (a printable URI).
  std::string create_read_session() const { return Session::create(dir_).id().str(); }

  const std::filesystem::path& dir() const { return dir_; }
  std::uint64_t size() const { return ElementSet::open(dir_ / "elements.h5").size(); }
  /// Counts from the session's journals (needs a session).
  Stat stat() const { return session_stat(Session::open(session_id())); }
  /// True when every element of the session is done.
  bool done() const {
    const Stat s = stat();
    return s.done == s.total;
  }
  /// One row per element of the session, in index order: status, attempts and the outcome
  /// that decided it, with the result recorded by set_result.
  std::vector<ElementResult> results() const { return read_results(Session::open(session_id())); }
  /// Removes the element set and all its sessions.
  void destroy() const { destroy_mux(dir_); }

  /// Collective. Starts the run: each pending element goes to exactly one rank. The root rank
  /// coordinates (journals what workers report) and yields nothing unless options.root_works
  /// or it is alone. When the loop ends on every rank, every outcome is durable.
  iterator begin() {
    run_ = std::make_unique<Run>(session_id(), comm_, options_);
    has_current_ = false;
    advance();
    return has_current_ ? iterator(this) : iterator();
  }
  iterator end() { return iterator(); }

  /// Collective, like the range-for, but a task may fail: fn(element) is called for each
  /// element this rank gets; an exception thrown by fn is a failed attempt (its what() kept as
  /// the stderr tail), retried up to options.retries times on any rank, and failed for good
  /// after that. Returns what this rank recorded.
  template <class F>
  RunSummary for_each(F&& fn) {
    Run run(session_id(), comm_, options_);
    WorkItem item;
    Element e;
    while (run.next(item)) {
      e.index_ = item.index;
      e.attempt_ = item.attempt;
      e.bytes_ = item.bytes;
      e.value_.reset();
      e.result_.clear();
      Outcome outcome;  // its times are filled in by record()
      try {
        fn(e);
        outcome.type = RecordType::done;
        outcome.result = std::move(e.result_);
      } catch (const std::exception& error) {
        outcome.type = RecordType::failed;
        outcome.exit_code = 1;
        outcome.stderr_tail = error.what();
      } catch (...) {
        outcome.type = RecordType::failed;
        outcome.exit_code = 1;
        outcome.stderr_tail = "unknown exception";
      }
      run.record(outcome);
    }
    return summary_ = run.finish();
  }

  /// What the last loop recorded, as seen by this rank.
  RunSummary summary() const { return summary_; }

 private:
  const MuxId& session_id() const {
    if (!id_) throw UsageError("this Multiplexer has no read session: construct it from a mux id");
    return *id_;
  }

  void advance() {
    if (has_current_) {
      Outcome outcome;
      outcome.type = RecordType::done;
      outcome.result = std::move(current_.result_);
      run_->record(outcome);
    }
    WorkItem item;
    has_current_ = run_->next(item);
    if (!has_current_) {
      summary_ = run_->finish();
      run_.reset();
      return;
    }
    current_.index_ = item.index;
    current_.attempt_ = item.attempt;
    current_.bytes_ = item.bytes;
    current_.value_.reset();
    current_.result_.clear();
  }

  std::filesystem::path dir_;
  std::optional<MuxId> id_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  RunOptions options_;
  std::unique_ptr<Run> run_;
  Element current_;
  bool has_current_ = false;
  RunSummary summary_;
};

}  // namespace mpmux
