// app.js: the demo page's logic. Streams POST /v1/completions (server-sent events) into the output
// token by token, shows live time-to-first-token and tokens/s, colours tokens by probability from
// logprobs, and reports every failure (server down, 4xx/5xx with the server's message, 429) in the page.
'use strict';

const $ = (id) => document.getElementById(id);

// Sampling defaults shown next to each field; /props may replace them with the server's own.
const DEFAULTS = { max_tokens: 128, temperature: 0.8, top_p: 0.95, top_k: 40, seed: '' };
const PARAMS = ['max_tokens', 'temperature', 'top_p', 'top_k', 'seed'];
const N_ALTERNATIVES = 5;

const ui = {
  prompt: $('prompt'), generate: $('generate'), stop: $('stop'), probs: $('probs'),
  apiKey: $('api_key'), reset: $('reset'), error: $('error'), output: $('output'),
  outPrompt: $('out-prompt'), outGen: $('out-gen'), caret: $('caret'), legend: $('legend'),
  tip: $('tip'), conn: $('conn'), modelText: $('model-text'),
  ttft: $('s-ttft'), tokens: $('s-tokens'), tps: $('s-tps'), elapsed: $('s-elapsed'), finish: $('s-finish'),
};

// One generation's state; `run` is null while idle.
let run = null;
const tokenInfo = [];  // per output span: { text, logprob, top: [{token, logprob}], parts }

// ---------- small helpers ----------

function fmtCount(n) {
  if (typeof n !== 'number' || !isFinite(n)) return String(n);
  if (n >= 1e9) return (n / 1e9).toFixed(2) + 'B';
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e8 ? 0 : 1) + 'M';
  if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + 'k';
  return String(n);
}

function fmtMs(ms) {
  if (ms == null) return '–';
  return ms < 1000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(2) + ' s';
}

// Make a token's whitespace visible in the tooltip.
function visible(tok) {
  return String(tok).replace(/ /g, '␣').replace(/\n/g, '↵').replace(/\t/g, '⇥').replace(/\r/g, '␍') || '∅';
}

function pct(logprob) {
  if (typeof logprob !== 'number' || !isFinite(logprob)) return '–';
  const p = Math.exp(logprob) * 100;
  return (p >= 10 ? p.toFixed(1) : p >= 0.1 ? p.toFixed(2) : p.toExponential(1)) + '%';
}

function authHeaders() {
  const h = {};
  const key = ui.apiKey.value.trim();
  if (key) h.Authorization = 'Bearer ' + key;
  return h;
}

// ---------- errors ----------

class PageError extends Error {}

function showError(msg) {
  ui.error.textContent = msg;
  ui.error.hidden = false;
}

function hideError() {
  ui.error.hidden = true;
  ui.error.textContent = '';
}

// Turn a non-2xx response into a readable message, using OpenAI's error shape when present.
async function httpError(res) {
  let detail = '';
  try {
    const body = await res.text();
    try {
      const j = JSON.parse(body);
      detail = (j && j.error && (j.error.message || (typeof j.error === 'string' && j.error))) ||
               (j && j.message) || body;
    } catch (_) {
      detail = body;
    }
  } catch (_) { /* body unreadable: status alone */ }
  detail = String(detail || '').trim().slice(0, 1000);
  const status = `${res.status}${res.statusText ? ' ' + res.statusText : ''}`;
  if (res.status === 429) {
    const ra = res.headers.get('Retry-After');
    const msg = (detail || 'the server is busy').replace(/\.?$/, '.');
    return new PageError(`${status}: ${msg}` + (ra ? ` Retry after ${ra} s.` : ' Try again shortly.'));
  }
  if (res.status === 401)
    return new PageError(`Not authorised (${status}): ${detail || 'missing or wrong API key'}. ` +
      'Set the API key under Connection.');
  return new PageError(`The server refused the request (${status}): ${detail || 'no message'}`);
}

