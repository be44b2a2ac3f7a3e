// Weight formats: how the elements of a weight tensor are stored. A format is a block layout (a
// block of block_elems consecutive elements of a row takes block_bytes bytes; plain element types
// are blocks of one) plus how to turn a block back into f32. Everything that sizes, ships, maps or
// reads weights asks this module — loaders, the tensor cache, model sync, the planner's byte
// counts, memory locking — and never assumes an element size of its own.
//
// Rows are the unit: a matrix W[rows, cols] is `rows` rows of row_bytes(type, cols) bytes each,
// rows contiguous; a row always starts on a block boundary (cols is a whole number of blocks).
// Plain formats: F32, BF16, F16 (safetensors dtypes). Block-quantized formats: the GGUF block
// types (Q8_0, Q4_0, ..., the K-quants, IQ4_NL/IQ4_XS, MXFP4), each with its ggml type id, so the
// GGUF reader, model sync and the kernels all size and decode them from this one table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace meshlm {

// Order is the table's order in weight_format.cpp; values are not stored anywhere (files and
// messages carry names or ggml ids), so new types may be added anywhere.
enum class WeightType : uint8_t {
  F32, BF16, F16,
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
  Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
  IQ4_NL, IQ4_XS, MXFP4,
};

namespace formats {

struct FormatInfo {
  WeightType type;
  std::string_view name;  // as safetensors, GGUF tools and model sync spell it: "F32", "Q4_K"
  int ggml_type;          // the type id in GGUF files (ggml's enum)
  int64_t block_elems;    // elements per block (1 for plain element types)
  size_t block_bytes;     // bytes per block
  // dst[0, n_blocks * block_elems) = the n_blocks blocks at src, as f32.
  void (*dequantize)(const void* src, int64_t n_blocks, float* dst);
  bool plain() const { return block_elems == 1; }
};

// A non-owning view of a row-major weight matrix W[rows, cols] (PyTorch Linear layout: out, in)
// stored in any format: rows of row_bytes(type, cols) bytes, contiguous.
struct WeightView {
  const void* data = nullptr;
  WeightType dtype = WeightType::F32;
  int64_t rows = 0;  // output features
  int64_t cols = 0;  // input features
};

// Every format meshlm reads, in WeightType order.
std::span<const FormatInfo> all();
const FormatInfo& info(WeightType t);
inline std::string_view name(WeightType t) { return info(t).name; }
// The format of a dtype name (model sync, GGUF type names), or nullopt when meshlm cannot use it.
// Safetensors files hold plain formats only: their loader also checks plain().
std::optional<WeightType> from_name(std::string_view name);
// The format of a GGUF tensor's ggml type id, or nullopt when meshlm cannot use it.
std::optional<WeightType> from_ggml_type(uint32_t id);

// Bytes of one row of n elements. Throws Error("format") when n is negative or not a whole
// number of blocks.
size_t row_bytes(WeightType t, int64_t n);
// Bytes of a tensor of this shape (its last dimension is the row; a scalar is one element), or
// nullopt when the last dimension is not a whole number of blocks or the size is beyond 2^50.
std::optional<uint64_t> tensor_bytes(WeightType t, std::span<const int64_t> shape);
// The same, throwing Error("format") where tensor_bytes gives nullopt.
size_t tensor_bytes_or_throw(WeightType t, std::span<const int64_t> shape);

// dst[0, n) = the first n elements of the row that starts at src (n a whole number of blocks).
void dequantize_row(WeightType t, const void* src, int64_t n, float* dst);

}  // namespace formats
}  // namespace meshlm
