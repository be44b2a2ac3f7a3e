// libFuzzer target: structured outputs (grammar/). A client sends the JSON Schema (response_format
// or a tool's parameters), and the model's output is matched against the grammar compiled from it,
// so both are untrusted. Input: schema text, a 0 byte, then a document. The schema (when it
// parses as JSON) is compiled; refusals are meshlm::Error. The document runs through the
// automaton byte by byte, and through the json_object grammar. Invariants: a document either
// grammar accepts as complete is valid JSON (nlohmann parses it; json_object: an object), and
// the allowed-token mask at every step equals checking each token of a small vocabulary alone.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"

using namespace meshlm;
using namespace meshlm::grammar;

namespace {

void require(bool ok) {
  if (!ok) __builtin_trap();
}

const std::shared_ptr<Vocabulary>& vocab() {
  static auto v = std::make_shared<Vocabulary>(
      std::vector<std::string>{"{", "}", "[", "]", "\"", ":", ",", " ", "a", "\"a\"", "0", "1",
                               "-", ".", "e", "true", "null", "\\", "u", "\":", "é", "\xC3", "",
                               "x\"", "{\"", "\"}", "12", "E+"},
      std::vector<int32_t>{22 + 6}, 64);
  return v;
}

// Runs `doc` through the automaton, checking the mask at each step; returns whether the whole
// document is accepted as complete.
bool run(Automaton& a, std::string_view doc, bool check_masks) {
  int32_t s = a.start();
  size_t steps = 0;
  for (unsigned char c : doc) {
    if (check_masks && steps++ < 8) {
      auto mask = a.mask(s, *vocab());
      for (int32_t id = 0; id < int32_t(vocab()->n_ids()); ++id) {
        const bool bit = ((*mask)[size_t(id) / 64] >> (id % 64)) & 1;
        bool want;
        if (vocab()->is_eos(id))
          want = a.accepting(s);
        else
          want = !vocab()->bytes(id).empty() && a.advance(s, vocab()->bytes(id)) >= 0;
        require(bit == want);
      }
    }
    s = a.next(s, c);
    if (s < 0) return false;
  }
  return a.accepting(s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t cut = in.find('\0');
  const std::string_view schema_text = in.substr(0, cut);
  const std::string_view doc = cut == std::string_view::npos ? std::string_view() : in.substr(cut + 1);

  Automaton any(json_object_grammar(), 20000);
  try {
    if (run(any, doc, false)) {
      auto j = nlohmann::json::parse(doc, nullptr, false);
      require(!j.is_discarded() && j.is_object());
    }
  } catch (const Error&) {  // the state cap
  }

  auto schema = nlohmann::ordered_json::parse(schema_text, nullptr, false);
  if (schema.is_discarded()) return 0;
  try {
    Automaton a(json_schema_grammar(schema), 20000);
    if (run(a, doc, true)) require(!nlohmann::json::parse(doc, nullptr, false).is_discarded());
  } catch (const Error&) {
  }
  return 0;
}
