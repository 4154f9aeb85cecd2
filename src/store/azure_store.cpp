#include "store/azure_store.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include "mpmux/error.hpp"
#include "store/fs.hpp"
#include "store/http.hpp"

namespace mpmux::store {

namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;
using Clock = std::chrono::steady_clock;

constexpr const char* kApiVersion = "2021-12-02";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::string base64_encode(const unsigned char* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

// Strict base64 (RFC 4648, with padding); nullopt for anything else.
std::optional<std::string> base64_decode(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    bool pad = c == '=' && i + 2 >= text.size();
    if (!(std::isalnum(c) || c == '+' || c == '/' || pad)) return std::nullopt;
  }
  std::string out(text.size() / 4 * 3, '\0');
  int len =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (len < 0) return std::nullopt;
  std::size_t pads = (text.back() == '=') + (text.size() > 1 && text[text.size() - 2] == '=');
  out.resize(static_cast<std::size_t>(len) - pads);
  return out;
}

// RFC 1123 in English whatever the locale: "Sat, 05 Dec 2026 00:10:00 GMT".
std::string http_date() {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t now = ::time(nullptr);
  struct tm tm {};
  ::gmtime_r(&now, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

// The first <tag>...</tag> of an XML text at or after `from`, with its end in `*end`.
std::optional<std::string> xml_element(const std::string& xml, const std::string& tag, std::size_t from,
                                       std::size_t limit, std::size_t* end = nullptr) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  std::size_t a = xml.find(open, from);
  if (a == std::string::npos || a >= limit) return std::nullopt;
  a += open.size();
  std::size_t b = xml.find(close, a);
  if (b == std::string::npos) return std::nullopt;
  if (end != nullptr) *end = b + close.size();
  return xml.substr(a, b - a);
}

std::string xml_unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    static const std::pair<const char*, char> kEntities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    bool done = false;
    for (const auto& [name, ch] : kEntities) {
      if (s.compare(i, std::strlen(name), name) == 0) {
        out.push_back(ch);
        i += std::strlen(name) - 1;
        done = true;
        break;
      }
    }
    if (!done) out.push_back('&');
  }
  return out;
}

// "key1=value1;key2=value2" (the connection string's syntax).
std::map<std::string, std::string> parse_connection_string(const std::string& text) {
  std::map<std::string, std::string> out;
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t end = text.find(';', begin);
    if (end == std::string::npos) end = text.size();
    std::string part = text.substr(begin, end - begin);
    std::size_t eq = part.find('=');
    if (eq != std::string::npos) out[lower(part.substr(0, eq))] = part.substr(eq + 1);
    begin = end + 1;
  }
  return out;
}

// A list gives ETags without the quotes that the ETag header has.
std::string quoted(const std::string& etag) {
  return !etag.empty() && etag.front() == '"' ? etag : "\"" + etag + "\"";
}

bool is_retryable_status(long status) { return status == 408 || status == 429 || status >= 500; }

struct Endpoint {
  std::string base;  // scheme://host[:port][/path], no trailing '/'
  std::string path;  // the path part ("" or "/devstoreaccount1")
};

class AzureStore final : public ObjectStore {
 public:
  AzureStore(std::string url, std::string account, std::string container, std::string prefix,
             Endpoint endpoint, std::string key, const StoreOptions& options)
      : url_(std::move(url)),
        account_(std::move(account)),
        container_(std::move(container)),
        prefix_(std::move(prefix)),
        endpoint_(std::move(endpoint)),
        key_(std::move(key)),
        options_(options),
        http_(options.request_timeout),
        random_(std::random_device{}()) {}

  const std::string& url() const override { return url_; }

  void create_container() {
    Reply r = send("PUT", "", {{"restype", "container"}}, {}, "");
    if (r.status == 201 || r.code == "ContainerAlreadyExists") return;
    fail("create the container", "", r);
  }

  std::optional<std::string> put_if_absent(const std::string& key, std::string_view data) override {
    Reply r = send("PUT", key, {}, {{"if-none-match", "*"}, {"x-ms-blob-type", "BlockBlob"}}, data);
    if (r.status == 201) return r.etag;
    if (r.status == 409 || r.status == 412) return r.maybe_applied ? ours_after_all(key, data) : std::nullopt;
    fail("create", key, r);
  }

  std::optional<std::string> put_if_match(const std::string& key, std::string_view data,
                                          const std::string& etag) override {
    Reply r = send("PUT", key, {}, {{"if-match", etag}, {"x-ms-blob-type", "BlockBlob"}}, data);
    if (r.status == 201) return r.etag;
    if (r.status == 412 || (r.status == 404 && r.code == "BlobNotFound"))
      return r.maybe_applied ? ours_after_all(key, data) : std::nullopt;
    fail("replace", key, r);
  }

