// The C ABI (include/mpmux/mpmux.h): errors, element sets, sessions, stat and results. The run
// loop is in capi_run.cpp. Each call is a thin shell over the C++ library's own function.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "capi/boundary.hpp"
#include "mpmux/results.hpp"
#include "mpmux/run.hpp"
#include "mpmux/session.hpp"
#include "store/element_input.hpp"
#include "store/fs.hpp"
#include "store/h5.hpp"

namespace mpmux::capi {

namespace {

thread_local std::string last_error;
// Where mpmux_last_error points: last_error, or a fixed text when even that could not be kept.
thread_local const char* last_error_text = "";

}  // namespace

int fail(int code, std::string_view message) noexcept {
  try {
    last_error.assign(message);
    last_error_text = last_error.c_str();
  } catch (...) {
    last_error_text = "out of memory (while keeping an error message)";
  }
  return code;
}

void check_abi(std::uint32_t caller, const char* call) {
  if (caller == MPMUX_ABI_VERSION) return;
  throw CallError(MPMUX_ABI_MISMATCH,
                  std::string(call) + ": the program was built with mpmux.h of ABI version " +
                      std::to_string(caller) + ", but this libmpmux has ABI version " +
                      std::to_string(MPMUX_ABI_VERSION) + "; rebuild it against this library's header");
}

void copy_out(std::string_view text, char** out) {
  char* p = static_cast<char*>(std::malloc(text.size() + 1));
  if (p == nullptr) throw std::bad_alloc();
  std::memcpy(p, text.data(), text.size());
  p[text.size()] = '\0';
  *out = p;
}

namespace {

std::string text_or(const char* text, const char* fallback) { return text ? text : fallback; }

Session open_session(const char* mux_id) {
  auto lock = h5::hdf5_lock();  // Session::open reads the set's attributes
  return Session::open(MuxId::parse(mux_id));
}

}  // namespace

}  // namespace mpmux::capi

using namespace mpmux;        // NOLINT(google-build-using-namespace): the boundary's own file
using namespace mpmux::capi;  // NOLINT(google-build-using-namespace)

struct mpmux_elements {
  JsonElements elements{/*objects_only=*/false};
};

