// RAII over MPI one-sided windows. Every call is checked (the windows return errors instead of
// aborting) and a failure becomes a mpmux::ClaimError naming the call, the window and the rank.
#pragma once
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

#include "mpmux/error.hpp"

namespace mpmux::claim {

/// "MPI_ERR_RMA_SYNC: ..." for an MPI error code.
inline std::string mpi_error_text(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(text, static_cast<std::size_t>(length));
}

/// Returns true when MPI can still be called (destructors run after MPI_Finalize otherwise).
inline bool mpi_is_live() {
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

class Window {
 public:
  /// Where a rank's part of a shared-memory window lies in this process.
  struct Segment {
    void* base = nullptr;
    MPI_Aint bytes = 0;
    int disp_unit = 1;
  };

  Window() = default;

  /// How a window is made. Each flavour may be served by another MPI component (Open MPI:
  /// osc/sm takes shared windows, and MPI_Win_allocate ones when all ranks share a node).
  enum class Creation { allocate_shared, allocate, create, dynamic };

  /// "MPI_Win_allocate_shared" etc.
  static const char* call_name(Creation how) {
    switch (how) {
      case Creation::allocate_shared:
        return "MPI_Win_allocate_shared";
      case Creation::allocate:
        return "MPI_Win_allocate";
      case Creation::create:
        return "MPI_Win_create";
      case Creation::dynamic:
        return "MPI_Win_create_dynamic";
    }
    return "?";
  }

  /// A window made `how`; `rc` gets the MPI error code: creation is collective and may fail on one
  /// flavour and succeed on the next, so the caller agrees with the other ranks before going on.
  /// `memory` is the caller's memory for create and dynamic (attached; kept alive by the caller);
  /// allocate and allocate_shared allocate `bytes` themselves.
  static Window try_make(Creation how, MPI_Comm comm, void* memory, MPI_Aint bytes, int disp_unit,
                         MPI_Info info, std::string name, int& rc) {
    Window w(comm, std::move(name));
    w.how_ = how;
    void* base = memory;
    switch (how) {
      case Creation::allocate_shared:
        rc = MPI_Win_allocate_shared(bytes, disp_unit, info, comm, &base, &w.win_);
        break;
      case Creation::allocate:
        rc = MPI_Win_allocate(bytes, disp_unit, info, comm, &base, &w.win_);
        break;
      case Creation::create:
        rc = MPI_Win_create(memory, bytes, disp_unit, info, comm, &w.win_);
        break;
      case Creation::dynamic:
        rc = MPI_Win_create_dynamic(info, comm, &w.win_);
        if (rc == MPI_SUCCESS && bytes > 0) {
          rc = MPI_Win_attach(w.win_, memory, bytes);
          if (rc == MPI_SUCCESS) w.attached_ = memory;
        }
        break;
    }
    // A dynamic window whose attach failed exists on every rank and is freed by the destructor.
    if (rc != MPI_SUCCESS && how != Creation::dynamic) w.win_ = MPI_WIN_NULL;
    if (rc == MPI_SUCCESS) {
      w.base_ = base;
      w.learn_component();
      rc = MPI_Win_set_errhandler(w.win_, MPI_ERRORS_RETURN);
    }
    return w;
  }

  /// MPI_Win_allocate: `bytes` of this rank's memory, exposed to all ranks of `comm`.
  static Window allocate(MPI_Comm comm, MPI_Aint bytes, int disp_unit, std::string name) {
    return made(Creation::allocate, comm, nullptr, bytes, disp_unit, std::move(name));
  }

  /// MPI_Win_allocate_shared: `comm` must share memory (MPI_COMM_TYPE_SHARED).
  static Window allocate_shared(MPI_Comm comm, MPI_Aint bytes, int disp_unit, std::string name) {
    return made(Creation::allocate_shared, comm, nullptr, bytes, disp_unit, std::move(name));
  }

  /// MPI_Win_create over memory the caller owns and keeps alive longer than the window.
  static Window create(void* base, MPI_Aint bytes, int disp_unit, MPI_Comm comm, std::string name) {
    return made(Creation::create, comm, base, bytes, disp_unit, std::move(name));
  }

  /// Throws the ClaimError of a failed creation: "MPI_Win_create on window 'x' at rank 0 of 4 of
  /// 1020816 bytes failed: MPI_ERR_WIN: invalid window".
  std::string creation_failure(Creation how, MPI_Aint bytes, int rc) const {
    return where(call_name(how), -1) + " of " + std::to_string(bytes) +
           " bytes failed: " + mpi_error_text(rc);
  }

  Window(Window&& other) noexcept { swap(other); }
  Window& operator=(Window&& other) noexcept {
    Window(std::move(other)).swap(*this);
    return *this;
  }
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  /// Collective over the window's communicator: ends the passive epoch if one is open, frees.
  ~Window() {
    if (win_ == MPI_WIN_NULL || !mpi_is_live()) return;
    // Destructors only log: throwing here would terminate during unwinding.
    if (locked_) {
      int rc = MPI_Win_unlock_all(win_);
      if (rc != MPI_SUCCESS) log_failure("MPI_Win_unlock_all", rc);
    }
    if (attached_ != nullptr) {
      int rc = MPI_Win_detach(win_, attached_);
      if (rc != MPI_SUCCESS) log_failure("MPI_Win_detach", rc);
    }
    int rc = MPI_Win_free(&win_);
    if (rc != MPI_SUCCESS) log_failure("MPI_Win_free", rc);
  }

  explicit operator bool() const { return win_ != MPI_WIN_NULL; }
  MPI_Win handle() const { return win_; }
  void* base() const { return base_; }
  const std::string& name() const { return name_; }
  Creation creation() const { return how_; }
  /// The MPI component serving the window as far as the MPI says: Open MPI's osc components
  /// name their windows "<component> window <id>" (rdma, pt2pt, ucx), and osc/sm, which names
  /// none, serves every shared window and reports the "blocking_fence" info key. Empty when the
  /// MPI does not say.
  const std::string& component() const { return component_; }

  /// The component serving `win`, made by `how`, as component() says; empty when the MPI does
  /// not say. Static so that the claim benchmark's bare loops can name theirs the same way.
  static std::string component_of(MPI_Win win, Creation how) {
    char text[MPI_MAX_OBJECT_NAME] = {};
    int length = 0;
    if (MPI_Win_get_name(win, text, &length) == MPI_SUCCESS && length > 0) {
      const std::string window_name(text, static_cast<std::size_t>(length));
      const auto space = window_name.find(' ');
      if (space != std::string::npos && window_name.compare(space, 8, " window ") == 0) {
        return window_name.substr(0, space);
      }
    }
    if (how == Creation::allocate_shared) return "sm";
    MPI_Info info = MPI_INFO_NULL;
    if (MPI_Win_get_info(win, &info) != MPI_SUCCESS || info == MPI_INFO_NULL) return "";
    char value[16] = {};
    int flag = 0;
    MPI_Info_get(info, "blocking_fence", sizeof value - 1, value, &flag);
    MPI_Info_free(&info);
    return flag ? "sm" : "";
  }

  /// Opens one passive epoch on every target for the window's lifetime (closed by the destructor).
  void lock_all(int assertion = MPI_MODE_NOCHECK) {
    check(MPI_Win_lock_all(assertion, win_), "MPI_Win_lock_all");
    locked_ = true;
  }
  void unlock_all() {
    check(MPI_Win_unlock_all(win_), "MPI_Win_unlock_all");
    locked_ = false;
  }
  /// Memory barrier between this process's loads/stores and the window's public copy.
  void sync() const { check(MPI_Win_sync(win_), "MPI_Win_sync"); }
  void flush(int target) const { check(MPI_Win_flush(target, win_), "MPI_Win_flush", target); }

  void fetch_and_op(const void* origin, void* result, MPI_Datatype type, int target, MPI_Aint disp,
                    MPI_Op op) const {
    check(MPI_Fetch_and_op(origin, result, type, target, disp, op, win_), "MPI_Fetch_and_op", target);
  }

  /// Starts a Get of `bytes` bytes from byte displacement `disp` (window with disp_unit 1); complete
  /// it with flush(). Split into pieces because MPI counts are int.
  void get_bytes(void* destination, std::size_t bytes, int target, MPI_Aint disp) const {
    constexpr std::size_t kPiece = std::size_t{1} << 30;
    auto* out = static_cast<char*>(destination);
    while (bytes > 0) {
      const std::size_t n = std::min(bytes, kPiece);
      const int count = static_cast<int>(n);
      check(MPI_Get(out, count, MPI_BYTE, target, disp, count, MPI_BYTE, win_), "MPI_Get", target);
      out += n;
      disp += static_cast<MPI_Aint>(n);
      bytes -= n;
    }
  }

  /// MPI_Win_shared_query: where `target`'s segment of a shared window is mapped in this process.
  Segment shared_query(int target) const {
    Segment s;
    check(MPI_Win_shared_query(win_, target, &s.bytes, &s.disp_unit, &s.base), "MPI_Win_shared_query",
          target);
    return s;
  }

 private:
  Window(MPI_Comm comm, std::string name) : name_(std::move(name)) {
    MPI_Comm_rank(comm, &rank_);
    MPI_Comm_size(comm, &size_);
  }

  void swap(Window& other) noexcept {
    std::swap(win_, other.win_);
    std::swap(base_, other.base_);
    std::swap(name_, other.name_);
    std::swap(rank_, other.rank_);
    std::swap(size_, other.size_);
    std::swap(locked_, other.locked_);
    std::swap(attached_, other.attached_);
    std::swap(how_, other.how_);
    std::swap(component_, other.component_);
  }

  void learn_component() { component_ = component_of(win_, how_); }

  void set_errors_return() {
    check(MPI_Win_set_errhandler(win_, MPI_ERRORS_RETURN), "MPI_Win_set_errhandler");
  }

  std::string where(const char* call, int target) const {
    std::string s = std::string(call) + " on window '" + name_ + "' at rank " + std::to_string(rank_) +
                    " of " + std::to_string(size_);
    if (target >= 0) s += " (target rank " + std::to_string(target) + ")";
    return s;
  }

  void check(int rc, const char* call, int target = -1) const {
    if (rc != MPI_SUCCESS) throw ClaimError(where(call, target) + " failed: " + mpi_error_text(rc));
  }

  // Creation errors are raised through the communicator's error handler, so they only reach us
  // when the caller's communicator returns errors (RmaClaimer's private duplicate does).
  static Window made(Creation how, MPI_Comm comm, void* memory, MPI_Aint bytes, int disp_unit,
                     std::string name) {
    int rc = MPI_SUCCESS;
    Window w = try_make(how, comm, memory, bytes, disp_unit, MPI_INFO_NULL, std::move(name), rc);
    if (rc != MPI_SUCCESS) throw ClaimError(w.creation_failure(how, bytes, rc));
    return w;
  }

  void log_failure(const char* call, int rc) const {
    std::fprintf(stderr, "mpmux: %s failed: %s\n", where(call, -1).c_str(), mpi_error_text(rc).c_str());
  }

  MPI_Win win_ = MPI_WIN_NULL;
  void* base_ = nullptr;
  std::string name_;
  int rank_ = -1;
  int size_ = 0;
  bool locked_ = false;
  void* attached_ = nullptr;  // dynamic windows: the memory to detach before the free
  Creation how_ = Creation::allocate;
  std::string component_;
};

}  // namespace mpmux::claim
