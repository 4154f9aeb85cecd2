/* The C ABI end to end, in plain C99: an element set from JSON buffers (objects, numbers, strings,
 * lists), two sessions, one worked with mpmux_next / mpmux_record_*, one with mpmux_run_each,
 * then stat, done and the exports. Run it under mpirun (every rank a worker of one run) or
 * alone with --no-mpi (a participant without MPI; MPI is never initialized).
 *
 *   capi_example ROOT [--no-mpi]
 *
 * Rank 0 prints name=value lines that tests/integration/test_capi.py checks; any failed check
 * prints "FAIL: ..." and exits 1. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpmux/mpmux.h"

#define N_ELEMENTS 100
#define MAX_ID 4096

static int rank = 0;
static int failures = 0;

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "FAIL (rank %d) %s:%d: %s: %s\n", rank, __FILE__, __LINE__, #cond, \
              mpmux_last_error());                                                        \
      ++failures;                                                                         \
    }                                                                                     \
  } while (0)

/* Element k as stored (compact JSON): an object, a number, a string or a list by k % 4. */
static void element_text(unsigned long k, char* out, size_t size) {
  switch (k % 4) {
    case 0:
      snprintf(out, size, "{\"k\":%lu,\"name\":\"e%lu\"}", k, k);
      break;
    case 1:
      snprintf(out, size, "%lu", k);
      break;
    case 2:
      snprintf(out, size, "\"s%lu\"", k);
      break;
    default:
      snprintf(out, size, "[%lu,\"x\",{\"y\":null}]", k);
      break;
  }
}

/* Half of the elements one by one (with spaces, which the set drops), half in one buffer. */
static char* make_set(const char* root) {
  mpmux_elements* set = NULL;
  char text[128], spaced[160];
  char data[N_ELEMENTS * 64];
  uint64_t offsets[N_ELEMENTS + 1];
  size_t n = 0;
  uint64_t count = 0;
  char* dir = NULL;
  unsigned long k;
  CHECK(mpmux_elements_new(&set) == MPMUX_OK);
  for (k = 0; k < N_ELEMENTS / 2; ++k) {
    element_text(k, text, sizeof text);
    snprintf(spaced, sizeof spaced, " %s\n", text);
    CHECK(mpmux_elements_add(set, spaced, strlen(spaced)) == MPMUX_OK);
  }
  offsets[0] = 0;
  for (k = N_ELEMENTS / 2; k < N_ELEMENTS; ++k) {
    element_text(k, data + n, sizeof data - n);
    n += strlen(data + n);
    offsets[k - N_ELEMENTS / 2 + 1] = n;
  }
  CHECK(mpmux_elements_add_many(set, data, offsets, N_ELEMENTS / 2) == MPMUX_OK);
  /* Bad JSON is refused, naming its position, and leaves the collection as it was. */
  CHECK(mpmux_elements_add(set, "{\"k\":", 5) == MPMUX_USAGE);
  CHECK(strstr(mpmux_last_error(), "element 100") != NULL);
  CHECK(mpmux_elements_count(set, &count) == MPMUX_OK && count == N_ELEMENTS);
  CHECK(mpmux_elements_create(set, root, "capi", &dir) == MPMUX_OK);
  mpmux_elements_free(set);
  return dir;
}

/* The element as handed out must be the element as stored, NUL-terminated. */
static void check_element(const mpmux_element* e) {
  char expected[128];
  element_text((unsigned long)e->index, expected, sizeof expected);
  CHECK(e->index < N_ELEMENTS);
  CHECK(e->length == strlen(expected) && strcmp(e->data, expected) == 0);
}

/* Session A: element k's result is "r<k>"; every element with k % 10 == 7 fails its first
 * attempt, and the run retries it once. */
static int work_with_next(const char* mux_id, MPI_Comm comm, int use_mpi) {
  mpmux_options* options = NULL;
  mpmux_run* run = NULL;
  mpmux_element e;
  mpmux_summary summary;
  char result[32];
  char* worker = NULL;
  int rc;
  memset(&e, 0, sizeof e);
  e.size = sizeof e;
  memset(&summary, 0, sizeof summary);
  summary.size = sizeof summary;
  CHECK(mpmux_options_new(&options) == MPMUX_OK);
  CHECK(mpmux_options_set(options, "retries", "1") == MPMUX_OK);
  CHECK(mpmux_options_set(options, "retries", "many") == MPMUX_USAGE);
  CHECK(mpmux_options_set(options, "colour", "blue") == MPMUX_USAGE);
  CHECK(strstr(mpmux_last_error(), "colour") != NULL);
  if (use_mpi)
    CHECK(mpmux_open_comm(mux_id, comm, options, &run) == MPMUX_OK);
  else
    CHECK(mpmux_open(mux_id, options, &run) == MPMUX_OK);
  mpmux_options_free(options);
  if (run == NULL) return MPMUX_FAILED;
  CHECK(mpmux_run_worker_id(run, &worker) == MPMUX_OK && worker != NULL && worker[0] != '\0');
  printf("worker_id_%d=%s\n", rank, worker ? worker : "");
  mpmux_free(worker);
  while ((rc = mpmux_next(run, &e)) == MPMUX_OK && e.valid) {
    check_element(&e);
    if (e.index % 10 == 7 && e.attempt == 1) {
      CHECK(!e.last_try);
      CHECK(mpmux_record_failed(run, 3, "seven fails its first attempt") == MPMUX_OK);
      /* Recorded already: nothing is left to record. */
      CHECK(mpmux_record_done(run, NULL, 0) == MPMUX_USAGE);
      continue;
    }
    snprintf(result, sizeof result, "r%lu", (unsigned long)e.index);
    CHECK(mpmux_set_result(run, result, strlen(result)) == MPMUX_OK); /* done when the loop moves on */
  }
  CHECK(rc == MPMUX_OK);
  rc = mpmux_finish(run, &summary);
  CHECK(mpmux_next(run, &e) == MPMUX_USAGE); /* finished */
  CHECK(strstr(mpmux_last_error(), "finished") != NULL);
  mpmux_close(run);
  return rc;
}

