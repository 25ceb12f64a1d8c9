// demo.test.mjs: end-to-end test of the demo page (www/) served by a real sasp-server, driven in
// Debian's headless Chromium through playwright-core. Run with `node --test` (scripts/run-e2e.sh).
//
// Environment:
//   SASP_SERVER      server binary                     (default: ./sasp-server at the repository root)
//   SASP_E2E_MODEL   model directory                   (default: tests/fixtures/tiny-model, else models/sasp-small)
//   CHROMIUM         browser binary                    (default: /usr/bin/chromium)
//   SASP_E2E_OUTPUT  where screenshots and logs go    (default: tests/e2e/output)
//   SASP_DEMO_PNG    also save the mid-generation desktop screenshot here (e.g. docs/demo.png)
//   SASP_E2E_THREADS server threads                    (default: 1; the CI machine has 2 cores)
//   SASP_E2E_STEP_DELAY  server --step-delay in ms      (default: 20: a tiny model streams slowly enough
//                    to see tokens arrive and to Stop mid-way; 0 = full speed)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const SERVER = path.resolve(root, process.env.SASP_SERVER || 'sasp-server');
const MODEL = process.env.SASP_E2E_MODEL
  ? path.resolve(root, process.env.SASP_E2E_MODEL)
  : ['tests/fixtures/tiny-model', 'models/sasp-small'].map((p) => path.join(root, p))
      .find((p) => fs.existsSync(path.join(p, 'config.json')));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = path.resolve(root, process.env.SASP_E2E_OUTPUT || path.join(here, 'output'));
const DEMO_PNG = process.env.SASP_DEMO_PNG ? path.resolve(root, process.env.SASP_DEMO_PNG) : null;
const THREADS = process.env.SASP_E2E_THREADS || '1';
const STEP_DELAY = process.env.SASP_E2E_STEP_DELAY || '20';
const SLOTS = 2;
// Prometheus counter of requests cancelled by a client disconnect (see src/server.c, docs/api.md).
const CANCEL_METRIC = process.env.SASP_E2E_CANCEL_METRIC || 'sasp_requests_cancelled_total';

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let server = null;      // child process
let serverLog = '';
let base = '';          // http://127.0.0.1:PORT
let props = null;       // GET /props as the server reports it
let context = null;     // browser context (persistent, fresh profile)
let page = null;
let profileDir = null;
const pageErrors = [];  // uncaught exceptions in the page

// ---------- helpers ----------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function logTail() {
  return serverLog.split('\n').slice(-30).join('\n');
}

async function waitForServer(timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null)
      throw new Error(`sasp-server exited (${server.exitCode ?? server.signalCode}) before it was ready:\n${logTail()}`);
    try {
      const r = await fetch(base + '/health');
      if (r.ok) return;
    } catch (_) { /* not listening yet */ }
    await sleep(200);
  }
  throw new Error(`sasp-server did not answer /health within ${timeoutMs} ms:\n${logTail()}`);
}

function stopServer() {
  return new Promise((resolve) => {
    if (!server || server.exitCode !== null || server.signalCode !== null) return resolve();
    const t = setTimeout(() => server.kill('SIGKILL'), 10000);
    server.once('exit', () => { clearTimeout(t); resolve(); });
    server.kill('SIGTERM');
  });
}

// Sum of the cancellation counter's samples in /metrics.
async function cancelledCount() {
  const text = await (await fetch(base + '/metrics')).text();
  let sum = 0, found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === CANCEL_METRIC) { sum += Number(m[3]); found = true; }
  }
  assert.ok(found, `/metrics has no ${CANCEL_METRIC} sample:\n${text.slice(0, 2000)}`);
  return sum;
}

async function shot(name) {
  const file = path.join(OUT, name);
  await page.screenshot({ path: file });
  return file;
}

async function setParams(p) {
  for (const [k, v] of Object.entries(p)) await page.fill('#' + k, String(v));
}

const genLength = () => page.evaluate(() => document.getElementById('out-gen').textContent.length);
const tokenSpans = () => page.evaluate(() => document.querySelectorAll('#out-gen .tok').length);

