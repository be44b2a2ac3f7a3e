// meshlm perplexity: llama-perplexity's protocol. The text is tokenized once (no BOS unless
// --bos), cut into floor(n / ctx) chunks, each evaluated from an empty cache; in each chunk the
// tokens at positions ctx/2+1 .. ctx-1 are scored. Prints the running PPL and "PPL = x" last.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "command.h"
#include "common.h"
#include "pipeline_options.h"
#include "core/error.h"
#include "runtime/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::cli {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("perplexity", "cannot open '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int run_perplexity(int argc, char** argv) {
  CLI::App app{"Perplexity of a text file (llama-perplexity protocol)"};
  std::string model_dir, text_file, ids_file;
  int64_t ctx = 512;
  int threads = default_threads();
  bool bos = false;
  app.add_option("--model,-m", model_dir, "Hugging Face model folder, or ORG/NAME to pull from the hub")->required();
  auto* f_opt = app.add_option("-f,--file", text_file, "text file");
  auto* i_opt = app.add_option("--ids-file", ids_file, "token ids (comma/space separated) instead of text");
  f_opt->excludes(i_opt);
  app.add_option("-c,--ctx", ctx, "chunk length")->check(CLI::Range(int64_t(4), int64_t(1) << 20));
  app.add_option("--threads,-t", threads, "threads per stage")->check(CLI::Range(1, 1024));
  app.add_flag("--bos", bos, "prepend BOS and start every chunk with BOS");
  PipelineOptions popts;
  popts.add_to(app);
  CLI11_PARSE(app, argc, argv);
  model_dir = resolve_model(model_dir);  // a folder, or ORG/NAME from the Hugging Face hub
  if (popts.serve_if_mpi_worker(model_dir, threads)) return 0;  // MPI ranks 1..N-1
  popts.discover_peers();

  std::vector<int32_t> tokens;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  if (!ids_file.empty()) {
    tokens = parse_id_list(read_file(ids_file));
  } else if (!text_file.empty()) {
    tokenizer = tok::Tokenizer::load(model_dir);
    tokens = tokenizer->encode(read_file(text_file), false);
  } else {
    throw Error("perplexity", "give -f FILE or --ids-file FILE");
  }
  model::StageOptions so;
  so.threads = threads;
  so.max_context = ctx;
  auto pipeline = popts.make(model_dir, so);
  const auto& cfg = pipeline->config();
  int64_t bos_id = -1;
  if (bos) {
    if (!tokenizer) {
      try {
        tokenizer = tok::Tokenizer::load(model_dir);
      } catch (const std::exception&) {
      }
    }
    if (tokenizer && tokenizer->bos_id()) bos_id = *tokenizer->bos_id();
    if (bos_id < 0) bos_id = cfg.bos_id;
    if (bos_id < 0) throw Error("perplexity", "--bos given but the model has no BOS token");
    tokens.insert(tokens.begin(), int32_t(bos_id));
  }
  const int64_t n_chunks = int64_t(tokens.size()) / ctx;
  if (n_chunks == 0)
    throw Error("perplexity", "the text has " + std::to_string(tokens.size()) +
                                  " tokens, fewer than one chunk of " + std::to_string(ctx) + " (-c)");
  std::fprintf(stderr, "%zu tokens, %lld chunks of %lld\n", tokens.size(), (long long)n_chunks, (long long)ctx);
  const int64_t first = ctx / 2;
  double nll = 0;
  int64_t count = 0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
    if (bos) chunk[0] = int32_t(bos_id);
    runtime::MicroBatch mb;
    mb.id = uint64_t(c);
    mb.chunks.push_back({c, 0, int32_t(ctx), false, true});
    mb.tokens = chunk;
    mb.return_logits = true;
    pipeline->launch(std::move(mb));
    auto res = pipeline->wait();
    pipeline->release(c);
    if (!res.error.empty()) throw Error("perplexity", res.error);
    for (int64_t j = first; j < ctx - 1; ++j) {
      const float* row = res.logits.data() + j * cfg.vocab;
      float m = row[0];
      for (int64_t v = 1; v < cfg.vocab; ++v) m = std::max(m, row[v]);
      double z = 0;
      for (int64_t v = 0; v < cfg.vocab; ++v) z += std::exp(double(row[v]) - m);
      nll += std::log(z) + m - double(row[chunk[size_t(j + 1)]]);
      ++count;
    }
    std::printf("[%lld]%.4f,", (long long)(c + 1), std::exp(nll / double(count)));
    std::fflush(stdout);
  }
  std::printf("\n%lld tokens scored\nPPL = %.6f\n", (long long)count, std::exp(nll / double(count)));
  return 0;
}

Registrar reg("perplexity", "perplexity of a text (-f FILE -c CTX), llama-perplexity protocol", run_perplexity);

}  // namespace
}  // namespace meshlm::cli
