// `--exec` tasks: an argv template filled from each element, run as a child process.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/export.hpp"
#include "mpmux/journal.hpp"

namespace mpmux {

/// An argv template such as `./sim --alpha {alpha} --out 'run {#}.txt'`. Without a shell the
/// text is split into words as a POSIX shell would (quotes and backslashes; no expansions) and
/// each placeholder is replaced inside its word, so a value never splits into several words.
/// With a shell each placeholder becomes one inert shell word (single-quoted only when the value
/// holds a character other than letters, digits and -_.+/,:@%, or is empty) and the text is run
/// by /bin/sh -c. `{name}` is a field of the element's JSON object, rendered as written in the
/// input (a string's characters, a number's text such as 1.10); name is any text without braces
/// ({alpha (deg)}). `{#}` is the element index, `{{` and `}}` are literal braces.
class MPMUX_EXPORT CommandTemplate {
 public:
  /// Throws UsageError naming --exec for unbalanced quotes or braces and empty placeholders.
  static CommandTemplate parse(std::string_view text, bool shell);

  /// The field names the template uses (without "#").
  const std::vector<std::string>& fields() const { return fields_; }
  /// Throws UsageError "--exec: unknown placeholder {x} (fields: a, b)" for a field not offered.
  void check_fields(const std::vector<std::string>& available) const;
  /// The argv for one element; `element_json` must be a JSON object. Throws UsageError when the
  /// element lacks a field the template uses.
  std::vector<std::string> render(std::uint64_t index, std::string_view element_json) const;

 private:
  struct Piece {
    bool placeholder = false;
    std::string text;  // literal text, or the field name ("#" for the index)
  };
  using Word = std::vector<Piece>;
  std::vector<Word> words_;
  std::vector<std::string> fields_;
  bool shell_ = false;
};

/// Limits on what a command's output may keep.
struct MPMUX_EXPORT CommandLimits {
  std::size_t max_stdout = 1 << 20;  // the result; longer output is cut and flagged
  std::size_t stderr_tail = 4096;    // the last bytes of stderr are kept
  double timeout_s = 0;              // > 0: the process group is killed after this long
};

/// Runs argv (argv[0] searched in PATH) in a process group of its own with stdin from
/// /dev/null, and fills outcome.result (stdout), stderr_tail, exit_code / signal, flags,
/// pid, t_start and t_end. A command that cannot be started gets exit code 127 and the reason
/// in stderr_tail. type is done for exit code 0, failed otherwise. A command running past
/// limits.timeout_s has its process group killed (SIGKILL) and fails with the kTimedOut flag.
/// `cancel` is asked at least every 100 ms and whenever a signal interrupts the wait; when it
/// says true the process group is killed and run_command returns false: the attempt is void
/// (not to be recorded). Otherwise returns true.
MPMUX_EXPORT bool run_command(const std::vector<std::string>& argv, Outcome& outcome,
                              const CommandLimits& limits = {}, const std::function<bool()>& cancel = {});

}  // namespace mpmux
