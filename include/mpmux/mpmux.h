/* The C ABI of mpmux: element sets, read sessions and the loop that hands each element of a
 * session to exactly one worker, for C, Fortran (through MPI_Fint), Python (ctypes) and any
 * language with a C FFI. Link with libmpmux (pkg-config: `mpicc prog.c $(pkg-config --cflags
 * --libs mpmux)`). docs/capi.md has the rules and a complete example.
 *
 *   char* dir; char* id; mpmux_run* run; mpmux_element e = {0}; e.size = sizeof e;
 *   mpmux_elements* set; mpmux_elements_new(&set);
 *   mpmux_elements_add(set, "{\"x\":1}", 7);  ...
 *   mpmux_elements_create(set, "/scratch/ana/mux", "sweep", &dir);
 *   mpmux_session_create(dir, &id);
 *   mpmux_open_comm(id, MPI_COMM_WORLD, NULL, &run);      collective
 *   while (mpmux_next(run, &e) == MPMUX_OK && e.valid)
 *     mpmux_set_result(run, out, out_len);               done when the loop moves on
 *   mpmux_finish(run, NULL);                              collective; outcomes durable
 *   mpmux_close(run);
 *
 * Status: every call returns an int: MPMUX_OK (0) or a code below, and then leaves a one-line
 * message for mpmux_last_error() in the calling thread. Nothing is thrown or aborts across this
 * boundary. Strings the library returns through `char**` are the caller's, freed with
 * mpmux_free(). Text arguments are NUL-terminated UTF-8 and only read during the call.
 *
 * Threads: every call may be made from any thread. A handle (mpmux_elements, mpmux_options,
 * mpmux_run) is used by one thread at a time; several threads may each open their own
 * mpmux_run on one session (each is a participant of the session, as separate processes are).
 */
#ifndef MPMUX_MPMUX_H
#define MPMUX_MPMUX_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes; it changes whenever a declaration below changes incompatibly.
 * The calls that make a handle pass it to the library (through the macros below), which
 * refuses a program compiled against another version with MPMUX_ABI_MISMATCH and a message
 * naming both versions. */
#define MPMUX_ABI_VERSION 1u

#if defined(__GNUC__)
#define MPMUX_C_EXPORT __attribute__((visibility("default")))
#else
#define MPMUX_C_EXPORT
#endif

/* Status codes. Those shared with the `mpmux` command mean what its exit codes mean. */
#define MPMUX_OK 0
#define MPMUX_FAILED 1        /* storage or MPI failed; mpmux_finish: elements failed for good */
#define MPMUX_USAGE 2         /* bad input: an argument, file, mux id, option, or a handle in the
                                 wrong state; nothing stored was changed */
#define MPMUX_NO_MEMORY 3     /* an allocation failed */
#define MPMUX_ABI_MISMATCH 4  /* the program was compiled against another mpmux.h */
#define MPMUX_STOPPED 75      /* mpmux_finish: the run stopped (signal, deadline, journal write
                                 error) with elements left pending; resumable */

/* ------------------------------------------------------------------------------ general */

/* MPMUX_ABI_VERSION as the library was built. */
MPMUX_C_EXPORT uint32_t mpmux_abi_version(void);
/* The message of the last call of this thread that did not return MPMUX_OK ("" when none). Valid
 * until the next mpmux call of this thread; never NULL. */
MPMUX_C_EXPORT const char* mpmux_last_error(void);
/* Frees a string (or any buffer) the library returned; NULL is fine. */
MPMUX_C_EXPORT void mpmux_free(void* p);

/* ------------------------------------------------------------------------- element sets */

/* Elements collected in memory, then stored as a new element set (a mux directory holding
 * elements.h5 with encoding json). */
typedef struct mpmux_elements mpmux_elements;

/* A new, empty collection. */
#define mpmux_elements_new(out) mpmux_elements_new_abi(MPMUX_ABI_VERSION, (out))
MPMUX_C_EXPORT int mpmux_elements_new_abi(uint32_t abi_version, mpmux_elements** out);
/* Appends one element: `length` bytes of JSON text holding any one JSON value (an object, a
 * number, a string, a list, true, false, null). It is checked and stored without the spaces
 * between tokens; numbers and string escapes keep their text. Invalid JSON: MPMUX_USAGE naming
 * the element's position, and the collection is unchanged. (`mpmux run --exec` templates with
 * {name} fields need objects; other elements fail such a task.) */
