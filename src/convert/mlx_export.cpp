#include "convert/mlx_export.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "core/half.h"
#include "core/json_file.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/schema.h"

namespace meshlm::convert {

namespace {

namespace fs = std::filesystem;
constexpr int64_t kChunkElements = int64_t(1) << 22;

[[noreturn]] void fail(const std::string& msg) { throw Error("quantize", msg); }

// f32 -> bf16 as numpy code does it: round to nearest even on the upper half, no NaN case.
uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

uint16_t encode(float f, WeightType dtype) { return dtype == WeightType::F16 ? f32_to_f16(f) : to_bf16(f); }
float decode(uint16_t b, WeightType dtype) { return dtype == WeightType::F16 ? f16_to_f32(b) : bf16_to_f32(b); }

// A safetensors file written in declared order, with U32 tensors (which model/'s writer, being
// for weights, does not know).
class MlxFileWriter {
 public:
  struct Entry {
    std::string name;
    std::string dtype;  // "U32", "BF16", "F16"
    std::vector<int64_t> shape;
    uint64_t nbytes;
  };
  MlxFileWriter(std::string path, std::vector<Entry> entries) : path_(std::move(path)), partial_(path_ + ".partial") {
    // The header as Python's json.dumps(separators=(",", ":")) writes it.
    std::string h = R"({"__metadata__":{"format":"mlx"})";
    uint64_t off = 0;
    for (const Entry& e : entries) {
      h += "," + nlohmann::json(e.name).dump() + R"(:{"dtype":")" + e.dtype + R"(","shape":[)";
      for (size_t i = 0; i < e.shape.size(); ++i) h += (i ? "," : "") + std::to_string(e.shape[i]);
      h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + e.nbytes) + "]}";
      off += e.nbytes;
    }
    h += "}";
    h.append((8 - h.size() % 8) % 8, ' ');
    file_.reset(std::fopen(partial_.c_str(), "wb"));
    if (!file_) fail("cannot create '" + partial_ + "': " + std::strerror(errno));
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(h.size()) >> (8 * i));
    write(len, 8);
    write(h.data(), h.size());
    total_ = off;
  }
  ~MlxFileWriter() {
    if (done_) return;
    file_.reset();
    std::error_code ec;
    fs::remove(partial_, ec);
  }
  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, file_.get()) != n) fail("write to '" + partial_ + "' failed: " + std::strerror(errno));
    written_ += n;
  }
  void finish() {
    std::FILE* f = file_.release();
    const bool ok = std::fflush(f) == 0;
    if (std::fclose(f) != 0 || !ok) fail("closing '" + partial_ + "' failed");
    std::error_code ec;
    fs::rename(partial_, path_, ec);
    if (ec) fail("cannot rename '" + partial_ + "': " + ec.message());
    done_ = true;
  }

 private:
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::string path_, partial_;
  std::unique_ptr<std::FILE, Closer> file_;
  uint64_t total_ = 0, written_ = 0;
  bool done_ = false;
};

// Runs fn(first_row, n_rows) over [0, rows) in chunks across the pool; rethrows the first error.
template <typename Fn>
void parallel_rows(ThreadPool& pool, int64_t rows, Fn&& fn) {
  std::exception_ptr error;
  std::mutex m;
  pool.parallel_for(rows, [&](int64_t b, int64_t e, int) {
    if (b >= e) return;
    try {
      fn(b, e - b);
    } catch (...) {
      std::lock_guard<std::mutex> lock(m);
      if (!error) error = std::current_exception();
    }
  });
  if (error) std::rethrow_exception(error);
}

}  // namespace

