// meshlm serve: the OpenAI-compatible HTTP server in front of the model's pipeline.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "command.h"
#include "common.h"
#include "cluster/cluster_watch.h"
#include "core/byte_count.h"
#include "core/log.h"
#include "model/config.h"
#include "transport/mpi_transport.h"
#include "kv_options.h"
#include "pipeline_options.h"
#include "runtime/engine.h"
#include "runtime/replanning_pipeline.h"
#include "server/server.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::cli {
namespace {

std::atomic<server::Server*> g_server{nullptr};
// An MPI worker rank leaves stopping to rank 0: mpirun signals every rank, and rank 0's pipeline
// shutdown then ends this rank cleanly.
std::atomic<bool> g_mpi_worker{false};

// Stops the server from a thread that is not the signal handler (stop() takes locks).
void watch_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    sigwait(&set, &sig);
    while (g_mpi_worker.load()) {
      log::info("[serve] signal {}: MPI worker rank, waiting for rank 0 to stop the pipeline", sig);
      sigwait(&set, &sig);
    }
    log::info("[serve] signal {}: shutting down", sig);
    if (server::Server* srv = g_server.load())
      srv->stop();
    else
      _exit(128 + sig);  // still loading: nothing to finish
  }).detach();
}

int run_serve(int argc, char** argv) {
  CLI::App app{"OpenAI-compatible HTTP server"};
  std::string model_dir, name;
  server::ServerOptions sopt;
  runtime::EngineOptions eopt;
  int threads = default_threads();
  int64_t ctx = 4096;
  int parallel = 8;
  int64_t max_queue = 64;
  app.add_option("--model,-m", model_dir, "Hugging Face model folder, or ORG/NAME to pull from the hub")->required();
  app.add_option("--port", sopt.port, "TCP port (0: any free port)")->check(CLI::Range(0, 65535));
  app.add_option("--host", sopt.host, "address to listen on");
  app.add_option("--api-key", sopt.api_key,
                 "require 'Authorization: Bearer KEY' on /v1/ (default: $MESHLM_API_KEY)");
  app.add_option("--threads,-t", threads, "threads per stage")->check(CLI::Range(1, 1024));
  app.add_option("--ctx,-c", ctx, "context length per sequence (prompt + generated)")
      ->check(CLI::Range(int64_t(16), int64_t(1) << 24));
  app.add_option("--parallel", parallel, "sequences decoded at once")->check(CLI::Range(1, 4096));
  app.add_option("--max-queue", max_queue, "requests waiting beyond --parallel before 429")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  app.add_option("--batch-tokens", eopt.max_batch_tokens, "tokens per micro-batch")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  app.add_option("--prefill-chunk", eopt.prefill_chunk, "longest prompt piece per micro-batch")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  KvOptions kv;
  kv.add_to(app);
  app.add_option("--prefix-block", eopt.prefix_block_tokens,
                 "tokens per prefix-cache block (a prompt is reused in whole blocks)")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  double recovery_timeout_s = 60;
  app.add_option("--recovery-timeout", recovery_timeout_s,
                 "when a worker is lost, requests pause (not fail) this many seconds for it to come "
                 "back or for a re-plan, then are replayed from their tokens so far; 0 = fail at once")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--name", name, "model id reported by /v1/models (default: the folder's name)");
  app.add_option("--max-body", sopt.max_body_bytes, "largest request body in bytes");
  bool no_reasoning = false;
  app.add_flag("--no-reasoning-split", no_reasoning, "leave <think>...</think> in the content");
  PipelineOptions popts;  // --stages / --peers / --layers: the pipeline's layout
  popts.add_to(app, /*discover_by_default=*/true);
  CLI11_PARSE(app, argc, argv);
  model_dir = resolve_model(model_dir);  // a folder, or ORG/NAME from the Hugging Face hub

  // Before any thread starts (MPI's included), so that only the watcher thread receives
  // SIGINT/SIGTERM.
  watch_signals();
  if (popts.mpi() && transport::mpi_available()) {
    transport::mpi_init();
    g_mpi_worker = transport::mpi_rank() != 0;
  }
  if (popts.serve_if_mpi_worker(model_dir, threads)) return 0;  // MPI ranks 1..N-1
  if (sopt.api_key.empty())
    if (const char* k = std::getenv("MESHLM_API_KEY")) sopt.api_key = k;
  if (sopt.api_key.empty() && sopt.host != "127.0.0.1" && sopt.host != "localhost" &&
      sopt.host != "::1" && sopt.host.rfind("127.", 0) != 0)
    log::warn("[serve] listening on {} without an API key: anyone who can reach it can use the "
              "model (--api-key KEY or MESHLM_API_KEY)", sopt.host);
  sopt.model_dir = model_dir;
  sopt.parse_reasoning = !no_reasoning;
  sopt.model_name = !name.empty()
                        ? name
                        : std::filesystem::path(model_dir).lexically_normal().filename().string();
  if (sopt.model_name.empty())
    sopt.model_name =
        std::filesystem::path(model_dir).lexically_normal().parent_path().filename().string();

  auto tokenizer = tok::Tokenizer::load(model_dir);
  std::unique_ptr<tmpl::ChatTemplate> chat_template;
  try {
    chat_template = tmpl::ChatTemplate::load(model_dir);
  } catch (const std::exception& e) {
    log::warn("[serve] no chat template ({}); /v1/chat/completions is disabled", e.what());
  }

  model::StageOptions stage;
  stage.threads = threads;
  stage.max_context = ctx;
  // The pipeline: one local stage by default; --stages/--peers/--layers spread it over workers.
  // With discovery deciding the workers (no --peers/--stages/--layers), serve keeps following the
  // LAN and re-plans between requests when workers join or leave (cluster/cluster_watch.h).
  const bool follow_lan = popts.discover && popts.peers.empty() && popts.stages <= 1 &&
                          popts.layers.empty() && popts.plan_memory.empty() && !popts.mpi() &&
                          popts.local_layers.empty() && discovery::discovery_available();
  popts.discover_peers();
  {
    // The planner leaves KV room for the sequences (every parallel one at full context, or the
    // --kv-memory budget) and for the prefix cache.
    const auto cfg = model::ModelConfig::from_dir(model_dir);
    eopt.prefix_cache_bytes = kv.prefix_cache_bytes();
    const WeightType kv_type = popts.kv_type();
    eopt.kv_budget_tokens = kv.budget_tokens(cfg, kv_type);
    popts.kv_tokens = kv.planner_tokens(cfg, kv_type, ctx, parallel);
    if (eopt.kv_budget_tokens > 0)
      log::info("[serve] KV memory budget: {} tokens ({} per token, {} cache)",
                eopt.kv_budget_tokens, format_bytes(double(cfg.kv_bytes_per_token(kv_type))),
                popts.cache_type);
  }
  std::unique_ptr<runtime::Pipeline> pipeline = popts.make(model_dir, stage);
  runtime::ReplanningPipeline* replanning = nullptr;
  if (follow_lan) {
    auto wrapper = std::make_unique<runtime::ReplanningPipeline>(std::move(pipeline));
    replanning = wrapper.get();
    pipeline = std::move(wrapper);
  }
  eopt.max_context = ctx;
  eopt.max_active = parallel;
  eopt.max_queue = max_queue;
  eopt.recovery_timeout_ms = int64_t(recovery_timeout_s * 1000);
  eopt.prefill_chunk = std::min(eopt.prefill_chunk, eopt.max_batch_tokens);
  auto engine = std::make_unique<runtime::Engine>(std::move(pipeline), eopt);

  server::Server srv(std::move(engine), std::move(tokenizer), std::move(chat_template), sopt);
  int port = srv.bind();
  std::unique_ptr<cluster::ClusterWatch> cluster_watch;  // stops before srv (and its engine) go
  if (replanning) {
    auto make = [popts, model_dir, stage](const std::vector<std::string>& peers) {
      PipelineOptions o = popts;
      o.peers.clear();
      for (const auto& p : peers) o.peers += (o.peers.empty() ? "" : ",") + p;
      return o.make(model_dir, stage);
    };
    try {
      cluster::ClusterWatchOptions wopt;
      wopt.secret = popts.resolved_secret();
      cluster_watch =
          std::make_unique<cluster::ClusterWatch>(*replanning, popts.peer_list(), make, wopt);
    } catch (const std::exception& e) {
      log::warn("[serve] not following workers on the LAN: {}", e.what());
    }
  }
  g_server = &srv;
  log::info("[serve] {} on http://{}:{} ({} parallel, context {})", sopt.model_name, sopt.host,
            port, parallel, ctx);
  // For scripts that start the server on port 0: the first line on stdout is the address.
  std::printf("listening on http://%s:%d\n", sopt.host.c_str(), port);
  std::fflush(stdout);
  srv.run();
  g_server = nullptr;
  return 0;
}

Registrar reg("serve", "OpenAI-compatible HTTP server (chat, completions, web page)", run_serve);

}  // namespace
}  // namespace meshlm::cli
