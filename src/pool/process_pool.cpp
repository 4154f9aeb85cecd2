// The process pool engine. Three kinds of process:
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
#include "mpmux/process_pool.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <any>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <new>
#include <thread>

#include "pool/affinity.hpp"
#include "pool/shm_ring.hpp"
#include "pool/task_queue.hpp"

namespace mpmux::pool_detail {

namespace {

enum : std::uint8_t {
  kMsgTask = 1,
  kMsgStop = 2,
  kRecTimeout = static_cast<std::uint8_t>(FailureKind::kTimeout),
  kRecCrash = static_cast<std::uint8_t>(FailureKind::kCrash),
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

std::uint64_t now_ns(clockid_t clock = CLOCK_MONOTONIC) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string errno_text() { return std::strerror(errno); }

void ring_eventfd(int fd) {
  std::uint64_t one = 1;
  // A full counter still wakes the reader, so a failed write loses nothing.
  [[maybe_unused]] auto r = write(fd, &one, sizeof one);
}

void drain_eventfd(int fd) {
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

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  return "ended";
}

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

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
  std::atomic<bool> cancelled{false};  // kRaiseFirst failure, or the caller gave up
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> failed{0};
  std::mutex mutex;
  std::condition_variable cv;
  bool finished = false;      // under mutex
  bool progress_due = false;  // under mutex: the event loop asks the caller to report
};

// Hands a direct map back to its caller. The notify happens under the lock: once the caller
// sees `finished` it returns and the job is gone, so the unlock must be the last touch.
void hand_back(DirectJob& j) {
  std::lock_guard lock(j.mutex);
  j.finished = true;
  j.cv.notify_all();
}

}  // namespace

struct ProcessEngine::State {
  PoolOptions options;
  std::atomic<int> n{0};  // workers now; set once they are ready
  int cap = 0;            // shared memory, rings and slots exist for this many
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
  int ready_slots = 0;                     // slots whose worker was ready at least once
  int grow_target = 0;                     // workers grow_to asked for
  // Posted chunks waiting for a free worker. The event loop alone touches it, but for
  // has_affinity(), which does not change after construction.
  TaskQueue queue;
  std::atomic<std::size_t> queue_size{0};  // queue.size(), for callers
  bool stopped = false;
  std::mutex stop_mutex;
  std::thread loop;

  mutable std::mutex report_mutex;
  std::vector<ExitValue> exit_values;
  std::vector<WorkerInsights> insights;
  std::vector<SlowTask> slowest;
  std::string error;

  // Rings the event loop if it said it sleeps: it looks at the inboxes after saying so. Called
  // with `mutex` held and `accepting` true, so stop() cannot have closed the eventfd.
  void wake_sleeping_loop() {
    if (ctl->parent_sleeping.exchange(0)) ring_eventfd(parent_efd);
  }

  // Records the pool's first error and wakes whoever waits for workers to get ready.
  void fail(const std::string& what) {
    {
      std::lock_guard lock(report_mutex);
      if (error.empty()) error = what;
    }
    std::lock_guard lock(mutex);
    cv.notify_all();
  }

  // ---- worker process ---------------------------------------------------------------------
  [[noreturn]] void worker_main(int id);
  // ---- fork server ------------------------------------------------------------------------
  [[noreturn]] void server_main();
  // ---- event loop -------------------------------------------------------------------------
  void run_loop();
};

// ============================== worker process ==============================================

namespace {

class WorkerChannel {
 public:
  WorkerChannel(Ring task, Ring result, Control* ctl, int parent_efd, pid_t server)
      : task_(task), result_(result), ctl_(ctl), parent_efd_(parent_efd), server_(server) {}

  void notify_parent() {
    if (ctl_->parent_sleeping.exchange(0)) ring_eventfd(parent_efd_);
  }

  // Reads exactly n bytes of the next message, sleeping while the ring is empty.
  void read_exact(char* dst, std::size_t n) {
    while (n > 0) {
      std::size_t k = task_.read_some(dst, n);
      dst += k;
      n -= k;
      if (k > 0 && task_.header()->parent_waiting.load()) notify_parent();
      if (n > 0 && k == 0) {
        task_.worker_wait([&] { return task_.readable() > 0; }, 1000);
        check_server();
      }
    }
  }

  // Appends a record to the outgoing batch; large batches go out at once.
  Bytes& batch() { return batch_; }

  void flush(bool wake) {
    const char* p = batch_.data();
    std::size_t n = batch_.size();
    while (n > 0) {
      std::size_t k = result_.write_some(p, n);
      p += k;
      n -= k;
      if (n > 0 && k == 0) {
        notify_parent();  // the event loop must drain the ring before we can go on
        result_.worker_wait([&] { return result_.writable() > 0; }, 1000);
        check_server();
      }
    }
    batch_.clear();
    // A half-full result ring wakes the event loop even when it did not ask, so the worker
    // does not have to stop for it.
    if (wake || 2 * result_.readable() > result_.capacity()) notify_parent();
  }

 private:
  void check_server() {
    // PR_SET_PDEATHSIG covers this; the check covers a server that died before prctl ran.
    if (getppid() != server_) _exit(0);
  }

