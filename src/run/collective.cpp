#include "run/collective.hpp"

#include <exception>

#include "claim/window.hpp"
#include "mpmux/error.hpp"

namespace mpmux::run {

namespace {
enum class ErrorKind : int { none = 0, usage = 1, store = 2, other = 3 };
}  // namespace

void check_mpi(int rc, const char* call, int rank) {
  if (rc != MPI_SUCCESS) {
    throw MpiError(std::string("run: ") + call + " at rank " + std::to_string(rank) +
                   " failed: " + claim::mpi_error_text(rc));
  }
}

void all_or_none(MPI_Comm comm, const std::function<void()>& step) {
  int rank = 0, size = 1;
  check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank", rank);
  check_mpi(MPI_Comm_size(comm, &size), "MPI_Comm_size", rank);
  ErrorKind kind = ErrorKind::none;
  std::string message;
  try {
    step();
  } catch (const UsageError& e) {
    kind = ErrorKind::usage;
    message = e.what();
  } catch (const StoreError& e) {
    kind = ErrorKind::store;
    message = e.what();
  } catch (const std::exception& e) {
    kind = ErrorKind::other;
    message = e.what();
  }
  int first = kind != ErrorKind::none ? rank : size;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce", rank);
  if (first == size) return;
  int header[2] = {static_cast<int>(kind), static_cast<int>(message.size())};
  check_mpi(MPI_Bcast(header, 2, MPI_INT, first, comm), "MPI_Bcast", rank);
  message.resize(static_cast<std::size_t>(header[1]));
  check_mpi(MPI_Bcast(message.data(), header[1], MPI_CHAR, first, comm), "MPI_Bcast", rank);
  if (rank != first) message = "rank " + std::to_string(first) + ": " + message;
  switch (static_cast<ErrorKind>(header[0])) {
    case ErrorKind::usage:
      throw UsageError(message);
    case ErrorKind::store:
      throw StoreError(message);
    default:
      throw Error(message);
  }
}

}  // namespace mpmux::run
