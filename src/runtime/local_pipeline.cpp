// All stages in this process, run one after the other for each micro-batch. Used for a single
// machine (one stage) and for in-process multi-stage exactness tests.
#include <deque>

#include "core/error.h"
#include "runtime/pipeline.h"

namespace meshlm::runtime {

namespace {

class LocalPipeline final : public Pipeline {
 public:
  LocalPipeline(const std::string& dir, const model::StageOptions& options,
                std::vector<int64_t> splits) {
    auto cfg = model::ModelConfig::from_dir(dir);
    if (splits.empty()) splits = {0, cfg.n_layers};
    if (splits.size() < 2 || splits.front() != 0 || splits.back() != cfg.n_layers)
      throw Error("pipeline", "layer splits must start at 0 and end at " + std::to_string(cfg.n_layers));
    for (size_t i = 0; i + 1 < splits.size(); ++i) {
      if (splits[i] >= splits[i + 1]) throw Error("pipeline", "layer splits must increase");
      stages_.push_back(std::make_unique<model::Stage>(dir, splits[i], splits[i + 1], options));
    }
  }

  const model::ModelConfig& config() const override { return stages_.front()->config(); }
  int depth() const override { return 1; }

  void launch(MicroBatch batch) override {
    MicroBatchResult result;
    result.id = batch.id;
    try {
      for (auto& [seq, params] : batch.new_sequences) samplers_.add(seq, params);
      int64_t rows = 0;
      for (auto& stage : stages_) rows = stage->forward(batch.chunks, batch.tokens, hidden_, logits_);
      const int64_t vocab = config().vocab;
      if (batch.return_logits) {
        result.logits.assign(logits_.begin(), logits_.begin() + rows * vocab);
      } else {
        result.sampled = samplers_.sample_batch(batch.chunks, batch.tokens, logits_.data(), vocab);
      }
    } catch (const std::exception& e) {
      result.error = e.what();
    }
    done_.push_back(std::move(result));
  }

  MicroBatchResult wait() override {
    if (done_.empty()) throw Error("pipeline", "wait() with no micro-batch in flight");
    MicroBatchResult r = std::move(done_.front());
    done_.pop_front();
    return r;
  }

  void release(int64_t seq_id) override {
    for (auto& s : stages_) s->release(seq_id);
    samplers_.release(seq_id);
  }

  std::vector<StageInfo> stages() const override {
    std::vector<StageInfo> out;
    for (auto& s : stages_) out.push_back({"local", s->layer_begin(), s->layer_end(), "ready"});
    return out;
  }

 private:
  std::vector<std::unique_ptr<model::Stage>> stages_;
  SamplerSet samplers_;
  std::vector<float> hidden_, logits_;
  std::deque<MicroBatchResult> done_;
};

}  // namespace

std::unique_ptr<Pipeline> make_local_pipeline(const std::string& model_dir,
                                              const model::StageOptions& options,
                                              std::vector<int64_t> splits) {
  return std::make_unique<LocalPipeline>(model_dir, options, std::move(splits));
}

}  // namespace meshlm::runtime