  Ring task_;
  Ring result_;
  Control* ctl_;
  int parent_efd_;
  pid_t server_;
  Bytes batch_;
};

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

}  // namespace

void ProcessEngine::State::worker_main(int id) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != ctl->server_pid) _exit(0);
  SlotShm& slot = *shm[static_cast<std::size_t>(id)];
  WorkerChannel ch(task_rings[static_cast<std::size_t>(id)], result_rings[static_cast<std::size_t>(id)], ctl,
                   parent_efd, ctl->server_pid);
  Bytes& out = ch.batch();
  auto send_error = [&](const std::string& msg) {
    std::size_t at = out.size();
    begin_record(out, kRecError);
    put_bytes(out, msg.data(), msg.size());
    end_record(out, at);
  };
  try {
    pin_calling_thread(cpu_set_for(options, id), id);
  } catch (const std::exception& e) {
    send_error(std::string("ProcessPool: ") + e.what());
  }
  Worker worker(id, &options.shared_objects);
  std::uint64_t t0 = now_ns();
  if (options.worker_init) {
    try {
      options.worker_init(worker);
    } catch (...) {
      send_error("ProcessPool: worker_init failed in worker " + std::to_string(id) + ": " +
                 exception_message(std::current_exception()));
    }
  }
  {
    std::size_t at = out.size();
    begin_record(out, kRecReady);
    put<std::uint64_t>(out, now_ns() - t0);
    end_record(out, at);
    ch.flush(true);
  }

  auto finish = [&](bool replaced) {
    std::uint64_t te = now_ns();
    std::string value;
    bool has_value = false;
    if (options.worker_exit) {
      try {
        value = options.worker_exit(worker).bytes();
        has_value = true;
      } catch (...) {
        send_error("ProcessPool: worker_exit failed in worker " + std::to_string(id) + ": " +
                   exception_message(std::current_exception()));
      }
    }
    std::size_t at = out.size();
    begin_record(out, kRecExit);
    out.push_back(replaced ? 1 : 0);
    put<std::uint64_t>(out, now_ns() - te);
    out.push_back(has_value ? 1 : 0);
    put_bytes(out, value.data(), value.size());
    end_record(out, at);
    ch.flush(true);
    std::fflush(nullptr);
    _exit(0);
  };

  Bytes msg;
  std::uint64_t chunks = 0;
  std::uint32_t tasks_done = 0;  // task messages finished by this incarnation
  RunContext ctx;
  ctx.cur_index = &slot.cur_index;
  ctx.cur_start_ns = &slot.cur_start_ns;
  ctx.timed = timed;
  ctx.with_ns = options.enable_insights;
  std::uint64_t last_wake = now_ns();
  for (;;) {
    std::uint64_t wait_start = now_ns();
    std::uint32_t len = 0;
    ch.read_exact(reinterpret_cast<char*>(&len), 4);
    msg.resize(len);
    ch.read_exact(msg.data(), len);
    std::uint64_t work_start = now_ns();
    auto kind = static_cast<std::uint8_t>(msg[0]);
    if (kind == kMsgStop) finish(false);
    // The parent sent its own function pointers: the child is a fork, with the same addresses.
    auto runner = reinterpret_cast<ChunkRunner>(get<std::uint64_t>(msg.data() + 1));  // NOLINT(performance-no-int-to-ptr)
    auto fn = static_cast<std::uintptr_t>(get<std::uint64_t>(msg.data() + 9));
    ctx.index = get<std::uint64_t>(msg.data() + 17);
    auto count = get<std::uint32_t>(msg.data() + 25);
    const char* in = msg.data() + 29;
    std::uint64_t last_flush = work_start, t0 = work_start;
    std::uint32_t batch = 1;  // restarts per chunk: the next task may be a slow one
    for (std::uint32_t left = count; left > 0;) {
      std::uint32_t b = std::min(left, batch);
      runner(worker, fn, ctx, in, b, out);
      left -= b;
      std::uint64_t t1 = now_ns();
      if (t1 - t0 < kQuickBatchNs) {
        batch = std::min(2 * batch, kMaxBatch);
      } else if (batch > 1) {
        batch /= 2;
      }
      t0 = t1;
      bool slow = t1 - last_flush > kFlushNs;
      if (out.size() >= kFlushBytes || slow) {
        ch.flush(slow);
        last_flush = t1;
        if (slow) last_wake = t1;
      }
    }
    slot.cur_index.store(0, std::memory_order_relaxed);
    slot.cur_start_ns.store(0, std::memory_order_relaxed);
    std::size_t rec = out.size();
    begin_record(out, kRecChunkEnd);
    std::uint64_t end = now_ns();
    put<std::uint64_t>(out, work_start - wait_start);
    put<std::uint64_t>(out, end - work_start);
    put<std::uint32_t>(out, count);
    end_record(out, rec);
    // Wake the event loop when it asked to hear at this point (its refill mark: always, for
    // chunks whose caller waits for each), or when results have waited kFlushNs unseen.
    std::uint32_t left = slot.tasks_sent.load() - ++tasks_done;
    bool wake = left <= slot.wake_left.load() || end - last_wake > kFlushNs;
    if (wake) last_wake = end;
    ch.flush(wake);
    if (options.worker_lifespan > 0 && ++chunks >= options.worker_lifespan) finish(true);
  }
}

// ============================== fork server =================================================

void ProcessEngine::State::server_main() {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != ctl->parent_pid) _exit(0);
  signal(SIGCHLD, SIG_DFL);
  std::vector<int> pidfds(static_cast<std::size_t>(cap), -1);
  std::vector<pid_t> pids(static_cast<std::size_t>(cap), 0);
  std::vector<std::uint32_t> gens(static_cast<std::size_t>(cap), 0);
  std::vector<bool> killed(static_cast<std::size_t>(cap), false);
  std::vector<pollfd> fds;
  for (;;) {
    int live = 0;
    const int workers = ctl->workers.load();
    for (int k = 0; k < workers; ++k) {
      auto i = static_cast<std::size_t>(k);
      SlotShm& s = *shm[i];
      if (pidfds[i] < 0 && s.spawn_gen.load() != s.spawned_gen.load()) {
        std::uint32_t gen = s.spawn_gen.load();
        pid_t pid = fork();
        if (pid == 0) {
          for (int fd : pidfds)
            if (fd >= 0) close(fd);
          worker_main(k);
        }
        int fd = pid > 0 ? pidfd_open(pid) : -1;
        if (pid < 0 || fd < 0) {
          // Reported as a worker that died at once; the event loop decides what to do.
          if (pid > 0) waitpid(pid, nullptr, 0);
          s.exit_status.store(-1);
          s.pid.store(0);
          s.spawned_gen.store(gen);
          s.dead_gen.store(gen);
          ring_eventfd(parent_efd);
          continue;
        }
        pidfds[i] = fd;
        pids[i] = pid;
        gens[i] = gen;
        killed[i] = false;
        s.pid.store(pid);
        s.spawned_gen.store(gen);
        ring_eventfd(parent_efd);
      }
      if (pidfds[i] >= 0 && !killed[i] && s.kill_gen.load() == gens[i]) {
        syscall(SYS_pidfd_send_signal, pidfds[i], SIGKILL, nullptr, 0);
        killed[i] = true;
      }
      if (pidfds[i] >= 0) ++live;
    }
    if (ctl->quit.load() && live == 0) _exit(0);
    fds.clear();
    fds.push_back({server_efd, POLLIN, 0});
    for (int fd : pidfds)
      if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    int r = poll(fds.data(), fds.size(), 1000);
    if (getppid() != ctl->parent_pid) _exit(0);
    if (r <= 0) continue;
    if (fds[0].revents) drain_eventfd(server_efd);
    for (int k = 0; k < workers; ++k) {
      auto i = static_cast<std::size_t>(k);
      if (pidfds[i] < 0) continue;
      pollfd probe{pidfds[i], POLLIN, 0};
      if (poll(&probe, 1, 0) <= 0) continue;
      int status = 0;
      waitpid(pids[i], &status, 0);
      close(pidfds[i]);
      pidfds[i] = -1;
      SlotShm& s = *shm[i];
      s.exit_status.store(status);
      s.pid.store(0);
      s.dead_gen.store(gens[i]);
      ring_eventfd(parent_efd);
    }
  }
}

