// Keyboard shortcuts: one table that both the key handler and the help overlay read.
//
// Keys are written CodeMirror-style: "Mod-Shift-s" (Mod = Cmd on macOS, Ctrl elsewhere),
// "Ctrl-Space", "F1", "Escape".

export type ShortcutGroup = "File" | "Panes" | "Writing" | "View";

export interface Shortcut {
  id: string;
  /** One or more key combinations. */
  keys: string[];
  label: string;
  group: ShortcutGroup;
}

/** Every shortcut the app has, in the order the help overlay lists them. */
export const SHORTCUTS: readonly Shortcut[] = [
  { id: "new", keys: ["Mod-n"], label: "New document", group: "File" },
  { id: "open", keys: ["Mod-o"], label: "Open…", group: "File" },
  { id: "save", keys: ["Mod-s"], label: "Save", group: "File" },
  { id: "saveAs", keys: ["Mod-Shift-s"], label: "Save as…", group: "File" },
  { id: "summarize", keys: ["Mod-Shift-m"], label: "Summarize pane", group: "Panes" },
  { id: "translate", keys: ["Mod-Shift-t"], label: "Translate pane", group: "Panes" },
  { id: "rewrite", keys: ["Mod-Shift-e"], label: "Rewrite the selection", group: "Panes" },
  { id: "finetune", keys: ["Mod-Shift-f"], label: "Fine-tune pane", group: "Panes" },
  { id: "models", keys: ["Mod-Shift-l"], label: "Models pane", group: "Panes" },
  { id: "suggest", keys: ["Ctrl-Space"], label: "Suggest now", group: "Writing" },
  { id: "toggleAutocomplete", keys: ["Ctrl-Shift-Space"], label: "Autocomplete on / off", group: "Writing" },
  { id: "help", keys: ["F1", "Mod-/"], label: "Keyboard shortcuts", group: "View" },
  { id: "escape", keys: ["Escape"], label: "Close overlays and menus", group: "View" },
];

/** Shortcuts handled inside the editor (listed in the help, bound by the ghost extension). */
export function editorShortcuts(mac: boolean): Shortcut[] {
  return [
    { id: "accept", keys: ["Tab"], label: "Accept the suggestion", group: "Writing" },
    { id: "acceptWord", keys: [mac ? "Alt-ArrowRight" : "Ctrl-ArrowRight"], label: "Accept the next word", group: "Writing" },
    { id: "nextAlternative", keys: ["Alt-]"], label: "Next suggestion (alternatives)", group: "Writing" },
    { id: "previousAlternative", keys: ["Alt-["], label: "Previous suggestion", group: "Writing" },
    { id: "acceptHeld", keys: ["Alt-Enter"], label: "Accept the suggestion (subtle mode: hold Alt to see it)", group: "Writing" },
    { id: "dismiss", keys: ["Escape"], label: "Dismiss the suggestion", group: "Writing" },
    { id: "undo", keys: ["Mod-z"], label: "Undo", group: "Writing" },
    { id: "find", keys: ["Mod-f"], label: "Find and replace", group: "Writing" },
  ];
}

export type ShortcutId = (typeof SHORTCUTS)[number]["id"];

export interface KeyLike {
  key: string;
  code?: string;
  ctrlKey: boolean;
  metaKey: boolean;
  shiftKey: boolean;
  altKey: boolean;
}

export function isMac(platform: string = typeof navigator === "undefined" ? "" : navigator.platform || navigator.userAgent): boolean {
  return /Mac|iPhone|iPad/i.test(platform);
}

interface Combo {
  key: string;
  ctrl: boolean;
  meta: boolean;
  shift: boolean;
  alt: boolean;
}

function parse(spec: string, mac: boolean): Combo {
  const parts = spec.split("-");
  // "Ctrl--" style is not used; the last part is the key
  const key = parts.pop() ?? "";
  const c: Combo = { key, ctrl: false, meta: false, shift: false, alt: false };
  for (const p of parts) {
    if (p === "Mod") {
      if (mac) c.meta = true;
      else c.ctrl = true;
    } else if (p === "Ctrl") c.ctrl = true;
    else if (p === "Cmd" || p === "Meta") c.meta = true;
    else if (p === "Shift") c.shift = true;
    else if (p === "Alt") c.alt = true;
  }
  return c;
}

function keyName(e: KeyLike): string {
  if (e.key === " " || e.code === "Space") return "Space";
  // with Shift held, letters arrive upper-case and "/" may arrive as "?": compare by code
  if (e.code && /^Key[A-Z]$/.test(e.code)) return e.code.slice(3).toLowerCase();
  if (e.code === "Slash") return "/";
  return e.key.length === 1 ? e.key.toLowerCase() : e.key;
}

/** Whether a keyboard event is the combination `spec`. */
export function matches(e: KeyLike, spec: string, mac = isMac()): boolean {
  const c = parse(spec, mac);
  const want = c.key.length === 1 ? c.key.toLowerCase() : c.key;
  return (
    keyName(e) === want &&
    e.ctrlKey === c.ctrl &&
    e.metaKey === c.meta &&
    e.shiftKey === c.shift &&
    e.altKey === c.alt
  );
}

/** The shortcut an event triggers, if any. */
export function findShortcut(e: KeyLike, table: readonly Shortcut[] = SHORTCUTS, mac = isMac()): Shortcut | null {
  for (const s of table) if (s.keys.some((k) => matches(e, k, mac))) return s;
  return null;
}

/** How a combination is printed: ["Ctrl", "Shift", "S"] or ["⌘", "⇧", "S"]. */
export function keyLabel(spec: string, mac = isMac()): string[] {
  const c = parse(spec, mac);
  const out: string[] = [];
  if (c.ctrl) out.push(mac ? "⌃" : "Ctrl");
  if (c.alt) out.push(mac ? "⌥" : "Alt");
  if (c.shift) out.push(mac ? "⇧" : "Shift");
  if (c.meta) out.push(mac ? "⌘" : "Meta");
  const names: Record<string, string> = { ArrowRight: "→", ArrowLeft: "←", Escape: "Esc", Space: "Space" };
  out.push(names[c.key] ?? (c.key.length === 1 ? c.key.toUpperCase() : c.key));
  return out;
}

/**
 * Installs the app-wide key handler. It listens in the capture phase so the editor does not
 * see (and act on) shortcuts the app owns; Escape only goes to `handlers.escape` when it says
 * it handled it, so the editor can still dismiss a suggestion.
 */
export function installShortcuts(handlers: Partial<Record<ShortcutId, () => boolean | void>>, target: Window = window): () => void {
  const mac = isMac();
  const onKey = (e: KeyboardEvent) => {
    if (e.isComposing) return;
    const s = findShortcut(e, SHORTCUTS, mac);
    if (!s) return;
    const handler = handlers[s.id as ShortcutId];
    if (!handler) return;
    const handled = handler();
    if (handled === false) return;
    e.preventDefault();
    e.stopPropagation();
  };
  target.addEventListener("keydown", onKey, true);
  return () => target.removeEventListener("keydown", onKey, true);
}
