// Errors raised by the intra-node pools (ThreadPool, ProcessPool).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mpmux/error.hpp"
#include "mpmux/export.hpp"

namespace mpmux {

/// A pool could not start, feed or stop its workers (fork, mmap, pidfd, affinity failed).
class MPMUX_EXPORT PoolError : public Error {
 public:
  using Error::Error;
};

/// Why one element produced no result.
enum class FailureKind : std::uint8_t {
  exception = 1,  ///< the task threw; message is what() (or "unknown exception")
  timeout = 2,    ///< the task ran past PoolOptions::task_timeout and its worker was killed
  crash = 3,      ///< the worker died while running it, more than max_crash_retries times
};

/// One element that failed, by its position in the input sequence (0-based).
struct MPMUX_EXPORT Failure {
  std::uint64_t index = 0;
  FailureKind kind = FailureKind::exception;
  std::string message;
};

/// Thrown by a map/apply call when elements failed. With OnError::raise_first it carries the
/// first failure seen; with OnError::report_all every failure, sorted by index, after all other
/// elements were processed.
class MPMUX_EXPORT TaskError : public PoolError {
 public:
  explicit TaskError(std::vector<Failure> failures);
  const std::vector<Failure>& failures() const { return failures_; }

 private:
  std::vector<Failure> failures_;
};

}  // namespace mpmux
