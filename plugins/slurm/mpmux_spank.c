/* mpmux_spank.c: a Slurm SPANK plugin that adds --mux=MUX_ID to sbatch, salloc and srun.
 *
 * At submission (sbatch, salloc, srun: the local and allocator contexts) it checks that MUX_ID
 * names a session, by running `mpmux check MUX_ID`, and refuses the option otherwise, so that a
 * mistyped or destroyed session stops the submission before any job is queued. The mpmux
 * program does the checking so that the mux id's grammar, the session layout and the az://
 * store stay in one place (the C++ library); the plugin parses none of it.
 *
 * It exports MPMUX_ID=MUX_ID to the job: into the environment of the submitting process (which
 * salloc's shell and the job's default --export=ALL inherit) and, in slurmstepd (the remote
 * context), into the environment of the batch script and of every step's tasks, so that
 * `mpmux run` there needs no mux id on its command line. The srun steps of a job submitted with
 * --mux carry the job's option; they set MPMUX_ID without checking the session again.
 *
 * plugstack.conf arguments:
 *   mpmux=PATH       the mpmux program that checks ids (default: `mpmux` on the user's PATH)
 *   timeout=SECONDS  how long a check may take before the submission is refused (default 60;
 *                    an az:// session may need to fetch its element set into the local cache)
 *
 * It writes nothing but through Slurm's log calls, which sbatch and srun print on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <slurm/spank.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

SPANK_PLUGIN(mpmux, 1);

extern char** environ;

static const char* const kEnvName = "MPMUX_ID";
/* Slurm's copy of a job's --mux in the job control environment: what the batch script, and with
 * it every srun of the job, finds in its environment. */
static const char* const kJobOptionEnv = "SLURM_SPANK__SLURM_SPANK_OPTION_mpmux_mux";

static char* mpmux_program; /* plugstack.conf's mpmux=, else NULL: "mpmux" on PATH */
static long check_timeout_s = 60;
static char* mux_id;     /* the value of --mux, once accepted */
static char* checked_id; /* sbatch parses an option more than once: check an id once */

