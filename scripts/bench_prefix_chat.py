#!/usr/bin/env python3
"""Time to first token of a growing chat, with and without the prefix cache (issue 17).

  scripts/bench_prefix_chat.py MODEL_DIR   (env: MESHLM=build/meshlm TURNS=10 WORDS=150
                                            THREADS=2 MAX_TOKENS=8 PORT=8177 EXTRA="")

Starts `meshlm serve` (EXTRA: more serve arguments, e.g. "--stages 2"), then holds a chat of
TURNS turns: each adds a user message of WORDS random words (~200 tokens with a Qwen3
tokenizer) to the whole history, the assistant's answers included, and streams the answer,
timing the first token. With the cache, each turn's prompt is the previous turn's plus the
answer and the new message, so only the new part is computed. Then, on the same server:
  - "new tokens alone": a fresh conversation of as many tokens as the last turn computed
    (prompt tokens minus cached ones), nothing cached; the target is last turn <= 1.2x this;
and on a second server with --prefix-cache 0: the last turn's prompt again (its TTFT without
the cache). Prints one JSON object. Run it on an otherwise idle machine."""
import json
import os
import random
import subprocess
import sys
import time
import urllib.request

M = os.environ.get("MESHLM", "build/meshlm")
TURNS = int(os.environ.get("TURNS", "10"))
WORDS = int(os.environ.get("WORDS", "150"))
THREADS = os.environ.get("THREADS", "2")
MAX_TOKENS = int(os.environ.get("MAX_TOKENS", "8"))
PORT = int(os.environ.get("PORT", "8177"))
EXTRA = os.environ.get("EXTRA", "").split()

VOCAB = ("river stone lantern quiet orbit maple copper signal harbor meadow velvet cinder "
         "pocket thunder garden silver candle winter falcon marble ribbon canyon echo amber "
         "compass willow harvest glacier ember lattice").split()


def words(rng, n):
    return " ".join(rng.choice(VOCAB) for _ in range(n)) + "."


def serve(model, cache):
    cmd = [M, "serve", "--model", model, "--port", str(PORT), "--threads", THREADS, "--ctx",
           "8192", "--parallel", "1", "--no-discovery", "--prefix-cache", cache] + EXTRA
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2) as r:
                if r.status == 200:
                    return p
        except Exception:
            pass
        time.sleep(0.5)
    p.kill()
    raise SystemExit("the server did not come up")


def chat(messages):
    """Streams one answer: (ttft seconds, answer text, usage)."""
    body = json.dumps({"model": "m", "messages": messages, "max_tokens": MAX_TOKENS,
                       "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    ttft, text, usage = None, "", None
    with urllib.request.urlopen(req, timeout=3600) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                piece = c.get("delta", {}).get("content") or ""
                if ttft is None and (piece or c.get("delta", {}).get("reasoning_content")):
                    ttft = time.perf_counter() - start
                text += piece
    return ttft, text, usage


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    model = sys.argv[1]
    rng = random.Random(7)
    out = {"model": model, "turns": []}
    p = serve(model, "4G")
    try:
        messages = [{"role": "system", "content": "You are a helpful assistant. " + words(rng, 40)}]
        for turn in range(TURNS):
            messages.append({"role": "user", "content": words(rng, WORDS)})
            ttft, text, usage = chat(messages)
            messages.append({"role": "assistant", "content": text})
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            out["turns"].append({"turn": turn + 1, "prompt_tokens": usage["prompt_tokens"],
                                 "cached_tokens": cached, "ttft_s": round(ttft, 3)})
            print(json.dumps(out["turns"][-1]), file=sys.stderr, flush=True)
        last = out["turns"][-1]
        new_tokens = last["prompt_tokens"] - last["cached_tokens"]
        # A fresh conversation of about as many tokens, nothing of it cached.
        n = max(1, int(new_tokens / 1.3))
        fresh = [{"role": "user", "content": words(random.Random(99 + n), n)}]
        for _ in range(4):  # fit the word count to the token count
            ttft_alone, _, u = chat(fresh)
            if abs(u["prompt_tokens"] - new_tokens) <= 8:
                break
            n = max(1, int(n * new_tokens / u["prompt_tokens"]))
            fresh = [{"role": "user", "content": words(random.Random(99 + n), n)}]
        out["new_tokens_alone"] = {"prompt_tokens": u["prompt_tokens"],
                                   "cached_tokens": u["prompt_tokens_details"]["cached_tokens"],
                                   "ttft_s": round(ttft_alone, 3)}
        out["ratio_last_turn_to_alone"] = round(last["ttft_s"] / ttft_alone, 3)
    finally:
        p.terminate()
        p.wait()
    p = serve(model, "0")
    try:
        ttft_nocache, _, u = chat(messages[:-1])
        out["last_turn_without_cache"] = {"prompt_tokens": u["prompt_tokens"],
                                          "cached_tokens": u["prompt_tokens_details"]["cached_tokens"],
                                          "ttft_s": round(ttft_nocache, 3)}
    finally:
        p.terminate()
        p.wait()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
