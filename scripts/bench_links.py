#!/usr/bin/env python3
"""Encrypted vs plain links, 2 stages on loopback (1 thread each), interleaved rounds: wall
tokens/s and the CPU seconds coordinator + worker spent (CPU time is less sensitive than wall
time to other load on the machine). A worker without a secret is plain, one with a secret
encrypts every frame (README: encrypted links).
Usage: scripts/bench_links.py MODEL_DIR [STREAMS]   (run from the repository root, after a build)"""
import json, os, resource, subprocess, sys, time
M = os.environ.get("MESHLM", "build/meshlm"); MODEL = sys.argv[1]; STREAMS = sys.argv[2] if len(sys.argv) > 2 else "1"
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
wp = subprocess.Popen([M, "worker", "--listen", "127.0.0.1:7311", "--threads", "1", "--no-discovery"], stderr=subprocess.DEVNULL)
we = subprocess.Popen([M, "worker", "--listen", "127.0.0.1:7312", "--threads", "1", "--no-discovery", "--secret", "s3cret"], stderr=subprocess.DEVNULL)
time.sleep(1)
res = {"plain": [], "enc": []}
try:
    for rnd in range(3):
        for mode in ("plain", "enc"):
            w = wp if mode == "plain" else we
            args = ["--peers", "127.0.0.1:7311"] if mode == "plain" else ["--peers", "127.0.0.1:7312", "--secret", "s3cret"]
            w0 = cpu(w.pid); r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run([M, "bench", "--model", MODEL, *args, "--threads", "1", "-p", "16", "-n", "64", "-r", "1",
                                  "--streams", STREAMS, "--json", "--sync", "off"], capture_output=True, text=True).stdout
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN); w1 = cpu(w.pid)
            j = json.loads(out)
            c = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime) + (w1 - w0)
            res[mode].append((j["tg_tps"], c))
            print(f"round {rnd} {mode} streams={STREAMS} tg={j['tg_tps']:.2f} t/s  cpu(coord+worker)={c:.2f} s", flush=True)
finally:
    wp.terminate(); we.terminate()
for mode, v in res.items():
    print(mode, "best tg", max(x[0] for x in v), "min cpu", min(x[1] for x in v))
