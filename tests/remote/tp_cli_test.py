#!/usr/bin/env python3
"""Tensor parallelism through the CLI: `meshlm generate --tp 2 --ids` (and an uneven
`--tp-shares 1,3`) prints the same ids as one process; `--tp` with `--stages` is refused with a
clear message; `--wire bf16` between worker stages prints the ids of in-process stages that round
the same way. Needs the qwen3 tokenizer: exit 77 without it.
usage: tp_cli_test.py MESHLM TOKENIZER_DIR WORK_DIR"""
import os
import shutil
import subprocess
import sys

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
for extra in (["--tp", "2"], ["--tp", "2", "--tp-shares", "1,3"], ["--tp", "3"]):
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
r = generate(["--tp", "2", "--stages", "2"])
check(r.returncode != 0 and "--tp cannot be combined" in r.stderr, "--tp with --stages is refused")
r = generate(["--tp", "2", "--tp-shares", "1,2,3"])
check(r.returncode != 0 and "--tp-shares" in r.stderr, "--tp-shares of the wrong length is refused")
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all checks passed")
