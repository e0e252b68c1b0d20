// Types for candlelight's JavaScript API.

/** Stable codes of every failure. */
export type ErrorCode =
  | 'quota_exceeded' | 'network' | 'integrity' | 'unsupported_model' | 'invalid_model' | 'aborted'
  | 'context_overflow' | 'invalid_request' | 'unsupported_feature' | 'storage' | 'not_loaded'
  | 'backend_unavailable'
  | 'device_lost' | 'out_of_memory' | 'busy' | 'router' | 'forbidden' | 'decryption_failed'
  | 'conflict' | 'internal';

export class CandlelightError extends Error {
  name: 'CandlelightError';
  code: ErrorCode;
  /** HTTP status, for `network` errors from a server's answer. */
  status?: number;
  /** Bytes needed and available, for `quota_exceeded`; positions, for `context_overflow`. */
  needed?: number;
  available?: number;
  max?: number;
  /** The request field at fault, for `invalid_request` and `unsupported_feature` (a valid
   *  request the local model cannot answer: tools without a tool template, `n` above 1). */
  param?: string;
  /** The damaged chunk, for `integrity` errors found while reading. */
  chunk?: number;
  constructor(code: ErrorCode, message: string, extra?: Record<string, unknown>);
}

export interface LoadProgress {
  phase: 'download' | 'verify' | 'load' | 'compile';
  /** Bytes done in this phase; never decreases within a phase. */
  loaded: number;
  total: number;
}

export interface LoadOptions {
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
  /** 'auto' (default): WebGPU when the device has it and the model fits, else the CPU; and if
   *  the GPU is lost mid-answer, the answer finishes on the CPU. 'gpu' fails instead. */
  backend?: 'auto' | 'gpu' | 'cpu';
  /** Most positions the KV cache may hold (default 4096, never above the model's own). */
  contextLength?: number;
  /** The file's expected SHA-256 (hex). Otherwise, for a Hugging Face `resolve` URL (or a
   *  mirror's, see `hubMirrors`), the hub's API says it. A plain ETag is never taken for it. */
  sha256?: string;
  /** Origins read as Hugging Face's hub (`https://huggingface.co` and `https://hf.co` always
   *  are), e.g. `['https://hf-mirror.com']`. */
  hubMirrors?: string[];
  /** Bytes per stored chunk for a new download (default 16 MiB). */
  chunkSize?: number;
  /** Tries after a network failure that made no progress (default 4). */
  retries?: number;
  /** The model name reported in responses (default: the file name). */
  modelId?: string;
  /** A Jinja chat template in place of the file's own (Hugging Face's dialect): for a file whose
   *  template is wrong, or lacks tools. Tool calls need a template that takes `tools` and writes
   *  Hermes `<tool_call>` calls (Qwen2.5 and Qwen3 templates do). */
  chatTemplate?: string;
  /** The key of a sealed model file (`examples/encrypt`): an AES-GCM `CryptoKey`, which may be
   *  non-extractable, or its 32 bytes. A wrong key fails with `decryption_failed`. */
  decryptionKey?: CryptoKey | Uint8Array | ArrayBuffer;
  /** Where the .wasm lives, for bundlers that move it. */
  wasmUrl?: string | URL;
  /** CPU threads for the engine in a `WorkerEngine` of a cross-origin isolated page (COOP and
   *  COEP headers): default `navigator.hardwareConcurrency`, at most 8; 1, or any page that is
   *  not isolated, loads the single-thread build. Fixed by the first load in that worker. */
  threads?: number;
  /** false loads a plain SIMD128 build even where the browser has relaxed SIMD (the default
   *  there: its i8 dot product; the same tokens). Fixed by the first load in that worker. */
  relaxedSimd?: boolean;
  /** The threaded build's memory ceiling in bytes (default half of `navigator.deviceMemory`,
   *  between 1 and 4 GiB): the largest model plus KV cache it can hold. */
  maxMemoryBytes?: number;
}

/** Milliseconds per step in each part of the CPU forward pass, over `steps` steps. */
export interface StepProfile {
  matmulMs: number;
  attentionMs: number;
  normsMs: number;
  otherMs: number;
  headMs: number;
  steps: number;
}

/** Per step of the GPU forward pass, over `steps` steps: compute dispatches and passes
 *  recorded, CPU milliseconds to encode and submit them, and each kernel class's dispatches
 *  (`gpuMs` is 0 where the device was not opened with timestamp queries, as in browsers). */
