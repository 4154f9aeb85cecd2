// Typed exceptions. Every message says what was being done to which file, option or rank.
#pragma once
#include <stdexcept>
#include <string>

#include "mpmux/export.hpp"

namespace mpmux {

/// Base of every error mpmux throws.
class MPMUX_EXPORT Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Bad input from the user: a malformed file, option, value or mux id, a missing or destroyed
/// set. Thrown before anything stored is changed; the CLI maps it to exit code 2.
class MPMUX_EXPORT UsageError : public Error {
 public:
  using Error::Error;
};

/// Reading or writing session storage failed (I/O error, full disk, corrupt journal record).
class MPMUX_EXPORT StoreError : public Error {
 public:
  using Error::Error;
};

/// An MPI window or claim operation failed.
class MPMUX_EXPORT ClaimError : public Error {
 public:
  using Error::Error;
};

/// An MPI call of a run failed (duplicating its communicator, a broadcast); the message names
/// the call and the rank.
class MPMUX_EXPORT MpiError : public Error {
 public:
  using Error::Error;
};

}  // namespace mpmux