// ============================== event loop ==================================================

namespace {

struct Chunk {
  ChunkTask task;                               // a direct chunk has no inputs here and no done callback
  DirectJob* direct = nullptr;                  // set for a chunk of a direct map
  std::string results;                          // posted chunks: the records so far
  std::uint32_t received = 0;                   // elements [0, received) have a result record
  std::map<std::uint32_t, int> crashes;         // element position -> deaths while it ran
  std::map<std::uint32_t, std::string> forced;  // position -> the failure record it gets
  bool completed = false;

  bool cancelled() const {
    return direct ? direct->cancelled.load() : task.cancelled && task.cancelled->load();
  }
};

/// A chunk's elements [chunk->received, stop) given to one worker. A chunk is either pending
/// or held by one worker, never both; stop ends before an element with a forced outcome.
struct WorkItem {
  std::shared_ptr<Chunk> chunk;
  std::uint32_t begin = 0;  // chunk->received when it was sent
  std::uint32_t stop = 0;
};

enum class Phase { kSpawning, kRunning, kStopping, kFinal };

struct SlotState {
  Phase phase = Phase::kSpawning;
  std::uint32_t gen = 0;
  bool goodbye = false;  // the worker sent its exit record (lifespan or stop)
  bool stop_sent = false;
  bool ready_seen = false;
  std::deque<WorkItem> assigned;
  std::uint64_t held_elements = 0;        // elements of `assigned` not yet answered when sent
  std::uint32_t posted_held = 0;          // of `assigned`, chunks whose caller waits for each
  std::uint32_t tasks_sent = 0;           // mirrors SlotShm::tasks_sent
  std::uint32_t wake_left = kWakeAlways;  // mirrors SlotShm::wake_left
  Bytes outbuf;
  std::size_t out_off = 0;
  Bytes inbuf;
  std::size_t in_off = 0;
  std::int64_t timeout_index = -1;  // element we killed the worker for
  std::chrono::steady_clock::time_point spawn_time;
};

/// How fast one worker slot runs the elements of one task, for the depth of its queue.
struct SlotSpeed {
  std::uintptr_t key = 0;     // the runner and function it was measured on
  double ns_per_element = 0;  // 0: not measured yet
};

}  // namespace

