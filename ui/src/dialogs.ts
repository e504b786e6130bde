// Native dialogs, with plain-browser fallbacks so nothing throws outside the app. Open and
// save dialogs are opened by the app's own commands (which register what the writer picks as
// paths the page may use); questions use the dialog plugin directly.

import { invoke } from "@tauri-apps/api/core";
import { ask as tauriAsk } from "@tauri-apps/plugin-dialog";

import { backendAvailable } from "./api";

export const DOCUMENT_FILTERS = [
  { name: "Markdown", extensions: ["md", "markdown"] },
  { name: "Text", extensions: ["txt"] },
];

export async function confirmDialog(message: string, options: { title?: string; okLabel?: string; cancelLabel?: string } = {}): Promise<boolean> {
  if (!backendAvailable()) return window.confirm(message);
  return tauriAsk(message, { title: options.title ?? "Penwright", kind: "warning", okLabel: options.okLabel, cancelLabel: options.cancelLabel });
}

/** One file to open, or null when cancelled / unavailable. */
export async function pickDocument(): Promise<string | null> {
  const [path] = await pickPaths({ directory: false, multiple: false, filters: DOCUMENT_FILTERS, title: "Open document" });
  return path ?? null;
}

/** Where to save (with ".md" added when the name has no document extension). */
export async function pickSavePath(defaultPath: string): Promise<string | null> {
  if (!backendAvailable()) return null;
  return invoke<string | null>("pick_save_path", { title: "Save document", defaultPath, filters: DOCUMENT_FILTERS });
}

/** Files or folders (a document, fine-tune data, a model to import). The dialog is opened by
 * the app, which then lets the page use exactly the paths picked. */
export async function pickPaths(options: { directory: boolean; multiple: boolean; title: string; filters?: { name: string; extensions: string[] }[] }): Promise<string[]> {
  if (!backendAvailable()) return [];
  return invoke<string[]>("pick_paths", { ...options, filters: options.filters ?? [] });
}
