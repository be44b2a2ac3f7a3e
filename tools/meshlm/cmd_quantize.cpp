// `meshlm quantize`: a Hugging Face folder or a GGUF file -> a GGUF file llama.cpp loads (f32,
// f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m, q6_k; per-tensor types as
// llama-quantize chooses them),
// or -> an MLX affine folder (mlx4, mlx8). The work is convert/'s; this file parses flags and
// prints progress.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include "command.h"
#include "convert/gguf_export.h"
#include "convert/mlx_export.h"
#include "convert/quant_types.h"
#include "convert/source_model.h"
#include "core/error.h"

namespace {

using namespace meshlm;

int run_quantize(int argc, char** argv) {
  CLI::App app("Quantize a model: Hugging Face folder or GGUF -> GGUF (llama.cpp file types) or MLX folder",
               "meshlm quantize");
  std::string model, out, type_name, name;
  int threads = 0, group_size = 64;
  app.add_option("--model", model, "source: Hugging Face folder (config.json + safetensors + tokenizer) or GGUF file")
      ->required();
  app.add_option("--out", out, "destination: a .gguf file, or a folder for mlx4/mlx8")->required();
  app.add_option("--type", type_name, "output type: " + convert::quant_type_names() + " (llama.cpp spellings such as Q4_K_M too)")
      ->required();
  app.add_option("--threads", threads, "threads (default: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--name", name, "general.name in a GGUF made from a folder (default: the folder's name)");
  app.add_option("--group-size", group_size, "MLX group size (32, 64, 128)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const convert::QuantType& type = convert::parse_quant_type(type_name);
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  if (type.kind == convert::OutputKind::Mlx) {
    convert::MlxOptions mlx{type.mlx_bits, group_size, threads, {}};
    mlx.progress = [](size_t i, size_t n, const std::string& tensor, const std::string& to) {
      std::fprintf(stderr, "\r[%4zu/%4zu] %-48s -> %-5s", i + 1, n, tensor.c_str(), to.c_str());
      std::fflush(stderr);
    };
    convert::export_mlx(model, out, mlx);
    std::fputc('\n', stderr);
    std::fprintf(stderr, "wrote %s (MLX affine, %d bits, group size %d) in %.1f s\n", out.c_str(), type.mlx_bits,
                 group_size, seconds());
    return 0;
  }
  if (std::filesystem::is_directory(out)) throw Error("quantize", "--out '" + out + "' is a folder; give a .gguf file name");

  const convert::SourceModel src = convert::open_source(model, name);
  convert::ExportOptions options;
  options.threads = threads;
  options.progress = [&](const convert::ExportProgress& p) {
    std::string shape;
    for (int64_t d : p.tensor->shape) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
    std::fprintf(stderr, "\r[%4zu/%4zu] %-36s %-16s %5s -> %-5s %8.1f MiB", p.index + 1, p.count,
                 p.tensor->name.c_str(), shape.c_str(), std::string(formats::name(p.tensor->type)).c_str(),
                 std::string(formats::name(p.to)).c_str(), double(p.bytes_written) / (1 << 20));
    std::fflush(stderr);
  };
  const convert::GgufPlan plan = convert::export_gguf(src, type, out, options);
  std::map<std::string, int> counts;
  for (const convert::PlannedTensor& p : plan.tensors) ++counts[std::string(formats::name(p.type))];
  std::string summary;
  for (const auto& [t, n] : counts) summary += (summary.empty() ? "" : ", ") + std::to_string(n) + " " + t;
  std::fprintf(stderr, "\nwrote %s (%s, %s layout: %s) in %.1f s\n", out.c_str(), std::string(type.llama_name).c_str(),
               plan.converter_layout ? "convert_hf_to_gguf" : "llama-quantize", summary.c_str(), seconds());
  return 0;
}

meshlm::cli::Registrar reg("quantize", "HF folder or GGUF -> GGUF (f16, q8_0, q4_k_m, ...) or MLX folder", run_quantize);

}  // namespace
