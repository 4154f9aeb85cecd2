// Creates a set of 100 ints, iterates one session over MPI_COMM_WORLD and prints, on rank 0,
// how many elements the job saw and their sum.
#include <mpi.h>

#include <cstdio>
#include <mpmux/multiplexer.hpp>
#include <numeric>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char id[4096] = {};
  if (rank == 0) {
    std::vector<int> data(100);
    std::iota(data.begin(), data.end(), 1);
    auto mux = mpmux::Multiplexer<int>::create(data, argv[1], {.tag = "consumer"});
    std::snprintf(id, sizeof id, "%s", mux.create_read_session().c_str());
  }
  MPI_Bcast(id, sizeof id, MPI_CHAR, 0, MPI_COMM_WORLD);
  long count = 0, sum = 0;
  mpmux::Multiplexer<int> work(id, MPI_COMM_WORLD);
  for (auto& e : work) {
    ++count;
    sum += e.value();
  }
  long totals[2] = {0, 0}, mine[2] = {count, sum};
  MPI_Reduce(mine, totals, 2, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) std::printf("elements=%ld sum=%ld done=%d\n", totals[0], totals[1], work.done() ? 1 : 0);
  MPI_Finalize();
  return 0;
}
