// The worker-program protocol as a parent reads it: any byte stream, arriving in pieces of any
// size, is cut into whole READY/RESULT frames or refused as garbage, never read out of bounds.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "pool/worker_frame.hpp"

namespace wf = mpmux::worker_frame;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte is the size of the pieces the socket delivers.
  std::size_t piece = data[0] + 1U;
  const char* stream = reinterpret_cast<const char*>(data) + 1;
  std::size_t left = size - 1;
  std::string inbuf, payload;
  try {
    while (left > 0 || !inbuf.empty()) {
      std::size_t n = left < piece ? left : piece;
      inbuf.append(stream, n);
      stream += n;
      left -= n;
      std::uint8_t type;
      while ((type = wf::take(inbuf, payload)) != 0) {
        if (type != wf::kReady && type != wf::kResult) std::abort();
        if (type == wf::kResult) {
          auto result = wf::decode_result(payload);
          if (result.body.size() != payload.size() - 9) std::abort();
        }
      }
      if (n == 0) break;  // all delivered; what is left is an unfinished frame
    }
  } catch (const wf::Garbage&) {
  }
  return 0;
}
