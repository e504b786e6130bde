// User settings, kept in localStorage. Subscribers hear about every change.

export type Theme = "light" | "dark";
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
}

export const DEFAULTS: Settings = {
  theme: null,
  autocomplete: true,
  debounceMs: 200,
  font: "serif",
  device: "auto",
  remote: null,
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
  return s;
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
