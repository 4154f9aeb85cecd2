#include "run/worker_tasks.hpp"

#include <pthread.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

#include "mpmux/error.hpp"
#include "mpmux/worker_program.hpp"

namespace mpmux::run {

namespace {

// An element that took this long is reported at once, not with the rest of its batch.
constexpr std::int64_t kReportAtOnceNs = 5'000'000;

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(std::llround(seconds * 1000));
}

// The last non-empty line of what a program wrote (a Python traceback ends with the error).
std::string last_line(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.remove_suffix(1);
  const auto nl = text.rfind('\n');
  return std::string(nl == std::string_view::npos ? text : text.substr(nl + 1));
}

// Why a process could not be started, in one line: the error and the last line it wrote.
std::string start_failure(const std::exception& e, const std::string& output) {
  std::string why = e.what();
  const std::string line = last_line(output);
  if (!line.empty()) why += "; its last output: " + line;
  return why;
}

}  // namespace

std::string worker_init_data(const std::string& mux_id, int rank, int slot, int slots,
                             const std::string& init) {
  return nlohmann::json{{"mux_id", mux_id}, {"rank", rank}, {"slot", slot}, {"slots", slots}, {"init", init}}
      .dump();
}

struct WorkerTasks::Slots {
  WorkerTask task;
  std::string mux_id;
  int rank = 0;
  std::vector<std::unique_ptr<WorkerProgram>> program;  // by slot; touched by that thread only
  std::vector<std::string> start_error;                 // by slot, from the first start
  std::vector<bool> broken;                             // by slot: no new process would start
  std::atomic<bool> stop_starting{false};
  std::atomic<bool> cancel{false};
  std::function<bool()> cancelled = [this] { return cancel.load(); };

  WorkerProgramOptions options(int slot) const {
    WorkerProgramOptions o;
    o.argv = task.argv;
    o.init_data = worker_init_data(mux_id, rank, slot, task.procs, task.init);
    o.start_timeout = to_ms(task.start_timeout_s);
    o.task_timeout = to_ms(task.timeout_s);
    o.capture_output = true;
    o.output_tail = task.output_tail;
    return o;
  }

  // A new process for the slot, when its last one died. Returns false, with the reason to stop
  // the run in `why`, when none started kStartTries times in a row.
  bool restart(int slot, std::string& why) {
    WorkerProgram& program = *this->program[static_cast<std::size_t>(slot)];
    for (int attempt = 0; attempt < kStartTries; ++attempt) {
      try {
        program.start(options(slot));
        return true;
      } catch (const std::exception& e) {
        why = start_failure(e, program.take_output());
      }
    }
    broken[static_cast<std::size_t>(slot)] = true;
    why = "rank " + std::to_string(rank) + ": --worker: no new process started after " +
          std::to_string(kStartTries) + " tries: " + why;
    return false;
  }

  // One attempt at one element with the slot's process.
  Attempt process(int slot, std::uint64_t index, std::string_view element) {
    WorkerProgram& program = *this->program[static_cast<std::size_t>(slot)];
    Attempt attempt;
    Outcome& o = attempt.outcome;
    o.pid = static_cast<std::uint32_t>(program.pid());
    o.t_start = detail::unix_ns();
    std::string note;  // the last line of the tail: why the attempt failed
    try {
      o.result = program.call(index, element, cancelled);
      o.type = RecordType::done;
      if (o.result.size() > task.max_result) {
        o.result.resize(task.max_result);
        o.flags |= Outcome::kResultTruncated;
      }
    } catch (const TaskError& e) {
      o.type = RecordType::failed;
      o.exit_code = 1;
      note = e.failures().front().message;
    } catch (const WorkerProgramError& e) {
      if (e.reason() == WorkerProgramError::Reason::cancelled) attempt.counts = false;
      o.type = RecordType::failed;
      const int status = e.wait_status();
      o.exit_code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      o.signal = status >= 0 && WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      if (e.reason() == WorkerProgramError::Reason::timeout) {
        o.flags |= Outcome::kTimedOut;
        char text[64];
        std::snprintf(text, sizeof text, "mpmux: timed out after %g s\n", task.timeout_s);
        note = text;
      }
      note += std::string("mpmux: ") + e.what() + "; a new process takes its place";
    }
    o.t_end = detail::unix_ns();
    o.stderr_tail = program.take_output();
    if (!note.empty()) {
      if (!o.stderr_tail.empty() && o.stderr_tail.back() != '\n') o.stderr_tail += '\n';
      o.stderr_tail += note;
      if (note.back() != '\n') o.stderr_tail += '\n';
    }
    if (o.stderr_tail.size() > task.output_tail)
      o.stderr_tail.erase(0, o.stderr_tail.size() - task.output_tail);
    return attempt;
  }

