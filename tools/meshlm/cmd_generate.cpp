// meshlm generate: prompt in, continuation out (text, or ids with --ids).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "command.h"
#include "common.h"
#include "pipeline_options.h"
#include "core/error.h"
#include "runtime/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::cli {
namespace {

int run_generate(int argc, char** argv) {
  CLI::App app{"Generate a continuation of a prompt"};
  std::string model_dir, prompt, prompt_ids, logits_out;
  int64_t n_predict = 32;
  int threads = default_threads();
  int64_t ctx = 4096;
  bool print_ids = false, ignore_eos = false;
  runtime::SamplingParams sp;
  sp.temperature = 0.0f;
  int64_t seed = -1;
  app.add_option("--model,-m", model_dir, "Hugging Face model folder, or ORG/NAME to pull from the hub")->required();
  auto* p_opt = app.add_option("--prompt,-p", prompt, "prompt text (needs tokenizer.json)");
  auto* ids_opt = app.add_option("--prompt-ids", prompt_ids, "prompt as comma-separated token ids");
  p_opt->excludes(ids_opt);
  app.add_option("-n,--n-predict", n_predict, "tokens to generate")->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  app.add_option("--temp", sp.temperature, "temperature (0 = greedy, the default)");
  app.add_option("--top-k", sp.top_k, "top-k (0 = off)");
  app.add_option("--top-p", sp.top_p, "top-p (1 = off)");
  app.add_option("--min-p", sp.min_p, "min-p (0 = off)");
  app.add_option("--repeat-penalty", sp.repetition_penalty, "repetition penalty (1 = off)");
  app.add_option("--presence-penalty", sp.presence_penalty, "presence penalty");
  app.add_option("--frequency-penalty", sp.frequency_penalty, "frequency penalty");
  app.add_option("--seed,-s", seed, "RNG seed (reproducible sampling)");
  app.add_flag("--ids", print_ids, "print generated token ids instead of text");
  app.add_flag("--ignore-eos", ignore_eos, "do not stop at end-of-sequence tokens");
  app.add_option("--threads,-t", threads, "threads per stage")->check(CLI::Range(1, 1024));
  app.add_option("--ctx,-c", ctx, "context length (prompt + generated)")->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_option("--logits-out", logits_out, "write the logits of every generated step (f32 [n, vocab])");
  PipelineOptions popts;
  popts.add_to(app);
  CLI11_PARSE(app, argc, argv);
  model_dir = resolve_model(model_dir);  // a folder, or ORG/NAME from the Hugging Face hub
  if (popts.serve_if_mpi_worker(model_dir, threads)) return 0;  // MPI ranks 1..N-1
  popts.discover_peers();
  if (seed >= 0) sp.seed = uint64_t(seed), sp.has_seed = true;

  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::vector<int32_t> ids;
  if (!prompt_ids.empty()) {
    ids = parse_id_list(prompt_ids);
  } else if (!prompt.empty()) {
    tokenizer = tok::Tokenizer::load(model_dir);
    ids = tokenizer->encode(prompt, true);
  } else {
    throw Error("generate", "give --prompt or --prompt-ids");
  }
  if (ids.empty()) throw Error("generate", "the prompt has no tokens");
  if (int64_t(ids.size()) + n_predict > ctx)
    throw Error("generate", "prompt (" + std::to_string(ids.size()) + " tokens) + " +
                                std::to_string(n_predict) + " to generate exceeds the context of " +
                                std::to_string(ctx) + " (--ctx)");
  if (!print_ids && !tokenizer) {
    try {
      tokenizer = tok::Tokenizer::load(model_dir);
    } catch (const std::exception&) {
      print_ids = true;  // no tokenizer: ids are all we can print
    }
  }

  model::StageOptions so;
  so.threads = threads;
  so.max_context = ctx;
  auto pipeline = popts.make(model_dir, so);
  const auto& cfg = pipeline->config();
  std::ofstream logits_file;
  if (!logits_out.empty()) {
    logits_file.open(logits_out, std::ios::binary);
    if (!logits_file) throw Error("generate", "cannot write '" + logits_out + "'");
  }

  std::unique_ptr<tok::StreamDecoder> decoder;
  if (!print_ids) decoder = std::make_unique<tok::StreamDecoder>(*tokenizer, std::vector<std::string>{});
  runtime::SamplerSet samplers;
  samplers.add(0, sp);
  std::vector<int32_t> generated;
  const int64_t chunk = 256;
  std::vector<int32_t> next(ids);  // tokens to feed
  int64_t pos = 0;
  auto t0 = std::chrono::steady_clock::now();
  double t_first = 0;
  while (int64_t(generated.size()) < n_predict) {
    // Feed `next` in chunks; the last chunk asks for logits.
    runtime::MicroBatchResult res;
    for (size_t off = 0; off < next.size(); off += chunk) {
      runtime::MicroBatch mb;
      int32_t n = int32_t(std::min<size_t>(chunk, next.size() - off));
      mb.chunks.push_back({0, int32_t(pos), n, off + n == next.size(), false});
      mb.tokens.assign(next.begin() + off, next.begin() + off + n);
      mb.return_logits = true;
      pipeline->launch(std::move(mb));
      res = pipeline->wait();
      if (!res.error.empty()) throw Error("generate", res.error);
      pos += n;
    }
    if (generated.empty())
      t_first = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (logits_file) logits_file.write(reinterpret_cast<const char*>(res.logits.data()), std::streamsize(res.logits.size() * 4));
    model::SeqChunk last{0, int32_t(pos - 1), 1, true, false};
    auto sampled = samplers.sample_batch(std::span(&last, 1), std::span(next.data() + next.size() - 1, 1),
                                         res.logits.data(), cfg.vocab);
    int32_t token = sampled.at(0).second.token;
    generated.push_back(token);
    if (decoder) {
      std::string piece = decoder->push(token);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    bool eos = false;
    for (auto e : cfg.eos_ids) eos |= e == token;
    if (eos && !ignore_eos) break;
    next.assign(1, token);
  }
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (decoder) {
    std::string tail = decoder->finish();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::printf("\n");
  } else {
    for (size_t i = 0; i < generated.size(); ++i) std::printf(i ? " %d" : "%d", generated[i]);
    std::printf("\n");
  }
  if (generated.size() > 1)
    std::fprintf(stderr, "prompt %zu tokens in %.3f s; generated %zu tokens, %.2f tokens/s\n", ids.size(), t_first,
                 generated.size(), double(generated.size() - 1) / std::max(1e-9, total - t_first));
  return 0;
}

Registrar reg("generate", "generate a continuation (--prompt TEXT | --prompt-ids 1,2,3) -n N", run_generate);

}  // namespace
}  // namespace meshlm::cli
