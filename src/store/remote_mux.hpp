// Muxes and sessions on Azure Blob storage (az://): what session.cpp, results.cpp and the
// journal need beyond the local layout. A remote mux is the blobs
//   MUX/mux.json                           marker: checksum, size and count of elements.h5
//   MUX/elements.h5
//   MUX/sessions/<id>/session.json         exclusive create
//   MUX/sessions/<id>/journal/<name>.mjl   append blobs, one per writer
//   MUX/sessions/<id>/results.h5           uploaded after each rebuild
// and is read through a local mirror of the same layout (mux_cache_dir), so the fold, the run
// and the exports work on local files.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "mpmux/session.hpp"

namespace mpmux::store {

/// Shared with the local mux directories (session.cpp).
void check_tag(const std::string& tag);
std::string mux_name(const std::string& tag);  // <UTC YYYYMMDD-HHMMSS>[-tag]
std::string new_session_id();                  // <UTC YYYYMMDDTHHMMSSZ>-<4 hex>
std::string session_json(const std::string& id, std::uint64_t count);

/// Throws UsageError "<named>: ..." unless every byte after az:// is a plain path byte.
void check_az_bytes(std::string_view text, const std::string& named);
/// remote_mux_url with the name errors begin with ("mux id '<id>'").
std::string remote_mux_url_named(std::string_view text, const std::string& named);

/// Brings the local mirror of a remote session up to date (see Session::open).
void mirror_session(const MuxId& id);

/// Uploads the session's results.h5 (written locally at `file`) to MUX/sessions/<id>/results.h5.
void upload_results(const Session& session, const std::filesystem::path& file);

}  // namespace mpmux::store
