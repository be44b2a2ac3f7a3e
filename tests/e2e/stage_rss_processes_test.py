#!/usr/bin/env python3
"""Across processes, each stage's resident size is its share of the weights (within 10%).

Three stages of a 12-layer f32 model: this test's `meshlm generate` holds stage 0 and two `meshlm
worker` processes hold the others. Each worker's resident size after the run, less what the same
process used before it loaded anything, must be within 10% of the bytes of the tensors its layer
range needs (computed here from the safetensors header, independently of meshlm).
Usage: stage_rss_processes_test.py MESHLM WORKDIR"""
import json
import os
import struct
import subprocess
import sys
import time

meshlm, work = sys.argv[1:3]
model = os.path.join(work, "rss-model")
if not os.path.exists(os.path.join(model, "config.json")):
    subprocess.run([meshlm, "synth", "--arch", "llama", "--out", model, "--hidden", "1024",
                    "--intermediate", "3072", "--layers", "12", "--heads", "8", "--kv-heads", "4",
                    "--head-dim", "128", "--vocab", "512", "--dtype", "f32", "--untied"],
                   check=True, capture_output=True)

with open(os.path.join(model, "model.safetensors"), "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
sizes = {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()
         if k != "__metadata__"}


def stage_bytes(begin, end, n_layers=12):
    total = sum(v for k, v in sizes.items()
                if k.startswith("model.layers.") and begin <= int(k.split(".")[2]) < end)
    if begin == 0:
        total += sizes["model.embed_tokens.weight"]
    if end == n_layers:
        total += sizes["model.norm.weight"] + sizes["lm_head.weight"]
    return total


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


workers = []
try:
    for k in range(2):
        port_file = os.path.join(work, f"rss-worker-{os.getpid()}-{k}")
        if os.path.exists(port_file):
            os.remove(port_file)
        p = subprocess.Popen([meshlm, "worker", "--listen", "127.0.0.1:0", "--secret", "rss-test",
                              "--threads", "1", "--no-discovery", "--port-file", port_file],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(3000):  # up to 60 s to start and listen (a bound, not a timing check)
            if os.path.exists(port_file):
                break
            time.sleep(0.02)
        with open(port_file) as f:
            port = f.read().strip()
        os.remove(port_file)
        time.sleep(0.2)
        workers.append((p, f"127.0.0.1:{port}", rss(p.pid)))
    ranges = [(0, 4), (4, 8), (8, 12)]
    peers = ",".join(w[1] for w in workers)
    prompt = ",".join(str((i * 37) % 512) for i in range(64))
    subprocess.run([meshlm, "generate", "--model", model, "--prompt-ids", prompt, "-n", "8", "--ids",
                    "--threads", "1", "--peers", peers, "--secret", "rss-test", "--sync", "off",
                    "--layers", "0-3,4-7,8-11", "--ctx", "256"], check=True, capture_output=True)
    ok = True
    for (p, addr, idle), (begin, end) in zip(workers, ranges[1:]):
        expected = stage_bytes(begin, end)
        used = rss(p.pid) - idle
        ratio = used / expected
        print(f"stage layers {begin}-{end - 1} at {addr}: resident {used / 2**20:.1f} MiB beyond an "
              f"idle worker, its weights {expected / 2**20:.1f} MiB, ratio {ratio:.3f}")
        if not 0.9 <= ratio <= 1.1:
            ok = False
    # The whole model is several times one stage: a stage holding everything would fail above.
    print(f"whole model {stage_bytes(0, 12) / 2**20:.1f} MiB")
    sys.exit(0 if ok else 1)
finally:
    for p, _, _ in workers:
        p.terminate()
        p.wait()
