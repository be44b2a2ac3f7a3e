#include "runtime/stage_runner.h"

#include <chrono>

namespace meshlm::runtime {

void StageRunner::run(const StageInput& in, std::vector<float>& hidden, StageOutput& out) {
  out.last = stage_->is_last();
  out.sampled.clear();
  out.logits.clear();
  if (out.last)
    for (const auto& [seq, params] : in.new_sequences) samplers_.add(seq, params);
  const auto t0 = std::chrono::steady_clock::now();
  stage_->apply_kv_ops(in.kv_ops, false);
  const int64_t rows = stage_->forward(in.chunks, in.tokens, hidden, logits_, &log_z_);
  stage_->apply_kv_ops(in.kv_ops, true);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!out.last) return;
  const int64_t vocab = stage_->config().vocab;
  if (in.return_logits)
    out.logits.assign(logits_.begin(), logits_.begin() + rows * vocab);
  else
    out.sampled = samplers_.sample_batch(in.chunks, in.tokens, logits_.data(), vocab, in.masks,
                                         log_z_);
}

void StageRunner::release(int64_t seq_id) { samplers_.release(seq_id); }
void StageRunner::clear() { samplers_.clear(); }

}  // namespace meshlm::runtime
