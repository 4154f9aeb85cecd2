// What the processes of a ProcessPool share (src/pool only). Three kinds of process:
//  - the caller, whose event-loop thread moves chunks into per-worker task rings and results
//    out of result rings (all in one MAP_SHARED|MAP_ANONYMOUS region mapped before any fork);
//  - a fork server, forked in the constructor while the caller is (by contract) single-
//    threaded, which forks every worker, watches each with a pidfd, reaps it and reports its
//    death through the control block at once;
//  - the workers, which run elements and stream one record per element back.
// Work comes as chunks posted by callers (fed maps, apply) or is cut by the event loop itself
// from a direct map (ProcessPool::map of a random-access input), whose inputs it encodes and
// whose results it files into the caller's output, so that the caller's thread only waits.
// Wake-ups: a worker sleeps on a futex in its ring; the event loop and the server sleep in
// poll() on eventfds, rung only when the sleeper said it sleeps. A worker holds as many quick
// chunks as last kQueueNs and wakes the event loop when half are left (the refill mark), so
// that on a busy machine a wake-up serves many chunks. No pipe carries data.
#pragma once
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mpmux/bits/process_engine.hpp"
#include "pool/shm_ring.hpp"
#include "pool/task_queue.hpp"

namespace mpmux::pool_detail {

enum : std::uint8_t {
  kMsgTask = 1,
  kMsgStop = 2,
  kRecTimeout = static_cast<std::uint8_t>(FailureKind::timeout),
  kRecCrash = static_cast<std::uint8_t>(FailureKind::crash),
  kRecReady = 0x10,
  kRecChunkEnd = 0x11,
  kRecExit = 0x12,
  kRecError = 0x13,
};

constexpr std::uint32_t kWakeAlways = 0xffffffffu;

struct Control {
  std::atomic<std::uint32_t> parent_sleeping{0};
  std::atomic<std::uint32_t> quit{0};
  std::atomic<std::int32_t> workers{0};  // slots the server serves: 0..workers-1 (grows)
  pid_t parent_pid = 0;
  pid_t server_pid = 0;
};

struct SlotShm {
  RingHeader task;                                      // event loop -> worker
  RingHeader result;                                    // worker -> event loop
  alignas(64) std::atomic<std::uint32_t> spawn_gen{0};  // asked by the event loop
  std::atomic<std::uint32_t> spawned_gen{0};            // done by the server
  std::atomic<std::uint32_t> dead_gen{0};               // reaped by the server
  std::atomic<std::uint32_t> kill_gen{0};               // kill asked by the event loop
  std::atomic<std::int32_t> pid{0};
  std::atomic<std::int32_t> exit_status{0};
  alignas(64) std::atomic<std::uint64_t> cur_index{0};  // element running + 1; 0: none
  std::atomic<std::uint64_t> cur_start_ns{0};
  // The event loop's refill mark: after a chunk, the worker wakes it only when at most
  // wake_left of the tasks_sent task messages (counted per incarnation) are left to run.
  alignas(64) std::atomic<std::uint32_t> tasks_sent{0};
  std::atomic<std::uint32_t> wake_left{kWakeAlways};
};

constexpr std::size_t kPage = 4096;
// Chunks a worker holds: at least two (one running, one waiting in its ring, so it need not
// sleep between chunks); more while they last less than kQueueNs at the measured speed, so that
// quick chunks wake the event loop only every few chunks. Bounded so that a worker cannot hoard
// the tail of a map, nor the work of an element that turns slow.
constexpr std::size_t kMinDepth = 2;
constexpr std::size_t kMaxDepth = 64;
constexpr double kQueueNs = 500e3;
// A worker flushes its results when this many bytes wait, or when kFlushNs passed (then it
// also wakes the event loop, so that progress stays visible with slow elements).
constexpr std::size_t kFlushBytes = 16384;
constexpr std::uint64_t kFlushNs = 20000000;
// Elements run in batches that double while a batch takes less than kQuickBatchNs, so the clock
// is read rarely for tiny elements and after each element for slow ones.
constexpr std::uint64_t kQuickBatchNs = 50000;
constexpr std::uint32_t kMaxBatch = 4096;

inline std::uint64_t now_ns(clockid_t clock = CLOCK_MONOTONIC) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

inline std::string errno_text() { return std::strerror(errno); }

inline void ring_eventfd(int fd) {
  std::uint64_t one = 1;
  // A full counter still wakes the reader, so a failed write loses nothing.
  [[maybe_unused]] auto r = write(fd, &one, sizeof one);
}

inline void drain_eventfd(int fd) {
  std::uint64_t v;
  [[maybe_unused]] auto r = read(fd, &v, sizeof v);
}

// Appends to a std::string or a Bytes buffer.
template <class T, class Buffer>
void put(Buffer& s, const T& v) {
  const char* p = reinterpret_cast<const char*>(&v);
  s.insert(s.end(), p, p + sizeof v);
}
template <class Buffer>
void put_bytes(Buffer& s, const char* p, std::size_t n) {
  s.insert(s.end(), p, p + n);
}
template <class T>
T get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  return "ended";
}