static int fail_five(void* user_data, const mpmux_element* e, mpmux_run* run) {
  char result[32];
  int* seen = (int*)user_data;
  ++*seen;
  check_element(e);
  if (e->index == 5) {
    mpmux_set_message(run, "five always fails");
    return 9;
  }
  snprintf(result, sizeof result, "cb%lu", (unsigned long)e->index);
  mpmux_set_result(run, result, strlen(result));
  return 0;
}

/* Session B: the callback loop; element 5 fails for good (no retries). */
static int work_with_callback(const char* mux_id, MPI_Comm comm, int use_mpi, int* seen) {
  mpmux_run* run = NULL;
  mpmux_summary summary;
  int rc;
  memset(&summary, 0, sizeof summary);
  summary.size = sizeof summary;
  if (use_mpi)
    CHECK(mpmux_open_fint(mux_id, MPI_Comm_c2f(comm), NULL, &run) == MPMUX_OK);
  else
    CHECK(mpmux_open_comm(mux_id, MPI_COMM_NULL, NULL, &run) == MPMUX_OK);
  if (run == NULL) return MPMUX_FAILED;
  rc = mpmux_run_each(run, fail_five, seen, &summary);
  mpmux_close(run);
  return rc;
}

static void share(char* text, int use_mpi) {
  if (use_mpi) MPI_Bcast(text, MAX_ID, MPI_CHAR, 0, MPI_COMM_WORLD);
}

int main(int argc, char** argv) {
  const int use_mpi = !(argc > 2 && strcmp(argv[2], "--no-mpi") == 0);
  char id_a[MAX_ID] = "", id_b[MAX_ID] = "", csv[MAX_ID];
  char* dir = NULL;
  char* text = NULL;
  int rc_a, rc_b, seen = 0, done = -1;
  mpmux_stat st;
  uint64_t size = 0;
  if (argc < 2) {
    fprintf(stderr, "usage: capi_example ROOT [--no-mpi]\n");
    return 2;
  }
  if (use_mpi) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  }
  CHECK(mpmux_abi_version() == MPMUX_ABI_VERSION);

  if (rank == 0) {
    dir = make_set(argv[1]);
    CHECK(dir != NULL && mpmux_set_size(dir, &size) == MPMUX_OK && size == N_ELEMENTS);
    if (dir != NULL) {
      CHECK(mpmux_session_create(dir, &text) == MPMUX_OK);
      if (text) strncpy(id_a, text, MAX_ID - 1);
      mpmux_free(text);
      CHECK(mpmux_session_create(dir, &text) == MPMUX_OK);
      if (text) strncpy(id_b, text, MAX_ID - 1);
      mpmux_free(text);
    }
    printf("mux_dir=%s\nsession_a=%s\nsession_b=%s\n", dir ? dir : "", id_a, id_b);
  }
  share(id_a, use_mpi);
  share(id_b, use_mpi);

  rc_a = work_with_next(id_a, MPI_COMM_WORLD, use_mpi);
  rc_b = work_with_callback(id_b, MPI_COMM_WORLD, use_mpi, &seen);
  /* The verdict is the same on every rank. */
  CHECK(rc_a == MPMUX_OK);
  CHECK(rc_b == MPMUX_FAILED);

  if (rank == 0) {
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    CHECK(mpmux_stat_get(id_a, &st) == MPMUX_OK);
    printf("a_total=%lu\na_done=%lu\na_failed=%lu\n", (unsigned long)st.total, (unsigned long)st.done,
           (unsigned long)st.failed);
    CHECK(mpmux_stat_get(id_b, &st) == MPMUX_OK);
    printf("b_done=%lu\nb_failed=%lu\n", (unsigned long)st.done, (unsigned long)st.failed);
    CHECK(mpmux_done(id_a, &done) == MPMUX_OK && done == 1);
    CHECK(mpmux_done(id_b, &done) == MPMUX_OK && done == 0);
    CHECK(mpmux_stat_json(id_b, &text) == MPMUX_OK && text != NULL);
    printf("b_stat_json=%s\n", text ? text : "");
    mpmux_free(text);
    CHECK(mpmux_results_export(id_a, "h5", NULL, &text) == MPMUX_OK && text != NULL);
    printf("a_results_h5=%s\n", text ? text : "");
    mpmux_free(text);
    snprintf(csv, sizeof csv, "%s/b.csv", argv[1]);
    CHECK(mpmux_results_export(id_b, "csv", csv, NULL) == MPMUX_OK);
    printf("b_results_csv=%s\n", csv);
    /* Errors come back as codes with a message naming the culprit. */
    CHECK(mpmux_stat_get("no-such-id", &st) == MPMUX_USAGE);
    CHECK(strstr(mpmux_last_error(), "no-such-id") != NULL);
    mpmux_free(dir);
  }
  printf("seen_%d=%d\n", rank, seen);
  if (use_mpi) MPI_Finalize();
  if (failures) return 1;
  return 0;
}
