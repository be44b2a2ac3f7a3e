#include "formats/gguf.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include "core/error.h"

namespace meshlm::formats {

namespace {

// The smallest encodings, to refuse counts no file of this size can hold before looping on them:
// a pair is a key (u64 length + at least 1 byte), a u32 type and at least 1 byte of value; a
// tensor info is a name (u64 + 1), u32 dims count, u32 type and u64 offset.
constexpr uint64_t kMinPairBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 4 + 8;
// Metadata arrays are decoded into owned vectors (8 bytes an element): a limit far above any
// real array (vocabularies are a few 100k) keeps a hostile file from asking for gigabytes.
constexpr uint64_t kMaxArrayElements = uint64_t(1) << 24;
// Vectors sized from counts in the file grow as elements are read, beyond this first reserve.
constexpr uint64_t kMaxReserve = uint64_t(1) << 16;

size_t reserve_for(uint64_t n) { return size_t(std::min(n, kMaxReserve)); }

// ggml's type names by id (ggml.h), including the types meshlm cannot use and the ids ggml
// retired, so a refusal can say what the file holds.
constexpr std::string_view kGgmlTypeNames[] = {
    "F32",     "F16",       "Q4_0",      "Q4_1",      "Q4_2 (retired)", "Q4_3 (retired)",
    "Q5_0",    "Q5_1",      "Q8_0",      "Q8_1",      "Q2_K",           "Q3_K",
    "Q4_K",    "Q5_K",      "Q6_K",      "Q8_K",      "IQ2_XXS",        "IQ2_XS",
    "IQ3_XXS", "IQ1_S",     "IQ4_NL",    "IQ3_S",     "IQ2_S",          "IQ4_XS",
    "I8",      "I16",       "I32",       "I64",       "F64",            "IQ1_M",
    "BF16",    "Q4_0_4_4 (retired)", "Q4_0_4_8 (retired)", "Q4_0_8_8 (retired)", "TQ1_0", "TQ2_0",
    "IQ4_NL_4_4 (retired)", "IQ4_NL_4_8 (retired)", "IQ4_NL_8_8 (retired)", "MXFP4", "NVFP4",
    "Q1_0",    "Q2_0",
};

size_t scalar_bytes(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

bool is_signed(GgufType t) {
  return t == GgufType::I8 || t == GgufType::I16 || t == GgufType::I32 || t == GgufType::I64;
}

// The range of an integer element type, as int64 bounds (U64's upper bound is handled apart).
bool fits(GgufType t, int64_t v) {
  switch (t) {
    case GgufType::U8: return v >= 0 && v <= 0xff;
    case GgufType::I8: return v >= -128 && v <= 127;
    case GgufType::U16: return v >= 0 && v <= 0xffff;
    case GgufType::I16: return v >= -32768 && v <= 32767;
    case GgufType::U32: return v >= 0 && v <= int64_t(0xffffffff);
    case GgufType::I32: return v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max();
    case GgufType::U64: return v >= 0;
    case GgufType::I64: return true;
    default: return false;
  }
}

template <typename T>
std::string dims_text(const std::vector<T>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Reads the file front to back; every read checks the bytes are there first.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  Error fail(const std::string& msg) const { return Error("gguf", "'" + name_ + "': " + msg); }
  size_t pos() const { return pos_; }
  size_t left() const { return bytes_.size() - pos_; }

  void need(size_t n, std::string_view what) const {
    if (n > left())
      throw fail(std::string(what) + " at offset " + std::to_string(pos_) + " needs " +
                 std::to_string(n) + " bytes, the file has " + std::to_string(left()) +
                 " left (" + std::to_string(bytes_.size()) + " bytes): truncated or corrupt");
  }
  uint64_t uint(size_t n, std::string_view what) {
    need(n, what);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t(bytes_[pos_ + i]) << (8 * i);
    pos_ += n;
    return v;
  }
  uint32_t u32(std::string_view what) { return uint32_t(uint(4, what)); }
  uint64_t u64(std::string_view what) { return uint(8, what); }
  std::string str(std::string_view what) {
    const size_t at = pos_;
    uint64_t n = u64(what);
    if (n > left())
      throw fail(std::string(what) + " at offset " + std::to_string(at) + " has length " +
                 std::to_string(n) + ", past the end of the file (" + std::to_string(left()) +
                 " bytes left): truncated or corrupt");
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& name_;
  size_t pos_ = 0;
};

GgufValue read_scalar(Cursor& c, GgufType t, const std::string& what) {
  switch (t) {
    case GgufType::U8: return GgufValue::from_u8(uint8_t(c.uint(1, what)));
    case GgufType::I8: return GgufValue::from_i8(int8_t(c.uint(1, what)));
    case GgufType::U16: return GgufValue::from_u16(uint16_t(c.uint(2, what)));
    case GgufType::I16: return GgufValue::from_i16(int16_t(c.uint(2, what)));
    case GgufType::U32: return GgufValue::from_u32(uint32_t(c.uint(4, what)));
    case GgufType::I32: return GgufValue::from_i32(int32_t(c.uint(4, what)));
    case GgufType::U64: return GgufValue::from_u64(c.uint(8, what));
    case GgufType::I64: return GgufValue::from_i64(int64_t(c.uint(8, what)));
    // Any non-zero byte reads as true, as C's bool conversion does.
    case GgufType::Bool: return GgufValue::from_bool(c.uint(1, what) != 0);
    case GgufType::F32: return GgufValue::from_f32(std::bit_cast<float>(uint32_t(c.uint(4, what))));
    case GgufType::F64: return GgufValue::from_f64(std::bit_cast<double>(c.uint(8, what)));
    case GgufType::String: return GgufValue::from_string(c.str(what));
    default: throw c.fail(what + " has unknown value type " + std::to_string(uint32_t(t)));
  }
}

// The n elements of an array of t (n already checked against the bytes left).
GgufValue read_array(Cursor& c, GgufType t, uint64_t n, const std::string& what) {
  if (t == GgufType::String) {
    std::vector<std::string> v;
    v.reserve(reserve_for(n));
    for (uint64_t i = 0; i < n; ++i) v.push_back(c.str(what));
    return GgufValue::string_array(std::move(v));
  }
  const size_t w = scalar_bytes(t);
  if (gguf_is_float(t)) {
    std::vector<double> v;
    v.reserve(reserve_for(n));
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t bits = c.uint(w, what);
      v.push_back(t == GgufType::F32 ? double(std::bit_cast<float>(uint32_t(bits)))
                                     : std::bit_cast<double>(bits));
    }
    return GgufValue::float_array(t, std::move(v));
  }
  if (t == GgufType::Bool) {
    std::vector<bool> v;
    v.reserve(reserve_for(n));
    for (uint64_t i = 0; i < n; ++i) v.push_back(c.uint(1, what) != 0);
    return GgufValue::bool_array(v);
  }
  if (t == GgufType::U64) {
    std::vector<uint64_t> v;
    v.reserve(reserve_for(n));
    for (uint64_t i = 0; i < n; ++i) v.push_back(c.uint(8, what));
    return GgufValue::u64_array(std::move(v));
  }
  std::vector<int64_t> v;
  v.reserve(reserve_for(n));
  const unsigned shift = unsigned(64 - 8 * w);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t bits = c.uint(w, what);
    // Sign-extend the signed types from their width.
    v.push_back(is_signed(t) ? int64_t(bits << shift) >> shift : int64_t(bits));
  }
  return GgufValue::int_array(t, std::move(v));
}

GgufValue read_value(Cursor& c, uint32_t type_id, const std::string& key) {
  const std::string what = "key '" + key + "'";
  const auto t = GgufType(type_id);
  if (type_id > uint32_t(GgufType::F64))
    throw c.fail(what + " has unknown value type " + std::to_string(type_id));
  if (t != GgufType::Array) return read_scalar(c, t, what);
  const uint32_t elem_id = c.u32(what + "'s array type");
  if (elem_id == uint32_t(GgufType::Array))
    throw c.fail(what + " is an array of arrays, which meshlm does not read");
  if (elem_id > uint32_t(GgufType::F64))
    throw c.fail(what + " is an array of unknown value type " + std::to_string(elem_id));
  const auto elem = GgufType(elem_id);
  const uint64_t n = c.u64(what + "'s array length");
  // Each element takes at least this much: a count beyond what is left is refused up front.
  const uint64_t min_bytes = elem == GgufType::String ? 8 : scalar_bytes(elem);
  if (n > c.left() / min_bytes)
    throw c.fail(what + " is an array of " + std::to_string(n) + " " +
                 std::string(gguf_type_name(elem)) + ", more than the " +
                 std::to_string(c.left()) + " bytes left can hold: truncated or corrupt");
  if (n > kMaxArrayElements)
    throw c.fail(what + " is an array of " + std::to_string(n) + " elements, more than meshlm reads (" +
                 std::to_string(kMaxArrayElements) + ")");
  return read_array(c, elem, n, what);
}

}  // namespace

// ---- value types ----

std::string_view gguf_type_name(GgufType t) {
  static constexpr std::string_view names[] = {"u8",  "i8",     "u16",   "i16", "u32",
                                               "i32", "f32",    "bool",  "string", "array",
                                               "u64", "i64",    "f64"};
  const auto i = size_t(t);
  return i < std::size(names) ? names[i] : "unknown";
}

bool gguf_is_integer(GgufType t) {
  return t == GgufType::U8 || t == GgufType::I8 || t == GgufType::U16 || t == GgufType::I16 ||
         t == GgufType::U32 || t == GgufType::I32 || t == GgufType::U64 || t == GgufType::I64;
}

bool gguf_is_float(GgufType t) { return t == GgufType::F32 || t == GgufType::F64; }

std::string_view ggml_type_name(uint32_t id) {
  return id < std::size(kGgmlTypeNames) ? kGgmlTypeNames[id] : std::string_view();
}

GgufValue GgufValue::integer(GgufType t, uint64_t bits) {
  GgufValue v;
  v.type_ = t;
  v.ints_ = {bits};
  return v;
}

GgufValue GgufValue::from_f32(float f) {
  GgufValue v;
  v.type_ = GgufType::F32;
  v.floats_ = {f};
  return v;
}

GgufValue GgufValue::from_f64(double f) {
  GgufValue v;
  v.type_ = GgufType::F64;
  v.floats_ = {f};
  return v;
}

GgufValue GgufValue::from_string(std::string s) {
  GgufValue v;
  v.type_ = GgufType::String;
  v.strings_.push_back(std::move(s));
  return v;
}

GgufValue GgufValue::int_array(GgufType element, std::vector<int64_t> values) {
  if (!gguf_is_integer(element))
    throw Error("gguf", "an integer array cannot have " + std::string(gguf_type_name(element)) +
                            " elements");
  GgufValue v;
  v.type_ = element;
  v.array_ = true;
  v.ints_.reserve(values.size());
  for (int64_t x : values) {
    if (!fits(element, x))
      throw Error("gguf", std::to_string(x) + " does not fit an array of " +
                              std::string(gguf_type_name(element)));
    v.ints_.push_back(uint64_t(x));
  }
  return v;
}

GgufValue GgufValue::u64_array(std::vector<uint64_t> values) {
  GgufValue v;
  v.type_ = GgufType::U64;
  v.array_ = true;
  v.ints_ = std::move(values);
  return v;
}

GgufValue GgufValue::bool_array(const std::vector<bool>& values) {
  GgufValue v;
  v.type_ = GgufType::Bool;
  v.array_ = true;
  v.ints_.assign(values.begin(), values.end());
  return v;
}

GgufValue GgufValue::float_array(GgufType element, std::vector<double> values) {
  if (!gguf_is_float(element))
    throw Error("gguf", "a float array cannot have " + std::string(gguf_type_name(element)) +
                            " elements");
  GgufValue v;
  v.type_ = element;
  v.array_ = true;
  v.floats_ = std::move(values);
  // An F32 array holds what an f32 can: round now so a written and re-read value compares equal.
  if (element == GgufType::F32)
    for (double& x : v.floats_) x = double(float(x));
  return v;
}

GgufValue GgufValue::string_array(std::vector<std::string> values) {
  GgufValue v;
  v.type_ = GgufType::String;
  v.array_ = true;
  v.strings_ = std::move(values);
  return v;
}

size_t GgufValue::size() const {
  if (type_ == GgufType::String) return strings_.size();
  if (gguf_is_float(type_)) return floats_.size();
  return ints_.size();
}

std::string GgufValue::describe() const {
  if (array_) return "array of " + std::to_string(size()) + " " + std::string(gguf_type_name(type_));
  std::string s(gguf_type_name(type_));
  if (const std::string* str = as_string()) {
    constexpr size_t kShown = 40;
    return s + " \"" + str->substr(0, kShown) + (str->size() > kShown ? "...\"" : "\"");
  }
  if (auto b = as_bool()) return s + (*b ? " true" : " false");
  if (auto f = as_f64()) return s + " " + std::to_string(*f);
  if (auto i = as_i64()) return s + " " + std::to_string(*i);
  if (auto u = as_u64()) return s + " " + std::to_string(*u);
  return s;
}

std::optional<int64_t> GgufValue::as_i64(size_t i) const {
  if (!gguf_is_integer(type_) || i >= ints_.size()) return std::nullopt;
  const uint64_t bits = ints_[i];
  if (!is_signed(type_) && bits > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return int64_t(bits);
}

std::optional<uint64_t> GgufValue::as_u64(size_t i) const {
  if (!gguf_is_integer(type_) || i >= ints_.size()) return std::nullopt;
  if (is_signed(type_) && int64_t(ints_[i]) < 0) return std::nullopt;
  return ints_[i];
}

std::optional<double> GgufValue::as_f64(size_t i) const {
  if (!gguf_is_float(type_) || i >= floats_.size()) return std::nullopt;
  return floats_[i];
}

std::optional<bool> GgufValue::as_bool(size_t i) const {
  if (type_ != GgufType::Bool || i >= ints_.size()) return std::nullopt;
  return ints_[i] != 0;
}

const std::string* GgufValue::as_string(size_t i) const {
  if (type_ != GgufType::String || i >= strings_.size()) return nullptr;
  return &strings_[i];
}

// ---- metadata ----

void GgufMetadata::add(std::string key, GgufValue value) {
  if (index_.count(key))
    throw Error("gguf", "'" + source_ + "': key '" + key + "' appears more than once");
  index_.emplace(key, entries_.size());
  entries_.emplace_back(std::move(key), std::move(value));
}

const GgufValue* GgufMetadata::find(std::string_view key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const GgufValue& GgufMetadata::at(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) throw Error("gguf", "'" + source_ + "': missing key '" + std::string(key) + "'");
  return *v;
}

void GgufMetadata::fail_type(std::string_view key, const GgufValue& v, std::string_view want) const {
  throw Error("gguf", "'" + source_ + "': key '" + std::string(key) + "' is " + v.describe() +
                          ", not " + std::string(want));
}

std::optional<uint64_t> GgufMetadata::opt_u64(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  auto u = v->is_array() ? std::nullopt : v->as_u64();
  if (!u) fail_type(key, *v, "an unsigned integer");
  return u;
}
uint64_t GgufMetadata::get_u64(std::string_view key) const {
  at(key);
  return *opt_u64(key);
}
uint64_t GgufMetadata::get_u64(std::string_view key, uint64_t fallback) const {
  return opt_u64(key).value_or(fallback);
}

std::optional<uint32_t> GgufMetadata::opt_u32(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  auto u = v->is_array() ? std::nullopt : v->as_u64();
  if (!u || *u > 0xffffffffu) fail_type(key, *v, "an integer that fits a u32");
  return uint32_t(*u);
}
uint32_t GgufMetadata::get_u32(std::string_view key) const {
  at(key);
  return *opt_u32(key);
}
uint32_t GgufMetadata::get_u32(std::string_view key, uint32_t fallback) const {
  return opt_u32(key).value_or(fallback);
}

std::optional<int64_t> GgufMetadata::opt_i64(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  auto i = v->is_array() ? std::nullopt : v->as_i64();
  if (!i) fail_type(key, *v, "an integer that fits an i64");
  return i;
}
int64_t GgufMetadata::get_i64(std::string_view key) const {
  at(key);
  return *opt_i64(key);
}
int64_t GgufMetadata::get_i64(std::string_view key, int64_t fallback) const {
  return opt_i64(key).value_or(fallback);
}

std::optional<float> GgufMetadata::opt_f32(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  auto f = v->is_array() ? std::nullopt : v->as_f64();
  if (!f) fail_type(key, *v, "a float");
  return float(*f);
}
float GgufMetadata::get_f32(std::string_view key) const {
  at(key);
  return *opt_f32(key);
}
float GgufMetadata::get_f32(std::string_view key, float fallback) const {
  return opt_f32(key).value_or(fallback);
}
double GgufMetadata::get_f64(std::string_view key) const {
  const GgufValue& v = at(key);
  auto f = v.is_array() ? std::nullopt : v.as_f64();
  if (!f) fail_type(key, v, "a float");
  return *f;
}

bool GgufMetadata::get_bool(std::string_view key) const {
  const GgufValue& v = at(key);
  auto b = v.is_array() ? std::nullopt : v.as_bool();
  if (!b) fail_type(key, v, "a bool");
  return *b;
}
bool GgufMetadata::get_bool(std::string_view key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

const std::string& GgufMetadata::get_string(std::string_view key) const {
  const GgufValue& v = at(key);
  const std::string* s = v.is_array() ? nullptr : v.as_string();
  if (!s) fail_type(key, v, "a string");
  return *s;
}
std::string GgufMetadata::get_string(std::string_view key, std::string_view fallback) const {
  return has(key) ? get_string(key) : std::string(fallback);
}
std::optional<std::string> GgufMetadata::opt_string(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_string(key);
}

std::vector<std::string> GgufMetadata::get_string_array(std::string_view key) const {
  const GgufValue& v = at(key);
  if (!v.is_array() || v.element_type() != GgufType::String) fail_type(key, v, "an array of strings");
  std::vector<std::string> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) out.push_back(*v.as_string(i));
  return out;
}

std::vector<int64_t> GgufMetadata::get_int_array(std::string_view key) const {
  const GgufValue& v = at(key);
  if (!v.is_array() || !gguf_is_integer(v.element_type())) fail_type(key, v, "an array of integers");
  std::vector<int64_t> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    auto x = v.as_i64(i);
    if (!x) fail_type(key, v, "an array of integers that fit an i64");
    out.push_back(*x);
  }
  return out;
}

std::vector<float> GgufMetadata::get_float_array(std::string_view key) const {
  const GgufValue& v = at(key);
  if (!v.is_array() || !gguf_is_float(v.element_type())) fail_type(key, v, "an array of floats");
  std::vector<float> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) out.push_back(float(*v.as_f64(i)));
  return out;
}

