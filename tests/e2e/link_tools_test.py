#!/usr/bin/env python3
"""The link tools of issue 19: `meshlm ping` and the delay relay (tests/e2e/delay_relay.cpp).

- `meshlm ping --json` against a free worker: one series per size asked for, every round trip
  echoed byte for byte (ping checks it), the derived latency and bandwidth present; against a
  worker with a secret, the link is encrypted and a wrong secret is a clear error.
- Through the relay with --delay 20: no round trip is shorter than the 40 ms the relay must add
  (a lower bound: the relay never forwards early, whatever the machine's load), and 1 MiB
  payloads come back intact through it; --delay 0 forwards too.
No upper bounds on time: a busy machine is slow, not wrong.
Usage: link_tools_test.py MESHLM DELAY_RELAY WORKDIR"""
import json
import os
import subprocess
import sys
import time

meshlm, relay, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def wait_port_file(path, proc, what):
    for _ in range(3000):  # up to 60 s (a bound, not a timing check)
        if os.path.exists(path) and open(path).read().strip():
            return int(open(path).read().strip())
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        time.sleep(0.02)
    sys.exit(f"{what} did not start")


def start_worker(tag, secret=None):
    port_file = os.path.join(work, f"link-worker-{os.getpid()}-{tag}")
    if os.path.exists(port_file):
        os.remove(port_file)
    cmd = [meshlm, "worker", "--listen", "127.0.0.1:0", "--threads", "1", "--no-discovery",
           "--port-file", port_file]
    if secret:
        cmd += ["--secret", secret]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, wait_port_file(port_file, p, "worker")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_relay(to_port, delay):
    port = free_port()
    ready = os.path.join(work, f"link-relay-{os.getpid()}-{port}")
    if os.path.exists(ready):
        os.remove(ready)
    p = subprocess.Popen([relay, "--listen", f"127.0.0.1:{port}", "--to", f"127.0.0.1:{to_port}",
                          "--delay", str(delay), "--ready-file", ready],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(3000):
        if os.path.exists(ready):
            return p, port
        if p.poll() is not None:
            sys.exit(f"relay exited with {p.returncode}")
        time.sleep(0.02)
    sys.exit("relay did not start")


def ping(port, *args, secret=None):
    cmd = [meshlm, "ping", f"127.0.0.1:{port}", "--json", *args]
    if secret:
        cmd += ["--secret", secret]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


procs = []
try:
    plain, plain_port = start_worker("plain")
    procs.append(plain)
    sealed, sealed_port = start_worker("sealed", secret="link-test")
    procs.append(sealed)

    r = ping(plain_port, "--sizes", "64", "4096", "65536", "1048576", "--rounds", "5")
    check(r.returncode == 0, f"ping a free worker ({r.stderr.strip()[-300:]})")
    if r.returncode == 0:
        j = json.loads(r.stdout)
        check([s["bytes"] for s in j["samples"]] == [64, 4096, 65536, 1048576],
              "one series per size, in order")
        check(all(s["rounds"] == 5 and 0 < s["min_us"] <= s["median_us"] <= s["p90_us"]
                  for s in j["samples"]), "5 round trips each, min <= median <= p90")
        check(not j["encrypted"] and j["latency_us"] > 0, "plain link, latency measured")
    # The same worker again: the probe ended its session, so the worker is free.
    r = ping(plain_port, "--sizes", "64", "--rounds", "2")
    check(r.returncode == 0, "the worker is free again after a ping")

    r = ping(sealed_port, "--sizes", "64", "65536", "--rounds", "3", secret="link-test")
    check(r.returncode == 0 and json.loads(r.stdout)["encrypted"],
          "with the cluster secret the link is encrypted")
    r = ping(sealed_port, "--sizes", "64", "--rounds", "1", secret="wrong")
    check(r.returncode != 0 and "secret" in (r.stderr + r.stdout).lower(),
          f"a wrong secret is refused, naming the secret ({(r.stderr + r.stdout).strip()[-200:]})")

    rel, rel_port = start_relay(plain_port, 20)
    procs.append(rel)
    r = ping(rel_port, "--sizes", "64", "1048576", "--rounds", "3")
    check(r.returncode == 0, f"ping through the 20 ms relay ({r.stderr.strip()[-300:]})")
    if r.returncode == 0:
        j = json.loads(r.stdout)
        mins = [s["min_us"] for s in j["samples"]]
        check(all(m >= 40000 for m in mins),
              f"every round trip through the relay takes at least 2 x 20 ms (min {mins} µs)")
    rel0, rel0_port = start_relay(plain_port, 0)
    procs.append(rel0)
    r = ping(rel0_port, "--sizes", "64", "1048576", "--rounds", "3")
    check(r.returncode == 0, "ping through the relay with --delay 0 (1 MiB echoed intact)")
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()

if failures:
    sys.exit(f"{len(failures)} check(s) failed")
print("all link tool checks passed")
