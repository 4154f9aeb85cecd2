// Baselines: the least a claim of one element can cost with MPI one-sided calls, and with a
// two-sided request and reply.
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "claim/window.hpp"
#include "contenders.hpp"

namespace claim_bench {

namespace {

using mpmux::claim::Window;

// Rank 1 takes every element with one atomic and one Get; the root waits in MPI_Barrier: both
// windows are memory the MPI reaches without the root's help.
double one_sided_loop(MPI_Comm comm, MPI_Win counter_win, MPI_Win data_win, std::uint64_t* counter,
                      char* data, std::uint64_t claims, std::size_t element_bytes) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const bool root = rank == 0;
  MPI_Win_lock_all(MPI_MODE_NOCHECK, counter_win);
  MPI_Win_lock_all(MPI_MODE_NOCHECK, data_win);
  if (root) {
    *counter = 0;
    for (std::uint64_t i = 0; i < claims * element_bytes; ++i) data[i] = static_cast<char>('a' + i % 26);
    MPI_Win_sync(counter_win);
    MPI_Win_sync(data_win);
  }
  MPI_Barrier(comm);

  double us = 0;
  if (rank == 1) {
    std::vector<char> element(element_bytes);
    const std::uint64_t one = 1;
    std::uint64_t taken = 0;
    const int count = static_cast<int>(element_bytes);
    const double start = MPI_Wtime();
    for (;;) {
      std::uint64_t index = 0;
      MPI_Fetch_and_op(&one, &index, MPI_UINT64_T, 0, 0, MPI_SUM, counter_win);
      MPI_Win_flush(0, counter_win);
      if (index >= claims) break;
      MPI_Get(element.data(), count, MPI_BYTE, 0, static_cast<MPI_Aint>(index * element_bytes), count,
              MPI_BYTE, data_win);
      MPI_Win_flush(0, data_win);
      taken += element[0] != 0;
    }
    us = (MPI_Wtime() - start) / static_cast<double>(claims) * 1e6;
    if (taken != claims) us = -1;  // a wrong read shows as a negative time
  }
  MPI_Barrier(comm);
  MPI_Win_unlock_all(data_win);
  MPI_Win_unlock_all(counter_win);
  return us;
}

// "counter sm, elements rdma": the components serving the two windows, named as the claimer
// names its own (mpmux::claim::Window::component_of), so both sides of a ratio show theirs.
std::string window_paths(MPI_Win counter_win, Window::Creation counter_how, MPI_Win data_win,
                         Window::Creation data_how) {
  auto name = [](MPI_Win win, Window::Creation how) {
    const std::string component = Window::component_of(win, how);
    return component.empty() ? std::string(Window::call_name(how)) : component;
  };
  return "counter " + name(counter_win, counter_how) + ", elements " + name(data_win, data_how);
}

}  // namespace

double bare_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes, std::string* paths) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const bool root = rank == 0;
  MPI_Win counter_win = MPI_WIN_NULL;
  MPI_Win data_win = MPI_WIN_NULL;
  std::uint64_t* counter = nullptr;
  char* data = nullptr;
  MPI_Win_allocate(root ? sizeof(std::uint64_t) : 0, sizeof(std::uint64_t), MPI_INFO_NULL, comm, &counter,
                   &counter_win);
  MPI_Win_allocate(root ? static_cast<MPI_Aint>(claims * element_bytes) : 0, 1, MPI_INFO_NULL, comm, &data,
                   &data_win);
  if (paths != nullptr)
    *paths = window_paths(counter_win, Window::Creation::allocate, data_win, Window::Creation::allocate);
  const double us = one_sided_loop(comm, counter_win, data_win, counter, data, claims, element_bytes);
  MPI_Win_free(&data_win);
  MPI_Win_free(&counter_win);
  return from_rank1(comm, us);
}

