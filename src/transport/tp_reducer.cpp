#include "transport/tp_reducer.h"

#include <cstring>
#include <string>

#include "core/error.h"
#include "formats/activation_type.h"
#include "formats/quants.h"

namespace meshlm::transport {

GroupReducer::GroupReducer(std::shared_ptr<Group> group, WeightType wire)
    : group_(std::move(group)), wire_(wire) {
  if (!formats::is_activation_type(wire))
    throw Error("collective", "--wire " + std::string(formats::name(wire)) + ": not one of " +
                                  std::string(formats::activation_type_names()));
}

void GroupReducer::all_reduce_sum(float* data, size_t n) {
  const int64_t block = formats::info(wire_).block_elems;
  if (wire_ == WeightType::F32 || n == 0 || int64_t(n) % block != 0) {
    group_->all_reduce_sum(data, n);
    return;
  }
  // The encoded row travels in float-sized words (the collectives move bytes; nothing adds them).
  const size_t bytes = formats::row_bytes(wire_, int64_t(n));
  packed_.assign((bytes + sizeof(float) - 1) / sizeof(float), 0.0f);
  formats::quantize_row(wire_, data, int64_t(n), packed_.data());
  std::vector<size_t> counts;
  const std::vector<float> all = group_->all_gather(packed_, &counts);
  part_.resize(n);
  size_t base = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] != packed_.size())
      throw Error("collective", "member " + std::to_string(r) + " sent " +
                                    std::to_string(counts[r] * sizeof(float)) + " bytes of " +
                                    std::string(formats::activation_type_name(wire_)) +
                                    " partial sums, expected " + std::to_string(bytes));
    float* dst = r == 0 ? data : part_.data();  // rank order: data = x_0, then += x_1, ...
    formats::dequantize_row(wire_, all.data() + base, int64_t(n), dst);
    if (r > 0)
      for (size_t i = 0; i < n; ++i) data[i] += part_[i];
    base += counts[r];
  }
}

}  // namespace meshlm::transport
