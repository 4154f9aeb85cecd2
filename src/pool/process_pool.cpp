// The process pool engine: builds the shared memory, forks the fork server, runs the event loop
// on a thread (event_loop.cpp) and takes the calls of the pool front. The fork server
// (fork_server.cpp) and the workers (process_worker.cpp) have files of their own; what they
// share is in process_state.hpp.
#include <sys/eventfd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <new>

#include "pool/process_state.hpp"

namespace mpmux::pool_detail {

ProcessEngine::ProcessEngine(PoolOptions options) : PoolEngine(std::move(options), "ProcessPool") {
  if (this->options().ring_bytes < kPage) throw UsageError("ProcessPool: ring_bytes must be at least 4096");
  if (this->options().max_crash_retries < 0) throw UsageError("ProcessPool: max_crash_retries must not be negative");
  s_ = std::make_unique<ProcessState>(this->options(), reports());
  ProcessState& s = *s_;
  set_n_jobs(initial_jobs());
  s.cap = max_n_jobs();
  s.queue = TaskQueue(s.options.worker_requestors, s.options.affinity_patience);
  s.ring_bytes = kPage;
  while (s.ring_bytes < s.options.ring_bytes) s.ring_bytes <<= 1;
  s.timed = s.options.task_timeout.count() > 0 || s.options.enable_insights;

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
  s.loop = std::thread([this, jobs = n_jobs()] { s_->run_loop(jobs); });
  // Wait until every worker ran worker_init, so bad cpu_ids or a failing init surface here.
  std::string error;
  {
    std::unique_lock lock(s.mutex);
    s.cv.wait(lock, [&] { return s.ready_slots == n_jobs() || !s.reports.error().empty(); });
  }
  error = s.reports.error();
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


std::size_t ProcessEngine::queued() const {
  std::lock_guard lock(s_->mutex);
  return s_->inbox.size() + s_->queue_size.load();
}

int ProcessEngine::grow_to(int n) {
  ProcessState& s = *s_;
  std::lock_guard stop_lock(s.stop_mutex);
  const int to = std::min(n, s.cap);
  {
    std::unique_lock lock(s.mutex);
    if (!s.accepting || to <= n_jobs()) return n_jobs();
    s.grow_target = std::max(s.grow_target, to);
    s.wake_sleeping_loop();
    // Until every new worker ran worker_init, so that a failing init surfaces here.
    s.cv.wait(lock, [&] { return s.ready_slots >= to || !s.reports.error().empty() || s.loop_done; });
    if (s.ready_slots >= to) set_n_jobs(to);
  }
  check_health();
  return n_jobs();
}

void ProcessEngine::post(ChunkTask task) {
  std::lock_guard lock(s_->mutex);
  if (!s_->accepting) throw UsageError("ProcessPool: the pool was stopped; it takes no more work");
  s_->inbox.push_back(std::move(task));
  s_->wake_sleeping_loop();
}

void ProcessEngine::run_direct(DirectMap& map, const MapOptions& options) {
  using Clock = std::chrono::steady_clock;
  ProcessState& s = *s_;
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
    options.progress(progress_at(job.done.load(), job.failed.load(), map.total(), start, finished));
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
  if (!job.failures.empty() && options.on_error == OnError::raise_first) {
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
  ProcessState& s = *s_;
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
