// meshlm bench: prompt processing (pp) and generation (tg) tokens/s, like llama-bench: a warm-up
// run, then -r repetitions, mean and standard deviation. Token ids are random (fixed seed).
#include <chrono>
#include <cmath>
#include <deque>
#include <cstdio>
#include <random>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "command.h"
#include "common.h"
#include "pipeline_options.h"
#include "core/mmap_file.h"
#include "kernels/kernels.h"
#include "runtime/pipeline.h"

namespace meshlm::cli {
namespace {

struct Stats {
  double mean = 0, sd = 0;
};

Stats stats(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  if (v.size() > 1) {
    for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(s.sd / double(v.size() - 1));
  }
  return s;
}

using Clock = std::chrono::steady_clock;

int run_bench(int argc, char** argv) {
  CLI::App app{"Prompt-processing and generation speed"};
  std::string model_dir;
  int64_t n_prompt = 128, n_gen = 64;
  int threads = default_threads(), reps = 5, streams = 1, micro_batches = 0;
  bool json = false, whole_logits = false;
  app.add_option("--model,-m", model_dir, "Hugging Face model folder, or ORG/NAME to pull from the hub")->required();
  app.add_option("-p,--n-prompt", n_prompt, "prompt tokens (0 to skip)")->check(CLI::Range(int64_t(0), int64_t(1) << 16));
  app.add_option("-n,--n-gen", n_gen, "generated tokens (0 to skip)")->check(CLI::Range(int64_t(0), int64_t(1) << 16));
  app.add_option("--threads,-t", threads, "threads per stage")->check(CLI::Range(1, 1024));
  app.add_option("-r,--repetitions", reps, "repetitions")->check(CLI::Range(1, 1000));
  app.add_flag("--json", json, "print one JSON object");
  app.add_option("--streams", streams, "concurrent sequences for tg (aggregate tokens/s)")->check(CLI::Range(1, 4096));
  app.add_option("--micro-batches", micro_batches,
                 "groups the streams are split into (default: one per stage); 1 runs the stages "
                 "one after the other, which gives each stage's compute time without the others")
      ->check(CLI::Range(1, 4096));
  app.add_flag("--whole-logits", whole_logits,
               "a tensor-parallel group gathers every logits row whole instead of each member's "
               "best value (what greedy sampling needs; for comparison)");
  PipelineOptions popts;
  popts.add_to(app);
  CLI11_PARSE(app, argc, argv);
  model_dir = resolve_model(model_dir);  // a folder, or ORG/NAME from the Hugging Face hub
  if (popts.serve_if_mpi_worker(model_dir, threads)) return 0;  // MPI ranks 1..N-1
  popts.discover_peers();

  model::StageOptions so;
  so.threads = threads;
  so.max_context = std::max<int64_t>(n_prompt, n_gen) + 16;
  auto pipeline = popts.make(model_dir, so);
  const auto& cfg = pipeline->config();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(cfg.vocab - 1));
  // A greedy row, as the engine asks for it: only its largest value decides (SeqChunk::top_logits).
  auto greedy_chunk = [&](int64_t id, int64_t pos, int64_t n) {
    model::SeqChunk c{id, int32_t(pos), int32_t(n), true, false};
    c.top_logits = whole_logits ? 0 : 1;
    return c;
  };
  int64_t seq = 0;
  uint64_t next_id = 0;  // micro-batch ids, unique over the run (MESHLM_TRACE follows them)
  auto run_pp = [&]() {
    runtime::MicroBatch mb;
    mb.id = next_id++;
    mb.chunks.push_back(greedy_chunk(seq, 0, n_prompt));
    for (int64_t i = 0; i < n_prompt; ++i) mb.tokens.push_back(dist(rng));
    auto t0 = Clock::now();
    pipeline->launch(std::move(mb));
    auto r = pipeline->wait();
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!r.error.empty()) throw std::runtime_error(r.error);
    pipeline->release(seq++);
    return double(n_prompt) / s;
  };
  // `streams` sequences decode n_gen tokens each; they are split into up to depth() groups (or
  // --micro-batches) so that with N stages N micro-batches are in flight. Returns aggregate
  // tokens/s.
  auto tg_groups = [&]() {
    return std::min(streams, micro_batches > 0 ? micro_batches : pipeline->depth());
  };
  auto run_tg_streams = [&]() {
    const int groups = tg_groups();
    std::vector<std::vector<int64_t>> seqs(static_cast<size_t>(groups));
    std::vector<std::vector<int32_t>> last(static_cast<size_t>(groups));
    for (int s = 0; s < streams; ++s) {
      seqs[size_t(s % groups)].push_back(seq + s);
      last[size_t(s % groups)].push_back(dist(rng));
    }
    std::vector<int64_t> step(static_cast<size_t>(groups), 0);
    std::deque<int> order;
    auto launch = [&](int g) {
      runtime::MicroBatch mb;
      mb.id = next_id++;
      for (size_t i = 0; i < seqs[size_t(g)].size(); ++i) {
        mb.chunks.push_back(greedy_chunk(seqs[size_t(g)][i], step[size_t(g)], 1));
        mb.tokens.push_back(last[size_t(g)][i]);
      }
      pipeline->launch(std::move(mb));
      order.push_back(g);
    };
    auto t0 = Clock::now();
    for (int g = 0; g < groups; ++g) launch(g);
    while (!order.empty()) {
      int g = order.front();
      order.pop_front();
      auto r = pipeline->wait();
      if (!r.error.empty()) throw std::runtime_error(r.error);
      for (size_t i = 0; i < r.sampled.size(); ++i) last[size_t(g)][i] = r.sampled[i].second.token;
      if (++step[size_t(g)] < n_gen) launch(g);
    }
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    for (int i = 0; i < streams; ++i) pipeline->release(seq + i);
    seq += streams;
    return double(n_gen) * streams / s;
  };
  auto run_tg = [&]() {
    if (streams > 1) return run_tg_streams();
    int32_t token = dist(rng);
    auto t0 = Clock::now();
    for (int64_t i = 0; i < n_gen; ++i) {
      runtime::MicroBatch mb;
      mb.id = next_id++;
      mb.chunks.push_back(greedy_chunk(seq, i, 1));
      mb.tokens.push_back(token);
      pipeline->launch(std::move(mb));
      auto r = pipeline->wait();
      if (!r.error.empty()) throw std::runtime_error(r.error);
      token = r.sampled.at(0).second.token;
    }
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    pipeline->release(seq++);
    return double(n_gen) / s;
  };
  if (n_prompt > 0) run_pp();  // warm-up: pages in the weights
  if (n_gen > 0) run_tg();
  std::vector<double> pp, tg;
  // Per stage, the share of the generation runs' wall time it spent computing (pipeline balance).
  const size_t n_stages = pipeline->stages().size();
  std::vector<double> tg_busy(n_stages, 0.0);
  // And where the rest of each stage's time went (issue 19): a frame waiting for the stage's
  // thread, sending on, waiting for input; and the coordinator's round trips minus compute.
  std::vector<double> tg_queue(n_stages, 0.0), tg_send(n_stages, 0.0), tg_wait(n_stages, 0.0);
  double tg_transfer = 0;
  double tg_wall = 0;
  // Tensor parallelism (issue 16): member 0's collectives during generation.
  double tg_coll_calls = 0, tg_coll_bytes = 0, tg_coll_seconds = 0;
  for (int r = 0; r < reps; ++r) {
    if (n_prompt > 0) pp.push_back(run_pp());
    if (n_gen > 0) {
      auto before = pipeline->stages();
      auto t0 = Clock::now();
      tg.push_back(run_tg());
      tg_wall += std::chrono::duration<double>(Clock::now() - t0).count();
      auto after = pipeline->stages();
      for (size_t i = 0; i < tg_busy.size() && i < after.size() && i < before.size(); ++i) {
        tg_busy[i] += after[i].busy_seconds - before[i].busy_seconds;
        tg_queue[i] += after[i].queue_seconds - before[i].queue_seconds;
        tg_send[i] += after[i].send_seconds - before[i].send_seconds;
        tg_wait[i] += after[i].wait_seconds - before[i].wait_seconds;
        tg_transfer += after[i].transfer_seconds - before[i].transfer_seconds;
      }
      if (!after.empty() && !before.empty()) {
        tg_coll_calls += double(after[0].collectives - before[0].collectives);
        tg_coll_bytes += double(after[0].collective_bytes - before[0].collective_bytes);
        tg_coll_seconds += after[0].collective_seconds - before[0].collective_seconds;
      }
    }
  }
  std::vector<double> tg_util, tg_batch_ms;
  for (double b : tg_busy) tg_util.push_back(tg_wall > 0 ? b / tg_wall : 0.0);
  // Mean compute per micro-batch per stage: every stage runs every micro-batch once per step.
  const double batches = double(reps) * double(n_gen) * tg_groups();
  for (double b : tg_busy) tg_batch_ms.push_back(batches > 0 ? 1e3 * b / batches : 0.0);
  auto per_batch_ms = [&](const std::vector<double>& v) {
    std::vector<double> out;
    for (double x : v) out.push_back(batches > 0 ? 1e3 * x / batches : 0.0);
    return out;
  };
  const std::vector<double> queue_ms = per_batch_ms(tg_queue), send_ms = per_batch_ms(tg_send),
                            wait_ms = per_batch_ms(tg_wait);
  const double transfer_ms = batches > 0 ? 1e3 * tg_transfer / batches : 0.0;
  // Per micro-batch: collectives, bytes member 0 sent in them, ms in them; µs per collective.
  const double coll_per_batch = batches > 0 ? tg_coll_calls / batches : 0.0;
  const double coll_bytes_per_batch = batches > 0 ? tg_coll_bytes / batches : 0.0;
  const double coll_ms = batches > 0 ? 1e3 * tg_coll_seconds / batches : 0.0;
  const double coll_us_each = tg_coll_calls > 0 ? 1e6 * tg_coll_seconds / tg_coll_calls : 0.0;
  Stats sp = stats(pp), st = stats(tg);
  if (json) {
    nlohmann::json j = {{"model", model_dir}, {"architecture", cfg.architecture},
                        {"threads", threads}, {"n_prompt", n_prompt}, {"n_gen", n_gen},
                        {"repetitions", reps}, {"pp_tps", sp.mean}, {"pp_sd", sp.sd},
                        {"tg_tps", st.mean}, {"tg_sd", st.sd}, {"simd", kernels::simd_target_name()},
                        {"stages", pipeline->stages().size()}, {"streams", streams},
                        {"tg_stage_busy", tg_util}, {"tg_stage_batch_ms", tg_batch_ms},
                        {"tg_stage_queue_ms", queue_ms}, {"tg_stage_send_ms", send_ms},
                        {"tg_stage_wait_ms", wait_ms}, {"tg_transfer_ms", transfer_ms},
                        {"micro_batches", tg_groups()},
                        {"tg_collectives", coll_per_batch}, {"tg_collective_ms", coll_ms},
                        {"tg_collective_us_each", coll_us_each},
                        {"tg_collective_bytes", coll_bytes_per_batch},
                        {"peak_rss_bytes", peak_resident_bytes()}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("| model | threads | test | t/s |\n|---|---|---|---|\n");
    if (n_prompt > 0)
      std::printf("| %s | %d | pp%lld | %.2f ± %.2f |\n", cfg.architecture.c_str(), threads,
                  (long long)n_prompt, sp.mean, sp.sd);
    if (n_gen > 0)
      std::printf("| %s | %d | tg%lld | %.2f ± %.2f |\n", cfg.architecture.c_str(), threads,
                  (long long)n_gen, st.mean, st.sd);
    std::printf("simd %s, peak RSS %.1f MiB\n", kernels::simd_target_name(), double(peak_resident_bytes()) / (1 << 20));
    if (n_gen > 0 && tg_coll_calls > 0) {
      std::printf("generation, per micro-batch: member 0 computes %.3f ms; %.0f collectives take "
                  "%.3f ms (%.1f us each: links and waiting for the other members), %.1f KiB "
                  "sent\n", tg_batch_ms.empty() ? 0.0 : tg_batch_ms[0], coll_per_batch, coll_ms,
                  coll_us_each, coll_bytes_per_batch / 1024);
    } else if (n_gen > 0 && n_stages > 1) {
      std::printf("generation, per micro-batch: links and hand-offs %.3f ms (round trips minus "
                  "compute)\n", transfer_ms);
      for (size_t i = 0; i < n_stages; ++i)
        std::printf("  stage %zu: compute %.3f ms, queued %.3f ms, sending %.3f ms, waiting for "
                    "input %.3f ms\n", i, tg_batch_ms[i], queue_ms[i], send_ms[i], wait_ms[i]);
    }
  }
  return 0;
}

Registrar reg("bench", "prompt-processing / generation tokens/s (-p 128 -n 64 [-r 5] [--json])", run_bench);

}  // namespace
}  // namespace meshlm::cli
