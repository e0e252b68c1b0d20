// The package's types cannot drift from its code. Against the built package (pkg/): a TypeScript
// file that uses every export of index.d.ts and service-worker.d.ts, and every error code, compiles
// under --strict; the values index.js and service-worker.js export at run time are exactly the
// ones their .d.ts declare, and every method a declared class has exists on the class; the
// ErrorCode union is exactly the list the wasm module's errorCodes() gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { root } from './harness.mjs';

const pkg = join(root, 'pkg');
const OPTIONS = {
  strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler, lib: ['lib.es2022.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts', 'lib.dom.asynciterable.d.ts'],
  skipLibCheck: false, types: [],
};

async function errorCodes() {
  const wasm = await import(join(pkg, 'candlelight.js'));
  wasm.initSync({ module: readFileSync(join(pkg, 'candlelight_bg.wasm')) });
  return wasm.errorCodes();
}

/** What a .d.ts declares: its value exports, and each exported class's methods. */
function declared(file) {
  const program = ts.createProgram([file], OPTIONS);
  const checker = program.getTypeChecker();
  const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(file)));
  const values = exports.filter((s) => s.flags & ts.SymbolFlags.Value).map((s) => s.name).sort();
  const methods = {};
  for (const s of exports.filter((e) => e.flags & ts.SymbolFlags.Class)) {
    const type = checker.getTypeOfSymbol(s);
    const instance = checker.getDeclaredTypeOfSymbol(s);
    const names = (t) => t.getProperties().filter((p) => p.flags & ts.SymbolFlags.Method).map((p) => p.name);
    methods[s.name] = { statics: names(type).filter((n) => n !== 'prototype'), instance: names(instance) };
  }
  return { values, methods };
}

test('index.js and service-worker.js export exactly what their .d.ts declare', async () => {
  for (const [js, dts] of [['index.js', 'index.d.ts'], ['service-worker.js', 'service-worker.d.ts']]) {
    const module = await import(join(pkg, js));
    const { values, methods } = declared(join(pkg, dts));
    assert.deepEqual(Object.keys(module).sort(), values, `${js} against ${dts}`);
    for (const [name, { statics, instance }] of Object.entries(methods)) {
      for (const m of statics) assert.equal(typeof module[name][m], 'function', `${name}.${m}`);
      for (const m of instance) assert.equal(typeof module[name].prototype[m], 'function', `${name}.prototype.${m}`);
    }
  }
});

