#!/usr/bin/env python3
"""Where a micro-batch's time goes between stages, from a MESHLM_TRACE file (issue 19).

  MESHLM_TRACE=/tmp/t.log meshlm worker ... &   MESHLM_TRACE=/tmp/t.log meshlm bench ...
  scripts/hop_trace.py /tmp/t.log [--skip N]

Every process of one machine appends "<monotonic ns> <pid> <event> <micro-batch id>" lines to the
file (src/core/trace.h). For each micro-batch this script follows its way: the coordinator's
stage (coord.launch -> coord.computed -> coord.sent), each worker in path order (worker.recv ->
worker.start -> worker.computed -> worker.sent), back to the coordinator (coord.result ->
coord.wake), and the engine's turn until the next launch. It prints the median and mean of each
interval in µs. Only valid where the processes share a clock (one host: loopback, netns).
Standard library only."""
import argparse
import collections
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--skip", type=int, default=8, help="micro-batches to ignore at the start")
    args = ap.parse_args()
    by_id = collections.defaultdict(list)  # id -> [(ns, pid, event)]
    coord_pids = set()
    for line in open(args.trace):
        parts = line.split()
        if len(parts) != 4:
            continue
        ns, pid, event, mb = int(parts[0]), parts[1], parts[2], int(parts[3])
        by_id[mb].append((ns, pid, event))
        if event.startswith("coord."):
            coord_pids.add(pid)
    if len(coord_pids) != 1:
        sys.exit(f"want one coordinator in the trace, found {len(coord_pids)}")
    coord = coord_pids.pop()
    ids = sorted(by_id)
    launches = {}
    for mb in ids:
        for ns, pid, ev in by_id[mb]:
            if pid == coord and ev == "coord.launch":
                launches[mb] = ns
    intervals = collections.defaultdict(list)
    order = []

    def add(name, a, b):
        if a is None or b is None:
            return
        if name not in intervals:
            order.append(name)
        intervals[name].append((b - a) / 1000.0)

    launch_times = sorted(launches.values())
    for mb in ids[args.skip:]:
        ev = {}
        workers = collections.OrderedDict()
        for ns, pid, e in sorted(by_id[mb]):
            if pid == coord:
                ev.setdefault(e, ns)
            else:
                workers.setdefault(pid, {}).setdefault(e, ns)
        path = sorted(workers.values(), key=lambda w: w.get("worker.recv", 0))
        add("stage 0 compute", ev.get("coord.launch"), ev.get("coord.computed"))
        add("stage 0 send", ev.get("coord.computed"), ev.get("coord.sent"))
        prev = ev.get("coord.sent")
        for k, w in enumerate(path, start=1):
            add(f"link {k - 1}->{k} (sent -> received)", prev, w.get("worker.recv"))
            add(f"stage {k} queue (received -> start)", w.get("worker.recv"), w.get("worker.start"))
            add(f"stage {k} compute", w.get("worker.start"), w.get("worker.computed"))
            add(f"stage {k} send", w.get("worker.computed"), w.get("worker.sent"))
            prev = w.get("worker.sent")
        add(f"link {len(path)}->0 (result sent -> received)", prev, ev.get("coord.result"))
        add("coordinator hand-off (result -> engine awake)", ev.get("coord.result"), ev.get("coord.wake"))
        wake = ev.get("coord.wake")
        if wake is not None:
            later = [t for t in launch_times if t > wake]
            if later:
                add("engine (awake -> next launch)", wake, later[0])
        add("whole micro-batch (launch -> engine awake)", ev.get("coord.launch"), ev.get("coord.wake"))
    print(f"{len(ids) - args.skip} micro-batches (first {args.skip} skipped); µs")
    print(f"{'interval':52s} {'median':>10s} {'mean':>10s} {'p90':>10s}")
    for name in order:
        v = sorted(intervals[name])
        p90 = v[min(len(v) - 1, int(0.9 * len(v)))]
        print(f"{name:52s} {statistics.median(v):10.1f} {statistics.fmean(v):10.1f} {p90:10.1f}")


if __name__ == "__main__":
    main()