MPMUX_C_EXPORT int mpmux_elements_add(mpmux_elements* elements, const char* json, size_t length);
/* Appends `count` elements at once: element k is data[offsets[k], offsets[k+1]) (offsets holds
 * count + 1 ascending values, offsets[0] usually 0). At a bad element, those before it stay
 * appended and the message names its position in the collection. */
MPMUX_C_EXPORT int mpmux_elements_add_many(mpmux_elements* elements, const char* data,
                                           const uint64_t* offsets, size_t count);
/* Elements collected so far. */
MPMUX_C_EXPORT int mpmux_elements_count(const mpmux_elements* elements, uint64_t* count);
/* Stores the collection as ROOT/<YYYYMMDD-HHMMSS>[-tag]/ (ROOT: a directory, created when
 * missing, a file:// URL, or az://ACCOUNT/CONTAINER[/PREFIX]); `tag` may be NULL. When every
 * element is a flat object with the same keys, they are also kept as a table, as for JSON Lines
 * input. Durable on return; *mux_dir receives the mux directory (absolute) or the az:// URL of
 * the mux. An empty collection is MPMUX_USAGE. The collection is unchanged (it is not copied:
 * the handle is not const) and still the caller's to free. */
MPMUX_C_EXPORT int mpmux_elements_create(mpmux_elements* elements, const char* root, const char* tag,
                                         char** mux_dir);
/* Frees the collection; NULL is fine. */
MPMUX_C_EXPORT void mpmux_elements_free(mpmux_elements* elements);

/* Stores the elements of a file as a new element set, as `mpmux new ROOT --from FILE` does: CSV
 * with a header, JSON Lines, or FILE.h5:/DATASET. `format` ("csv" or "jsonl") when the name does
 * not tell, else NULL; `encoding` ("utf-8" or "latin-1") or NULL for UTF-8; `tag` or NULL. */
#define mpmux_set_create_from_file(root, file, format, encoding, tag, mux_dir) \
  mpmux_set_create_from_file_abi(MPMUX_ABI_VERSION, (root), (file), (format), (encoding), (tag), (mux_dir))
MPMUX_C_EXPORT int mpmux_set_create_from_file_abi(uint32_t abi_version, const char* root, const char* file,
                                                  const char* format, const char* encoding, const char* tag,
                                                  char** mux_dir);
/* Elements of a set. `mux`: a mux directory, its file:// URL, or a mux id of one of its
 * sessions (also of a mux on az://). */
MPMUX_C_EXPORT int mpmux_set_size(const char* mux, uint64_t* size);
/* Removes the mux directory with its element set and all its sessions (`mux` as for
 * mpmux_set_size, or an az:// mux URL). MPMUX_USAGE, removing nothing, when it is not a mux. */
MPMUX_C_EXPORT int mpmux_set_destroy(const char* mux);

/* ------------------------------------------------------------------------------ sessions */

/* Creates a new, independent read session of a mux (`mux` as for mpmux_set_destroy) and
 * returns its mux id, a printable URI such as file:///scratch/ana/mux/20261121-233500#s=... */
MPMUX_C_EXPORT int mpmux_session_create(const char* mux, char** mux_id);

/* Options of a run. Set by name, as `mpmux run`'s flags are spelled, so that options can be
 * added without changing the ABI (docs/capi.md):
 *   retries          N, 0 to 254: a failed attempt is retried up to N times, on any rank (0)
 *   root-works       true|false: rank 0 of a communicator also takes elements (false)
 *   rerun-failed     true|false: also hand out elements that failed for good (false)
 *   lease            SECONDS > 0: batches of a silent participant are taken over after it (30)
 *   chunk-min        N >= 1: smallest guided chunk of an MPI run (1)
 *   chunk-max        N >= chunk-min: largest guided chunk (1024)
 *   deadline         as `mpmux run --deadline`: 2026-11-22T02:10, +90s, +15m, +2h (none)
 *   grace            SECONDS >= 0: before the deadline, or after a stop signal (60)
 *   estimate         SECONDS >= 0: the runtime of an element before any was measured (none)
 *   stop-on-signals  true|false: SIGUSR1, SIGTERM and SIGINT drain the run (false)
 *   progress         none|auto|bar|lines: rank 0 shows progress on stderr (none)
 *   progress-interval SECONDS > 0: between progress lines (10)
 *   commit-interval  SECONDS > 0: longest wait before outcomes are fdatasynced (0.2)
 *   fsync            true|false: false never fdatasyncs the journal (scratch sessions) (true)
 * Booleans also take 1|0|yes|no. */