void ProcessEngine::State::run_loop() {
  using Clock = std::chrono::steady_clock;
  std::vector<SlotState> slots(static_cast<std::size_t>(cap));
  std::vector<SlotSpeed> speeds(static_cast<std::size_t>(cap));
  int active = 0;               // slots in use: 0..active-1 (grow_to adds)
  std::vector<int> hand_order;  // the slots in the order they are offered others' work
  std::vector<bool> was_ready(static_cast<std::size_t>(cap), false);
  std::deque<WorkItem> reruns;      // the rest of chunks a worker gave back: before new work
  std::vector<DirectJob*> sources;  // direct maps still cutting chunks or waiting for them
  std::size_t next_source = 0;      // the direct maps take turns
  bool stopping = false;
  const bool with_ns = options.enable_insights;
  const std::uint64_t timeout_ns = static_cast<std::uint64_t>(options.task_timeout.count()) * 1000000ull;

  auto spawn = [&](int k) {
    SlotState& st = slots[static_cast<std::size_t>(k)];
    task_rings[static_cast<std::size_t>(k)].reset();
    result_rings[static_cast<std::size_t>(k)].reset();
    SlotShm& s = *shm[static_cast<std::size_t>(k)];
    s.cur_index.store(0);
    s.cur_start_ns.store(0);
    s.tasks_sent.store(0);
    s.wake_left.store(kWakeAlways);
    st = SlotState{};
    st.gen = s.spawn_gen.load() + 1;
    st.spawn_time = Clock::now();
    s.spawn_gen.store(st.gen);
    ring_eventfd(server_efd);
  };

  auto complete = [&](const std::shared_ptr<Chunk>& c, bool skipped) {
    if (c->completed) return;
    c->completed = true;
    if (DirectJob* j = c->direct) {
      // Only stop() skips the chunk of a map that was not cancelled.
      if (skipped && !j->cancelled.load()) j->stopped = true;
      --j->in_flight;
      return;
    }
    ChunkOutcome o;
    o.first = c->task.first;
    o.count = c->task.count;
    o.skipped = skipped;
    if (!skipped) o.results = std::move(c->results);
    auto done = std::move(c->task.done);
    c->task.inputs.clear();
    if (done) done(std::move(o));
  };

  // Files `count` result records (without ns) of the chunk's next elements: a direct map's go
  // straight to its output, a posted chunk keeps them until it completes.
  auto accept = [&](Chunk& c, const char* records, std::size_t bytes, std::uint32_t count) {
    if (DirectJob* j = c.direct) {
      std::size_t before = j->failures.size();
      j->map->deliver(c.task.first + c.received, records, count, j->failures);
      j->done.fetch_add(count, std::memory_order_relaxed);
      if (j->failures.size() > before) {
        j->failed.fetch_add(j->failures.size() - before, std::memory_order_relaxed);
        if (j->options->on_error == OnError::kRaiseFirst) j->cancelled = true;
      }
    } else {
      c.results.append(records, bytes);
    }
    c.received += count;
  };

  // Files the forced failures (timeouts, repeated crashes) due at the chunk's next position.
  auto advance = [&](Chunk& c) {
    for (auto it = c.forced.find(c.received); it != c.forced.end(); it = c.forced.find(c.received)) {
      accept(c, it->second.data(), it->second.size(), 1);
    }
    return c.received == c.task.count;
  };

  auto failure_record = [&](std::uint8_t kind, const std::string& msg) {
    std::string r;
    begin_record(r, kind);
    r += msg;
    end_record(r, 0);
    return r;
  };

  // The next work for slot k: re-runs first; then a posted chunk by the affinity rule (only
  // the worker's own requestor's, or one that waited too long, when `preferred_only`); then a
  // new chunk of a direct map, the maps taking turns.
  auto take_next = [&](int k, WorkItem& out, bool preferred_only) {
    if (!reruns.empty()) {
      out = std::move(reruns.front());
      reruns.pop_front();
      return true;
    }
    std::any item;
    if (preferred_only ? queue.pop_preferred(k, item) : queue.pop(k, item)) {
      out = std::move(std::any_cast<WorkItem&>(item));
      queue_size.store(queue.size());
      return true;
    }
    if (preferred_only) return false;
    for (std::size_t tries = 0; tries < sources.size() && !stopping; ++tries) {
      DirectJob* j = sources[next_source++ % sources.size()];
      const std::uint64_t total = j->map->total();
      if (j->cancelled.load() || j->next >= total) continue;
      std::uint64_t size = next_chunk_size(*j->options, active, j->next, total);
      size = std::min<std::uint64_t>({size, total - j->next, 0xffffffffu});
      auto c = std::make_shared<Chunk>();
      c->direct = j;
      c->task.runner = j->map->runner();
      c->task.fn = j->map->fn();
      c->task.first = j->next;
      c->task.count = static_cast<std::uint32_t>(size);
      j->next += size;
      ++j->in_flight;
      out = {std::move(c), 0, 0};
      return true;
    }
    return false;
  };

  // Queues the task message for elements [received, stop) of the item's chunk. False when the
  // inputs of a direct map could not be read or encoded (on this thread): then that map ends
  // with the exception, and nothing was queued.
  auto send_task = [&](int k, SlotState& st, WorkItem& item) {
    Chunk& c = *item.chunk;
    const ChunkTask& t = c.task;
    auto f = c.forced.lower_bound(c.received);
    item.begin = c.received;
    item.stop = f == c.forced.end() ? t.count : f->first;
    Bytes& o = st.outbuf;
    const std::size_t at = o.size();
    put<std::uint32_t>(o, 0);
    o.push_back(static_cast<char>(kMsgTask));
    put<std::uint64_t>(o, reinterpret_cast<std::uint64_t>(t.runner));
    put<std::uint64_t>(o, t.fn);
    put<std::uint64_t>(o, t.first + c.received);
    put<std::uint32_t>(o, item.stop - c.received);
    if (DirectJob* j = c.direct) {
      try {
        j->map->encode(t.first + c.received, item.stop - c.received, o);
      } catch (...) {
        o.resize(at);
        if (!j->error) j->error = std::current_exception();
        j->cancelled = true;
        return false;
      }
    } else if (c.received == 0 && item.stop == t.count) {
      put_bytes(o, t.inputs.data(), t.inputs.size());
    } else {
      std::size_t off = 0, end = 0;
      for (std::uint32_t k2 = 0; k2 < item.stop; ++k2) {
        if (k2 == c.received) off = end;
        end += t.input_size(t.inputs.data() + end);
      }
      put_bytes(o, t.inputs.data() + off, end - off);
    }
    auto len = static_cast<std::uint32_t>(o.size() - at - 4);
    std::memcpy(o.data() + at, &len, 4);
    SlotShm& s = *shm[static_cast<std::size_t>(k)];
    if (!c.direct) {
      // Its caller waits for each chunk: hear of every chunk end while the worker holds it.
      // Raised before the task enters the ring, so the worker reads it at the task's end.
      ++st.posted_held;
      if (st.wake_left != kWakeAlways) s.wake_left.store(st.wake_left = kWakeAlways);
    }
    SlotSpeed& speed = speeds[static_cast<std::size_t>(k)];
    std::uintptr_t key = reinterpret_cast<std::uintptr_t>(t.runner) ^ t.fn;
    if (speed.key != key) speed = {key, 0};  // another task: its speed is unknown
    st.held_elements += item.stop - item.begin;
    s.tasks_sent.store(++st.tasks_sent);
    return true;
  };

  // Whether slot k takes another chunk now (see kQueueNs).
  auto wants_more = [&](int k) {
    const SlotState& st = slots[static_cast<std::size_t>(k)];
    if (st.phase != Phase::kRunning || st.stop_sent) return false;
    // A worker retires after worker_lifespan chunks: more would only come back.
    if (options.worker_lifespan > 0 && st.tasks_sent >= options.worker_lifespan) return false;
    // With affinity a worker chooses its next chunk when it is free, by the rule as it stands
    // then: a queued chunk must not be committed to a busy worker.
    if (queue.has_affinity()) return st.assigned.empty();
    if (st.assigned.size() < kMinDepth) return true;
    // Not beyond what its ring holds: the rest would wait in outbuf anyway.
    if (st.assigned.size() >= kMaxDepth || st.outbuf.size() - st.out_off >= ring_bytes / 2) return false;
    double ns = speeds[static_cast<std::size_t>(k)].ns_per_element;
    return ns > 0 && static_cast<double>(st.held_elements) * ns < kQueueNs;
  };

  // Handles the records of slot k now in its inbuf.
  auto parse = [&](int k) {
    SlotState& st = slots[static_cast<std::size_t>(k)];
    WorkerInsights& ins_ref = insights[static_cast<std::size_t>(k)];
    Bytes& b = st.inbuf;
    std::vector<SlowTask> slow;
    std::string one;
    std::uint64_t elements = 0, chunks = 0;  // counted here, before the caller hears of them
    while (b.size() - st.in_off >= 4) {
      std::uint32_t len = get<std::uint32_t>(b.data() + st.in_off);
      if (b.size() - st.in_off < 4 + static_cast<std::size_t>(len)) break;
      const char* rec = b.data() + st.in_off;
      auto kind = static_cast<std::uint8_t>(rec[4]);
      const char* body = rec + 5;
      std::size_t body_len = len - 1;
      if (kind < 0x10) {
        // Results: this branch moves in_off past the records it takes.
        if (st.assigned.empty()) {
          fail("ProcessPool: worker " + std::to_string(k) + " sent a result for no chunk");
          st.in_off += 4 + static_cast<std::size_t>(len);
          continue;
        }
        WorkItem& item = st.assigned.front();
        Chunk& c = *item.chunk;
        if (with_ns) {
          slow.push_back(
              {c.task.first + c.received, static_cast<double>(get<std::uint64_t>(body)) * 1e-9, k});
          one.clear();
          begin_record(one, kind);
          one.append(body + 8, body_len - 8);
          end_record(one, 0);
          accept(c, one.data(), one.size(), 1);
          st.in_off += 4 + static_cast<std::size_t>(len);
          ++elements;
        } else {
          // The complete result records of this chunk that are here go in one call.
          std::size_t at = st.in_off;
          std::uint32_t got = 0;
          const std::uint32_t want = item.stop - c.received;
          while (got < want && b.size() - at >= 5) {
            std::uint32_t l = get<std::uint32_t>(b.data() + at);
            auto kind_at = static_cast<std::uint8_t>(b[at + 4]);
            if (b.size() - at < 4 + static_cast<std::size_t>(l) || kind_at >= 0x10) break;
            std::uint32_t covers = kind_at == kRecordRun ? get<std::uint32_t>(b.data() + at + 5) : 1;
            if (covers > want - got) break;
            at += 4 + static_cast<std::size_t>(l);
            got += covers;
          }
          if (got == 0) {
            // A run longer than the task it answers: the worker is broken.
            fail("ProcessPool: worker " + std::to_string(k) + " sent more results than it was given");
            st.in_off += 4 + static_cast<std::size_t>(len);
            continue;
          }
          accept(c, b.data() + st.in_off, at - st.in_off, got);
          st.in_off = at;
          elements += got;
        }
        if (c.received == item.stop) {
          ++chunks;
          {
            std::lock_guard lock(report_mutex);
            ins_ref.elements += elements;
            ins_ref.chunks += chunks;
            elements = chunks = 0;
          }
          auto held = item.chunk;
          st.held_elements -= item.stop - item.begin;
          if (!held->direct) --st.posted_held;
          st.assigned.pop_front();
          if (advance(*held)) {
            complete(held, false);
          } else {
            reruns.push_front({held, 0, 0});  // the rest, past a forced failure
          }
        }
        continue;
      }
      st.in_off += 4 + static_cast<std::size_t>(len);
      if (kind == kRecReady) {
        st.ready_seen = true;
        if (!was_ready[static_cast<std::size_t>(k)]) {
          was_ready[static_cast<std::size_t>(k)] = true;
          std::lock_guard lock(mutex);
          ++ready_slots;
          cv.notify_all();
        }
        std::lock_guard lock(report_mutex);
        ins_ref.init_s += static_cast<double>(get<std::uint64_t>(body)) * 1e-9;
        ins_ref.starting_s += std::chrono::duration<double>(Clock::now() - st.spawn_time).count();
      } else if (kind == kRecChunkEnd) {
        auto work_ns = get<std::uint64_t>(body + 8);
        auto count = get<std::uint32_t>(body + 16);
        SlotSpeed& speed = speeds[static_cast<std::size_t>(k)];
        if (count > 0) {
          double x = static_cast<double>(work_ns) / count;
          speed.ns_per_element = speed.ns_per_element == 0 ? x : 0.75 * speed.ns_per_element + 0.25 * x;
        }
        std::lock_guard lock(report_mutex);
        ins_ref.waiting_s += static_cast<double>(get<std::uint64_t>(body)) * 1e-9;
        ins_ref.working_s += static_cast<double>(work_ns) * 1e-9;
      } else if (kind == kRecExit) {
        st.goodbye = true;
        std::lock_guard lock(report_mutex);
        ins_ref.exit_s += static_cast<double>(get<std::uint64_t>(body + 1)) * 1e-9;
        if (body[9]) exit_values.push_back(ExitValue::from_bytes(std::string(body + 10, body_len - 10)));
      } else if (kind == kRecError) {
        fail(std::string(body, body_len));
      } else {
        fail("ProcessPool: worker " + std::to_string(k) + " sent a record of unknown kind " +
             std::to_string(kind));
      }
    }
    if (st.in_off > 0 && st.in_off == b.size()) {
      b.clear();
      st.in_off = 0;
    } else if (st.in_off > (1u << 20)) {
      b.erase(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(st.in_off));
      st.in_off = 0;
    }
    if (elements > 0) {
      std::lock_guard lock(report_mutex);
      ins_ref.elements += elements;
      ins_ref.chunks += chunks;
    }
    if (!slow.empty()) {
      keep_slowest(slow);
      std::lock_guard lock(report_mutex);
      slowest.insert(slowest.end(), slow.begin(), slow.end());
      keep_slowest(slowest);
    }
  };

  auto read_results = [&](int k) {
    Ring& r = result_rings[static_cast<std::size_t>(k)];
    std::uint64_t avail = r.readable();
    if (avail == 0) return false;
    Bytes& b = slots[static_cast<std::size_t>(k)].inbuf;
    std::size_t old = b.size();
    b.resize(old + static_cast<std::size_t>(avail));
    b.resize(old + r.read_some(b.data() + old, static_cast<std::size_t>(avail)));
    r.wake_worker();
    parse(k);
    return true;
  };

  auto on_death = [&](int k) {
    SlotState& st = slots[static_cast<std::size_t>(k)];
    SlotShm& s = *shm[static_cast<std::size_t>(k)];
    read_results(k);  // what the worker committed before it died is valid
    std::uint64_t running = s.cur_index.load();
    int status = s.exit_status.load();
    if (!st.goodbye) {
      std::string how = status == -1 ? "could not be started" : describe_status(status);
      // Results batched in the dead worker are lost, so the element it was running may lie
      // past the first one without a result; its index came through shared memory.
      if (!st.assigned.empty() && running > 0) {
        Chunk& c = *st.assigned.front().chunk;
        std::uint64_t idx = running - 1;
        if (idx >= c.task.first + c.received && idx < c.task.first + c.task.count) {
          auto pos = static_cast<std::uint32_t>(idx - c.task.first);
          if (st.timeout_index >= 0 && static_cast<std::uint64_t>(st.timeout_index) == idx) {
            c.forced[pos] = failure_record(kRecTimeout, "ran longer than task_timeout (" +
                                                            std::to_string(options.task_timeout.count()) +
                                                            " ms); its worker was killed");
          } else if (int deaths = ++c.crashes[pos]; deaths > options.max_crash_retries) {
            c.forced[pos] =
                failure_record(kRecCrash, "worker " + std::to_string(k) + " " + how + " while running it, " +
                                              std::to_string(deaths) + " times");
          }
        }
      }
      if (status == -1) fail("ProcessPool: worker " + std::to_string(k) + " could not be forked");
    }
    // Hand back what the worker held, oldest first, from the first element without a result.
    for (auto it = st.assigned.rbegin(); it != st.assigned.rend(); ++it) {
      if (advance(*it->chunk)) {
        complete(it->chunk, false);
      } else if (stopping) {
        complete(it->chunk, true);
      } else {
        reruns.push_front({it->chunk, 0, 0});
      }
    }
    st.assigned.clear();
    {
      std::lock_guard lock(report_mutex);
      ++insights[static_cast<std::size_t>(k)].restarts;
    }
    if (stopping || (st.stop_sent && st.goodbye)) {
      st.phase = Phase::kFinal;
      task_rings[static_cast<std::size_t>(k)].reset();
      result_rings[static_cast<std::size_t>(k)].reset();
    } else {
      spawn(k);
    }
  };

  // Drops the chunks of cancelled calls that no worker holds, hands a finished direct map back
  // to its caller and tells a direct map's caller when progress is due.
  auto is_cancelled = [](const std::any& a) { return std::any_cast<const WorkItem&>(a).chunk->cancelled(); };
  auto skip = [&](std::any&& a) { complete(std::any_cast<WorkItem&>(a).chunk, true); };
  auto sweep = [&] {
    for (auto it = reruns.begin(); it != reruns.end();) {
      if (it->chunk->cancelled()) {
        auto c = it->chunk;
        it = reruns.erase(it);
        complete(c, true);
      } else {
        ++it;
      }
    }
    if (!queue.empty()) {
      queue.remove_if(is_cancelled, skip);
      queue_size.store(queue.size());
    }
    for (auto it = sources.begin(); it != sources.end();) {
      DirectJob* j = *it;
      const bool cut_all = j->next >= j->map->total() || j->cancelled.load() || stopping;
      if (cut_all && j->in_flight == 0) {
        if (j->next < j->map->total() && !j->cancelled.load()) j->stopped = true;
        it = sources.erase(it);
        hand_back(*j);
        continue;
      }
      if (j->options->progress && j->done.load(std::memory_order_relaxed) != j->progress_done) {
        auto now = Clock::now();
        if (now - j->last_progress >= j->options->progress_interval) {
          j->last_progress = now;
          j->progress_done = j->done.load(std::memory_order_relaxed);
          std::lock_guard lock(j->mutex);
          j->progress_due = true;
          j->cv.notify_all();
        }
      }
      ++it;
    }
  };

  // Starts slots active..to-1. The server learns of them from ctl->workers before it is rung.
  auto add_slots = [&](int to) {
    {
      std::lock_guard lock(report_mutex);
      for (int k = active; k < to; ++k) insights.push_back(WorkerInsights{.id = k});
    }
    ctl->workers.store(to);
    for (int k = active; k < to; ++k) spawn(k);
    active = to;
    // Others' work goes to unbound workers first, so that bound ones stay free for their own.
    hand_order.clear();
    for (int k = 0; k < active; ++k)
      if (queue.binding(k) < 0) hand_order.push_back(k);
    for (int k = 0; k < active; ++k)
      if (queue.binding(k) >= 0) hand_order.push_back(k);
  };
  add_slots(n.load());

  for (;;) {
    bool progressed = false;
    bool stop_now = false;
    int grow = 0;
    {
      std::lock_guard lock(mutex);
      while (!inbox.empty()) {
        auto c = std::make_shared<Chunk>();
        c->task = std::move(inbox.front());
        inbox.pop_front();
        int requestor = c->task.requestor;
        queue.push(WorkItem{std::move(c), 0, 0}, requestor);
        progressed = true;
      }
      queue_size.store(queue.size());
      while (!direct_inbox.empty()) {
        sources.push_back(direct_inbox.front());
        direct_inbox.pop_front();
        progressed = true;
      }
      stop_now = stop_requested;
      grow = grow_target;
    }
    if (stop_now && !stopping) {
      stopping = true;
      for (WorkItem& w : reruns) complete(w.chunk, true);
      reruns.clear();
      queue.remove_if([](const std::any&) { return true; }, skip);
      queue_size.store(0);
      progressed = true;
    }
    if (grow > active && !stopping) {
      add_slots(grow);
      progressed = true;
    }
    for (int k = 0; k < active; ++k) {
      auto i = static_cast<std::size_t>(k);
      SlotState& st = slots[i];
      SlotShm& s = *shm[i];
      if (st.phase == Phase::kFinal) continue;
      if (st.phase == Phase::kSpawning && s.spawned_gen.load() == st.gen) {
        st.phase = Phase::kRunning;
        progressed = true;
      }
      if (st.phase != Phase::kSpawning) progressed |= read_results(k);
      if (st.phase != Phase::kSpawning && s.dead_gen.load() == st.gen) {
        on_death(k);
        progressed = true;
      }
    }
    // Dispatch, one chunk per worker per round, so that workers share what there is. With
    // affinity, free bound workers first take what they prefer, then free workers take the
    // rest, unbound ones first.
    for (bool handed = true; handed;) {
      handed = false;
      for (int pass = queue.has_affinity() ? 0 : 1; pass < 2; ++pass) {
        const bool preferred_only = pass == 0;
        for (int k : hand_order) {
          if (!wants_more(k)) continue;
          WorkItem item;
          if (!take_next(k, item, preferred_only)) {
            if (preferred_only) continue;
            break;
          }
          handed = true;
          if (item.chunk->cancelled()) {
            complete(item.chunk, true);
            continue;
          }
          if (advance(*item.chunk)) {
            complete(item.chunk, false);
            continue;
          }
          SlotState& st = slots[static_cast<std::size_t>(k)];
          if (!send_task(k, st, item)) {
            complete(item.chunk, true);
            continue;
          }
          st.assigned.push_back(std::move(item));
          progressed = true;
        }
      }
    }
    sweep();
    // Flush outgoing bytes, queue STOP behind the work of each worker when stopping, and set
    // each worker's refill mark: a wake-up when half of what it holds is left.
    bool all_final = true;
    for (int k = 0; k < active; ++k) {
      auto i = static_cast<std::size_t>(k);
      SlotState& st = slots[i];
      if (st.phase == Phase::kFinal) continue;
      all_final = false;
      if (stopping && st.phase == Phase::kRunning && !st.stop_sent) {
        put<std::uint32_t>(st.outbuf, 1);
        st.outbuf.push_back(static_cast<char>(kMsgStop));
        st.stop_sent = true;
      }
      if (st.phase != Phase::kRunning) continue;
      std::uint32_t mark =
          st.posted_held > 0 ? kWakeAlways : static_cast<std::uint32_t>(st.assigned.size() / 2);
      if (mark != st.wake_left) shm[i]->wake_left.store(st.wake_left = mark);
      if (st.out_off == st.outbuf.size()) continue;
      Ring& r = task_rings[i];
      std::size_t wrote = r.write_some(st.outbuf.data() + st.out_off, st.outbuf.size() - st.out_off);
      st.out_off += wrote;
      if (wrote > 0) {
        progressed = true;
        r.wake_worker();
      }
      if (st.out_off == st.outbuf.size()) {
        st.outbuf.clear();
        st.out_off = 0;
        r.header()->parent_waiting.store(0);
      } else {
        r.header()->parent_waiting.store(1);
      }
    }
    if (stopping && all_final) break;
    // Timeouts: ask the server to kill a worker whose element overran.
    long sleep_ms = -1;
    if (timeout_ns > 0) {
      std::uint64_t now = now_ns();
      for (int k = 0; k < active; ++k) {
        auto i = static_cast<std::size_t>(k);
        SlotState& st = slots[i];
        SlotShm& s = *shm[i];
        if (st.phase != Phase::kRunning || st.timeout_index >= 0) continue;
        std::uint64_t start = s.cur_start_ns.load(), idx = s.cur_index.load();
        if (start == 0 || idx == 0) continue;
        if (now - std::min(now, start) >= timeout_ns) {
          st.timeout_index = static_cast<std::int64_t>(idx - 1);
          s.kill_gen.store(st.gen);
          ring_eventfd(server_efd);
        } else {
          long left = static_cast<long>((start + timeout_ns - now) / 1000000) + 1;
          sleep_ms = sleep_ms < 0 ? left : std::min(sleep_ms, left);
        }
      }
      // A worker between elements publishes no start; look again soon.
      if (sleep_ms < 0) sleep_ms = std::max<long>(1, static_cast<long>(timeout_ns / 4000000));
    }
    if (progressed) continue;
    // Sleep until a worker, the server or a caller rings. Say so first, then look once more,
    // so that a ring between the look and the poll is not lost.
    ctl->parent_sleeping.store(1);
    bool visible = false;
    for (int k = 0; k < active && !visible; ++k) {
      auto i = static_cast<std::size_t>(k);
      if (slots[i].phase == Phase::kFinal) continue;
      visible = result_rings[i].readable() > 0 || shm[i]->dead_gen.load() == slots[i].gen ||
                (slots[i].phase == Phase::kSpawning && shm[i]->spawned_gen.load() == slots[i].gen) ||
                (slots[i].out_off < slots[i].outbuf.size() && task_rings[i].writable() > 0);
    }
    {
      std::lock_guard lock(mutex);
      visible = visible || !inbox.empty() || !direct_inbox.empty() || (stop_requested && !stopping) ||
                (grow_target > active && !stopping);
    }
    if (!visible) {
      pollfd p{parent_efd, POLLIN, 0};
      if (poll(&p, 1, sleep_ms < 0 ? 1000 : static_cast<int>(sleep_ms)) > 0) drain_eventfd(parent_efd);
    }
    ctl->parent_sleeping.store(0);
  }
  // Every chunk completed on the way here; a direct map that came too late is stopped too.
  std::lock_guard lock(mutex);
  for (DirectJob* j : direct_inbox) sources.push_back(j);
  direct_inbox.clear();
  for (DirectJob* j : sources) {
    j->stopped = j->stopped || (j->next < j->map->total() && !j->cancelled.load());
    hand_back(*j);
  }
  loop_done = true;
  cv.notify_all();
}