  std::string put(const std::string& key, std::string_view data, bool) override {
    Reply r = send("PUT", key, {}, {{"x-ms-blob-type", "BlockBlob"}}, data);
    if (r.status == 201) return r.etag;
    fail("write", key, r);
  }

  std::optional<Object> get(const std::string& key) override {
    Reply r = send("GET", key, {}, {}, "");
    if (r.status == 200) return Object{std::move(r.body), r.etag};
    if (r.status == 404 && r.code != "ContainerNotFound") return std::nullopt;
    fail("read", key, r);
  }

  std::vector<ListedObject> list(const std::string& prefix) override {
    std::vector<ListedObject> out;
    std::string marker;
    do {
      Pairs query = {{"restype", "container"},
                     {"comp", "list"},
                     {"prefix", prefix_ + prefix},
                     {"maxresults", std::to_string(options_.list_page_size)}};
      if (!marker.empty()) query.emplace_back("marker", marker);
      Reply r = send("GET", "", query, {}, "");
      if (r.status != 200) fail("list", prefix, r);
      std::size_t end = 0;
      std::size_t pos = r.body.find("<Blobs>");
      const std::size_t blobs_end = r.body.find("</Blobs>");
      while (pos != std::string::npos) {
        std::size_t blob_end = 0;
        auto blob = xml_element(r.body, "Blob", pos, blobs_end, &blob_end);
        if (!blob) break;
        auto name = xml_element(*blob, "Name", 0, blob->size());
        auto etag = xml_element(*blob, "Etag", 0, blob->size());
        if (name) {
          std::string full = xml_unescape(*name);
          if (full.compare(0, prefix_.size(), prefix_) == 0)
            out.push_back({full.substr(prefix_.size()), etag ? quoted(xml_unescape(*etag)) : std::string()});
        }
        pos = blob_end;
      }
      auto next = xml_element(r.body, "NextMarker", 0, r.body.size(), &end);
      marker = next ? xml_unescape(*next) : std::string();
    } while (!marker.empty());
    std::sort(out.begin(), out.end(),
              [](const ListedObject& a, const ListedObject& b) { return a.key < b.key; });
    return out;
  }

  bool remove(const std::string& key) override {
    Reply r = send("DELETE", key, {}, {}, "");
    if (r.status == 202) return true;
    if (r.status == 404 && r.code != "ContainerNotFound") return r.maybe_applied;
    fail("remove", key, r);
  }

  bool create_append(const std::string& key) override {
    Reply r = send("PUT", key, {}, {{"if-none-match", "*"}, {"x-ms-blob-type", "AppendBlob"}}, "");
    if (r.status == 201) return true;
    if (r.status == 409 || r.status == 412) {
      if (!r.maybe_applied) return false;
      std::optional<std::string> now = get_range(key, 0);
      return now && now->empty();
    }
    fail("create", key, r);
  }

  std::uint64_t append(const std::string& key, std::string_view data,
                       std::uint64_t expected_length) override {
    // Append Block takes at most 4 MiB in this API version.
    constexpr std::size_t kMaxBlock = 4u << 20;
    std::uint64_t length = expected_length;
    for (std::size_t at = 0; at < data.size(); at += kMaxBlock) {
      const std::string_view block = data.substr(at, kMaxBlock);
      Reply r = send("PUT", key, {{"comp", "appendblock"}},
                     {{"x-ms-blob-condition-appendpos", std::to_string(length)}}, block);
      if (r.status != 201) {
        const bool moved = r.status == 412 && r.code == "AppendPositionConditionNotMet";
        if (!(moved && r.maybe_applied && appended_after_all(key, block, length))) {
          if (moved)
            throw StoreError(url_ + ": cannot append to '" + key + "': it is no longer " +
                             std::to_string(length) + " bytes long (another writer?)");
          fail("append to", key, r);
        }
      }
      length += block.size();
    }
    return length;
  }

  std::optional<std::string> get_range(const std::string& key, std::uint64_t offset) override {
    Reply r = send("GET", key, {}, {{"x-ms-range", "bytes=" + std::to_string(offset) + "-"}}, "");
    if (r.status == 200 || r.status == 206) return std::move(r.body);
    if (r.status == 416) return std::string();  // at or past the end (an empty blob has no range)
    if (r.status == 404 && r.code != "ContainerNotFound") return std::nullopt;
    fail("read", key, r);
  }

