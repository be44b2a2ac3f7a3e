#!/bin/sh
# The seed's flow for a meshlm cluster: start, stop, status, logs — on each machine.
#
#   scripts/launch.sh worker [--threads N]   on every worker machine: a worker on 0.0.0.0:7070 that
#                                            announces itself on the LAN (needs MESHLM_SECRET)
#   scripts/launch.sh start [MODEL] [serve options...]
#                                            on the coordinator: serve MODEL on :8100 with every
#                                            worker found on the LAN (or --peers / --stages N)
#   scripts/launch.sh status                 /health of the server and the workers this host runs
#   scripts/launch.sh stop                   stops what this script started on this host
#   scripts/launch.sh logs                   follows the logs
#
# MODEL: a folder or ORG/NAME (pulled from the Hugging Face hub); default: the demo model made by
# scripts/serve.sh. State lives in ${MESHLM_RUN_DIR:-$HOME/.cache/meshlm/run}.
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${MESHLM_BIN:-$ROOT/build/meshlm}
RUN=${MESHLM_RUN_DIR:-$HOME/.cache/meshlm/run}
PORT=${MESHLM_PORT:-8100}
mkdir -p "$RUN"

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

need_binary() {
  if [ ! -x "$BIN" ]; then
    echo "building meshlm first (scripts/build.sh)..." >&2
    "$ROOT/scripts/build.sh" >&2
  fi
}

need_secret() {
  if [ -z "$MESHLM_SECRET" ]; then
    if [ -f "$RUN/secret" ]; then
      MESHLM_SECRET=$(cat "$RUN/secret")
    else
      echo "set MESHLM_SECRET to the same value on every machine of the cluster" >&2
      exit 2
    fi
  fi
  export MESHLM_SECRET
}

cmd=${1:-status}
[ $# -gt 0 ] && shift
case "$cmd" in
  worker)
    need_binary
    need_secret
    if running worker; then echo "worker already running (pid $(cat "$RUN/worker.pid"))"; exit 0; fi
    nohup "$BIN" worker --listen "${MESHLM_WORKER_LISTEN:-0.0.0.0:7070}" "$@" \
      > "$RUN/worker.log" 2>&1 &
    echo $! > "$RUN/worker.pid"
    sleep 1
    if running worker; then
      echo "worker started (pid $(cat "$RUN/worker.pid")), log $RUN/worker.log"
    else
      echo "worker failed to start:" >&2; tail -5 "$RUN/worker.log" >&2; exit 1
    fi
    ;;
  start)
    need_binary
    model=${1:-}
    [ $# -gt 0 ] && shift
    if [ -z "$model" ]; then
      model=$ROOT/models/demo-qwen3-random
      [ -f "$model/config.json" ] || { echo "no model given and no demo model: run scripts/serve.sh once, or pass MODEL" >&2; exit 2; }
    fi
    if [ -z "$MESHLM_SECRET" ] && [ ! -f "$RUN/secret" ]; then
      head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RUN/secret"
    fi
    need_secret
    if running serve; then echo "already serving (pid $(cat "$RUN/serve.pid"))"; exit 0; fi
    nohup "$BIN" serve --model "$model" --port "$PORT" "$@" > "$RUN/serve.log" 2>&1 &
    echo $! > "$RUN/serve.pid"
    i=0
    until curl -sf "http://127.0.0.1:$PORT/health" > /dev/null 2>&1; do
      i=$((i + 1))
      if ! running serve || [ $i -gt 600 ]; then
        echo "serve failed to start:" >&2; tail -20 "$RUN/serve.log" >&2; exit 1
      fi
      sleep 1
    done
    echo "serving on http://127.0.0.1:$PORT (pid $(cat "$RUN/serve.pid")), log $RUN/serve.log"
    curl -s "http://127.0.0.1:$PORT/health"; echo
    ;;
  status)
    if running serve; then
      echo "serve: running (pid $(cat "$RUN/serve.pid"))"
      curl -s "http://127.0.0.1:$PORT/health" || echo "(no answer on :$PORT)"; echo
    else
      echo "serve: not running"
    fi
    if running worker; then echo "worker: running (pid $(cat "$RUN/worker.pid"))"; else echo "worker: not running"; fi
    ;;
  stop)
    for what in serve worker; do
      if running "$what"; then
        pid=$(cat "$RUN/$what.pid")
        kill "$pid"
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "$what stopped"
      fi
      rm -f "$RUN/$what.pid"
    done
    ;;
  logs)
    tail -n 50 -f "$RUN"/*.log
    ;;
  *)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