// ---------- model info (/props, else /v1/models) ----------

function pick(obj, ...keys) {
  for (const k of keys) {
    const v = k.split('.').reduce((o, p) => (o == null ? undefined : o[p]), obj);
    if (v !== undefined && v !== null && v !== '') return v;
  }
  return undefined;
}

function setConn(state, title) {
  ui.conn.className = 'dot ' + state;
  ui.conn.title = title;
}

function renderModel(info) {
  const name = pick(info, 'model', 'model_name', 'name', 'model_alias', 'id', 'model_path');
  const params = pick(info, 'n_params', 'params', 'parameters', 'parameter_count', 'meta.n_params');
  const ctx = pick(info, 'n_ctx', 'ctx', 'context', 'context_length', 'max_seq_len', 'meta.n_ctx',
                   'default_generation_settings.n_ctx');
  const simd = pick(info, 'simd', 'simd_path', 'isa', 'kernels', 'meta.simd');
  const slots = pick(info, 'total_slots', 'slots', 'parallel', 'n_slots');
  const parts = [];
  const frag = document.createDocumentFragment();
  const add = (label, value, cls) => {
    if (value === undefined) return;
    const s = document.createElement('span');
    s.className = 'chip' + (cls ? ' ' + cls : '');
    if (label) {
      const k = document.createElement('span');
      k.className = 'k';
      k.textContent = label;
      s.append(k, ' ');
    }
    s.append(String(value));
    frag.append(s);
    parts.push(value);
  };
  add('', name !== undefined ? String(name).split('/').filter(Boolean).pop() : undefined, 'name');
  add('params', typeof params === 'number' ? fmtCount(params) : params);
  add('context', ctx);
  add('SIMD', simd);
  add('slots', typeof slots === 'number' || typeof slots === 'string' ? slots :
      Array.isArray(slots) ? slots.length : undefined);
  ui.modelText.className = 'chips';
  ui.modelText.replaceChildren(frag);
  if (!parts.length) ui.modelText.textContent = 'model loaded';
}

// Server defaults, when /props reports them, replace the page's.
function adoptDefaults(info) {
  const d = pick(info, 'default_generation_settings.params', 'default_generation_settings', 'defaults');
  if (!d || typeof d !== 'object') return;
  const map = { max_tokens: ['max_tokens', 'n_predict'], temperature: ['temperature'],
                top_p: ['top_p'], top_k: ['top_k'], seed: ['seed'] };
  for (const [k, names] of Object.entries(map)) {
    const v = pick(d, ...names);
    if (typeof v !== 'number' || !isFinite(v)) continue;
    // max_tokens: the API's default (16, as OpenAI's) is too short for a playground; keep the page's.
    if (k === 'max_tokens') continue;
    if (k === 'seed' && v < 0) continue;  // "random"
    const wasDefault = String($(k).value) === String(DEFAULTS[k]);
    DEFAULTS[k] = Number(v.toPrecision(6));  // 0.800000011920929 (a C float) -> 0.8
    if (wasDefault) $(k).value = DEFAULTS[k];
  }
  showDefaults();
}

let infoRetry = 0;

// Fills the header from /props (or /v1/models). While the server cannot be reached it tries again
// every few seconds, so the page recovers by itself when the server comes back.
async function loadModelInfo() {
  clearTimeout(infoRetry);
  infoRetry = 0;
  try {
    let res = await fetch('props', { headers: authHeaders(), cache: 'no-store' });
    if (res.ok) {
      const info = await res.json();
      adoptDefaults(info);
      renderModel(info);
      setConn('ok', 'server reachable');
      return true;
    }
    res = await fetch('v1/models', { headers: authHeaders(), cache: 'no-store' });
    if (!res.ok) throw await httpError(res);
    const j = await res.json();
    const m = (j.data && j.data[0]) || {};
    renderModel(Object.assign({}, m.meta || {}, m));
    setConn('ok', 'server reachable');
    return true;
  } catch (e) {
    setConn('down', 'server unreachable');
    if (!ui.modelText.querySelector('.chip')) {  // keep what we knew about the model
      ui.modelText.className = 'muted';
      ui.modelText.textContent = e instanceof PageError ? e.message : 'server unreachable';
    }
    infoRetry = setTimeout(loadModelInfo, 5000);
    return false;
  }
}

