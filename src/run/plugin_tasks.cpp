#include "run/plugin_tasks.hpp"

#include <pthread.h>

#include <atomic>
#include <csignal>
#include <vector>

namespace mpmux::run {

namespace {
// An element that took this long is reported at once, not with the rest of its batch.
constexpr std::int64_t kReportAtOnceNs = 5'000'000;
}  // namespace

struct PluginTasks::Workers {
  std::shared_ptr<const TaskPlugin> plugin;
  std::vector<std::unique_ptr<PluginWorker>> slot;  // by worker id; touched by that thread only
  std::vector<std::string> init_error;              // by worker id
  std::atomic<int> running{0};                      // batches inside the threads
  std::atomic<bool> stop_starting{false};
};

PluginTasks::PluginTasks(std::shared_ptr<const TaskPlugin> plugin, const std::string& arg, int rank,
                         int threads)
    : workers_(std::make_shared<Workers>()), threads_(threads) {
  workers_->plugin = std::move(plugin);
  workers_->slot.resize(static_cast<std::size_t>(threads));
  workers_->init_error.resize(static_cast<std::size_t>(threads));
  PoolOptions options;
  options.n_jobs = threads;
  // A plain pointer: the pool, which holds these functions, never outlives workers_.
  Workers* w = workers_.get();
  options.worker_init = [w, arg, rank, threads](Worker& worker) {
    // Drain signals go to the claiming thread: they must not interrupt the plugin's system calls
    // (the handlers do not restart them).
    sigset_t stop;
    sigemptyset(&stop);
    for (int sig : {SIGUSR1, SIGTERM, SIGINT}) sigaddset(&stop, sig);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    const auto id = static_cast<std::size_t>(worker.id());
    try {
      w->slot[id] =
          std::make_unique<PluginWorker>(w->plugin, PluginWorkerInfo{arg, rank, worker.id(), threads});
    } catch (const std::exception& e) {
      w->init_error[id] = e.what();
    }
  };
  options.worker_exit = [w](Worker& worker) {
    w->slot[static_cast<std::size_t>(worker.id())].reset();  // the plugin's finalize, in its thread
    return ExitValue();
  };
  pool_ = std::make_unique<ThreadPool>(std::move(options));  // returns once every init has returned
  for (const std::string& error : workers_->init_error) {
    if (error.empty()) continue;
    pool_.reset();
    throw UsageError(error);
  }
}

PluginTasks::~PluginTasks() {
  if (workers_->running.load() == 0) return;  // the pool joins its threads, each running finalize
  // Deliberately leaked (see the header): the pool, whose threads are busy, and the workers with
  // the library, which must be neither finalized nor closed under them.
  static_cast<void>(pool_.release());
  static_cast<void>(new std::shared_ptr<Workers>(workers_));
}

void PluginTasks::stop_starting() { workers_->stop_starting = true; }

void PluginTasks::start(std::shared_ptr<const ElementBatch> batch, std::shared_ptr<AttemptSink> sink) {
  ++workers_->running;
  pool_->apply_async([w = workers_, batch = std::move(batch), sink = std::move(sink)](Worker& worker) {
    PluginWorker& plugin = *w->slot[static_cast<std::size_t>(worker.id())];
    const std::size_t n = batch->size();
    for (std::size_t k = 0; k < n; ++k) {
      Attempt attempt;
      if (w->stop_starting.load(std::memory_order_relaxed)) {
        attempt.counts = false;  // not started: stays pending
      } else {
        try {
          attempt.outcome = plugin.process(batch->item(k).index, batch->bytes(k));
        } catch (...) {
          attempt.error = std::current_exception();
        }
      }
      if (k + 1 == n) --w->running;
      const bool slow = attempt.outcome.t_end - attempt.outcome.t_start >= kReportAtOnceNs;
      sink->put(batch->key(k), std::move(attempt), k + 1 == n || slow);
    }
  });
}

}  // namespace mpmux::run
