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
    set({ status, phase: status.model || remoteTasks(status).length > 0 ? { kind: "ready" } : snapshot.phase.kind === "loading" ? snapshot.phase : { kind: "none", error: null } });
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
  // a progress event can be delivered after the command's answer: once answered, the load
  // is over and a late one must not put the status back to "Loading model… 100%"
  let answered = false;
  try {
    const info = await api.loadModel(spec, device, (e) => {
      if (e.event === "progress" && !answered) set({ phase: { kind: "loading", progress: e.data, spec } });
    });
    answered = true;
    const { device: report, seconds: _seconds, ...model } = info;
    set({ status: { ...snapshot.status, model, device: report ?? snapshot.status.device }, phase: { kind: "ready" } });
    // the backend knows best (device, adapter)
    await refreshStatus();
    return info;
  } catch (e) {
    answered = true;
    const err = api.toApiError(e);
    set({ phase: err.kind === "unavailable" ? { kind: "unavailable" } : snapshot.status.model ? { kind: "ready" } : { kind: "none", error: err.message } });
    throw err;
  } finally {
    done();
  }
}

/** The remote engine `task` goes to, or null for the local model. */
export function remoteFor(status: api.AppStatus, task: api.TaskKind): api.RemoteStatus | null {
  return status.remotes?.[task] ?? null;
}

/** The tasks that go to a remote engine, in the app's order. */
export function remoteTasks(status: api.AppStatus): api.TaskKind[] {
  return api.TASK_KINDS.filter((t) => !!remoteFor(status, t));
}

/** The one remote engine every task goes to, when they all go to the same one. */
export function remoteForAll(status: api.AppStatus): api.RemoteStatus | null {
  const first = remoteFor(status, api.TASK_KINDS[0]);
  const same = (r: api.RemoteStatus | null) => !!r && !!first && r.baseUrl === first.baseUrl && r.model === first.model;
  return api.TASK_KINDS.every((t) => same(remoteFor(status, t))) ? first : null;
}

/** Uses a remote engine (an OpenAI-compatible server) for `tasks` (every task when omitted). */
export async function useRemote(baseUrl: string, model: string, apiKey: string | null, tasks: readonly api.TaskKind[] = api.TASK_KINDS): Promise<api.RemoteStatus> {
  const done = startBusy("Connecting to the server");
  try {
    const remote = await api.useRemote(baseUrl, model, apiKey, tasks);
    const remotes = { ...snapshot.status.remotes };
    for (const t of tasks) remotes[t] = remote;
    set({ status: { ...snapshot.status, remotes }, phase: { kind: "ready" } });
    return remote;
  } finally {
    done();
  }
}

/** Goes back to the local model for `tasks` (every task when omitted). */
export async function useLocal(tasks: readonly api.TaskKind[] = api.TASK_KINDS): Promise<void> {
  await api.useLocal(tasks);
  const remotes = { ...snapshot.status.remotes };
  for (const t of tasks) delete remotes[t];
  set({ status: { ...snapshot.status, remotes } });
  await refreshStatus();
}

/** Notes the active adapter after the Fine-tune pane changed it. */
export function setAdapterName(adapter: string | null): void {
  set({ status: { ...snapshot.status, adapter } });
}
