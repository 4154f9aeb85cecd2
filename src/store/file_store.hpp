// The file:// object store: one file per object under a directory, on a local or shared file
// system. Exclusive creates by O_EXCL or link() (StoreOptions::exclusive_create), replacement by
// writing a temporary file and renaming it over the object; no flock/fcntl, whose behaviour
// across nodes of a parallel file system is not to be trusted.
//
// put_if_match: a version may have at most one successor. An updater first creates the hidden
// marker ".<name>.next.<version>" exclusively (only one updater of that version wins), then
// checks that the object still has that version (a plain put may have replaced it), renames its
// temporary file over the object and removes the marker. An updater that dies between marker
// and rename leaves the version without a successor: later put_if_match of it fail, and a put()
// gives the object a new version.
//
// With O_EXCL an object appears empty for the moment between its create and its write; a reader
// that needs its content retries on an empty object. link() makes it appear whole.
#pragma once
#include <filesystem>
#include <memory>

#include "store/object_store.hpp"

namespace mpmux::store {

/// Opens (creating when missing, mode 0775 less the umask) the directory `dir` as a store.
/// Throws UsageError when it cannot be created or is not a directory.
std::unique_ptr<ObjectStore> open_file_store(const std::filesystem::path& dir, const StoreOptions& options);

}  // namespace mpmux::store
