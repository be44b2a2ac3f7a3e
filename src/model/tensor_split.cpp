#include "model/tensor_split.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <tuple>

#include "core/error.h"

namespace meshlm::model {

namespace {

// `units` divided among the members in proportion to shares: largest remainder (ties to the
// lower rank), then, when at_least_one and there are enough units, every member left with none
// takes one from the member with the most (ties to the lower rank). Integer results from the
// same doubles on every member: every member computes the same division.
std::vector<int64_t> apportion(int64_t units, std::span<const double> shares, bool at_least_one) {
  const size_t m = shares.size();
  const double total = std::accumulate(shares.begin(), shares.end(), 0.0);
  std::vector<int64_t> n(m);
  std::vector<double> frac(m);
  int64_t given = 0;
  for (size_t r = 0; r < m; ++r) {
    const double ideal = double(units) * shares[r] / total;
    n[r] = std::min<int64_t>(units, int64_t(std::floor(ideal)));
    frac[r] = ideal - double(n[r]);
    given += n[r];
  }
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return frac[a] > frac[b]; });
  for (size_t i = 0; given < units; i = (i + 1) % m, ++given) ++n[order[i]];
  // Rounding can overshoot only through floating point (sum of floors > units); take back from
  // the highest ranks.
  for (size_t r = m; given > units && r-- > 0;)
    while (given > units && n[r] > 0) --n[r], --given;
  if (at_least_one && units >= int64_t(m)) {
    for (size_t r = 0; r < m; ++r) {
      if (n[r] > 0) continue;
      const size_t donor = size_t(std::max_element(n.begin(), n.end()) - n.begin());
      --n[donor];
      ++n[r];
    }
  }
  return n;
}

// [begin, end) of member `rank` when `total` elements are divided in units of `unit` (the last
// unit may be short).
std::pair<int64_t, int64_t> range_of(int64_t total, int64_t unit, std::span<const double> shares,
                                     int rank, bool at_least_one) {
  if (total <= 0) return {0, 0};
  unit = std::max<int64_t>(1, unit);
  const int64_t units = (total + unit - 1) / unit;
  const std::vector<int64_t> n = apportion(units, shares, at_least_one);
  int64_t begin = 0;
  for (int r = 0; r < rank; ++r) begin += n[size_t(r)];
  const int64_t end = begin + n[size_t(rank)];
  return {std::min(total, begin * unit), std::min(total, end * unit)};
}

}  // namespace

TensorSplit split_for(const ModelConfig& c, std::span<const double> shares, int rank,
                      SplitBlocks blocks) {
  const int64_t m = int64_t(shares.size());
  if (m < 1) throw Error("tensor-parallel", "a tensor-parallel group needs at least one member");
  if (rank < 0 || rank >= m)
    throw Error("tensor-parallel",
                "member " + std::to_string(rank) + " of a group of " + std::to_string(m));
  for (size_t r = 0; r < shares.size(); ++r)
    if (!(shares[r] > 0) || !std::isfinite(shares[r]))
      throw Error("tensor-parallel", "member " + std::to_string(r) + " has share " +
                                         std::to_string(shares[r]) + " (must be positive)");
  if (c.n_kv_heads < 1 || c.n_heads % c.n_kv_heads != 0)
    throw Error("tensor-parallel", std::to_string(c.n_heads) + " query heads do not divide into " +
                                       std::to_string(c.n_kv_heads) + " KV heads");
  if (m > c.n_kv_heads)
    throw Error("tensor-parallel",
                std::to_string(m) + " members but the model has only " +
                    std::to_string(c.n_kv_heads) +
                    " KV heads: every member needs at least one (use at most " +
                    std::to_string(c.n_kv_heads) + " members)");
  TensorSplit s;
  s.rank = rank;
  s.size = int(m);
  std::tie(s.kv_begin, s.kv_end) = range_of(c.n_kv_heads, 1, shares, rank, true);
  const int64_t g = c.n_heads / c.n_kv_heads;
  s.q_begin = s.kv_begin * g;
  s.q_end = s.kv_end * g;
  std::tie(s.inter_begin, s.inter_end) = range_of(c.intermediate, blocks.inter, shares, rank, true);
  if (c.is_moe())
    std::tie(s.moe_begin, s.moe_end) = range_of(c.moe_intermediate, blocks.moe, shares, rank, true);
  std::tie(s.shared_begin, s.shared_end) =
      range_of(c.shared_expert_intermediate, blocks.shared, shares, rank, true);
  std::tie(s.vocab_begin, s.vocab_end) = range_of(c.vocab, 1, shares, rank, true);
  return s;
}

TensorSplit split_for(const ModelConfig& c, std::span<const double> shares, int rank,
                      int64_t block_elems) {
  return split_for(c, shares, rank, SplitBlocks{block_elems, block_elems, block_elems});
}

}  // namespace meshlm::model
