// pull(): list the repository at a revision, pick the files a model needs, fetch what the cache
// lacks, link the snapshot, record the ref. The cache is the one huggingface_hub uses.
#include "hub/hub.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/byte_count.h"
#include "core/json_file.h"
#include "core/log.h"
#include "hub/cache_layout.h"
#include "hub/file_selection.h"
#include "hub/http_client.h"
#include "hub/progress.h"
#include "hub/transfer.h"

namespace fs = std::filesystem;

namespace meshlm::hub {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string expand_home(const std::string& p) {
  if (p.empty() || p[0] != '~') return p;
  std::string home = env("HOME");
  return home.empty() ? p : home + p.substr(1);
}

bool truthy(std::string v) {
  for (char& c : v) c = char(std::tolower(static_cast<unsigned char>(c)));
  return v == "1" || v == "on" || v == "yes" || v == "true";
}

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(0, s.find_first_not_of(ws));
  s.erase(s.find_last_not_of(ws) + 1);
  return s;
}

std::string hf_home() {
  std::string home = env("HF_HOME");
  if (!home.empty()) return expand_home(home);
  std::string xdg = env("XDG_CACHE_HOME");
  return (xdg.empty() ? expand_home("~/.cache") : expand_home(xdg)) + "/huggingface";
}

struct RepoInfo {
  std::string commit;
  std::vector<std::string> siblings;
};

