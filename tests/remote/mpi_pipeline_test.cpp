// The pipeline over MPI ranks is bit-identical to one stage. Run under mpirun with N ranks and one
// or more synthetic model folders:
//   mpirun --allow-run-as-root --oversubscribe -np N remote_mpi_pipeline_test DIR...
// Rank 0 computes, for every folder, the one-stage reference in-process and the same work on an
// N-stage pipeline whose stages 1..N-1 are the other ranks (run_mpi_worker, one session per
// folder): 4 sequences in flight, 40-token prompts fed in 16-token chunks (logits of every prompt
// position), then 64 decoding steps: sequences 0-1 sampled greedily by the last stage, 2-3
// returning their logits (compared bit for bit) and picked by argmax here. Exit 0 = identical.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/log.h"
#include "remote/remote_pipeline.h"
#include "remote/worker.h"
#include "runtime/pipeline.h"
#include "transport/mpi_transport.h"

using namespace meshlm;

namespace {

constexpr int kSeqs = 4, kLen = 40, kChunk = 16, kSteps = 64;

struct Run {
  std::vector<float> logits;               // prompt logits, then decode logits of seqs 2-3
  std::vector<std::vector<int32_t>> ids;   // greedy continuation per sequence
  std::string error;
};

Run run(runtime::Pipeline& p, int64_t vocab) {
  Run out;
  std::vector<std::vector<int32_t>> prompts(kSeqs);
  for (int s = 0; s < kSeqs; ++s)
    for (int i = 0; i < kLen; ++i) prompts[s].push_back(int32_t((s * 97 + i * 31 + 5) % vocab));
  std::vector<std::vector<float>> seq_logits(kSeqs);
  uint64_t id = 1;
  auto wait = [&](runtime::MicroBatchResult& r) {
    r = p.wait();
    if (!r.error.empty() && out.error.empty()) out.error = r.error;
    return r.error.empty();
  };
  for (int pos = 0; pos < kLen; pos += kChunk) {
    const int n = std::min(kChunk, kLen - pos);
    for (int s = 0; s < kSeqs; ++s) {  // all four launched before the first wait
      runtime::MicroBatch b;
      b.id = id++;
      b.return_logits = true;
      b.chunks = {{1000 + s, pos, n, true, true}};
      b.tokens.assign(prompts[s].begin() + pos, prompts[s].begin() + pos + n);
      p.launch(std::move(b));
    }
    for (int s = 0; s < kSeqs; ++s) {
      runtime::MicroBatchResult r;
      if (!wait(r)) return out;
      seq_logits[s].insert(seq_logits[s].end(), r.logits.begin(), r.logits.end());
    }
  }
  out.ids.resize(kSeqs);
  for (int s = 0; s < kSeqs; ++s) {
    out.logits.insert(out.logits.end(), seq_logits[s].begin(), seq_logits[s].end());
    if (seq_logits[s].size() != size_t(kLen * vocab)) {
      out.error = "sequence " + std::to_string(s) + ": wrong number of prompt logits";
      return out;
    }
    auto last = seq_logits[s].end() - vocab;
    out.ids[s].push_back(int32_t(std::max_element(last, seq_logits[s].end()) - last));
  }
  for (int step = 0; step < kSteps; ++step) {
    for (int s = 0; s < kSeqs; ++s) {
      runtime::MicroBatch b;
      b.id = id++;
      b.return_logits = s >= 2;
      if (step == 0 && !b.return_logits) {
        runtime::SamplingParams params;
        params.temperature = 0;
        b.new_sequences = {{1000 + s, params}};
      }
      b.tokens = {out.ids[s].back()};
      b.chunks = {{1000 + s, kLen + step, 1, true, false}};
      p.launch(std::move(b));
    }
    for (int s = 0; s < kSeqs; ++s) {
      runtime::MicroBatchResult r;
      if (!wait(r)) return out;
      if (s >= 2) {
        if (r.logits.size() != size_t(vocab)) {
          out.error = "decode step without one row of logits";
          return out;
        }
        out.logits.insert(out.logits.end(), r.logits.begin(), r.logits.end());
        out.ids[s].push_back(
            int32_t(std::max_element(r.logits.begin(), r.logits.end()) - r.logits.begin()));
      } else {
        if (r.sampled.size() != 1) {
          out.error = "decode step without one sampled token";
          return out;
        }
        out.ids[s].push_back(r.sampled[0].second.token);
      }
    }
  }
  for (int s = 0; s < kSeqs; ++s) p.release(1000 + s);
  return out;
}

int coordinator(const std::vector<std::string>& dirs) {
  const int n = transport::mpi_size();
  int failures = 0;
  for (const auto& dir : dirs) {
    model::StageOptions so{1, 128};
    auto one = runtime::make_local_pipeline(dir, so, {});
    const int64_t vocab = one->config().vocab;
    Run ref = run(*one, vocab);
    one.reset();
    remote::RemotePipelineOptions o;
    o.model_dir = dir;
    o.sync = remote::SyncMode::Off;
    for (int r = 1; r < n; ++r) o.peers.push_back(transport::mpi_address(r));
    o.ranges = model::even_partition(model::ModelConfig::from_dir(dir).n_layers, n);
    o.stage = so;
    o.secret = "mpi-test";
    Run got;
    {
      auto p = remote::make_remote_pipeline(o);
      got = run(*p, vocab);
    }  // destroying it stops the worker ranks' session (they wait for the next folder's)
    const size_t want = size_t(kSeqs * kLen * vocab + 2 * kSteps * vocab);
    bool ok = ref.error.empty() && got.error.empty() && ref.logits.size() == want &&
              got.logits.size() == want &&
              std::memcmp(got.logits.data(), ref.logits.data(), want * sizeof(float)) == 0 &&
              got.ids == ref.ids && ref.ids[0].size() == size_t(kSteps + 1);
    std::fprintf(stderr,
                 "remote_mpi_pipeline_test: %s on %d ranks (MPI thread level %s): %s (%zu logits, "
                 "%zu ids/seq)%s%s\n",
                 dir.c_str(), n, transport::mpi_thread_level().c_str(),
                 ok ? "identical" : "DIFFERENT", got.logits.size(),
                 got.ids.empty() ? size_t(0) : got.ids[0].size(), got.error.empty() ? "" : ": ",
                 got.error.c_str());
    if (!ref.error.empty()) std::fprintf(stderr, "  reference failed: %s\n", ref.error.c_str());
    failures += !ok;
  }
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* level = std::getenv("MESHLM_LOG")) log::set_level(level);
  try {
    transport::mpi_init(&argc, &argv);
    std::vector<std::string> dirs(argv + 1, argv + argc);
    if (dirs.empty()) {
      std::fprintf(stderr, "usage: mpirun -np N remote_mpi_pipeline_test MODEL_DIR...\n");
      return 2;
    }
    if (transport::mpi_size() < 2) {
      std::fprintf(stderr, "remote_mpi_pipeline_test: needs at least 2 ranks: skipping\n");
      return 77;
    }
    if (transport::mpi_rank() == 0) return coordinator(dirs);
    for (const auto& dir : dirs) {  // one session per folder
      remote::WorkerOptions w;
      w.secret = "mpi-test";
      w.model_dir = dir;
      remote::run_mpi_worker(w);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "remote_mpi_pipeline_test: rank %d: %s\n",
                 transport::mpi_initialized() ? transport::mpi_rank() : -1, e.what());
    transport::mpi_abort(1);
  }
}