// ---------- parameters ----------

function showDefaults() {
  for (const b of document.querySelectorAll('[data-default]')) {
    const v = DEFAULTS[b.dataset.default];
    b.textContent = v === '' ? 'random' : String(v);
  }
}

function resetParams() {
  for (const k of PARAMS) $(k).value = DEFAULTS[k];
}

// Read and check the fields; the server checks again and its message is shown if it disagrees.
function readParams() {
  const out = {};
  for (const k of PARAMS) {
    const el = $(k);
    const raw = el.value.trim();
    if (raw === '') {
      if (k === 'seed') continue;
      throw new PageError(`${el.closest('label').querySelector('span').textContent} is empty.`);
    }
    const v = Number(raw);
    if (!isFinite(v) || ((k === 'max_tokens' || k === 'top_k' || k === 'seed') && !Number.isInteger(v)))
      throw new PageError(`${el.closest('label').querySelector('span').textContent}: "${raw}" is not a valid ` +
        ((k === 'max_tokens' || k === 'top_k' || k === 'seed') ? 'integer.' : 'number.'));
    out[k] = v;
  }
  return out;
}

// ---------- server-sent events ----------

// Yields {event, data} for each event of a text/event-stream body. Handles events split across
// reads, several events in one read, CRLF / CR / LF line ends, comments and multi-line data.
async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  let buf = '';
  let data = [];
  let event = '';
  function* lines(final) {
    // A trailing CR may be the first half of a CRLF split across reads: keep it for the next read.
    let end = buf.length;
    if (!final && buf.endsWith('\r')) end--;
    const text = buf.slice(0, end).replace(/\r\n?/g, '\n');
    const rest = buf.slice(end);
    const nl = text.lastIndexOf('\n');
    if (nl < 0 && !final) return;
    const complete = final ? text : text.slice(0, nl);
    buf = (final ? '' : text.slice(nl + 1)) + rest;
    yield* complete.split('\n');
    if (final) yield '';
  }
  function* dispatch(line) {
    if (line === '') {
      if (data.length) yield { event: event || 'message', data: data.join('\n') };
      data = [];
      event = '';
      return;
    }
    if (line.startsWith(':')) return;  // comment / keep-alive
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
  }
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      for (const line of lines(false)) yield* dispatch(line);
    }
    buf += decoder.decode();
    for (const line of lines(true)) yield* dispatch(line);
  } finally {
    reader.cancel().catch(() => {});  // closes the connection if we stopped early
  }
}

// ---------- output rendering ----------

function clearOutput() {
  pending.length = 0;
  ui.outGen.replaceChildren();
  tokenInfo.length = 0;
  hideTip();
}

// Normalise the alternatives of one position: OpenAI's {token: logprob} map or [{token, logprob}].
function alternatives(top) {
  if (!top) return [];
  let list;
  if (Array.isArray(top)) list = top.map((t) => ({ token: t.token, logprob: t.logprob }));
  else list = Object.entries(top).map(([token, logprob]) => ({ token, logprob }));
  return list.filter((t) => typeof t.logprob === 'number').sort((a, b) => b.logprob - a.logprob);
}

