// clients.test.mjs: sasp-server driven by the client libraries people point at a local backend, each
// used as its documentation shows: ollama (ollama-js), openai (chat, completions, responses, ...),
// @anthropic-ai/sdk (messages), @langchain/ollama and @langchain/openai, and the Vercel AI SDK with
// @ai-sdk/openai-compatible. Every call must succeed, or fail with the documented, typed error.
// SASP_URL (set by run.sh) is the server's base URL; the server runs the tiny test model (random
// weights: the text means nothing, its shape and the protocol are what is tested), under two names
// (tiny-model and tiny-copy) to see a request's model pick one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { zodTextFormat } from 'openai/helpers/zod';
import Anthropic from '@anthropic-ai/sdk';
import { ChatOllama, OllamaEmbeddings } from '@langchain/ollama';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import { HumanMessage, SystemMessage } from '@langchain/core/messages';
import { generateText, streamText, generateObject, embed } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { z } from 'zod';

const base = process.env.SASP_URL;
assert.ok(base, 'SASP_URL is not set (run tests/clients/run.sh)');
const MODEL = 'tiny-model';
const ollama = new Ollama({ host: base });
const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sasp-test-key', maxRetries: 0 });

// A schema of the shapes clients send: nested object, enum, array, number, boolean, optional field.
const Person = z.object({
  name: z.string().max(12),
  role: z.enum(['dev', 'ops']),
  age: z.number().int(),
  tags: z.array(z.string().max(6)).max(3),
  active: z.boolean(),
  address: z.object({ city: z.string().max(10) }),
});
const personSchema = z.toJSONSchema(Person);


// --- ollama (ollama-js) ---

test('ollama: version, list, show, ps describe the served models', async () => {
  const v = await ollama.version();
  assert.match(v.version, /^\d+\.\d+\.\d+$/);
  const list = await ollama.list();
  assert.deepEqual(list.models.map((m) => m.name), ['tiny-model:latest', 'tiny-copy:latest']);
  const m = list.models[0];
  assert.ok(!isNaN(Date.parse(m.modified_at)), `modified_at ${m.modified_at} is a date`);
  assert.match(m.digest, /^[0-9a-f]{64}$/);
  assert.ok(m.size > 0);
  assert.equal(m.details.family, 'sasp');
  assert.deepEqual(m.details.families, ['sasp']);
  assert.ok(m.details.parameter_size && m.details.quantization_level);
  const show = await ollama.show({ model: MODEL });
  assert.deepEqual(show.capabilities, ['completion', 'embedding']);
  assert.equal(show.model_info['general.architecture'], 'sasp');
  assert.equal(show.model_info['sasp.context_length'], 256);
  assert.ok(show.template.includes('Assistant:') && show.parameters.includes('temperature'));
  assert.equal(show.details.format, 'safetensors');
  const ps = await ollama.ps();
  assert.equal(ps.models.length, 2);
  assert.ok(!isNaN(Date.parse(ps.models[0].expires_at)));
});

test('ollama: generate, streamed and not', async () => {
  const options = { num_predict: 12, temperature: 1, top_k: 0, top_p: 1, min_p: 0, seed: 3 };
  const whole = await ollama.generate({ model: MODEL, prompt: 'def add(a, b):', options });
  assert.equal(whole.done, true);
  assert.equal(whole.eval_count, whole.done_reason === 'length' ? 12 : whole.eval_count);
  let text = '';
  let last = null;
  for await (const part of await ollama.generate({ model: MODEL, prompt: 'def add(a, b):', options, stream: true })) {
    text += part.response;
    last = part;
  }
  assert.equal(last.done, true);
  assert.equal(text, whole.response);
  assert.ok(Array.isArray(last.context) && last.context.length === last.prompt_eval_count + last.eval_count);
});

test('ollama: chat, streamed and not, with options and keep_alive', async () => {
  const req = {
    model: 'tiny-model:latest',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }],
    options: { num_predict: 10, seed: 5, temperature: 0.7, repeat_penalty: 1.1, num_ctx: 128 },
    keep_alive: '5m',
  };
  const whole = await ollama.chat(req);
  assert.equal(whole.message.role, 'assistant');
  assert.equal(typeof whole.message.content, 'string');
  assert.equal(whole.done, true);
  assert.ok(['stop', 'length'].includes(whole.done_reason));
  let text = '';
  for await (const part of await ollama.chat({ ...req, stream: true })) text += part.message.content;
  assert.equal(text, whole.message.content);
});

