// Small pure helpers for what the UI prints: sizes, durations, counts, dates, file names.

import type { FitReport } from "./api";

const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]/gu;

/** Words, counting each Chinese or Japanese character as one (the usual convention). */
export function wordCount(text: string): number {
  const cjk = text.match(CJK)?.length ?? 0;
  const rest = cjk ? text.replace(CJK, " ") : text;
  return cjk + (rest.match(/[\p{L}\p{N}][\p{L}\p{N}'’_-]*/gu)?.length ?? 0);
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes <= 0) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = bytes;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** "42 s", "3 min 05 s", "1 h 02 min". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return "—";
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${Math.round(n / 1e3)}k`;
  return n.toLocaleString("en-US");
}

/** Relative change from `before` to `after`, e.g. -0.183 → "−18.3%". */
export function relativeChange(before: number, after: number): string {
  if (!Number.isFinite(before) || !Number.isFinite(after) || before === 0) return "—";
  const r = ((after - before) / before) * 100;
  const sign = r < 0 ? "−" : r > 0 ? "+" : "±";
  return `${sign}${Math.abs(r).toFixed(1)}%`;
}

/** Accepts seconds or milliseconds since the epoch. */
export function toDate(epoch: number): Date {
  return new Date(epoch < 1e12 ? epoch * 1000 : epoch);
}

/** "14:05" today, "Mon 14:05" this week, else "12 Mar 2025, 14:05". */
export function formatTime(epoch: number, now: Date = new Date()): string {
  const d = toDate(epoch);
  const time = d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === now.toDateString()) return `today ${time}`;
  const days = (now.getTime() - d.getTime()) / 86_400_000;
  if (days >= 0 && days < 6) return `${d.toLocaleDateString("en-GB", { weekday: "short" })} ${time}`;
  return `${d.toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "numeric" })}, ${time}`;
}

/** The last component of a path (either separator). */
export function baseName(path: string): string {
  const parts = path.split(/[\\/]/).filter(Boolean);
  return parts.length ? parts[parts.length - 1] : path;
}

/** The folder of a path, shortened with ~ for the home directory when recognisable. */
export function dirName(path: string): string {
  const i = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  const dir = i > 0 ? path.slice(0, i) : "";
  return dir.replace(/^\/home\/[^/]+/, "~").replace(/^\/Users\/[^/]+/, "~");
}

/** The window title: "name.md • — Penwright" when unsaved, "name.md — Penwright" when not. */
export function windowTitle(path: string | null, dirty: boolean): string {
  const name = path ? baseName(path) : "Untitled";
  return `${name}${dirty ? " •" : ""} — Penwright`;
}

export function formatParameters(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return "";
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  return `${Math.round(n / 1e6)}M`;
}

/** Rough memory needed to run a model of `sizeBytes` on disk: weights plus ~20% for caches. */
/** The engine's estimate of the memory a model needs to run: "≈ 790 MB to run". */
export function memoryEstimate(memoryBytes: number): string {
  if (!memoryBytes) return "";
  return `≈ ${formatBytes(memoryBytes)} to run`;
}

/** The "will it run here?" label of a model: its words, a style, and the numbers behind it. */
export function fitLabel(fit: FitReport | null | undefined): { text: string; kind: "yes" | "tight" | "no"; title: string } | null {
  if (!fit) return null;
  const numbers = `≈ ${formatBytes(fit.memoryEstimateBytes)} to run; this machine has ${formatBytes(fit.totalBytes)} of memory, ${formatBytes(fit.availableBytes)} free now`;
  switch (fit.fits) {
    case "yes":
      return { text: "Fits this machine", kind: "yes", title: numbers };
    case "tight":
      return { text: "Tight: close other apps first", kind: "tight", title: numbers };
    case "no":
      return { text: "Too large for this machine", kind: "no", title: numbers };
  }
}
