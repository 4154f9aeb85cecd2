// The floor of an apply round trip: a bare condition-variable ping-pong between two threads. The
// caller hands one element to a waiting thread and sleeps until its result comes back, as
// ThreadPool::apply does, with nothing else on the path.
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "bench_common.hpp"

int main(int argc, char** argv) {
  int reps = bench::reps(argc, argv);
  std::mutex mutex;
  std::condition_variable to_worker, to_caller;
  bool has_task = false, has_result = false, quit = false;
  std::uint64_t arg = 0, result = 0;
  std::thread worker([&] {
    std::unique_lock lock(mutex);
    for (;;) {
      to_worker.wait(lock, [&] { return has_task || quit; });
      if (quit) return;
      has_task = false;
      result = bench::tiny(arg);
      has_result = true;
      to_caller.notify_one();
    }
  });
  std::uint64_t check = 0;
  const int n = 20000;
  for (int r = 0; r < reps; ++r) {
    double s = bench::seconds([&] {
      for (int i = 0; i < n; ++i) {
        std::unique_lock lock(mutex);
        arg = static_cast<std::uint64_t>(i);
        has_task = true;
        to_worker.notify_one();
        to_caller.wait(lock, [&] { return has_result; });
        has_result = false;
        check += result;
      }
    });
    bench::sample("round_trip_per_task", "condvar_pingpong", s / n);
  }
  {
    std::lock_guard lock(mutex);
    quit = true;
  }
  to_worker.notify_one();
  worker.join();
  return check == 42 ? 1 : 0;  // keeps the work observable
}
