#include "run/plugin.hpp"

#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include "mpmux/error.hpp"
#include "mpmux/run.hpp"

namespace mpmux::run {

namespace {

std::string plugin_option(const std::string& file) { return "--plugin '" + file + "'"; }

// dlerror() text without the "PATH: " it starts with, which the message names already.
std::string load_error(const std::string& path) {
  const char* raw = ::dlerror();
  std::string why = raw ? raw : "unknown error";
  if (why.rfind(path + ": ", 0) == 0) why.erase(0, path.size() + 2);
  return why;
}

struct Closer {
  void operator()(void* handle) const { ::dlclose(handle); }
};

// What the plugin's write() and fail() calls collect for one call; reached through
// mpmux_output::context. The callbacks are called from C: they never throw.
struct Collector {
  mpmux_output out{};
  std::string result;
  std::string message;
  std::size_t max_result = 0;
  std::size_t message_tail = 0;
  bool truncated = false;
  bool accepts_result = true;  // false during init

  Collector(std::size_t max_result_bytes, std::size_t tail_bytes, bool result_allowed)
      : max_result(max_result_bytes), message_tail(tail_bytes), accepts_result(result_allowed) {
    out.write = &Collector::write;
    out.fail = &Collector::fail;
    out.context = this;
  }
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  static int write(mpmux_output* out, const void* data, std::size_t len) {
    auto& self = *static_cast<Collector*>(out->context);
    if (!self.accepts_result) return 0;
    if (len == 0) return 0;
    if (data == nullptr || self.truncated) return -1;
    try {
      const std::size_t room = self.max_result - self.result.size();
      self.result.append(static_cast<const char*>(data), std::min(len, room));
      if (len <= room) return 0;
      self.truncated = true;
    } catch (...) {
      self.truncated = true;  // out of memory: what fitted is kept
    }
    return -1;
  }

  static int fail(mpmux_output* out, const char* message) {
    auto& self = *static_cast<Collector*>(out->context);
    if (message == nullptr) return 1;
    try {
      self.message.append(message);
      if (self.message.empty() || self.message.back() != '\n') self.message.push_back('\n');
      // Keep the tail; trimmed only now and then so that many small messages stay linear.
      if (self.message.size() > 2 * self.message_tail)
        self.message.erase(0, self.message.size() - self.message_tail);
    } catch (...) {
    }
    return 1;
  }

  std::string message_tail_text() {
    if (message.size() > message_tail) message.erase(0, message.size() - message_tail);
    return std::move(message);
  }
};

}  // namespace

std::shared_ptr<const TaskPlugin> TaskPlugin::open(const std::string& file) {
  // dlopen searches the library path for a name without a slash; --plugin names a file.
  const std::string path = file.find('/') == std::string::npos ? "./" + file : file;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw UsageError(plugin_option(file) + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw UsageError(plugin_option(file) + ": not a file");
  ::dlerror();
  std::unique_ptr<void, Closer> handle(::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!handle)
    throw UsageError(plugin_option(file) + ": cannot be loaded as a shared library: " + load_error(path));

  const auto symbol = [&](const char* name) {
    void* address = ::dlsym(handle.get(), name);
    if (address == nullptr)
      throw UsageError(plugin_option(file) + ": no function " + name +
                       " (a task plugin exports the four functions of mpmux/plugin.h)");
    return address;
  };
  // POSIX guarantees that dlsym's object pointer converts to the function's pointer.
  const auto version = reinterpret_cast<mpmux_plugin_abi_version_fn>(symbol("mpmux_plugin_abi_version"));
  PluginEntryPoints entry;
  entry.init = reinterpret_cast<mpmux_task_init_fn>(symbol("mpmux_task_init"));
  entry.process = reinterpret_cast<mpmux_task_process_fn>(symbol("mpmux_task_process"));
  entry.finalize = reinterpret_cast<mpmux_task_finalize_fn>(symbol("mpmux_task_finalize"));
  const std::uint32_t abi = version();
  if (abi != MPMUX_PLUGIN_ABI_VERSION)
    throw UsageError(plugin_option(file) + ": built for plugin ABI version " + std::to_string(abi) +
                     ", this mpmux has " + std::to_string(MPMUX_PLUGIN_ABI_VERSION) +
                     " (rebuild it against this mpmux's mpmux/plugin.h)");
  return std::shared_ptr<const TaskPlugin>(new TaskPlugin(file, entry, handle.release()));
}

TaskPlugin::TaskPlugin(std::string name, PluginEntryPoints entry)
    : TaskPlugin(std::move(name), entry, nullptr) {}

TaskPlugin::TaskPlugin(std::string name, PluginEntryPoints entry, void* handle)
    : name_(std::move(name)), entry_(entry), handle_(handle) {
  if (!entry_.init || !entry_.process || !entry_.finalize)
    throw UsageError(plugin_option(name_) + ": a task plugin needs init, process and finalize");
}

TaskPlugin::~TaskPlugin() {
  if (handle_) ::dlclose(handle_);
}

PluginWorker::PluginWorker(std::shared_ptr<const TaskPlugin> plugin, const PluginWorkerInfo& info,
                           PluginLimits limits)
    : plugin_(std::move(plugin)), limits_(limits) {
  const mpmux_worker_info c_info{info.arg.c_str(), info.rank, info.thread, info.threads};
  Collector collect(0, limits_.message_tail, /*result_allowed=*/false);
  const int code = plugin_->entry().init(&c_info, &state_, &collect.out);
  if (code != 0) {
    std::string why = collect.message_tail_text();
    while (!why.empty() && why.back() == '\n') why.pop_back();
    for (char& c : why)
      if (c == '\n') c = ' ';  // one line
    throw UsageError(plugin_option(plugin_->name()) + ": mpmux_task_init returned " + std::to_string(code) +
                     " in thread " + std::to_string(info.thread) + " of rank " + std::to_string(info.rank) +
                     (why.empty() ? std::string() : ": " + why));
  }
}

PluginWorker::~PluginWorker() { plugin_->entry().finalize(state_); }

Outcome PluginWorker::process(std::uint64_t index, std::string_view element) {
  Collector collect(limits_.max_result, limits_.message_tail, /*result_allowed=*/true);
  Outcome outcome;
  outcome.t_start = detail::unix_ns();
  const int code = plugin_->entry().process(state_, index, element.data(), element.size(), &collect.out);
  outcome.t_end = detail::unix_ns();
  outcome.type = code == 0 ? RecordType::done : RecordType::failed;
  outcome.exit_code = code;
  outcome.result = std::move(collect.result);
  if (collect.truncated) outcome.flags |= Outcome::kResultTruncated;
  outcome.stderr_tail = collect.message_tail_text();
  return outcome;
}

}  // namespace mpmux::run
