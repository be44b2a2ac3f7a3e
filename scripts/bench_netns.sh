#!/usr/bin/env bash
# Pipeline cost per hop on two simulated hosts (needs root; not a test).
#
#   sudo scripts/bench_netns.sh MODEL_DIR
#   env: MESHLM=build/meshlm  N_PROMPT=16  N_GEN=32  REPS=3  STREAMS="1 8"  DELAYS="0 1"
#        BENCH_DIR=/tmp (the hosts' disks; the worker's cache of its layers lives there)
#
# Hosts: coordinator C (10.234.0.1) and worker W (10.234.0.2), network namespaces joined by a
# bridge in a third one, each host's veth shaped to 1 Gbit/s (tc tbf). In front of the worker
# (port 7000) a delay relay (tests/e2e/delay_relay.cpp, port 7001) delivers every chunk DELAY ms after it
# arrived, in each direction, so both hops of a token (C->W activations, W->C sampled ids) cross
# DELAY ms. The worker never sees the model folder (an empty tmpfs covers it in its own mount
# namespace) and gets its layers over the network (--sync always) once, kept for all runs.
#
# For each number of streams: `meshlm bench -p N_PROMPT -n N_GEN --threads 1 --streams S` on one
# stage in C, then on 2 stages (C + W, half the layers each, 1 thread each): straight to the
# worker (no relay), then through the relay with DELAY = each value of DELAYS. Reported: tg tokens/s (mean of REPS runs after a warm-up) and
#   per-hop cost per token = (1/tps_2stages - 1/tps_1stage) / 2 hops, in µs
#   (tps is aggregate tokens/s: for S streams, the wall time per generated token of all
#   streams; 2 stages let 2 micro-batches overlap, so with S > 1 this may come out negative),
#   and, per DELAY > 0, what the delay itself added: (1/tps_DELAY - 1/tps_0) / 2 hops.
# The relay's own round trip (C -> relay -> echo in W -> back) is measured first, so the
# nominal DELAY can be compared with what it really adds.
set -euo pipefail

MODEL=${1:?usage: bench_netns.sh MODEL_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MESHLM=${MESHLM:-$ROOT/build/meshlm}
# The relay: the C++ one when built (build/tests/e2e/delay_relay: ~40 µs late per direction
# here), else delay_relay.py (~0.25 ms late and ~200 MB/s under load); RELAY=... picks one.
if [ -z "${RELAY:-}" ]; then
  RELAY=$ROOT/build/tests/e2e/delay_relay
  [ -x "$RELAY" ] || RELAY=$ROOT/tests/e2e/delay_relay.py
fi
case "$RELAY" in *.py) RELAY_CMD=(/usr/bin/python3 "$RELAY") ;; *) RELAY_CMD=("$RELAY") ;; esac
N_PROMPT=${N_PROMPT:-16}
N_GEN=${N_GEN:-32}
REPS=${REPS:-3}
STREAMS=${STREAMS:-"1 8"}
DELAYS=${DELAYS:-"0 1"}
SECRET=bench-netns-secret

[[ $(id -u) == 0 ]] || { echo "bench_netns.sh: needs root (network namespaces)" >&2; exit 1; }
MODEL=$(cd "$MODEL" && pwd)
MESHLM=$(cd "$(dirname "$MESHLM")" && pwd)/$(basename "$MESHLM")
[[ -x $MESHLM ]] || { echo "bench_netns.sh: no meshlm at $MESHLM (set MESHLM=)" >&2; exit 1; }

# Everything below runs in a private mount namespace: the netns bind mounts and the tmpfs that
# hides the model from the worker vanish with this script however it ends.
if [[ -z ${MESHLM_BENCH_INNER:-} ]]; then
  export MESHLM_BENCH_INNER=1
  exec unshare -m --propagation private "$0" "$MODEL"
fi

TAG=$$
NS_BR=nbB$TAG NS_C=nbC$TAG NS_W=nbW$TAG
ADDR_C=10.234.0.1 ADDR_W=10.234.0.2
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/meshlm-bench-netns.XXXXXX")
PIDS=()

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for ns in $NS_C $NS_W $NS_BR; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

in_c() { ip netns exec "$NS_C" "$@"; }
in_w() { ip netns exec "$NS_W" "$@"; }

