#include "mock_hub.h"

#include <openssl/evp.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/hex.h"

namespace meshlm::hub::test {

namespace {

std::string digest(const EVP_MD* md, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  return to_hex(std::span<const uint8_t>(out, len));
}

int start(httplib::Server& s, std::thread& th) {
  int port = s.bind_to_any_port("127.0.0.1");
  if (port <= 0) throw std::runtime_error("mock hub: cannot bind");
  th = std::thread([&s] { s.listen_after_bind(); });
  while (!s.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return port;
}

}  // namespace

std::string MockHub::sha256_hex(const std::string& data) {
  return digest(EVP_sha256(), data);
}

std::string MockHub::git_sha1_hex(const std::string& data) {
  return digest(EVP_sha1(), "blob " + std::to_string(data.size()) + '\0' + data);
}

MockHub::MockHub() {
  hub_.Get(R"(/api/models/([^/]+)/([^/]+)/revision/(.+))",
           [this](const httplib::Request& req, httplib::Response& res) { handle_info(req, res); });
  hub_.Get(
      R"(/([^/]+)/([^/]+)/resolve/([^/]+)/(.+))",
      [this](const httplib::Request& req, httplib::Response& res) { handle_resolve(req, res); });
  cdn_.Get(R"(/cdn/([^/]+)/([^/]+)/([^/]+)/(.+))",
           [this](const httplib::Request& req, httplib::Response& res) { handle_cdn(req, res); });
  hub_port_ = start(hub_, hub_thread_);
  cdn_port_ = start(cdn_, cdn_thread_);
}

MockHub::~MockHub() {
  hub_.stop();
  cdn_.stop();
  hub_thread_.join();
  cdn_thread_.join();
}

std::string MockHub::endpoint() const {
  return "http://127.0.0.1:" + std::to_string(hub_port_);
}

void MockHub::set_repo(const std::string& id, MockRepo repo) {
  std::lock_guard<std::mutex> lk(mu_);
  repo.refs.emplace("main", repo.commit);
  repos_[id] = std::move(repo);
}

void MockHub::drop_connection(const std::string& file, size_t after_bytes, int times) {
  std::lock_guard<std::mutex> lk(mu_);
  drops_[file] = Drop{after_bytes, times};
}

std::vector<MockRequest> MockHub::requests() const {
  std::lock_guard<std::mutex> lk(mu_);
  return log_;
}

size_t MockHub::count(const std::string& server, const std::string& method,
                      const std::string& path_part) const {
  std::lock_guard<std::mutex> lk(mu_);
  size_t n = 0;
  for (const auto& r : log_)
    if ((server.empty() || r.server == server) && (method.empty() || r.method == method) &&
        r.path.find(path_part) != std::string::npos)
      ++n;
  return n;
}

void MockHub::clear_requests() {
  std::lock_guard<std::mutex> lk(mu_);
  log_.clear();
}

void MockHub::log(const std::string& server, const httplib::Request& req) {
  std::lock_guard<std::mutex> lk(mu_);
  log_.push_back({server, req.method, req.path, req.get_header_value("Range"),
                  req.get_header_value("Authorization")});
}

const MockRepo* MockHub::find_repo(const std::string& id) const {
  auto it = repos_.find(id);
  return it == repos_.end() ? nullptr : &it->second;
}

int MockHub::check_auth(const MockRepo& repo, const httplib::Request& req, bool file) const {
  if (repo.token.empty() || (repo.gated && !file)) return 0;
  std::string auth = req.get_header_value("Authorization");
  if (auth == "Bearer " + repo.token) return 0;
  if (repo.gated) return auth.empty() ? 401 : 403;
  return 401;
}

void MockHub::handle_info(const httplib::Request& req, httplib::Response& res) {
  log("hub", req);  // on arrival: a logger would run after the client already has the answer
  std::lock_guard<std::mutex> lk(mu_);
  std::string id = req.matches[1].str() + "/" + req.matches[2].str();
  std::string rev = req.matches[3];
  const MockRepo* repo = find_repo(id);
  if (!repo || check_auth(*repo, req, false)) {
    res.status = 401;  // the real hub hides whether a private repository exists
    res.set_header("X-Error-Code", "RepoNotFound");
    res.set_header("X-Error-Message", "Invalid username or password.");
    return;
  }
  auto ref = repo->refs.find(rev);
  std::string commit = ref != repo->refs.end() ? ref->second : (rev == repo->commit ? rev : "");
  if (commit.empty()) {
    res.status = 404;
    res.set_header("X-Error-Code", "RevisionNotFound");
    res.set_header("X-Error-Message", "Invalid rev id: " + rev);
    return;
  }
  nlohmann::json j;
  j["id"] = id;
  j["sha"] = commit;
  j["siblings"] = nlohmann::json::array();
  for (const auto& [name, f] : repo->files) j["siblings"].push_back({{"rfilename", name}});
  for (const auto& name : repo->extra_siblings) j["siblings"].push_back({{"rfilename", name}});
  res.set_content(j.dump(), "application/json");
}

void MockHub::handle_resolve(const httplib::Request& req, httplib::Response& res) {
  log("hub", req);
  std::lock_guard<std::mutex> lk(mu_);
  std::string id = req.matches[1].str() + "/" + req.matches[2].str();
  std::string rev = req.matches[3], name = req.matches[4];
  const MockRepo* repo = find_repo(id);
  if (!repo) {
    res.status = 401;
    res.set_header("X-Error-Code", "RepoNotFound");
    return;
  }
  if (int status = check_auth(*repo, req, true)) {
    res.status = status;
    if (repo->gated) res.set_header("X-Error-Code", "GatedRepo");
    return;
  }
  auto ref = repo->refs.find(rev);
  std::string commit = ref != repo->refs.end() ? ref->second : rev;
  if (commit != repo->commit) {
    res.status = 404;
    res.set_header("X-Error-Code", "RevisionNotFound");
    return;
  }
  auto it = repo->files.find(name);
  if (it == repo->files.end()) {
    res.status = 404;
    res.set_header("X-Error-Code", "EntryNotFound");
    return;
  }
  const MockFile& f = it->second;
  res.set_header("X-Repo-Commit", commit);
  if (!f.lfs) {
    res.set_header(
        "ETag", f.etag_override.empty() ? "\"" + git_sha1_hex(f.content) + "\"" : f.etag_override);
    res.set_content(f.content, "application/octet-stream");
    return;
  }
  std::string sha = sha256_hex(f.content);
  res.status = 302;
  res.set_header("ETag", "\"" + git_sha1_hex(sha) + "\"");  // the pointer file's, not the data's
  res.set_header("X-Linked-Etag", f.etag_override.empty() ? "\"" + sha + "\"" : f.etag_override);
  res.set_header("X-Linked-Size",
                 std::to_string(f.size_override ? *f.size_override : f.content.size()));
  res.set_header("Location", "http://127.0.0.1:" + std::to_string(cdn_port_) + "/cdn/" + id + "/" +
                                 commit + "/" + name + "?X-Amz-Signature=abc%2Bdef&Expires=1");
}

void MockHub::handle_cdn(const httplib::Request& req, httplib::Response& res) {
  log("cdn", req);
  std::lock_guard<std::mutex> lk(mu_);
  std::string id = req.matches[1].str() + "/" + req.matches[2].str();
  std::string name = req.matches[4];
  const MockRepo* repo = find_repo(id);
  auto it = repo ? repo->files.find(name) : std::map<std::string, MockFile>::const_iterator();
  if (!repo || it == repo->files.end() || !req.has_param("X-Amz-Signature")) {
    res.status = 403;
    return;
  }
  auto body = std::make_shared<std::string>(it->second.content);
  if (it->second.corrupt && !body->empty()) (*body)[body->size() / 2] ^= 0x5a;
  size_t drop_at = SIZE_MAX;
  auto d = drops_.find(name);
  if (d != drops_.end() && d->second.times > 0 && req.method == "GET") {
    --d->second.times;
    drop_at = d->second.after;
  }
  auto sent = std::make_shared<size_t>(0);
  res.set_content_provider(
      body->size(), "application/octet-stream",
      [body, drop_at, sent](size_t offset, size_t length, httplib::DataSink& sink) {
        size_t n = std::min<size_t>(length, 4096);
        if (*sent + n > drop_at) n = drop_at - *sent;
        if (n == 0) return false;  // closes the connection mid-body
        sink.write(body->data() + offset, n);
        *sent += n;
        return true;
      });
}

}  // namespace meshlm::hub::test
