// The fork server of a ProcessPool: forked while the caller is single-threaded, it forks every
// worker (the first ones, replacements, added ones), watches each with a pidfd, kills one when
// the event loop asks, reaps it and reports its death through shared memory at once.
#include <signal.h>
#include <sys/prctl.h>

#include "pool/process_state.hpp"

namespace mpmux::pool_detail {

void ProcessState::server_main() {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != ctl->parent_pid) _exit(0);
  signal(SIGCHLD, SIG_DFL);
  std::vector<int> pidfds(static_cast<std::size_t>(cap), -1);
  std::vector<pid_t> pids(static_cast<std::size_t>(cap), 0);
  std::vector<std::uint32_t> gens(static_cast<std::size_t>(cap), 0);
  std::vector<bool> killed(static_cast<std::size_t>(cap), false);
  std::vector<pollfd> fds;
  for (;;) {
    int live = 0;
    const int workers = ctl->workers.load();
    for (int k = 0; k < workers; ++k) {
      auto i = static_cast<std::size_t>(k);
      SlotShm& s = *shm[i];
      if (pidfds[i] < 0 && s.spawn_gen.load() != s.spawned_gen.load()) {
        std::uint32_t gen = s.spawn_gen.load();
        pid_t pid = fork();
        if (pid == 0) {
          for (int fd : pidfds)
            if (fd >= 0) close(fd);
          worker_main(k);
        }
        int fd = pid > 0 ? pidfd_open(pid) : -1;
        if (pid < 0 || fd < 0) {
          // Reported as a worker that died at once; the event loop decides what to do.
          if (pid > 0) waitpid(pid, nullptr, 0);
          s.exit_status.store(-1);
          s.pid.store(0);
          s.spawned_gen.store(gen);
          s.dead_gen.store(gen);
          ring_eventfd(parent_efd);
          continue;
        }
        pidfds[i] = fd;
        pids[i] = pid;
        gens[i] = gen;
        killed[i] = false;
        s.pid.store(pid);
        s.spawned_gen.store(gen);
        ring_eventfd(parent_efd);
      }
      if (pidfds[i] >= 0 && !killed[i] && s.kill_gen.load() == gens[i]) {
        syscall(SYS_pidfd_send_signal, pidfds[i], SIGKILL, nullptr, 0);
        killed[i] = true;
      }
      if (pidfds[i] >= 0) ++live;
    }
    if (ctl->quit.load() && live == 0) _exit(0);
    fds.clear();
    fds.push_back({server_efd, POLLIN, 0});
    for (int fd : pidfds)
      if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    int r = poll(fds.data(), fds.size(), 1000);
    if (getppid() != ctl->parent_pid) _exit(0);
    if (r <= 0) continue;
    if (fds[0].revents) drain_eventfd(server_efd);
    for (int k = 0; k < workers; ++k) {
      auto i = static_cast<std::size_t>(k);
      if (pidfds[i] < 0) continue;
      pollfd probe{pidfds[i], POLLIN, 0};
      if (poll(&probe, 1, 0) <= 0) continue;
      int status = 0;
      waitpid(pids[i], &status, 0);
      close(pidfds[i]);
      pidfds[i] = -1;
      SlotShm& s = *shm[i];
      s.exit_status.store(status);
      s.pid.store(0);
      s.dead_gen.store(gens[i]);
      ring_eventfd(parent_efd);
    }
  }
}

}  // namespace mpmux::pool_detail
