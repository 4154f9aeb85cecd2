#include "run/signals.hpp"

#include <signal.h>

#include <atomic>

namespace mpmux::run {

namespace {
std::atomic<int> g_stop_signals{0};
static_assert(std::atomic<int>::is_always_lock_free, "the handler needs a lock-free counter");

extern "C" void on_stop_signal(int) { g_stop_signals.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  for (int sig : {SIGUSR1, SIGTERM, SIGINT}) sigaction(sig, &sa, nullptr);
}

int stop_signals() { return g_stop_signals.load(std::memory_order_relaxed); }

}  // namespace mpmux::run
