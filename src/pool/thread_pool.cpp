#include "mpmux/bits/thread_engine.hpp"

#include <algorithm>
#include <any>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include "pool/affinity.hpp"
#include "pool/task_queue.hpp"

namespace mpmux::pool_detail {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Waits up to kLookBeforeSleep for `queued` to be non-zero; true when it was. A caller that
// waits for each result (apply) posts its next task a few microseconds after it has it; a worker
// still looking takes that task without a sleep and a wake-up.
bool look_for_work(const std::atomic<std::size_t>& queued) {
  const auto end = Clock::now() + ThreadEngine::kLookBeforeSleep;
  for (unsigned i = 0;; ++i) {
    if (queued.load(std::memory_order_relaxed) > 0) return true;
    if ((i & 63) == 63 && Clock::now() > end) return false;
    std::this_thread::yield();
  }
}
}  // namespace

using Work = std::function<void(Worker&)>;

// Each worker waits on its own condition variable, so that a new task wakes the idle worker
// the affinity rule prefers for it rather than whichever thread the OS picks.
struct WakeSlot {
  std::condition_variable cv;
  bool woken = false;
};

struct ThreadEngine::State {
  std::mutex mutex;  // queue, slots, idle, stopping, ready
  TaskQueue queue;
  std::atomic<std::size_t> queued{0};            // queue.size(), for workers looking before they sleep
  int looking = 0;                               // workers looking for work before they sleep
  std::vector<std::unique_ptr<WakeSlot>> slots;  // one per started worker
  std::vector<int> idle;                         // workers waiting for a task, longest first
  bool stopping = false;
  bool stopped = false;
  std::mutex stop_mutex;  // stop() and grow_to()
  std::vector<std::thread> threads;
  int ready = 0;
  std::condition_variable ready_cv;
};

ThreadEngine::ThreadEngine(PoolOptions options)
    : PoolEngine(std::move(options), "ThreadPool"), s_(std::make_unique<State>()) {
  if (this->options().task_timeout.count() > 0) {
    throw UsageError("ThreadPool: task_timeout needs a ProcessPool (a thread cannot be killed)");
  }
  s_->queue = TaskQueue(this->options().worker_requestors, this->options().affinity_patience);
  // Reserved for the cap, so that growing never moves a slot a worker thread refers to.
  s_->slots.reserve(static_cast<std::size_t>(max_n_jobs()));
  s_->threads.reserve(static_cast<std::size_t>(max_n_jobs()));
  std::string error = start_workers(initial_jobs());
  if (!error.empty()) {
    stop();
    throw PoolError(error);
  }
}

// Starts workers n_jobs()..to-1 and waits until each is pinned and initialized, so that a bad set of
// cpu_ids or a failing worker_init surfaces to the caller. Returns the first error (a failed
// init or pinning, else a thread that could not be started), or "".
std::string ThreadEngine::start_workers(int to) {
  int from = n_jobs();
  reports().open_slots(from, to);
  {
    std::lock_guard lock(s_->mutex);
    for (int id = from; id < to; ++id) s_->slots.push_back(std::make_unique<WakeSlot>());
  }
  int started = from;
  std::string spawn_error;
  try {
    for (; started < to; ++started) s_->threads.emplace_back([this, id = started] { worker_main(id); });
  } catch (const std::system_error& e) {
    spawn_error = "ThreadPool: starting worker " + std::to_string(started) + " failed: " + e.what();
  }
  {
    std::unique_lock lock(s_->mutex);
    s_->ready_cv.wait(lock, [&] { return s_->ready == started; });
    s_->slots.resize(static_cast<std::size_t>(started));  // ids stay dense if a start failed
  }
  set_n_jobs(started);
  reports().keep_slots(started);
  std::string error = reports().error();
  return error.empty() ? spawn_error : error;
}

ThreadEngine::~ThreadEngine() { stop(); }

std::size_t ThreadEngine::queued() const {
  std::lock_guard lock(s_->mutex);
  return s_->queue.size();
}

int ThreadEngine::grow_to(int n) {
  std::lock_guard stop_lock(s_->stop_mutex);
  int now = n_jobs();
  int to = std::min(n, max_n_jobs());
  {
    std::lock_guard lock(s_->mutex);
    if (s_->stopping || to <= now) return now;
  }
  start_workers(to);
  // A failed worker_init breaks the pool (as at construction); a thread the system would not
  // start only leaves it smaller, which the caller sees in the count.
  check_health();
  return n_jobs();
}

void ThreadEngine::post(std::function<void(Worker&)> work, int requestor) {
  WakeSlot* wake = nullptr;
  {
    std::lock_guard lock(s_->mutex);
    if (s_->stopping) throw UsageError("ThreadPool: the pool was stopped; it takes no more work");
    s_->queue.push(std::move(work), requestor);
    s_->queued.store(s_->queue.size(), std::memory_order_relaxed);
    // A looking worker takes a task without being woken; a sleeping one is woken for the rest.
    if (!s_->idle.empty() && s_->queue.size() > static_cast<std::size_t>(s_->looking)) {
      // The longest idle worker is woken: the one that idled last may still be on its way to
      // sleep and then finds the task itself (waking it instead cost 1.5 us per round trip).
      // With affinity: an idle worker bound to this requestor, else an unbound one (so that
      // workers bound to others stay free for them), else any: idle workers take others' work.
      std::size_t pick = 0;
      if (s_->queue.has_affinity()) {
        std::size_t unbound = s_->idle.size();
        for (std::size_t k = 0; k < s_->idle.size(); ++k) {
          int bound = s_->queue.binding(s_->idle[k]);
          if (requestor >= 0 && bound == requestor) {
            unbound = k;
            break;
          }
          if (bound < 0 && unbound == s_->idle.size()) unbound = k;
        }
        if (unbound < s_->idle.size()) pick = unbound;
      }
      int id = s_->idle[pick];
      s_->idle.erase(s_->idle.begin() + static_cast<std::ptrdiff_t>(pick));
      wake = s_->slots[static_cast<std::size_t>(id)].get();
      wake->woken = true;
    }
  }
  if (wake) wake->cv.notify_one();
}