// Waits until the page is idle again (Generate enabled) and returns the finish cell's text.
async function waitIdle(timeoutMs = 120000) {
  await page.waitForFunction(() => !document.getElementById('generate').disabled &&
    document.getElementById('stop').disabled, null, { timeout: timeoutMs });
  return (await page.textContent('#s-finish')).trim();
}

// A max_tokens that keeps a generation running for a while but fits the context.
function longMaxTokens() {
  const ctx = Number(props && (props.n_ctx ?? props.ctx ?? props.context));
  return Number.isFinite(ctx) && ctx > 64 ? Math.min(ctx - 32, 4000) : 400;
}

// ---------- setup / teardown ----------

let port = 0;
let logFile = null;

async function startServer() {
  // --max-queue 0: a request beyond the slots gets 429 at once (tested below).
  server = spawn(SERVER, ['-m', MODEL, '--host', '127.0.0.1', '--port', String(port), '-t', THREADS,
    '--parallel', String(SLOTS), '--max-queue', '0', '--step-delay', STEP_DELAY, '--www', path.join(root, 'www')],
  { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [server.stdout, server.stderr]) {
    s.on('data', (d) => { serverLog += d; logFile.write(d); });
  }
  await waitForServer(60000);
}

before(async () => {
  assert.ok(fs.existsSync(SERVER), `no server binary at ${SERVER}: build it first (make)`);
  assert.ok(MODEL && fs.existsSync(MODEL), 'no model: set SASP_E2E_MODEL or provide tests/fixtures/tiny-model ' +
    'or models/sasp-small');
  assert.ok(fs.existsSync(CHROMIUM), `no browser at ${CHROMIUM}: scripts/install-deps.sh --test installs chromium`);
  fs.mkdirSync(OUT, { recursive: true });

  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  logFile = fs.createWriteStream(path.join(OUT, 'server.log'));
  await startServer();
  props = await (await fetch(base + '/props')).json();

  profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sasp-e2e-profile-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: DESKTOP,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => { pageErrors.push(String(e)); });
});

after(async () => {
  if (context) await context.close().catch(() => {});
  await stopServer();
  if (profileDir) fs.rmSync(profileDir, { recursive: true, force: true });
});

// ---------- tests ----------

test('the page loads from / and shows the model from /props', async () => {
  const res = await page.goto(base + '/');
  assert.equal(res.status(), 200);
  await page.waitForSelector('#model-text .chip.name', { timeout: 10000 });
  const info = await page.textContent('#model-text');
  assert.match(await page.getAttribute('#conn', 'class'), /\bok\b/);
  const ctx = props.n_ctx ?? props.ctx ?? props.context;
  if (ctx !== undefined) assert.ok(info.includes(String(ctx)), `context ${ctx} not shown in "${info}"`);
  assert.match(info, /params/, `parameter count not shown in "${info}"`);
  assert.match(info, /SIMD/, `SIMD path not shown in "${info}"`);
  // Every parameter shows its default.
  for (const k of ['max_tokens', 'temperature', 'top_p', 'top_k', 'seed']) {
    const d = (await page.textContent(`[data-default="${k}"]`)).trim();
    assert.ok(d.length > 0, `no default shown for ${k}`);
  }
  assert.deepEqual(pageErrors, []);
});

test('without /props the page falls back to /v1/models for the model info', async () => {
  await page.route('**/props', (route) => route.fulfill({ status: 404, contentType: 'application/json',
    body: '{"error":{"message":"not here","type":"not_found_error","param":null,"code":null}}' }));
  try {
    await page.reload();
    await page.waitForSelector('#model-text .chip.name', { timeout: 10000 });
    const models = await (await fetch(base + '/v1/models')).json();
    const info = await page.textContent('#model-text');
    assert.ok(info.includes(models.data[0].id), `model id ${models.data[0].id} not in "${info}"`);
    assert.ok(info.includes(String(models.data[0].meta.n_ctx)), `context not in "${info}"`);
  } finally {
    await page.unroute('**/props');
  }
  await page.reload();
  await page.waitForSelector('#model-text .chip.name', { timeout: 10000 });
  assert.match(await page.textContent('#model-text'), /SIMD/);
});

