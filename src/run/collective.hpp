// The one way a step that every rank takes fails together: a failure on any rank ends the step
// on all of them with the same exception type and message, so every rank exits with one code.
#pragma once
#include <mpi.h>

#include <functional>
#include <string>

namespace mpmux::run {

/// Throws MpiError naming `call` and `rank` when `rc` is not MPI_SUCCESS.
void check_mpi(int rc, const char* call, int rank);

/// Collective over `comm`. Runs `step` on this rank, then meets the other ranks: when `step`
/// threw on any rank, every rank throws the error of the lowest rank that failed, as a
/// UsageError, StoreError or Error after its type there, its message prefixed with "rank N: "
/// on every other rank. Returns normally on every rank otherwise.
void all_or_none(MPI_Comm comm, const std::function<void()>& step);

}  // namespace mpmux::run
