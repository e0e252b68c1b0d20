// Structured output and tool calls in headless Chromium, through the npm package: 200 generated
// JSON schemas answered on the CPU and on WebGPU (SwiftShader), every answer validated by ajv;
// the official openai client getting tool calls from the local model through the JS API
// (`engineResponse` as its fetch) and through the service worker, streamed and whole, and its
// runTools loop completing a two-step conversation with the real SmolLM2-135M; the same request
// with a provider first gets the provider's calls unchanged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import { configureRouter, launch, openWithRouter, startProvider, startServer } from './harness.mjs';

const schemas = JSON.parse(readFileSync('fixtures/schemas.json', 'utf8'));
const hermes = readFileSync('fixtures/hermes_tools.jinja', 'utf8');
const ajv = new Ajv({ strict: false });
const SMOLLM2 = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';
const FIXTURE = '/models/tiny-qwen3-q8_0.gguf';

let browser;
let app;
let provider;

before(async () => {
  provider = await startProvider('p1');
  app = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await app?.stop();
  provider?.child.kill();
});

/** Answers under each schema from `model` on `backend`, in a WorkerEngine. */
async function answerAll(model, backend, list, prompt) {
  const page = await browser.newPage();
  await page.goto(`${app.origin}/__log`);
  const r = await page.evaluate(async ({ model, backend, list, prompt }) => {
    const { WorkerEngine } = await import('/pkg/index.js');
    const engine = await WorkerEngine.load(model, { backend, contextLength: 2048 });
    const out = [];
    const t0 = performance.now();
    for (const [i, schema] of list.entries()) {
      const a = await engine.chat.completions.create({
        messages: [{ role: 'user', content: prompt }], temperature: 0.8, seed: i, max_tokens: 600,
        response_format: { type: 'json_schema', json_schema: { name: `s${i}`, schema, strict: true } },
      });
      out.push({ content: a.choices[0].message.content, finish: a.choices[0].finish_reason, tokens: a.usage.completion_tokens });
    }
    const info = engine.info;
    engine.unload();
    return { backend: info.backend, out, seconds: (performance.now() - t0) / 1000 };
  }, { model, backend, list, prompt });
  await page.close();
  return r;
}

function allValidate(r, list, label) {
  assert.equal(r.out.length, list.length);
  r.out.forEach(({ content, finish }, i) => {
    assert.equal(finish, 'stop', `${label} schema ${i}: ${content}`);
    const value = JSON.parse(content);
    const validate = ajv.compile(list[i]);
    assert.ok(validate(value), `${label} schema ${i}: ${JSON.stringify(list[i])}\n${content}\n${ajv.errorsText(validate.errors)}`);
  });
  const tokens = r.out.reduce((n, a) => n + a.tokens, 0);
  console.log(`${label}: ${r.out.length} answers validate, ${tokens} tokens, ${r.seconds.toFixed(1)} s`);
}

for (const backend of ['cpu', 'gpu']) {
  test(`200 JSON schemas answered by the fixture on the ${backend} all validate`, async () => {
    const r = await answerAll(FIXTURE, backend, schemas, 'Describe a thing.');
    assert.equal(r.backend, backend);
    allValidate(r, schemas, `fixture, ${backend}`);
  });
}

test('200 JSON schemas answered by SmolLM2-135M on the CPU all validate', async () => {
  const cpu = await answerAll(SMOLLM2, 'cpu', schemas, 'Give me an example record as JSON.');
  allValidate(cpu, schemas, 'SmolLM2, cpu');
});

const weather = {
  name: 'get_weather', description: 'Get the current weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};
// One example round, then the question: SmolLM2 learns the call from it.
const call = (id, city) => ({ role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name: 'get_weather', arguments: JSON.stringify({ city }) } }] });
const conversation = [
  { role: 'user', content: 'What is the weather in Rome?' },
  call('c0', 'Rome'),
  { role: 'tool', tool_call_id: 'c0', content: '{"temperature": 25, "sky": "clear"}' },
  { role: 'assistant', content: 'It is 25 degrees and clear in Rome.' },
  { role: 'user', content: 'What is the weather in Paris?' },
];

/** In the page: the openai client (given `how` to reach the model) asked for calls streamed and
 *  whole, then its runTools loop. */
