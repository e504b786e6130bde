// User settings, kept in localStorage. Subscribers hear about every change.

import { ALL_RULES_ON, SUPPRESS_RULES, type SuppressRules } from "./ghost/suppress";

export type Theme = "light" | "dark";
/** How long a suggestion runs: a few words, to the end of the sentence, or up to a paragraph. */
export type SuggestionLength = "words" | "sentence" | "paragraph";
/** Whether the model sees the text after the cursor; "auto": where it has fill-in-the-middle tokens. */
export type TextAfterCursor = "auto" | "on" | "off";
export type EditorFont = "serif" | "sans" | "mono";

export interface Settings {
  /** null: follow the system (prefers-color-scheme). */
  theme: Theme | null;
  autocomplete: boolean;
  /** Pause after typing before a suggestion is requested. */
  debounceMs: number;
  font: EditorFont;
  /** The device models load on. */
  device: "auto" | "gpu" | "cpu";
  /** The remote engine last used (its key is in the OS keyring, never here). */
  remote: { baseUrl: string; model: string } | null;
  suggestionLength: SuggestionLength;
  textAfterCursor: TextAfterCursor;
  /** Where automatic suggestions stay away, rule by rule. */
  suppress: SuppressRules;
  /** Subtle mode: a suggestion shows only while Alt is held. */
  subtle: boolean;
}

export const DEFAULTS: Settings = {
  theme: null,
  autocomplete: true,
  debounceMs: 200,
  font: "serif",
  device: "auto",
  remote: null,
  suggestionLength: "sentence",
  textAfterCursor: "auto",
  suppress: ALL_RULES_ON,
  subtle: false,
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
  const r = o.remote as Record<string, unknown> | null | undefined;
  if (r && typeof r === "object" && typeof r.baseUrl === "string" && typeof r.model === "string") {
    s.remote = { baseUrl: r.baseUrl, model: r.model };
  }
  if (o.suggestionLength === "words" || o.suggestionLength === "sentence" || o.suggestionLength === "paragraph") s.suggestionLength = o.suggestionLength;
  if (o.textAfterCursor === "auto" || o.textAfterCursor === "on" || o.textAfterCursor === "off") s.textAfterCursor = o.textAfterCursor;
  const sup = o.suppress as Record<string, unknown> | null | undefined;
  if (sup && typeof sup === "object") {
    const rules = { ...ALL_RULES_ON };
    for (const { rule } of SUPPRESS_RULES) if (typeof sup[rule] === "boolean") rules[rule] = sup[rule] as boolean;
    s.suppress = rules;
  }
  if (typeof o.subtle === "boolean") s.subtle = o.subtle;
  return s;
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
