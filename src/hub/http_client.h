// A small HTTP(S) client for the hub: one keep-alive connection per origin, redirects followed by
// hand (the hub sends LFS files to a CDN on another host), the token sent to the hub's own origin
// only, never to the CDN.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/error.h"

namespace httplib {
class Client;
}

namespace meshlm::hub {

// The hub could not be reached or the connection broke (as opposed to an HTTP error status).
class NetworkError : public Error {
 public:
  explicit NetworkError(const std::string& message) : Error("hub", message) {}
};

struct Url {
  std::string origin;  // "https://huggingface.co" or "http://127.0.0.1:8080"
  std::string target;  // "/path?query", already percent-encoded
};
// Throws Error("hub", ...) on anything but http(s)://host[:port][/...].
Url parse_url(const std::string& url);
// `location` (absolute or relative to `base`) as an absolute URL.
std::string resolve_location(const Url& base, const std::string& location);
// Percent-encoding of a path component; '/' kept when keep_slash.
std::string url_quote(const std::string& s, bool keep_slash);

struct HttpResponse {
  int status = 0;
  std::multimap<std::string, std::string> headers;  // names lowercased
  std::string body;  // small bodies only (API answers, error pages), truncated at the limit
  std::string url;   // the URL that answered (after redirects)

  std::string header(const std::string& lower_name) const;
  bool has_header(const std::string& lower_name) const;
};

class HttpClient {
 public:
  HttpClient(const std::string& endpoint, std::string token, int connect_timeout_s,
             int read_timeout_s);
  ~HttpClient();

  // GET with the body kept in memory (up to max_body bytes), following every redirect.
  HttpResponse get(const std::string& url, size_t max_body = 64 << 20);
  // HEAD; follows only relative redirects (a renamed repository), so that the hub's own headers
  // of an LFS file (X-Linked-Etag, X-Linked-Size, Location) are what comes back.
  HttpResponse head(const std::string& url);
  // Streaming GET following every redirect. on_response sees the final status and headers before
  // any body byte and returns whether to take the body; on_data gets it (return false to stop).
  // Non-2xx bodies are kept in the response (small) instead.
  HttpResponse get_stream(const std::string& url, const std::string& range_header,
                          const std::function<bool(const HttpResponse&)>& on_response,
                          const std::function<bool(const char*, size_t)>& on_data);

 private:
  httplib::Client& client_for(const std::string& origin);
  std::multimap<std::string, std::string> request_headers(const std::string& origin,
                                                          const std::string& range) const;

  std::string endpoint_origin_;
  std::string token_;
  int connect_timeout_s_;
  int read_timeout_s_;
  std::map<std::string, std::unique_ptr<httplib::Client>> clients_;
};

}  // namespace meshlm::hub
