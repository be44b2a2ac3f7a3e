// Shared helpers for the server's JS tests: a synthetic model with a real tokenizer, and a
// `meshlm serve` process on a free port.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const SKIP = 77;

export function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  return out;
}

export function skip(why) {
  console.log(`SKIP: ${why}`);
  process.exit(SKIP);
}

// Builds (once) the tiny qwen3 model the server tests use.
export function synthModel(meshlm, work, tokenizerDir) {
  const dir = path.join(work, 'synth-qwen3');
  if (fs.existsSync(path.join(dir, 'config.json')) && fs.existsSync(path.join(dir, 'tokenizer.json')))
    return dir;
  const help = spawnSync(meshlm, ['--help'], { encoding: 'utf8' });
  if (!`${help.stdout}${help.stderr}`.includes('synth')) skip('meshlm synth is not available');
  fs.mkdirSync(work, { recursive: true });
  const r = spawnSync(meshlm, ['synth', '--arch', 'qwen3', '--out', dir, '--hidden', '128', '--layers', '2',
    '--heads', '4', '--kv-heads', '2', '--head-dim', '32', '--intermediate', '256',
    '--tokenizer-dir', tokenizerDir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`meshlm synth failed: ${r.stderr}`);
  return dir;
}

// Starts `meshlm serve --port 0 ...`; resolves with {url, proc, stop()} once it listens.
export function startServer(meshlm, model, extra = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(meshlm, ['serve', '--model', model, '--port', '0', '--threads', '1', '--no-discovery', ...extra],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHLM_LOG: process.env.MESHLM_LOG || 'warn' } });
    let out = '';
    let err = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`server did not start:\n${err}`)); }, 60000);
    proc.stderr.on('data', (d) => { err += d; if (process.env.MESHLM_TEST_VERBOSE) process.stderr.write(d); });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) {
        clearTimeout(timer);
        const stop = () => new Promise((res) => {
          if (proc.exitCode !== null) return res(proc.exitCode);
          proc.once('exit', (code) => res(code));
          proc.kill('SIGTERM');
          setTimeout(() => proc.kill('SIGKILL'), 10000).unref();
        });
        resolve({ url: m[1], proc, stop, stderr: () => err });
      }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${err}`)); });
  });
}

// A tiny test runner: named async checks, a summary, exit status.
export async function runChecks(checks) {
  let failed = 0;
  for (const [name, fn] of checks) {
    const t0 = Date.now();
    try {
      await fn();
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${e && e.stack || e}`);
    }
  }
  console.log(`${checks.length - failed}/${checks.length} checks passed`);
  return failed;
}
