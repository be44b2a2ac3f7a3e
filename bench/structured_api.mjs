// Decode speed through the API with and without a json_schema constraint, one stream at a time,
// against a running `meshlm serve` (BENCHMARKS.md, structured outputs). Each request streams; its
// decode rate is (tokens - 1) / (time of the last token - time of the first), so prefill and
// HTTP setup are left out. Runs alternate between the three kinds:
//   free         no constraint (ignore_eos, max_tokens fixed)
//   schema-warm  one schema for every run (its masks cached after the first run, not counted)
//   schema-cold  a schema never seen before in every run (every mask computed on the way)
//   node bench/structured_api.mjs --url http://127.0.0.1:8100 [--runs 8]
const argv = process.argv.slice(2);
const opt = {};
for (let i = 0; i < argv.length; i += 2) opt[argv[i].replace(/^--/, '')] = argv[i + 1];
const URL_ = opt.url || 'http://127.0.0.1:8100';
const RUNS = Number(opt.runs || 8);

const schema = (maxLength, description = 'bench') => ({
  type: 'object',
  description,  // an annotation: a new one makes a schema the server has not compiled yet
  properties: {
    title: { type: 'string', maxLength },
    items: { type: 'array', items: { type: 'string', maxLength }, minItems: 8, maxItems: 8 },
    count: { type: 'integer', minimum: 0, maximum: 1000 },
    ok: { type: 'boolean' },
  },
  required: ['title', 'items', 'count', 'ok'],
  additionalProperties: false,
});

async function run(body) {
  const r = await fetch(`${URL_}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true, messages: [{ role: 'user', content: 'List things.' }] }),
  });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  const times = [];
  const decoder = new TextDecoder();
  let buf = '';
  let text = '';
  for await (const chunk of r.body) {
    buf += decoder.decode(chunk, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      const d = j.choices[0] && j.choices[0].delta;
      if (d && d.content) { times.push(performance.now()); text += d.content; }
    }
  }
  return { times, text };
}

const rates = { free: [], 'schema-warm': [], 'schema-cold': [] };
const tokens = { free: [], 'schema-warm': [], 'schema-cold': [] };
await run({ max_tokens: 8, ignore_eos: true, temperature: 0 });  // warm-up
await run({ max_tokens: 400, temperature: 0.7, seed: 999, response_format: { type: 'json_schema', json_schema: { name: 'w', schema: schema(20) } } });
for (let i = 0; i < RUNS; i++) {
  const kinds = {
    free: { max_tokens: 70, ignore_eos: true, temperature: 0.7, seed: i },  // as long as the others
    'schema-warm': { max_tokens: 400, temperature: 0.7, seed: i, response_format: { type: 'json_schema', json_schema: { name: 'w', schema: schema(20) } } },
    'schema-cold': { max_tokens: 400, temperature: 0.7, seed: i, response_format: { type: 'json_schema', json_schema: { name: 'c', schema: schema(20, `cold ${Date.now()} ${i}`) } } },
  };
  for (const [kind, body] of Object.entries(kinds)) {
    const { times, text } = await run(body);
    if (kind !== 'free') JSON.parse(text);  // a valid document
    // Text deltas are whole characters: count SSE content events (about one per token).
    const n = times.length;
    rates[kind].push((n - 1) / ((times[n - 1] - times[0]) / 1000));
    tokens[kind].push(n);
  }
}
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const sd = (a) => Math.sqrt(mean(a.map((x) => (x - mean(a)) ** 2)));
for (const kind of Object.keys(rates))
  console.log(`${kind.padEnd(12)} ${mean(rates[kind]).toFixed(1)} ± ${sd(rates[kind]).toFixed(1)} tokens/s over ${RUNS} runs (${mean(tokens[kind]).toFixed(0)} content events each)`);