void mlx_quantize_row(const float* w, int64_t n, int bits, int group_size, WeightType dtype, uint32_t* packed,
                      uint16_t* scales, uint16_t* biases) {
  const uint32_t nmax = (1u << bits) - 1;
  std::fill(packed, packed + n * bits / 32, 0u);
  for (int64_t g = 0; g < n / group_size; ++g) {
    const float* x = w + g * group_size;
    float lo = x[0], hi = x[0];
    for (int j = 1; j < group_size; ++j) {
      lo = std::min(lo, x[j]);
      hi = std::max(hi, x[j]);
    }
    const float scale = std::max((hi - lo) / float(nmax), 1e-7f);
    scales[g] = encode(scale, dtype);
    biases[g] = encode(lo, dtype);
    const float s = decode(scales[g], dtype), b = decode(biases[g], dtype);
    for (int j = 0; j < group_size; ++j) {
      float v = std::nearbyint((x[j] - b) / s);  // round half to even (the default rounding mode)
      v = std::clamp(v, 0.0f, float(nmax));
      const uint64_t pos = uint64_t(g * group_size + j) * uint64_t(bits);
      const uint64_t code = uint64_t(v);
      packed[pos / 32] |= uint32_t(code << (pos % 32));
      if (pos % 32 + bits > 32) packed[pos / 32 + 1] |= uint32_t(code >> (32 - pos % 32));
    }
  }
}

