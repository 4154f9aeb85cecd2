// tests/unit/fault_proxy.py between a store client and Azurite, for the tests of what the az://
// store does with dropped connections, late answers, 5xx and resets.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace mpmux::test {

// The proxy as a child process: its stdout tells its port, and it reports the faults it injected
// when its stdin closes.
class FaultProxy {
 public:
  FaultProxy(int upstream_port, int seed, double rate, double delay_s) {
    int in[2], out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::close(in[1]);
      ::close(out[0]);
      const std::string script = std::string(MPMUX_SOURCE_DIR) + "/tests/unit/fault_proxy.py";
      const std::string args[] = {std::to_string(upstream_port), std::to_string(seed), std::to_string(rate),
                                  std::to_string(delay_s)};
      ::execl("/usr/bin/python3", "python3", script.c_str(), args[0].c_str(), args[1].c_str(),
              args[2].c_str(), args[3].c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_proxy_ = in[1];
    from_proxy_ = ::fdopen(out[0], "r");
    char line[256];
    if (std::fgets(line, sizeof line, from_proxy_) == nullptr || std::sscanf(line, "port=%d", &port_) != 1)
      throw std::runtime_error("the fault proxy did not start");
  }
  ~FaultProxy() { stop(); }
  int port() const { return port_; }

  /// Stops the proxy; returns its "faults=kind:count ..." line.
  std::string stop() {
    if (pid_ <= 0) return report_;
    ::close(to_proxy_);
    char line[512] = {0};
    if (std::fgets(line, sizeof line, from_proxy_) != nullptr) report_ = line;
    std::fclose(from_proxy_);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return report_;
  }

 private:
  pid_t pid_ = -1;
  int to_proxy_ = -1;
  FILE* from_proxy_ = nullptr;
  int port_ = 0;
  std::string report_;
};

/// The count of one kind of fault in the proxy's report, or -1 when it names none.
inline int count_of(const std::string& report, const std::string& kind) {
  std::size_t at = report.find(kind + ":");
  return at == std::string::npos ? -1 : std::stoi(report.substr(at + kind.size() + 1));
}

}  // namespace mpmux::test
