// The process pool engine. Three kinds of process:
//  - the caller, whose event-loop thread moves chunks into per-worker task rings and results
//    out of result rings (all in one MAP_SHARED|MAP_ANONYMOUS region mapped before any fork);
//  - a fork server, forked in the constructor while the caller is (by contract) single-
//    threaded, which forks every worker, watches each with a pidfd, reaps it and reports its
//    death through the control block at once;
//  - the workers, which run elements and stream one record per element back.
// Wake-ups: a worker sleeps on a futex in its ring; the event loop and the server sleep in
// poll() on eventfds, rung only when the sleeper said it sleeps. No pipe carries data.
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

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <thread>

#include "pool/affinity.hpp"
#include "pool/shm_ring.hpp"

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

struct Control {
  std::atomic<std::uint32_t> parent_sleeping{0};
  std::atomic<std::uint32_t> quit{0};
  pid_t parent_pid = 0;
  pid_t server_pid = 0;
};

struct SlotShm {
  RingHeader task;    // event loop -> worker
  RingHeader result;  // worker -> event loop
  alignas(64) std::atomic<std::uint32_t> spawn_gen{0};  // asked by the event loop
  std::atomic<std::uint32_t> spawned_gen{0};            // done by the server
  std::atomic<std::uint32_t> dead_gen{0};               // reaped by the server
  std::atomic<std::uint32_t> kill_gen{0};               // kill asked by the event loop
  std::atomic<std::int32_t> pid{0};
  std::atomic<std::int32_t> exit_status{0};
  alignas(64) std::atomic<std::uint64_t> cur_index{0};  // element running + 1; 0: none
  std::atomic<std::uint64_t> cur_start_ns{0};
};

constexpr std::size_t kPage = 4096;
constexpr std::size_t kDepth = 2;  // chunks held per worker: one running, one waiting

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

template <class T>
void put(std::string& s, const T& v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
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

}  // namespace

struct ProcessEngine::State {
  PoolOptions options;
  int n = 0;
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
  bool stop_requested = false;
  bool accepting = true;
  bool loop_done = false;
  int ready_once = 0;
  bool stopped = false;
  std::mutex stop_mutex;
  std::thread loop;

  mutable std::mutex report_mutex;
  std::vector<ExitValue> exit_values;
  std::vector<WorkerInsights> insights;
  std::vector<SlowTask> slowest;
  std::string error;

