#!/usr/bin/env python3
"""Per-hop cost per token on loopback, by model width and number of stages (issue 19).

  scripts/bench_hops.py MODEL_DIR [MODEL_DIR ...]   (env: MESHLM=build/meshlm N_GEN=64 REPS=3
                                                     ROUNDS=3 STAGES="1 2 3" THREADS=1)

For each model, rounds of `meshlm bench -p 16 -n N_GEN --threads THREADS --stages S --json`
for each S in STAGES, interleaved (S = 1, 2, 3, 1, 2, 3, ...: load that comes and goes hits
every configuration alike). Reported per configuration, best round (least disturbed) and median:
  - tg tokens/s and the ratio to one stage;
  - per-hop cost from the speeds: (1/tps_S - 1/tps_1) / S hops (a token crosses S links: S - 1
    activations forward, one result back), which counts any change in compute too;
  - per-hop cost from the coordinator's clock: bench's tg_transfer_ms (round trips minus the
    workers' compute) / S, which counts links and hand-offs only;
  - each stage's compute per token, summed over stages, against one stage's (does splitting the
    layers slow their compute?).
Run it on an otherwise idle machine: two processes of one thread each share the cores."""
import json
import os
import statistics
import subprocess
import sys

M = os.environ.get("MESHLM", "build/meshlm")
N_GEN = os.environ.get("N_GEN", "64")
REPS = os.environ.get("REPS", "3")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
STAGES = [int(s) for s in os.environ.get("STAGES", "1 2 3").split()]
THREADS = os.environ.get("THREADS", "1")


def bench(model, stages):
    cmd = [M, "bench", "--model", model, "-p", "16", "-n", N_GEN, "-r", REPS, "--threads", THREADS,
           "--json"]
    if stages > 1:
        cmd += ["--stages", str(stages)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


for model in sys.argv[1:]:
    cfg = json.load(open(os.path.join(model, "config.json")))
    runs = {s: [] for s in STAGES}
    for r in range(ROUNDS):
        for s in STAGES:
            j = bench(model, s)
            runs[s].append(j)
            print(f"  round {r} stages {s}: tg {j['tg_tps']:.2f} t/s", file=sys.stderr, flush=True)
    best = {s: max(runs[s], key=lambda j: j["tg_tps"]) for s in STAGES}
    med = {s: statistics.median(j["tg_tps"] for j in runs[s]) for s in STAGES}
    print(f"\n{os.path.basename(model.rstrip('/'))}: hidden {cfg['hidden_size']}, "
          f"{cfg['num_hidden_layers']} layers, {THREADS} thread(s) per stage, tg{N_GEN} x {REPS}, "
          f"{ROUNDS} interleaved rounds")
    print("| stages | tg t/s best (median) | vs 1 stage | per hop from speed, µs | "
          "per hop, links + hand-offs, µs | compute per token, sum of stages, ms |")
    print("|---|---|---|---|---|---|")
    one = best[STAGES[0]]["tg_tps"] if STAGES[0] == 1 else None
    for s in STAGES:
        b = best[s]
        tps = b["tg_tps"]
        ratio = f"{tps / one:.3f}" if one else ""
        from_speed = f"{(1 / tps - 1 / one) / s * 1e6:.0f}" if one and s > 1 else ""
        links = f"{b['tg_transfer_ms'] * 1000 / s:.0f}" if s > 1 else ""
        compute = sum(b["tg_stage_batch_ms"])
        print(f"| {s} | {tps:.2f} ({med[s]:.2f}) | {ratio} | {from_speed} | {links} | {compute:.2f} |")
