// libFuzzer target: what `meshlm pull` reads from a Hugging Face hub (src/hub), which may be any
// server HF_ENDPOINT names. The input is split at NUL bytes into:
//   0. the answer of /api/models/<repo>/revision/<rev>: JSON with "sha" and "siblings" [{"rfilename"}]
//      (read exactly as hub.cpp's file-local fetch_repo_info does: every name validated), then
//      select_model_files on that list;
//   1. model.safetensors.index.json, through shards_from_index against the listed files;
//   2. an ETag header (blob_name_from_etag), 3. a Location header (resolve_location against the
//      hub's URL, then parse_url), 4. a revision (validate_revision), 5. an X-Error-Message
//      header and error page for throw_for_status.
// Each must succeed or throw Error("hub", ...). Every file name the hub may make meshlm write
// must land inside the repository's cache folder (no path traversal).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "fuzz_common.h"
#include "hub/cache_layout.h"
#include "hub/file_selection.h"
#include "hub/http_client.h"
#include "hub/transfer.h"

using namespace meshlm::hub;
using meshlm::fuzz::require;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> split_nul(const uint8_t* data, size_t size, size_t parts) {
  std::vector<std::string> out(parts);
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (size_t i = 0; i < parts; ++i) {
    size_t nul = i + 1 < parts ? rest.find('\0') : std::string_view::npos;
    out[i] = std::string(rest.substr(0, nul));
    if (nul == std::string_view::npos) break;
    rest.remove_prefix(nul + 1);
  }
  return out;
}

// The cache path of a hub-supplied file stays under <cache>/models--org--name/snapshots/<sha>/.
void check_inside(const RepoCache& cache, const std::string& commit, const std::string& file) {
  fs::path p = cache.snapshot_file(commit, file).lexically_normal();
  fs::path snap = cache.snapshot_dir(commit).lexically_normal();
  auto [s, f] = std::mismatch(snap.begin(), snap.end(), p.begin(), p.end());
  require(s == snap.end() && f != p.end());
}

void repo_info(const std::string& body, const std::string& index_body) {
  const std::string repo = "org/model";
  std::string commit;
  std::vector<std::string> siblings;
  try {  // as fetch_repo_info
    auto j = nlohmann::json::parse(body);
    commit = j.at("sha").get<std::string>();
    for (const auto& s : j.at("siblings")) {
      std::string name = s.at("rfilename").get<std::string>();
      validate_repo_file_name(name, "the hub's file list for " + repo);
      siblings.push_back(std::move(name));
    }
  } catch (const nlohmann::json::exception& e) {
    throw meshlm::Error("hub", std::string("unexpected answer: ") + e.what());
  }
  if (!is_commit_sha(commit)) throw meshlm::Error("hub", "invalid commit sha");
  RepoCache cache("/nonexistent-fuzz-cache", repo);
  std::vector<std::string> files = select_model_files(siblings, repo);
  std::set<std::string> listed(siblings.begin(), siblings.end());
  for (const auto& f : files) {
    require(listed.count(f));
    check_inside(cache, commit, f);
  }
  if (std::find(files.begin(), files.end(), kIndexFile) != files.end()) {
    auto index = nlohmann::json::parse(index_body, nullptr, false);
    if (index.is_discarded()) return;
    for (const auto& shard : shards_from_index(index, listed)) {
      require(listed.count(shard));
      check_inside(cache, commit, shard);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  meshlm::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto part = split_nul(data, size, 6);
  try {
    repo_info(part[0], part[1]);
  } catch (const meshlm::Error&) {
  }
  try {
    std::string blob = blob_name_from_etag(part[2]);
    require(!blob.empty() && blob.size() <= 128 && blob.find('/') == std::string::npos &&
            blob != "." && blob != "..");
  } catch (const meshlm::Error&) {
  }
  try {
    Url base = parse_url("https://huggingface.co/org/model/resolve/main/config.json?x=1");
    Url u = parse_url(resolve_location(base, part[3]));
    require(!u.target.empty() && u.target[0] == '/');
    require(u.origin.rfind("http://", 0) == 0 || u.origin.rfind("https://", 0) == 0);
  } catch (const meshlm::Error&) {
  }
  try {
    validate_revision(part[4]);
    // cached_commit() reads refs/<revision>: a valid revision stays inside refs/.
    fs::path ref = (fs::path("/c/refs") / part[4]).lexically_normal();
    require(ref.string().rfind("/c/refs/", 0) == 0);
    (void)url_quote(part[4], false);
  } catch (const meshlm::Error&) {
  }
  for (int status : {401, 403, 404, 429, 500}) {
    HttpResponse r;
    r.status = status;
    r.headers.emplace("x-error-message", part[5].substr(0, 100));
    r.headers.emplace("x-error-code", status == 404 ? "EntryNotFound" : "GatedRepo");
    r.body = part[5];
    try {
      throw_for_status(r, {"https://huggingface.co", "org/model", "main", status == 403}, "x");
    } catch (const meshlm::Error& e) {
      require(e.component() == "hub");
    }
  }
  return 0;
}
