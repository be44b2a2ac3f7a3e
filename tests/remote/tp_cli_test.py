#!/usr/bin/env python3
"""Tensor parallelism through the CLI: `meshlm generate --tp 2 --ids` (and an uneven
`--tp-shares 1,3`) prints the same ids as one process, and so do hybrid layouts (`--stages 2
--tp 2`, with `--layers`, and `--stages 3 --tp 2`), also with `--peers` (three `meshlm worker`
processes as the members: `--peers A,B,C --tp 2` is two stages of two), and a peer count that does
not fill the groups is refused with a clear message; `meshlm plan --stages 2 --tp 2` shows the groups; `meshlm plan --predict` costs every
layout (workers report their measured read speed); `--wire bf16` between worker stages prints the ids of in-process stages that round
the same way. Needs the qwen3 tokenizer: exit 77 without it.
usage: tp_cli_test.py MESHLM TOKENIZER_DIR WORK_DIR"""
import os
import shutil
import subprocess
import sys
import time

MESHLM, TOKDIR, WORK = sys.argv[1:4]
if not os.path.exists(os.path.join(TOKDIR, "tokenizer.json")):
    print("skipped: no qwen3 tokenizer in " + TOKDIR)
    sys.exit(77)
os.makedirs(WORK, exist_ok=True)
failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(args, timeout=300):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, MESHLM_LOG="info"))


model = os.path.join(WORK, "tp-cli-qwen3")
if not os.path.exists(os.path.join(model, "config.json")):
    shutil.rmtree(model + ".tmp", ignore_errors=True)
    r = run([MESHLM, "synth", "--arch", "qwen3", "--out", model + ".tmp", "--hidden", "128",
             "--intermediate", "256", "--layers", "3", "--heads", "4", "--kv-heads", "4",
             "--head-dim", "32", "--dtype", "f32", "--seed", "5", "--threads", "1",
             "--tokenizer-dir", TOKDIR])
    if r.returncode != 0:
        print(r.stderr[-2000:])
        sys.exit(1)
    os.rename(model + ".tmp", model)

PROMPT = ",".join(str((i * 7919 + 11) % 150000) for i in range(20))


def generate(extra):
    return run([MESHLM, "generate", "--model", model, "--prompt-ids", PROMPT, "-n", "10", "--ids",
                "--ignore-eos", "--threads", "1", "--ctx", "128"] + extra)


ref = generate([])
check(ref.returncode == 0 and ref.stdout.strip() != "", "one process generates ids")
for extra in (["--tp", "2"], ["--tp", "2", "--tp-shares", "1,3"], ["--tp", "3"],
              ["--stages", "2", "--tp", "2"], ["--stages", "2", "--tp", "2", "--layers", "0-0,1-2"],
              ["--stages", "3", "--tp", "2", "--tp-shares", "2,1"]):
    r = generate(extra)
    check(r.returncode == 0 and r.stdout == ref.stdout,
          " ".join(extra) + " prints the same ids" +
          ("" if r.returncode == 0 else ": " + r.stderr[-1500:]))
# --wire: two worker-process stages with bf16 activations print the ids of two in-process stages
# that round the same way; a TP group with bf16 partial sums runs; an unknown type is refused.
local_bf16 = generate(["--local-layers", "0-1,2-2", "--wire", "bf16"])
check(local_bf16.returncode == 0 and local_bf16.stdout.strip() != "",
      "--local-layers --wire bf16 generates ids" + ("" if local_bf16.returncode == 0 else ": " + local_bf16.stderr[-1500:]))
r = generate(["--stages", "2", "--layers", "0-1,2-2", "--wire", "bf16"])
check(r.returncode == 0 and r.stdout == local_bf16.stdout,
      "--stages 2 --wire bf16 prints the ids of in-process stages with --wire bf16" +
      ("" if r.returncode == 0 else ": " + r.stderr[-1500:]))
r = generate(["--tp", "2", "--wire", "bf16"])
check(r.returncode == 0 and len(r.stdout.split(",")) == len(ref.stdout.split(",")),
      "--tp 2 --wire bf16 generates as many ids" + ("" if r.returncode == 0 else ": " + r.stderr[-1500:]))
