// Decoding what a worker program writes on its socket (protocol in mpmux/worker_program.hpp),
// apart from the socket, so that it can be tested and fuzzed on bytes alone.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mpmux::worker_frame {

constexpr std::uint8_t kInit = 1, kTask = 2, kBye = 3, kReady = 16, kResult = 17;
constexpr std::uint32_t kMaxFrame = 1U << 30;

/// What a worker wrote breaks the protocol; what() says how ("unknown frame type 9").
class Garbage : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void put_u32(std::string& out, std::uint32_t v);
void put_u64(std::string& out, std::uint64_t v);
std::uint64_t get_le(const char* p, int n);

/// Takes one whole frame from the front of `inbuf`: returns its type (READY or RESULT) and puts
/// its payload in `payload`, or returns 0 when `inbuf` holds no whole frame yet. Throws Garbage
/// as soon as the frame's head is bad (length 0 or over 1 GiB, a type a worker never sends).
std::uint8_t take(std::string& inbuf, std::string& payload);

struct Result {
  std::uint64_t index = 0;
  bool ok = false;
  std::string_view body;  // the result, or the error text when !ok (a view into the payload)
};
/// Decodes a RESULT payload ([u64 index][u8 ok][body]). Throws Garbage when it is shorter than
/// 9 bytes or ok is neither 0 nor 1.
Result decode_result(std::string_view payload);

}  // namespace mpmux::worker_frame