test('a strict TypeScript app using every export and every error code compiles', async () => {
  const codes = await errorCodes();
  assert.ok(codes.includes('router') && codes.includes('quota_exceeded'), codes.join());
  const dir = mkdtempSync(join(tmpdir(), 'candlelight-types-'));
  try {
    const app = join(dir, 'app.ts');
    writeFileSync(app, `
import {
  CandlelightError, Conversations, Engine, WorkerEngine, assessDevice, chatThroughRouter, configureRouter,
  engineResponse, hostEngineInServiceWorker, initWasm, offerLocalEngine, probeDevice,
  type ChatCompletion, type ChatCompletionChunk, type ErrorCode, type ModelInfo, type UpdateCheck, type RouterConfig,
  type Tool, type ToolCall, type ToolCallDelta, type ResponseFormat, type FinishReason,
} from ${JSON.stringify(join(pkg, 'index.js'))};
import { decidesIsolation, installRouter, isolationFetch, routerFetch, withCrossOriginIsolation } from ${JSON.stringify(join(pkg, 'service-worker.js'))};

// Every code the wasm module reports, and no other: a missing or an extra key fails to compile.
const every: Record<ErrorCode, true> = { ${codes.map((c) => `${c}: true`).join(', ')} };

export async function app(): Promise<void> {
  await initWasm();
  const signal = new AbortController().signal;
  const engine = await Engine.load('model.gguf', { backend: 'auto', contextLength: 512, chunkSize: 65536, retries: 2,
    modelId: 'm', sha256: 'ab', hubMirrors: ['https://hf-mirror.com'], signal, onProgress: ({ phase, loaded, total }) => console.log(phase, loaded / total) });
  const info: ModelInfo = engine.info;
  const whole: ChatCompletion = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
  const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], stream: true, signal });
  for await (const chunk of stream) { const c: ChatCompletionChunk = chunk; console.log(c.choices[0]?.delta.content); }
  const tools: Tool[] = [{ type: 'function', function: { name: 'f', description: 'd', parameters: { type: 'object' }, strict: true } }];
  const called = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], tools, tool_choice: 'required', parallel_tool_calls: false });
  const calls: ToolCall[] | undefined = called.choices[0].message.tool_calls;
  const round = await engine.chat.completions.create({ messages: [
    { role: 'assistant', content: null, tool_calls: calls },
    { role: 'tool', tool_call_id: calls?.[0].id, content: '{}' }], tools, tool_choice: { type: 'function', function: { name: 'f' } }, stream: true });
  for await (const chunk of round) { const d: ToolCallDelta[] | undefined = chunk.choices[0]?.delta.tool_calls; console.log(d?.[0].function.arguments); }
  const format: ResponseFormat = { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'object' }, strict: true } };
  const json: string | null = (await engine.chat.completions.create({ messages: [], response_format: format })).choices[0].message.content;
  const reason: FinishReason = called.choices[0].finish_reason;
  await Engine.load('model.gguf', { chatTemplate: '{{ messages }}' });
  console.log(json, reason);
  const n: number = engine.countTokens({ messages: [] });
  const bytes: number = engine.memoryBytes();
  const lost: boolean = engine.loseDevice();
  const answered: Response = await engine.respond({ messages: [], stream: true }, signal);
  engine.unload();
  const files = await Engine.cached();
  const gone: boolean = await Engine.delete(files[0].url);
  const check: UpdateCheck = await Engine.checkForUpdate(files[0].url, { hubMirrors: [], signal });
  const newer: boolean = check.updateAvailable && check.current.sha256 !== check.stored?.sha256;
  const worker = await WorkerEngine.load(new Blob([]), { backend: 'cpu', worker: new Worker('worker.js'), threads: 2, relaxedSimd: false, maxMemoryBytes: 1 << 30 });
  const build: [number, boolean] = [worker.info.threads, worker.info.relaxedSimd];
  const count: number = await worker.countTokens({ messages: [] });
  const mem: number = await worker.memoryBytes();
  const lostToo: boolean = await worker.loseDevice();
  const viaWorker: Response = await worker.respond({ messages: [] });
  await WorkerEngine.cached();
  await WorkerEngine.delete('model.gguf');
  const viaWorkerCheck: UpdateCheck = await WorkerEngine.checkForUpdate(new URL('https://hf.co/o/n/resolve/main/m.gguf'));
  const profile = await probeDevice({ fresh: true });
  const verdict = await assessDevice(profile, { fileBytes: 1, bytesPerToken: 1, stored: true }, 8);
  const { id, revision }: { id: string; revision: number } = await Conversations.save({ messages: [{ role: 'user', content: 'hi' }] });
  await Conversations.save({ id, revision, messages: [] });
  await Conversations.list();
  const kept: number | undefined = (await Conversations.load(id))?.revision;
  await Conversations.delete(id, kept);
  const config: RouterConfig = { mode: 'remote-first', cacheBytes: 0, localDeadlines: { stallMs: 1500 },
    providers: [{ name: 'deepseek', baseUrl: 'https://api.deepseek.com/v1', keys: [{ key: 'sk' }], models: { local: 'deepseek-chat' } }] };
  await configureRouter(config);
  await offerLocalEngine(worker, { capable: true, minTokensPerS: 8 });
  const hosted = await hostEngineInServiceWorker('model.gguf');
  if (!hosted.ok) console.log(hosted.reason);
  const provided: Response = await engineResponse(worker, { messages: [] }, signal);
  const routed = await chatThroughRouter({ model: 'local', messages: [] }, { signal });
  console.log(routed.route, build, info, whole, n, bytes, lost, answered, gone, count, mem, lostToo, viaWorker, verdict, provided, every);
  try {
    worker.unload();
  } catch (e) {
    if (e instanceof CandlelightError) { const code: ErrorCode = e.code; console.log(code, e.status, e.param); }
  }
  installRouter();
  routerFetch({ request: new Request('https://x/v1/models'), respondWith: () => {} });
  const page = new Request('https://x/');
  const isolatedPage: Response = decidesIsolation(page) ? withCrossOriginIsolation(new Response(''), { coep: 'credentialless' }) : new Response('');
  const handled: boolean = isolationFetch({ request: page, respondWith: () => {} });
  console.log(isolatedPage, handled);
}
`);
    const program = ts.createProgram([app], OPTIONS);
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    assert.deepEqual(diagnostics, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
