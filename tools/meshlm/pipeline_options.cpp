#include "pipeline_options.h"

namespace meshlm::cli {

void PipelineOptions::add_to(CLI::App& app, bool discover_by_default) {
  discover = discover_by_default;
  if (discover_by_default)
    app.add_flag("!--no-discovery", discover, "do not look for workers announced on the LAN");
  else
    app.add_flag("--discover", discover, "use workers announced on the LAN (DNS-SD) as the peers");
  app.add_option("--discover-seconds", discover_seconds, "how long to browse the LAN for workers")
      ->check(CLI::Range(0.1, 60.0))
      ->capture_default_str();
  app.add_option("--peers", peers, "workers host:port,... in stage order (this process is stage 0)");
  app.add_option("--stages", stages, "start N-1 local worker processes and split the model N ways")
      ->check(CLI::Range(1, 64));
  app.add_option("--tp", tp,
                 "tensor parallelism: run the whole model as one group of M members, this process "
                 "and M-1 local worker processes, each with 1/M of every layer's weights; with "
                 "--stages N, N pipeline stages of M members each (N*M-1 local workers)")
      ->check(CLI::Range(1, 64));
  app.add_option("--tp-shares", tp_shares,
                 "uneven tensor-parallel split, one share per member (this process first), e.g. 1,3");
  app.add_option("--layers", layers, "explicit layer ranges per stage, e.g. 0-13,14-27");
  app.add_option("--secret", secret, "cluster secret (default: $MESHLM_SECRET)");
  app.add_option("--worker-model", worker_model_dir, "the model's path on the workers (default: same)");
  app.add_option("--sync", sync,
                 "send workers the tensors of their layers when they lack them: auto (workers on "
                 "this machine read the files here), always, off")
      ->check(CLI::IsMember({"auto", "always", "off"}))
      ->capture_default_str();
  app.add_option("--local-layers", local_layers,
                 "in-process stages, one per layer range (as --layers), e.g. 0-1,2-3");
  app.add_option("--stage-timeout", stage_timeout_s,
                 "seconds without a result before the workers are reported down (a hung worker)")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--heartbeat-timeout", heartbeat_timeout_s,
                 "seconds without a heartbeat before a worker is reported down (workers send one "
                 "a second; a suspended or unplugged machine); 0 = off")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--transport", transport,
                 "tcp, or mpi: under `mpirun -np N` rank 0 runs this command and stage 0, ranks "
                 "1..N-1 serve stages 1..N-1 (same --model path on every rank)")
      ->check(CLI::IsMember({"tcp", "mpi"}))
      ->capture_default_str();
  app.add_option("--plan-memory", plan_memory,
                 "plan layers as if the stages had this much memory, e.g. 24G,8G (default: ask them)");
  app.add_option("--backend", backend,
                 "compute backend: cpu (optimised kernels) or ref (scalar reference kernels, one "
                 "thread: slow, for checking results); workers --stages starts get it too")
      ->check(CLI::IsMember({"cpu", "ref"}))
      ->capture_default_str();
  app.add_option("--cache-type", cache_type,
                 "how every stage stores its KV cache: f32 (exact), bf16, f16 (half the memory) or "
                 "q8_0 (~0.27x: blocks of 32 int8 values and a scale); workers get it from this "
                 "process")
      ->check(CLI::IsMember({"f32", "bf16", "f16", "q8_0"}, CLI::ignore_case))
      ->capture_default_str();
  app.add_option("--wire", wire,
                 "how the stages send activations to each other: f32 (exact), bf16 or f16 (half "
                 "the bytes) or q8_0 (~0.27x); the error each adds is in BENCHMARKS.md")
      ->check(CLI::IsMember({"f32", "bf16", "f16", "q8_0"}, CLI::ignore_case))
      ->capture_default_str();
  app.add_flag("--mlock", lock_memory,
               "lock the model's weights in RAM once loaded (never paged out or dropped from the "
               "page cache; needs `ulimit -l`); workers --stages starts get it too");
}

}  // namespace meshlm::cli
