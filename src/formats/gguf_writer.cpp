#include "formats/gguf_writer.h"

#include <bit>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/error.h"

namespace meshlm::formats {

namespace {

constexpr uint32_t kVersion = 3;

// Little-endian encoding into the header buffer.
void put_uint(std::string& out, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) out.push_back(char(uint8_t(v >> (8 * i))));
}

void put_string(std::string& out, std::string_view s) {
  put_uint(out, s.size(), 8);
  out.append(s);
}

size_t width(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    default: return 8;
  }
}

void put_element(std::string& out, const GgufValue& v, size_t i) {
  const GgufType t = v.element_type();
  if (t == GgufType::String) return put_string(out, *v.as_string(i));
  if (t == GgufType::Bool) return put_uint(out, *v.as_bool(i) ? 1 : 0, 1);
  if (t == GgufType::F32) return put_uint(out, std::bit_cast<uint32_t>(float(*v.as_f64(i))), 4);
  if (t == GgufType::F64) return put_uint(out, std::bit_cast<uint64_t>(*v.as_f64(i)), 8);
  // Integers: the low bytes of the two's complement value.
  const uint64_t bits = v.as_u64(i) ? *v.as_u64(i) : uint64_t(*v.as_i64(i));
  put_uint(out, bits, width(t));
}

void put_value(std::string& out, const GgufValue& v) {
  put_uint(out, uint32_t(v.type()), 4);
  if (!v.is_array()) return put_element(out, v, 0);
  put_uint(out, uint32_t(v.element_type()), 4);
  put_uint(out, v.size(), 8);
  for (size_t i = 0; i < v.size(); ++i) put_element(out, v, i);
}

uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

}  // namespace

GgufWriter::GgufWriter(std::string path) : path_(std::move(path)), file_(path_) {}

GgufWriter::~GgufWriter() = default;  // an unfinished file's partial file goes with file_

void GgufWriter::fail(const std::string& msg) const { throw Error("gguf", "'" + path_ + "': " + msg); }