test('ollama: chat with format json and with a schema gives JSON that parses and validates', async () => {
  const messages = [{ role: 'user', content: 'A person as JSON.' }];
  const anyJson = await ollama.chat({ model: MODEL, messages, format: 'json', options: { num_predict: 60, seed: 1 } });
  assert.equal(typeof JSON.parse(anyJson.message.content), 'object');
  for (const seed of [1, 2, 3]) {
    const r = await ollama.chat({ model: MODEL, messages, format: personSchema, options: { num_predict: 200, seed } });
    Person.parse(JSON.parse(r.message.content));
    assert.equal(r.done_reason, 'stop');
  }
});

test('ollama: embed and embeddings', async () => {
  const r = await ollama.embed({ model: MODEL, input: ['def f(x):', 'return x'] });
  assert.equal(r.embeddings.length, 2);
  const norm = Math.hypot(...r.embeddings[0]);
  assert.ok(Math.abs(norm - 1) < 1e-4, `L2 norm ${norm}`);
  const old = await ollama.embeddings({ model: MODEL, prompt: 'def f(x):' });
  assert.deepEqual(old.embedding.map((x) => x.toFixed(4)), r.embeddings[0].map((x) => x.toFixed(4)));
});

test('ollama: abort ends the streams it started', async () => {
  const client = new Ollama({ host: base });
  const stream = await client.generate({ model: MODEL, prompt: 'x', stream: true, options: { num_predict: 200 } });
  let parts = 0;
  await assert.rejects((async () => {
    for await (const part of stream) {
      void part;
      if (++parts === 2) client.abort();
    }
  })(), (err) => err.name === 'AbortError');
});

test('ollama: errors are readable messages with their status', async () => {
  await assert.rejects(ollama.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }), (err) => {
    assert.equal(err.name, 'ResponseError');
    assert.equal(err.status_code, 404);
    assert.equal(err.message, 'model "no-such-model" not found');
    return true;
  });
  await assert.rejects(ollama.generate({ model: MODEL, prompt: 'x', options: { mirostat: 2 } }), (err) => {
    assert.equal(err.status_code, 400);
    assert.match(err.message, /mirostat/);
    return true;
  });
  await assert.rejects(ollama.pull({ model: 'llama3' }), (err) => {
    assert.equal(err.status_code, 403);
    assert.match(err.message, /serves the models it was started with/);
    return true;
  });
  await assert.rejects(ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'x' }], tools: [
    { type: 'function', function: { name: 'f', description: 'f', parameters: { type: 'object', properties: {} } } }] }),
  (err) => {
    assert.equal(err.status_code, 400);
    assert.match(err.message, /does not support tools/);
    return true;
  });
});

// --- openai ---

test('openai: completions and chat completions on the model the request names', async () => {
  const c = await openai.completions.create({ model: 'tiny-copy', prompt: 'def f(', max_tokens: 8 });
  assert.equal(c.model, 'tiny-copy');
  assert.equal(c.choices.length, 1);
  const chat = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }],
    max_tokens: 8 });
  assert.equal(chat.model, MODEL);
  assert.equal(chat.choices[0].message.role, 'assistant');
  let text = '';
  const stream = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }],
    max_tokens: 8, stream: true });
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(typeof text, 'string');
});

test('openai: models.list and models.retrieve', async () => {
  const ids = [];
  for await (const m of openai.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['tiny-model', 'tiny-copy']);
  const m = await openai.models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
  assert.equal(m.object, 'model');
  await assert.rejects(openai.models.retrieve('gpt-4o'), (err) => {
    assert.ok(err instanceof OpenAI.NotFoundError, String(err));
    assert.equal(err.code, 'model_not_found');
    return true;
  });
});

test('openai: JSON mode and json_schema output parse and validate', async () => {
  const messages = [{ role: 'user', content: 'A person as JSON.' }];
  const j = await openai.chat.completions.create({ model: MODEL, messages, max_tokens: 80, seed: 4,
    response_format: { type: 'json_object' } });
  assert.equal(typeof JSON.parse(j.choices[0].message.content), 'object');
  for (const seed of [1, 2, 3]) {
    const r = await openai.chat.completions.create({ model: MODEL, messages, max_tokens: 200, seed,
      response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: personSchema } } });
    Person.parse(JSON.parse(r.choices[0].message.content));
    assert.equal(r.choices[0].finish_reason, 'stop');
  }
});

