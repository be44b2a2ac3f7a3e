#!/usr/bin/env python3
"""Chaos: a coordinator and three workers on hosts of their own (network namespaces on a bridge),
16 concurrent streaming requests, while a driver kills (-9, restarted 1-3 s later), suspends
(SIGSTOP for 2-6 s) and unplugs (`ip link set down` for 2-6 s) random workers, one fault at a
time. The layout is fixed (--peers: every worker holds layers), so each fault breaks the pipeline
until the worker is back: requests pause and are replayed, never fail.

Checks: every request completes and its text equals the same request's text on the undisturbed
cluster (measured first); at the end, a worker killed for longer than --recovery-timeout makes the
requests then running fail with a clear error within that timeout, and service resumes when it
returns; the coordinator's resident memory stays flat. Prints the figures: requests, faults by
kind, outages, longest pause of a stream.

Usage: chaos_test.py MESHLM TOKENIZER_DIR [SECONDS]   (CHAOS_SECONDS overrides; default 40)
Needs root (namespaces); skipped otherwise. Every wait is bounded."""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from netns_lib import (add_bridge, check, delete_namespaces, exit_on_signals, failures,  # noqa: E402
                       in_ns, join_bridge, kill_procs, require_root, require_tools, run, skip,
                       spawn, summary, sweep_stale_namespaces, wait_listening)

meshlm, tokenizer_dir = sys.argv[1], sys.argv[2]
SECONDS = float(os.environ.get("CHAOS_SECONDS", sys.argv[3] if len(sys.argv) > 3 else 40))
PID = os.environ.get("MESHLM_CHAOS_PID", str(os.getpid()))
NS_BR, NS_C = f"mlchaos{PID}br", f"mlchaos{PID}c"
WORKERS = {f"w{k}": (f"mlchaos{PID}w{k}", f"10.78.0.{10 + k}", f"cw{k}", f"cb{k}")
           for k in (1, 2, 3)}
C_ADDR, PORT, WPORT = "10.78.0.2", 8100, 7000
SECRET = "chaos-secret"
STREAMS = 16
RECOVERY_S = 60
FINAL_RECOVERY_S = 8  # the last phase's serve: a worker gone for longer than this


class Worker:
    def __init__(self, name, tmp):
        self.name, self.tmp = name, tmp
        self.ns, self.addr, self.veth, _ = WORKERS[name]
        self.proc, self.starts = None, 0
        self.lock = threading.Lock()

    def start(self):
        self.starts += 1
        log = open(os.path.join(self.tmp, f"{self.name}-{self.starts}.log"), "w")
        self.proc = spawn(in_ns(self.ns, meshlm, "worker", "--listen", f"{self.addr}:{WPORT}",
                                "--secret", SECRET, "--threads", "1", "--no-discovery",
                                "--exit-with-parent", str(os.getpid())), stdout=log,
                          pdeathsig=True)
        wait_listening(self.ns, self.addr, WPORT, self.proc, f"worker {self.name}", timeout=30)


def http_json(method, path, body=None, timeout=600):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://{C_ADDR}:{PORT}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def stream(body):
    """Streams one completion. Returns (text, error, longest gap between chunks in s)."""
    import urllib.request
    req = urllib.request.Request(f"http://{C_ADDR}:{PORT}/v1/completions", method="POST",
                                 data=json.dumps(dict(body, stream=True)).encode(),
                                 headers={"Content-Type": "application/json"})
    text, error, gap = "", None, 0.0
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            last = time.monotonic()
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                now = time.monotonic()
                gap, last = max(gap, now - last), now
                if line[6:] == "[DONE]":
                    break
                j = json.loads(line[6:])
                if "error" in j:
                    error = j["error"].get("message", str(j["error"]))
                    break
                text += j["choices"][0].get("text", "")
    except Exception as e:  # noqa: BLE001 - an HTTP error status is an error too
        error = getattr(e, "read", lambda: str(e).encode())().decode()[:300] or str(e)
    return text, error, gap


