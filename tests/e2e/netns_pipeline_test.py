#!/usr/bin/python3
"""A 3-stage pipeline on three simulated hosts: network namespaces, 1 Gbit/s links, 1 ms per hop.

  netns_pipeline_test.py MESHLM

Hosts: coordinator C (10.233.0.1), workers W1 (.2) and W2 (.3), each a network namespace whose
veth joins a bridge in a fourth namespace; `tc tbf rate 1gbit` on each host's veth. In front of
each worker (port 7000) a delay relay (delay_relay.py, port 7001) adds 1 ms each way, and the
coordinator is told the relays (--peers), so C->W1, W1->W2 and W2->C (results) each cross 1 ms.
C has no loopback interface at all; workers listen on their namespace address.

No shared files: the test runs in its own mount namespace where each host's disk is a tmpfs
(TMP/c, TMP/w1, TMP/w2); each worker runs in a further mount namespace where the coordinator's
disk and the other worker's are covered by empty tmpfs mounts, with no --model, and its model
cache on its own disk. The coordinator uses --sync always: workers receive their layers over
the network.

Checks:
  1. `generate` over the 3 hosts (prompt longer than one 256-token prefill chunk, 32 tokens)
     gives exactly the ids and byte-identical logits of the same command on one stage.
  2. Each worker received exactly the tensors of its layers into its cache (it never saw the
     model's files), and the coordinator logged sending them; the relays carried the traffic and
     the added latency shows (> 3 ms per token).
  3. A second run against the same workers syncs nothing; a third, after restarting the
     workers (same disks), fetches 0 bytes and leaves the cached files untouched. Same output.
Exit 77 (skip) without root, `ip netns`, `tc`, `unshare` or tbf. Namespaces, mounts and
processes are always cleaned up; after a kill -9, workers and relays stop by themselves
(--exit-with-parent), the mounts vanish with the test's mount namespace, and the next run
deletes the namespace names left in /run/netns.
"""
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from netns_lib import (add_bridge, check, delete_namespaces, exit_on_signals, failures, in_ns,
                       join_bridge, kill_procs, mount_host_disks, print_logs,
                       reexec_in_mount_namespace, require_root, require_tools, run, skip, spawn,
                       stop, summary, sweep_stale_namespaces, unmount_host_disks, wait_listening)

HERE = os.path.dirname(os.path.abspath(__file__))
RELAY = os.path.join(HERE, "delay_relay.py")
TAG = str(os.getpid())
NS_BR, NS_C, NS_W1, NS_W2 = (f"np{x}{TAG}" for x in ("B", "C", "W1", "W2"))
HOSTS = {  # name: (namespace, address, host-side veth, bridge-side veth)
    "c": (NS_C, "10.233.0.1", f"nph{TAG}c", f"npb{TAG}c"),
    "w1": (NS_W1, "10.233.0.2", f"nph{TAG}1", f"npb{TAG}1"),
    "w2": (NS_W2, "10.233.0.3", f"nph{TAG}2", f"npb{TAG}2"),
}
BRIDGE = f"npbr{TAG}"
WORKER_PORT, RELAY_PORT = 7000, 7001
DELAY_MS = 1.0
SECRET = "netns-test-secret"
LAYERS = "0-1,2-2,3-3"  # C: layers 0-1, W1: 2, W2: 3 (and the LM head)
WORKER_LAYERS = {"w1": (2, 3), "w2": (3, 4)}
PROMPT_LEN, N_GEN = 300, 32  # 300 > the 256-token prefill chunk of `generate`

TMP_PREFIX = "meshlm-netns"


def setup_network():
    # Namespaces of an earlier run that was killed (-9, a ctest timeout) before its cleanup, and
    # its folder (empty: the hosts' disks were tmpfs mounts of its mount namespace).
    sweep_stale_namespaces(r"np(?:B|C|W1|W2)(\d+)", TMP_PREFIX)
    add_bridge(NS_BR, BRIDGE)
    for ns in (NS_C, NS_W1, NS_W2):
        run("ip", "netns", "add", ns)
    for name, (ns, addr, host_if, br_if) in HOSTS.items():
        join_bridge(ns, addr, host_if, br_if, NS_BR, BRIDGE)
        if name != "c":  # the relay reaches its worker through the local (loopback) path
            run("ip", "-n", ns, "link", "set", "lo", "up")
        # A 1 Gbit/s link: what leaves each host is shaped by a token bucket.
        r = run(*in_ns(ns, "tc", "qdisc", "add", "dev", host_if, "root", "tbf", "rate", "1gbit",
                       "burst", "32kb", "latency", "20ms"), ok=False)
        if r.returncode != 0:
            skip(f"cannot add a tbf qdisc: {r.stderr.strip()}")