void ThreadEngine::stop() {
  std::lock_guard stop_lock(s_->stop_mutex);
  if (s_->stopped) return;
  {
    std::lock_guard lock(s_->mutex);
    s_->stopping = true;
    s_->idle.clear();
  }
  for (auto& slot : s_->slots) slot->cv.notify_all();
  for (std::thread& t : s_->threads) t.join();
  s_->stopped = true;
}

void ThreadEngine::note_elements(int id, std::uint64_t elements, const std::vector<SlowTask>& slowest) {
  // Counted before the chunk's results reach the caller, so a finished map sees them all.
  reports().update(id, [&](WorkerInsights& ins) {
    ins.elements += elements;
    ++ins.chunks;
  });
  reports().add_slowest(slowest);
}

void ThreadEngine::worker_main(int id) {
  auto born = Clock::now();
  State& s = *s_;
  const PoolOptions& options = this->options();
  WorkerReports& reports = this->reports();
  WakeSlot* slot;
  {
    std::lock_guard lock(s.mutex);
    slot = s.slots[static_cast<std::size_t>(id)].get();
  }
  bool init_failed = false;
  try {
    pin_calling_thread(cpu_set_for(options, id), id);
  } catch (const std::exception& e) {
    reports.fail(std::string("ThreadPool: ") + e.what());
  }
  std::unique_ptr<Worker> worker;
  auto start_worker = [&] {
    worker = std::make_unique<Worker>(id, &options.shared_objects);
    if (!options.worker_init) return;
    auto t0 = Clock::now();
    try {
      options.worker_init(*worker);
    } catch (...) {
      init_failed = true;
      reports.fail("ThreadPool: worker_init failed in worker " + std::to_string(id) + ": " +
                   exception_message(std::current_exception()));
    }
    reports.update(id, [&](WorkerInsights& ins) { ins.init_s += seconds_since(t0); });
  };
  auto end_worker = [&] {
    if (!options.worker_exit) return;
    auto t0 = Clock::now();
    try {
      reports.add_exit_value(options.worker_exit(*worker));
    } catch (...) {
      reports.fail("ThreadPool: worker_exit failed in worker " + std::to_string(id) + ": " +
                   exception_message(std::current_exception()));
    }
    reports.update(id, [&](WorkerInsights& ins) { ins.exit_s += seconds_since(t0); });
  };
  reports.update(id, [&](WorkerInsights& ins) { ins.starting_s += seconds_since(born); });
  start_worker();
  {
    std::lock_guard lock(s.mutex);
    ++s.ready;
  }
  s.ready_cv.notify_all();
  // A worker that could not initialize takes no task (the pool reports the error).
  if (init_failed) return;

  std::uint64_t since_start = 0;
  std::any item;
  // Waiting and working times are insights; without them the clock is not read per task.
  const bool timed = options.enable_insights;
  for (;;) {
    auto t_wait = timed ? Clock::now() : Clock::time_point{};
    {
      std::unique_lock lock(s.mutex);
      // With affinity a task waits for the worker the rule picks, so none looks by itself.
      bool looked = s.queue.has_affinity();
      while (!s.queue.pop(id, item)) {
        if (s.stopping) break;
        if (!looked) {
          looked = true;
          ++s.looking;
          lock.unlock();
          look_for_work(s.queued);
          lock.lock();
          --s.looking;
          continue;
        }
        slot->woken = false;
        s.idle.push_back(id);
        slot->cv.wait(lock, [&] { return slot->woken || s.stopping; });
      }
      s.queued.store(s.queue.size(), std::memory_order_relaxed);
    }
    if (!item.has_value()) break;
    Work& work = *std::any_cast<Work>(&item);
    auto t_work = timed ? Clock::now() : Clock::time_point{};
    try {
      work(*worker);
    } catch (...) {
      reports.fail("ThreadPool: a task escaped its wrapper in worker " + std::to_string(id) + ": " +
                   exception_message(std::current_exception()));
    }
    if (timed) {
      reports.update(id, [&](WorkerInsights& ins) {
        ins.waiting_s += std::chrono::duration<double>(t_work - t_wait).count();
        ins.working_s += seconds_since(t_work);
      });
    }
    item.reset();  // the task's captures (results sink, inputs) go before the next wait
    if (options.worker_lifespan > 0 && ++since_start >= options.worker_lifespan) {
      end_worker();
      start_worker();
      since_start = 0;
      reports.update(id, [](WorkerInsights& ins) { ++ins.restarts; });
    }
  }
  end_worker();
}

}  // namespace mpmux::pool_detail