// ============================== engine ======================================================

ProcessEngine::ProcessEngine(PoolOptions options) : s_(std::make_unique<State>()) {
  State& s = *s_;
  PoolSize size = validate_pool_options(options, "ProcessPool");
  if (options.ring_bytes < kPage) throw UsageError("ProcessPool: ring_bytes must be at least 4096");
  if (options.max_crash_retries < 0) throw UsageError("ProcessPool: max_crash_retries must not be negative");
  s.options = std::move(options);
  s.n = size.n_jobs;
  s.cap = size.cap;
  s.queue = TaskQueue(s.options.worker_requestors, s.options.affinity_patience);
  s.ring_bytes = kPage;
  while (s.ring_bytes < s.options.ring_bytes) s.ring_bytes <<= 1;
  s.timed = s.options.task_timeout.count() > 0 || s.options.enable_insights;
  s.insights.reserve(static_cast<std::size_t>(s.cap));  // the event loop adds one per slot it starts

  const std::size_t slot_bytes = kPage + 2 * s.ring_bytes;
  // Every slot the pool may grow to exists before the fork, so that all processes map it.
  s.region_size = kPage + static_cast<std::size_t>(s.cap) * slot_bytes;
  s.region = mmap(nullptr, s.region_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (s.region == MAP_FAILED) {
    throw PoolError("ProcessPool: mmap of " + std::to_string(s.region_size) +
                    " bytes of shared memory failed: " + errno_text());
  }
  auto* base = static_cast<char*>(s.region);
  s.ctl = new (base) Control();
  s.ctl->parent_pid = getpid();
  for (int k = 0; k < s.cap; ++k) {
    char* at = base + kPage + static_cast<std::size_t>(k) * slot_bytes;
    auto* slot = new (at) SlotShm();
    s.shm.push_back(slot);
    s.task_rings.emplace_back(&slot->task, at + kPage, s.ring_bytes);
    s.result_rings.emplace_back(&slot->result, at + kPage + s.ring_bytes, s.ring_bytes);
  }
  auto cleanup = [&] {
    if (s.parent_efd >= 0) close(s.parent_efd);
    if (s.server_efd >= 0) close(s.server_efd);
    munmap(s.region, s.region_size);
  };
  s.parent_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  s.server_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s.parent_efd < 0 || s.server_efd < 0) {
    std::string why = errno_text();
    cleanup();
    throw PoolError("ProcessPool: eventfd failed: " + why);
  }
  std::fflush(nullptr);  // or buffered output would be written again by every child
  pid_t pid = fork();
  if (pid < 0) {
    std::string why = errno_text();
    cleanup();
    throw PoolError("ProcessPool: forking the fork server failed: " + why);
  }
  if (pid == 0) {
    s.ctl->server_pid = getpid();
    s.server_main();
  }
  s.server = pid;
  s.ctl->server_pid = pid;
  s.loop = std::thread([this] { s_->run_loop(); });
  // Wait until every worker ran worker_init, so bad cpu_ids or a failing init surface here.
  std::string error;
  {
    std::unique_lock lock(s.mutex);
    s.cv.wait(lock, [&] {
      std::lock_guard r(s.report_mutex);
      return s.ready_slots == s.n || !s.error.empty();
    });
  }
  {
    std::lock_guard lock(s.report_mutex);
    error = s.error;
  }
  if (!error.empty()) {
    stop();
    throw PoolError(error);
  }
}