r = generate(["--stages", "2", "--wire", "q4_0"])
check(r.returncode != 0 and "--wire" in r.stderr, "--wire q4_0 is refused")
# Workers given with --peers: this process and the peers fill the groups in order.
SECRET = "tp-cli-secret"
workers = []
try:
    for i in range(3):
        port_file = os.path.join(WORK, f"tp-cli-worker-{os.getpid()}-{i}")
        if os.path.exists(port_file):
            os.remove(port_file)
        p = subprocess.Popen([MESHLM, "worker", "--listen", "127.0.0.1:0", "--threads", "1",
                              "--no-discovery", "--secret", SECRET, "--port-file", port_file],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        workers.append(p)
        for _ in range(3000):  # up to 60 s (a bound, not a timing check)
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            if p.poll() is not None:
                sys.exit(f"worker exited with {p.returncode}")
            time.sleep(0.02)
        workers[-1].address = "127.0.0.1:" + open(port_file).read().strip()
    peers = ",".join(w.address for w in workers)
    for extra in (["--peers", peers, "--tp", "2"], ["--peers", peers, "--tp", "2", "--stages", "2"],
                  ["--peers", workers[0].address, "--tp", "2"]):
        r = generate(extra + ["--secret", SECRET])
        check(r.returncode == 0 and r.stdout == ref.stdout,
              " ".join(extra) + " prints the same ids" + ("" if r.returncode == 0 else ": " + r.stderr[-1500:]))
    r = run([MESHLM, "plan", "--model", model, "--peers", peers, "--tp", "2", "--ctx", "128",
             "--secret", SECRET])
    check(r.returncode == 0 and workers[1].address in r.stdout and "tensor-parallel group of 2" in r.stdout,
          "plan --peers A,B,C --tp 2 plans two stages (the second at B)" + ("" if r.returncode == 0 else ": " + r.stderr[-1500:]))
    # --predict: the workers measure their read speed when first probed and report it.
    r = run([MESHLM, "plan", "--model", model, "--predict", "--peers", peers, "--secret", SECRET, "--json"])
    ok = r.returncode == 0
    if ok:
        import json
        j = json.loads(r.stdout)
        shapes = {(c["stages"], c["tp"]) for c in j["candidates"]}
        ok = (len(j["nodes"]) == 4 and all(n["read_bytes_per_s"] > 0 for n in j["nodes"])
              and {(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (1, 4)} <= shapes
              and sum(c["best"] for c in j["candidates"]) == 1 and j["link"]["source"].startswith("measured"))
    check(ok, "plan --predict --peers measures every node and link and costs every layout" +
          ("" if r.returncode == 0 else ": " + r.stderr[-1500:]))
    r = generate(["--tp", "2", "--peers", ",".join(w.address for w in workers[:2]), "--secret", SECRET])
    check(r.returncode != 0 and "must fill" in r.stderr, "--tp 2 with two peers (three members) is refused")
finally:
    for w in workers:
        w.terminate()
    for w in workers:
        w.wait()
r = generate(["--tp", "2", "--local-layers", "0-1,2-2"])
check(r.returncode != 0 and "--local-layers" in r.stderr, "--tp with --local-layers is refused")
r = generate(["--tp", "2", "--layers", "0-2"])
check(r.returncode != 0 and "--stages" in r.stderr, "--tp --layers without --stages is refused")
r = run([MESHLM, "plan", "--model", model, "--stages", "2", "--tp", "2", "--ctx", "128"])
check(r.returncode == 0 and "tensor-parallel group of 2" in r.stdout and r.stdout.count("local") >= 2,
      "plan --stages 2 --tp 2 prints two stages of groups" + ("" if r.returncode == 0 else ": " + r.stderr[-1500:]))
r = run([MESHLM, "plan", "--model", model, "--predict", "--nodes", "2", "--link-latency-us", "1000"])
check(r.returncode == 0 and "1000.0 us one way" in r.stdout and "--tp 2" in r.stdout and "best for 1 stream" in r.stdout,
      "plan --predict --nodes 2 with a given link prints the candidates" + ("" if r.returncode == 0 else ": " + r.stderr[-1500:]))
r = run([MESHLM, "plan", "--model", model, "--stages", "2", "--tp", "2", "--ctx", "128", "--json"])
check(r.returncode == 0 and '"tp": 2' in r.stdout, "plan --json has the group size")
r = generate(["--tp", "2", "--tp-shares", "1,2,3"])
check(r.returncode != 0 and "--tp-shares" in r.stderr, "--tp-shares of the wrong length is refused")
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all checks passed")
