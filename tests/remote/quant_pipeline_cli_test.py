#!/usr/bin/env python3
"""Quantized models across processes, through the CLI: a Q4_K_M GGUF file and an MLX 4-bit folder
(`meshlm synth` + `meshlm quantize`), split over 2 and 3 stages with `--stages N --sync always`
(local worker processes that are given no model path: each receives its layers from the
coordinator into its own cache) and over MPI (`mpirun -np 2|3 ... --transport mpi`, every rank
reading the same path), give the same ids and bit-identical logits as one stage. The bytes each
worker received equal the stored bytes of its layers (from the files' headers, independently of
meshlm), and a second run sends nothing.
Needs the qwen3 tokenizer (a GGUF carries the vocabulary): exit 77 without it. MPI parts are
skipped when MPIEXEC is "".
usage: quant_pipeline_cli_test.py MESHLM MPIEXEC TOKENIZER_DIR WORK_DIR"""
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import stored_bytes  # noqa: E402

MESHLM, MPIEXEC, TOKDIR, WORK = sys.argv[1:5]
if not os.path.exists(os.path.join(TOKDIR, "tokenizer.json")):
    print("skipped: no qwen3 tokenizer in " + TOKDIR)
    sys.exit(77)
os.makedirs(WORK, exist_ok=True)
LAYERS = 6
failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(args, env=None, timeout=300):
    e = dict(os.environ, MESHLM_LOG="info")
    e.update(env or {})
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=e)


def build_models():
    hf = os.path.join(WORK, "qpipe-hf")
    if not os.path.exists(os.path.join(hf, "config.json")):
        shutil.rmtree(hf + ".tmp", ignore_errors=True)
        r = run([MESHLM, "synth", "--arch", "qwen3", "--out", hf + ".tmp", "--hidden", "256",
                 "--intermediate", "512", "--layers", str(LAYERS), "--heads", "4", "--kv-heads", "2",
                 "--head-dim", "64", "--dtype", "bf16", "--seed", "7", "--threads", "2",
                 "--tokenizer-dir", TOKDIR])
        if r.returncode != 0:
            raise RuntimeError("synth failed: " + r.stderr[-2000:])
        os.rename(hf + ".tmp", hf)
    models = {}
    for kind, out, typ in (("gguf", "qpipe-Q4_K_M.gguf", "q4_k_m"), ("mlx", "qpipe-mlx4", "mlx4")):
        path = os.path.join(WORK, out)
        if not os.path.exists(path):
            r = run([MESHLM, "quantize", "--model", hf, "--out", path + ".tmp", "--type", typ,
                     "--threads", "2"])
            if r.returncode != 0:
                raise RuntimeError(f"quantize {typ} failed: " + r.stderr[-2000:])
            os.rename(path + ".tmp", path)
        models[kind] = path
    return models


PROMPT = ",".join(str((i * 7919 + 11) % 150000) for i in range(40))


def generate(model, tag, extra, prefix=(), env=None):
    logits = os.path.join(WORK, f"qpipe-logits-{tag}.bin")
    if os.path.exists(logits):
        os.remove(logits)
    r = run(list(prefix) + [MESHLM, "generate", "--model", model, "--prompt-ids", PROMPT, "-n", "12",
                            "--ids", "--ignore-eos", "--threads", "1", "--ctx", "256",
                            "--logits-out", logits] + extra, env=env)
    data = open(logits, "rb").read() if os.path.exists(logits) else b""
    return r, data


def synced_manifests(stderr):
    """(layer begin, layer end, MiB as logged) of every manifest the coordinator served."""
    return [(int(a), int(b), float(m)) for a, b, m in
            re.findall(r"\[sync\] manifest for layers (\d+)-(\d+) to .*?: \d+ tensors, ([\d.]+) MiB",
                       stderr)]


def main():
    models = build_models()
    mpi = [MPIEXEC, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"] if MPIEXEC else None
    for kind, model in models.items():
        ref, ref_logits = generate(model, f"{kind}-1", [])
        ids = ref.stdout.split()
        check(ref.returncode == 0 and len(ids) == 12, f"{kind}: one stage gives 12 ids ({ref.stderr[-600:]})")
        for n in (2, 3):
            cache = os.path.join(WORK, f"qpipe-cache-{kind}-{n}")
            shutil.rmtree(cache, ignore_errors=True)
            env = {"XDG_CACHE_HOME": cache}  # the local workers' cache (inherited)
            for attempt in ("first", "again"):
                r, logits = generate(model, f"{kind}-{n}", ["--stages", str(n), "--sync", "always"],
                                     env=env)
                check(r.returncode == 0, f"{kind}, {n} stages ({attempt}): exits 0 ({r.stderr[-1500:]})")
                check(r.stdout == ref.stdout, f"{kind}, {n} stages ({attempt}): the same ids as one stage")
                check(logits == ref_logits and len(logits) > 0,
                      f"{kind}, {n} stages ({attempt}): logits bit-identical to one stage")
                manifests = synced_manifests(r.stderr)
                check(len(manifests) == n - 1, f"{kind}, {n} stages ({attempt}): {n - 1} workers synced")
                for b, e, mib in manifests:
                    want = stored_bytes.stage_bytes(model, b, e, LAYERS) / 2**20
                    check(abs(mib - want) < 0.051,
                          f"{kind}, layers {b}-{e}: manifest of {mib:.1f} MiB = stored {want:.1f} MiB")
                # The workers' logs (their stderr is ours): "[sync] layers B-E ready in DIR: R MiB
                # reused, F MiB fetched".
                fetched = sum(float(x) for x in re.findall(r"MiB reused, ([\d.]+) MiB fetched", r.stderr))
                if attempt == "first":
                    shipped = sum(mib for _, _, mib in manifests)
                    check(fetched > 0 and abs(fetched - shipped) < 0.1 * len(manifests),
                          f"{kind}, {n} stages: workers fetched {fetched:.1f} MiB, their layers' "
                          f"{shipped:.1f} MiB")
                else:
                    check(fetched == 0, f"{kind}, {n} stages again: nothing fetched ({fetched} MiB)")
            shutil.rmtree(cache, ignore_errors=True)
        if mpi:
            for n in (2, 3):
                r, logits = generate(model, f"{kind}-mpi{n}", ["--transport", "mpi"],
                                     prefix=mpi + ["-np", str(n)])
                check(r.returncode == 0, f"{kind}, {n} MPI ranks: exits 0 ({r.stderr[-1500:]})")
                check(r.stdout == ref.stdout, f"{kind}, {n} MPI ranks: the same ids as one stage")
                check(logits == ref_logits, f"{kind}, {n} MPI ranks: logits bit-identical")
        else:
            print(f"skipped: {kind} over MPI (no mpirun)")
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print("all ok")


main()