def requests_set():
    out = []
    for i in range(12):
        body = {"prompt": f"Request {i}: the machines of the cluster", "max_tokens": 48,
                "ignore_eos": True}
        if i % 3 == 0:
            body.update(temperature=0)
        else:
            body.update(temperature=0.8, top_p=0.95, seed=1000 + i)
        out.append(body)
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_serve(tmp, label, recovery_s):
    log = open(os.path.join(tmp, f"serve-{label}.log"), "w")
    peers = ",".join(f"{w[1]}:{WPORT}" for w in WORKERS.values())
    p = spawn([meshlm, "serve", "--model", os.path.join(tmp, "model"), "--host", C_ADDR,
               "--port", str(PORT), "--peers", peers, "--secret", SECRET, "--threads", "1",
               "--no-discovery", "--parallel", str(STREAMS), "--heartbeat-timeout", "3",
               "--recovery-timeout", str(recovery_s)], stdout=log, pdeathsig=True)
    end = time.monotonic() + 120
    while time.monotonic() < end and http_json("GET", "/health", timeout=5)[0] != 200:
        if p.poll() is not None:
            raise RuntimeError(f"serve exited ({p.returncode}); see {log.name}")
        time.sleep(0.2)
    if http_json("GET", "/health", timeout=5)[0] != 200:
        raise RuntimeError("serve did not come up")
    return p