// ---- tensors and files ----

int64_t GgufTensor::elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;  // validated when read: no overflow
  return n;
}

GgufFile GgufFile::open(const std::string& path) {
  GgufFile f;
  f.map_ = MappedFile(path);
  f.bytes_ = {f.map_.data(), f.map_.size()};
  f.name_ = path;
  f.parse_all();
  return f;
}

GgufFile GgufFile::parse(std::span<const uint8_t> bytes, std::string name) {
  GgufFile f;
  f.bytes_ = bytes;
  f.name_ = std::move(name);
  f.parse_all();
  return f;
}

void GgufFile::parse_all() {
  Cursor c(bytes_, name_);
  metadata_ = GgufMetadata(name_);
  // Magic and version, checked before the rest of the header so a short or foreign file says
  // what it is rather than that it is short.
  if (bytes_.size() < 4 || std::memcmp(bytes_.data(), "GGUF", 4) != 0)
    throw c.fail("not a GGUF file (it does not start with the bytes \"GGUF\")");
  c.uint(4, "magic");
  version_ = c.u32("version");
  if (version_ == 1)
    throw c.fail("GGUF version 1 is not supported (an obsolete layout with 32-bit counts); "
                 "convert the model again with a current llama.cpp");
  // A big-endian file holds its version byte-swapped: 3 reads as 0x03000000.
  const uint32_t swapped = (version_ >> 24) | ((version_ >> 8) & 0xff00) |
                           ((version_ << 8) & 0xff0000) | (version_ << 24);
  if ((version_ & 0xffff) == 0 && swapped >= 1 && swapped <= 3)
    throw c.fail("a big-endian GGUF file (version " + std::to_string(swapped) +
                 " with its bytes swapped); only little-endian GGUF files are supported");
  if (version_ != 2 && version_ != 3)
    throw c.fail("unsupported GGUF version " + std::to_string(version_) + " (versions 2 and 3 are read)");
  const uint64_t n_tensors = c.u64("tensor count");
  const uint64_t n_kv = c.u64("metadata count");
  if (n_kv > c.left() / kMinPairBytes)
    throw c.fail("metadata count " + std::to_string(n_kv) + " is impossible in a file of " +
                 std::to_string(bytes_.size()) + " bytes: corrupt");
  if (n_tensors > c.left() / kMinTensorInfoBytes)
    throw c.fail("tensor count " + std::to_string(n_tensors) + " is impossible in a file of " +
                 std::to_string(bytes_.size()) + " bytes: corrupt");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str("key of metadata pair " + std::to_string(i));
    if (key.empty()) throw c.fail("metadata pair " + std::to_string(i) + " has an empty key");
    const uint32_t type = c.u32("type of key '" + key + "'");
    GgufValue value = read_value(c, type, key);
    metadata_.add(std::move(key), std::move(value));
  }

  if (const GgufValue* a = metadata_.find("general.alignment")) {
    auto v = a->is_array() ? std::nullopt : a->as_u64();
    if (!v || *v == 0 || *v > 0x80000000u || !std::has_single_bit(*v))
      throw c.fail("general.alignment (" + a->describe() + ") must be a power of two that fits a u32");
    alignment_ = uint32_t(*v);
  }

  tensors_.reserve(reserve_for(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = c.str("name of tensor " + std::to_string(i));
    if (t.name.empty()) throw c.fail("tensor " + std::to_string(i) + " has an empty name");
    const std::string what = "tensor '" + t.name + "'";
    const uint32_t n_dims = c.u32(what + "'s dims count");
    if (n_dims > kMaxDims)
      throw c.fail(what + " has " + std::to_string(n_dims) + " dims, at most " +
                   std::to_string(kMaxDims) + " are allowed");
    // The element count must fit an int64 (ggml's int64 ne[]), whatever the type's size.
    constexpr uint64_t kMaxCount = uint64_t(std::numeric_limits<int64_t>::max());
    std::vector<uint64_t> raw(n_dims);
    uint64_t elements = 1;
    bool overflow = false;
    for (uint64_t& dim : raw) {
      dim = c.u64(what + "'s dims");
      if (dim > kMaxCount || (dim != 0 && elements > kMaxCount / dim)) overflow = true;
      else elements *= dim;
    }
    if (overflow) throw c.fail(what + "'s dims " + dims_text(raw) + " overflow a 64-bit element count");
    t.dims.assign(raw.begin(), raw.end());
    const uint32_t type_id = c.u32(what + "'s type");
    auto type = from_ggml_type(type_id);
    if (!type) {
      const std::string_view known = ggml_type_name(type_id);
      throw c.fail(what + " has ggml type " +
                   (known.empty() ? "id " + std::to_string(type_id) + " (unknown)"
                                  : std::string(known) + " (" + std::to_string(type_id) + ")") +
                   ", which meshlm cannot read");
    }
    t.type = *type;
    t.offset = c.u64(what + "'s offset");
    const FormatInfo& f = info(t.type);
    const int64_t row = t.dims.empty() ? 1 : t.dims[0];
    if (row % f.block_elems != 0)
      throw c.fail(what + "'s rows of " + std::to_string(row) + " elements (dims " + dims_text(t.dims) +
                   ") are not a whole number of " + std::string(f.name) + " blocks of " +
                   std::to_string(f.block_elems));
    const std::vector<int64_t> shape = t.shape();
    auto nbytes = tensor_bytes(t.type, shape);
    if (!nbytes)
      throw c.fail(what + " (" + std::string(f.name) + ", dims " + dims_text(t.dims) + ") is too large");
    t.nbytes = *nbytes;
    if (t.offset % alignment_ != 0)
      throw c.fail(what + "'s offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                   std::to_string(alignment_));
    if (!tensor_index_.emplace(t.name, tensors_.size()).second)
      throw c.fail("tensor '" + t.name + "' appears more than once");
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t end_of_infos = c.pos();
  data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t size = bytes_.size();
  for (GgufTensor& t : tensors_) {
    if (data_offset_ > size || t.offset > size - data_offset_ || t.nbytes > size - data_offset_ - t.offset)
      throw c.fail("tensor '" + t.name + "' (" + std::to_string(t.nbytes) + " bytes at data offset " +
                   std::to_string(t.offset) + ", file offset " + std::to_string(data_offset_ + t.offset) +
                   ") extends past the end of the file (" + std::to_string(size) +
                   " bytes): truncated or corrupt");
    t.file_offset = data_offset_ + t.offset;
    t.data = bytes_.data() + t.file_offset;
  }
  // Tensors holding bytes must not share any (a zero-byte tensor holds none).
  std::vector<const GgufTensor*> sorted;
  for (const GgufTensor& t : tensors_)
    if (t.nbytes != 0) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    const GgufTensor& a = *sorted[i - 1];
    const GgufTensor& b = *sorted[i];
    if (b.offset < a.offset + a.nbytes)
      throw c.fail("tensors '" + a.name + "' (data bytes " + std::to_string(a.offset) + ".." +
                   std::to_string(a.offset + a.nbytes) + ") and '" + b.name + "' (from " +
                   std::to_string(b.offset) + ") overlap");
  }
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::tensor(std::string_view name) const {
  const GgufTensor* t = find_tensor(name);
  if (!t) throw Error("gguf", "'" + name_ + "': no tensor '" + std::string(name) + "'");
  return *t;
}

// ---- models: one file or a split set ----

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSplitNo = "split.no";
constexpr std::string_view kSplitCount = "split.count";
constexpr std::string_view kSplitTensors = "split.tensors.count";

// "PREFIX-00002-of-00005.gguf" -> {PREFIX, 2, 5}: gguf-split's names (1-based part numbers).
struct SplitName {
  std::string prefix;
  int part = 0;
  int count = 0;
};

std::optional<SplitName> parse_split_name(const std::string& file_name) {
  constexpr std::string_view kExt = ".gguf";
  constexpr size_t kTail = 15;  // "-00001-of-00005"
  if (file_name.size() < kExt.size() + kTail + 1 || !file_name.ends_with(kExt)) return std::nullopt;
  const std::string stem = file_name.substr(0, file_name.size() - kExt.size());
  const std::string tail = stem.substr(stem.size() - kTail);
  if (tail[0] != '-' || tail.substr(6, 4) != "-of-") return std::nullopt;
  auto number = [&](size_t at) {
    int n = 0;
    for (size_t i = at; i < at + 5; ++i) {
      if (tail[i] < '0' || tail[i] > '9') return -1;
      n = n * 10 + (tail[i] - '0');
    }
    return n;
  };
  SplitName s{stem.substr(0, stem.size() - kTail), number(1), number(10)};
  if (s.part < 1 || s.count < 1 || s.part > s.count) return std::nullopt;
  return s;
}

// split.count of a part (1 when absent).
uint64_t split_count(const GgufFile& f) { return f.metadata().get_u64(kSplitCount, 1); }

}  // namespace

std::string gguf_split_path(std::string_view prefix, int part, int count) {
  char tail[32];
  std::snprintf(tail, sizeof(tail), "-%05d-of-%05d.gguf", part + 1, count);
  return std::string(prefix) + tail;
}

GgufModel GgufModel::open(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    // One model per folder: single files, and split sets counted once.
    std::set<std::string> models;
    std::map<std::string, std::string> first_file;  // model -> a file of it, to open
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::directory_entry& entry = *it;
      const std::string file = entry.path().filename().string();
      std::error_code file_ec;
      if (!file.ends_with(".gguf") || !entry.is_regular_file(file_ec)) continue;
      auto split = parse_split_name(file);
      const std::string model =
          split ? split->prefix + "-*-of-" + gguf_split_path("", 0, split->count).substr(10) : file;
      models.insert(model);
      first_file.emplace(model, entry.path().string());
    }
    if (ec) throw Error("gguf", "cannot list '" + path + "': " + ec.message());
    if (models.empty()) throw Error("gguf", "no .gguf file in '" + path + "'");
    if (models.size() > 1) {
      std::string list;
      for (const auto& m : models) list += (list.empty() ? "" : ", ") + m;
      throw Error("gguf", "'" + path + "' holds several GGUF models (" + list +
                              "): give the path of the file to use");
    }
    return open(first_file.begin()->second);
  }

  GgufFile given = GgufFile::open(path);
  const std::string file_name = fs::path(path).filename().string();
  const auto split = parse_split_name(file_name);
  const uint64_t count = split_count(given);
  if (count <= 1) {
    if (split && split->count > 1)
      throw Error("gguf", "'" + path + "' is named as part " + std::to_string(split->part) + " of " +
                              std::to_string(split->count) + " but has no split.count (or 1)");
    std::vector<GgufFile> parts;
    parts.push_back(std::move(given));
    return from_parts(std::move(parts));
  }
  if (!split || uint64_t(split->count) != count)
    throw Error("gguf", "'" + path + "' is part of a split model of " + std::to_string(count) +
                            " files (split.count) but is not named NAME-0000i-of-" +
                            gguf_split_path("", 0, int(std::min<uint64_t>(count, 99999))).substr(10) +
                            ", so its other parts cannot be found");
  const fs::path dir = fs::path(path).parent_path();
  std::vector<GgufFile> parts;
  for (int i = 0; i < split->count; ++i) {
    if (i + 1 == split->part) {
      parts.push_back(std::move(given));
      continue;
    }
    const std::string part_path = (dir / gguf_split_path(split->prefix, i, split->count)).string();
    if (!fs::exists(part_path, ec))
      throw Error("gguf", "'" + path + "' is part " + std::to_string(split->part) + " of " +
                              std::to_string(split->count) + " but part " + std::to_string(i + 1) +
                              " ('" + part_path + "') is missing");
    parts.push_back(GgufFile::open(part_path));
  }
  return from_parts(std::move(parts));
}