  bool has_leases() const override { return true; }

  std::optional<std::string> acquire_lease(const std::string& key, std::chrono::seconds duration) override {
    // A proposed id makes a retried acquire that had taken effect succeed again (same id).
    const std::string id = uuid();
    Reply r = send("PUT", key, {{"comp", "lease"}},
                   {{"x-ms-lease-action", "acquire"},
                    {"x-ms-lease-duration", std::to_string(duration.count() < 0 ? -1 : duration.count())},
                    {"x-ms-proposed-lease-id", id}},
                   "");
    if (r.status == 201) return r.header_lease_id.empty() ? id : r.header_lease_id;
    if (r.status == 409 && r.code == "LeaseAlreadyPresent") return std::nullopt;
    fail("lease", key, r);
  }

  bool renew_lease(const std::string& key, const std::string& lease_id) override {
    Reply r = send("PUT", key, {{"comp", "lease"}},
                   {{"x-ms-lease-action", "renew"}, {"x-ms-lease-id", lease_id}}, "");
    if (r.status == 200) return true;
    if (r.status == 409) return false;
    fail("renew the lease of", key, r);
  }

  void release_lease(const std::string& key, const std::string& lease_id) override {
    Reply r = send("PUT", key, {{"comp", "lease"}},
                   {{"x-ms-lease-action", "release"}, {"x-ms-lease-id", lease_id}}, "");
    if (r.status == 200 || r.status == 409) return;
    fail("release the lease of", key, r);
  }

 private:
  struct Reply {
    long status = 0;
    std::string code;  // x-ms-error-code
    std::string etag;
    std::string header_lease_id;
    std::string body;
    bool maybe_applied = false;  // an earlier attempt may have taken effect
    std::string transport_error;
    int attempts = 0;
    double seconds = 0;
  };

