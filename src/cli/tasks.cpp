#include "cli/tasks.hpp"

#include <pthread.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace mpmux::cli {

namespace {

// Attempts that ended, filled by pool threads and emptied by the claiming thread. Shared with
// the callbacks, which may outlive the loop (an in-process element left running by a drain).
class EndedAttempts {
 public:
  void put(std::uint64_t id, Attempt attempt) {
    {
      std::lock_guard lock(mutex_);
      ended_.emplace_back(id, std::move(attempt));
    }
    cv_.notify_one();
  }
  // What ended so far, after waiting up to `wait` for anything to end.
  std::vector<std::pair<std::uint64_t, Attempt>> take(std::chrono::milliseconds wait) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, wait, [this] { return !ended_.empty(); });
    return std::exchange(ended_, {});
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::pair<std::uint64_t, Attempt>> ended_;
};

}  // namespace

Outcome template_failure(const UsageError& e) {
  Outcome outcome;
  outcome.type = RecordType::failed;
  outcome.exit_code = 127;
  outcome.stderr_tail = std::string("mpmux: ") + e.what();
  outcome.t_start = outcome.t_end = detail::unix_ns();
  return outcome;
}

bool killed_by_drain(Run& run, const Outcome& outcome) {
  const int sig = outcome.signal;
  return (sig == SIGUSR1 || sig == SIGTERM || sig == SIGINT) && run.stopping();
}

void run_concurrently(Run& run, ConcurrentTasks& tasks) {
  const auto ended = std::make_shared<EndedAttempts>();
  std::map<std::uint64_t, WorkItem> running;  // by attempt id
  std::uint64_t next_id = 0;
  const auto start = [&](const WorkItem& item) {
    const std::uint64_t id = next_id++;
    running.emplace(id, item);
    tasks.start(item, [ended, id](Attempt attempt) { ended->put(id, std::move(attempt)); });
  };
  const auto settle = [&](const WorkItem& item, Attempt& attempt) {
    if (attempt.error) std::rethrow_exception(attempt.error);
    if (!attempt.counts || killed_by_drain(run, attempt.outcome)) return;
    run.record(item, attempt.outcome);
  };
  WorkItem item;
  bool cancelled = false;
  for (;;) {
    while (static_cast<int>(running.size()) < tasks.slots() && run.try_next(item)) start(item);
    if (running.empty()) {
      if (!run.next(item)) return;  // the pass ends with the other ranks
      start(item);                  // the first element of a pass of retries
      continue;
    }
    // Record whatever has ended; look for the end of a drain's grace in between.
    auto batch = ended->take(std::chrono::milliseconds(20));
    for (auto& [id, attempt] : batch) {
      const auto it = running.find(id);
      const WorkItem done = it->second;
      running.erase(it);
      settle(done, attempt);
    }
    if (batch.empty() && run.must_cancel() && !cancelled) {
      cancelled = true;
      if (!tasks.cancel()) return;  // left running, never recorded: pending for the next run
    }
  }
}

// ----- --exec --procs K -----

CommandTasks::CommandTasks(const CommandTemplate& command, const CommandLimits& limits, int procs)
    : command_(command), limits_(limits), procs_(procs), pool_(PoolOptions{.n_jobs = procs}) {}

void CommandTasks::start(const WorkItem& item, std::function<void(Attempt)> ended) {
  // Rendered here, on the claiming thread: the element's bytes are valid only now.
  std::vector<std::string> argv;
  try {
    argv = command_.render(item.index, item.bytes);
  } catch (const UsageError& e) {
    Attempt attempt;
    attempt.outcome = template_failure(e);
    ended(std::move(attempt));
    return;
  }
  pool_.apply_async([this, argv = std::move(argv), ended = std::move(ended)] {
    Attempt attempt;
    try {
      attempt.counts = run_command(argv, attempt.outcome, limits_, [this] { return cancel_.load(); });
    } catch (...) {
      attempt.error = std::current_exception();
    }
    ended(std::move(attempt));
  });
}

bool CommandTasks::cancel() {
  cancel_ = true;  // each running command's process group is killed; its attempt is void
  return true;
}

// ----- --plugin --threads K -----

struct PluginTasks::Workers {
  std::shared_ptr<const run::TaskPlugin> plugin;
  std::vector<std::unique_ptr<run::PluginWorker>> slot;  // by worker id; touched by that thread only
  std::vector<std::string> init_error;                   // by worker id
  std::atomic<int> running{0};                           // elements inside the plugin
};

PluginTasks::PluginTasks(std::shared_ptr<const run::TaskPlugin> plugin, const std::string& arg, int rank,
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
      w->slot[id] = std::make_unique<run::PluginWorker>(
          w->plugin, run::PluginWorkerInfo{arg, rank, worker.id(), threads});
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

void PluginTasks::start(const WorkItem& item, std::function<void(Attempt)> ended) {
  ++workers_->running;
  // The element is copied: its bytes are valid only until the next claim.
  pool_->apply_async([w = workers_, index = item.index, element = std::string(item.bytes),
                      ended = std::move(ended)](Worker& worker) {
    Attempt attempt;
    try {
      attempt.outcome = w->slot[static_cast<std::size_t>(worker.id())]->process(index, element);
    } catch (...) {
      attempt.error = std::current_exception();
    }
    --w->running;
    ended(std::move(attempt));
  });
}

}  // namespace mpmux::cli
