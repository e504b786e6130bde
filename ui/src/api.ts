// Every call to the Rust backend goes through this module: one typed function per Tauri
// command, and the types of every request, reply and streamed event. The rest of the UI never
// calls `invoke` itself.
//
// Errors always reject with an `ApiError` ({kind, message}). In a plain browser (no Tauri) each
// call rejects with kind "unavailable" instead of throwing, so the page still works as an
// editor and the status bar can say "backend unavailable".

import { Channel, invoke } from "@tauri-apps/api/core";

// ---------------------------------------------------------------------------------------------
// Types

export interface ApiError {
  kind: string;
  message: string;
}

export interface ModelInfo {
  name: string;
  architecture: string;
  quantization: string;
  path: string;
  parameters: number;
  contextLength: number;
  /** The vocabulary has fill-in-the-middle tokens (known once loaded). */
  fillInTheMiddle?: boolean;
}

export interface DeviceReport {
  kind: "gpu" | "cpu";
  name: string;
  reason: string;
}

export interface AppStatus {
  model: ModelInfo | null;
  device: DeviceReport | null;
  adapter: string | null;
  /** The OpenAI-compatible server each task goes to, for the tasks that have one. */
  remotes?: RemoteChoice;
}

/** The writing tasks an engine is chosen for, each on its own. */
export type TaskKind = "autocomplete" | "summarize" | "translate" | "rewrite";
export const TASK_KINDS: readonly TaskKind[] = ["autocomplete", "summarize", "translate", "rewrite"];
/** The remote engine of each task that has one; a task not named uses the local model. */
export type RemoteChoice = Partial<Record<TaskKind, RemoteStatus>>;

export interface RemoteStatus {
  baseUrl: string;
  model: string;
  context: number | null;
  /** Where its key is kept: the OS keyring, this session's memory, or no key. */
  key: "keyring" | "memory" | "none";
}

export interface RemoteModel {
  id: string;
  context: number | null;
}

export type DeviceChoice = "auto" | "gpu" | "cpu";

export interface Progress {
  stage: string;
  done: number;
  total: number;
}

export type LoadEvent = { event: "progress"; data: Progress };

/** `load_model` answers the model and, from newer backends, the device it landed on. */
export type LoadedModel = ModelInfo & { device?: DeviceReport; seconds?: number };

/** What a document is read and saved in: UTF-8, or Windows-1252 when the writer chose it. */
export type TextEncoding = "utf-8" | "windows-1252";

export interface OpenedDocument {
  path: string;
  text: string;
  encoding: TextEncoding;
}

export interface SavedDocument {
  path: string;
  bytes: number;
}

export interface Recovery {
  text: string;
  path: string | null;
  /** When it was written (the backend sends seconds since the epoch). */
  savedAt: number;
}

export interface SuggestionOptions {
  length: "words" | "sentence" | "paragraph";
  textAfterCursor: boolean;
}

export interface CompletionRequest {
  prefix: string;
  suffix: string;
  requestId: number;
  options?: SuggestionOptions;
}

export interface AlternativesRequest extends CompletionRequest {
  /** The suggestions already on offer (the new ones differ from them). */
  shown: readonly string[];
  count: number;
}

export interface AlternativesReply {
  requestId: number;
  alternatives: string[];
  ms: number;
}

export interface CompletionReply {
  requestId: number;
  completion: string;
  ttftMs: number;
  totalMs: number;
  reusedTokens: number;
  prefilledTokens: number;
}

export type SummaryLength = "short" | "medium" | "long" | number;

export type TaskEvent =
  | { event: "progress"; data: Progress }
  | { event: "token"; data: { text: string } }
  | { event: "block"; data: { index: number; total: number; text: string } };

export interface SummaryReply {
  summary: string;
  chunks: number;
  inputTokens: number;
  seconds: number;
}