GgufModel GgufModel::from_parts(std::vector<GgufFile> parts) {
  if (parts.empty()) throw Error("gguf", "a model needs at least one file");
  const size_t n = parts.size();
  uint64_t total_tensors = 0;
  for (size_t i = 0; i < n; ++i) {
    const GgufFile& f = parts[i];
    const uint64_t count = split_count(f);
    if (count != n)
      throw Error("gguf", "'" + f.name() + "': split.count is " + std::to_string(count) + ", the model has " +
                              std::to_string(n) + (n == 1 ? " file" : " files"));
    if (auto no = f.metadata().opt_u64(kSplitNo); (no || n > 1) && no.value_or(n) != i)
      throw Error("gguf", "'" + f.name() + "': split.no is " + (no ? std::to_string(*no) : "missing") +
                              ", expected " + std::to_string(i) + " (file " + std::to_string(i + 1) +
                              " of " + std::to_string(n) + ")");
    total_tensors += f.tensors().size();
  }
  if (auto declared = parts.front().metadata().opt_i64(kSplitTensors);
      declared && uint64_t(*declared) != total_tensors)
    throw Error("gguf", "'" + parts.front().name() + "': split.tensors.count is " + std::to_string(*declared) +
                            " but the " + std::to_string(n) + " files hold " +
                            std::to_string(total_tensors) + " tensors");
  GgufModel m;
  m.parts_ = std::move(parts);
  m.index_tensors();
  return m;
}

