#include <gtest/gtest.h>

#include "core/error.h"
#include "formats/weight_format.h"

namespace meshlm {
namespace {

TEST(WeightFormat, GgmlIdsRoundTripAndBlockLayouts) {
  for (const auto& f : formats::all()) {
    if (f.ggml_type >= 0)  // MLX affine formats have no GGUF type (-1)
      EXPECT_EQ(formats::from_ggml_type(uint32_t(f.ggml_type)), f.type) << f.name;
    EXPECT_EQ(formats::from_name(f.name), f.type) << f.name;
    EXPECT_GT(f.block_elems, 0) << f.name;
    EXPECT_GT(f.block_bytes, 0u) << f.name;
  }
  EXPECT_FALSE(formats::from_ggml_type(9));   // Q8_1: activations only, never a weight
  EXPECT_FALSE(formats::from_ggml_type(16));  // IQ2_XXS: not supported
  EXPECT_EQ(formats::row_bytes(WeightType::Q4_K, 512), 288u);
  EXPECT_EQ(formats::row_bytes(WeightType::Q8_0, 64), 68u);
  EXPECT_THROW(formats::row_bytes(WeightType::Q8_0, 48), Error);
}

}  // namespace
}  // namespace meshlm