export interface TranslationReply {
  text: string;
  blocks: number;
  seconds: number;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface DatasetReport {
  documents: number;
  tokens: number;
  trainDocuments: number;
  heldoutDocuments: number;
  trainTokens: number;
  heldoutTokens: number;
  /** Held-out tokens the perplexity is measured on (at most 8192, taken evenly). */
  evaluatedTokens: number;
  skipped: SkippedFile[];
  /** Set when one document was divided by paragraph into parts. */
  note?: string;
  /** The first training sequences exactly as the model sees them. */
  samples: string[];
  /** The held-out documents, by name. */
  heldoutNames: string[];
}

export type Preset = "quick" | "thorough";

/** The settings a preset fills in and the advanced fields change. */
export interface PresetSettings {
  rank: number;
  alpha: number;
  steps: number;
  learningRate: number;
  seqLen: number;
  batch: number;
  evalEvery: number;
  /** Dropout on the LoRA branches' input while training. */
  dropout: number;
}

/** A run to start: the preset, and whichever of its settings the writer changed. */
export interface FinetuneConfig extends Partial<PresetSettings> {
  paths: string[];
  preset: Preset;
  /** Train where the models run (the Models pane's choice). */
  device?: DeviceChoice;
  /** Recompute activations in the backward pass: less memory, slower. */
  gradientCheckpointing?: boolean;
  /** Precision of the frozen base model; refused where the device computes it wrong. */
  precision?: Precision;
}

export type Precision = "f32" | "f16" | "bf16";

export interface StepData {
  step: number;
  totalSteps: number;
  loss: number;
  learningRate: number;
  tokensPerS: number;
  etaS: number;
}

export type FinetuneEvent =
  | { event: "step"; data: StepData }
  | { event: "eval"; data: { step: number; heldoutPpl: number } }
  | { event: "done"; data: FinetuneSummary }
  | { event: "error"; data: { message: string } }
  | { event: "device"; data: { name: string; reason: string; precision: string } };

/** A finished job (the CLI's JSON summary, field names as it prints them). */
export interface FinetuneSummary {
  base_ppl: number;
  tuned_ppl: number;
  adapter: string;
  /** The base and the tuned model continuing the same held-out passage. */
  comparison?: { prompt: string; base: string; tuned: string } | null;
}

export interface JobStatus {
  jobId: string;
  state: "running" | "stopped" | "done" | "failed";
  step: number;
  totalSteps: number;
  history: { step: number; loss: number }[];
  evals: { step: number; heldoutPpl: number }[];
  /** The job's final line once it is done (the CLI's JSON summary). */
  summary?: FinetuneSummary | null;
  /** Where the job trains (its device event). */
  device?: { name: string; precision: string } | null;
}

export interface Adapter {
  name: string;
  path: string;
  basePpl: number | null;
  tunedPpl: number | null;
  createdAt: number;
  active: boolean;
}

export interface ModelEntry {
  name: string;
  displayName: string;
  architecture: string;
  quantization: string;
  sizeBytes: number;
  /** Estimated memory to run it. */
  memoryBytes: number;
  path: string;
  installed: boolean;
  isDefault: boolean;
  active?: boolean;
  origin: "catalog" | "imported" | "hub";
  repo: string | null;
  languages: string[];
  description: string;
  /** Why an installed model cannot be used (moved, damaged, unknown architecture). */
  problem: string | null;
  /** Whether it runs on this machine, with the numbers (null: the estimate is unknown). */
  fit: FitReport | null;
  /** Why the model's own chat template is not used (an import found it failing or running
   * past its limits; ChatML stands in). */
  templateNote?: string;
}

/** "yes": runs with room to spare; "tight": takes most of the free memory; "no": too large. */
export interface FitReport {
  fits: "yes" | "tight" | "no";
  memoryEstimateBytes: number;
  totalBytes: number;
  availableBytes: number;
}

/** What a Hugging Face repository offers: .gguf files, and/or a safetensors model folder. */
export interface RepoOffer {
  repo: string;
  gguf: { path: string; sizeBytes: number | null; fit: FitReport | null }[];
  safetensorsBytes: number | null;
  safetensorsFit: FitReport | null;
}

/** A catalog model by name, or a Hub repository (one .gguf file, or its safetensors folder). */
export type DownloadTarget = { name: string } | { repo: string; file: string | null };

export type DownloadEvent = { event: "progress"; data: { file: string; done: number; total: number } };

export interface Devices {
  gpu: { name: string; backend: string; software?: boolean } | null;
  cpuThreads: number;
  reason: string;
}

// ---------------------------------------------------------------------------------------------
// Plumbing

/** Whether the page runs inside the Tauri webview (with a backend to talk to). */
export function backendAvailable(): boolean {
  return typeof window !== "undefined" && "__TAURI_INTERNALS__" in window;
}

/** Turns whatever a rejected call produced into an `ApiError`. */
export function toApiError(e: unknown): ApiError {
  if (e && typeof e === "object" && "message" in e) {
    const o = e as { kind?: unknown; message?: unknown };
    const kind = typeof o.kind === "string" ? o.kind : "error";
    return { kind, message: String(o.message) };
  }
  if (typeof e === "string") return { kind: "backend", message: e };
  return { kind: "error", message: String(e) };
}

export function isApiError(e: unknown): e is ApiError {
  return !!e && typeof e === "object" && typeof (e as ApiError).kind === "string" && typeof (e as ApiError).message === "string";
}

/** A rejection that only means "the user stopped it". */
export function isCancelled(e: unknown): boolean {
  return isApiError(e) && e.kind === "cancelled";
}

const UNAVAILABLE: ApiError = { kind: "unavailable", message: "The backend is unavailable: this page is not running inside the Penwright app." };

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  if (!backendAvailable()) throw { ...UNAVAILABLE };
  try {
    return await invoke<T>(command, args);
  } catch (e) {
    throw toApiError(e);
  }
}