def inside(tmp):
    """Runs in the coordinator's namespace (C): serve, load, faults."""
    workers = {name: Worker(name, tmp) for name in WORKERS}
    for w in workers.values():
        w.start()
    serve = start_serve(tmp, "chaos", RECOVERY_S)
    bodies = requests_set()
    reference = {}
    for i, body in enumerate(bodies):
        status, text = http_json("POST", "/v1/completions", body)
        if status != 200:
            raise RuntimeError(f"reference request {i} failed: {status} {text[:200]}")
        reference[i] = json.loads(text)["choices"][0]["text"]
    rss_start = rss_kib(serve.pid)

    stop = threading.Event()
    stats = {"requests": 0, "mismatch": 0, "errors": [], "max_gap": 0.0}
    stats_lock = threading.Lock()

    def client(k):
        i = k
        while not stop.is_set():
            idx = i % len(bodies)
            text, error, gap = stream(bodies[idx])
            with stats_lock:
                stats["requests"] += 1
                stats["max_gap"] = max(stats["max_gap"], gap)
                if error is not None:
                    stats["errors"].append(error)
                elif text != reference[idx]:
                    stats["mismatch"] += 1
            i += 7

    faults = {"kill": 0, "stop": 0, "link": 0}
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "1")))

    def inject():
        w = workers[rng.choice(sorted(workers))]
        kind = rng.choice(sorted(faults))
        faults[kind] += 1
        if kind == "kill":
            w.proc.kill()
            w.proc.wait()
            time.sleep(rng.uniform(1, 3))
            w.start()
        elif kind == "stop":
            w.proc.send_signal(signal.SIGSTOP)
            time.sleep(rng.uniform(2, 6))
            w.proc.send_signal(signal.SIGCONT)
        else:
            run("ip", "-n", w.ns, "link", "set", w.veth, "down")
            time.sleep(rng.uniform(2, 6))
            run("ip", "-n", w.ns, "link", "set", w.veth, "up")
        # Let the cluster heal and serve a little before the next fault.
        end = time.monotonic() + 60
        while time.monotonic() < end and http_json("GET", "/health", timeout=5)[0] != 200:
            time.sleep(0.2)
        time.sleep(rng.uniform(1, 3))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(STREAMS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while time.monotonic() - t0 < SECONDS:
        inject()
    stop.set()
    for t in threads:
        t.join(timeout=300)
    elapsed = time.monotonic() - t0
    _, metrics = http_json("GET", "/metrics", timeout=10)
    figures = {line.split()[0]: line.split()[1] for line in metrics.splitlines()
               if line.startswith(("meshlm_recoveries_total", "meshlm_replayed_sequences_total"))}
    rss_end = rss_kib(serve.pid)
    print(f"figures: {elapsed:.0f} s, {STREAMS} streams, {stats['requests']} requests, faults "
          f"{faults}, outages {figures.get('meshlm_recoveries_total')}, sequences replayed "
          f"{figures.get('meshlm_replayed_sequences_total')}, longest pause of a stream "
          f"{stats['max_gap']:.1f} s, serve RSS {rss_start // 1024} -> {rss_end // 1024} MiB",
          flush=True)
    check(not any(t.is_alive() for t in threads), "every client finished")
    check(stats["requests"] >= STREAMS, f"requests completed under chaos ({stats['requests']})")
    check(sum(faults.values()) >= 1, f"faults injected ({faults})")
    check(not stats["errors"], f"no request failed ({len(stats['errors'])} errors: "
                               f"{stats['errors'][:3]})")
    check(stats["mismatch"] == 0, f"every text equals the undisturbed run's "
                                  f"({stats['mismatch']} differ)")
    check(rss_end <= rss_start * 1.5 + 64 * 1024, f"serve's memory flat ({rss_start // 1024} -> "
                                                 f"{rss_end // 1024} MiB)")

    # Too few machines: a worker gone for longer than the recovery timeout.
    serve.terminate()
    serve.wait(timeout=30)
    serve = start_serve(tmp, "gone", FINAL_RECOVERY_S)
    w = workers["w2"]
    w.proc.kill()
    w.proc.wait()
    t1 = time.monotonic()
    text, error, _ = stream(bodies[0])
    waited = time.monotonic() - t1
    check(error is not None and "down" in error,
          f"with a worker gone, the request fails with a clear error ({(error or '')[:160]})")
    check(waited < FINAL_RECOVERY_S + 30, f"... within the recovery timeout ({waited:.1f} s)")
    w.start()
    end = time.monotonic() + 60
    while time.monotonic() < end and http_json("GET", "/health", timeout=5)[0] != 200:
        time.sleep(0.2)
    status, text = http_json("POST", "/v1/completions", bodies[0])
    check(status == 200 and json.loads(text)["choices"][0]["text"] == reference[0],
          "service resumes when the worker returns")
    return summary("chaos: every check passed")


def outside():
    require_root("network namespaces")
    require_tools("ip", "ss")
    if not os.path.exists(os.path.join(tokenizer_dir, "tokenizer.json")):
        skip(f"no tokenizer at {tokenizer_dir}")
    sweep_stale_namespaces(r"mlchaos(\d+)\w+", "meshlm-chaos")
    tmp = tempfile.mkdtemp(prefix=f"meshlm-chaos-{PID}-")
    names = [NS_BR, NS_C] + [w[0] for w in WORKERS.values()]
    rc = 1
    try:
        try:
            add_bridge(NS_BR, "br0")
            run("ip", "netns", "add", NS_C)
            join_bridge(NS_C, C_ADDR, "cc", "bc", NS_BR, "br0")
            run("ip", "-n", NS_C, "link", "set", "lo", "up")  # the load runs in C, to C_ADDR
            for ns, addr, veth, br in WORKERS.values():
                run("ip", "netns", "add", ns)
                join_bridge(ns, addr, veth, br, NS_BR, "br0")
                run("ip", "-n", ns, "link", "set", "lo", "up")
        except (subprocess.CalledProcessError, RuntimeError) as e:
            skip(f"cannot create network namespaces here: {e}")
        run(meshlm, "synth", "--arch", "qwen3", "--out", os.path.join(tmp, "model"), "--hidden",
            "128", "--intermediate", "256", "--layers", "4", "--heads", "4", "--kv-heads", "2",
            "--head-dim", "32", "--tokenizer-dir", tokenizer_dir, "--seed", "5", "--threads", "2")
        env = dict(os.environ, MESHLM_CHAOS_INSIDE=tmp, MESHLM_CHAOS_PID=PID)
        r = subprocess.run(in_ns(NS_C, sys.executable, *sys.argv), env=env,
                           timeout=SECONDS + 900)
        rc = r.returncode
        if rc != 0 or os.environ.get("KEEP_LOGS"):
            for f in sorted(os.listdir(tmp)):
                if f.endswith(".log"):
                    print(f"---- {f}\n{open(os.path.join(tmp, f)).read()[-3000:]}")
    finally:
        delete_namespaces(*names)
        subprocess.run(["rm", "-rf", tmp])
    return rc


if __name__ == "__main__":
    exit_on_signals()
    if os.environ.get("MESHLM_CHAOS_INSIDE"):
        try:
            code = inside(os.environ["MESHLM_CHAOS_INSIDE"])
        except Exception as e:  # noqa: BLE001
            check(False, f"exception: {e}")
            code = 1
        finally:
            kill_procs()
        sys.exit(code)
    sys.exit(outside())