void GgufWriter::set(std::string key, GgufValue value) {
  if (header_written_) fail("key '" + key + "' set after the header was written");
  if (key.empty()) fail("empty metadata key");
  for (auto& [k, v] : metadata_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  metadata_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::set_all(const GgufMetadata& metadata) {
  for (const auto& [k, v] : metadata.entries()) set(k, v);
}

bool GgufWriter::remove(std::string_view key) {
  if (header_written_) fail("key '" + std::string(key) + "' removed after the header was written");
  for (auto it = metadata_.begin(); it != metadata_.end(); ++it)
    if (it->first == key) {
      metadata_.erase(it);
      return true;
    }
  return false;
}

uint32_t GgufWriter::alignment() const {
  for (const auto& [k, v] : metadata_) {
    if (k != "general.alignment") continue;
    auto a = v.is_array() ? std::nullopt : v.as_u64();
    if (!a || *a == 0 || *a > 0x80000000u || !std::has_single_bit(*a))
      fail("general.alignment (" + v.describe() + ") must be a power of two that fits a u32");
    return uint32_t(*a);
  }
  return GgufFile::kDefaultAlignment;
}

void GgufWriter::add_tensor(std::string name, WeightType type, std::vector<int64_t> shape) {
  if (header_written_) fail("tensor '" + name + "' declared after the header was written");
  if (name.empty()) fail("empty tensor name");
  if (name.size() > kMaxTensorName)
    fail("tensor name '" + name + "' is longer than " + std::to_string(kMaxTensorName) + " bytes");
  for (const Tensor& t : tensors_)
    if (t.name == name) fail("tensor '" + name + "' declared twice");
  if (shape.size() > GgufFile::kMaxDims)
    fail("tensor '" + name + "' has " + std::to_string(shape.size()) + " dims, GGUF allows " +
         std::to_string(GgufFile::kMaxDims));
  for (int64_t d : shape)
    if (d < 0) fail("tensor '" + name + "' has a negative dim");
  auto nbytes = tensor_bytes(type, shape);
  if (!nbytes)
    fail("tensor '" + name + "': its rows are not whole " + std::string(formats::name(type)) +
         " blocks, or it is too large");
  Tensor t{std::move(name), type, std::move(shape), *nbytes, 0};
  if (!tensors_.empty()) {
    const Tensor& prev = tensors_.back();
    t.offset = align_up(prev.offset + prev.nbytes, alignment());
  }
  tensors_.push_back(std::move(t));
}

void GgufWriter::write_raw(const void* data, size_t n) {
  if (!file_.write(data, n)) fail(file_.error());
  written_ += n;
}

void GgufWriter::pad_to_alignment() {
  static constexpr uint8_t kZeros[256] = {};
  uint64_t pad = align_up(written_, alignment()) - written_;
  while (pad > 0) {
    const size_t n = size_t(std::min<uint64_t>(pad, sizeof(kZeros)));
    write_raw(kZeros, n);
    pad -= n;
  }
}

void GgufWriter::write_header() {
  // Offsets were computed with the alignment as of each declaration: recompute them with the
  // final one, which set() may have changed since.
  const uint32_t align = alignment();
  for (size_t i = 1; i < tensors_.size(); ++i)
    tensors_[i].offset = align_up(tensors_[i - 1].offset + tensors_[i - 1].nbytes, align);

  std::string h;
  h.append("GGUF");
  put_uint(h, kVersion, 4);
  put_uint(h, tensors_.size(), 8);
  put_uint(h, metadata_.size(), 8);
  for (const auto& [k, v] : metadata_) {
    put_string(h, k);
    put_value(h, v);
  }
  for (const Tensor& t : tensors_) {
    put_string(h, t.name);
    put_uint(h, t.shape.size(), 4);
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put_uint(h, uint64_t(*d), 8);
    put_uint(h, uint32_t(info(t.type).ggml_type), 4);
    put_uint(h, t.offset, 8);
  }

  if (!file_.open()) fail(file_.error());
  header_written_ = true;
  write_raw(h.data(), h.size());
  pad_to_alignment();
  data_start_ = written_;
}

void GgufWriter::skip_empty_tensors(std::string_view until) {
  while (current_ < tensors_.size() && tensors_[current_].nbytes == 0 && tensors_[current_].name != until) {
    ++current_;
    current_written_ = 0;
  }
}

void GgufWriter::append(std::string_view name, std::span<const uint8_t> bytes) {
  if (finished_) fail("tensor '" + std::string(name) + "' appended to a finished file");
  if (!header_written_) write_header();
  // Zero-byte tensors need no append: passing on to a later tensor skips them.
  skip_empty_tensors(name);
  if (current_ >= tensors_.size())
    fail("tensor '" + std::string(name) + "' appended after all tensors were written");
  const Tensor& t = tensors_[current_];
  if (name != t.name)
    fail("tensor '" + std::string(name) + "' appended while '" + t.name +
         "' is the one being written (tensors are written in declared order)");
  if (bytes.size() > t.nbytes - current_written_)
    fail("tensor '" + t.name + "': " + std::to_string(current_written_ + bytes.size()) +
         " bytes appended, it has " + std::to_string(t.nbytes));
  // The reader finds each tensor at data start + offset: the file must be exactly there.
  if (current_written_ == 0 && written_ != data_start_ + t.offset)
    fail("internal: tensor '" + t.name + "' would start at " + std::to_string(written_) +
         ", its offset says " + std::to_string(data_start_ + t.offset));
  write_raw(bytes.data(), bytes.size());
  current_written_ += bytes.size();
  if (current_written_ == t.nbytes) {
    if (t.nbytes != 0) pad_to_alignment();
    ++current_;
    current_written_ = 0;
  }
}

void GgufWriter::finish() {
  if (finished_) return;
  if (!header_written_) write_header();
  skip_empty_tensors("");
  if (current_ < tensors_.size())
    fail("finish with tensor '" + tensors_[current_].name + "' incomplete (" +
         std::to_string(current_written_) + " of " + std::to_string(tensors_[current_].nbytes) +
         " bytes)");
  if (!file_.commit()) fail(file_.error());
  finished_ = true;
}

}  // namespace meshlm::formats