test('openai: embeddings, float and base64', async () => {
  const r = await openai.embeddings.create({ model: MODEL, input: ['a b', 'c d'] });
  assert.equal(r.data.length, 2);
  assert.equal(r.data[0].embedding.length, 64);
  assert.ok(r.usage.prompt_tokens > 0);
  const b = await openai.embeddings.create({ model: MODEL, input: 'a b', encoding_format: 'base64' });
  assert.equal(typeof b.data[0].embedding, 'string');
  const floats = new Float32Array(Uint8Array.from(Buffer.from(b.data[0].embedding, 'base64')).buffer);
  assert.equal(floats.length, 64);
  assert.deepEqual(Array.from(floats).map((x) => x.toFixed(5)), r.data[0].embedding.map((x) => x.toFixed(5)));
});

test('openai: scoring a prompt as lm-evaluation-harness does (max_tokens 0, echo, logprobs)', async () => {
  const r = await openai.completions.create({ model: MODEL, prompt: 'The cat sat on the mat', max_tokens: 0,
    echo: true, logprobs: 1, temperature: 0 });
  const lp = r.choices[0].logprobs;
  assert.equal(r.choices[0].text, 'The cat sat on the mat');
  assert.equal(lp.token_logprobs[0], null);
  assert.ok(lp.token_logprobs.slice(1).every((x) => x <= 0));
  assert.equal(r.usage.completion_tokens, 0);
});

test('openai: what is not supported is a typed error naming the field', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }];
  await assert.rejects(openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], tools }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'tools');
  await assert.rejects(openai.completions.create({ model: MODEL, prompt: 'def f(', suffix: 'return 1' }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'suffix');
  await assert.rejects(openai.chat.completions.create({ model: MODEL, max_tokens: 1, messages: [{ role: 'user', content: 'x' }],
    response_format: { type: 'json_object' } }), (err) => err instanceof OpenAI.BadRequestError && err.param === 'max_tokens');
});

test('openai: responses.create, streamed and not, and responses.stream().finalResponse()', async () => {
  const req = { model: MODEL, instructions: 'Be brief.', input: 'Hello', max_output_tokens: 12, temperature: 1,
    top_p: 1, seed: 6, metadata: { run: 'clients' } };
  const r = await openai.responses.create(req);
  assert.equal(r.object, 'response');
  assert.match(r.id, /^resp_/);
  assert.ok(['completed', 'incomplete'].includes(r.status), r.status);
  assert.equal(typeof r.output_text, 'string'); // the SDK's convenience, from the output_text parts
  assert.equal(r.output[0].type, 'message');
  assert.deepEqual(r.metadata, { run: 'clients' });
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  if (r.status === 'incomplete') assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  let text = '';
  const types = [];
  for await (const event of await openai.responses.create({ ...req, stream: true })) {
    types.push(event.type);
    if (event.type === 'response.output_text.delta') text += event.delta;
  }
  assert.equal(text, r.output_text);
  assert.equal(types[0], 'response.created');
  assert.equal(types.at(-1), r.status === 'completed' ? 'response.completed' : 'response.incomplete');
  const stream = openai.responses.stream(req);
  let streamed = '';
  stream.on('response.output_text.delta', (event) => { streamed += event.delta; });
  const final = await stream.finalResponse();
  assert.equal(final.output_text, r.output_text);
  assert.equal(streamed, r.output_text);
  // message items in input, as a conversation is sent back
  const again = await openai.responses.create({ model: MODEL, max_output_tokens: 4, input: [
    { role: 'user', content: 'Hello' }, ...r.output, { role: 'user', content: [{ type: 'input_text', text: 'More' }] }] });
  assert.equal(again.object, 'response');
});

test('openai: responses with text.format json_schema (and responses.parse with zodTextFormat)', async () => {
  for (const seed of [1, 2]) {
    const r = await openai.responses.create({ model: MODEL, input: 'A person as JSON.', max_output_tokens: 200, seed,
      text: { format: { type: 'json_schema', name: 'person', strict: true, schema: personSchema } } });
    assert.equal(r.status, 'completed');
    Person.parse(JSON.parse(r.output_text));
  }
  const parsed = await openai.responses.parse({ model: MODEL, input: 'A person.', max_output_tokens: 200, seed: 3,
    text: { format: zodTextFormat(Person, 'person') } });
  Person.parse(parsed.output_parsed);
  const j = await openai.responses.create({ model: MODEL, input: 'JSON.', max_output_tokens: 80, seed: 4,
    text: { format: { type: 'json_object' } } });
  assert.equal(typeof JSON.parse(j.output_text), 'object');
});

test('openai: responses refuse what a stateless server without tools cannot do, naming it', async () => {
  for (const [field, value] of [['previous_response_id', 'resp_123'], ['store', true], ['background', true],
    ['tools', [{ type: 'function', name: 'f', parameters: { type: 'object', properties: {} } }]]]) {
    await assert.rejects(openai.responses.create({ model: MODEL, input: 'x', [field]: value }),
      (err) => err instanceof OpenAI.BadRequestError && err.param === field, field);
  }
});

