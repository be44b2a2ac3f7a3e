#include "server/metrics.h"

#include <cstdio>

namespace meshlm::server {
namespace {

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// One scalar metric in the text format: its HELP and TYPE lines and its value.
void scalar(std::string& out, const char* name, const char* type, const char* help,
            const std::string& value) {
  out += std::string("# HELP ") + name + " " + help + "\n";
  out += std::string("# TYPE ") + name + " " + type + "\n";
  out += std::string(name) + " " + value + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + fmt(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  out += name + "_sum " + fmt(sum_) + "\n";
  out += name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      itl_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}) {}

void Metrics::request_done(const std::string& endpoint, int status) {
  std::lock_guard lock(mutex_);
  ++requests_[{endpoint, status}];
}

void Metrics::tokens(int64_t prompt, int64_t generated) {
  std::lock_guard lock(mutex_);
  prompt_tokens_ += prompt;
  generated_tokens_ += generated;
}

void Metrics::time_to_first_token(double seconds) {
  std::lock_guard lock(mutex_);
  ttft_.observe(seconds);
}

void Metrics::inter_token_latency(double seconds) {
  std::lock_guard lock(mutex_);
  itl_.observe(seconds);
}

std::string Metrics::render(const runtime::EngineStats& stats,
                            const std::vector<runtime::StageInfo>& stages) const {
  std::lock_guard lock(mutex_);
  std::string out;
  out += "# HELP meshlm_requests_total HTTP API requests by endpoint and status code.\n";
  out += "# TYPE meshlm_requests_total counter\n";
  for (auto& [key, n] : requests_)
    out += "meshlm_requests_total{endpoint=\"" + key.first + "\",status=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  scalar(out, "meshlm_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
         std::to_string(prompt_tokens_));
  scalar(out, "meshlm_generation_tokens_total", "counter",
         "Tokens generated for finished requests.", std::to_string(generated_tokens_));
  scalar(out, "meshlm_engine_prompt_tokens_total", "counter",
         "Prompt tokens processed by the engine.", std::to_string(stats.prompt_tokens_total));
  scalar(out, "meshlm_engine_generated_tokens_total", "counter", "Tokens sampled by the engine.",
         std::to_string(stats.generated_tokens_total));
  out += "# HELP meshlm_time_to_first_token_seconds Time from request to first token.\n";
  out += "# TYPE meshlm_time_to_first_token_seconds histogram\n";
  ttft_.render(out, "meshlm_time_to_first_token_seconds");
  out += "# HELP meshlm_inter_token_latency_seconds Time between tokens of one stream.\n";
  out += "# TYPE meshlm_inter_token_latency_seconds histogram\n";
  itl_.render(out, "meshlm_inter_token_latency_seconds");
  scalar(out, "meshlm_queue_depth", "gauge", "Requests waiting for a slot.",
         std::to_string(stats.queued));
  scalar(out, "meshlm_active_sequences", "gauge", "Sequences being prefilled or decoded.",
         std::to_string(stats.active));
  scalar(out, "meshlm_engine_busy_seconds_total", "counter",
         "Time the pipeline had work in flight.", fmt(stats.busy_seconds));
  scalar(out, "meshlm_recovering", "gauge",
         "Whether requests are paused waiting for a lost stage (1).",
         std::string(stats.recovering ? "1" : "0"));
  scalar(out, "meshlm_recoveries_total", "counter",
         "Outages (lost stages) the engine came through.", std::to_string(stats.recoveries_total));
  scalar(out, "meshlm_replayed_sequences_total", "counter",
         "Sequences re-prefilled after a lost stage.", std::to_string(stats.replayed_total));
  scalar(out, "meshlm_kv_tokens", "gauge",
         "KV positions the active sequences hold (the --kv-memory unit).",
         std::to_string(stats.kv_tokens));
  scalar(out, "meshlm_preemptions_total", "counter",
         "Sequences paused (KV freed, resumed later) to stay within --kv-memory.",
         std::to_string(stats.preemptions_total));
  scalar(out, "meshlm_prefix_cache_blocks", "gauge",
         "Prefix-cache blocks held (KV kept for reuse).",
         std::to_string(stats.prefix_cache_blocks));
  scalar(out, "meshlm_prefix_cache_bytes", "gauge",
         "KV bytes the prefix cache holds, all stages together.",
         std::to_string(stats.prefix_cache_bytes));
  scalar(out, "meshlm_prefix_cache_hit_tokens_total", "counter",
         "Prompt tokens restored from the prefix cache instead of computed.",
         std::to_string(stats.prefix_cache_hit_tokens_total));
  scalar(out, "meshlm_prefix_cache_hits_total", "counter",
         "Requests that restored part of their prompt.",
         std::to_string(stats.prefix_cache_hits_total));
  out += "# HELP meshlm_stage_up Whether each pipeline stage is ready (1) or not (0).\n";
  out += "# TYPE meshlm_stage_up gauge\n";
  for (size_t i = 0; i < stages.size(); ++i)
    out += "meshlm_stage_up{stage=\"" + std::to_string(i) + "\",node=\"" + stages[i].node +
           "\",layers=\"" + std::to_string(stages[i].layers.begin) + "-" +
           std::to_string(stages[i].layers.end) + "\"} " +
           (stages[i].state == "ready" ? "1" : "0") + "\n";
  auto stage_labels = [&](size_t i) {
    return "{stage=\"" + std::to_string(i) + "\",node=\"" + stages[i].node + "\"}";
  };
  out +=
      "# HELP meshlm_stage_compute_seconds_total Time each stage spent computing micro-batches.\n";
  out += "# TYPE meshlm_stage_compute_seconds_total counter\n";
  for (size_t i = 0; i < stages.size(); ++i)
    out += "meshlm_stage_compute_seconds_total" + stage_labels(i) + " " +
           fmt(stages[i].busy_seconds) + "\n";
  out +=
      "# HELP meshlm_stage_transfer_seconds_total Time micro-batches spent after a stage outside "
      "any compute (links, waiting for busy stages); measured on the coordinator's row.\n";
  out += "# TYPE meshlm_stage_transfer_seconds_total counter\n";
  for (size_t i = 0; i < stages.size(); ++i)
    out += "meshlm_stage_transfer_seconds_total" + stage_labels(i) + " " +
           fmt(stages[i].transfer_seconds) + "\n";
  // Where the rest of each stage's time went (issue 19).
  const struct {
    const char* name;
    const char* help;
    double runtime::StageInfo::*field;
  } kTimes[] = {
      {"meshlm_stage_queue_seconds_total",
       "Time micro-batches that had reached a stage waited for its thread.",
       &runtime::StageInfo::queue_seconds},
      {"meshlm_stage_send_seconds_total",
       "Time each stage spent sending frames on (activations, results).",
       &runtime::StageInfo::send_seconds},
      {"meshlm_stage_wait_seconds_total",
       "Time each stage spent waiting for input (not computing, queueing or sending).",
       &runtime::StageInfo::wait_seconds},
  };
  for (const auto& t : kTimes) {
    out += std::string("# HELP ") + t.name + " " + t.help + "\n";
    out += std::string("# TYPE ") + t.name + " counter\n";
    for (size_t i = 0; i < stages.size(); ++i)
      out += t.name + stage_labels(i) + " " + fmt(stages[i].*t.field) + "\n";
  }
  return out;
}

}  // namespace meshlm::server