  std::string uuid() {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < 32; ++i) {
      if (i == 8 || i == 12 || i == 16 || i == 20) out.push_back('-');
      out.push_back(kHex[random_() & 0xF]);
    }
    return out;
  }

  // The blob's path in the URL, each part percent-encoded.
  std::string blob_path(const std::string& key) const {
    std::string path = endpoint_.path + "/" + HttpClient::escape(container_, false);
    if (!key.empty()) path += "/" + HttpClient::escape(prefix_ + key, true);
    return path;
  }

  std::string sign(const std::string& string_to_sign) const {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
         reinterpret_cast<const unsigned char*>(string_to_sign.data()), string_to_sign.size(), mac, &len);
    return base64_encode(mac, len);
  }

  Reply send(const std::string& method, const std::string& key, const Pairs& query, Pairs headers,
             std::string_view body) {
    const std::string path = blob_path(key);
    std::string url = endpoint_.base + path.substr(endpoint_.path.size());
    for (std::size_t i = 0; i < query.size(); ++i)
      url += (i == 0 ? "?" : "&") + query[i].first + "=" + HttpClient::escape(query[i].second, false);
    const bool has_body = method == "PUT";
    if (has_body && !body.empty()) headers.emplace_back("content-type", "application/octet-stream");
    headers.emplace_back("x-ms-version", kApiVersion);

    Reply reply;
    const auto start = Clock::now();
    auto backoff = options_.first_backoff;
    for (;;) {
      ++reply.attempts;
      Pairs signed_headers = headers;
      signed_headers.emplace_back("x-ms-date", http_date());
      if (has_body) signed_headers.emplace_back("content-length", std::to_string(body.size()));
      const std::string to_sign = azure_string_to_sign(method, signed_headers, "/" + account_ + path, query);
      std::vector<std::string> lines;
      for (const auto& [name, value] : signed_headers)
        if (name != "content-length") lines.push_back(name + ": " + value);
      if (has_body && body.empty()) lines.push_back("Content-Type:");  // not curl's form type
      lines.push_back("Authorization: SharedKey " + account_ + ":" + sign(to_sign));
      HttpResult result = http_.request(method, url, lines, body);

      bool retry = false;
      if (result.failure == HttpFailure::kNone) {
        const HttpResponse& res = result.response;
        reply.status = res.status;
        reply.code = res.header("x-ms-error-code");
        reply.etag = res.header("etag");
        reply.header_lease_id = res.header("x-ms-lease-id");
        reply.body = res.body;
        reply.transport_error.clear();
        retry = is_retryable_status(res.status);
        if (retry && method != "GET") reply.maybe_applied = true;
      } else if (result.failure == HttpFailure::kFatal) {
        reply.status = 0;
        reply.transport_error = result.error;
        break;
      } else {
        reply.status = 0;
        reply.transport_error = result.error;
        retry = true;
        if (result.failure == HttpFailure::kAmbiguous && method != "GET") reply.maybe_applied = true;
      }
      if (!retry) break;
      // Equal jitter: half the back-off fixed, half random, so that participants spread out.
      auto half = backoff / 2;
      auto sleep = half + std::chrono::milliseconds(std::uniform_int_distribution<long long>(
                              0, std::max<long long>(0, half.count()))(random_));
      if (Clock::now() - start + sleep > options_.retry_budget) break;
      std::this_thread::sleep_for(sleep);
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::milliseconds(8000));
    }
    reply.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return reply;
  }

  // A conditional write that may have been applied by an earlier attempt: ours when the blob
  // holds exactly our bytes.
  std::optional<std::string> ours_after_all(const std::string& key, std::string_view data) {
    std::optional<Object> now = get(key);
    if (now && now->data == data) return now->etag;
    return std::nullopt;
  }

  // An append that may have been applied by an earlier attempt: the blob ends with our block
  // right after the length we expected.
  bool appended_after_all(const std::string& key, std::string_view block, std::uint64_t expected_length) {
    std::optional<std::string> tail = get_range(key, expected_length);
    return tail && *tail == block;
  }

  [[noreturn]] void fail(const char* what, const std::string& key, const Reply& r) const {
    std::string head = url_ + ": cannot " + what + (key.empty() ? std::string() : " '" + key + "'") + ": ";
    std::string tries = r.attempts > 1 ? " (" + std::to_string(r.attempts) + " tries in " +
                                             std::to_string(static_cast<int>(r.seconds)) + " s)"
                                       : "";
    if (r.status == 0)
      throw StoreError(head + "cannot reach " + endpoint_.base + ": " + r.transport_error + tries);
    const std::string status = "HTTP " + std::to_string(r.status) + (r.code.empty() ? "" : " " + r.code);
    if (r.code == "RequestTimeTooSkewed" || r.body.find("Request date header too old") != std::string::npos ||
        r.body.find("RequestTimeTooSkewed") != std::string::npos)
      throw StoreError(head + status +
                       ": this machine's clock is more than 15 minutes off the server's "
                       "(RequestTimeTooSkewed); set the clock right");
    // Azurite answers a bad signature with AuthorizationFailure, Azure with AuthenticationFailed;
    // both say that the server failed to authenticate the request.
    if (r.code == "AuthenticationFailed" ||
        r.body.find("failed to authenticate the request") != std::string::npos)
      throw UsageError(head + status + ": the key is not the account '" + account_ +
                       "''s (check AZURE_STORAGE_KEY or AZURE_STORAGE_CONNECTION_STRING)");
    if (r.status == 403)
      throw UsageError(head + status + ": permission denied for account '" + account_ + "'");
    if (r.code == "ContainerNotFound")
      throw UsageError(head + status + ": container '" + container_ + "' does not exist");
    if (r.code == "AccountIsDisabled" || r.code == "InsufficientAccountPermissions")
      throw UsageError(head + status);
    throw StoreError(head + status + tries);
  }

  std::string url_, account_, container_, prefix_;
  Endpoint endpoint_;
  std::string key_;  // decoded; never printed
  StoreOptions options_;
  HttpClient http_;
  std::mt19937_64 random_;
};

}  // namespace

std::string azure_string_to_sign(const std::string& method, const Pairs& headers, const std::string& resource,
                                 Pairs query) {
  auto value = [&](const char* name) {
    for (const auto& [n, v] : headers)
      if (n == name) return v;
    return std::string();
  };
  std::string length = value("content-length");
  if (length == "0") length.clear();  // since version 2015-02-21 an empty body signs as ""
  std::string s = method + "\n" + value("content-encoding") + "\n" + value("content-language") + "\n" +
                  length + "\n" + value("content-md5") + "\n" + value("content-type") + "\n" + value("date") +
                  "\n" + value("if-modified-since") + "\n" + value("if-match") + "\n" +
                  value("if-none-match") + "\n" + value("if-unmodified-since") + "\n" + value("range") + "\n";
  Pairs ms;
  for (const auto& [n, v] : headers)
    if (n.compare(0, 5, "x-ms-") == 0) ms.emplace_back(lower(n), v);
  std::sort(ms.begin(), ms.end());
  for (const auto& [n, v] : ms) s += n + ":" + v + "\n";
  s += resource;
  for (auto& q : query) q.first = lower(q.first);
  std::sort(query.begin(), query.end());
  for (const auto& [n, v] : query) s += "\n" + n + ":" + v;
  return s;
}