RepoInfo fetch_repo_info(HttpClient& http, const HubContext& ctx) {
  std::string url =
      ctx.endpoint + "/api/models/" + ctx.repo + "/revision/" + url_quote(ctx.revision, false);
  HttpResponse r = http.get(url);
  if (r.status != 200) throw_for_status(r, ctx, "the file list of " + ctx.repo);
  RepoInfo info;
  try {
    auto j = nlohmann::json::parse(r.body);
    info.commit = j.at("sha").get<std::string>();
    for (const auto& s : j.at("siblings")) {
      std::string name = s.at("rfilename").get<std::string>();
      validate_repo_file_name(name, "the hub's file list for " + ctx.repo);
      info.siblings.push_back(std::move(name));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error("hub", "unexpected answer from " + url + ": " + e.what());
  }
  if (!is_commit_sha(info.commit))
    throw Error("hub", "the hub sent an invalid commit sha for " + ctx.repo);
  return info;
}

// The files of a cached snapshot that make a loadable model, or why not.
std::vector<std::string> cached_model_files(const fs::path& snap, std::string& missing) {
  std::vector<std::string> files;
  auto have = [&](const std::string& f) { return fs::exists(snap / f); };  // follows the link
  if (!have("config.json")) {
    missing = "config.json";
    return {};
  }
  for (const auto& e : fs::directory_iterator(snap))
    if (fs::exists(e.path())) files.push_back(e.path().filename().string());
  if (have(kIndexFile)) {
    std::set<std::string> all(files.begin(), files.end());
    nlohmann::json index = read_json_file((snap / kIndexFile).string(), "hub");
    for (const auto& shard : index.value("weight_map", nlohmann::json::object()))
      if (shard.is_string() && !have(shard.get<std::string>())) {
        missing = shard.get<std::string>();
        return {};
      }
  } else if (std::none_of(files.begin(), files.end(), [](const std::string& f) {
               return f.size() > 12 && f.compare(f.size() - 12, 12, ".safetensors") == 0;
             })) {
    missing = "*.safetensors";
    return {};
  }
  std::sort(files.begin(), files.end());
  return files;
}

// `repo` at `revision` from the cache alone; throws when it is not there complete.
PullResult from_cache(const RepoCache& cache, const std::string& repo, const std::string& revision,
                      const std::string& why) {
  auto commit = cache.cached_commit(revision);
  if (!commit || !fs::is_directory(cache.snapshot_dir(*commit)))
    throw Error("hub", repo + " (revision '" + revision + "') is not in the cache '" +
                           cache.dir().parent_path().string() + "'" + why);
  PullResult res;
  res.commit = *commit;
  res.snapshot_dir = fs::absolute(cache.snapshot_dir(*commit)).string();
  std::string missing;
  res.files = cached_model_files(res.snapshot_dir, missing);
  if (res.files.empty())
    throw Error("hub", "the cached snapshot " + res.snapshot_dir + " is incomplete (no " + missing +
                           ")" + why);
  res.used_cache_only = true;
  return res;
}

class Puller {
 public:
  Puller(const std::string& repo, const PullOptions& opts, const RepoCache& cache, HttpClient& http,
         const HubContext& ctx, const std::string& commit)
      : repo_(repo), opts_(opts), cache_(cache), http_(http), ctx_(ctx), commit_(commit) {}

  // Makes every file in `files` present in the snapshot; only missing blobs are downloaded.
  void ensure(const std::vector<std::string>& files, ProgressMode mode) {
    std::vector<FileMeta> todo;
    uint64_t total = 0;
    for (const auto& f : files) {
      if (fs::exists(cache_.snapshot_file(commit_, f))) continue;  // link and blob both there
      FileMeta m = fetch_file_meta(http_, resolve_url(f), f, ctx_);
      if (!m.commit.empty() && m.commit != commit_)
        log::warn("hub: {} resolved to commit {} instead of {}", f, m.commit, commit_);
      if (fs::exists(cache_.blob_path(m.blob))) {  // same content under another snapshot
        cache_.link_snapshot_file(commit_, f, m.blob);
        continue;
      }
      total += m.size.value_or(0);
      todo.push_back(std::move(m));
    }
    if (todo.empty()) return;
    DownloadProgress progress(mode, total, int(todo.size()));
    for (const auto& m : todo) {
      progress.start_file(m.file);
      fs::path blob = cache_.blob_path(m.blob);
      FileLock lock(cache_.lock_path(m.blob));  // another process may be fetching it too
      if (!fs::exists(blob)) {
        bytes_ += download_blob(http_, resolve_url(m.file), m, blob, ctx_, opts_, progress);
        ++files_;
      } else {
        progress.add_existing(m.size.value_or(0));
      }
      cache_.link_snapshot_file(commit_, m.file, m.blob);
      progress.end_file();
    }
    progress.finish();
  }

  int files_downloaded() const { return files_; }
  uint64_t bytes_downloaded() const { return bytes_; }

 private:
  std::string resolve_url(const std::string& file) const {
    return opts_.endpoint + "/" + repo_ + "/resolve/" + commit_ + "/" + url_quote(file, true);
  }

  const std::string& repo_;
  const PullOptions& opts_;
  const RepoCache& cache_;
  HttpClient& http_;
  const HubContext& ctx_;
  std::string commit_;
  int files_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace

std::string default_cache_dir() {
  for (const char* name : {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"}) {
    std::string v = env(name);
    if (!v.empty()) return expand_home(v);
  }
  return hf_home() + "/hub";
}

PullOptions PullOptions::from_env() {
  PullOptions o;
  std::string endpoint = env("HF_ENDPOINT");
  if (!endpoint.empty()) o.endpoint = endpoint;
  o.token = trim(env("HF_TOKEN"));
  if (o.token.empty()) o.token = trim(env("HUGGING_FACE_HUB_TOKEN"));
  if (o.token.empty()) {  // written by `huggingface-cli login` / `hf auth login`
    std::string path = env("HF_TOKEN_PATH");
    std::ifstream f(path.empty() ? hf_home() + "/token" : expand_home(path));
    std::string line;
    if (f && std::getline(f, line)) o.token = trim(line);
  }
  o.cache_dir = default_cache_dir();
  o.offline = truthy(env("HF_HUB_OFFLINE"));
  return o;
}

PullResult pull(const std::string& repo_id, const PullOptions& options) {
  validate_repo_id(repo_id);
  validate_revision(options.revision);
  PullOptions opts = options;
  while (!opts.endpoint.empty() && opts.endpoint.back() == '/') opts.endpoint.pop_back();
  if (opts.cache_dir.empty()) opts.cache_dir = default_cache_dir();
  RepoCache cache(opts.cache_dir, repo_id);
  if (opts.offline) return from_cache(cache, repo_id, opts.revision, " (HF_HUB_OFFLINE is set)");

  parse_url(opts.endpoint);  // a clear error for a bad HF_ENDPOINT
  HubContext ctx{opts.endpoint, repo_id, opts.revision, !opts.token.empty()};
  HttpClient http(opts.endpoint, opts.token, opts.connect_timeout_s, opts.read_timeout_s);
  RepoInfo info;
  try {
    info = fetch_repo_info(http, ctx);
  } catch (const NetworkError& e) {
    try {
      PullResult cached = from_cache(cache, repo_id, opts.revision, "");
      log::warn("{}; using the cached snapshot {}", e.what(), cached.snapshot_dir);
      return cached;
    } catch (const Error&) {
      throw Error("hub", e.message() + " (no network? " + repo_id +
                             " is not in the cache either; HF_ENDPOINT=" + opts.endpoint + ")");
    }
  }
  log::debug("hub: {} '{}' is commit {} ({} files)", repo_id, opts.revision, info.commit,
             info.siblings.size());

  std::vector<std::string> files = select_model_files(info.siblings, repo_id);
  Puller puller(repo_id, opts, cache, http, ctx, info.commit);
  if (std::find(files.begin(), files.end(), kIndexFile) != files.end()) {
    puller.ensure({kIndexFile}, ProgressMode::kNone);
    nlohmann::json index =
        read_json_file(cache.snapshot_file(info.commit, kIndexFile).string(), "hub");
    std::set<std::string> listed(info.siblings.begin(), info.siblings.end());
    for (auto& shard : shards_from_index(index, listed)) files.push_back(shard);
    std::sort(files.begin(), files.end());
    files.erase(std::unique(files.begin(), files.end()), files.end());
  }
  puller.ensure(files, opts.progress);
  cache.write_ref(opts.revision, info.commit);

  PullResult res;
  res.commit = info.commit;
  res.snapshot_dir = fs::absolute(cache.snapshot_dir(info.commit)).string();
  res.files = files;
  res.files_downloaded = puller.files_downloaded();
  res.bytes_downloaded = puller.bytes_downloaded();
  if (res.files_downloaded)
    log::info("hub: {} files ({}) downloaded into {}", res.files_downloaded,
              format_bytes(double(res.bytes_downloaded)), res.snapshot_dir);
  return res;
}

std::string resolve_model_dir(const std::string& model_arg, const PullOptions& options) {
  std::error_code ec;
  if (fs::is_directory(model_arg, ec)) return model_arg;
  if (fs::is_regular_file(model_arg, ec) && fs::path(model_arg).extension() == ".gguf")
    return model_arg;  // a GGUF file is a model too (model/model_files.h)
  if (!is_repo_id(model_arg))
    throw Error("hub", "'" + model_arg +
                           "' is neither a model folder, a .gguf file nor a Hugging Face model id "
                           "(ORG/NAME)");
  return pull(model_arg, options).snapshot_dir;
}

}  // namespace meshlm::hub