void export_mlx(const std::string& hf_dir, const std::string& out_dir, const MlxOptions& o) {
  if (o.bits != 4 && o.bits != 8) fail("MLX bits must be 4 or 8, got " + std::to_string(o.bits));
  if (o.group_size != 32 && o.group_size != 64 && o.group_size != 128)
    fail("MLX group size must be 32, 64 or 128, got " + std::to_string(o.group_size));
  const fs::path src(hf_dir), dst(out_dir);
  std::error_code ec;
  if (!fs::is_directory(src, ec) || !fs::exists(src / "config.json", ec))
    fail("MLX output needs a Hugging Face folder (config.json + safetensors) as the source; '" + hf_dir + "' is not one");
  if (fs::exists(dst, ec) && !fs::is_directory(dst, ec)) fail("'" + out_dir + "' exists and is not a folder");
  if (fs::equivalent(src, dst, ec)) fail("the MLX folder must not be the source folder");
  nlohmann::ordered_json config;
  {
    std::ifstream f(src / "config.json");
    try {
      config = nlohmann::ordered_json::parse(f);
    } catch (const std::exception& e) {
      fail("'" + (src / "config.json").string() + "' is not valid JSON: " + e.what());
    }
  }
  if (config.contains("quantization") || config.contains("quantization_config"))
    fail("'" + hf_dir + "' holds an already quantized model; quantize from the original weights");
  const model::ModelConfig cfg = model::ModelConfig::from_json(nlohmann::json::parse(config.dump()));
  if (cfg.is_moe())
    fail("mixture-of-experts models cannot be written as MLX folders yet (mlx-lm stacks a layer's "
         "experts into switch_mlp tensors)");
  const auto st = model::SafetensorsSet::open_dir(hf_dir);
  const WeightType dtype = st->info("model.embed_tokens.weight").dtype == WeightType::F16 ? WeightType::F16 : WeightType::BF16;
  const std::string dtype_name = dtype == WeightType::F16 ? "F16" : "BF16";

  // The tensors: quantized ones as weight + scales + biases.
  struct Item {
    const model::TensorInfo* info;
    bool quantized;
  };
  std::vector<Item> items;
  std::vector<MlxFileWriter::Entry> entries;
  const int64_t gs = o.group_size;
  for (const model::TensorDesc& d : model::model_tensors(cfg)) {
    const model::TensorInfo& info = st->info(d.name);
    if (!info.dtype_supported || !formats::info(info.dtype).plain())
      fail("tensor '" + d.name + "' has dtype " + info.dtype_name + " (F32, BF16 or F16 expected)");
    if (info.shape != d.shape) fail("tensor '" + d.name + "' does not have the shape config.json implies");
    const bool q = (d.kind == model::TensorKind::Matrix || d.kind == model::TensorKind::Embedding) &&
                   d.shape.size() == 2 && d.shape[1] % gs == 0;
    items.push_back({&info, q});
    if (q) {
      const int64_t rows = d.shape[0], cols = d.shape[1];
      const std::string base = d.name.substr(0, d.name.size() - std::string(".weight").size());
      entries.push_back({d.name, "U32", {rows, cols * o.bits / 32}, uint64_t(rows * cols * o.bits / 8)});
      entries.push_back({base + ".scales", dtype_name, {rows, cols / gs}, uint64_t(rows * (cols / gs) * 2)});
      entries.push_back({base + ".biases", dtype_name, {rows, cols / gs}, uint64_t(rows * (cols / gs) * 2)});
    } else {
      int64_t n = 1;
      for (int64_t x : d.shape) n *= x;
      entries.push_back({d.name, dtype_name, d.shape, uint64_t(n * 2)});
    }
  }

  fs::create_directories(dst, ec);
  if (ec) fail("cannot create '" + out_dir + "': " + ec.message());
  const int n_threads = o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(n_threads);
  MlxFileWriter w((dst / "model.safetensors").string(), entries);
  std::vector<float> f32;
  size_t k = 0;
  for (const Item& it : items) {
    const model::TensorInfo& info = *it.info;
    const uint8_t* data = st->data(info);
    const int64_t cols = info.shape.back();
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < info.shape.size(); ++i) rows *= info.shape[i];
    const size_t src_row_bytes = formats::row_bytes(info.dtype, cols);
    const int64_t chunk_rows = std::max<int64_t>(1, kChunkElements / cols);
    if (o.progress) o.progress(k++, items.size(), info.name, it.quantized ? "MLX" + std::to_string(o.bits) : dtype_name);
    if (it.quantized) {
      const int64_t words = cols * o.bits / 32, groups = cols / gs;
      std::vector<uint16_t> scales(size_t(rows * groups)), biases(size_t(rows * groups));
      std::vector<uint32_t> packed;
      for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
        const int64_t n = std::min(chunk_rows, rows - r0);
        f32.resize(size_t(n * cols));
        packed.resize(size_t(n * words));
        parallel_rows(pool, n, [&](int64_t b, int64_t m) {
          for (int64_t r = b; r < b + m; ++r) {
            formats::dequantize_row(info.dtype, data + size_t(r0 + r) * src_row_bytes, cols, f32.data() + r * cols);
            mlx_quantize_row(f32.data() + r * cols, cols, o.bits, o.group_size, dtype, packed.data() + r * words,
                             scales.data() + (r0 + r) * groups, biases.data() + (r0 + r) * groups);
          }
        });
        w.write(packed.data(), packed.size() * 4);
      }
      w.write(scales.data(), scales.size() * 2);
      w.write(biases.data(), biases.size() * 2);
    } else {
      std::vector<uint16_t> out;
      for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
        const int64_t n = std::min(chunk_rows, rows - r0);
        f32.resize(size_t(n * cols));
        out.resize(size_t(n * cols));
        parallel_rows(pool, n, [&](int64_t b, int64_t m) {
          formats::dequantize_row(info.dtype, data + size_t(r0 + b) * src_row_bytes, m * cols, f32.data() + b * cols);
          for (int64_t i = b * cols; i < (b + m) * cols; ++i) out[size_t(i)] = encode(f32[size_t(i)], dtype);
        });
        w.write(out.data(), out.size() * 2);
      }
    }
  }
  w.finish();

  nlohmann::ordered_json q;
  q["group_size"] = o.group_size;
  q["bits"] = o.bits;
  q["mode"] = "affine";
  config["quantization"] = q;
  config["quantization_config"] = q;
  config["torch_dtype"] = dtype == WeightType::F16 ? "float16" : "bfloat16";
  {
    std::ofstream f(dst / "config.json", std::ios::binary | std::ios::trunc);
    f << config.dump(2, ' ', true) << "\n";
    if (!f) fail("cannot write '" + (dst / "config.json").string() + "'");
  }
  for (const char* fn : {"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                         "chat_template.jinja", "vocab.json", "merges.txt", "tokenizer.model"})
    if (fs::exists(src / fn)) {
      fs::copy_file(src / fn, dst / fn, fs::copy_options::overwrite_existing, ec);
      if (ec) fail(std::string("cannot copy ") + fn + ": " + ec.message());
    }
}

}  // namespace meshlm::convert