// The tokens of one streamed choice, with their logprobs when the server sent them.
function chunkTokens(choice) {
  const lp = choice.logprobs;
  if (lp && Array.isArray(lp.tokens)) {
    return lp.tokens.map((t, i) => ({
      text: t,
      logprob: lp.token_logprobs ? lp.token_logprobs[i] : undefined,
      top: alternatives(lp.top_logprobs ? lp.top_logprobs[i] : null),
    }));
  }
  if (lp && Array.isArray(lp.content)) {  // chat-style logprobs
    return lp.content.map((c) => ({ text: c.token, logprob: c.logprob, top: alternatives(c.top_logprobs) }));
  }
  return [];
}

function appendSpan(info) {
  const span = document.createElement('span');
  span.className = 'tok';
  // Each newline gets an empty marker that CSS shows as ↵ in probability mode, so tokens that are
  // only line breaks can be seen and hovered. The text itself is unchanged.
  const lines = String(info.text).split('\n');
  lines.forEach((line, i) => {
    if (i > 0) {
      const nl = document.createElement('span');
      nl.className = 'nl';
      span.append(nl, '\n');
    }
    if (line) span.append(line);
  });
  span.dataset.i = String(tokenInfo.length);
  if (typeof info.logprob === 'number' && isFinite(info.logprob)) {
    span.style.setProperty('--p', Math.exp(info.logprob).toFixed(3));
    span.classList.add('has-p');
  }
  tokenInfo.push(info);
  ui.outGen.append(span);
}

// The text and tokens of one streamed choice.
function parseChoice(choice) {
  const text = typeof choice.text === 'string' ? choice.text :
               (choice.delta && typeof choice.delta.content === 'string' ? choice.delta.content : '');
  const toks = chunkTokens(choice);
  return { text, toks, n: toks.length || (text ? 1 : 0) };
}

// Add one parsed choice to the output.
function appendChoice({ text, toks }) {
  if (toks.length && toks.map((t) => t.text).join('') === text) {
    for (const t of toks) appendSpan(t);
  } else if (text) {
    // Text and tokens differ (e.g. a UTF-8 character held back until complete): one span for the
    // text, with the joint probability of the tokens that made it.
    const lp = toks.length && toks.every((t) => typeof t.logprob === 'number')
      ? toks.reduce((s, t) => s + t.logprob, 0) : undefined;
    appendSpan({ text, logprob: lp, top: toks.length === 1 ? toks[0].top : [], parts: toks });
  }
}

// Tokens arrive faster than a screen refreshes (a small model makes ~1000 tokens/s): queue them and
// draw once per frame, so the page never falls behind the stream and layout runs once per frame.
const pending = [];
let frame = 0;

function flushOutput() {
  if (frame) { cancelAnimationFrame(frame); frame = 0; }
  if (!pending.length) return;
  const atBottom = ui.output.scrollHeight - ui.output.scrollTop - ui.output.clientHeight < 24;
  for (const c of pending) appendChoice(c);
  pending.length = 0;
  followOutput(atBottom);
  updateStats();
}

function queueOutput(parsed) {
  pending.push(parsed);
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; flushOutput(); });
}

// ---------- tooltip ----------

let tipFor = null;

function hideTip() {
  ui.tip.hidden = true;
  tipFor = null;
}