# ---- network ----
for ns in $NS_BR $NS_C $NS_W; do ip netns add "$ns"; done
ip -n "$NS_BR" link add br0 type bridge
ip -n "$NS_BR" link set br0 up
i=0
for pair in "$NS_C $ADDR_C" "$NS_W $ADDR_W"; do
  set -- $pair
  ip link add "nbh$TAG$i" netns "$1" type veth peer name "nbb$TAG$i" netns "$NS_BR"
  ip -n "$NS_BR" link set "nbb$TAG$i" master br0 up
  ip -n "$1" addr add "$2/24" dev "nbh$TAG$i"
  ip -n "$1" link set "nbh$TAG$i" up
  ip netns exec "$1" tc qdisc add dev "nbh$TAG$i" root tbf rate 1gbit burst 32kb latency 20ms
  i=$((i + 1))
done
ip -n "$NS_W" link set lo up  # relay -> worker on the same host; C has no loopback at all

wait_for() {  # wait_for FILE PID WHAT
  for _ in $(seq 400); do
    [[ -e $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited early" >&2; exit 1; }
    sleep 0.05
  done
  echo "$3 did not start" >&2
  exit 1
}

RELAY_PID=
start_relay() {  # start_relay DELAY_MS LISTEN_PORT TO_PORT
  rm -f "$WORK/relay.ready"
  # Started directly (not through a function or subshell) so that $! is the relay itself.
  ip netns exec "$NS_W" "${RELAY_CMD[@]}" --listen "$ADDR_W:$2" --to "$ADDR_W:$3" \
    --delay "$1" --ready-file "$WORK/relay.ready" --exit-with-parent $$ 2>>"$WORK/relay.log" &
  RELAY_PID=$!
  PIDS+=("$RELAY_PID")
  wait_for "$WORK/relay.ready" "$RELAY_PID" relay
}
stop_relay() { kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true; }

# ---- the relay's real added latency: round trips C -> relay -> echo in W -> C ----
ECHO='
import os, socket, threading, time
def watch(parent=os.getppid()):
    while os.getppid() == parent: time.sleep(0.25)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("'$ADDR_W'", 7100)); s.listen()
while True:
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (d := c.recv(65536)):
        c.sendall(d)
    c.close()'
PING='
import socket, sys, time
c = socket.create_connection(("'$ADDR_W'", int(sys.argv[1]))); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
ts = []
for i in range(200):
    t = time.perf_counter(); c.sendall(b"x" * 64); n = 0
    while n < 64: n += len(c.recv(4096))
    ts.append(time.perf_counter() - t)
ts.sort(); print(f"{ts[len(ts) // 2] * 1e6:.0f}")'
ip netns exec "$NS_W" /usr/bin/python3 -c "$ECHO" &
PIDS+=($!)
sleep 0.3
declare -A RTT
for d in $DELAYS; do
  start_relay "$d" 7101 7100
  RTT[$d]=$(in_c /usr/bin/python3 -c "$PING" 7101)
  stop_relay
done

# ---- worker: its own mount namespace, the model folder and C's files hidden ----
mkdir -p "$WORK/c" "$WORK/w"
HIDE="$MODEL $WORK/c"
ip netns exec "$NS_W" env HIDE="$HIDE" XDG_CACHE_HOME="$WORK/w/cache" HOME="$WORK/w" \
  unshare -m --propagation private sh -c \
  'for d in $HIDE; do mount -t tmpfs -o size=1m hidden "$d"; done; exec "$@"' sh \
  "$MESHLM" worker --listen "$ADDR_W:7000" --secret "$SECRET" --threads 1 --no-discovery \
  --exit-with-parent $$ >"$WORK/w/worker.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do
  grep -q "listening on" "$WORK/w/worker.log" && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/w/worker.log"; exit 1; }
  sleep 0.05
done

# ---- meshlm's own frames over the link: `meshlm ping` (64 B .. 1 MiB), direct and relayed ----
PINGS=$WORK/c/pings.txt
in_c "$MESHLM" ping "$ADDR_W:7000" --secret "$SECRET" --rounds 50 >"$PINGS" 2>>"$WORK/c/bench.log"
for d in $DELAYS; do
  start_relay "$d" 7001 7000
  echo "through the relay, DELAY=$d ms:" >>"$PINGS"
  in_c "$MESHLM" ping "$ADDR_W:7001" --secret "$SECRET" --rounds 50 >>"$PINGS" 2>>"$WORK/c/bench.log"
  stop_relay
done

N_LAYERS=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$MODEL/config.json")
HALF=$((N_LAYERS / 2))
LAYERS="0-$((HALF - 1)),$HALF-$((N_LAYERS - 1))"

RESULTS=$WORK/c/results.jsonl
bench() {  # bench LABEL DELAY STREAMS [pipeline args...]
  local label=$1 delay=$2 streams=$3
  shift 3
  local out
  out=$(cd "$WORK/c" && in_c "$MESHLM" bench --model "$MODEL" -p "$N_PROMPT" -n "$N_GEN" \
    --threads 1 -r "$REPS" --streams "$streams" --json "$@" 2>>"$WORK/c/bench.log")
  echo "{\"label\": \"$label\", \"delay\": \"$delay\", \"bench\": $out}" >>"$RESULTS"
  echo "  $label delay=$delay streams=$streams: $(echo "$out" | /usr/bin/python3 -c \
    'import json,sys; j=json.load(sys.stdin); print("tg %.2f ± %.2f t/s, pp %.1f t/s" % (j["tg_tps"], j["tg_sd"], j["pp_tps"]))')" >&2
}

echo "model $MODEL ($N_LAYERS layers), -p $N_PROMPT -n $N_GEN -r $REPS, 1 thread per stage, layers $LAYERS" >&2
for s in $STREAMS; do bench 1stage - "$s"; done
# Straight to the worker, no relay: what meshlm and the 1 Gbit/s link cost by themselves.
for s in $STREAMS; do
  bench 2stages direct "$s" --peers "$ADDR_W:7000" --secret "$SECRET" --sync always --layers "$LAYERS"
done
for d in $DELAYS; do
  start_relay "$d" 7001 7000
  for s in $STREAMS; do
    bench 2stages "$d" "$s" --peers "$ADDR_W:7001" --secret "$SECRET" --sync always --layers "$LAYERS"
  done
  stop_relay
done
grep -h "\[sync\] receiving.* MiB in \|ready in" "$WORK/w/worker.log" | sed 's/^/  worker: /' >&2 || true
echo "  worker cache: $(du -sh "$WORK/w/cache" | cut -f1) in $(find "$WORK/w/cache" -name '*.safetensors' | wc -l) safetensors files" >&2

RTTS=""
for d in $DELAYS; do RTTS+="$d=${RTT[$d]} "; done
echo; echo "meshlm ping C -> W (median and p90 round trips of meshlm's own frames):"; cat "$PINGS"
/usr/bin/python3 - "$RESULTS" "$RTTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rtt = dict(kv.split("=") for kv in sys.argv[2].split())
hops = 2
one = {r["bench"]["streams"]: r["bench"]["tg_tps"] for r in rows if r["label"] == "1stage"}
base = {}
print("\nrelay round trip C->W->C (median of 200, 64 B): " +
      ", ".join(f"DELAY={d} ms: {int(v) / 1000:.2f} ms" for d, v in rtt.items()))
print(f"\n| stages | delay/hop | streams | tg tok/s | ms/token | per-hop cost µs/token "
      f"| delay's share µs/token/hop |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    b = r["bench"]
    s, tps = b["streams"], b["tg_tps"]
    cost = share = ""
    if r["label"] == "2stages":
        cost = f"{(1 / tps - 1 / one[s]) / hops * 1e6:.0f}"
        if r["delay"] == "direct":
            pass
        elif float(r["delay"]) == 0:
            base[s] = tps
        elif s in base:
            share = f"{(1 / tps - 1 / base[s]) / hops * 1e6:.0f}"
    delay = {"1stage": "-", "2stages": f"{r['delay']} ms"}[r["label"]]
    if r["delay"] == "direct":
        delay = "no relay"
    print(f"| {b['stages']} | {delay} | {s} | {tps:.2f} ± {b['tg_sd']:.2f} | {1000 / tps:.2f} "
          f"| {cost} | {share} |")
print("\nwhere a generation micro-batch's time went (ms; bench --json: links and hand-offs = round "
      "trips minus compute; per stage compute / queued / sending / waiting for input):")
for r in rows:
    b = r["bench"]
    if b["stages"] < 2:
        continue
    per = "; ".join(f"stage {i}: {c:.3f} / {q:.3f} / {sd:.3f} / {w:.3f}" for i, (c, q, sd, w) in
                    enumerate(zip(b["tg_stage_batch_ms"], b["tg_stage_queue_ms"],
                                  b["tg_stage_send_ms"], b["tg_stage_wait_ms"])))
    print(f"  {r['delay']}, {b['streams']} stream(s): links and hand-offs {b['tg_transfer_ms']:.3f}; {per}")
print(f"\nper-hop cost = (1/tps_2stages - 1/tps_1stage) / {hops} hops (C->W activations, "
      f"W->C sampled ids); tps = aggregate tg tokens/s of `meshlm bench` (mean of the runs).\n"
      f"delay's share = (1/tps_DELAY - 1/tps_DELAY=0) / {hops}: what the relay's delay itself adds "
      f"per hop (its nominal value plus the relay's lateness).")
EOF
