#include "hub/http_client.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>

#include "core/log.h"

namespace meshlm::hub {

namespace {

constexpr int kMaxRedirects = 10;
constexpr size_t kErrorBodyLimit = 64 << 10;

bool is_redirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void copy_headers(const httplib::Headers& from, HttpResponse& to) {
  to.headers.clear();
  for (const auto& [k, v] : from) to.headers.emplace(lower(k), v);
}

std::string describe(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "could not connect";
    case httplib::Error::ConnectionTimeout:
      return "connection timed out";
    case httplib::Error::Read:
      return "connection lost while reading";
    case httplib::Error::Write:
      return "connection lost while writing";
    case httplib::Error::SSLConnection:
      return "TLS handshake failed";
    case httplib::Error::SSLLoadingCerts:
      return "could not load the system's CA certificates";
    case httplib::Error::SSLServerVerification:
      return "TLS certificate verification failed";
    default:
      return httplib::to_string(e);
  }
}

bool is_absolute_url(const std::string& s) {
  return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0;
}

}  // namespace

Url parse_url(const std::string& url) {
  size_t scheme_end = url.find("://");
  std::string scheme = scheme_end == std::string::npos ? "" : lower(url.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https")
    throw Error("hub", "unsupported URL '" + url + "' (need http:// or https://)");
  size_t host_start = scheme_end + 3;
  size_t path_start = url.find_first_of("/?#", host_start);
  std::string authority = url.substr(
      host_start, path_start == std::string::npos ? std::string::npos : path_start - host_start);
  if (authority.empty() || authority.find('@') != std::string::npos ||
      authority.find_first_of(" \t\r\n\\") != std::string::npos)
    throw Error("hub", "unsupported URL '" + url + "'");
  Url u;
  u.origin = scheme + "://" + authority;
  u.target = path_start == std::string::npos ? "/" : url.substr(path_start);
  if (u.target[0] != '/') u.target = "/" + u.target;
  size_t hash = u.target.find('#');
  if (hash != std::string::npos) u.target.resize(hash);
  if (u.target.find_first_of(" \r\n") != std::string::npos)
    throw Error("hub", "unsupported URL '" + url + "'");
  return u;
}

std::string resolve_location(const Url& base, const std::string& location) {
  if (is_absolute_url(location)) return location;
  if (location.rfind("//", 0) == 0)
    return base.origin.substr(0, base.origin.find("://") + 1) + location;
  if (!location.empty() && location[0] == '/') return base.origin + location;
  std::string dir = base.target.substr(0, base.target.find('?'));
  dir = dir.substr(0, dir.rfind('/') + 1);
  return base.origin + dir + location;
}

std::string url_quote(const std::string& s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string HttpResponse::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

bool HttpResponse::has_header(const std::string& lower_name) const {
  return headers.count(lower_name) > 0;
}

HttpClient::HttpClient(const std::string& endpoint, std::string token, int connect_timeout_s,
                       int read_timeout_s)
    : endpoint_origin_(parse_url(endpoint).origin),
      token_(std::move(token)),
      connect_timeout_s_(connect_timeout_s),
      read_timeout_s_(read_timeout_s) {}

HttpClient::~HttpClient() = default;

httplib::Client& HttpClient::client_for(const std::string& origin) {
  auto it = clients_.find(origin);
  if (it != clients_.end()) return *it->second;
  std::unique_ptr<httplib::Client> cli;
  try {
    cli = std::make_unique<httplib::Client>(origin);
  } catch (const std::exception& e) {
    throw Error("hub", "unsupported URL '" + origin + "': " + e.what());
  }
  cli->set_connection_timeout(connect_timeout_s_, 0);
  cli->set_read_timeout(read_timeout_s_, 0);
  cli->set_write_timeout(read_timeout_s_, 0);
  cli->set_follow_location(false);
  cli->set_url_encode(false);  // our paths and the CDN's signed URLs are already encoded
  cli->set_decompress(false);  // identity encoding: bytes on the wire are the file's bytes
  cli->set_keep_alive(true);
  return *clients_.emplace(origin, std::move(cli)).first->second;
}

std::multimap<std::string, std::string> HttpClient::request_headers(
    const std::string& origin, const std::string& range) const {
  std::multimap<std::string, std::string> h;
  h.emplace("User-Agent", std::string("meshlm/") + MESHLM_VERSION_STRING + "; hf_hub-compatible");
  h.emplace("Accept-Encoding", "identity");
  if (!range.empty()) h.emplace("Range", range);
  // The token goes to the hub only; redirect targets (CDN, other hosts) never see it.
  if (!token_.empty() && origin == endpoint_origin_) h.emplace("Authorization", "Bearer " + token_);
  return h;
}

HttpResponse HttpClient::head(const std::string& url) {
  std::string current = url;
  for (int hop = 0; hop <= kMaxRedirects; ++hop) {
    Url u = parse_url(current);
    httplib::Headers hdrs;
    for (const auto& [k, v] : request_headers(u.origin, "")) hdrs.emplace(k, v);
    auto res = client_for(u.origin).Head(u.target, hdrs);
    if (!res) throw NetworkError("cannot reach " + u.origin + ": " + describe(res.error()));
    HttpResponse resp;
    resp.status = res->status;
    resp.url = current;
    copy_headers(res->headers, resp);
    std::string loc = resp.header("location");
    if (is_redirect(resp.status) && !loc.empty() && !is_absolute_url(loc) &&
        loc.rfind("//", 0) != 0) {
      current = resolve_location(u, loc);
      continue;
    }
    return resp;
  }
  throw Error("hub", "too many redirects from " + url);
}

HttpResponse HttpClient::get(const std::string& url, size_t max_body) {
  std::string body;
  bool too_big = false;
  HttpResponse resp = get_stream(
      url, "", [](const HttpResponse&) { return true; },
      [&](const char* data, size_t n) {
        if (body.size() + n > max_body) {
          too_big = true;
          return false;
        }
        body.append(data, n);
        return true;
      });
  if (too_big) throw Error("hub", "answer from " + url + " is larger than expected");
  if (resp.status >= 200 && resp.status < 300) resp.body = std::move(body);
  return resp;
}

HttpResponse HttpClient::get_stream(const std::string& url, const std::string& range_header,
                                    const std::function<bool(const HttpResponse&)>& on_response,
                                    const std::function<bool(const char*, size_t)>& on_data) {
  std::string current = url;
  for (int hop = 0; hop <= kMaxRedirects; ++hop) {
    Url u = parse_url(current);
    httplib::Headers hdrs;
    for (const auto& [k, v] : request_headers(u.origin, range_header)) hdrs.emplace(k, v);
    HttpResponse resp;
    resp.url = current;
    bool take_body = false;
    bool stopped_by_caller = false;
    auto res = client_for(u.origin).Get(
        u.target, hdrs,
        [&](const httplib::Response& r) {
          resp.status = r.status;
          copy_headers(r.headers, resp);
          if (r.status >= 200 && r.status < 300) {
            take_body = on_response(resp);
            stopped_by_caller = !take_body;
            return take_body;
          }
          return true;  // redirects and errors: keep the (small) body for the message
        },
        [&](const char* data, size_t n) {
          if (take_body) {
            if (!on_data(data, n)) {
              stopped_by_caller = true;
              return false;
            }
            return true;
          }
          if (resp.body.size() < kErrorBodyLimit)
            resp.body.append(data, std::min(n, kErrorBodyLimit - resp.body.size()));
          return true;
        });
    if (!res) {
      if (stopped_by_caller) return resp;
      throw NetworkError("cannot reach " + u.origin + ": " + describe(res.error()));
    }
    std::string loc = resp.header("location");
    if (is_redirect(resp.status) && !loc.empty()) {
      std::string next = resolve_location(u, loc);
      log::debug("hub: redirect {} -> {}", current, parse_url(next).origin);
      current = next;
      continue;
    }
    return resp;
  }
  throw Error("hub", "too many redirects from " + url);
}

}  // namespace meshlm::hub