function showTip(span) {
  const info = tokenInfo[Number(span.dataset.i)];
  if (!info) return;
  tipFor = span;
  const tip = ui.tip;
  tip.replaceChildren();
  const head = document.createElement('div');
  head.className = 'tip-head';
  const code = document.createElement('code');
  code.textContent = visible(info.text);
  head.append(code, ' ', pct(info.logprob));
  tip.append(head);
  if (info.parts && info.parts.length > 1) {
    const p = document.createElement('div');
    p.className = 'tip-note';
    p.textContent = `${info.parts.length} tokens: ` + info.parts.map((t) => visible(t.text)).join(' | ');
    tip.append(p);
  }
  if (info.top && info.top.length) {
    const table = document.createElement('table');
    for (const alt of info.top) {
      const tr = document.createElement('tr');
      if (alt.token === info.text) tr.className = 'chosen';
      const td1 = document.createElement('td');
      const c = document.createElement('code');
      c.textContent = visible(alt.token);
      td1.append(c);
      const td2 = document.createElement('td');
      td2.className = 'bar';
      const bar = document.createElement('i');
      bar.style.width = Math.max(1, Math.exp(alt.logprob) * 100).toFixed(1) + '%';
      td2.append(bar);
      const td3 = document.createElement('td');
      td3.className = 'num';
      td3.textContent = pct(alt.logprob);
      tr.append(td1, td2, td3);
      table.append(tr);
    }
    tip.append(table);
  } else if (info.logprob === undefined) {
    const p = document.createElement('div');
    p.className = 'tip-note';
    p.textContent = 'no probabilities for this token';
    tip.append(p);
  }
  tip.hidden = false;
  // Place below the token, or above when there is no room; keep inside the viewport.
  const r = span.getBoundingClientRect();
  const tw = tip.offsetWidth, th = tip.offsetHeight;
  const vw = document.documentElement.clientWidth, vh = document.documentElement.clientHeight;
  let x = Math.min(Math.max(4, r.left), vw - tw - 4);
  let y = r.bottom + 6;
  if (y + th > vh - 4 && r.top - th - 6 > 4) y = r.top - th - 6;
  tip.style.left = Math.max(4, x) + window.scrollX + 'px';
  tip.style.top = y + window.scrollY + 'px';
}

ui.outGen.addEventListener('mouseover', (e) => {
  if (!ui.probs.checked) return;
  const span = e.target.closest('.tok');
  if (span && span !== tipFor) showTip(span);
});
ui.outGen.addEventListener('mouseleave', hideTip);
ui.outGen.addEventListener('click', (e) => {  // touch screens: tap a token
  if (!ui.probs.checked) return;
  const span = e.target.closest('.tok');
  if (span) { showTip(span); e.stopPropagation(); }
});
document.addEventListener('click', (e) => { if (!ui.tip.contains(e.target)) hideTip(); });
window.addEventListener('scroll', hideTip, { passive: true });
ui.output.addEventListener('scroll', hideTip, { passive: true });

function applyProbsToggle() {
  ui.output.classList.toggle('probs', ui.probs.checked);
  ui.legend.hidden = !ui.probs.checked;
  if (!ui.probs.checked) hideTip();
}

// ---------- stats ----------

function updateStats() {
  if (!run) return;
  const now = run.tEnd ?? performance.now();
  ui.elapsed.textContent = fmtMs(now - run.t0);
  ui.ttft.textContent = run.tFirst == null ? (run.tEnd ? '–' : 'waiting…') : fmtMs(run.tFirst - run.t0);
  ui.tokens.textContent = String(run.nTokens);
  // Decode speed: tokens after the first over the time since the first arrived.
  const last = run.tLast;
  if (run.tFirst != null && run.nTokens > 1 && last > run.tFirst)
    ui.tps.textContent = ((run.nTokens - 1) / ((last - run.tFirst) / 1000)).toFixed(1);
  else ui.tps.textContent = '–';
}

function setRunning(on) {
  ui.generate.disabled = on;
  ui.stop.disabled = !on;
  ui.caret.hidden = !on;
  document.body.classList.toggle('running', on);
}

function followOutput(wasAtBottom) {
  if (wasAtBottom) ui.output.scrollTop = ui.output.scrollHeight;
}

// ---------- generate / stop ----------