async function openaiClientRound(page, how) {
  return page.evaluate(async ({ how, conversation, weather }) => {
    const { default: OpenAI } = await import('/node_modules/openai/index.mjs');
    const { engineResponse } = await import('/pkg/index.js');
    const options = { apiKey: 'unused', dangerouslyAllowBrowser: true, maxRetries: 0 };
    const client = how === 'js-api'
      ? new OpenAI({ ...options, baseURL: 'http://local.invalid/v1', fetch: (url, init) => engineResponse(window.engine, JSON.parse(init.body), init.signal) })
      : new OpenAI({ ...options, baseURL: `${location.origin}/v1` });
    const tools = [{ type: 'function', function: weather }];
    const body = { model: 'local', messages: conversation, tools, tool_choice: 'required', temperature: 0 };
    const whole = await client.chat.completions.create(body);
    const stream = await client.chat.completions.create({ ...body, stream: true });
    const streamed = [];
    let finish = null;
    for await (const chunk of stream) {
      for (const d of chunk.choices[0]?.delta?.tool_calls ?? []) {
        if (d.id) streamed[d.index] = { id: d.id, name: d.function.name, arguments: '' };
        streamed[d.index].arguments += d.function.arguments ?? '';
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    const seen = [];
    const runner = client.chat.completions.runTools({
      model: 'local', messages: conversation, temperature: 0,
      tools: [{ type: 'function', function: { ...weather, parse: JSON.parse, function: async (args) => { seen.push(args); return { temperature: 18, sky: 'sunny' }; } } }],
    });
    const final = await runner.finalContent();
    return {
      whole: { finish: whole.choices[0].finish_reason, content: whole.choices[0].message.content, calls: whole.choices[0].message.tool_calls },
      streamed, finish, seen, final, roles: runner.messages.map((m) => m.role),
    };
  }, { how, conversation, weather });
}

function checkRound(r, label) {
  assert.equal(r.whole.finish, 'tool_calls', label);
  assert.equal(r.whole.content, null, label);
  assert.equal(r.whole.calls[0].function.name, 'get_weather', label);
  assert.deepEqual(JSON.parse(r.whole.calls[0].function.arguments), { city: 'Paris' }, label);
  assert.equal(r.finish, 'tool_calls', label);
  assert.deepEqual(r.streamed.map((c) => [c.name, JSON.parse(c.arguments)]), [['get_weather', { city: 'Paris' }]], label);
  assert.match(r.streamed[0].id, /^call_/);
  assert.deepEqual(r.seen, [{ city: 'Paris' }], `${label}: runTools called the tool once`);
  assert.deepEqual(r.roles.slice(conversation.length), ['assistant', 'tool', 'assistant'], `${label}: call, result, answer`);
  assert.match(r.final, /18/, `${label}: the answer uses the tool's result: ${r.final}`);
}

test('the openai client gets SmolLM2\'s tool calls through the JS API and the service worker; runTools completes two steps; a provider\'s calls pass unchanged', async () => {
  const page = await openWithRouter(await (await browser.newContext()).newPage(), app.origin);
  await page.evaluate(async ({ model, hermes }) => {
    const { WorkerEngine } = await import('/pkg/index.js');
    window.engine = await WorkerEngine.load(model, { backend: 'cpu', contextLength: 2048, chatTemplate: hermes });
  }, { model: SMOLLM2, hermes });
  checkRound(await openaiClientRound(page, 'js-api'), 'JS API');

  await configureRouter(page, { mode: 'local-only', providers: [] });
  await page.evaluate(async () => {
    const { offerLocalEngine } = await import('/pkg/index.js');
    await offerLocalEngine(window.engine, { capable: true });
  });
  checkRound(await openaiClientRound(page, 'service-worker'), 'service worker');

  // The same request with a provider first: the provider's own call, unchanged.
  await configureRouter(page, { mode: 'remote-first', providers: [{ name: 'p1', baseUrl: `${provider.origin}/v1`, maxRetries: 0 }] });
  const remote = await page.evaluate(async ({ conversation, weather }) => {
    const { default: OpenAI } = await import('/node_modules/openai/index.mjs');
    const client = new OpenAI({ apiKey: 'unused', dangerouslyAllowBrowser: true, maxRetries: 0, baseURL: `${location.origin}/v1` });
    const body = { model: 'deepseek-chat', messages: conversation, tools: [{ type: 'function', function: weather }], tool_choice: 'required' };
    const whole = await client.chat.completions.create(body);
    let args = '';
    let id = null;
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
      for (const d of chunk.choices[0]?.delta?.tool_calls ?? []) {
        id = d.id ?? id;
        args += d.function.arguments ?? '';
      }
    }
    return { whole: whole.choices[0].message.tool_calls[0], streamed: { id, args } };
  }, { conversation, weather });
  const log = await provider.log();
  const asked = log.at(-1).body;
  assert.deepEqual(asked.tools, [{ type: 'function', function: weather }], 'the tools reached the provider unchanged');
  assert.equal(asked.tool_choice, 'required');
  assert.deepEqual(remote.whole, { id: `call_p1_${log.length - 1}`, type: 'function', function: { name: 'get_weather', arguments: '{"from":"p1"}' } });
  assert.deepEqual(remote.streamed, { id: `call_p1_${log.length}`, args: '{"from":"p1"}' });
  await page.context().close();
});