ProcessEngine::~ProcessEngine() {
  try {
    stop();
  } catch (...) {
    // A destructor must not throw; stop() only throws when it could not reap the server.
  }
}

int ProcessEngine::n_jobs() const { return s_->n.load(std::memory_order_relaxed); }
int ProcessEngine::max_n_jobs() const { return s_->cap; }
bool ProcessEngine::has_affinity() const { return s_->queue.has_affinity(); }
const PoolOptions& ProcessEngine::options() const { return s_->options; }

std::size_t ProcessEngine::queued() const {
  std::lock_guard lock(s_->mutex);
  return s_->inbox.size() + s_->queue_size.load();
}

int ProcessEngine::grow_to(int n) {
  State& s = *s_;
  std::lock_guard stop_lock(s.stop_mutex);
  const int to = std::min(n, s.cap);
  {
    std::unique_lock lock(s.mutex);
    if (!s.accepting || to <= s.n.load()) return s.n.load();
    s.grow_target = std::max(s.grow_target, to);
    s.wake_sleeping_loop();
    // Until every new worker ran worker_init, so that a failing init surfaces here.
    s.cv.wait(lock, [&] {
      std::lock_guard r(s.report_mutex);
      return s.ready_slots >= to || !s.error.empty() || s.loop_done;
    });
    if (s.ready_slots >= to) s.n = to;
  }
  check_health();
  return s.n.load();
}