async function generate() {
  if (run) return;
  hideError();
  let params;
  try {
    params = readParams();
  } catch (e) {
    showError(e.message);
    return;
  }
  const prompt = ui.prompt.value;
  const body = Object.assign({ prompt }, params, {
    stream: true,
    logprobs: N_ALTERNATIVES,
    stream_options: { include_usage: true },
  });
  const controller = new AbortController();
  run = { controller, t0: performance.now(), tFirst: null, tLast: null, tEnd: null, nTokens: 0,
          finish: null, usage: null };
  const me = run;
  clearOutput();
  ui.outPrompt.textContent = prompt;
  ui.finish.textContent = 'generating…';
  ui.tokens.title = '';
  ui.finish.className = 'v';
  setRunning(true);
  updateStats();
  const timer = setInterval(() => { flushOutput(); updateStats(); }, 100);  // also when frames stop (hidden tab)
  let outcome = 'done';
  let gotResponse = false;
  try {
    let res;
    try {
      res = await fetch('v1/completions', {
        method: 'POST',
        headers: Object.assign({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }, authHeaders()),
        body: JSON.stringify(body),
        signal: controller.signal,
      });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      setConn('down', 'server unreachable');
      if (!infoRetry) infoRetry = setTimeout(loadModelInfo, 5000);
      throw new PageError(`Cannot reach the server at ${location.origin}. Is sasp-server running? (${e.message})`);
    }
    gotResponse = true;
    setConn('ok', 'server reachable');
    if (!res.ok) throw await httpError(res);
    if (!res.body) throw new PageError('The server sent no stream.');
    let sawDone = false;
    for await (const ev of sseEvents(res.body)) {
      if (ev.data === '[DONE]') { sawDone = true; break; }
      let chunk;
      try {
        chunk = JSON.parse(ev.data);
      } catch (_) {
        throw new PageError('The server sent an event that is not JSON: ' + ev.data.slice(0, 200));
      }
      if (chunk.error || ev.event === 'error') {
        const m = chunk.error ? (chunk.error.message || JSON.stringify(chunk.error)) : ev.data;
        throw new PageError('The server reported an error during generation: ' + m);
      }
      if (chunk.usage) me.usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        const parsed = parseChoice(choice);
        if (parsed.n) {
          const now = performance.now();  // timing at arrival, not at drawing
          if (me.tFirst == null) me.tFirst = now;
          me.tLast = now;
          me.nTokens += parsed.n;
          queueOutput(parsed);
        }
        if (choice.finish_reason) me.finish = choice.finish_reason;
      }
    }
    if (!sawDone && !me.finish)
      throw new PageError('The server closed the stream before the generation finished.');
  } catch (e) {
    if (e.name === 'AbortError') {
      outcome = 'stopped';
    } else {
      outcome = 'error';
      if (e instanceof PageError) showError(e.message);
      else if (gotResponse) showError('The connection to the server was lost during generation (' + e.message + ').');
      else showError(String(e.message || e));
    }
  } finally {
    clearInterval(timer);
    flushOutput();
    me.tEnd = performance.now();
    if (me.usage && typeof me.usage.completion_tokens === 'number') me.nTokens = me.usage.completion_tokens;
    updateStats();
    ui.finish.textContent = outcome === 'stopped' ? 'stopped' : outcome === 'error' ? 'error' : (me.finish || '–');
    ui.finish.className = 'v finish-' + (outcome === 'done' ? (me.finish || 'none') : outcome);
    if (me.usage) {
      ui.tokens.title = `prompt ${me.usage.prompt_tokens}, completion ${me.usage.completion_tokens}, ` +
        `total ${me.usage.total_tokens}`;
    }
    run = null;
    setRunning(false);
  }
}

function stop() {
  if (run) run.controller.abort();
}

// ---------- wiring ----------

ui.generate.addEventListener('click', generate);
ui.stop.addEventListener('click', stop);
ui.probs.addEventListener('change', applyProbsToggle);
ui.reset.addEventListener('click', resetParams);
ui.apiKey.addEventListener('change', loadModelInfo);  // /props needs the key when one is set
document.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    generate();
  } else if (e.key === 'Escape') {
    if (!ui.tip.hidden) hideTip();
    else if (run) stop();
  }
});

showDefaults();
resetParams();
applyProbsToggle();
loadModelInfo();