test('the page\'s SSE parser survives events split at every byte, CRLF/CR line ends, comments', async () => {
  const result = await page.evaluate(async () => {
    const enc = new TextEncoder();
    const streams = {
      lf: ': keep-alive\n\ndata: {"t":"h\u00e9"}\n\ndata: {"t":"\u{1F98A}"}\n\ndata: a\ndata: b\n\ndata: [DONE]\n\n',
      crlf: 'data: {"t":"h\u00e9"}\r\n\r\ndata: {"t":"\u{1F98A}"}\r\n\r\ndata: a\r\ndata: b\r\n\r\ndata: [DONE]\r\n\r\n',
      cr: 'data: {"t":"h\u00e9"}\r\rdata: {"t":"\u{1F98A}"}\r\rdata: a\rdata: b\r\rdata: [DONE]\r\r',
      noTrailingBlank: 'data: {"t":"h\u00e9"}\n\ndata: {"t":"\u{1F98A}"}\n\ndata:a\ndata:b\n\ndata: [DONE]',
    };
    const out = {};
    for (const [name, text] of Object.entries(streams)) {
      const bytes = enc.encode(text);
      const runs = [];
      for (const size of [1, 2, 3, 5, 7, bytes.length]) {  // every split, including inside UTF-8 and CRLF
        const body = new ReadableStream({
          start(c) {
            for (let i = 0; i < bytes.length; i += size) c.enqueue(bytes.slice(i, i + size));
            c.close();
          },
        });
        const got = [];
        for await (const ev of sseEvents(body)) got.push(ev.data);  // eslint-disable-line no-undef
        runs.push(JSON.stringify(got));
      }
      out[name] = runs;
    }
    return out;
  });
  const want = JSON.stringify(['{"t":"h\u00e9"}', '{"t":"\u{1F98A}"}', 'a\nb', '[DONE]']);
  for (const [name, runs] of Object.entries(result))
    for (const r of runs) assert.equal(r, want, `stream "${name}"`);
});

test('Generate streams the completion: output grows over several updates, stats and finish reason', async () => {
  await setParams({ max_tokens: 200, temperature: 0.8, seed: 42 });
  await page.fill('#prompt', 'Once upon a time');
  // Record every change of the output as the browser delivers it.
  await page.evaluate(() => {
    window.__rec = [];
    const gen = document.getElementById('out-gen');
    window.__obs = new MutationObserver(() => {
      window.__rec.push({ len: gen.textContent.length, finish: document.getElementById('s-finish').textContent });
    });
    window.__obs.observe(gen, { childList: true, subtree: true, characterData: true });
  });
  await page.click('#generate');
  const finish = await waitIdle();
  const rec = await page.evaluate(() => { window.__obs.disconnect(); return window.__rec; });
  const final = await genLength();
  assert.ok(final > 0, 'no output');
  const growing = [...new Set(rec.filter((r) => r.len > 0 && r.len < final && r.finish === 'generating…')
    .map((r) => r.len))];
  assert.ok(growing.length >= 2,
    `output grew in ${growing.length} visible step(s) before the end (${JSON.stringify(rec.slice(0, 20))})`);
  assert.ok(['length', 'stop'].includes(finish), `finish reason shown: "${finish}"`);
  assert.match(await page.textContent('#s-ttft'), /^\d+(\.\d+)? m?s$/);
  const ntok = Number(await page.textContent('#s-tokens'));
  assert.ok(ntok >= 1 && ntok <= 200, `token count ${ntok}`);
  if (finish === 'length') assert.equal(ntok, 200);
  assert.match(await page.textContent('#s-tps'), /^\d+(\.\d+)?$|^–$/);
  assert.ok(await page.isHidden('#error'), 'error shown after a good generation');
  // The prompt stays in front of the completion.
  assert.equal(await page.textContent('#out-prompt'), 'Once upon a time');
});