typedef struct mpmux_options mpmux_options;
#define mpmux_options_new(out) mpmux_options_new_abi(MPMUX_ABI_VERSION, (out))
MPMUX_C_EXPORT int mpmux_options_new_abi(uint32_t abi_version, mpmux_options** out);
/* Sets one option; an unknown name or a bad value is MPMUX_USAGE naming both, and the option
 * keeps its value. */
MPMUX_C_EXPORT int mpmux_options_set(mpmux_options* options, const char* name, const char* value);
MPMUX_C_EXPORT void mpmux_options_free(mpmux_options* options);

/* One run of a session by this process (or this thread): a participant of the session. */
typedef struct mpmux_run mpmux_run;

/* Opens the session `mux_id` as a run over `comm`. Collective over `comm` (every rank calls it,
 * then the loop, then mpmux_finish): each pending element goes to exactly one rank; rank 0
 * coordinates and gets elements only with root-works or when it is alone. MPI must be
 * initialized. `options` may be NULL (defaults); it is copied. A communicator of one rank, or
 * MPI_COMM_NULL, gives a run without MPI calls, as mpmux_open. */
#define mpmux_open_comm(mux_id, comm, options, out) \
  mpmux_open_comm_abi(MPMUX_ABI_VERSION, (mux_id), (comm), (options), (out))
MPMUX_C_EXPORT int mpmux_open_comm_abi(uint32_t abi_version, const char* mux_id, MPI_Comm comm,
                                       const mpmux_options* options, mpmux_run** out);
/* The same with a Fortran handle of the communicator (MPI_Comm_c2f; mpi4py's comm.py2f()). */
#define mpmux_open_fint(mux_id, comm, options, out) \
  mpmux_open_fint_abi(MPMUX_ABI_VERSION, (mux_id), (comm), (options), (out))
MPMUX_C_EXPORT int mpmux_open_fint_abi(uint32_t abi_version, const char* mux_id, MPI_Fint comm,
                                       const mpmux_options* options, mpmux_run** out);
/* Opens the session as a plain participant that makes no MPI call (MPI need not be
 * initialized): any number of processes and threads may each open one on a session, on one
 * machine or many, and each element goes to one of them (again only after a participant went
 * silent past its lease). */
#define mpmux_open(mux_id, options, out) mpmux_open_abi(MPMUX_ABI_VERSION, (mux_id), (options), (out))
MPMUX_C_EXPORT int mpmux_open_abi(uint32_t abi_version, const char* mux_id, const mpmux_options* options,
                                  mpmux_run** out);

/* An element handed to this rank. The caller sets `size` to sizeof(mpmux_element) before the
 * first mpmux_next (0 or too small a size is MPMUX_USAGE); the library fills only the fields that fit in `size`, so that fields added
 * at the end in a later version do not break programs compiled before. */
typedef struct mpmux_element {
  size_t size;
  int valid;         /* 1: an element was handed out; 0: the loop is over for this rank */
  int last_try;      /* 1 when a failure now is final (no retry left in this run) */
  uint64_t index;    /* its position in the set, 0 .. size-1 */
  uint32_t attempt;  /* 1 for the first attempt ever, counted across runs of the session */
  /* Its bytes, followed by a NUL byte (not counted in length): for sets made by mpmux_elements,
   * `mpmux new` or a file, the element's JSON text. Valid until the next call on this run. */
  const char* data;
  size_t length;
} mpmux_element;

/* The next element for this rank into *element (element->valid 0 when none is left: then every
 * outcome of this rank was handed on, and the caller goes to mpmux_finish). The element
 * obtained before, if not recorded yet, is first recorded as done with the result set by
 * mpmux_set_result (none by default). On the root of an MPI run that does not work, returns
 * only once every worker has finished. */
MPMUX_C_EXPORT int mpmux_next(mpmux_run* run, mpmux_element* element);
/* Keeps `length` bytes as the result of the current element (replacing any set before); it is
 * recorded when the element is. */
MPMUX_C_EXPORT int mpmux_set_result(mpmux_run* run, const void* data, size_t length);
/* Records the current element as done now, with `length` bytes of result (data may be NULL when
 * length is 0). */
MPMUX_C_EXPORT int mpmux_record_done(mpmux_run* run, const void* data, size_t length);
/* Records the current element as a failed attempt with `exit_code` (non-zero) and a message
 * kept as a command's stderr tail (`mpmux stat` lists it; NULL for none). It is retried as the
 * retries option says, on any rank. */
