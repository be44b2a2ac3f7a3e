// Reading GGUF files (llama.cpp's model format), versions 2 and 3, little-endian.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count; the metadata (key string,
// u32 value type, value); the tensor infos (name string, u32 dims count, u64 dims in ggml order
// (ne[0], the row, first), u32 ggml type, u64 offset into the data section); padding to the
// alignment (general.alignment, 32 when absent); the data section, each tensor at an aligned
// offset. Strings are a u64 byte length and the bytes (no NUL); arrays are a u32 element type, a
// u64 count and the elements.
//
// Everything is validated when a file is opened (counts, lengths, types, shapes, alignment,
// bounds, overlaps, duplicates): afterwards every tensor's bytes lie inside the file and hold
// exactly formats::tensor_bytes(type, shape). Metadata is decoded into owned values; tensor
// bytes stay in the memory map (or the caller's buffer) and are only touched when used.
// Errors are Error("gguf", ...) naming the file and the offending key, tensor or offset.
//
// A model may be one file or a split set written by llama.cpp's gguf-split
// (NAME-00001-of-00003.gguf, ...): GgufModel opens either, or a folder holding one of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/mmap_file.h"
#include "formats/weight_format.h"

namespace meshlm::formats {

// Metadata value types, with their ids in the file.
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8,
  Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view gguf_type_name(GgufType t);  // "u32", "string", "array", ...
bool gguf_is_integer(GgufType t);              // U8..I64 (not Bool)
bool gguf_is_float(GgufType t);                // F32, F64

// ggml's name of a type id, also for types meshlm cannot use ("IQ2_XXS"), or "" when unknown.
std::string_view ggml_type_name(uint32_t id);

// One metadata value: a scalar or an array of scalars or strings (arrays of arrays are refused
// when reading). A scalar is held as an array of one element that is not an array.
class GgufValue {
 public:
  GgufValue() = default;
  // Scalars.
  static GgufValue from_u8(uint8_t v) { return integer(GgufType::U8, v); }
  static GgufValue from_i8(int8_t v) { return integer(GgufType::I8, v); }
  static GgufValue from_u16(uint16_t v) { return integer(GgufType::U16, v); }
  static GgufValue from_i16(int16_t v) { return integer(GgufType::I16, v); }
  static GgufValue from_u32(uint32_t v) { return integer(GgufType::U32, v); }
  static GgufValue from_i32(int32_t v) { return integer(GgufType::I32, v); }
  static GgufValue from_u64(uint64_t v) { return integer(GgufType::U64, v); }
  static GgufValue from_i64(int64_t v) { return integer(GgufType::I64, uint64_t(v)); }
  static GgufValue from_bool(bool v) { return integer(GgufType::Bool, v ? 1 : 0); }
  static GgufValue from_f32(float v);
  static GgufValue from_f64(double v);
  static GgufValue from_string(std::string v);
  // Arrays. Integer elements are given as their bits: an I32 array's elements are int64 values
  // that must fit an i32 (checked; Error("gguf") otherwise). Likewise F32 arrays take doubles.
  static GgufValue int_array(GgufType element, std::vector<int64_t> values);
  static GgufValue u64_array(std::vector<uint64_t> values);
  static GgufValue bool_array(const std::vector<bool>& values);
  static GgufValue float_array(GgufType element, std::vector<double> values);
  static GgufValue string_array(std::vector<std::string> values);

  bool is_array() const { return array_; }
  // The element type (never Array): for a scalar its type, for an array its elements' type.
  GgufType element_type() const { return type_; }
  // The type as stored in the file: Array for arrays.
  GgufType type() const { return array_ ? GgufType::Array : type_; }
  size_t size() const;  // number of elements (1 for a scalar)
  // "u32", "array of 151936 string", ...: for messages.
  std::string describe() const;

  // Element i (0 for a scalar) as the asked kind, or nullopt when the element is of another
  // kind or does not fit: integers (not Bool) convert to any integer type that holds the value.
  std::optional<int64_t> as_i64(size_t i = 0) const;
  std::optional<uint64_t> as_u64(size_t i = 0) const;
  std::optional<double> as_f64(size_t i = 0) const;  // F32 or F64 elements
  std::optional<bool> as_bool(size_t i = 0) const;
  const std::string* as_string(size_t i = 0) const;  // nullptr unless a String element

  bool operator==(const GgufValue& o) const = default;

 private:
  static GgufValue integer(GgufType t, uint64_t bits);

  GgufType type_ = GgufType::U8;
  bool array_ = false;
  // Exactly one of these holds the elements: integers and Bool as bits (signed types
  // sign-extended to 64 bits), F32/F64 as double, strings.
  std::vector<uint64_t> ints_;
  std::vector<double> floats_;
  std::vector<std::string> strings_;
};

// The key/value pairs of a file, in file order, with lookups. Typed getters throw
// Error("gguf", "'FILE': key 'K' ...") when the key is missing or its value is of another type
// (or does not fit); the forms with a default return it only when the key is absent, and
// opt_* return nullopt when the key is absent.
class GgufMetadata {
 public:
  GgufMetadata() = default;
  explicit GgufMetadata(std::string source) : source_(std::move(source)) {}

