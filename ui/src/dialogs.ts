// Native dialogs (the dialog plugin), with plain-browser fallbacks so nothing throws outside
// the app.

import { ask as tauriAsk, open as tauriOpen, save as tauriSave } from "@tauri-apps/plugin-dialog";

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
  if (!backendAvailable()) return null;
  const r = await tauriOpen({ multiple: false, directory: false, filters: DOCUMENT_FILTERS, title: "Open document" });
  return typeof r === "string" ? r : null;
}

export async function pickSavePath(defaultPath: string): Promise<string | null> {
  if (!backendAvailable()) return null;
  return tauriSave({ defaultPath, filters: DOCUMENT_FILTERS, title: "Save document" });
}

/** Several files or folders (fine-tune data, model import). */
export async function pickPaths(options: { directory: boolean; multiple: boolean; title: string; filters?: { name: string; extensions: string[] }[] }): Promise<string[]> {
  if (!backendAvailable()) return [];
  const r = await tauriOpen({ ...options });
  if (r === null) return [];
  return Array.isArray(r) ? r : [r];
}