MPMUX_C_EXPORT int mpmux_record_failed(mpmux_run* run, int exit_code, const char* message);

/* Called by mpmux_run_each for each element this rank gets. Return 0: the element is done (with
 * the result set by mpmux_set_result on `run`); anything else: a failed attempt with that value
 * as its exit code and the message set by mpmux_set_message (none by default). */
typedef int (*mpmux_element_fn)(void* user_data, const mpmux_element* element, mpmux_run* run);
/* Sets the message of a failure returned by an mpmux_element_fn (kept as a stderr tail). */
MPMUX_C_EXPORT int mpmux_set_message(mpmux_run* run, const char* message);

/* What a run did, as seen by this rank (the root sees the whole run). `size` as for
 * mpmux_element. */
typedef struct mpmux_summary {
  size_t size;
  uint64_t handed_out;      /* root: pending elements at the start of the run */
  uint64_t done;            /* successful outcomes recorded by this run */
  uint64_t failed;          /* failed attempts recorded by this run */
  uint64_t failed_for_good; /* of those, the final ones */
  uint64_t fenced_batches;  /* root: batches taken over by another participant while silent */
  uint64_t held_by_others;  /* root: elements other live participants still held at the end */
  double seconds;           /* from the end of set-up to the end of the run */
  int stopped;              /* 1 when the run stopped before handing out everything */
} mpmux_summary;

/* The whole loop: calls fn for each element this rank gets, then mpmux_finish. Collective, as
 * the loop is. Returns what mpmux_finish returns. */
MPMUX_C_EXPORT int mpmux_run_each(mpmux_run* run, mpmux_element_fn fn, void* user_data,
                                  mpmux_summary* summary);

/* Collective end of the run: the current element, if not recorded, is recorded as done; this
 * rank's outcomes are handed on and the root flushes the journal, so that on return every
 * outcome recorded by any rank is durable. Fills *summary (may be NULL). Returns MPMUX_OK when
 * every element handed out was recorded and none failed for good, MPMUX_FAILED when some failed
 * for good (or storage failed), MPMUX_STOPPED when the run stopped with elements left pending;
 * the same on every rank. Afterwards the run takes no more calls but mpmux_close and
 * mpmux_run_worker_id (MPMUX_USAGE: "the run is finished"). */
MPMUX_C_EXPORT int mpmux_finish(mpmux_run* run, mpmux_summary* summary);
/* Frees the run, finishing it first when needed (collective then); NULL is fine. */
MPMUX_C_EXPORT void mpmux_close(mpmux_run* run);
/* This run's name among the session's participants (as `mpmux stat` lists them), followed by
 * "/RANK" on the ranks other than the root of an MPI run. */
MPMUX_C_EXPORT int mpmux_run_worker_id(const mpmux_run* run, char** worker_id);

/* --------------------------------------------------------------------- stat and results */

/* Counts of a session (`size` as for mpmux_element). pending = total - done - failed - running
 * - claimed. running, claimed, rate and eta_s come from the live participants' heartbeats. */
typedef struct mpmux_stat {
  size_t size;
  uint64_t total, done, failed, pending, running, claimed, fenced;
  double rate;   /* elements per second of the live participants */
  double eta_s;  /* seconds the open elements take at that rate; < 0 when the rate is 0 */
  uint64_t participants;  /* live participants */
  uint64_t stale_batches; /* batches waiting for a reclaim */
} mpmux_stat;
MPMUX_C_EXPORT int mpmux_stat_get(const char* mux_id, mpmux_stat* stat);
/* The JSON object `mpmux stat --json` prints (counts, participants, stale batches). */
MPMUX_C_EXPORT int mpmux_stat_json(const char* mux_id, char** json);
/* *done = 1 when every element of the session is done, else 0. */
MPMUX_C_EXPORT int mpmux_done(const char* mux_id, int* done);
/* Exports the results as `mpmux results` does: `format` "csv", "jsonl" or "h5"; `file` the file
 * to write (replaced atomically), or NULL for h5 to write the session's results.h5. *path (may
 * be NULL) receives the absolute path written. */
MPMUX_C_EXPORT int mpmux_results_export(const char* mux_id, const char* format, const char* file,
                                        char** path);

#ifdef __cplusplus
}
#endif

#endif /* MPMUX_MPMUX_H */