std::string AzureUrl::str() const {
  return "az://" + account + "/" + container + (prefix.empty() ? "" : "/" + prefix);
}

AzureUrl parse_azure_url(std::string_view url_text) {
  const std::string url(url_text);
  auto bad = [&](const std::string& why) { return UsageError("store '" + url + "': " + why); };
  constexpr std::string_view kScheme = "az://";
  if (url_text.substr(0, kScheme.size()) != kScheme) throw bad("expected az://ACCOUNT/CONTAINER[/PREFIX]");
  std::string rest(url_text.substr(kScheme.size()));
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  std::size_t slash = rest.find('/');
  if (slash == std::string::npos || slash == 0) throw bad("expected az://ACCOUNT/CONTAINER[/PREFIX]");
  AzureUrl out;
  out.account = rest.substr(0, slash);
  std::string after = rest.substr(slash + 1);
  std::size_t slash2 = after.find('/');
  out.container = after.substr(0, slash2);
  out.prefix = slash2 == std::string::npos ? std::string() : after.substr(slash2 + 1);
  for (unsigned char c : out.account)
    if (!(std::isalnum(c))) throw bad("the account name '" + out.account + "' must be letters and digits");
  const std::string& container = out.container;
  if (container.size() < 3 || container.size() > 63 || container.front() == '-' || container.back() == '-' ||
      container.find("--") != std::string::npos ||
      !std::all_of(container.begin(), container.end(),
                   [](unsigned char c) { return (std::islower(c) || std::isdigit(c) || c == '-'); }))
    throw bad("the container name '" + container +
              "' must be 3 to 63 lowercase letters, digits and single dashes");
  if (out.prefix.find("//") != std::string::npos || (!out.prefix.empty() && out.prefix.front() == '/'))
    throw bad("empty part in the prefix '" + out.prefix + "'");
  return out;
}

std::unique_ptr<ObjectStore> open_azure_store(std::string_view url_text, const StoreOptions& options) {
  const std::string url(url_text);
  auto bad = [&](const std::string& why) { return UsageError("store '" + url + "': " + why); };
  const AzureUrl where = parse_azure_url(url_text);
  const std::string& account = where.account;
  const std::string prefix = where.prefix.empty() ? std::string() : where.prefix + "/";

  const std::map<std::string, std::string> cs =
      parse_connection_string(env("AZURE_STORAGE_CONNECTION_STRING"));
  auto cs_value = [&](const char* name) {
    auto it = cs.find(name);
    return it == cs.end() ? std::string() : it->second;
  };
  if (!cs_value("accountname").empty() && cs_value("accountname") != account)
    throw bad("AZURE_STORAGE_CONNECTION_STRING is for account '" + cs_value("accountname") + "', not '" +
              account + "'");
  std::string key_text = env("AZURE_STORAGE_KEY");
  if (key_text.empty()) key_text = cs_value("accountkey");
  if (key_text.empty())
    throw bad("no key: set AZURE_STORAGE_KEY (the account's access key) or AZURE_STORAGE_CONNECTION_STRING");
  std::optional<std::string> key = base64_decode(key_text);
  if (!key)
    throw bad("the account key is not base64 (check AZURE_STORAGE_KEY or AZURE_STORAGE_CONNECTION_STRING)");

  std::string base = env("AZURE_STORAGE_BLOB_ENDPOINT");
  if (base.empty()) base = cs_value("blobendpoint");
  if (base.empty()) {
    std::string suffix = cs_value("endpointsuffix");
    base = "https://" + account + ".blob." + (suffix.empty() ? "core.windows.net" : suffix);
  }
  while (!base.empty() && base.back() == '/') base.pop_back();
  Endpoint endpoint;
  std::size_t scheme_end = base.find("://");
  if (scheme_end == std::string::npos ||
      (base.substr(0, scheme_end) != "https" && base.substr(0, scheme_end) != "http"))
    throw bad("the blob endpoint '" + base + "' is not an http:// or https:// URL");
  std::size_t path_start = base.find('/', scheme_end + 3);
  endpoint.base = base;
  endpoint.path = path_start == std::string::npos ? std::string() : base.substr(path_start);

  auto store = std::make_unique<AzureStore>(where.str(), account, where.container, prefix, endpoint,
                                            std::move(*key), options);
  if (options.create_container) store->create_container();
  return store;
}

}  // namespace mpmux::store
