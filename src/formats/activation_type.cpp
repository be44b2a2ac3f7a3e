#include "formats/activation_type.h"

#include <cctype>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/quants.h"

namespace meshlm::formats {

namespace {
struct Named {
  WeightType type;
  std::string_view name;
};
constexpr Named kTypes[] = {{WeightType::F32, "f32"},
                            {WeightType::BF16, "bf16"},
                            {WeightType::F16, "f16"},
                            {WeightType::Q8_0, "q8_0"}};
constexpr WeightType kList[] = {WeightType::F32, WeightType::BF16, WeightType::F16,
                                WeightType::Q8_0};
}  // namespace

std::span<const WeightType> activation_types() { return kList; }

bool is_activation_type(WeightType t) {
  for (const auto& n : kTypes)
    if (n.type == t) return true;
  return false;
}

std::optional<WeightType> activation_type_from_name(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& n : kTypes)
    if (n.name == lower) return n.type;
  return std::nullopt;
}

std::string_view activation_type_name(WeightType t) {
  for (const auto& n : kTypes)
    if (n.type == t) return n.name;
  return name(t);
}

std::string_view activation_type_names() { return "f32, bf16, f16, q8_0"; }

void check_activation_rows(WeightType t, int64_t dim, const char* tag, std::string_view what) {
  if (!is_activation_type(t))
    throw Error(tag, std::string(what) + " " + std::string(name(t)) + ": not one of " +
                         std::string(activation_type_names()));
  const int64_t block = info(t).block_elems;
  if (dim <= 0 || dim % block != 0)
    throw Error(tag, std::string(what) + " " + std::string(activation_type_name(t)) +
                         " needs rows of whole " + std::to_string(block) +
                         "-value blocks; these rows hold " + std::to_string(dim));
}

void round_activations(WeightType t, float* x, int64_t n) {
  if (t == WeightType::F32) return;
  if (!is_activation_type(t))
    throw Error("format", std::string(name(t)) + " is not an activation type (" +
                              std::string(activation_type_names()) + ")");
  std::vector<uint8_t> bytes(row_bytes(t, n));  // throws unless n is whole blocks
  quantize_row(t, x, n, bytes.data());
  dequantize_row(t, bytes.data(), n, x);
}

}  // namespace meshlm::formats