// --- anthropic (@anthropic-ai/sdk) ---

const anthropic = new Anthropic({ baseURL: base, apiKey: 'sasp-test-key', maxRetries: 0 });

test('anthropic: messages.create, streamed and not, and messages.stream().finalMessage()', async () => {
  // seed and top_k 0 are sasp's (llama.cpp's) sampling fields, sent beside Anthropic's own
  const req = { model: MODEL, max_tokens: 12, system: 'Be brief.', temperature: 1, top_p: 1, top_k: 0, seed: 5,
    metadata: { user_id: 'clients' }, messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello' }] }] };
  const msg = await anthropic.messages.create(req);
  assert.equal(msg.type, 'message');
  assert.equal(msg.role, 'assistant');
  assert.match(msg.id, /^msg_/);
  assert.equal(msg.model, MODEL);
  assert.equal(msg.content[0].type, 'text');
  assert.ok(['end_turn', 'max_tokens'].includes(msg.stop_reason), msg.stop_reason);
  assert.ok(msg.usage.input_tokens > 0 && msg.usage.output_tokens <= 12);
  let text = '';
  const types = [];
  for await (const event of await anthropic.messages.create({ ...req, stream: true })) {
    types.push(event.type);
    if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
  }
  assert.equal(text, msg.content[0].text);
  assert.deepEqual([types[0], types[1], types.at(-2), types.at(-1)],
    ['message_start', 'content_block_start', 'message_delta', 'message_stop']);
  const stream = anthropic.messages.stream(req);
  let streamed = '';
  stream.on('text', (delta) => { streamed += delta; });
  const final = await stream.finalMessage();
  assert.equal(final.content[0].text, msg.content[0].text);
  assert.equal(streamed, msg.content[0].text);
  assert.equal(final.stop_reason, msg.stop_reason);
  assert.deepEqual(final.usage.output_tokens, msg.usage.output_tokens);
  const count = await anthropic.messages.countTokens({ model: MODEL, system: req.system, messages: req.messages });
  assert.equal(count.input_tokens, msg.usage.input_tokens);
});

test('anthropic: stop_sequences, prefill, output_config.format', async () => {
  const messages = [{ role: 'user', content: 'Say hi' }, { role: 'assistant', content: 'The cat' }];
  const greedy = await anthropic.messages.create({ model: MODEL, max_tokens: 20, temperature: 0, messages });
  const text = greedy.content[0].text;
  const k = [...text].findIndex((_, i) => i > 0 && text.indexOf(text.slice(i, i + 2)) === i);
  assert.ok(k > 0, text);
  const stop = text.slice(k, k + 2);
  const cut = await anthropic.messages.create({ model: MODEL, max_tokens: 20, temperature: 0, messages,
    stop_sequences: [stop] });
  assert.equal(cut.content[0].text, text.slice(0, k));
  assert.equal(cut.stop_reason, 'stop_sequence');
  assert.equal(cut.stop_sequence, stop);
  const json = await anthropic.messages.create({ model: MODEL, max_tokens: 200, temperature: 1, seed: 2,
    messages: [{ role: 'user', content: 'A person as JSON.' }],
    output_config: { format: { type: 'json_schema', schema: personSchema } } });
  Person.parse(JSON.parse(json.content[0].text));
  assert.equal(json.stop_reason, 'end_turn');
});

test('anthropic: errors are the typed errors of the SDK', async () => {
  await assert.rejects(anthropic.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8,
    messages: [{ role: 'user', content: 'x' }] }), (err) => {
    assert.ok(err instanceof Anthropic.NotFoundError, String(err));
    assert.equal(err.error.error.type, 'not_found_error');
    return true;
  });
  await assert.rejects(anthropic.messages.create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'x' }],
    tools: [{ name: 'get_weather', input_schema: { type: 'object', properties: {} } }] }), (err) => {
    assert.ok(err instanceof Anthropic.BadRequestError, String(err));
    assert.equal(err.error.error.type, 'invalid_request_error');
    assert.match(err.error.error.message, /tools/);
    return true;
  });
  await assert.rejects(anthropic.messages.create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: [
    { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }] }] }),
  (err) => err instanceof Anthropic.BadRequestError && /image/.test(err.message));
  await assert.rejects(anthropic.messages.create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'x' }],
    thinking: { type: 'enabled', budget_tokens: 1024 } }), (err) => err instanceof Anthropic.BadRequestError);
  await assert.rejects(anthropic.messages.countTokens({ model: 'claude-x', messages: [{ role: 'user', content: 'x' }] }),
    (err) => err instanceof Anthropic.NotFoundError);
});