double bare_shared_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes, std::string* paths) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const bool root = rank == 0;
  MPI_Comm own = MPI_COMM_NULL;
  MPI_Comm_dup(comm, &own);
  MPI_Comm_set_errhandler(own, MPI_ERRORS_RETURN);
  MPI_Win counter_win = MPI_WIN_NULL;
  MPI_Win data_win = MPI_WIN_NULL;
  std::uint64_t* counter = nullptr;
  char* data = nullptr;
  // Fails when the ranks are on several nodes: then there is no node-shared path to compare with.
  int made = MPI_Win_allocate_shared(root ? sizeof(std::uint64_t) : 0, sizeof(std::uint64_t), MPI_INFO_NULL,
                                     own, &counter, &counter_win) == MPI_SUCCESS &&
             MPI_Win_allocate_shared(root ? static_cast<MPI_Aint>(claims * element_bytes) : 0, 1,
                                     MPI_INFO_NULL, own, &data, &data_win) == MPI_SUCCESS;
  MPI_Allreduce(MPI_IN_PLACE, &made, 1, MPI_INT, MPI_MIN, own);
  double us = std::nan("");
  if (made) {
    if (paths != nullptr)
      *paths = window_paths(counter_win, Window::Creation::allocate_shared, data_win,
                            Window::Creation::allocate_shared);
    us = one_sided_loop(own, counter_win, data_win, counter, data, claims, element_bytes);
  }
  if (data_win != MPI_WIN_NULL) MPI_Win_free(&data_win);
  if (counter_win != MPI_WIN_NULL) MPI_Win_free(&counter_win);
  MPI_Comm_free(&own);
  return from_rank1(comm, us);
}

double bare_remote_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes, std::string* paths) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const bool root = rank == 0;
  MPI_Comm own = MPI_COMM_NULL;
  MPI_Comm_dup(comm, &own);
  MPI_Comm_set_errhandler(own, MPI_ERRORS_RETURN);
  MPI_Win counter_win = MPI_WIN_NULL;
  MPI_Win data_win = MPI_WIN_NULL;
  std::uint64_t* counter = nullptr;
  std::vector<char> data(root ? claims * element_bytes : 0);
  MPI_Win_allocate_shared(root ? sizeof(std::uint64_t) : 0, sizeof(std::uint64_t), MPI_INFO_NULL, own,
                          &counter, &counter_win);
  int made = MPI_Win_create(data.data(), static_cast<MPI_Aint>(data.size()), 1, MPI_INFO_NULL, own,
                            &data_win) == MPI_SUCCESS;
  MPI_Allreduce(MPI_IN_PLACE, &made, 1, MPI_INT, MPI_MIN, own);
  double us = std::nan("");
  if (made) {
    if (paths != nullptr)
      *paths =
          window_paths(counter_win, Window::Creation::allocate_shared, data_win, Window::Creation::create);
    us = one_sided_loop(own, counter_win, data_win, counter, data.data(), claims, element_bytes);
    MPI_Win_free(&data_win);
  }
  MPI_Win_free(&counter_win);
  MPI_Comm_free(&own);
  return from_rank1(comm, us);
}

double bare_two_sided_us(MPI_Comm comm, std::uint64_t claims, std::size_t element_bytes) {
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  std::vector<char> data(rank == 0 ? claims * element_bytes : 0);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 26);
  std::vector<char> reply(sizeof(std::uint64_t) + element_bytes);
  MPI_Barrier(comm);
  double us = 0;
  if (rank == 0) {
    // The server: one answer per request until rank 1 has seen the end.
    std::uint64_t next = 0;
    for (bool done = false; !done;) {
      std::uint64_t request[2] = {0, 0};
      MPI_Status status;
      MPI_Recv(request, 2, MPI_UINT64_T, MPI_ANY_SOURCE, 1, comm, &status);
      const std::uint64_t index = next < claims ? next++ : claims;
      std::memcpy(reply.data(), &index, sizeof index);
      const int bytes = index < claims ? static_cast<int>(element_bytes) : 0;
      if (bytes > 0)
        std::memcpy(reply.data() + sizeof index, data.data() + index * element_bytes, element_bytes);
      MPI_Send(reply.data(), static_cast<int>(sizeof index) + bytes, MPI_BYTE, status.MPI_SOURCE, 2, comm);
      done = index >= claims;
    }
  } else if (rank == 1) {
    std::uint64_t taken = 0;
    const std::uint64_t request[2] = {1, 1};
    const double start = MPI_Wtime();
    for (;;) {
      MPI_Send(request, 2, MPI_UINT64_T, 0, 1, comm);
      MPI_Recv(reply.data(), static_cast<int>(reply.size()), MPI_BYTE, 0, 2, comm, MPI_STATUS_IGNORE);
      std::uint64_t index = 0;
      std::memcpy(&index, reply.data(), sizeof index);
      if (index >= claims) break;
      taken += reply[sizeof index] != 0;
    }
    us = (MPI_Wtime() - start) / static_cast<double>(claims) * 1e6;
    if (taken != claims) us = -1;
  }
  MPI_Barrier(comm);
  return from_rank1(comm, us);
}

}  // namespace claim_bench
