// The model the app runs: what is loaded, on which device, with which adapter, and loading a
// (different) model with progress. The status bar, the Models and Translate panes listen.

import * as api from "./api";
import { startBusy } from "./busy";
import { Emitter } from "./events";
import { settings } from "./settings";

export type ModelPhase =
  | { kind: "unknown" }
  | { kind: "unavailable" }
  | { kind: "loading"; progress: api.Progress | null; spec: string | null }
  | { kind: "ready" }
  | { kind: "none"; error: string | null };

export interface ModelSnapshot {
  status: api.AppStatus;
  phase: ModelPhase;
}

let snapshot: ModelSnapshot = {
  status: { model: null, device: null, adapter: null },
  phase: { kind: "unknown" },
};

export const modelChanged = new Emitter<ModelSnapshot>();

export function currentModel(): ModelSnapshot {
  return snapshot;
}

function set(next: Partial<ModelSnapshot>): void {
  snapshot = { ...snapshot, ...next };
  modelChanged.emit(snapshot);
}

/** Whether `model` is the small English-only default (SmolLM2-135M). */
export function isEnglishOnlyDefault(model: api.ModelInfo | null): boolean {
  return !!model && /smollm2?[-_ ]?135m/i.test(`${model.name} ${model.path}`);
}

/** Reads the backend's status; null when there is no backend. */
export async function refreshStatus(): Promise<api.AppStatus | null> {
  try {
    const status = await api.appStatus();
    set({ status, phase: status.model || status.remote ? { kind: "ready" } : snapshot.phase.kind === "loading" ? snapshot.phase : { kind: "none", error: null } });
    return status;
  } catch (e) {
    const err = api.toApiError(e);
    set({ phase: err.kind === "unavailable" ? { kind: "unavailable" } : { kind: "none", error: err.message } });
    return null;
  }
}

/** Loads `spec` (a path or catalog name; null = the default model) on `device`. */
export async function loadModel(spec: string | null, device: api.DeviceChoice = settings().device): Promise<api.LoadedModel> {
  const done = startBusy("Loading model");
  set({ phase: { kind: "loading", progress: null, spec } });
  try {
    const info = await api.loadModel(spec, device, (e) => {
      if (e.event === "progress") set({ phase: { kind: "loading", progress: e.data, spec } });
    });
    const { device: report, seconds: _seconds, ...model } = info;
    set({ status: { ...snapshot.status, model, device: report ?? snapshot.status.device }, phase: { kind: "ready" } });
    // the backend knows best (device, adapter)
    await refreshStatus();
    return info;
  } catch (e) {
    const err = api.toApiError(e);
    set({ phase: err.kind === "unavailable" ? { kind: "unavailable" } : snapshot.status.model ? { kind: "ready" } : { kind: "none", error: err.message } });
    throw err;
  } finally {
    done();
  }
}

/** Uses a remote engine (an OpenAI-compatible server) for every task. */
export async function useRemote(baseUrl: string, model: string, apiKey: string | null): Promise<api.RemoteStatus> {
  const done = startBusy("Connecting to the server");
  try {
    const remote = await api.useRemote(baseUrl, model, apiKey);
    set({ status: { ...snapshot.status, remote }, phase: { kind: "ready" } });
    return remote;
  } finally {
    done();
  }
}

/** Goes back to the local model. */
export async function useLocal(): Promise<void> {
  await api.useLocal();
  set({ status: { ...snapshot.status, remote: null } });
  await refreshStatus();
}

/** Notes the active adapter after the Fine-tune pane changed it. */
export function setAdapterName(adapter: string | null): void {
  set({ status: { ...snapshot.status, adapter } });
}