test('the same seed gives the same text twice (parameters reach the server)', async () => {
  const first = await page.textContent('#out-gen');
  await page.click('#generate');
  await waitIdle();
  assert.equal(await page.textContent('#out-gen'), first);
});

test('Ctrl+Enter generates; probability toggle colours tokens and shows alternatives on hover', async () => {
  await setParams({ max_tokens: 24, seed: 7 });
  await page.focus('#prompt');
  await page.keyboard.press('Control+Enter');
  await page.waitForFunction(() => document.getElementById('generate').disabled, null, { timeout: 5000 })
    .catch(() => {});  // may already have finished
  await waitIdle();
  assert.ok((await genLength()) > 0, 'Ctrl+Enter produced no output');
  await page.check('#probs');
  assert.ok(await page.isVisible('#legend'));
  const spans = await tokenSpans();
  assert.ok(spans >= 2, `only ${spans} token span(s)`);
  const colours = await page.evaluate(() => [...document.querySelectorAll('#out-gen .tok.has-p')]
    .map((s) => getComputedStyle(s).backgroundColor));
  assert.ok(colours.length >= 2, 'tokens carry no probabilities (logprobs missing from the stream?)');
  assert.ok(colours.every((c) => c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent'), 'tokens not coloured');
  // Hover a token: the tooltip shows its probability and the top alternatives.
  await page.hover('#out-gen .tok.has-p >> nth=1');
  await page.waitForSelector('#tip:not([hidden])', { timeout: 5000 });
  const rows = await page.$$eval('#tip tr', (trs) => trs.map((t) => t.textContent));
  assert.ok(rows.length >= 2, `tooltip shows ${rows.length} alternative(s)`);
  assert.ok(rows.every((r) => /%/.test(r)));
  assert.match(await page.textContent('#tip .tip-head'), /%/);
  await shot('desktop-probabilities.png');
  await page.mouse.move(5, 5);
  await page.uncheck('#probs');
  assert.ok(await page.isHidden('#legend'));
});

test('Stop mid-way aborts the stream and the server counts the cancellation', async () => {
  await page.check('#probs');
  const before = await cancelledCount();
  await setParams({ max_tokens: longMaxTokens(), seed: 1 });
  await page.fill('#prompt', 'import json\n\n\ndef load_config(path):\n    """Read a JSON config file and return it as a dict."""\n');
  await page.click('#generate');
  await page.waitForFunction(() => document.querySelectorAll('#out-gen .tok').length >= 6, null, { timeout: 60000 });
  const file = await shot('desktop-generating.png');
  if (DEMO_PNG) fs.copyFileSync(file, DEMO_PNG);
  assert.ok(await page.isEnabled('#stop'), 'generation finished before Stop could be clicked');
  await page.click('#stop');
  assert.equal(await waitIdle(10000), 'stopped');
  const len = await genLength();
  await sleep(700);
  assert.equal(await genLength(), len, 'output kept growing after Stop');
  assert.ok(await page.isHidden('#error'), 'Stop shown as an error');
  let after = before;
  for (let i = 0; i < 50 && after <= before; i++) {
    await sleep(200);
    after = await cancelledCount();
  }
  assert.ok(after > before, `${CANCEL_METRIC} stayed at ${before} after Stop`);
  // The slot is free again: a new generation runs to the end.
  await setParams({ max_tokens: 8 });
  await page.click('#generate');
  assert.ok(['length', 'stop'].includes(await waitIdle()));
  await page.uncheck('#probs');
});

test('with every slot busy and no queue, the page shows the 429 "busy" message', async () => {
  // Occupy both slots with long streaming requests, each seen to be generating.
  const controllers = [];
  const readers = [];
  for (let i = 0; i < SLOTS; i++) {
    const ac = new AbortController();
    controllers.push(ac);
    const res = await fetch(base + '/v1/completions', { method: 'POST', signal: ac.signal,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'busy', max_tokens: longMaxTokens(), stream: true }) });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    await reader.read();  // first token: this request holds a slot
    readers.push(reader);
  }
  try {
    await setParams({ max_tokens: 8 });
    await page.click('#generate');
    await waitIdle(20000);
    await page.waitForSelector('#error:not([hidden])');
    const shown = await page.textContent('#error');
    assert.match(shown, /429/, shown);
    assert.match(shown, /busy/, shown);  // the server's own message
    assert.match(shown, /Retry after \d+ s/, shown);
    await shot('desktop-error-429.png');
  } finally {
    for (const ac of controllers) ac.abort();
  }
  // The server frees both slots once those clients are gone.
  let busy = SLOTS;
  for (let i = 0; i < 100 && busy > 0; i++) {
    await sleep(100);
    const p = await (await fetch(base + '/props')).json();
    busy = p.slots.filter((s) => s.state !== 'idle').length;
  }
  assert.equal(busy, 0, 'slots still busy after their clients disconnected');
});