inline int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

/// A direct map while it runs. It lives in run_direct's frame; the event loop uses it from
/// taking it out of the inbox until hand_back(), and never after.
struct DirectJob {
  DirectMap* map = nullptr;
  const MapOptions* options = nullptr;
  // Event loop only (the caller reads them once finished).
  std::uint64_t next = 0;       // the first element not yet cut into a chunk
  std::uint64_t in_flight = 0;  // chunks cut and not completed
  std::vector<Failure> failures;
  bool stopped = false;      // the pool stopped before every element ran
  std::exception_ptr error;  // reading or encoding an input threw
  std::chrono::steady_clock::time_point last_progress;
  std::uint64_t progress_done = 0;
  // Shared.
  std::atomic<bool> cancelled{false};  // raise_first failure, or the caller gave up
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> failed{0};
  std::mutex mutex;
  std::condition_variable cv;
  bool finished = false;      // under mutex
  bool progress_due = false;  // under mutex: the event loop asks the caller to report
};

// Hands a direct map back to its caller. The notify happens under the lock: once the caller
// sees `finished` it returns and the job is gone, so the unlock must be the last touch.
inline void hand_back(DirectJob& j) {
  std::lock_guard lock(j.mutex);
  j.finished = true;
  j.cv.notify_all();
}

template <class Buffer>
void begin_record(Buffer& out, std::uint8_t kind) {
  put<std::uint32_t>(out, 0);
  out.push_back(static_cast<char>(kind));
}
template <class Buffer>
void end_record(Buffer& out, std::size_t start) {
  auto len = static_cast<std::uint32_t>(out.size() - start - 4);
  std::memcpy(out.data() + start, &len, 4);
}

/// What the three kinds of process of a ProcessPool share: the options, the shared-memory
/// region (control block, per-slot words and rings), the eventfds, and, in the caller, what
/// callers hand the event loop. Built by the ProcessEngine before it forks.
struct ProcessState {
  ProcessState(const PoolOptions& o, WorkerReports& r) : options(o), reports(r) {}

  const PoolOptions& options;
  WorkerReports& reports;
  int cap = 0;  // shared memory, rings and slots exist for this many
  std::uint64_t ring_bytes = 0;
  bool timed = false;  // workers publish element start times (timeout or insights)

  void* region = MAP_FAILED;
  std::size_t region_size = 0;
  Control* ctl = nullptr;
  std::vector<SlotShm*> shm;
  std::vector<Ring> task_rings;
  std::vector<Ring> result_rings;
  int parent_efd = -1;
  int server_efd = -1;
  pid_t server = -1;

  // Shared between callers and the event loop.
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<ChunkTask> inbox;
  std::deque<DirectJob*> direct_inbox;
  bool stop_requested = false;
  bool accepting = true;
  bool loop_done = false;
  int ready_slots = 0;  // slots whose worker was ready at least once
  int grow_target = 0;  // workers grow_to asked for
  // Posted chunks waiting for a free worker. The event loop alone touches it, but for
  // has_affinity(), which does not change after construction.
  TaskQueue queue;
  std::atomic<std::size_t> queue_size{0};  // queue.size(), for callers
  bool stopped = false;
  std::mutex stop_mutex;
  std::thread loop;

  // Rings the event loop if it said it sleeps: it looks at the inboxes after saying so. Called
  // with `mutex` held and `accepting` true, so stop() cannot have closed the eventfd.
  void wake_sleeping_loop() {
    if (ctl->parent_sleeping.exchange(0)) ring_eventfd(parent_efd);
  }

  // Records the pool's first error and wakes whoever waits for workers to get ready.
  void fail(const std::string& what) {
    reports.fail(what);
    std::lock_guard lock(mutex);
    cv.notify_all();
  }

  /// The worker process of slot `id` (process_worker.cpp).
  [[noreturn]] void worker_main(int id);
  /// The fork server (fork_server.cpp).
  [[noreturn]] void server_main();
  /// The event loop, on its thread in the caller, until stop() (event_loop.cpp).
  void run_loop(int initial_workers);
};

}  // namespace mpmux::pool_detail