  // Adds a pair; a key already present throws.
  void add(std::string key, GgufValue value);
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  const GgufValue& at(std::string_view key) const;  // throws when missing
  const std::vector<std::pair<std::string, GgufValue>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  const std::string& source() const { return source_; }

  uint32_t get_u32(std::string_view key) const;
  uint32_t get_u32(std::string_view key, uint32_t fallback) const;
  std::optional<uint32_t> opt_u32(std::string_view key) const;
  uint64_t get_u64(std::string_view key) const;
  uint64_t get_u64(std::string_view key, uint64_t fallback) const;
  std::optional<uint64_t> opt_u64(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  int64_t get_i64(std::string_view key, int64_t fallback) const;
  std::optional<int64_t> opt_i64(std::string_view key) const;
  float get_f32(std::string_view key) const;  // F32 or F64 values
  float get_f32(std::string_view key, float fallback) const;
  std::optional<float> opt_f32(std::string_view key) const;
  double get_f64(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  bool get_bool(std::string_view key, bool fallback) const;
  const std::string& get_string(std::string_view key) const;
  std::string get_string(std::string_view key, std::string_view fallback) const;
  std::optional<std::string> opt_string(std::string_view key) const;
  // Arrays: strings, any integer element type, F32/F64 elements.
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;

 private:
  [[noreturn]] void fail_type(std::string_view key, const GgufValue& v, std::string_view want) const;
  std::string source_;
  std::vector<std::pair<std::string, GgufValue>> entries_;
  std::map<std::string, size_t, std::less<>> index_;
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> dims;  // GGUF order: dims[0] (ne[0]) is the contiguous row length
  WeightType type = WeightType::F32;
  uint64_t offset = 0;        // into the data section, as stored
  uint64_t file_offset = 0;   // from the start of the file
  uint64_t nbytes = 0;        // formats::tensor_bytes(type, shape())
  const uint8_t* data = nullptr;

  // Row-major shape (dims reversed): the last dimension is the row, as formats:: expects.
  std::vector<int64_t> shape() const { return {dims.rbegin(), dims.rend()}; }
  int64_t elements() const;
  std::span<const uint8_t> bytes() const { return {data, size_t(nbytes)}; }
};

class GgufFile {
 public:
  static constexpr uint32_t kDefaultAlignment = 32;
  static constexpr size_t kMaxDims = 4;  // ggml's GGML_MAX_DIMS

  // Maps and parses a file. Throws Error("gguf", ...) (or Error("mmap", ...) when unreadable).
  static GgufFile open(const std::string& path);
  // Parses bytes the caller keeps alive as long as the GgufFile (tensor data points into them).
  // `name` stands for the file in messages.
  static GgufFile parse(std::span<const uint8_t> bytes, std::string name);

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the data section
  const GgufMetadata& metadata() const { return metadata_; }
  // In file order.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;
  const GgufTensor& tensor(std::string_view name) const;  // throws when absent
  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  GgufFile() = default;
  void parse_all();

  MappedFile map_;  // empty when parsed from a caller's buffer
  std::span<const uint8_t> bytes_;
  std::string name_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  GgufMetadata metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Whether `path` names a GGUF model: a .gguf file, or a folder holding .gguf files and no
// config.json (a folder with config.json is a Hugging Face folder, whatever else it holds). The
// one rule the weights, the tokenizer and the chat template all follow.
bool is_gguf_model_path(const std::string& path);

// "NAME-00002-of-00005.gguf" for part 1 (0-based) of 5, as gguf-split names them.
std::string gguf_split_path(std::string_view prefix, int part, int count);

// A model: one GGUF file or every part of a split set. Tensors are looked up over all parts;
// the metadata is the first part's (gguf-split writes the model's metadata there).
class GgufModel {
 public:
  // `path` is a .gguf file (a single model, or any part of a split set: its siblings are found
  // beside it and checked), or a folder holding exactly one model (one file or one split set).
  static GgufModel open(const std::string& path);
  // A model of already-parsed parts, in order (tests): checks them like open() does.
  static GgufModel from_parts(std::vector<GgufFile> parts);

  const GgufMetadata& metadata() const { return parts_.front().metadata(); }
  const std::vector<GgufFile>& parts() const { return parts_; }
  size_t tensor_count() const { return index_.size(); }
  const GgufTensor* find_tensor(std::string_view name) const;
  const GgufTensor& tensor(std::string_view name) const;  // throws when absent
  // Every tensor, parts in order and each part's tensors in file order.
  std::vector<const GgufTensor*> tensors() const;

 private:
  void index_tensors();
  std::vector<GgufFile> parts_;
  std::map<std::string, const GgufTensor*, std::less<>> index_;
};

}  // namespace meshlm::formats