  Attempt run_element(int slot, std::uint64_t index, std::string_view element) {
    Attempt attempt;
    if (stop_starting.load() || broken[static_cast<std::size_t>(slot)]) {
      attempt.counts = false;  // not started: stays pending
      return attempt;
    }
    if (!program[static_cast<std::size_t>(slot)]->running()) {
      std::string why;
      if (!restart(slot, why)) {
        attempt.counts = false;
        attempt.stop_run = why;
        return attempt;
      }
    }
    return process(slot, index, element);
  }
};

WorkerTasks::WorkerTasks(const WorkerTask& task, const std::string& mux_id, int rank)
    : slots_(std::make_shared<Slots>()), procs_(task.procs) {
  Slots& s = *slots_;
  s.task = task;
  s.mux_id = mux_id;
  s.rank = rank;
  const auto n = static_cast<std::size_t>(task.procs);
  for (std::size_t k = 0; k < n; ++k) s.program.push_back(std::make_unique<WorkerProgram>());
  s.start_error.resize(n);
  s.broken.assign(n, false);
  PoolOptions options;
  options.n_jobs = task.procs;
  // A plain pointer: the pool, which holds these functions, never outlives slots_.
  Slots* w = slots_.get();
  options.worker_init = [w](Worker& worker) {
    // Drain signals go to the claiming thread, not to a slot waiting for its worker.
    sigset_t stop;
    sigemptyset(&stop);
    for (int sig : {SIGUSR1, SIGTERM, SIGINT}) sigaddset(&stop, sig);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    const int slot = worker.id();
    WorkerProgram& program = *w->program[static_cast<std::size_t>(slot)];
    try {
      program.start(w->options(slot));
    } catch (const std::exception& e) {
      w->start_error[static_cast<std::size_t>(slot)] = "--worker: " + start_failure(e, program.take_output());
    }
  };
  options.worker_exit = [w](Worker& worker) {
    w->program[static_cast<std::size_t>(worker.id())]->stop();  // BYE, in the thread that started it
    return ExitValue();
  };
  pool_ = std::make_unique<ThreadPool>(std::move(options));  // returns once every process answered INIT
  for (const std::string& error : s.start_error) {
    if (error.empty()) continue;
    pool_.reset();
    throw UsageError(error);
  }
}

WorkerTasks::~WorkerTasks() {
  // At the end of a run nothing runs; after an error, what still runs is killed, not waited for.
  slots_->stop_starting = true;
  slots_->cancel = true;
  pool_.reset();
}

void WorkerTasks::stop_starting() { slots_->stop_starting = true; }

bool WorkerTasks::cancel() {
  slots_->cancel = true;  // each running call kills its process group; its attempt is void
  return true;
}

void WorkerTasks::start(std::shared_ptr<const ElementBatch> batch, std::shared_ptr<AttemptSink> sink) {
  pool_->apply_async([w = slots_, batch = std::move(batch), sink = std::move(sink)](Worker& worker) {
    const std::size_t n = batch->size();
    for (std::size_t k = 0; k < n; ++k) {
      Attempt attempt;
      try {
        attempt = w->run_element(worker.id(), batch->item(k).index, batch->bytes(k));
      } catch (...) {
        attempt.error = std::current_exception();
      }
      const bool wake = k + 1 == n || !attempt.stop_run.empty() ||
                        attempt.outcome.t_end - attempt.outcome.t_start >= kReportAtOnceNs;
      sink->put(batch->key(k), std::move(attempt), wake);
    }
  });
}

}  // namespace mpmux::run
