#!/usr/bin/env python3
"""`--transport mpi` through the CLI, under mpirun:
  1. generate on 3 ranks (and on 2 with explicit --layers) prints the same ids and writes the same
     logits as one stage: a 300-token prompt (two 256-token chunks), 64 tokens;
  2. bench on 2 ranks reports 2 stages;
  3. a coordinator that fails after the worker ranks started ends the whole job (no hang);
  4. serve on 2 ranks: /health lists 2 ready stages, a chat completion at temperature 0 equals
     one stage's (text and logprobs), the ranks sit idle without burning a core, and SIGTERM or
     SIGINT to rank 0 ends every rank and mpirun with status 0.
Needs the qwen3 tokenizer from tests/js/node_modules for part 4 (exit 77 when it is absent).
usage: mpi_cli_test.py MESHLM MPIEXEC TOKENIZER_DIR WORK_DIR"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

MESHLM, MPIEXEC, TOKDIR, WORK = sys.argv[1:5]
MPI = [MPIEXEC, "--allow-run-as-root", "--oversubscribe"]
ENV = dict(os.environ, MESHLM_LOG="info")
failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(args, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV)


def synth(out, tokenizer):
    if os.path.exists(os.path.join(out, "config.json")):
        return
    args = [MESHLM, "synth", "--arch", "qwen3", "--out", out + ".tmp", "--hidden", "64",
            "--intermediate", "128", "--layers", "4", "--heads", "4", "--kv-heads", "2",
            "--head-dim", "16", "--dtype", "bf16", "--seed", "5", "--threads", "2"]
    args += ["--tokenizer-dir", TOKDIR] if tokenizer else ["--vocab", "384"]
    subprocess.run(["rm", "-rf", out + ".tmp", out], check=True)
    r = run(args, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("synth failed: " + r.stderr[-2000:])
    os.rename(out + ".tmp", out)


def generate_parts(model):
    prompt = ",".join(str((i * 31 + 5) % 384) for i in range(300))
    common = ["generate", "--model", model, "--prompt-ids", prompt, "-n", "64", "--ids",
              "--ignore-eos", "--threads", "1"]
    ref_logits = os.path.join(WORK, "mpi-cli-logits-1.bin")
    ref = run([MESHLM] + common + ["--logits-out", ref_logits])
    check(ref.returncode == 0 and len(ref.stdout.split()) == 64, "one stage: 64 ids")
    for np_, extra in ((3, []), (2, ["--layers", "0-2,3-3"])):
        logits = os.path.join(WORK, f"mpi-cli-logits-{np_}.bin")
        r = run(MPI + ["-np", str(np_), MESHLM] + common +
                ["--transport", "mpi", "--logits-out", logits] + extra)
        check(r.returncode == 0, f"generate on {np_} ranks exits 0 ({r.stderr[-1500:]})")
        check(f"pipeline of {np_} stages over MPI ready" in r.stderr, f"{np_} stages over MPI")
        check(r.stdout == ref.stdout, f"{np_} ranks: the same 64 ids as one stage")
        same = open(logits, "rb").read() == open(ref_logits, "rb").read()
        check(same and os.path.getsize(logits) == 64 * 384 * 4,
              f"{np_} ranks: logits bit-identical to one stage")
        if extra:
            check("loaded layers 3-4" in r.stderr, "--layers honoured over MPI")

    r = run(MPI + ["-np", "2", MESHLM, "bench", "--model", model, "--transport", "mpi", "-p", "16",
                   "-n", "4", "-r", "1", "--threads", "1", "--json"])
    try:
        stages = json.loads(r.stdout.strip().splitlines()[-1]).get("stages")
    except (ValueError, IndexError):
        stages = None
    check(r.returncode == 0 and stages == 2, f"bench on 2 ranks: 2 stages ({r.stderr[-800:]})")

    # Rank 0 refuses the layer ranges after the worker rank is already waiting for it.
    t0 = time.time()
    try:
        r = run(MPI + ["-np", "2", MESHLM] + common + ["--transport", "mpi", "--layers", "0-3"],
                timeout=40)
        check(r.returncode != 0 and "--layers gives 1 ranges for 2 stages" in r.stderr,
              f"a failing rank 0 fails the job in {time.time() - t0:.1f} s")
    except subprocess.TimeoutExpired:
        check(False, "a failing rank 0 ended the job (mpirun hung)")


def http(port, path, body=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


CHAT = {"model": "m", "temperature": 0, "max_tokens": 24, "ignore_eos": True, "logprobs": True,
        "top_logprobs": 2, "messages": [{"role": "user", "content": "What is a mesh network?"}]}


def chat(port):
    body = http(port, "/v1/chat/completions", CHAT)
    choice = body["choices"][0]
    return choice["message"], choice.get("logprobs")


def descendants(pid):
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def rank_pid(mpirun_pid, rank):
    for p in descendants(mpirun_pid):
        try:
            env = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() in env and \
                os.path.basename(os.readlink(f"/proc/{p}/exe")) == "meshlm":
            return p
    return None


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError):
            pass
    return total


def start_serve(model, prefix):
    args = prefix + [MESHLM, "serve", "--model", model, "--port", "0", "--host", "127.0.0.1",
                     "--threads", "1", "--ctx", "256", "--parallel", "2", "--no-discovery"]
    if prefix:
        args += ["--transport", "mpi"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(
        os.path.join(WORK, "mpi-cli-serve.log"), "a"), text=True, env=ENV)
    line = proc.stdout.readline()
    if not line.startswith("listening on http://"):
        proc.kill()
        raise RuntimeError("serve did not start: " + line)
    return proc, int(line.strip().rsplit(":", 1)[1])


def serve_parts(model):
    proc, port = start_serve(model, [])
    ref = chat(port)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)

    for sig in (signal.SIGTERM, signal.SIGINT):
        proc, port = start_serve(model, MPI + ["-np", "2"])
        try:
            health = http(port, "/health")
            stages = health.get("stages", [])
            check(len(stages) == 2 and all(s.get("state") == "ready" for s in stages),
                  f"/health lists 2 ready stages ({[s.get('node') for s in stages]})")
            got = chat(port)
            check(got == ref, "chat completion at temperature 0 equals one stage's")
            rank0 = rank_pid(proc.pid, 0)
            check(rank0 is not None, "rank 0 found")
            if sig == signal.SIGTERM:
                pids = [proc.pid] + descendants(proc.pid)
                time.sleep(0.5)
                t0, c0 = time.time(), cpu_ticks(pids)
                time.sleep(2.0)
                cores = (cpu_ticks(pids) - c0) / os.sysconf("SC_CLK_TCK") / (time.time() - t0)
                check(cores < 0.5, f"idle mpirun + 2 ranks use {cores:.2f} cores")
            t0 = time.time()
            os.kill(rank0, sig)
            rc = proc.wait(timeout=30)
            check(rc == 0, f"{signal.Signals(sig).name} to rank 0: mpirun exits {rc} in "
                           f"{time.time() - t0:.1f} s")
        except subprocess.TimeoutExpired:
            check(False, f"{signal.Signals(sig).name} to rank 0: mpirun still running after 30 s")
        finally:
            if proc.poll() is None:  # failed: leave no rank behind
                for p in descendants(proc.pid):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                proc.kill()
                proc.wait()


def main():
    os.makedirs(WORK, exist_ok=True)
    plain = os.path.join(WORK, "synth-qwen3-mpi-cli")
    synth(plain, tokenizer=False)
    generate_parts(plain)
    have_tokenizer = os.path.exists(os.path.join(TOKDIR, "tokenizer.json"))
    if have_tokenizer:
        chat_model = os.path.join(WORK, "synth-qwen3-mpi-chat")
        synth(chat_model, tokenizer=True)
        serve_parts(chat_model)
    if failures:
        print(f"{len(failures)} check(s) failed; serve log: {WORK}/mpi-cli-serve.log")
        return 1
    if not have_tokenizer:
        print(f"SKIP: serve part needs {TOKDIR}/tokenizer.json (npm ci in tests/js)")
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
