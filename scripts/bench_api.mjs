#!/usr/bin/env node
// Speed through the OpenAI API of a running `meshlm serve` (or any OpenAI-compatible server):
//   1 stream  : decode tokens/s of one streamed request at a time (first token excluded), and TTFT
//   N streams : aggregate generated tokens/s of N concurrent streamed requests, whole (from the
//               requests' start to the last token: includes the N prompts' prefill) and steady
//               (only the window in which all N streams are decoding: the decode-batching rate)
// Usage: node scripts/bench_api.mjs [--url http://127.0.0.1:8100] [-n 64] [--streams 16] [--reps 3]
//        [--prompt-tokens 16] [--json]
// Requests use temperature 0 and ignore_eos so every request generates exactly n tokens.
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const url = opt('--url', 'http://127.0.0.1:8100');
const n = Number(opt('-n', 64));
const streams = Number(opt('--streams', 16));
const reps = Number(opt('--reps', 3));
const promptWords = Number(opt('--prompt-tokens', 16));
const json = args.includes('--json');
const apiKey = process.env.MESHLM_API_KEY || process.env.OPENAI_API_KEY;

function prompt(i) {
  const words = [];
  for (let k = 0; k < promptWords; ++k) words.push(['alpha', 'beta', 'gamma', 'delta'][(i + k) % 4]);
  return words.join(' ');
}

// One streamed completion: returns {ttft, tokens, decodeSeconds, total}.
async function stream(i) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
    body: JSON.stringify({ prompt: prompt(i), max_tokens: n, temperature: 0, ignore_eos: true,
                           stream: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let first = 0, last = 0, usage = null, buf = '';
  const times = [];
  const decoder = new TextDecoder();
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
      const data = JSON.parse(event.slice(6));
      if (data.usage) usage = data.usage;
      if (data.choices && data.choices.length && data.choices[0].text !== undefined) {
        const now = performance.now();
        if (!first) first = now;
        last = now;
        times.push(now);
      }
    }
  }
  const tokens = usage ? usage.completion_tokens : n;
  return { ttft: (first - t0) / 1000, tokens, decodeSeconds: (last - first) / 1000,
           total: (last - t0) / 1000, first, last, times };
}

const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const sd = (a) => { const m = mean(a); return Math.sqrt(mean(a.map((x) => (x - m) ** 2))); };

await stream(0);  // warm-up
// Rounds alternate one stream and N streams, so that a slow spell of a shared machine hits both.
const single = [], singleTotal = [], ttfts = [];
const multi = [], multiTtft = [], multiDecode = [], multiSteady = [];
for (let r = 0; r < reps; ++r) {
  const s = await stream(r);
  single.push((s.tokens - 1) / s.decodeSeconds);
  singleTotal.push(s.tokens / s.total);
  ttfts.push(s.ttft);
  const t0 = performance.now();
  const all = await Promise.all(Array.from({ length: streams }, (_, i) => stream(i + r)));
  const seconds = (performance.now() - t0) / 1000;
  multi.push(all.reduce((x, s) => x + s.tokens, 0) / seconds);
  // Decode only: tokens after each stream's first, over the span from the first first-token to the
  // last token (prompts of streams admitted later still share that span).
  const span = (Math.max(...all.map((s) => s.last)) - Math.min(...all.map((s) => s.first))) / 1000;
  multiDecode.push(all.reduce((x, s) => x + s.tokens - 1, 0) / span);
  multiTtft.push(mean(all.map((s) => s.ttft)));
  // Steady: tokens that arrived while every stream was past its first token and none had ended.
  const from = Math.max(...all.map((s) => s.first)), to = Math.min(...all.map((s) => s.last));
  if (to > from) {
    const inWindow = all.reduce((x, s) => x + s.times.filter((t) => t > from && t <= to).length, 0);
    multiSteady.push(inWindow / ((to - from) / 1000));
  }
}
const out = {
  url, n, streams, reps,
  one_stream_tps: mean(single), one_stream_sd: sd(single), ttft_s: mean(ttfts),
  one_stream_total_tps: mean(singleTotal),
  multi_stream_tps: mean(multi), multi_stream_sd: sd(multi), multi_ttft_s: mean(multiTtft),
  multi_decode_tps: mean(multiDecode), decode_speedup: mean(multiDecode) / mean(single),
  speedup: mean(multi) / mean(single),
  // like for like: whole run of N streams against one stream's whole request (TTFT included)
  speedup_whole: mean(multi) / mean(singleTotal),
  round_speedups_whole: multi.map((m, r) => m / singleTotal[r]),
  multi_steady_tps: multiSteady.length ? mean(multiSteady) : null,
  steady_speedup: multiSteady.length ? mean(multiSteady) / mean(single) : null,
};
if (json) {
  console.log(JSON.stringify(out));
} else {
  console.log(`1 stream : ${out.one_stream_tps.toFixed(2)} ± ${out.one_stream_sd.toFixed(2)} tokens/s, ` +
              `TTFT ${(out.ttft_s * 1000).toFixed(0)} ms`);
  console.log(`${streams} streams: ${out.multi_stream_tps.toFixed(2)} ± ${out.multi_stream_sd.toFixed(2)} ` +
              `tokens/s aggregate (${out.speedup.toFixed(2)}x), mean TTFT ${(out.multi_ttft_s * 1000).toFixed(0)} ms; ` +
              `decode phase ${out.multi_decode_tps.toFixed(2)} tokens/s (${out.decode_speedup.toFixed(2)}x)`);
  console.log(`  whole requests: ${out.speedup_whole.toFixed(2)}x one stream's whole request ` +
              `(${out.one_stream_total_tps.toFixed(2)} tokens/s incl. TTFT)` +
              (out.multi_steady_tps === null ? '' : `; all ${streams} decoding: ` +
               `${out.multi_steady_tps.toFixed(2)} tokens/s (${out.steady_speedup.toFixed(2)}x one stream's decode)`));
  console.log(`  per round, whole: ${out.round_speedups_whole.map((x) => x.toFixed(2) + 'x').join(' ')}`);
}
