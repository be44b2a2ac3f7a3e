// LayerRange and LayerPartition: the one form a layout's layer ranges take from the command line
// to the stages.
#include "model/layer_range.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace meshlm::model {
namespace {

TEST(LayerPartition, ParsesInclusiveRangesAndFormatsThemBack) {
  const LayerPartition p = parse_partition("0-13,14-27", 28);
  ASSERT_EQ(p, (LayerPartition{{0, 14}, {14, 28}}));
  EXPECT_EQ(format_partition(p), "0-13,14-27");
  EXPECT_EQ(parse_partition("0-0,1-1,2-3", 4), (LayerPartition{{0, 1}, {1, 2}, {2, 4}}));
  EXPECT_EQ(parse_partition("0-27", 28), (LayerPartition{{0, 28}}));
}

TEST(LayerPartition, RefusesWhatIsNotAPartitionNamingTheText) {
  for (const char* bad :
       {"", "0-13,15-27", "1-27", "0-13,13-27", "0-26", "0-28", "0-13,14-27,", "0-13;14-27", "a-b",
        "0-", "-3", "5-2", "0-13,14-27x", "0--1", "99999999999-1"}) {
    try {
      parse_partition(bad, 28, "cli");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.component(), "cli") << bad;
    }
  }
}

TEST(LayerPartition, EvenPartitionKeepsTheFormerBoundaries) {
  // Stage k begins at n_layers * k / n_stages: 28 over 3 -> 0-8, 9-17, 18-27.
  EXPECT_EQ(even_partition(28, 3), (LayerPartition{{0, 9}, {9, 18}, {18, 28}}));
  EXPECT_EQ(even_partition(4, 4), (LayerPartition{{0, 1}, {1, 2}, {2, 3}, {3, 4}}));
  EXPECT_EQ(even_partition(5, 1), (LayerPartition{{0, 5}}));
  EXPECT_THROW(even_partition(4, 5), Error);
  EXPECT_THROW(even_partition(4, 0), Error);
  for (int n = 1; n <= 28; ++n) EXPECT_NO_THROW(check_partition(even_partition(28, n), 28)) << n;
}

TEST(LayerPartition, CheckRefusesGapsOverlapsAndShortCover) {
  EXPECT_NO_THROW(check_partition({{0, 2}, {2, 4}}, 4));
  EXPECT_THROW(check_partition({}, 4), Error);
  EXPECT_THROW(check_partition({{0, 2}, {3, 4}}, 4), Error);          // gap
  EXPECT_THROW(check_partition({{0, 3}, {2, 4}}, 4), Error);          // overlap
  EXPECT_THROW(check_partition({{0, 2}, {2, 3}}, 4), Error);          // short
  EXPECT_THROW(check_partition({{0, 2}, {2, 2}, {2, 4}}, 4), Error);  // empty range
  EXPECT_THROW(check_partition({{0, 5}}, 4), Error);                  // past the end
}

}  // namespace
}  // namespace meshlm::model