test('anthropic: models.list and models.retrieve in Anthropic\'s shape', async () => {
  const ids = [];
  for await (const m of anthropic.models.list()) {
    assert.equal(m.type, 'model');
    assert.equal(m.display_name, m.id);
    assert.ok(!Number.isNaN(Date.parse(m.created_at)), m.created_at);
    ids.push(m.id);
  }
  assert.deepEqual(ids.sort(), ['tiny-copy', 'tiny-model']);
  const page = await anthropic.models.list();
  assert.equal(page.has_more, false);
  assert.equal(page.first_id, page.data[0].id);
  const one = await anthropic.models.retrieve(MODEL);
  assert.equal(one.id, MODEL);
  assert.equal(one.type, 'model');
  await assert.rejects(anthropic.models.retrieve('claude-x'), (err) => err instanceof Anthropic.NotFoundError);
});

// --- LangChain ---

test('@langchain/ollama: ChatOllama invoke, stream, withStructuredOutput; OllamaEmbeddings', async () => {
  const chat = new ChatOllama({ model: MODEL, baseUrl: base, numPredict: 12, temperature: 0.5, seed: 2 });
  const msg = await chat.invoke([new SystemMessage('Be brief.'), new HumanMessage('Hello')]);
  assert.equal(typeof msg.content, 'string');
  let text = '';
  for await (const chunk of await chat.stream('Hello')) text += chunk.content;
  assert.equal(typeof text, 'string');
  const structured = new ChatOllama({ model: MODEL, baseUrl: base, numPredict: 200, seed: 7 }).withStructuredOutput(Person);
  Person.parse(await structured.invoke('A person, please.'));
  const emb = new OllamaEmbeddings({ model: MODEL, baseUrl: base });
  const v = await emb.embedQuery('def f(x):');
  assert.equal(v.length, 64);
  assert.equal((await emb.embedDocuments(['a', 'b'])).length, 2);
});

test('@langchain/openai: ChatOpenAI invoke and withStructuredOutput; OpenAIEmbeddings', async () => {
  const configuration = { baseURL: `${base}/v1` };
  const chat = new ChatOpenAI({ model: MODEL, apiKey: 'x', configuration, maxTokens: 12, maxRetries: 0 });
  const msg = await chat.invoke('Hello');
  assert.equal(typeof msg.content, 'string');
  const structured = new ChatOpenAI({ model: MODEL, apiKey: 'x', configuration, maxTokens: 200, maxRetries: 0 })
    .withStructuredOutput(Person, { name: 'person' });
  Person.parse(await structured.invoke('A person, please.'));
  const emb = new OpenAIEmbeddings({ model: MODEL, apiKey: 'x', configuration, maxRetries: 0 });
  assert.equal((await emb.embedQuery('def f(x):')).length, 64);
});

// --- Vercel AI SDK ---

const sasp = createOpenAICompatible({ name: 'sasp', baseURL: `${base}/v1`, supportsStructuredOutputs: true });

test('ai: generateText and streamText', async () => {
  const r = await generateText({ model: sasp(MODEL), prompt: 'def add(a, b):', maxOutputTokens: 10, maxRetries: 0 });
  assert.equal(typeof r.text, 'string');
  assert.ok(['stop', 'length'].includes(r.finishReason), r.finishReason);
  const s = streamText({ model: sasp(MODEL), prompt: 'def add(a, b):', maxOutputTokens: 10, maxRetries: 0 });
  let text = '';
  for await (const delta of s.textStream) text += delta;
  assert.equal(typeof text, 'string');
});

test('ai: generateObject gives an object of the schema', async () => {
  for (const seed of [1, 2]) {
    const { object } = await generateObject({ model: sasp(MODEL), schema: Person, prompt: 'A person.',
      maxOutputTokens: 200, seed, maxRetries: 0 });
    Person.parse(object);
  }
  // without structured outputs the SDK asks for json_object and puts the schema in the prompt
  const plain = createOpenAICompatible({ name: 'sasp-plain', baseURL: `${base}/v1` });
  const r = await generateObject({ model: plain(MODEL), output: 'no-schema', prompt: 'Any JSON object.',
    maxOutputTokens: 60, maxRetries: 0 });
  assert.equal(typeof r.object, 'object');
});

test('ai: embed', async () => {
  const { embedding } = await embed({ model: sasp.embeddingModel(MODEL), value: 'def f(x):', maxRetries: 0 });
  assert.equal(embedding.length, 64);
});
