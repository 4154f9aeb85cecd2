#include "mpmux/thread_pool.hpp"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "pool/affinity.hpp"

namespace mpmux::pool_detail {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

struct ThreadEngine::State {
  PoolOptions options;
  int n = 0;
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::function<void(Worker&)>> queue;
  bool stopping = false;
  bool stopped = false;
  std::mutex stop_mutex;
  std::vector<std::thread> threads;
  int ready = 0;
  std::condition_variable ready_cv;

  mutable std::mutex report_mutex;  // exit values, insights, errors
  std::vector<ExitValue> exit_values;
  std::vector<WorkerInsights> insights;
  std::vector<SlowTask> slowest;
  std::string error;
};

ThreadEngine::ThreadEngine(PoolOptions options) : s_(std::make_unique<State>()) {
  s_->n = validate_pool_options(options, "ThreadPool");
  if (options.task_timeout.count() > 0) {
    throw UsageError("ThreadPool: task_timeout needs a ProcessPool (a thread cannot be killed)");
  }
  s_->options = std::move(options);
  s_->insights.resize(static_cast<std::size_t>(s_->n));
  for (int id = 0; id < s_->n; ++id) s_->insights[static_cast<std::size_t>(id)].id = id;
  s_->threads.reserve(static_cast<std::size_t>(s_->n));
  for (int id = 0; id < s_->n; ++id) s_->threads.emplace_back([this, id] { worker_main(id); });
  // Every worker is pinned and initialized before the pool is handed out, so a bad set of
  // cpu_ids or a failing worker_init surfaces here.
  std::string error;
  {
    std::unique_lock lock(s_->mutex);
    s_->ready_cv.wait(lock, [&] { return s_->ready == s_->n; });
  }
  {
    std::lock_guard lock(s_->report_mutex);
    error = s_->error;
  }
  if (!error.empty()) {
    stop();
    throw PoolError(error);
  }
}

ThreadEngine::~ThreadEngine() { stop(); }

int ThreadEngine::n_jobs() const { return s_->n; }
const PoolOptions& ThreadEngine::options() const { return s_->options; }

void ThreadEngine::post(std::function<void(Worker&)> work) {
  {
    std::lock_guard lock(s_->mutex);
    if (s_->stopping) throw UsageError("ThreadPool: the pool was stopped; it takes no more work");
    s_->queue.push_back(std::move(work));
  }
  s_->cv.notify_one();
}

void ThreadEngine::stop() {
  std::lock_guard stop_lock(s_->stop_mutex);
  if (s_->stopped) return;
  {
    std::lock_guard lock(s_->mutex);
    s_->stopping = true;
  }
  s_->cv.notify_all();
  for (std::thread& t : s_->threads) t.join();
  s_->stopped = true;
}

std::vector<ExitValue> ThreadEngine::exit_values() const {
  std::lock_guard lock(s_->report_mutex);
  return s_->exit_values;
}

Insights ThreadEngine::insights() const {
  std::lock_guard lock(s_->report_mutex);
  return Insights{s_->insights, s_->slowest};
}

void ThreadEngine::note_elements(int id, std::uint64_t elements, const std::vector<SlowTask>& slowest) {
  std::lock_guard lock(s_->report_mutex);
  // Counted before the chunk's results reach the caller, so a finished map sees them all.
  s_->insights[static_cast<std::size_t>(id)].elements += elements;
  ++s_->insights[static_cast<std::size_t>(id)].chunks;
  s_->slowest.insert(s_->slowest.end(), slowest.begin(), slowest.end());
  keep_slowest(s_->slowest);
}

void ThreadEngine::check_health() const {
  std::lock_guard lock(s_->report_mutex);
  if (!s_->error.empty()) throw PoolError(s_->error);
}

void ThreadEngine::worker_main(int id) {
  auto born = Clock::now();
  State& s = *s_;
  WorkerInsights& ins = s.insights[static_cast<std::size_t>(id)];
  auto fail = [&](const std::string& what) {
    std::lock_guard lock(s.report_mutex);
    if (s.error.empty()) s.error = what;
  };
  try {
    pin_calling_thread(cpu_set_for(s.options, id), id);
  } catch (const std::exception& e) {
    fail(std::string("ThreadPool: ") + e.what());
  }
  std::unique_ptr<Worker> worker;
  auto start_worker = [&] {
    worker = std::make_unique<Worker>(id, &s.options.shared_objects);
    if (!s.options.worker_init) return;
    auto t0 = Clock::now();
    try {
      s.options.worker_init(*worker);
    } catch (...) {
      fail("ThreadPool: worker_init failed in worker " + std::to_string(id) + ": " +
           exception_message(std::current_exception()));
    }
    std::lock_guard lock(s.report_mutex);
    ins.init_s += seconds_since(t0);
  };
  auto end_worker = [&] {
    if (!s.options.worker_exit) return;
    auto t0 = Clock::now();
    try {
      ExitValue v = s.options.worker_exit(*worker);
      std::lock_guard lock(s.report_mutex);
      s.exit_values.push_back(std::move(v));
    } catch (...) {
      fail("ThreadPool: worker_exit failed in worker " + std::to_string(id) + ": " +
           exception_message(std::current_exception()));
    }
    std::lock_guard lock(s.report_mutex);
    ins.exit_s += seconds_since(t0);
  };
  {
    std::lock_guard lock(s.report_mutex);
    ins.starting_s += seconds_since(born);
  }
  start_worker();
  {
    std::lock_guard lock(s.mutex);
    ++s.ready;
  }
  s.ready_cv.notify_all();

  std::uint64_t since_start = 0;
  for (;;) {
    std::function<void(Worker&)> work;
    auto t_wait = Clock::now();
    {
      std::unique_lock lock(s.mutex);
      s.cv.wait(lock, [&] { return s.stopping || !s.queue.empty(); });
      if (s.queue.empty()) break;
      work = std::move(s.queue.front());
      s.queue.pop_front();
    }
    auto t_work = Clock::now();
    try {
      work(*worker);
    } catch (...) {
      fail("ThreadPool: a task escaped its wrapper in worker " + std::to_string(id) + ": " +
           exception_message(std::current_exception()));
    }
    {
      std::lock_guard lock(s.report_mutex);
      ins.waiting_s += std::chrono::duration<double>(t_work - t_wait).count();
      ins.working_s += seconds_since(t_work);
    }
    if (s.options.worker_lifespan > 0 && ++since_start >= s.options.worker_lifespan) {
      end_worker();
      start_worker();
      since_start = 0;
      std::lock_guard lock(s.report_mutex);
      ++ins.restarts;
    }
  }
  end_worker();
}

}  // namespace mpmux::pool_detail
