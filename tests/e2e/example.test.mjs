// example.test.mjs: the demo page's own example, as a person first sees it: the shipped model
// (models/sasp-small), the page's default sampling (the server's defaults that /props reports, and the
// server's defaults for every field the page does not send), the example prompt that the page opens
// with, and as many tokens as the context leaves. For four seeds, judged by the measures of
// bench/code-quality.py (the same functions, called through python3): every text holds code (a line
// that is neither blank nor a comment), and at most two of the four are degenerate (a word or phrase
// five times back to back, a line four times in a row). The goal, issue 23's, is none, and the
// model of period 7 (2026-12-07) met it on a Zen 5: none of the four loops (period 6's: seed 4; the
// model of 2026-12-06: 3 of 24 seeds). A seed's text depends on the CPU's kernel table, so the bar
// guards against a return of the loops (every seed degenerate before the default sampling changed)
// without failing on the CPU a seed lands on.
// Whether the prompt plus the text (cut at its last whole line) parses as Python is written to
// example.json and printed, not required: over a thousand tokens this 6M-parameter model does not
// get there yet.
// Run with `node --test` (scripts/run-e2e.sh); environment as demo.test.mjs (SASP_SERVER, CHROMIUM,
// SASP_E2E_OUTPUT), plus SASP_EXAMPLE_SEEDS (default 1,2,3,4) and SASP_EXAMPLE_THREADS (default 2).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const SERVER = path.resolve(root, process.env.SASP_SERVER || 'sasp-server');
const MODEL = path.join(root, 'models', 'sasp-small');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = path.resolve(root, process.env.SASP_E2E_OUTPUT || path.join(here, 'output'));
const SEEDS = (process.env.SASP_EXAMPLE_SEEDS || '1,2,3,4').split(',').map(Number);
const THREADS = process.env.SASP_EXAMPLE_THREADS || '2';

let server = null;
let serverLog = '';
let base = '';
let context = null;
let page = null;
let profileDir = null;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForServer(timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null)
      throw new Error(`sasp-server exited before it was ready:\n${serverLog.slice(-3000)}`);
    try { if ((await fetch(base + '/health')).ok) return; } catch (_) { /* not yet */ }
    await sleep(200);
  }
  throw new Error(`sasp-server did not answer /health within ${timeoutMs} ms`);
}

// bench/code-quality.py's judgement of one completion: {degenerate, code, parses}.
function judge(prompt, text, finish) {
  const script = `
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("cq", sys.argv[1]); cq = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cq)
d = json.load(sys.stdin)
part = cq.complete_part(d["text"], "stop" if d["finish"] == "stop" else "length")
print(json.dumps({"degenerate": cq.degenerate(d["text"]), "code": cq.has_code(d["text"]),
                  "parses": cq.has_code(part) and cq.parses(d["prompt"] + part)}))`;
  const r = spawnSync('python3', ['-c', script, path.join(root, 'bench', 'code-quality.py')],
    { input: JSON.stringify({ prompt, text, finish }), encoding: 'utf8' });
  assert.equal(r.status, 0, `code-quality.py's judgement failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

before(async () => {
  assert.ok(fs.existsSync(SERVER), `no server binary at ${SERVER}: build it first (make)`);
  assert.ok(fs.existsSync(path.join(MODEL, 'config.json')), `no shipped model at ${MODEL}`);
  fs.mkdirSync(OUT, { recursive: true });
  base = `http://127.0.0.1:${await freePort()}`;
  server = spawn(SERVER, ['-m', MODEL, '--host', '127.0.0.1', '--port', base.split(':')[2], '-t', THREADS,
    '--parallel', '1', '--www', path.join(root, 'www')], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [server.stdout, server.stderr]) s.on('data', (d) => { serverLog += d; });
  await waitForServer(60000);
  profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sasp-example-profile-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = context.pages()[0] || await context.newPage();
});

after(async () => {
  if (context) await context.close().catch(() => {});
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  if (profileDir) fs.rmSync(profileDir, { recursive: true, force: true });
});

test('the example prompt at the page\'s defaults, to the end of the context, reads as code, mostly without loops',
  { timeout: 900000 }, async () => {
    await page.goto(base + '/');
    await page.waitForFunction(() => /\bok\b/.test(document.getElementById('conn').className), null,
      { timeout: 30000 });
    const prompt = await page.inputValue('#prompt');
    assert.match(prompt, /def \w+\(/, 'the page opens with a code example');
    const props = await (await fetch(base + '/props')).json();
    const nPrompt = (await (await fetch(base + '/tokenize', { method: 'POST',
      body: JSON.stringify({ content: prompt }) })).json()).tokens.length;
    const maxTokens = props.n_ctx - nPrompt - 1;
    assert.ok(maxTokens > 500, `the context leaves ${maxTokens} tokens`);
    const report = [];
    for (const seed of SEEDS) {
      await page.fill('#seed', String(seed));
      await page.fill('#max_tokens', String(maxTokens));
      await page.click('#generate');
      await page.waitForFunction(() => !document.getElementById('generate').disabled, null, { timeout: 600000 });
      const text = await page.textContent('#out-gen');
      const finish = (await page.textContent('#s-finish')).trim();
      const j = judge(prompt, text, finish);
      report.push({ seed, finish, chars: text.length, ...j, text });
    }
    fs.writeFileSync(path.join(OUT, 'example.json'), JSON.stringify(report, null, 1));
    console.log(report.map((r) => `seed ${r.seed}: ${r.chars} chars, finish ${r.finish}, ` +
      `${r.degenerate ? 'degenerate' : 'no loop'}, ${r.parses ? 'parses' : 'does not parse'}`).join('\n'));
    const show = (rs) => rs.map((r) => `seed ${r.seed}:\n${r.text.slice(0, 1500)}`).join('\n---\n');
    const noCode = report.filter((r) => !r.code), loops = report.filter((r) => r.degenerate);
    assert.equal(noCode.length, 0, `seeds whose text holds no code: ${show(noCode)}`);
    assert.ok(loops.length <= SEEDS.length / 2, `${loops.length} of ${SEEDS.length} seeds loop: ${show(loops)}`);
  });
