// The extern "C" boundary: every call runs its body through `guarded`, which turns whatever the
// C++ library throws into a status code and a thread-local message, so nothing crosses it.
#pragma once
#include <cstdint>
#include <new>
#include <string>
#include <string_view>

#include "mpmux/error.hpp"
#include "mpmux/mpmux.h"

namespace mpmux::capi {

/// An error with its own status code (NULL arguments, a handle in the wrong state, an ABI
/// mismatch); library errors keep theirs: UsageError is MPMUX_USAGE, bad_alloc MPMUX_NO_MEMORY,
/// anything else MPMUX_FAILED.
class CallError : public Error {
 public:
  CallError(int code, const std::string& message) : Error(message), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

/// Keeps `message` for mpmux_last_error() in this thread and returns `code`. Never throws.
int fail(int code, std::string_view message) noexcept;

template <class Body>
int guarded(Body&& body) noexcept {
  try {
    body();
    return MPMUX_OK;
  } catch (const CallError& e) {
    return fail(e.code(), e.what());
  } catch (const UsageError& e) {
    return fail(MPMUX_USAGE, e.what());
  } catch (const std::bad_alloc&) {
    return fail(MPMUX_NO_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return fail(MPMUX_FAILED, e.what());
  } catch (...) {
    return fail(MPMUX_FAILED, "unknown exception");
  }
}

/// Throws CallError(MPMUX_USAGE, "<call>: <name> is NULL") when `p` is NULL.
template <class T>
void require(const T* p, const char* call, const char* name) {
  if (p == nullptr) throw CallError(MPMUX_USAGE, std::string(call) + ": " + name + " is NULL");
}

/// Throws CallError(MPMUX_ABI_MISMATCH) naming both versions unless `caller` is this library's.
void check_abi(std::uint32_t caller, const char* call);

/// A copy of `text` the caller frees with mpmux_free, into *out.
void copy_out(std::string_view text, char** out);

}  // namespace mpmux::capi
