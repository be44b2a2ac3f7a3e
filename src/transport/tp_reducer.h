// model::TpReducer (model/tensor_split.h) over a transport::Group: what a tensor-parallel Stage
// sums and gathers through, here over the group's TCP or MPI connections. The Group's
// all_reduce_sum is deterministic (the same bits on every member, every run), so the members'
// residual streams stay identical.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "model/tensor_split.h"
#include "transport/collective.h"

namespace meshlm::transport {

class GroupReducer : public model::TpReducer {
 public:
  explicit GroupReducer(std::shared_ptr<Group> group) : group_(std::move(group)) {}
  void all_reduce_sum(float* data, size_t n) override { group_->all_reduce_sum(data, n); }
  std::vector<float> all_gather(std::span<const float> mine, std::vector<size_t>* counts) override {
    return group_->all_gather(mine, counts);
  }
  std::vector<float> gather_to_first(std::span<const float> mine,
                                     std::vector<size_t>* counts) override {
    return group_->gather(mine, 0, counts);
  }
  Group& group() { return *group_; }

 private:
  std::shared_ptr<Group> group_;
};

}  // namespace meshlm::transport