export interface GpuStepProfile {
  dispatches: number;
  passes: number;
  encodeMs: number;
  submitMs: number;
  classes: Record<string, { dispatches: number; gpuMs: number }>;
  steps: number;
}

export interface ModelInfo {
  id: string;
  source: string;
  size: number;
  architecture: string;
  contextLength: number;
  backend: 'cpu' | 'gpu';
  /** The GPU adapter, when on the GPU. */
  adapter: string | null;
  /** Whether the kernels dequantize in f16 (`shader-f16`). */
  shaderF16: boolean;
  /** Why `auto` runs on the CPU: no WebGPU, a model over the GPU's limits, or a lost device. */
  fallbackReason: string | null;
  sha256: string | null;
  /** Threads the CPU backend computes on (1 in the single-thread build). */
  threads: number;
  /** Whether the loaded build dots 4- and 5-bit weights with relaxed SIMD. */
  relaxedSimd: boolean;
  /** The whole file was hashed and matched `sha256`; false when no SHA-256 was known (each
   *  stored chunk is still checked against its own hash). */
  verified: boolean;
}

export interface FileVersion {
  sha256: string | null;
  etag: string | null;
  size: number | null;
  /** The hub's last commit that touched the file (the current version, from a hub). */
  commit: string | null;
}

export interface UpdateCheck {
  url: string;
  /** null when nothing of the file is stored. */
  stored: FileVersion | null;
  current: FileVersion;
  updateAvailable: boolean;
}

export interface UpdateCheckOptions {
  hubMirrors?: string[];
  signal?: AbortSignal;
}

export interface CachedModel {
  url: string;
  size: number;
  chunkSize: number;
  etag: string | null;
  sha256: string | null;
  complete: boolean;
  verified: boolean;
  storedAtMs: number;
}

export type MessageContent = string | null | Array<{ type: 'text'; text: string }>;

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: MessageContent;
  reasoning_content?: string;
  name?: string;
  /** The calls an assistant turn made. */
  tool_calls?: ToolCall[];
  /** On a `tool` message: the call it answers. */
  tool_call_id?: string;
}

/** A function the model may call; `parameters` is the JSON schema of its arguments. */
export interface Tool {
  type: 'function';
  function: {
    name: string;
    description?: string;
    parameters?: JsonSchema;
    /** Enforce the schema strictly: keywords the grammar compiler does not know are refused
     *  (otherwise ignored). The arguments always follow the keywords it knows. */
    strict?: boolean;
  };
}

/** A JSON schema (draft 2020-12 keywords: type, properties, required, items, enum, const,
 *  anyOf, minimum/maximum, minLength/maxLength, pattern, minItems/maxItems, $ref...). */
export type JsonSchema = { [keyword: string]: unknown } | boolean;

export type ToolChoice =
  | 'none' | 'auto' | 'required'
  | { type: 'function'; function: { name: string } };

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name: string; description?: string; schema?: JsonSchema; strict?: boolean } };

/** A call the model made; `arguments` is JSON text. */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A streamed piece of a call: the first carries `id`, `type` and the name, the next ones more
 *  of the arguments. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function: { name?: string; arguments?: string };
}

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  model?: string;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string | string[];
  seed?: number;
  frequency_penalty?: number;
  presence_penalty?: number;
  n?: 1;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  /** llama.cpp's flag: false runs the whole prompt instead of reusing the cached prefix. */
  cache_prompt?: boolean;
  /** Functions the model may call. A model whose chat template takes no tools refuses them
   *  (`unsupported_feature`, param `tools`); the router then asks a remote provider. */
  tools?: Tool[];
  /** `none` does not offer the tools; `required` and a named function force a call. */
  tool_choice?: ToolChoice;
  /** Whether one answer may make several calls (default true). */
  parallel_tool_calls?: boolean;
  /** JSON output: the answer always parses (and follows the schema), by constrained decoding. */
  response_format?: ResponseFormat;
  signal?: AbortSignal;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_cache_hit_tokens: number;
  prompt_cache_miss_tokens: number;
  completion_tokens_details: { reasoning_tokens: number };
}

