#include "run/terminal.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

namespace mpmux::run {

namespace {

namespace fs = std::filesystem;

int columns_of(int fd) {
  winsize size{};
  return ::ioctl(fd, TIOCGWINSZ, &size) == 0 ? size.ws_col : 0;
}

// Launchers forward their ranks' output through pipes (Open MPI) or sockets.
bool is_pipe(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

// The width of the terminal another process's descriptor (a /proc/<pid>/fd/<n> link) is open
// on, or nothing when it is not a terminal. Only terminal devices are opened: never a pipe, nor
// a device that acts on open.
std::optional<int> terminal_at(const fs::path& fd_link) {
  std::error_code ec;
  const std::string target = fs::read_symlink(fd_link, ec).string();
  if (ec || !(target.starts_with("/dev/pts/") || target.starts_with("/dev/tty") || target == "/dev/console"))
    return std::nullopt;
  const int fd = ::open(fd_link.c_str(), O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<int> columns;
  if (::isatty(fd)) columns = columns_of(fd);
  ::close(fd);
  return columns;
}

std::optional<unsigned long> number(std::string_view text, int base = 10) {
  unsigned long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// Inodes of the sockets listening on `port`, from /proc/net/tcp and tcp6 (columns: sl,
// local address:port in hex, remote, state (0A: listening), ..., inode tenth).
std::set<std::string> listening_socket_inodes(const fs::path& proc, unsigned long port) {
  std::set<std::string> inodes;
  for (const char* table : {"net/tcp", "net/tcp6"}) {
    std::ifstream in(proc / table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      if (!(fields >> sl >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
            inode))
        continue;
      const auto colon = local.rfind(':');
      if (state != "0A" || colon == std::string::npos) continue;
      if (number(std::string_view(local).substr(colon + 1), 16) == port) inodes.insert(inode);
    }
  }
  return inodes;
}

// The srun of this job step when it runs on this node: the srun process holding the socket it
// listens on for its tasks (SLURM_SRUN_COMM_PORT).
std::optional<fs::path> srun_on_this_node(const fs::path& proc, unsigned long port) {
  const std::set<std::string> inodes = listening_socket_inodes(proc, port);
  if (inodes.empty()) return std::nullopt;
  std::error_code ec;
  for (const fs::directory_entry& process : fs::directory_iterator(proc, ec)) {
    if (!number(process.path().filename().string())) continue;
    std::string comm;
    std::getline(std::ifstream(process.path() / "comm"), comm);
    if (comm != "srun") continue;
    std::error_code fd_ec;
    for (const fs::directory_entry& fd : fs::directory_iterator(process.path() / "fd", fd_ec)) {
      const std::string target = fs::read_symlink(fd.path(), fd_ec).string();
      if (!fd_ec && target.starts_with("socket:[") && target.ends_with("]") &&
          inodes.contains(target.substr(8, target.size() - 9)))
        return process.path();
    }
  }
  return std::nullopt;
}

// The parent of a process, from /proc/<pid>/stat ("pid (comm) state ppid ...").
std::optional<unsigned long> parent_of(const fs::path& process) {
  std::string stat;
  std::getline(std::ifstream(process / "stat"), stat);
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(paren + 1));
  std::string state, ppid;
  if (!(fields >> state >> ppid)) return std::nullopt;
  return number(ppid);
}

// The process holding the other end of our stderr pipe: the parent, or above it while the
// parents write to the same pipe (a wrapper script between mpirun and mpmux).
fs::path launcher_of(const ProcessContext& context) {
  struct stat ours {};
  ::fstat(context.stderr_fd, &ours);
  const std::string same_pipe = "pipe:[" + std::to_string(ours.st_ino) + "]";
  fs::path process = context.proc / std::to_string(context.parent >= 0 ? context.parent : ::getppid());
  for (int level = 0; level < 8; ++level) {
    std::error_code ec;
    if (fs::read_symlink(process / "fd" / "2", ec).string() != same_pipe || ec) break;
    const auto parent = parent_of(process);
    if (!parent || *parent <= 1) break;
    process = context.proc / std::to_string(*parent);
  }
  return process;
}

struct StderrEnd {
  bool terminal = false;
  bool whole_lines = false;  // srun forwards it: line by line
  int columns = 0;
};

// Where stderr ends: on a terminal itself (no launcher, srun --pty), through Open MPI's
// forwarding on the terminal of the launcher that started this rank (mpirun hosts the local
// daemon), or through srun's on the terminal of the srun that runs on this node.
StderrEnd find_stderr_end(const ProcessContext& context) {
  if (::isatty(context.stderr_fd)) return {true, false, columns_of(context.stderr_fd)};
  if (!is_pipe(context.stderr_fd)) return {};  // a file
  if (context.env("OMPI_COMM_WORLD_SIZE")) {
    const fs::path launcher = launcher_of(context);
    if (auto columns = terminal_at(launcher / "fd" / "2")) return {true, false, *columns};
    return {};
  }
  if (context.env("SLURM_STEP_ID")) {
    const char* port_text = context.env("SLURM_SRUN_COMM_PORT");
    const auto port = port_text ? number(port_text) : std::nullopt;
    if (port) {
      if (auto srun = srun_on_this_node(context.proc, *port)) {
        if (auto columns = terminal_at(*srun / "fd" / "2")) return {true, true, *columns};
      }
    }
    return {false, true, 0};
  }
  return {};
}

}  // namespace

ProgressDisplay progress_display(ProgressOutput wanted, const ProcessContext& context) {
  using Kind = ProgressDisplay::Kind;
  if (wanted == ProgressOutput::lines) return {};
  // A batch script's output is a file, even where a launcher hands the ranks a terminal.
  const char* environment = context.env("ENVIRONMENT");
  const bool batch = environment && std::string_view(environment) == "BATCH";
  if (wanted == ProgressOutput::automatic && batch) return {};
  const StderrEnd end = find_stderr_end(context);
  if (wanted == ProgressOutput::automatic && !end.terminal) return {};
  return {Kind::bar, end.whole_lines, end.columns};
}

}  // namespace mpmux::run
