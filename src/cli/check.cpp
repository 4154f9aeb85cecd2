// The MUX_ID argument of the commands that work on one session, with MPMUX_ID (which
// `sbatch --mux` sets in a job) standing in when it is not given, and `mpmux check`, which opens
// the session and nothing more: what the Slurm plugin runs to refuse a --mux naming no session.
#include <cstdlib>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "mpmux/error.hpp"
#include "mpmux/session.hpp"

namespace mpmux::cli {

CLI::Option* add_mux_id(CLI::App& cmd, std::string& mux_id) {
  return cmd.add_option("MUX_ID", mux_id,
                        "The session, as `mpmux session` printed it (default: $" + std::string(kMuxIdEnv) +
                            ", which sbatch --mux sets in the job)");
}

MuxId session_id(const std::string& mux_id, std::string_view command) {
  if (!mux_id.empty()) return MuxId::parse(mux_id);
  const char* env = std::getenv(kMuxIdEnv);
  if (env == nullptr || *env == '\0')
    throw UsageError(std::string(command) + ": no MUX_ID given and " + kMuxIdEnv +
                     " is not set (`sbatch --mux=MUX_ID` sets it in the job)");
  try {
    return MuxId::parse(env);
  } catch (const UsageError& e) {
    throw UsageError(std::string(kMuxIdEnv) + ": " + e.what());
  }
}

Command add_check_command(CLI::App& app) {
  auto mux_id = std::make_shared<std::string>();
  auto* cmd =
      app.add_subcommand("check", "Exit 0 when MUX_ID names a session that can be opened, else say why");
  add_mux_id(*cmd, *mux_id);
  return {cmd, [mux_id] {
            const Session session = Session::open(session_id(*mux_id, "check"));
            std::cout << session.id().str() << ": a session of " << session.total() << " elements\n";
            return kExitOk;
          }};
}

}  // namespace mpmux::cli
