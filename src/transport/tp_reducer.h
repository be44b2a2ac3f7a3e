// model::TpReducer (model/tensor_split.h) over a transport::Group: what a tensor-parallel Stage
// sums and gathers through, here over the group's TCP or MPI connections. The Group's
// all_reduce_sum is deterministic (the same bits on every member, every run), so the members'
// residual streams stay identical.
//
// --wire (formats/activation_type.h): with bf16, f16 or q8_0 each member encodes its partial
// sums in that type, the members all-gather the encoded rows (half or ~0.27x the bytes of f32),
// and every member decodes every contribution, its own included, and adds them in rank order:
// the same bits on every member still, rounded once per contribution. A count that is not whole
// blocks of the type (q8_0: 32) goes as f32.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "formats/weight_format.h"
#include "model/tensor_split.h"
#include "transport/collective.h"

namespace meshlm::transport {

class GroupReducer : public model::TpReducer {
 public:
  explicit GroupReducer(std::shared_ptr<Group> group, WeightType wire = WeightType::F32);
  void all_reduce_sum(float* data, size_t n) override;
  std::vector<float> all_gather(std::span<const float> mine, std::vector<size_t>* counts) override {
    return group_->all_gather(mine, counts);
  }
  std::vector<float> gather_to_first(std::span<const float> mine,
                                     std::vector<size_t>* counts) override {
    return group_->gather(mine, 0, counts);
  }
  Group& group() { return *group_; }
  WeightType wire() const { return wire_; }

 private:
  std::shared_ptr<Group> group_;
  WeightType wire_;
  std::vector<float> packed_;  // this member's encoded contribution, in float-sized words
  std::vector<float> part_;    // one decoded contribution
};

}  // namespace meshlm::transport
