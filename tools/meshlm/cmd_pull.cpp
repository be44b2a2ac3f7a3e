// `meshlm pull ORG/NAME [--revision R]`: download a model from the Hugging Face hub into the
// standard HF cache and print its snapshot folder on stdout (DIR=$(meshlm pull Qwen/Qwen3-0.6B)).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "command.h"
#include "hub/hub.h"

namespace {

int run_pull(int argc, char** argv) {
  CLI::App app(
      "Download a model (config, tokenizer, chat template, safetensors) from the Hugging Face hub "
      "into the Hugging Face cache; prints the snapshot folder.\n"
      "Environment: HF_ENDPOINT, HF_TOKEN (private / gated models), HF_HUB_CACHE or HF_HOME, "
      "HF_HUB_OFFLINE=1 (cache only).",
      "meshlm pull");
  std::string repo;
  auto opts = meshlm::hub::PullOptions::from_env();
  bool quiet = false;
  app.add_option("model", repo, "model id on the hub, ORG/NAME (e.g. Qwen/Qwen3-0.6B)")->required();
  app.add_option("--revision", opts.revision, "branch, tag or commit (default main)");
  app.add_option("--cache-dir", opts.cache_dir,
                 "hub cache folder (default: " + opts.cache_dir + ")");
  app.add_flag("--offline", opts.offline, "use the cache only, like HF_HUB_OFFLINE=1");
  app.add_flag("-q,--quiet", quiet, "no progress bar");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (quiet) opts.progress = meshlm::hub::ProgressMode::kNone;
  meshlm::hub::PullResult res = meshlm::hub::pull(repo, opts);
  std::fprintf(stderr, "%s: %zu files at commit %s%s\n", repo.c_str(), res.files.size(),
               res.commit.c_str(),
               res.used_cache_only         ? " (from the cache)"
               : res.files_downloaded == 0 ? " (already in the cache)"
                                           : "");
  std::printf("%s\n", res.snapshot_dir.c_str());
  return 0;
}

meshlm::cli::Registrar reg_pull("pull", "download a model from the Hugging Face hub (ORG/NAME)",
                                run_pull);

}  // namespace
