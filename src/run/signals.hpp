// Stop signals: SIGUSR1, SIGTERM and SIGINT ask a run to drain. Handlers only count; the run
// polls the count between elements and while a task runs.
#pragma once

namespace mpmux::run {

/// Installs the counting handlers (idempotent). Without SA_RESTART, so a blocking poll(2) or
/// wait returns at once with EINTR when a signal arrives.
void install_stop_handlers();
/// Stop signals received so far.
int stop_signals();

}  // namespace mpmux::run
