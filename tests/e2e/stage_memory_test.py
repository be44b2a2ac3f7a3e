#!/usr/bin/env python3
"""A stage touches only its own layers' weights: the resident size of a process holding the upper
half of the layers is about half that of a process holding all of them (f32 weights, read from the
memory map). Usage: stage_memory_test.py MESHLM STAGE_RSS WORKDIR"""
import json
import os
import subprocess
import sys

meshlm, stage_rss, work = sys.argv[1:4]
model = os.path.join(work, "mem-model")
if not os.path.exists(os.path.join(model, "config.json")):
    subprocess.run([meshlm, "synth", "--arch", "llama", "--out", model, "--hidden", "512",
                    "--intermediate", "1536", "--layers", "8", "--heads", "8", "--kv-heads", "4",
                    "--head-dim", "64", "--vocab", "512", "--dtype", "f32"], check=True)


def measure(begin, end):
    out = subprocess.run([stage_rss, model, str(begin), str(end)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


base = measure(0, 1)["rss"] - measure(0, 1)["weights"]  # process overhead + one layer's share
full = measure(0, 8)
upper = measure(4, 8)
lower = measure(0, 4)
print("full", full, "upper", upper, "lower", lower)
for name, part in (("upper", upper), ("lower", lower)):
    ratio = part["weights"] / full["weights"]
    assert 0.45 < ratio < 0.55, f"{name} half holds {ratio:.2f} of the weights"
    # Resident size: the stage's weights plus a fixed overhead, never the other half's pages.
    extra = part["rss"] - part["weights"]
    full_extra = full["rss"] - full["weights"]
    assert part["rss"] < 0.62 * full["rss"], f"{name} half: rss {part['rss']} vs full {full['rss']}"
    assert extra < full_extra + 8 * 2**20, f"{name} half: {extra} bytes beyond its weights"
print("ok")
