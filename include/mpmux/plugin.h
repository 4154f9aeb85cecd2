/* The C ABI of task plugins: `mpmux run MUX_ID --plugin LIB.so [--plugin-arg TEXT] [--threads K]`.
 *
 * A task plugin is a shared library that processes elements inside the mpmux process, in K worker
 * threads of each rank, instead of starting a command per element. It exports the four functions
 * declared below with C linkage and needs nothing else from mpmux: no library to link, only this
 * header. Build it with, for example,
 *
 *   cc -shared -fPIC -O2 -I PREFIX/include -o libmytask.so mytask.c
 *
 * Calls, per rank that processes elements:
 *   mpmux_plugin_abi_version()            once, when the library is loaded; a value other than
 *                                         MPMUX_PLUGIN_ABI_VERSION makes mpmux refuse the plugin
 *   mpmux_task_init(info, &state, out)    once in each worker thread, in that thread, before any
 *                                         element; non-zero return: the run does not start
 *   mpmux_task_process(state, ...)        for each element given to that thread, in that thread
 *   mpmux_task_finalize(state)            once in each worker thread whose init succeeded, after
 *                                         its last element
 * Each thread has its own state, so a plugin needs no locking for it; anything shared between
 * threads (globals) is the plugin's to protect.
 *
 * A plugin runs inside the rank: a crash (segfault, abort, exit) takes the rank and the MPI job
 * down, and a running element cannot be killed, so --timeout is refused and a drain (SIGUSR1,
 * SIGTERM, --deadline) waits for running elements up to --grace, then leaves them pending.
 * Use --exec for tasks that need that isolation. A plugin must not throw C++ exceptions out of
 * these functions.
 */
#ifndef MPMUX_PLUGIN_H
#define MPMUX_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes. Changes whenever a declaration below changes incompatibly. */
#define MPMUX_PLUGIN_ABI_VERSION 1u

/* The symbols a plugin exports are visible even when it is built with -fvisibility=hidden. */
#if defined(__GNUC__)
#define MPMUX_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define MPMUX_PLUGIN_EXPORT
#endif

/* Where an element's result and messages go. Valid only during the call it is passed to; use it
 * from the thread of that call. */
typedef struct mpmux_output mpmux_output;
struct mpmux_output {
  /* Appends `len` bytes to the element's result (kept in the journal and results.h5, at most
   * 1 MiB: beyond that the bytes are dropped, the result is flagged truncated and -1 is
   * returned). Returns 0. Ignored during init. */
  int (*write)(mpmux_output* out, const void* data, size_t len);
  /* Adds a line of text (NUL-terminated) to the attempt's message, kept as a command's stderr
   * tail is (the last 4 KiB; `mpmux stat` shows its last line). Returns 1, so that a failure
   * reads `return out->fail(out, "why");`. Whether the attempt failed is decided by the return
   * value of the call alone. */
  int (*fail)(mpmux_output* out, const char* message);
  /* mpmux's own; a plugin never touches it. */
  void* context;
};

/* What a worker thread learns at init. */
typedef struct mpmux_worker_info {
  const char* arg; /* --plugin-arg TEXT, "" when not given; valid during init only */
  int rank;        /* MPI rank of this process */
  int thread;      /* this worker thread: 0 .. threads-1 */
  int threads;     /* --threads: worker threads of this rank */
} mpmux_worker_info;

/* Returns MPMUX_PLUGIN_ABI_VERSION as the plugin was compiled with. */
MPMUX_PLUGIN_EXPORT uint32_t mpmux_plugin_abi_version(void);

/* Prepares one worker thread: sets *state (NULL is fine) for the calls that follow in this
 * thread. Returns 0, or non-zero after out->fail(out, why) to stop the run before anything is
 * handed out (mpmux exits 2 and names the plugin, the rank and the reason). */
MPMUX_PLUGIN_EXPORT int mpmux_task_init(const mpmux_worker_info* info, void** state, mpmux_output* out);

/* Processes element `index`: `element` holds its `length` bytes followed by a NUL byte. For sets
 * made by `mpmux new` the bytes are the element's JSON object, e.g. {"x":0.5,"y":-1.0}.
 * Returns 0 when the element is done; any other value is a failed attempt, recorded with that
 * value as its exit code and retried as --retries says. */
MPMUX_PLUGIN_EXPORT int mpmux_task_process(void* state, uint64_t index, const char* element, size_t length,
                                           mpmux_output* out);

/* Releases what init set up in this thread. */
MPMUX_PLUGIN_EXPORT void mpmux_task_finalize(void* state);

/* The same functions as pointer types, for hosts that load a plugin. */
typedef uint32_t (*mpmux_plugin_abi_version_fn)(void);
typedef int (*mpmux_task_init_fn)(const mpmux_worker_info* info, void** state, mpmux_output* out);
typedef int (*mpmux_task_process_fn)(void* state, uint64_t index, const char* element, size_t length,
                                     mpmux_output* out);
typedef void (*mpmux_task_finalize_fn)(void* state);

#ifdef __cplusplus
}
#endif

#endif /* MPMUX_PLUGIN_H */
