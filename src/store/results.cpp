// The results exports of a session: each format written to a stream or, atomically, to a file,
// folded with the committed batches given (the public functions, which read them from the
// session's store, are in run/session_fold.cpp). The fold is in results_fold.cpp, the column table in
// results_columns.hpp, the writers in results_text.cpp (CSV, JSON Lines) and results_h5.cpp.
#include "mpmux/results.hpp"

#include <string>

#include "mpmux/error.hpp"
#include "store/remote_mux.hpp"
#include "store/replacing_file.hpp"
#include "store/results_export.hpp"

namespace mpmux {

namespace stdfs = std::filesystem;

std::string_view to_string(ResultsFormat format) {
  switch (format) {
    case ResultsFormat::csv:
      return "csv";
    case ResultsFormat::jsonl:
      return "jsonl";
    case ResultsFormat::h5:
      return "h5";
  }
  return "unknown";
}

ResultsFormat results_format_from_string(std::string_view text) {
  if (text == "csv") return ResultsFormat::csv;
  if (text == "jsonl") return ResultsFormat::jsonl;
  if (text == "h5") return ResultsFormat::h5;
  throw UsageError("unknown results format '" + std::string(text) + "' (expected csv, jsonl or h5)");
}

stdfs::path results_file(const Session& session) { return session.dir() / "results.h5"; }

namespace {

// The CSV or JSON Lines export to `sink`.
void write_text(const results::Export& e, ResultsFormat format, const results::Sink& sink) {
  if (format == ResultsFormat::csv)
    results::write_csv(e, sink);
  else
    results::write_jsonl(e, sink);
}

void write_stream(const Session& session, const std::vector<BatchWinner>& winners, ResultsFormat format,
                  std::ostream& out) {
  const results::Export e(session, winners);
  write_text(e, format, [&](std::string_view chunk) {
    if (!out.write(chunk.data(), static_cast<std::streamsize>(chunk.size())))
      throw StoreError("writing " + std::string(format == ResultsFormat::csv ? "CSV" : "JSON Lines") +
                       " results of session " + session.id().session + " failed");
  });
  out.flush();
}

}  // namespace

namespace fold {

void write_results_csv(const Session& session, const std::vector<BatchWinner>& winners, std::ostream& out) {
  write_stream(session, winners, ResultsFormat::csv, out);
}

void write_results_jsonl(const Session& session, const std::vector<BatchWinner>& winners, std::ostream& out) {
  write_stream(session, winners, ResultsFormat::jsonl, out);
}

stdfs::path write_results_h5(const Session& session, const std::vector<BatchWinner>& winners,
                             const stdfs::path& file) {
  stdfs::path target = file.empty() ? results_file(session) : file;
  const results::Export e(session,
                          winners);  // read before anything is created: a bad journal leaves no trace
  ReplacingFile out(target, "results");
  out.close();  // HDF5 opens it by name
  results::write_h5(out.temporary(), session, e);
  out.commit();
  // A remote session's results.h5 also goes next to its journals, where every machine finds it.
  if (file.empty() && session.id().is_remote()) store::upload_results(session, target);
  return target;
}

void write_results_file(const Session& session, const std::vector<BatchWinner>& winners, ResultsFormat format,
                        const stdfs::path& file) {
  if (format == ResultsFormat::h5) {
    write_results_h5(session, winners, file);
    return;
  }
  const results::Export e(session, winners);
  ReplacingFile out(file, "results");
  write_text(e, format, [&](std::string_view chunk) {
    const posix::IoResult w = posix::write_all(out.fd(), chunk.data(), chunk.size());
    if (w.error != 0)
      throw StoreError("'" + file.string() + "': cannot write results: writing '" + out.temporary().string() +
                       "' failed: " + posix::error_text(w.error));
  });
  out.commit();
}

}  // namespace fold

}  // namespace mpmux