test('a request the server rejects (4xx) shows the server\'s error message', async () => {
  const body = { prompt: 'x', max_tokens: 8, temperature: -1, top_p: 0.95, top_k: 40, stream: true,
    logprobs: 5, stream_options: { include_usage: true } };
  const direct = await fetch(base + '/v1/completions', { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(direct.status, 400);
  const message = (await direct.json()).error.message;
  await setParams({ temperature: -1, max_tokens: 8 });
  await page.click('#generate');
  await waitIdle();
  await page.waitForSelector('#error:not([hidden])');
  const shown = await page.textContent('#error');
  assert.ok(shown.includes(message), `page shows "${shown}", server said "${message}"`);
  assert.match(shown, /400/);
  await shot('desktop-error-400.png');
  await page.click('#reset');
  assert.equal(await page.inputValue('#temperature'), (await page.textContent('[data-default="temperature"]')).trim());
});

test('layout fits a phone and dark mode applies', async () => {
  await setParams({ max_tokens: 40, seed: 3 });
  await page.check('#probs');
  await page.click('#generate');
  await waitIdle();
  await shot('desktop.png');
  await page.emulateMedia({ colorScheme: 'dark' });
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const [r, g, b] = bg.match(/\d+/g).map(Number);
  assert.ok(0.2126 * r + 0.7152 * g + 0.0722 * b < 60, `dark mode background is ${bg}`);
  await shot('desktop-dark.png');
  await page.setViewportSize(PHONE);
  await sleep(100);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(overflow <= PHONE.width, `page is ${overflow}px wide at ${PHONE.width}px`);
  await shot('phone-dark.png');
  await page.emulateMedia({ colorScheme: 'light' });
  await shot('phone.png');
  // Controls stay usable on the phone: the buttons are on screen.
  for (const sel of ['#generate', '#stop', '#prompt', '#max_tokens']) {
    const box = await page.locator(sel).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= PHONE.width, `${sel} off screen: ${JSON.stringify(box)}`);
  }
  await page.setViewportSize(DESKTOP);
  await page.uncheck('#probs');
});

test('with the server down, Generate shows an error instead of a blank', async () => {
  await stopServer();
  await page.click('#generate');
  await waitIdle(20000);
  await page.waitForSelector('#error:not([hidden])');
  assert.match(await page.textContent('#error'), /Cannot reach the server/);
  assert.equal((await page.textContent('#s-finish')).trim(), 'error');
  assert.match(await page.getAttribute('#conn', 'class'), /\bdown\b/);
  await shot('desktop-server-down.png');
  await page.setViewportSize(PHONE);
  await shot('phone-server-down.png');
  await page.setViewportSize(DESKTOP);
});

test('when the server comes back, the page recovers by itself and generates again', async () => {
  await startServer();
  await page.waitForFunction(() => /\bok\b/.test(document.getElementById('conn').className), null,
    { timeout: 15000 });
  await setParams({ max_tokens: 8 });
  await page.click('#generate');
  assert.ok(['length', 'stop'].includes(await waitIdle()));
  assert.ok(await page.isHidden('#error'), 'old error still shown after a good generation');
  assert.ok((await genLength()) > 0);
  assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
});
