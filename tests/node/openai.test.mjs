// openai.test.mjs: sasp-server driven by the official OpenAI client library for Node (npm `openai`),
// streaming a completion and a chat completion from baseURL http://127.0.0.1:PORT/v1, as a user of
// the library would. SASP_URL (set by run.sh) is the server's base URL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const base = process.env.SASP_URL;
assert.ok(base, 'SASP_URL is not set (run tests/node/run.sh)');
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sasp-test-key', maxRetries: 0 });

test('models.list names the loaded model', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['tiny-model']);
});

test('a streamed completion equals the same request not streamed', async () => {
  const req = { model: 'tiny-model', prompt: 'The café', max_tokens: 24, temperature: 1, top_p: 1, seed: 7 };
  const whole = await client.completions.create(req);
  assert.equal(whole.object, 'text_completion');
  const stream = await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let chunks = 0;
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
    chunks++;
  }
  assert.ok(chunks >= 2, `only ${chunks} chunks`);
  assert.equal(text, whole.choices[0].text);
  assert.equal(finish, whole.choices[0].finish_reason);
  // the same counts; prompt_tokens_details.cached_tokens differs: the second request reuses the
  // first one's prompt from the prompt cache
  const counts = (u) => [u.prompt_tokens, u.completion_tokens, u.total_tokens];
  assert.deepEqual(counts(usage), counts(whole.usage));
  assert.equal(whole.usage.prompt_tokens_details.cached_tokens, 0);
  assert.ok(usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(usage));
});

test('a streamed chat completion', async () => {
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }];
  const whole = await client.chat.completions.create({ model: 'any', messages, max_tokens: 20, seed: 3 });
  const stream = await client.chat.completions.create({ model: 'any', messages, max_tokens: 20, seed: 3, stream: true });
  let text = '';
  let role = null;
  let finish = null;
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (c.delta.role) role = c.delta.role;
    text += c.delta.content ?? '';
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, whole.choices[0].message.content);
  assert.ok(finish === 'stop' || finish === 'length', finish);
  // the library's helper that assembles the stream agrees
  const runner = client.chat.completions.stream({ model: 'any', messages, max_tokens: 20, seed: 3 });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, whole.choices[0].message.content);
});

test('bad input surfaces as the library\'s typed error', async () => {
  await assert.rejects(client.completions.create({ model: 'x', prompt: 'a', temperature: -1 }), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.equal(err.status, 400);
    assert.equal(err.error?.param ?? err.param, 'temperature');
    return true;
  });
});