void GgufModel::index_tensors() {
  std::map<std::string_view, const GgufFile*> owner;
  for (const GgufFile& f : parts_)
    for (const GgufTensor& t : f.tensors()) {
      auto [it, fresh] = owner.emplace(t.name, &f);
      if (!fresh)
        throw Error("gguf", "tensor '" + t.name + "' is in both '" + it->second->name() + "' and '" +
                                f.name() + "'");
      index_.emplace(t.name, &t);
    }
}

const GgufTensor* GgufModel::find_tensor(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const GgufTensor& GgufModel::tensor(std::string_view name) const {
  const GgufTensor* t = find_tensor(name);
  if (!t) throw Error("gguf", "'" + parts_.front().name() + "': no tensor '" + std::string(name) + "'");
  return *t;
}

std::vector<const GgufTensor*> GgufModel::tensors() const {
  std::vector<const GgufTensor*> out;
  out.reserve(index_.size());
  for (const GgufFile& f : parts_)
    for (const GgufTensor& t : f.tensors()) out.push_back(&t);
  return out;
}

bool is_gguf_model_path(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_regular_file(p, ec)) return p.extension() == ".gguf";
  if (!fs::is_directory(p, ec) || fs::exists(p / "config.json", ec)) return false;
  for (const fs::directory_entry& e : fs::directory_iterator(p, ec))
    if (e.path().extension() == ".gguf" && e.is_regular_file(ec)) return true;
  return false;
}

}  // namespace meshlm::formats
