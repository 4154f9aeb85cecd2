// `--plugin` tasks: a task plugin (the C ABI of include/mpmux/plugin.h) loaded with dlopen, and
// one worker thread's instance of it, which turns each call into an Outcome.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "mpmux/journal.hpp"
#include "mpmux/plugin.h"

namespace mpmux::run {

/// The three calls of a task plugin.
struct PluginEntryPoints {
  mpmux_task_init_fn init = nullptr;
  mpmux_task_process_fn process = nullptr;
  mpmux_task_finalize_fn finalize = nullptr;
};

/// A task plugin: a shared library loaded with dlopen(RTLD_NOW | RTLD_LOCAL) and closed when
/// the last reference goes, so every PluginWorker keeps it open.
class TaskPlugin {
 public:
  /// Loads `file`, a path (a name without '/' is a file of the current directory, not a search
  /// of the library path), and checks its ABI version. Throws UsageError naming --plugin and
  /// the file when it does not exist, cannot be loaded as a shared library, lacks one of the
  /// four functions of mpmux/plugin.h or was built for another ABI version.
  static std::shared_ptr<const TaskPlugin> open(const std::string& file);
  /// A plugin made of functions of this process (no library); `name` stands for the file in
  /// messages. For tests.
  TaskPlugin(std::string name, PluginEntryPoints entry);
  ~TaskPlugin();
  TaskPlugin(const TaskPlugin&) = delete;
  TaskPlugin& operator=(const TaskPlugin&) = delete;

  const std::string& name() const { return name_; }
  const PluginEntryPoints& entry() const { return entry_; }

 private:
  TaskPlugin(std::string name, PluginEntryPoints entry, void* handle);
  std::string name_;
  PluginEntryPoints entry_;
  void* handle_ = nullptr;  // from dlopen; null for a plugin made of this process's functions
};

/// Limits on what an attempt keeps, as for commands (CommandLimits).
struct PluginLimits {
  std::size_t max_result = std::size_t{1} << 20;  // longer results are cut and flagged
  std::size_t message_tail = 4096;                // the last bytes of the messages are kept
};

/// Where a worker runs: given to the plugin's init.
struct PluginWorkerInfo {
  std::string arg;  // --plugin-arg
  int rank = 0;
  int thread = 0;
  int threads = 1;
};

/// One worker thread's instance of a plugin. The plugin's init runs in the constructor and its
/// finalize in the destructor: construct, use and destroy it in one thread, so that the plugin's
/// per-thread state is only ever touched by its thread.
class PluginWorker {
 public:
  /// Calls init. Throws UsageError naming the plugin, the rank, the thread and the plugin's
  /// message when init returns non-zero (finalize is then not called).
  PluginWorker(std::shared_ptr<const TaskPlugin> plugin, const PluginWorkerInfo& info,
               PluginLimits limits = {});
  ~PluginWorker();
  PluginWorker(const PluginWorker&) = delete;
  PluginWorker& operator=(const PluginWorker&) = delete;

  /// Processes one element, which must be followed by a NUL (element.data()[element.size()]),
  /// as the plugin receives it: a std::string or a slice of an ElementBatch. Fills type (done for
  /// a zero return, else failed with the value as exit_code), result (flag kResultTruncated
  /// beyond max_result), stderr_tail (the plugin's fail() messages), t_start and t_end.
  Outcome process(std::uint64_t index, std::string_view element);

 private:
  std::shared_ptr<const TaskPlugin> plugin_;
  PluginLimits limits_;
  void* state_ = nullptr;
};

}  // namespace mpmux::run
