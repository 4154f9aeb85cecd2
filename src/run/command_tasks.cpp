#include "run/command_tasks.hpp"

#include <nlohmann/json.hpp>
#include <utility>

namespace mpmux::run {

std::vector<std::string> element_fields(const ElementSetInfo& info, std::string_view first) {
  if (!info.columns.empty()) return info.columns;
  std::vector<std::string> fields;
  if (info.encoding != Encoding::json) return fields;
  const auto j = nlohmann::json::parse(first, nullptr, false);
  if (j.is_object())
    for (const auto& item : j.items()) fields.push_back(item.key());
  return fields;
}

Outcome template_failure(const UsageError& e) {
  Outcome outcome;
  outcome.type = RecordType::failed;
  outcome.exit_code = 127;
  outcome.stderr_tail = std::string("mpmux: ") + e.what();
  outcome.t_start = outcome.t_end = detail::unix_ns();
  return outcome;
}

void run_commands_in_turn(Run& run, const CommandTemplate& command, const CommandLimits& limits) {
  WorkItem item;
  const auto cancel = [&run] { return run.must_cancel(); };
  while (run.next(item)) {
    Outcome outcome;
    try {
      // false: killed by a drain; the attempt is void and the element stays pending.
      if (!run_command(command.render(item.index, item.bytes), outcome, limits, cancel)) continue;
      if (killed_by_drain(run, outcome)) continue;
    } catch (const UsageError& e) {
      outcome = template_failure(e);
    }
    run.record(outcome);
  }
}

namespace {
PoolOptions threads_of(int n) {
  PoolOptions options;
  options.n_jobs = n;
  return options;
}
}  // namespace

CommandTasks::CommandTasks(const CommandTemplate& command, const CommandLimits& limits, int procs)
    : command_(command), limits_(limits), procs_(procs), pool_(threads_of(procs)) {}

void CommandTasks::start(std::shared_ptr<const ElementBatch> batch, std::shared_ptr<AttemptSink> sink) {
  const std::uint64_t key = batch->key(0);
  // Rendered here, on the claiming thread, so that the pool threads touch nothing but argv.
  std::vector<std::string> argv;
  try {
    argv = command_.render(batch->item(0).index, batch->bytes(0));
  } catch (const UsageError& e) {
    Attempt attempt;
    attempt.outcome = template_failure(e);
    sink->put(key, std::move(attempt), /*wake=*/true);
    return;
  }
  pool_.apply_async([this, argv = std::move(argv), key, sink = std::move(sink)] {
    Attempt attempt;
    try {
      attempt.counts = run_command(argv, attempt.outcome, limits_, [this] { return cancel_.load(); });
    } catch (...) {
      attempt.error = std::current_exception();
    }
    sink->put(key, std::move(attempt), /*wake=*/true);
  });
}

bool CommandTasks::cancel() {
  cancel_ = true;  // each running command's process group is killed; its attempt is void
  return true;
}

}  // namespace mpmux::run