/** A Channel that hands each message to `handler`; only built when the backend is there. */
function channel<E>(handler: (event: E) => void): Channel<E> {
  if (!backendAvailable()) throw { ...UNAVAILABLE };
  return new Channel<E>(handler);
}

// ---------------------------------------------------------------------------------------------
// Documents

export const openDocument = (path: string, encoding: TextEncoding | null = null) => call<OpenedDocument>("open_document", { path, encoding });
export const saveDocument = (path: string, text: string, encoding: TextEncoding | null = null) =>
  call<SavedDocument>("save_document", { path, text, encoding });
export const writeRecovery = (text: string, path: string | null) => call<void>("write_recovery", { text, path });
export const takeRecovery = () => call<Recovery | null>("take_recovery");
export const clearRecovery = () => call<void>("clear_recovery");
export const recentFiles = () => call<string[]>("recent_files");

// ---------------------------------------------------------------------------------------------
// Status and models

export const appStatus = () => call<AppStatus>("app_status");

export async function loadModel(spec: string | null, device: DeviceChoice, onEvent: (e: LoadEvent) => void): Promise<LoadedModel> {
  return call<LoadedModel>("load_model", { spec, device, onEvent: channel(onEvent) });
}

export const listModels = () => call<ModelEntry[]>("list_models");
export const catalog = () => call<ModelEntry[]>("catalog");
export const importModel = (path: string) => call<ModelEntry>("import_model", { path });
export const removeModel = (path: string) => call<void>("remove_model", { path });
export const hubRepo = (repo: string) => call<RepoOffer>("hub_repo", { repo });

export async function downloadModel(target: DownloadTarget, onEvent: (e: DownloadEvent) => void): Promise<ModelEntry> {
  const args = "name" in target ? { name: target.name } : { repo: target.repo, file: target.file };
  return call<ModelEntry>("download_model", { ...args, onEvent: channel(onEvent) });
}

export const cancelDownload = () => call<void>("cancel_download");
export const remoteModels = (baseUrl: string, apiKey: string | null) => call<RemoteModel[]>("remote_models", { baseUrl, apiKey });
/** Uses `model` on the server for `tasks` (every task when omitted). */
export const useRemote = (baseUrl: string, model: string, apiKey: string | null, tasks?: readonly TaskKind[]) =>
  call<RemoteStatus>("use_remote", { baseUrl, model, apiKey, tasks: tasks ?? null });
/** The local model again for `tasks` (every task when omitted). */
export const useLocal = (tasks?: readonly TaskKind[]) => call<void>("use_local", { tasks: tasks ?? null });
export const devices = () => call<Devices>("devices");