void ProcessEngine::post(ChunkTask task) {
  std::lock_guard lock(s_->mutex);
  if (!s_->accepting) throw UsageError("ProcessPool: the pool was stopped; it takes no more work");
  s_->inbox.push_back(std::move(task));
  s_->wake_sleeping_loop();
}

void ProcessEngine::run_direct(DirectMap& map, const MapOptions& options) {
  using Clock = std::chrono::steady_clock;
  State& s = *s_;
  const auto start = Clock::now();
  auto last_report = start;
  DirectJob job;
  job.map = &map;
  job.options = &options;
  job.last_progress = start;
  auto report = [&](bool finished) {
    auto now = Clock::now();
    if (!finished && now - last_report < options.progress_interval) return;
    last_report = now;
    Progress p;
    p.done = job.done.load();
    p.failed = job.failed.load();
    p.total = map.total();
    p.elapsed_s = std::chrono::duration<double>(now - start).count();
    p.rate = p.elapsed_s > 0 ? static_cast<double>(p.done) / p.elapsed_s : 0;
    if (p.total > 0 && p.rate > 0)
      p.eta_s = static_cast<double>(p.total - std::min(p.total, p.done)) / p.rate;
    p.finished = finished;
    options.progress(p);
  };
  if (map.total() == 0) {
    if (options.progress) report(true);
    return;
  }
  {
    std::lock_guard lock(s.mutex);
    if (!s.accepting) throw UsageError("ProcessPool: the pool was stopped; it takes no more work");
    s.direct_inbox.push_back(&job);
    s.wake_sleeping_loop();
  }
  // Wake for progress and to notice a broken pool; the event loop wakes this thread when the
  // map ends. Whatever goes wrong here, the map is cancelled and waited for before the throw:
  // the event loop reads the caller's input and writes its output until it finishes.
  std::exception_ptr error;
  {
    const auto wait = options.progress ? std::max(options.progress_interval, std::chrono::milliseconds(1))
                                       : std::chrono::milliseconds(1000);
    std::unique_lock lock(job.mutex);
    while (!job.finished) {
      job.cv.wait_for(lock, wait, [&] { return job.finished || job.progress_due; });
      if (job.finished) break;
      job.progress_due = false;
      if (error) continue;
      lock.unlock();
      try {
        check_health();
        if (options.progress) report(false);
      } catch (...) {
        error = std::current_exception();
        job.cancelled = true;
        std::lock_guard pool_lock(s.mutex);
        if (s.accepting) ring_eventfd(s.parent_efd);  // else stop() ends the map anyway
      }
      lock.lock();
    }
  }
  if (error) std::rethrow_exception(error);
  if (job.error) std::rethrow_exception(job.error);
  if (job.stopped) throw PoolError("ProcessPool: the pool was stopped before the map ran to its end");
  if (!job.failures.empty() && options.on_error == OnError::kRaiseFirst) {
    throw TaskError({std::move(job.failures.front())});
  }
  if (options.progress) report(true);
  if (!job.failures.empty()) {
    std::sort(job.failures.begin(), job.failures.end(),
              [](const Failure& a, const Failure& b) { return a.index < b.index; });
    throw TaskError(std::move(job.failures));
  }
  check_health();
}

