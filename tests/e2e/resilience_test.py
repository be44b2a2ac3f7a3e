#!/usr/bin/env python3
"""A lost worker loses nothing: `meshlm serve --peers` with one `meshlm worker` process.

1. The scenario of the resilience issue: one request, `kill -9` of the worker, the worker started
   again on the same address: with no request in between, /health is "ok" again (the coordinator
   reconnected in the background and logged it), and the next request answers as before.
2. A worker killed in the middle of a streaming generation and started again: the client sees a
   pause, not an error, and the text equals the undisturbed run's, for greedy and for seeded
   sampling; /metrics counts the replayed sequence.
Every wait is bounded; nothing depends on how fast this machine is.
Usage: resilience_test.py MESHLM TOKENIZER_DIR WORKDIR"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

meshlm, tokenizer_dir, work = sys.argv[1:4]
if not os.path.exists(os.path.join(tokenizer_dir, "tokenizer.json")):
    print(f"SKIP: no tokenizer at {tokenizer_dir}")
    sys.exit(77)
SECRET = "resilience-test"
procs = []
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_worker(port, log):
    p = subprocess.Popen([meshlm, "worker", "--listen", f"127.0.0.1:{port}", "--secret", SECRET,
                          "--threads", "1", "--no-discovery"], stdout=log, stderr=log)
    procs.append(p)
    return p


def http(method, url, body=None, timeout=300):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, socket.timeout) as e:
        return 0, str(e)


def wait_for(pred, limit_s, step=0.1):
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def completion(base, max_tokens, **sampling):
    body = {"prompt": "The cluster of small machines", "max_tokens": max_tokens,
            "ignore_eos": True, **sampling}
    status, text = http("POST", base + "/v1/completions", body)
    if status != 200:
        raise RuntimeError(f"completion failed: {status} {text[:300]}")
    return json.loads(text)["choices"][0]["text"]


def stream_with_kill(base, max_tokens, on_started, **sampling):
    """Streams a completion; calls on_started() once 5 chunks arrived. Returns (text, error)."""
    body = {"prompt": "The cluster of small machines", "max_tokens": max_tokens,
            "ignore_eos": True, "stream": True, **sampling}
    req = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    text, chunks, error = "", 0, None
    with urllib.request.urlopen(req, timeout=600) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            j = json.loads(data)
            if "error" in j:
                error = j["error"]
                break
            text += j["choices"][0].get("text", "")
            chunks += 1
            if chunks == 5:
                on_started()
    return text, error


def metric(base, name):
    status, text = http("GET", base + "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main():
    tmp = tempfile.mkdtemp(prefix="meshlm-resilience-", dir=work)
    model = os.path.join(tmp, "model")
    subprocess.run([meshlm, "synth", "--arch", "qwen3", "--out", model, "--hidden", "128",
                    "--intermediate", "256", "--layers", "4", "--heads", "4", "--kv-heads", "2",
                    "--head-dim", "32", "--tokenizer-dir", tokenizer_dir, "--seed", "11",
                    "--threads", "2"], check=True, capture_output=True)
    wport, sport = free_port(), free_port()
    wlog = open(os.path.join(tmp, "worker.log"), "w")
    worker = start_worker(wport, wlog)
    slog_path = os.path.join(tmp, "serve.log")
    slog = open(slog_path, "w")
    serve_cmd = [meshlm, "serve", "--model", model, "--port", str(sport),
                 "--peers", f"127.0.0.1:{wport}", "--secret", SECRET, "--threads", "1",
                 "--no-discovery", "--ctx", "2048", "--heartbeat-timeout", "3",
                 "--recovery-timeout", "120"]
    serve = subprocess.Popen(serve_cmd, stdout=slog, stderr=slog)
    procs.append(serve)
    base = f"http://127.0.0.1:{sport}"
    check(wait_for(lambda: http("GET", base + "/health")[0] == 200, 120), "serve is up (2 stages)")

    # 0. The coordinator killed and started again: the worker keeps its layers (no reload).
    serve.kill()
    serve.wait()
    t0 = time.monotonic()
    serve = subprocess.Popen(serve_cmd, stdout=slog, stderr=slog)
    procs.append(serve)
    check(wait_for(lambda: http("GET", base + "/health")[0] == 200, 120),
          f"a restarted coordinator serves again ({time.monotonic() - t0:.1f} s)")
    wlog.flush()
    loads = open(os.path.join(tmp, "worker.log")).read().count("loading layers")
    check(loads == 1, f"the worker kept its layers across the coordinator's restart "
                      f"(loaded {loads} time(s))")

    # 1. The restarted worker is taken back with no traffic in between.
    ref_short = completion(base, 16, temperature=0)
    worker.kill()
    worker.wait()
    check(wait_for(lambda: http("GET", base + "/health")[0] == 503, 30),
          "/health degraded after kill -9 of the worker")
    worker = start_worker(wport, wlog)
    check(wait_for(lambda: http("GET", base + "/health")[0] == 200, 60),
          "/health ok again with no request made: the worker was taken back")
    slog.flush()
    check("reconnected" in open(slog_path).read(), "the coordinator logged the reconnect")
    check(completion(base, 16, temperature=0) == ref_short, "same answer after the restart")

    # 2. Killed mid-stream: the stream pauses and finishes with the undisturbed text.
    n = 600  # long enough that the kill lands mid-generation (the worker is stopped first)
    for name, sampling in [("greedy", {"temperature": 0}),
                           ("seeded", {"temperature": 0.9, "top_p": 0.95, "seed": 42})]:
        ref = completion(base, n, **sampling)
        replayed_before = metric(base, "meshlm_replayed_sequences_total") or 0
        w = {"proc": worker}

        def kill_and_restart():
            w["proc"].send_signal(signal.SIGSTOP)  # generation stalls at once...
            w["proc"].kill()                       # ...then the machine is gone
            w["proc"].wait()

            def restart():
                time.sleep(1.0)
                w["proc"] = start_worker(wport, wlog)
            threading.Thread(target=restart).start()

        text, error = stream_with_kill(base, n, kill_and_restart, **sampling)
        worker = w["proc"]
        check(error is None, f"{name}: no error in the stream (got {error})")
        check(text == ref, f"{name}: streamed text equals the undisturbed run's "
                           f"({len(text)} vs {len(ref)} chars)")
        replayed = metric(base, "meshlm_replayed_sequences_total") or 0
        check(replayed >= replayed_before + 1, f"{name}: the sequence was replayed "
                                               f"(meshlm_replayed_sequences_total {replayed})")
        check(wait_for(lambda: http("GET", base + "/health")[0] == 200, 60),
              f"{name}: /health ok afterwards")


try:
    main()
except Exception as e:  # noqa: BLE001 - report and fail
    failures.append(f"exception: {e}")
    print(f"FAIL exception: {e}", flush=True)
finally:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
print(f"{0 if failures else 1} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