def tbf_sent_bytes(name):
    ns, _, host_if, _ = HOSTS[name]
    out = run(*in_ns(ns, "tc", "-s", "qdisc", "show", "dev", host_if)).stdout
    rate = re.search(r"qdisc tbf .*? rate (\S+)", out)
    sent = re.search(r"Sent (\d+) bytes", out)
    return (rate.group(1) if rate else "?"), int(sent.group(1)) if sent else 0


def wait_file(path, proc, what, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early ({proc.returncode})")
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not start")


class Cluster:
    def __init__(self, meshlm, tmp):
        self.meshlm, self.tmp = meshlm, tmp
        self.disk = {name: os.path.join(tmp, name) for name in HOSTS}
        help_text = run(meshlm, "worker", "--help").stdout
        self.has_cache_flag = "--cache-dir" in help_text
        self.workers = {}
        self.starts = 0

    def cache_dir(self, name):
        base = os.path.join(self.disk[name], "cache")
        return base if self.has_cache_flag else os.path.join(base, "meshlm")

    def start_worker(self, name):
        ns, addr, _, _ = HOSTS[name]
        own = self.disk[name]
        others = [self.disk[n] for n in HOSTS if n != name]
        self.starts += 1
        log = open(os.path.join(own, f"worker{self.starts}.log"), "w")
        cache_args = ["--cache-dir", self.cache_dir(name)] if self.has_cache_flag else []
        # In a mount namespace of its own: the other hosts' disks are covered by empty tmpfs
        # mounts, so the worker can only get the model over the network.
        script = ('set -e; for d in $HIDE; do mount -t tmpfs -o size=1m hidden "$d"; done; '
                  'find $HIDE -mindepth 1 > "$OWN/visible.txt"; cd "$OWN"; exec "$@"')
        cmd = in_ns(ns, "unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                    self.meshlm, "worker", "--listen", f"{addr}:{WORKER_PORT}",
                    "--secret", SECRET, "--threads", "1", "--no-discovery",
                    "--exit-with-parent", str(os.getpid()), *cache_args)
        env = dict(os.environ, OWN=own, HIDE=" ".join(others), HOME=own,
                   XDG_CACHE_HOME=os.path.join(own, "cache"))
        p = spawn(cmd, stdout=log, env=env)
        self.workers[name] = (p, log.name)
        wait_listening(ns, addr, WORKER_PORT, p, f"worker {name}")
        return p

    def stop_worker(self, name):
        stop(self.workers.pop(name)[0])

    def start_relay(self, name):
        ns, addr, _, _ = HOSTS[name]
        ready = os.path.join(self.disk[name], "relay.ready")
        log = open(os.path.join(self.disk[name], "relay.log"), "w")
        p = spawn(in_ns(ns, "/usr/bin/python3", RELAY, "--listen", f"{addr}:{RELAY_PORT}",
                        "--to", f"{addr}:{WORKER_PORT}", "--delay", str(DELAY_MS),
                        "--ready-file", ready, "--exit-with-parent", str(os.getpid())),
                  stdout=log)
        wait_file(ready, p, f"relay on {name}")
        return p

    def generate(self, out_name, peers):
        """`meshlm generate` in C; returns (ids, logits bytes, stderr)."""
        prompt = ",".join(str((i * 37 + 11) % 2000) for i in range(PROMPT_LEN))
        logits = os.path.join(self.disk["c"], out_name + ".logits")
        cmd = [self.meshlm, "generate", "--model", os.path.join(self.disk["c"], "model"),
               "--prompt-ids", prompt, "-n", str(N_GEN), "--ids", "--ignore-eos",
               "--threads", "1", "--logits-out", logits]
        if peers:
            cmd += ["--peers", ",".join(f"{HOSTS[n][1]}:{RELAY_PORT}" for n in ("w1", "w2")),
                    "--secret", SECRET, "--sync", "always", "--layers", LAYERS]
        r = run(*in_ns(NS_C, *cmd), timeout=60, ok=False)
        with open(os.path.join(self.disk["c"], out_name + ".log"), "w") as f:
            f.write(r.stderr)
        if r.returncode != 0:
            print(r.stderr)
            raise RuntimeError(f"generate ({out_name}) failed with {r.returncode}")
        with open(logits, "rb") as f:
            return r.stdout.split(), f.read(), r.stderr


def cached_files(cluster, name):
    """{path: (mtime_ns, inode)} of the safetensors files in the worker's cache."""
    files = glob.glob(os.path.join(cluster.cache_dir(name), "*", "*.safetensors"))
    return {f: (os.stat(f).st_mtime_ns, os.stat(f).st_ino) for f in files}


def cached_layers(cluster, name):
    layers, others = set(), set()
    for index in glob.glob(os.path.join(cluster.cache_dir(name), "*",
                                        "model.safetensors.index.json")):
        for t in json.load(open(index))["weight_map"]:
            m = re.match(r"model\.layers\.(\d+)\.", t)
            (layers.add(int(m.group(1))) if m else others.add(t))
    return layers, others


def worker_sync_lines(log_path):
    return [l for l in open(log_path).read().splitlines() if "[sync]" in l and "ready in" in l]


def fetched_mib(line):
    m = re.search(r"([\d.]+) MiB reused, ([\d.]+) MiB fetched", line)
    return (float(m.group(1)), float(m.group(2))) if m else (None, None)


def tokens_per_s(stderr):
    m = re.search(r"generated \d+ tokens, ([\d.]+) tokens/s", stderr)
    return float(m.group(1)) if m else None


def scenario(meshlm, tmp):
    cluster = Cluster(meshlm, tmp)
    model = os.path.join(cluster.disk["c"], "model")
    run(meshlm, "synth", "--arch", "qwen3", "--out", model, "--hidden", "64", "--intermediate",
        "128", "--layers", "4", "--heads", "4", "--kv-heads", "2", "--head-dim", "16",
        "--vocab", "2048", "--seed", TAG)
    print(f"worker cache via {'--cache-dir' if cluster.has_cache_flag else 'XDG_CACHE_HOME'}")

    for name in ("w1", "w2"):
        cluster.start_worker(name)
        cluster.start_relay(name)
    for name in ("w1", "w2"):
        visible = open(os.path.join(cluster.disk[name], "visible.txt")).read().split()
        check(visible == [], f"{name} sees none of the other hosts' files (saw {visible[:5]})")
        check(cached_files(cluster, name) == {}, f"{name} starts with an empty cache")
    probe = ("import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), 1)\n"
             "except OSError as e:\n print(e.errno)")
    r = run(*in_ns(NS_C, "/usr/bin/python3", "-c", probe), ok=False)
    check(r.stdout.strip() == "101", f"C has no loopback: 127.0.0.1 unreachable there "
                                     f"(errno {r.stdout.strip()}, want ENETUNREACH)")

    ref_ids, ref_logits, _ = cluster.generate("one-stage", peers=False)
    check(len(ref_ids) == N_GEN, f"one stage generated {len(ref_ids)} ids")
    check(len(ref_logits) == N_GEN * 2048 * 4, "one stage wrote 32 x vocab f32 logits")

    # 1. Three hosts, first run: workers sync their layers over the network.
    ids, logits, log1 = cluster.generate("run1", peers=True)
    check(ids == ref_ids, "3 hosts: same ids as one stage")
    check(logits == ref_logits, "3 hosts: byte-identical logits")
    tps = tokens_per_s(log1)
    print(f"3 hosts with {DELAY_MS:g} ms per hop: {tps} tokens/s")
    # Every token crosses C->W1, W1->W2 and W2->C: at least 3 x DELAY_MS.
    check(tps is not None and tps < 1000.0 / (3 * DELAY_MS),
          f"the relays' latency is on the path ({tps} tokens/s < {1000 / (3 * DELAY_MS):.0f})")

    # 2. What the workers received and the coordinator sent.
    sent = re.findall(r"\[sync\] sending to (.+?): ([\d.]+) MiB in", log1)
    check(len(sent) == 2 and all(float(mib) > 0 for _, mib in sent),
          f"coordinator sent tensors to both workers ({sent})")
    first_files = {}
    for name in ("w1", "w2"):
        lines = worker_sync_lines(cluster.workers[name][1])
        reused, fetched = fetched_mib(lines[-1]) if lines else (None, None)
        check(len(lines) == 1 and fetched and fetched > 0 and reused == 0,
              f"{name} fetched its layers once ({lines})")
        first_files[name] = cached_files(cluster, name)
        check(len(first_files[name]) > 0, f"{name}'s cache has safetensors files "
                                          f"({[os.path.basename(f) for f in first_files[name]]})")
        layers, others = cached_layers(cluster, name)
        want = set(range(*WORKER_LAYERS[name]))
        check(layers == want, f"{name} holds exactly layers {sorted(want)} (has {sorted(layers)})")
        if name == "w2":
            check(any("embed_tokens" in t or "lm_head" in t for t in others) and
                  "model.norm.weight" in others, "w2 (last) holds the final norm and LM head")
        else:
            check(others == set(), f"w1 holds no tensors outside its layers ({sorted(others)})")
    for name in ("w1", "w2"):
        relay_log = open(os.path.join(cluster.disk[name], "relay.log")).read()
        check("connection from 10.233.0." in relay_log,
              f"{name}'s relay carried connections from the hosts' addresses")
        rate, sent_bytes = tbf_sent_bytes(name)
        check(rate in ("1Gbit", "1000Mbit") and sent_bytes > 0,
              f"{name}'s link is shaped to {rate} and carried {sent_bytes} bytes")

    # 3a. Same workers, new coordinator: they keep their layers, nothing is synced.
    ids, logits, log2 = cluster.generate("run2", peers=True)
    check(ids == ref_ids and logits == ref_logits, "second run: same ids and logits")
    check("sending to" not in log2 and "MiB fetched" not in log2,
          "second run: coordinator sent no tensors")
    for name in ("w1", "w2"):
        check(len(worker_sync_lines(cluster.workers[name][1])) == 1,
              f"second run: {name} did not sync again")

    # 3b. Workers restarted with the same disks: the cache is checked, nothing fetched.
    for name in ("w1", "w2"):
        cluster.stop_worker(name)
        cluster.start_worker(name)
    ids, logits, log3 = cluster.generate("run3", peers=True)
    check(ids == ref_ids and logits == ref_logits, "after a worker restart: same ids and logits")
    check("sending to" not in log3, "after a worker restart: coordinator sent no tensors")
    for name in ("w1", "w2"):
        lines = worker_sync_lines(cluster.workers[name][1])
        reused, fetched = fetched_mib(lines[-1]) if lines else (None, None)
        check(len(lines) == 1 and fetched == 0 and reused and reused > 0,
              f"after a restart {name} reused its cache and fetched 0 bytes ({lines})")
        check(cached_files(cluster, name) == first_files[name],
              f"{name}'s cached files untouched (same mtime and inode)")


def main():
    meshlm = os.path.abspath(sys.argv[1])
    require_root("network and mount namespaces")
    require_tools("ip", "tc", "unshare", "ss", "mount")
    if not os.path.exists("/usr/bin/python3"):
        skip("no /usr/bin/python3 for the delay relay")
    # Run in a private mount namespace: the hosts' tmpfs disks (and the netns bind mounts) go
    # away with this process however it ends.
    reexec_in_mount_namespace("MESHLM_NETNS_TEST_INNER", [os.path.abspath(__file__), meshlm])

    exit_on_signals()
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}-{TAG}-")
    t0 = time.monotonic()
    try:
        mount_host_disks(tmp, HOSTS)  # each host's own disk
        try:
            setup_network()
        except RuntimeError as e:
            skip(f"cannot build the network namespaces: {e}")
        scenario(meshlm, tmp)
    except Exception as e:  # a broken step is a failure, with the logs that explain it
        failures.append(f"error: {e}")
        print(f"ERROR: {e}", flush=True)
    finally:
        kill_procs()
        print_logs(tmp)  # the logs that explain it
        delete_namespaces(NS_C, NS_W1, NS_W2, NS_BR)
        unmount_host_disks(tmp, HOSTS)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"took {time.monotonic() - t0:.1f} s")
    return summary("all netns pipeline checks passed")


if __name__ == "__main__":
    sys.exit(main())