/** The app's own OpenAI-compatible server, while it runs. */
export interface ServeStatus {
  /** This computer's address of the API (with /v1); other computers use its network address. */
  baseUrl: string;
  model: string;
  apiKey: string;
  /** Whether other computers may connect. */
  network: boolean;
  keyKept: "keyring" | "memory";
}
export const serveStatus = () => call<ServeStatus | null>("serve_status");
/** Serves the loaded model on `port` (0: any free port); on loopback unless `network`. */
export const serveStart = (port: number, network: boolean) => call<ServeStatus>("serve_start", { port, network });
export const serveStop = () => call<void>("serve_stop");

// ---------------------------------------------------------------------------------------------
// Autocomplete

export const complete = (request: CompletionRequest) =>
  call<CompletionReply | null>("complete", { prefix: request.prefix, suffix: request.suffix, requestId: request.requestId, options: request.options ?? null });
export const completeAlternatives = (request: AlternativesRequest) =>
  call<AlternativesReply | null>("complete_alternatives", {
    prefix: request.prefix,
    suffix: request.suffix,
    requestId: request.requestId,
    options: request.options ?? null,
    shown: request.shown,
    count: request.count,
  });
export const cancelComplete = () => call<void>("cancel_complete");

// ---------------------------------------------------------------------------------------------
// Summaries, translation and rewriting

export async function summarize(
  request: { text: string; length: SummaryLength; bullets: boolean },
  onEvent: (e: TaskEvent) => void,
): Promise<SummaryReply> {
  return call<SummaryReply>("summarize", { ...request, onEvent: channel(onEvent) });
}

export async function translate(
  request: { text: string; to: string; from: string | null },
  onEvent: (e: TaskEvent) => void,
): Promise<TranslationReply> {
  return call<TranslationReply>("translate", { ...request, onEvent: channel(onEvent) });
}

export type RewritePreset = "shorter" | "longer" | "formal" | "casual" | "simpler" | "grammar" | "active";

export interface RewriteReply {
  text: string;
  blocks: number;
  /** Blocks left as they were: the model's answer was no usable rewrite (it changed the
   * structure, ran far longer than the text, or talked about the task). */
  kept: number;
  seconds: number;
}

/** Rewrites Markdown with a preset or a free instruction; `attempt` > 0 asks for another take. */
export async function rewrite(
  request: { text: string; preset: RewritePreset | null; instruction: string | null; attempt: number },
  onEvent: (e: TaskEvent) => void,
): Promise<RewriteReply> {
  return call<RewriteReply>("rewrite", { ...request, onEvent: channel(onEvent) });
}

export const cancelTask = () => call<void>("cancel_task");

// ---------------------------------------------------------------------------------------------
// Fine-tuning

export const datasetReport = (paths: string[]) => call<DatasetReport>("dataset_report", { paths });
/** The settings of each preset: the engine owns them. */
export const finetunePresets = () => call<Record<Preset, PresetSettings>>("finetune_presets");
export const finetuneStart = (config: FinetuneConfig) => call<{ jobId: string }>("finetune_start", { config });

/** Re-attaches to the running (or last) job: the job outlives the window. */
export async function finetuneAttach(onEvent: (e: FinetuneEvent) => void): Promise<JobStatus | null> {
  return call<JobStatus | null>("finetune_attach", { onEvent: channel(onEvent) });
}

export const finetuneStop = () => call<void>("finetune_stop");
export const finetuneResume = () => call<void>("finetune_resume");
export const listAdapters = () => call<Adapter[]>("list_adapters");
/** Adds a PEFT adapter folder trained elsewhere (e.g. on a cluster) to the list. */
export const importAdapter = (path: string) => call<Adapter>("import_adapter", { path });
export const setAdapter = (path: string | null) => call<void>("set_adapter", { path });

export interface MeasureProgress {
  model: "base" | "tuned";
  done: number;
  total: number;
}
export interface AdapterPerplexity {
  basePpl: number;
  tunedPpl: number;
  tokens: number;
}
/** Held-out perplexity base → tuned of an adapter, on held-out text (an export's heldout.jsonl or documents); `cancelTask` stops it. */
export const measureAdapter = (path: string, paths: string[], onProgress: (p: MeasureProgress) => void) =>
  call<AdapterPerplexity>("measure_adapter", { path, paths, onEvent: channel(onProgress) });
