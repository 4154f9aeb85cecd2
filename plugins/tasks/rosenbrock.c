/* rosenbrock.c: an example task plugin for `mpmux run --plugin` (see README.md).
 *
 * Evaluates Rosenbrock's function f(x, y) = (a - x)^2 + b * (y - x^2)^2 at the fields x and y of
 * each element (a JSON object such as {"x":0.5,"y":-1.0}) and writes f as its result, printed
 * with "%.17g\n" so that it reads back exactly.
 *
 * --plugin-arg "A,B" sets a and b (default "1,100").
 *
 * Fails on purpose (return 3) for a point outside the box -2 <= x <= 2, -1 <= y <= 3, the usual
 * plotting domain, standing in for a simulation that does not converge; the message is
 * "x=<x> y=<y> is outside the box [-2, 2] x [-1, 3]". An element without a numeric x or y
 * fails with return 2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpmux/plugin.h"

/* One worker thread's state: each thread has its own, so it needs no lock. */
typedef struct rosenbrock {
  double a, b;
} rosenbrock;

/* The number after "name": in a flat JSON object of numbers. A minimal lookup for this example:
 * use a JSON library for anything else. Returns 0 when found. */
static int number_field(const char* json, const char* name, double* value) {
  const size_t n = strlen(name);
  for (const char* p = strchr(json, '"'); p != NULL; p = strchr(p + 1, '"')) {
    if (strncmp(p + 1, name, n) != 0 || p[n + 1] != '"') continue;
    const char* q = p + n + 2;
    while (*q == ' ' || *q == '\t') ++q;
    if (*q != ':') continue;
    char* end = NULL;
    *value = strtod(q + 1, &end);
    return end == q + 1 ? -1 : 0;
  }
  return -1;
}

uint32_t mpmux_plugin_abi_version(void) { return MPMUX_PLUGIN_ABI_VERSION; }

int mpmux_task_init(const mpmux_worker_info* info, void** state, mpmux_output* out) {
  rosenbrock* r = calloc(1, sizeof *r);
  if (r == NULL) return out->fail(out, "out of memory");
  r->a = 1;
  r->b = 100;
  if (info->arg[0] != '\0') {
    char* end = NULL;
    r->a = strtod(info->arg, &end);
    if (*end == ',') r->b = strtod(end + 1, &end);
    if (*end != '\0') {
      free(r);
      return out->fail(out, "--plugin-arg: expected A,B (two numbers), as in 1,100");
    }
  }
  *state = r;
  return 0;
}

int mpmux_task_process(void* state, uint64_t index, const char* element, size_t length, mpmux_output* out) {
  rosenbrock* r = state;
  double x = 0, y = 0;
  (void)index;
  (void)length; /* element is NUL-terminated */
  if (number_field(element, "x", &x) != 0 || number_field(element, "y", &y) != 0) {
    out->fail(out, "the element needs numeric fields x and y");
    return 2;
  }
  if (!(x >= -2 && x <= 2 && y >= -1 && y <= 3)) {
    char message[160];
    snprintf(message, sizeof message, "x=%g y=%g is outside the box [-2, 2] x [-1, 3]", x, y);
    out->fail(out, message);
    return 3;
  }
  const double f = (r->a - x) * (r->a - x) + r->b * (y - x * x) * (y - x * x);
  char text[40];
  const int n = snprintf(text, sizeof text, "%.17g\n", f);
  out->write(out, text, (size_t)n);
  return 0;
}

void mpmux_task_finalize(void* state) { free(state); }