  void fail(const std::string& what) {
    std::lock_guard lock(report_mutex);
    if (error.empty()) error = what;
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
  std::string& batch() { return batch_; }

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
    if (wake) notify_parent();
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
  std::string batch_;
};

void begin_record(std::string& out, std::uint8_t kind) {
  put<std::uint32_t>(out, 0);
  out.push_back(static_cast<char>(kind));
}
void end_record(std::string& out, std::size_t start) {
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
  std::string& out = ch.batch();
  auto send_error = [&](const std::string& msg) {
    std::size_t at = out.size();
    begin_record(out, kRecError);
    out += msg;
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
    out += value;
    end_record(out, at);
    ch.flush(true);
    std::fflush(nullptr);
    _exit(0);
  };

  std::string msg, output;
  std::uint64_t chunks = 0;
  const bool timed_ = timed;
  const bool with_ns = options.enable_insights;
  for (;;) {
    std::uint64_t wait_start = now_ns();
    std::uint32_t len = 0;
    ch.read_exact(reinterpret_cast<char*>(&len), 4);
    msg.resize(len);
    ch.read_exact(msg.data(), len);
    std::uint64_t work_start = now_ns();
    auto kind = static_cast<std::uint8_t>(msg[0]);
    if (kind == kMsgStop) finish(false);
    auto runner = reinterpret_cast<ElementRunner>(get<std::uint64_t>(msg.data() + 1));
    auto fn = static_cast<std::uintptr_t>(get<std::uint64_t>(msg.data() + 9));
    auto first = get<std::uint64_t>(msg.data() + 17);
    auto count = get<std::uint32_t>(msg.data() + 25);
    std::size_t at = 29;
    std::uint64_t last_flush = now_ns(CLOCK_MONOTONIC_COARSE);
    for (std::uint32_t k = 0; k < count; ++k) {
      std::uint32_t in_len = get<std::uint32_t>(msg.data() + at);
      std::string_view input(msg.data() + at + 4, in_len);
      at += 4 + in_len;
      std::uint64_t start = timed_ ? now_ns() : 0;
      if (timed_) slot.cur_start_ns.store(start, std::memory_order_relaxed);
      slot.cur_index.store(first + k + 1, std::memory_order_relaxed);
      output.clear();
      bool ok = runner(worker, fn, input, output);
      std::size_t rec = out.size();
      begin_record(out, ok ? std::uint8_t{kRecordOk} : static_cast<std::uint8_t>(FailureKind::kException));
      if (with_ns) put<std::uint64_t>(out, now_ns() - start);
      out += output;
      end_record(out, rec);
      // Results leave in batches; slow elements leave at once so progress stays visible.
      std::uint64_t coarse = now_ns(CLOCK_MONOTONIC_COARSE);
      if (out.size() >= 16384 || coarse - last_flush > 20000000) {
        ch.flush(coarse - last_flush > 20000000);
        last_flush = coarse;
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
    ch.flush(true);
    if (options.worker_lifespan > 0 && ++chunks >= options.worker_lifespan) finish(true);
  }
}

// ============================== fork server =================================================

void ProcessEngine::State::server_main() {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != ctl->parent_pid) _exit(0);
  signal(SIGCHLD, SIG_DFL);
  std::vector<int> pidfds(static_cast<std::size_t>(n), -1);
  std::vector<pid_t> pids(static_cast<std::size_t>(n), 0);
  std::vector<std::uint32_t> gens(static_cast<std::size_t>(n), 0);
  std::vector<bool> killed(static_cast<std::size_t>(n), false);
  std::vector<pollfd> fds;
  for (;;) {
    int live = 0;
    for (int k = 0; k < n; ++k) {
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
    for (int k = 0; k < n; ++k) {
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
  ChunkTask task;
  std::string results;
  std::uint32_t received = 0;              // elements [0, received) have a result record
  std::map<std::uint32_t, int> crashes;    // element position -> deaths while it ran
  std::map<std::uint32_t, std::string> forced;  // position -> the failure record it gets
  bool completed = false;
};

/// A chunk's elements [chunk->received, stop) given to one worker. A chunk is either pending
/// or held by one worker, never both; stop ends before an element with a forced outcome.
struct WorkItem {
  std::shared_ptr<Chunk> chunk;
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
  std::string outbuf;
  std::size_t out_off = 0;
  std::string inbuf;
  std::size_t in_off = 0;
  std::int64_t timeout_index = -1;  // element we killed the worker for
  std::chrono::steady_clock::time_point spawn_time;
};

}  // namespace

void ProcessEngine::State::run_loop() {
  using Clock = std::chrono::steady_clock;
  std::vector<SlotState> slots(static_cast<std::size_t>(n));
  std::deque<WorkItem> pending;
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
    st = SlotState{};
    st.gen = s.spawn_gen.load() + 1;
    st.spawn_time = Clock::now();
    s.spawn_gen.store(st.gen);
    ring_eventfd(server_efd);
  };

  auto complete = [&](const std::shared_ptr<Chunk>& c, bool skipped) {
    if (c->completed) return;
    c->completed = true;
    ChunkOutcome o;
    o.first = c->task.first;
    o.count = c->task.count;
    o.skipped = skipped;
    if (!skipped) o.results = std::move(c->results);
    auto done = std::move(c->task.done);
    c->task.inputs.clear();
    if (done) done(std::move(o));
  };

  // Files the forced failures (timeouts, repeated crashes) due at the chunk's next position.
  auto advance = [&](Chunk& c) {
    for (auto it = c.forced.find(c.received); it != c.forced.end(); it = c.forced.find(c.received)) {
      c.results += it->second;
      ++c.received;
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

  // Queues the task message for elements [received, stop) of the item's chunk.
  auto send_task = [&](SlotState& st, WorkItem& item) {
    Chunk& c = *item.chunk;
    const ChunkTask& t = c.task;
    auto f = c.forced.lower_bound(c.received);
    item.stop = f == c.forced.end() ? t.count : f->first;
    std::size_t off = 0, end = 0;
    for (std::uint32_t k = 0; k < item.stop; ++k) {
      if (k == c.received) off = end;
      end += 4 + get<std::uint32_t>(t.inputs.data() + end);
    }
    std::string& o = st.outbuf;
    put<std::uint32_t>(o, static_cast<std::uint32_t>(1 + 8 + 8 + 8 + 4 + (end - off)));
    o.push_back(static_cast<char>(kMsgTask));
    put<std::uint64_t>(o, reinterpret_cast<std::uint64_t>(t.runner));
    put<std::uint64_t>(o, t.fn);
    put<std::uint64_t>(o, t.first + c.received);
    put<std::uint32_t>(o, item.stop - c.received);
    o.append(t.inputs, off, end - off);
  };

  // Handles the records of slot k now in its inbuf; returns whether anything happened.
  auto parse = [&](int k) {
    SlotState& st = slots[static_cast<std::size_t>(k)];
    WorkerInsights& ins_ref = insights[static_cast<std::size_t>(k)];
    std::string& b = st.inbuf;
    std::vector<SlowTask> slow;
    std::uint64_t elements = 0, chunks = 0;  // counted here, before the caller hears of them
    while (b.size() - st.in_off >= 4) {
      std::uint32_t len = get<std::uint32_t>(b.data() + st.in_off);
      if (b.size() - st.in_off < 4 + static_cast<std::size_t>(len)) break;
      const char* rec = b.data() + st.in_off;
      auto kind = static_cast<std::uint8_t>(rec[4]);
      const char* body = rec + 5;
      std::size_t body_len = len - 1;
      if (kind < 0x10) {
        if (st.assigned.empty()) {
          fail("ProcessPool: worker " + std::to_string(k) + " sent a result for no chunk");
        } else {
          WorkItem& item = st.assigned.front();
          Chunk& c = *item.chunk;
          std::uint64_t ns = 0;
          if (with_ns) {
            ns = get<std::uint64_t>(body);
            body += 8;
            body_len -= 8;
          }
          std::size_t at = c.results.size();
          begin_record(c.results, kind);
          c.results.append(body, body_len);
          end_record(c.results, at);
          if (with_ns) slow.push_back({c.task.first + c.received, static_cast<double>(ns) * 1e-9, k});
          ++c.received;
          ++elements;
          if (c.received == item.stop) {
            ++chunks;
            {
              std::lock_guard lock(report_mutex);
              ins_ref.elements += elements;
              ins_ref.chunks += chunks;
              elements = chunks = 0;
            }
            auto held = item.chunk;
            st.assigned.pop_front();
            if (advance(*held)) {
              complete(held, false);
            } else {
              pending.push_front({held, 0});  // the rest, past a forced failure
            }
          }
        }
      } else if (kind == kRecReady) {
        st.ready_seen = true;
        std::lock_guard lock(report_mutex);
        ins_ref.init_s += static_cast<double>(get<std::uint64_t>(body)) * 1e-9;
        ins_ref.starting_s += std::chrono::duration<double>(Clock::now() - st.spawn_time).count();
      } else if (kind == kRecChunkEnd) {
        std::lock_guard lock(report_mutex);
        ins_ref.waiting_s += static_cast<double>(get<std::uint64_t>(body)) * 1e-9;
        ins_ref.working_s += static_cast<double>(get<std::uint64_t>(body + 8)) * 1e-9;
      } else if (kind == kRecExit) {
        st.goodbye = true;
        std::lock_guard lock(report_mutex);
        ins_ref.exit_s += static_cast<double>(get<std::uint64_t>(body + 1)) * 1e-9;
        if (body[9]) exit_values.push_back(ExitValue::from_bytes(std::string(body + 10, body_len - 10)));
      } else if (kind == kRecError) {
        fail(std::string(body, body_len));
      } else {
        fail("ProcessPool: worker " + std::to_string(k) + " sent a record of unknown kind " + std::to_string(kind));
      }
      st.in_off += 4 + len;
    }
    if (st.in_off > 0 && st.in_off == b.size()) {
      b.clear();
      st.in_off = 0;
    } else if (st.in_off > (1u << 20)) {
      b.erase(0, st.in_off);
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

  char scratch[65536];
  auto read_results = [&](int k) {
    Ring& r = result_rings[static_cast<std::size_t>(k)];
    bool any = false;
    for (;;) {
      std::size_t got = r.read_some(scratch, sizeof scratch);
      if (got == 0) break;
      slots[static_cast<std::size_t>(k)].inbuf.append(scratch, got);
      any = true;
    }
    if (any) {
      r.wake_worker();
      parse(k);
    }
    return any;
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
            c.forced[pos] = failure_record(kRecCrash, "worker " + std::to_string(k) + " " + how +
                                                          " while running it, " + std::to_string(deaths) + " times");
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
        pending.push_front({it->chunk, 0});
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

  for (int k = 0; k < n; ++k) spawn(k);

  for (;;) {
    bool progressed = false;
    bool stop_now = false;
    {
      std::lock_guard lock(mutex);
      while (!inbox.empty()) {
        auto c = std::make_shared<Chunk>();
        c->task = std::move(inbox.front());
        inbox.pop_front();
        pending.push_back({std::move(c), 0});
        progressed = true;
      }
      stop_now = stop_requested;
    }
    if (stop_now && !stopping) {
      stopping = true;
      for (WorkItem& w : pending) complete(w.chunk, true);
      pending.clear();
      progressed = true;
    }
    int ready = 0;
    for (int k = 0; k < n; ++k) {
      auto i = static_cast<std::size_t>(k);
      SlotState& st = slots[i];
      SlotShm& s = *shm[i];
      if (st.phase == Phase::kFinal) continue;
      if (st.phase == Phase::kSpawning && s.spawned_gen.load() == st.gen) {
        st.phase = Phase::kRunning;
        progressed = true;
      }
      if (st.phase != Phase::kSpawning) progressed |= read_results(k);
      if (st.ready_seen) ++ready;
      if (st.phase != Phase::kSpawning && s.dead_gen.load() == st.gen) {
        on_death(k);
        progressed = true;
      }
    }
    {
      std::lock_guard lock(mutex);
      if (ready > ready_once) {
        ready_once = ready;
        cv.notify_all();
      }
    }
    // Dispatch: each worker holds at most kDepth chunks (one running, one waiting in its ring), so
    // it need not sleep between chunks, and a slow worker does not hoard the tail.
    for (int k = 0; k < n && !pending.empty(); ++k) {
      SlotState& st = slots[static_cast<std::size_t>(k)];
      while (st.phase == Phase::kRunning && !st.stop_sent && st.assigned.size() < kDepth && !pending.empty()) {
        WorkItem item = std::move(pending.front());
        pending.pop_front();
        if (item.chunk->task.cancelled && item.chunk->task.cancelled->load()) {
          complete(item.chunk, true);
          continue;
        }
        if (advance(*item.chunk)) {
          complete(item.chunk, false);
          continue;
        }
        send_task(st, item);
        st.assigned.push_back(std::move(item));
        progressed = true;
      }
    }
    // Flush outgoing bytes, and queue STOP behind the work of each worker when stopping.
    bool all_final = true;
    for (int k = 0; k < n; ++k) {
      auto i = static_cast<std::size_t>(k);
      SlotState& st = slots[i];
      if (st.phase == Phase::kFinal) continue;
      all_final = false;
      if (stopping && st.phase == Phase::kRunning && !st.stop_sent) {
        put<std::uint32_t>(st.outbuf, 1);
        st.outbuf.push_back(static_cast<char>(kMsgStop));
        st.stop_sent = true;
      }
      if (st.phase != Phase::kRunning || st.out_off == st.outbuf.size()) continue;
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
      for (int k = 0; k < n; ++k) {
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
    for (int k = 0; k < n && !visible; ++k) {
      auto i = static_cast<std::size_t>(k);
      if (slots[i].phase == Phase::kFinal) continue;
      visible = result_rings[i].readable() > 0 || shm[i]->dead_gen.load() == slots[i].gen ||
                (slots[i].phase == Phase::kSpawning && shm[i]->spawned_gen.load() == slots[i].gen) ||
                (slots[i].out_off < slots[i].outbuf.size() && task_rings[i].writable() > 0);
    }
    {
      std::lock_guard lock(mutex);
      visible = visible || !inbox.empty() || (stop_requested && !stopping);
    }
    if (!visible) {
      pollfd p{parent_efd, POLLIN, 0};
      poll(&p, 1, sleep_ms < 0 ? 1000 : static_cast<int>(sleep_ms));
    }
    ctl->parent_sleeping.store(0);
    drain_eventfd(parent_efd);
  }
  std::lock_guard lock(mutex);
  loop_done = true;
  cv.notify_all();
}

// ============================== engine ======================================================

ProcessEngine::ProcessEngine(PoolOptions options) : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.n = validate_pool_options(options, "ProcessPool");
  if (options.ring_bytes < kPage) throw UsageError("ProcessPool: ring_bytes must be at least 4096");
  if (options.max_crash_retries < 0) throw UsageError("ProcessPool: max_crash_retries must not be negative");
  s.options = std::move(options);
  s.ring_bytes = kPage;
  while (s.ring_bytes < s.options.ring_bytes) s.ring_bytes <<= 1;
  s.timed = s.options.task_timeout.count() > 0 || s.options.enable_insights;
  s.insights.resize(static_cast<std::size_t>(s.n));
  for (int k = 0; k < s.n; ++k) s.insights[static_cast<std::size_t>(k)].id = k;

  const std::size_t slot_bytes = kPage + 2 * s.ring_bytes;
  s.region_size = kPage + static_cast<std::size_t>(s.n) * slot_bytes;
  s.region = mmap(nullptr, s.region_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (s.region == MAP_FAILED) {
    throw PoolError("ProcessPool: mmap of " + std::to_string(s.region_size) + " bytes of shared memory failed: " +
                    errno_text());
  }
  auto* base = static_cast<char*>(s.region);
  s.ctl = new (base) Control();
  s.ctl->parent_pid = getpid();
  for (int k = 0; k < s.n; ++k) {
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
      return s.ready_once == s.n || !s.error.empty();
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

int ProcessEngine::n_jobs() const { return s_->n; }
const PoolOptions& ProcessEngine::options() const { return s_->options; }

void ProcessEngine::post(ChunkTask task) {
  {
    std::lock_guard lock(s_->mutex);
    if (!s_->accepting) throw UsageError("ProcessPool: the pool was stopped; it takes no more work");
    s_->inbox.push_back(std::move(task));
  }
  ring_eventfd(s_->parent_efd);
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
