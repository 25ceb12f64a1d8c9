// demo-screenshot.mjs: regenerates docs/demo.png, the demo page in the middle of a generation, from a
// real sasp-server at full speed (no --step-delay, so the tokens/s shown are the engine's own).
//   node tests/e2e/demo-screenshot.mjs [MODEL_DIR] [OUT.png]     (defaults: models/sasp-small, docs/demo.png)
// Env: SASP_SERVER (default ./sasp-server), CHROMIUM (default /usr/bin/chromium).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const model = path.resolve(root, process.argv[2] || 'models/sasp-small');
const out = path.resolve(root, process.argv[3] || 'docs/demo.png');
const serverBin = path.resolve(root, process.env.SASP_SERVER || 'sasp-server');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const port = await new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
});
const base = `http://127.0.0.1:${port}`;
const server = spawn(serverBin, ['-m', model, '--port', String(port), '--www', path.join(root, 'www')],
  { stdio: ['ignore', 'inherit', 'inherit'] });
let ok = false;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sasp-demo-profile-'));
let context = null;
try {
  for (let i = 0; i < 300; i++) {
    try { if ((await fetch(base + '/health')).ok) break; } catch (_) { /* starting */ }
    if (server.exitCode !== null) throw new Error('sasp-server exited');
    await sleep(100);
  }
  const props = await (await fetch(base + '/props')).json();
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  await page.goto(base + '/');
  await page.waitForSelector('#model-text .chip.name');
  await page.check('#probs');
  const maxTokens = Math.max(16, Math.min(200, props.n_ctx - 40));
  await page.fill('#max_tokens', String(maxTokens));
  // Capture once the output is well under way; try again (sooner) if the generation had ended by then.
  for (let attempt = 0; attempt < 8 && !ok; attempt++) {
    const want = Math.max(8, Math.round(maxTokens * (0.4 - attempt * 0.05)));
    await page.fill('#seed', String(7 + attempt));
    await page.click('#generate');
    await page.waitForFunction((n) => document.querySelectorAll('#out-gen .tok').length >= n ||
      document.getElementById('stop').disabled /* ended */, want, { polling: 'raf', timeout: 30000 });
    await page.screenshot({ path: out });
    ok = (await page.textContent('#s-finish')).trim() === 'generating…';
    await page.waitForFunction(() => document.getElementById('stop').disabled, null, { timeout: 30000 });
  }
  if (!ok) throw new Error('every capture came after the end of the generation');
  console.log(`demo-screenshot: wrote ${path.relative(root, out)} (${props.model}, ${props.simd})`);
} finally {
  if (context) await context.close();
  server.kill('SIGTERM');
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
