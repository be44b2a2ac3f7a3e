// A stand-in for the Hugging Face hub on 127.0.0.1: the model-info API, the resolve endpoint with
// the hub's headers (X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size) and, for LFS files, a 302
// to a second server (the "CDN", another port) that serves the bytes with Range support. Every
// request is logged so tests can count them; faults can be injected (dropped connections,
// corrupt content, hostile names).
#pragma once

#include <httplib.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace meshlm::hub::test {

struct MockFile {
  MockFile() = default;
  MockFile(std::string data, bool is_lfs = false) : content(std::move(data)), lfs(is_lfs) {}

  std::string content;
  bool lfs = false;
  bool corrupt = false;                   // the CDN serves bytes that do not match the sha256
  std::string etag_override;              // sent verbatim as (X-Linked-)ETag when set
  std::optional<uint64_t> size_override;  // sent as X-Linked-Size when set
};

struct MockRepo {
  std::string commit;                       // 40 hex
  std::map<std::string, std::string> refs;  // revision -> commit ("main" is added)
  std::map<std::string, MockFile> files;
  std::vector<std::string> extra_siblings;  // listed by the API, not served
  std::string token;                        // private: 401 without it, 401 with a wrong one
  bool gated = false;                       // files need `token`: 401 without, 403 wrong
};

struct MockRequest {
  std::string server;  // "hub" or "cdn"
  std::string method;
  std::string path;
  std::string range;
  std::string authorization;
};

class MockHub {
 public:
  MockHub();
  ~MockHub();
  MockHub(const MockHub&) = delete;
  MockHub& operator=(const MockHub&) = delete;

  std::string endpoint() const;  // http://127.0.0.1:PORT
  void set_repo(const std::string& id, MockRepo repo);
  // The CDN closes the connection after `after_bytes` body bytes of `file`, `times` times.
  void drop_connection(const std::string& file, size_t after_bytes, int times);

  std::vector<MockRequest> requests() const;
  // Requests to `server` ("hub"/"cdn", or "" for both) with `method` ("" for any) whose path
  // contains `path_part`.
  size_t count(const std::string& server, const std::string& method,
               const std::string& path_part) const;
  void clear_requests();

  static std::string sha256_hex(const std::string& data);
  static std::string git_sha1_hex(const std::string& data);  // the ETag of a non-LFS file

 private:
  void log(const std::string& server, const httplib::Request& req);
  void handle_info(const httplib::Request& req, httplib::Response& res);
  void handle_resolve(const httplib::Request& req, httplib::Response& res);
  void handle_cdn(const httplib::Request& req, httplib::Response& res);
  // 0 when allowed, else the status to answer with.
  int check_auth(const MockRepo& repo, const httplib::Request& req, bool file) const;
  const MockRepo* find_repo(const std::string& id) const;

  mutable std::mutex mu_;
  std::map<std::string, MockRepo> repos_;
  struct Drop {
    size_t after = 0;
    int times = 0;
  };
  std::map<std::string, Drop> drops_;  // by file name
  std::vector<MockRequest> log_;
  httplib::Server hub_, cdn_;
  int hub_port_ = 0, cdn_port_ = 0;
  std::thread hub_thread_, cdn_thread_;
};

}  // namespace meshlm::hub::test
