// The owner check of the commands that write into a mux directory (session, run, results -o
// unset with h5, destroy): docs/design.md, "Permissions".
#include <unistd.h>

#include "cli/commands.hpp"
#include "mpmux/error.hpp"
#include "store/fs.hpp"

namespace mpmux::cli {

void check_owner(const std::filesystem::path& dir, bool allowed) {
  if (allowed) return;
  const auto owner = posix::foreign_owner(dir);
  if (!owner) return;
  throw UsageError("'" + dir.string() + "' belongs to " + posix::user_name(*owner) + ", not to " +
                   posix::user_name(::geteuid()) +
                   "; refusing to write there (--allow-foreign-owner to do it anyway)");
}

CLI::Option* add_allow_foreign_owner(CLI::App& cmd, bool& allowed) {
  return cmd.add_flag("--allow-foreign-owner", allowed,
                      "Write into a mux or session directory that belongs to another user");
}

}  // namespace mpmux::cli
