#include "convert/gguf_export.h"

#include <algorithm>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "formats/gguf_writer.h"
#include "formats/quants.h"

namespace meshlm::convert {

namespace {

constexpr int64_t kChunkElements = int64_t(1) << 22;  // f32 elements converted per step (16 MiB)

bool is_split_key(std::string_view k) { return k.substr(0, 6) == "split."; }

}  // namespace

GgufPlan plan_gguf(const SourceModel& src, const QuantType& type) {
  if (type.kind != OutputKind::Gguf)
    throw Error("quantize", "'" + std::string(type.name) + "' writes an MLX folder, not a GGUF file");
  GgufPlan plan;
  plan.converter_layout = src.from_hf && !type.quantized();
  const formats::GgufValue file_type = formats::GgufValue::from_u32(type.llama_ftype);

  if (plan.converter_layout) {
    // convert_hf_to_gguf.py --outtype: every tensor of 2+ dims in the type, the rest F32.
    for (const auto& [k, v] : src.metadata) plan.metadata.emplace_back(k, k == "general.file_type" ? file_type : v);
    for (size_t i = 0; i < src.tensors.size(); ++i) {
      const SourceTensor& t = src.tensors[i];
      const bool one_d = t.shape.size() <= 1 || t.name.ends_with("_norm.weight");
      plan.tensors.push_back({i, one_d ? WeightType::F32 : type.default_type, false});
    }
    return plan;
  }

  // llama-quantize: the source's keys, then quantization_version and file_type moved to the end.
  for (const auto& [k, v] : src.metadata)
    if (k != "general.quantization_version" && k != "general.file_type" && !is_split_key(k))
      plan.metadata.emplace_back(k, v);
  plan.metadata.emplace_back("general.quantization_version", formats::GgufValue::from_u32(2));
  plan.metadata.emplace_back("general.file_type", file_type);

  std::vector<std::string> names;
  for (const SourceTensor& t : src.tensors) names.push_back(t.name);
  const std::vector<size_t> order = llama_quantize_order(names);
  std::vector<TensorChoiceInput> inputs;
  for (size_t i : order) inputs.push_back({src.tensors[i].name, src.tensors[i].shape, src.tensors[i].type});
  const std::vector<TensorChoice> choice = choose_gguf_types(type, src.facts, inputs);
  for (size_t k = 0; k < order.size(); ++k) {
    plan.tensors.push_back({order[k], choice[k].type, choice[k].fallback});
    plan.n_fallback += choice[k].fallback ? 1 : 0;
    const WeightType from = src.tensors[order[k]].type;
    if (!formats::info(from).plain() && from != choice[k].type) ++plan.n_requantized;
  }
  return plan;
}

GgufPlan export_gguf(const SourceModel& src, const QuantType& type, const std::string& out,
                     const ExportOptions& options) {
  GgufPlan plan = plan_gguf(src, type);
  if (plan.n_requantized > 0)
    log::warn("quantize: {} tensor(s) of '{}' are already block-quantized: they are requantized from their "
              "dequantized values (llama-quantize's --allow-requantize); the result is no better than the source",
              plan.n_requantized, src.path);
  for (const PlannedTensor& p : plan.tensors)
    if (p.fallback)
      log::warn("quantize: {}: rows of {} elements are not whole blocks of the chosen type: {} (as llama-quantize)",
                src.tensors[p.source_index].name, src.tensors[p.source_index].cols(), formats::name(p.type));

  formats::GgufWriter w(out);
  for (auto& [k, v] : plan.metadata) w.set(k, v);
  for (const PlannedTensor& p : plan.tensors) {
    const SourceTensor& t = src.tensors[p.source_index];
    if (p.type != t.type && !formats::info(p.type).plain() && !formats::can_quantize(p.type))
      throw Error("quantize", "no quantizer for " + std::string(formats::name(p.type)));
    w.add_tensor(t.name, p.type, t.shape);
  }

  const int n_threads = options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  ThreadPool pool(n_threads);
  std::vector<float> f32;
  std::vector<uint8_t> q;
  uint64_t written = 0;
  for (size_t k = 0; k < plan.tensors.size(); ++k) {
    const PlannedTensor& p = plan.tensors[k];
    const SourceTensor& t = src.tensors[p.source_index];
    if (p.type == t.type && !t.bytes.empty()) {
      // Unchanged: the source bytes as they are (llama-quantize copies these too).
      constexpr size_t kPiece = size_t(64) << 20;
      for (size_t off = 0; off < t.bytes.size(); off += kPiece)
        w.append(t.name, t.bytes.subspan(off, std::min(kPiece, t.bytes.size() - off)));
      written += t.bytes.size();
    } else {
      const int64_t cols = t.cols(), rows = t.rows();
      const size_t row_bytes = formats::row_bytes(p.type, cols);
      const int64_t chunk_rows = std::max<int64_t>(1, kChunkElements / std::max<int64_t>(cols, 1));
      for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
        const int64_t n = std::min(chunk_rows, rows - r0);
        f32.resize(size_t(n * cols));
        q.resize(size_t(n) * row_bytes);
        std::exception_ptr error;
        std::mutex error_mutex;
        pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
          if (b >= e) return;
          try {
            t.read_rows(r0 + b, e - b, f32.data() + b * cols);
            for (int64_t r = b; r < e; ++r)
              formats::quantize_row(p.type, f32.data() + r * cols, cols, q.data() + size_t(r) * row_bytes);
          } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
          }
        });
        if (error) {
          try {
            std::rethrow_exception(error);
          } catch (const std::exception& e) {
            throw Error("quantize", "tensor '" + t.name + "' to " + std::string(formats::name(p.type)) + ": " + e.what());
          }
        }
        w.append(t.name, q);
        written += q.size();
      }
    }
    if (options.progress) options.progress({k, plan.tensors.size(), &t, p.type, written});
  }
  w.finish();
  return plan;
}

}  // namespace meshlm::convert