void ProcessEngine::stop() {
  State& s = *s_;
  std::lock_guard stop_lock(s.stop_mutex);
  if (s.stopped) return;
  {
    std::lock_guard lock(s.mutex);
    s.accepting = false;
    s.stop_requested = true;
  }
  ring_eventfd(s.parent_efd);
  s.loop.join();
  s.ctl->quit.store(1);
  ring_eventfd(s.server_efd);
  int status = 0;
  while (waitpid(s.server, &status, 0) < 0 && errno == EINTR) {
  }
  close(s.parent_efd);
  close(s.server_efd);
  munmap(s.region, s.region_size);
  s.stopped = true;
}

std::vector<ExitValue> ProcessEngine::exit_values() const {
  std::lock_guard lock(s_->report_mutex);
  return s_->exit_values;
}

Insights ProcessEngine::insights() const {
  std::lock_guard lock(s_->report_mutex);
  return Insights{s_->insights, s_->slowest};
}

void ProcessEngine::check_health() const {
  std::lock_guard lock(s_->report_mutex);
  if (!s_->error.empty()) throw PoolError(s_->error);
}

std::vector<pid_t> ProcessEngine::worker_pids() const {
  std::vector<pid_t> out;
  std::lock_guard lock(s_->stop_mutex);
  if (s_->stopped) return out;
  for (SlotShm* slot : s_->shm) {
    pid_t p = slot->pid.load();
    if (p > 0) out.push_back(p);
  }
  return out;
}

pid_t ProcessEngine::server_pid() const { return s_->server; }

}  // namespace mpmux::pool_detail