/* The first line of `text`, without the "mpmux: " every mpmux error starts with. */
static void first_line(char* text) {
  char* end = strchr(text, '\n');
  if (end != NULL) *end = '\0';
  static const char prefix[] = "mpmux: ";
  const size_t n = sizeof prefix - 1;
  if (strncmp(text, prefix, n) == 0) memmove(text, text + n, strlen(text + n) + 1);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Reads from fd until it closes (returns 0) or the deadline passes (returns -1); keeps the
 * first size - 1 bytes in buf, NUL-terminated, and drops the rest. */
static int read_until_eof(int fd, char* buf, size_t size, double deadline) {
  size_t used = 0;
  buf[0] = '\0';
  for (;;) {
    const double left = deadline - now_s();
    if (left <= 0) return -1;
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    const int ready = poll(&p, 1, (int)(left * 1000) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return -1;
    if (ready == 0) continue; /* the deadline check above ends the wait */
    char chunk[512];
    const ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n == 0 ? 0 : -1;
    const size_t keep = (size_t)n < size - 1 - used ? (size_t)n : size - 1 - used;
    memcpy(buf + used, chunk, keep);
    used += keep;
    buf[used] = '\0';
  }
}

/* Runs `mpmux check -- ID`; 0 when the session exists, else -1 after one slurm_error line that
 * names the option, the id and mpmux's reason. */
static int check_session(const char* id) {
  if (checked_id != NULL && strcmp(checked_id, id) == 0) return 0;
  const char* program = mpmux_program != NULL ? mpmux_program : "mpmux";
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    slurm_error("mpmux: --mux=%s: cannot check the session: pipe: %s", id, strerror(errno));
    return -1;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  /* stdin stays away from the check: sbatch may be reading the job script from it. */
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDERR_FILENO);
  char* argv[] = {(char*)program, "check", "--", (char*)id, NULL};
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, program, &actions, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (spawned != 0) {
    close(out[0]);
    slurm_error("mpmux: --mux=%s: cannot check the session: cannot run '%s': %s (plugstack.conf: mpmux=PATH)",
                id, program, strerror(spawned));
    return -1;
  }
  char message[4096] = "";
  const int answered = read_until_eof(out[0], message, sizeof message, now_s() + (double)check_timeout_s);
  close(out[0]);
  if (answered != 0) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (answered != 0) {
    slurm_error("mpmux: --mux=%s: `%s check` did not answer within %ld s (plugstack.conf: timeout=SECONDS)",
                id, program, check_timeout_s);
    return -1;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    free(checked_id);
    checked_id = strdup(id);
    return 0;
  }
  first_line(message);
  if (message[0] != '\0')
    slurm_error("mpmux: --mux=%s: %s", id, message);
  else if (WIFSIGNALED(status))
    slurm_error("mpmux: --mux=%s: `%s check` was killed by signal %d", id, program, WTERMSIG(status));
  else
    slurm_error("mpmux: --mux=%s: `%s check` exited with %d", id, program, WEXITSTATUS(status));
  return -1;
}

/* Called for --mux in every context; only the submitting side (remote == 0) checks. */
static int mux_option(int val, const char* optarg, int remote) {
  (void)val;
  if (optarg == NULL || optarg[0] == '\0') {
    slurm_error("mpmux: --mux needs a mux id, as `mpmux session` prints it");
    return -1;
  }
  /* The srun steps of a job submitted with --mux take the job's option from kJobOptionEnv: it was
   * checked at submission, and a check per step would cost each srun a start of mpmux. */
  const char* job_option = getenv(kJobOptionEnv);
  const bool jobs_own = job_option != NULL && strcmp(job_option, optarg) == 0;
  if (!remote && !jobs_own && check_session(optarg) != 0) return -1;
  char* copy = strdup(optarg);
  if (copy == NULL) return -1;
  free(mux_id);
  mux_id = copy;
  return 0;
}

static struct spank_option mux_spank_option = {
    .name = "mux",
    .arginfo = "MUX_ID",
    .usage =
        "Work on the mpmux session MUX_ID: checked at submission, given to the job and its steps as "
        "MPMUX_ID (mpmux run then needs no mux id)",
    .has_arg = 1,
    .val = 0,
    .cb = mux_option,
};

static int parse_arguments(int ac, char** av) {
  for (int i = 0; i < ac; ++i) {
    if (strncmp(av[i], "mpmux=", 6) == 0 && av[i][6] != '\0') {
      free(mpmux_program);
      mpmux_program = strdup(av[i] + 6);
      if (mpmux_program == NULL) return -1;
    } else if (strncmp(av[i], "timeout=", 8) == 0) {
      char* end = NULL;
      errno = 0;
      const long value = strtol(av[i] + 8, &end, 10);
      if (errno != 0 || end == av[i] + 8 || *end != '\0' || value <= 0 || value > 86400) {
        slurm_error("mpmux: plugstack.conf: '%s': expected timeout=SECONDS, 1 to 86400", av[i]);
        return -1;
      }
      check_timeout_s = value;
    } else {
      slurm_error("mpmux: plugstack.conf: unknown argument '%s' (expected mpmux=PATH or timeout=SECONDS)",
                  av[i]);
      return -1;
    }
  }
  return 0;
}

int slurm_spank_init(spank_t sp, int ac, char** av) {
  const spank_context_t context = spank_context();
  /* slurmd itself and the prolog/epilog have no options to take. */
  if (context != S_CTX_LOCAL && context != S_CTX_ALLOCATOR && context != S_CTX_REMOTE) return 0;
  if (parse_arguments(ac, av) != 0) return -1;
  const spank_err_t rc = spank_option_register(sp, &mux_spank_option);
  if (rc != ESPANK_SUCCESS) {
    slurm_error("mpmux: cannot register --mux: %s", spank_strerror(rc));
    return -1;
  }
  return 0;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char** av) {
  (void)sp;
  (void)ac;
  (void)av;
  if (mux_id == NULL || spank_context() == S_CTX_REMOTE) return 0;
  /* sbatch and srun pass their environment on (--export=ALL), salloc's shell inherits it. */
  if (setenv(kEnvName, mux_id, 1) != 0) {
    slurm_error("mpmux: cannot set %s: %s", kEnvName, strerror(errno));
    return -1;
  }
  return 0;
}

/* slurmstepd, before the batch script or a step's tasks start. A --mux given to this job or step
 * wins over an MPMUX_ID the environment brought along. Under `sbatch --export=NONE` no option
 * reaches the batch step; Slurm keeps the job's copy in the job control environment (prefixed
 * SLURM_SPANK_), which then fills in an MPMUX_ID that is missing. */
int slurm_spank_user_init(spank_t sp, int ac, char** av) {
  (void)ac;
  (void)av;
  char job_copy[4096];
  const char* id = mux_id;
  int overwrite = 1;
  if (id == NULL && spank_getenv(sp, kJobOptionEnv, job_copy, sizeof job_copy) == ESPANK_SUCCESS) {
    id = job_copy;
    overwrite = 0;
  }
  if (id == NULL) return 0;
  const spank_err_t rc = spank_setenv(sp, kEnvName, id, overwrite);
  if (rc != ESPANK_SUCCESS && rc != ESPANK_ENV_EXISTS) {
    slurm_error("mpmux: cannot set %s in the job: %s", kEnvName, spank_strerror(rc));
    return -1;
  }
  return 0;
}

int slurm_spank_exit(spank_t sp, int ac, char** av) {
  (void)sp;
  (void)ac;
  (void)av;
  free(mux_id);
  free(checked_id);
  free(mpmux_program);
  mux_id = checked_id = mpmux_program = NULL;
  return 0;
}
