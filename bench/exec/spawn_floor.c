// The floor of `mpmux run --exec PROG`: a C loop that keeps WORKERS children of PROG running with
// posix_spawnp and reaps each with waitpid, N in all, and nothing else (no claim, no journal).
// Usage: bench_exec_spawn_floor N WORKERS PROG [ARG...]
// Prints "spawn_floor_s=<seconds> elements=<n>"; exits 1 when a child fails.
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern char** environ;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  char* end_n = NULL;
  char* end_w = NULL;
  const long n = argc > 3 ? strtol(argv[1], &end_n, 10) : 0;
  const long workers = argc > 3 ? strtol(argv[2], &end_w, 10) : 0;
  if (argc < 4 || *end_n != '\0' || *end_w != '\0' || n < 1 || workers < 1) {
    fprintf(stderr,
            "usage: bench_exec_spawn_floor N WORKERS PROG [ARG...] (N, WORKERS: positive integers)\n");
    return 2;
  }
  char** child_argv = argv + 3;
  long started = 0;
  long running = 0;
  long failed = 0;
  const double t0 = now_s();
  while (started < n || running > 0) {
    while (running < workers && started < n) {
      pid_t pid = 0;
      const int rc = posix_spawnp(&pid, child_argv[0], NULL, NULL, child_argv, environ);
      if (rc != 0) {
        fprintf(stderr, "bench_exec_spawn_floor: posix_spawnp %s: %s\n", child_argv[0], strerror(rc));
        return 1;
      }
      ++started;
      ++running;
    }
    int status = 0;
    if (waitpid(-1, &status, 0) < 0) {
      if (errno == EINTR) continue;
      perror("bench_exec_spawn_floor: waitpid");
      return 1;
    }
    --running;
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  const double s = now_s() - t0;
  if (failed > 0) {
    fprintf(stderr, "bench_exec_spawn_floor: %ld of %ld children failed\n", failed, n);
    return 1;
  }
  printf("spawn_floor_s=%.6f elements=%ld\n", s, n);
  return 0;
}