extern "C" {

uint32_t mpmux_abi_version(void) { return MPMUX_ABI_VERSION; }

const char* mpmux_last_error(void) { return last_error_text; }

void mpmux_free(void* p) { std::free(p); }

// ----------------------------------------------------------------------------- element sets

int mpmux_elements_new_abi(uint32_t abi_version, mpmux_elements** out) {
  return guarded([&] {
    check_abi(abi_version, "mpmux_elements_new");
    require(out, "mpmux_elements_new", "out");
    *out = new mpmux_elements;
  });
}

int mpmux_elements_add(mpmux_elements* elements, const char* json, size_t length) {
  return guarded([&] {
    require(elements, "mpmux_elements_add", "elements");
    require(json, "mpmux_elements_add", "json");
    elements->elements.add(std::string_view(json, length),
                           "element " + std::to_string(elements->elements.size()) + ": ");
  });
}

int mpmux_elements_add_many(mpmux_elements* elements, const char* data, const uint64_t* offsets,
                            size_t count) {
  return guarded([&] {
    constexpr const char* call = "mpmux_elements_add_many";
    require(elements, call, "elements");
    if (count == 0) return;
    require(data, call, "data");
    require(offsets, call, "offsets");
    for (size_t k = 0; k < count; ++k) {
      if (offsets[k + 1] < offsets[k])
        throw CallError(MPMUX_USAGE, std::string(call) + ": offsets[" + std::to_string(k + 1) +
                                         "] is less than offsets[" + std::to_string(k) + "]");
      elements->elements.add(std::string_view(data + offsets[k], offsets[k + 1] - offsets[k]),
                             "element " + std::to_string(elements->elements.size()) + ": ");
    }
  });
}

int mpmux_elements_count(const mpmux_elements* elements, uint64_t* count) {
  return guarded([&] {
    require(elements, "mpmux_elements_count", "elements");
    require(count, "mpmux_elements_count", "count");
    *count = elements->elements.size();
  });
}

int mpmux_elements_create(mpmux_elements* elements, const char* root, const char* tag, char** mux_dir) {
  return guarded([&] {
    constexpr const char* call = "mpmux_elements_create";
    require(elements, call, "elements");
    require(root, call, "root");
    require(mux_dir, call, "mux_dir");
    if (elements->elements.size() == 0) throw CallError(MPMUX_USAGE, std::string(call) + ": no elements");
    const MuxRoot where = MuxRoot::parse(root, "root");
    // Lent to the store and given back, so that the collection is kept without a copy.
    ParsedElements parsed = elements->elements.take();
    std::string dir;
    try {
      auto lock = h5::hdf5_lock();
      dir = where.create(parsed, text_or(tag, ""));
    } catch (...) {
      elements->elements.give_back(std::move(parsed));
      throw;
    }
    elements->elements.give_back(std::move(parsed));
    copy_out(dir, mux_dir);
  });
}

void mpmux_elements_free(mpmux_elements* elements) { delete elements; }

int mpmux_set_create_from_file_abi(uint32_t abi_version, const char* root, const char* file,
                                   const char* format, const char* encoding, const char* tag,
                                   char** mux_dir) {
  return guarded([&] {
    constexpr const char* call = "mpmux_set_create_from_file";
    check_abi(abi_version, call);
    require(root, call, "root");
    require(file, call, "file");
    require(mux_dir, call, "mux_dir");
    const MuxRoot where = MuxRoot::parse(root, "root");
    auto lock = h5::hdf5_lock();  // an HDF5 dataset may be the input
    const ParsedElements parsed = read_input_file(file, text_or(format, ""), text_or(encoding, "utf-8"));
    copy_out(where.create(parsed, text_or(tag, "")), mux_dir);
  });
}

int mpmux_set_size(const char* mux, uint64_t* size) {
  return guarded([&] {
    require(mux, "mpmux_set_size", "mux");
    require(size, "mpmux_set_size", "size");
    const MuxLocation where = MuxLocation::parse(mux, "mux");
    auto lock = h5::hdf5_lock();
    *size = where.size();
  });
}

int mpmux_set_destroy(const char* mux) {
  return guarded([&] {
    require(mux, "mpmux_set_destroy", "mux");
    MuxLocation::parse(mux, "mux").destroy();
  });
}

// ------------------------------------------------------------------------------- sessions

int mpmux_session_create(const char* mux, char** mux_id) {
  return guarded([&] {
    require(mux, "mpmux_session_create", "mux");
    require(mux_id, "mpmux_session_create", "mux_id");
    const MuxLocation where = MuxLocation::parse(mux, "mux");
    auto lock = h5::hdf5_lock();  // the set is checked before the session is made
    copy_out(where.create_session().id().str(), mux_id);
  });
}

// ---------------------------------------------------------------------- stat and results

int mpmux_stat_get(const char* mux_id, mpmux_stat* stat) {
  return guarded([&] {
    constexpr const char* call = "mpmux_stat_get";
    require(mux_id, call, "mux_id");
    require(stat, call, "stat");
    if (stat->size < sizeof(mpmux_stat))
      throw CallError(MPMUX_USAGE, std::string(call) + ": stat->size is " + std::to_string(stat->size) +
                                       "; set it to sizeof(mpmux_stat)");
    const Stat st = session_stat(open_session(mux_id));
    mpmux_stat out{};
    out.size = stat->size;
    out.total = st.total;
    out.done = st.done;
    out.failed = st.failed;
    out.pending = st.pending;
    out.running = st.running;
    out.claimed = st.claimed;
    out.fenced = st.fenced;
    out.rate = st.rate;
    out.eta_s = st.eta_s;
    out.participants = st.participants.size();
    out.stale_batches = st.stale_batches.size();
    *stat = out;
  });
}

int mpmux_stat_json(const char* mux_id, char** json) {
  return guarded([&] {
    require(mux_id, "mpmux_stat_json", "mux_id");
    require(json, "mpmux_stat_json", "json");
    copy_out(stat_json(session_stat(open_session(mux_id))), json);
  });
}

int mpmux_done(const char* mux_id, int* done) {
  return guarded([&] {
    require(mux_id, "mpmux_done", "mux_id");
    require(done, "mpmux_done", "done");
    // The counts alone, as `mpmux done`: the participants' heartbeats do not change what is done.
    const SessionCounts counts = read_session_counts(open_session(mux_id));
    *done = counts.done == counts.total ? 1 : 0;
  });
}

int mpmux_results_export(const char* mux_id, const char* format, const char* file, char** path) {
  return guarded([&] {
    constexpr const char* call = "mpmux_results_export";
    require(mux_id, call, "mux_id");
    require(format, call, "format");
    const ResultsFormat kind = results_format_from_string(format);
    if (file == nullptr && kind != ResultsFormat::h5)
      throw CallError(MPMUX_USAGE, std::string(call) + ": a " + format + " export needs a file");
    const Session session = open_session(mux_id);
    std::filesystem::path written;
    if (file != nullptr) {
      posix::check_output_file(file, std::string(call) + ": file");
      written = std::filesystem::absolute(file);
    }
    auto lock = h5::hdf5_lock();
    if (kind == ResultsFormat::h5)
      written = std::filesystem::absolute(write_results_h5(session, written));
    else
      write_results_file(session, kind, written);
    if (path != nullptr) copy_out(written.string(), path);
  });
}

}  // extern "C"
