/* sleep_task.c: a task plugin for the cross-job benchmark: each element sleeps a fixed time
 * (--plugin-arg MILLISECONDS, default 1) and records nothing, standing in for a 1 ms simulation
 * that leaves the CPU to the coordinators. */
#include <stdlib.h>
#include <time.h>

#include "mpmux/plugin.h"

uint32_t mpmux_plugin_abi_version(void) { return MPMUX_PLUGIN_ABI_VERSION; }

int mpmux_task_init(const mpmux_worker_info* info, void** state, mpmux_output* out) {
  double* ms = malloc(sizeof *ms);
  if (ms == NULL) return out->fail(out, "out of memory");
  *ms = info->arg[0] != '\0' ? strtod(info->arg, NULL) : 1.0;
  *state = ms;
  return 0;
}

int mpmux_task_process(void* state, uint64_t index, const char* element, size_t length, mpmux_output* out) {
  const double ms = *(const double*)state;
  struct timespec t = {(time_t)(ms / 1000), (long)((ms - 1000.0 * (time_t)(ms / 1000)) * 1e6)};
  (void)index;
  (void)element;
  (void)length;
  (void)out;
  while (nanosleep(&t, &t) != 0) {
  }
  return 0;
}

void mpmux_task_finalize(void* state) { free(state); }