export interface Timings {
  time_to_first_token_ms: number;
  prefill_tokens: number;
  prefill_ms: number;
  prefill_tokens_per_s: number;
  decode_tokens: number;
  decode_ms: number;
  decode_tokens_per_s: number;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'abort';

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    /** `content` is null when the answer is only tool calls. */
    message: { role: 'assistant'; content: string | null; reasoning_content?: string; tool_calls?: ToolCall[] };
    finish_reason: FinishReason;
    logprobs: null;
  }>;
  usage: Usage;
  timings: Timings;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: 'assistant'; content?: string; reasoning_content?: string; tool_calls?: ToolCallDelta[] };
    finish_reason: FinishReason | null;
    logprobs: null;
  }>;
  /** Only on the last chunk, with `stream_options.include_usage` (then `choices` is empty). */
  usage: Usage | null;
  /** On the chunk that carries `finish_reason`. */
  timings?: Timings;
}

export interface Completions {
  create(body: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(body: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  create(body: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
}

/** A model running in this thread. */
export class Engine {
  static load(source: string | URL | Blob, options?: LoadOptions): Promise<Engine>;
  static cached(): Promise<CachedModel[]>;
  static delete(url: string): Promise<boolean>;
  /** Whether the server has another version of a cached file, downloading nothing. */
  static checkForUpdate(url: string | URL, options?: UpdateCheckOptions): Promise<UpdateCheck>;
  readonly info: ModelInfo;
  readonly chat: { completions: Completions };
  /** Tokens the prompt of a request body takes (template applied), without running the model. */
  countTokens(body: ChatCompletionRequest): number;
  /** Bytes of wasm memory this thread holds (its peak: wasm memory never shrinks). */
  memoryBytes(): number;
  /** Where a step's time goes: `true` starts timing (from zero), `false` stops, no argument
   *  reads it. */
  profile(on?: boolean): StepProfile | GpuStepProfile | null;
  /** Destroys the GPU device as a driver reset would, to test an app's fallback; false on the CPU. */
  loseDevice(): boolean;
  /** The answer to a request as the Response a provider gives: SSE when streamed, JSON
   *  otherwise, an OpenAI-style error body (and its status) on failure. */
  respond(body: ChatCompletionRequest, signal?: AbortSignal): Promise<Response>;
  unload(): void;
}

/** The same API, with the model in a dedicated worker. */
export class WorkerEngine {
  static load(source: string | URL | Blob, options?: LoadOptions & { worker?: Worker }): Promise<WorkerEngine>;
  static cached(): Promise<CachedModel[]>;
  static delete(url: string): Promise<boolean>;
  static checkForUpdate(url: string | URL, options?: { hubMirrors?: string[] }): Promise<UpdateCheck>;
  info: ModelInfo;
  readonly chat: { completions: Completions };
  countTokens(body: ChatCompletionRequest): Promise<number>;
  memoryBytes(): Promise<number>;
  profile(on?: boolean): Promise<StepProfile | GpuStepProfile | null>;
  /** Destroys the worker's GPU device as a driver reset would; false on the CPU. */
  loseDevice(): Promise<boolean>;
  /** As `Engine.respond`, computed in the worker and streamed from there. */
  respond(body: ChatCompletionRequest, signal?: AbortSignal): Promise<Response>;
  unload(): void;
}

export function initWasm(wasm?: string | URL | Response | WebAssembly.Module): Promise<unknown>;

export interface DeviceProfile {
  webgpu: { adapter: string; maxStorageBindingBytes: number; maxBufferBytes: number; shaderF16: boolean; bytesPerS: number | null } | null;
  deviceMemoryGb: number | null;
  hardwareConcurrency: number;
  storageQuotaBytes: number | null;
  storageUsageBytes: number | null;
  cpuBytesPerS: number | null;
}

export type Capability =
  | { verdict: 'capable'; backend: 'gpu' | 'cpu'; tokensPerS: number }
  | { verdict: 'tooWeak'; reason: string; tokensPerS: number | null };

/** Measures this device (cached per adapter unless `fresh`). */
export function probeDevice(options?: { fresh?: boolean }): Promise<DeviceProfile>;
/** Capable or too weak for a model at a minimum decode speed. */
export function assessDevice(profile: DeviceProfile, model: { fileBytes: number; bytesPerToken: number; stored: boolean }, minTokensPerS: number): Promise<Capability>;
export interface Deadlines {
  connectMs?: number;
  /** From sending the request to the first byte of the answer. */
  firstByteMs?: number;
  /** The longest silence between two chunks of a stream. */
  stallMs?: number;
}

export interface ProviderConfig {
  name: string;
  /** Up to `/v1` (or the provider's equivalent); `/chat/completions` is appended. */
  baseUrl: string;
  /** The request's model name → this provider's. */
  models?: Record<string, string>;
  /** Used in order; the next takes over when one is refused or out of quota. */
  keys?: Array<{ key: string; createdMs?: number }>;
  /** Keep the keys the router already holds for the provider of this name (a settings page
   *  cannot read them back, and saves without them). */
  keepKeys?: boolean;
  /** Tries after the first on busy answers, before failing over (default 2). */
  maxRetries?: number;
  rate?: { requestsPerS?: number; burst?: number; maxConcurrent?: number };
  deadlines?: Deadlines;
}

/** The router's one configuration (the same struct in Rust). */
export interface RouterConfig {
  mode?: 'auto' | 'local-first' | 'remote-first' | 'local-only' | 'remote-only';
  /** Remote providers, in priority order. */
  providers?: ProviderConfig[];
  /** Estimated local decode speed below which the device counts as too weak (default 8). */
  minLocalTokensPerS?: number;
  retry?: { baseMs?: number; capMs?: number; maxWaitMs?: number };
  breaker?: { failures?: number; openMs?: number };
  keyMaxAgeDays?: number;
  /** Deadlines of the local route: a page closed mid-answer counts as stalled. */
  localDeadlines?: Deadlines;
  /** Byte cap of the answer cache (answers to deterministic requests, served when every route
   *  fails); 0 caches none. Default 500 000 000. */
  cacheBytes?: number;
  /** Other origins whose pages may call the router's `/v1/` (as `https://app.example`); only
   *  the router's own origin may by default. Page loads and form posts are refused always. */
  allowedOrigins?: string[];
}

/** Gives the service worker's router its configuration; rejects with `invalid_request` when
 *  the router refuses it (the old one stays). */
export function configureRouter(config: RouterConfig): Promise<{ providers: Array<{ name: string; keys: number }> }>;

/** Offers an engine to the service worker's router (www/sw.js) as the local route, in place of
 *  any this page offered before. Without `capable`, probes the device and judges it against
 *  `minTokensPerS` (default 8). */
export function offerLocalEngine(engine: Engine | WorkerEngine, options?: { capable?: boolean; minTokensPerS?: number }): Promise<Capability | { verdict: string; reason: string }>;

/** Withdraws this page's engine from the router's local route. */
export function unofferLocalEngine(): Promise<void>;

export interface Conversation {
  id: string;
  /** The first user message, cut to 60 characters, unless the app gives one. */
  title: string;
  messages: ChatMessage[];
  /** Milliseconds since the epoch. */
  created: number;
  updated: number;
  /** 1 after the first save, one more after each. */
  revision: number;
  model?: string;
}
/** Conversations kept in IndexedDB, so a reload resumes them. */
export const Conversations: {
  /** Saves (creates or replaces); resolves to the id (made up when missing) and the new
   *  revision. A conversation already stored is saved from the revision it was loaded or last
   *  saved at; when another tab saved since, this fails with `conflict` (its `revision` is the
   *  stored one) and writes nothing. The check and the write are one IndexedDB transaction. */
  save(conversation: { id?: string; title?: string; messages: ChatMessage[]; model?: string; revision?: number }): Promise<{ id: string; revision: number }>;
  /** Most recently updated first. */
  list(): Promise<Array<{ id: string; title: string; updated: number; revision: number; messages: number }>>;
  load(id: string): Promise<Conversation | null>;
  /** False when there was none. Given a revision, deletes only that one (`conflict` otherwise). */
  delete(id: string, revision?: number): Promise<boolean>;
};
/** Asks the service worker to run a model itself on WebGPU, so the local route needs no open
 *  page; reloaded whenever the worker restarts. `ok: false` where the worker has no WebGPU. */
export function hostEngineInServiceWorker(url: string, options?: { capable?: boolean }): Promise<{ ok: true; id: string; backend: 'gpu' } | { ok: false; reason: string }>;
/** An engine's answer to a chat-completions request body, as the Response a provider gives. */
export function engineResponse(engine: Engine | WorkerEngine, body: ChatCompletionRequest, signal?: AbortSignal): Promise<Response>;
/** A streamed chat completion from the service worker's router; `route` names what answered
 *  (`local`, a provider's name, `cache`). Error answers throw a CandlelightError. */
export function chatThroughRouter(request: Omit<ChatCompletionRequest, 'stream'> & { model?: string }, options?: { signal?: AbortSignal; url?: string }): Promise<AsyncIterable<ChatCompletionChunk> & { route: string | null }>;
