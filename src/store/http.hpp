// A small RAII layer over one libcurl easy handle: one HTTP request at a time, with its
// connection kept for the next. Used by the az:// store; nothing here knows about Azure.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mpmux::store {

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lowercase
  std::string body;

  /// The header's value, or "" when absent.
  std::string header(const std::string& lowercase_name) const;
};

/// How a request ended when no response came.
enum class HttpFailure {
  kNone,       // a response arrived
  kNotSent,    // the connection could not be made: the request certainly had no effect
  kAmbiguous,  // timed out or reset after the request may have left: it may have taken effect
  kFatal,      // will not get better by retrying (TLS verification failed, bad URL)
};

struct HttpResult {
  HttpFailure failure = HttpFailure::kNone;
  std::string error;  // curl's description when failure != kNone
  HttpResponse response;
};

class HttpClient {
 public:
  /// https:// is always verified against the system's CA certificates (there is no switch to
  /// turn that off); only an http:// URL, an emulator's, goes without TLS.
  explicit HttpClient(std::chrono::milliseconds timeout);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// Sends one request. `headers` are "Name: value" lines; a body is sent for PUT (also empty).
  HttpResult request(const std::string& method, const std::string& url,
                     const std::vector<std::string>& headers, std::string_view body);

  /// Percent-encodes a query value or a path part (keeps unreserved bytes and, when asked, '/').
  static std::string escape(std::string_view text, bool keep_slash);

 private:
  void* curl_ = nullptr;  // CURL*
  std::chrono::milliseconds timeout_;
};

}  // namespace mpmux::store
