// libFuzzer target: config.json (model/config.h), from a downloaded model folder or, with model
// sync, from the coordinator's manifest. The input is the file's text; what is valid JSON goes
// through ModelConfig::from_json, which must return a config or throw Error("config", ...). A
// returned config keeps the invariants the engine relies on (positive sizes, even head_dim, heads
// a multiple of kv heads), and its RoPE frequencies are computed as a stage would.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "fuzz_common.h"
#include "model/config.h"

using meshlm::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // the JSON parser itself is nlohmann's, not ours
  try {
    auto c = meshlm::model::ModelConfig::from_json(j);
    require(c.hidden > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0);
    require(c.intermediate > 0 && c.vocab > 0);
    require(c.head_dim > 0 && c.head_dim % 2 == 0 && c.n_heads % c.n_kv_heads == 0);
    auto inv = c.rope_inv_freq();
    require(inv.size() == static_cast<size_t>(c.head_dim / 2));
    (void)c.q_dim();
    (void)c.kv_dim();
  } catch (const meshlm::Error& e) {
    require(e.component() == "config");
  }
  return 0;
}
