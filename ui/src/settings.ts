// User settings, kept in localStorage. Subscribers hear about every change.

import { TASK_KINDS, type TaskKind } from "./api";
import { ALL_RULES_ON, SUPPRESS_RULES, type SuppressRules } from "./ghost/suppress";

export type Theme = "light" | "dark";
/** How long a suggestion runs: a few words, to the end of the sentence, or up to a paragraph. */
export type SuggestionLength = "words" | "sentence" | "paragraph";
/** Whether the model sees the text after the cursor; "auto": where it has fill-in-the-middle tokens. */
export type TextAfterCursor = "auto" | "on" | "off";
export type EditorFont = "serif" | "sans" | "mono";
/** A server and one of its models. */
export interface RemoteChoiceSetting {
  baseUrl: string;
  model: string;
}
export type RemoteSettings = Partial<Record<TaskKind, RemoteChoiceSetting>>;

export interface Settings {
  /** null: follow the system (prefers-color-scheme). */
  theme: Theme | null;
  autocomplete: boolean;
  /** Pause after typing before a suggestion is requested. */
  debounceMs: number;
  font: EditorFont;
  /** The device models load on. */
  device: "auto" | "gpu" | "cpu";
  /** The remote engine chosen for each task that has one (keys are in the OS keyring, never here). */
  remotes: RemoteSettings;
  suggestionLength: SuggestionLength;
  textAfterCursor: TextAfterCursor;
  /** Where automatic suggestions stay away, rule by rule. */
  suppress: SuppressRules;
  /** Subtle mode: a suggestion shows only while Alt is held. */
  subtle: boolean;
  /** The app's own OpenAI-compatible server: whether it runs, on which port, for whom. */
  serve: ServeSettings;
}

export interface ServeSettings {
  on: boolean;
  /** 0: any free port. */
  port: number;
  /** Other computers may connect (it listens on every interface, still with its key). */
  network: boolean;
}

export const DEFAULTS: Settings = {
  theme: null,
  autocomplete: true,
  debounceMs: 200,
  font: "serif",
  device: "auto",
  remotes: {},
  suggestionLength: "sentence",
  textAfterCursor: "auto",
  suppress: ALL_RULES_ON,
  subtle: false,
  serve: { on: false, port: 8080, network: false },
};

const KEY = "penwright.settings";

type Listener = (settings: Settings, changed: Partial<Settings>) => void;

function storage(): Storage | null {
  try {
    return typeof localStorage === "undefined" ? null : localStorage;
  } catch {
    return null;
  }
}

/** Parses stored settings, keeping only valid values. */
export function parseSettings(raw: string | null): Settings {
  const s: Settings = { ...DEFAULTS };
  if (!raw) return s;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    return s;
  }
  if (!o || typeof o !== "object") return s;
  if (o.theme === "light" || o.theme === "dark") s.theme = o.theme;
  if (typeof o.autocomplete === "boolean") s.autocomplete = o.autocomplete;
  if (typeof o.debounceMs === "number" && o.debounceMs >= 0 && o.debounceMs <= 5000) s.debounceMs = o.debounceMs;
  if (o.font === "serif" || o.font === "sans" || o.font === "mono") s.font = o.font;
  if (o.device === "auto" || o.device === "gpu" || o.device === "cpu") s.device = o.device;
  s.remotes = parseRemotes(o.remotes, o.remote);
  if (o.suggestionLength === "words" || o.suggestionLength === "sentence" || o.suggestionLength === "paragraph") s.suggestionLength = o.suggestionLength;
  if (o.textAfterCursor === "auto" || o.textAfterCursor === "on" || o.textAfterCursor === "off") s.textAfterCursor = o.textAfterCursor;
  const sup = o.suppress as Record<string, unknown> | null | undefined;
  if (sup && typeof sup === "object") {
    const rules = { ...ALL_RULES_ON };
    for (const { rule } of SUPPRESS_RULES) if (typeof sup[rule] === "boolean") rules[rule] = sup[rule] as boolean;
    s.suppress = rules;
  }
  if (typeof o.subtle === "boolean") s.subtle = o.subtle;
  const sv = o.serve as Record<string, unknown> | null | undefined;
  if (sv && typeof sv === "object") {
    const port = typeof sv.port === "number" && Number.isInteger(sv.port) && sv.port >= 0 && sv.port <= 65535 ? sv.port : DEFAULTS.serve.port;
    s.serve = { on: sv.on === true, port, network: sv.network === true };
  }
  return s;
}

function remoteChoice(v: unknown): RemoteChoiceSetting | null {
  const r = v as Record<string, unknown> | null | undefined;
  return r && typeof r === "object" && typeof r.baseUrl === "string" && typeof r.model === "string" ? { baseUrl: r.baseUrl, model: r.model } : null;
}

/** The remote engines by task; `legacy`: the one remote of earlier versions, for every task. */
function parseRemotes(v: unknown, legacy: unknown): RemoteSettings {
  const out: RemoteSettings = {};
  if (v && typeof v === "object") {
    for (const task of TASK_KINDS) {
      const c = remoteChoice((v as Record<string, unknown>)[task]);
      if (c) out[task] = c;
    }
    return out;
  }
  const old = remoteChoice(legacy);
  if (old) for (const task of TASK_KINDS) out[task] = { ...old };
  return out;
}

/** The remembered remote engines, one entry per server and model, with the tasks each answers. */
export function remoteGroups(remotes: RemoteSettings): (RemoteChoiceSetting & { tasks: TaskKind[] })[] {
  const groups: (RemoteChoiceSetting & { tasks: TaskKind[] })[] = [];
  for (const task of TASK_KINDS) {
    const r = remotes[task];
    if (!r) continue;
    const g = groups.find((g) => g.baseUrl === r.baseUrl && g.model === r.model);
    if (g) g.tasks.push(task);
    else groups.push({ ...r, tasks: [task] });
  }
  return groups;
}

/** Whether suggestions see the text after the cursor, for a model with or without FIM tokens. */
export function useTextAfterCursor(setting: TextAfterCursor, modelHasFim: boolean): boolean {
  return setting === "on" || (setting === "auto" && modelHasFim);
}

let current: Settings = parseSettings(storage()?.getItem(KEY) ?? null);
const listeners = new Set<Listener>();

export function settings(): Readonly<Settings> {
  return current;
}

export function updateSettings(changed: Partial<Settings>): void {
  current = { ...current, ...changed };
  try {
    storage()?.setItem(KEY, JSON.stringify(current));
  } catch {
    // a full or disabled storage only loses persistence
  }
  for (const l of listeners) l(current, changed);
}

export function onSettings(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
