// All stages in this process, run one after the other for each micro-batch. Used for a single
// machine (one stage) and for in-process multi-stage exactness tests.
#include <algorithm>
#include <chrono>
#include <deque>
#include <mutex>

#include "core/error.h"
#include "formats/activation_type.h"
#include "model/layer_range.h"
#include "runtime/pipeline.h"
#include "runtime/stage_runner.h"

namespace meshlm::runtime {

namespace {

class LocalPipeline final : public Pipeline {
 public:
  LocalPipeline(const std::string& dir, const model::StageOptions& options,
                model::LayerPartition ranges, WeightType wire)
      : wire_(wire) {
    auto cfg = model::ModelConfig::from_dir(dir);
    if (ranges.empty()) ranges = {{0, cfg.n_layers}};
    model::check_partition(ranges, cfg.n_layers, "pipeline");
    formats::check_activation_rows(wire, cfg.hidden, "pipeline", "--wire");
    for (const auto& range : ranges) {
      stages_.push_back(std::make_unique<model::Stage>(dir, range, options));
      runners_.push_back(std::make_unique<StageRunner>(*stages_.back()));
      busy_.push_back(0.0);
    }
    refresh_info();
  }

  const model::ModelConfig& config() const override { return stages_.front()->config(); }
  WeightType kv_type() const override { return stages_.front()->kv_type(); }
  int depth() const override { return 1; }

  void launch(MicroBatch batch) override {
    MicroBatchResult result;
    result.id = batch.id;
    try {
      const StageInput in{batch.chunks, batch.tokens, batch.new_sequences, batch.return_logits,
                          batch.masks,  batch.kv_ops};
      for (size_t i = 0; i < runners_.size(); ++i) {
        runners_[i]->run(in, hidden_, out_);
        busy_[i] += out_.seconds;
        // What the link to the next stage would deliver (as remote stages encode and decode).
        if (i + 1 < runners_.size()) formats::round_activations(wire_, hidden_.data(), int64_t(hidden_.size()));
      }
      result.sampled = std::move(out_.sampled);
      result.logits = std::move(out_.logits);
    } catch (const std::exception& e) {
      result.error = e.what();
    }
    done_.push_back(std::move(result));
    refresh_info();
  }

  MicroBatchResult wait() override {
    if (done_.empty()) throw Error("pipeline", "wait() with no micro-batch in flight");
    MicroBatchResult r = std::move(done_.front());
    done_.pop_front();
    return r;
  }

  void release(int64_t seq_id) override {
    for (auto& s : stages_) s->release(seq_id);
    runners_.back()->release(seq_id);
    refresh_info();
  }

  // Safe from any thread: a snapshot refreshed after every micro-batch and release.
  std::vector<StageInfo> stages() const override {
    std::lock_guard<std::mutex> lock(info_mutex_);
    return info_;
  }

 private:
  void refresh_info() {
    std::vector<StageInfo> out;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    for (size_t i = 0; i < stages_.size(); ++i) {
      const auto& s = stages_[i];
      out.push_back({"local", s->layers(), "ready",
                     uint64_t(s->weight_bytes() + s->kv_bytes_in_use()), busy_[i]});
      // In one process the stages take turns: a stage waits while the others compute and
      // while the engine has no work for it (nothing is sent or queued).
      out.back().wait_seconds = std::max(0.0, elapsed - busy_[i]);
    }
    std::lock_guard<std::mutex> lock(info_mutex_);
    info_ = std::move(out);
  }

  std::vector<std::unique_ptr<model::Stage>> stages_;
  std::vector<std::unique_ptr<StageRunner>> runners_;  // one per stage; the last one samples
  mutable std::mutex info_mutex_;
  std::vector<StageInfo> info_;
  std::vector<float> hidden_;
  WeightType wire_ = WeightType::F32;  // what the links between the stages would carry
  StageOutput out_;
  std::deque<MicroBatchResult> done_;
  std::vector<double> busy_;  // seconds of compute per stage
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace

std::unique_ptr<Pipeline> make_local_pipeline(const std::string& model_dir,
                                              const model::StageOptions& options,
                                              model::LayerPartition ranges, WeightType wire) {
  return std::make_unique<LocalPipeline>(model_dir, options, std::move(ranges), wire);
}

}  // namespace meshlm::runtime
