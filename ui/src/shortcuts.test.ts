import { describe, expect, it } from "vitest";

import { SHORTCUTS, editorShortcuts, findShortcut, keyLabel, matches, type KeyLike } from "./shortcuts";

function key(k: string, mods: Partial<KeyLike> = {}, code?: string): KeyLike {
  return { key: k, code, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, ...mods };
}

describe("shortcuts", () => {
  it("matches Mod as Ctrl off macOS and Cmd on macOS", () => {
    expect(matches(key("s", { ctrlKey: true }), "Mod-s", false)).toBe(true);
    expect(matches(key("s", { metaKey: true }), "Mod-s", false)).toBe(false);
    expect(matches(key("s", { metaKey: true }), "Mod-s", true)).toBe(true);
  });

  it("requires the exact modifiers", () => {
    expect(matches(key("s", { ctrlKey: true, shiftKey: true }), "Mod-s", false)).toBe(false);
    expect(matches(key("S", { ctrlKey: true, shiftKey: true }, "KeyS"), "Mod-Shift-s", false)).toBe(true);
  });

  it("finds every app shortcut from its keys", () => {
    const cases: [KeyLike, string][] = [
      [key("n", { ctrlKey: true }, "KeyN"), "new"],
      [key("o", { ctrlKey: true }, "KeyO"), "open"],
      [key("s", { ctrlKey: true }, "KeyS"), "save"],
      [key("S", { ctrlKey: true, shiftKey: true }, "KeyS"), "saveAs"],
      [key("M", { ctrlKey: true, shiftKey: true }, "KeyM"), "summarize"],
      [key("T", { ctrlKey: true, shiftKey: true }, "KeyT"), "translate"],
      [key("F", { ctrlKey: true, shiftKey: true }, "KeyF"), "finetune"],
      [key("L", { ctrlKey: true, shiftKey: true }, "KeyL"), "models"],
      [key(" ", { ctrlKey: true }, "Space"), "suggest"],
      [key(" ", { ctrlKey: true, shiftKey: true }, "Space"), "toggleAutocomplete"],
      [key("F1", {}, "F1"), "help"],
      [key("/", { ctrlKey: true }, "Slash"), "help"],
      [key("Escape", {}, "Escape"), "escape"],
    ];
    for (const [event, id] of cases) expect(findShortcut(event, SHORTCUTS, false)?.id, id).toBe(id);
    expect(findShortcut(key("a"), SHORTCUTS, false)).toBeNull();
    expect(findShortcut(key("f", { ctrlKey: true }, "KeyF"), SHORTCUTS, false)).toBeNull(); // the editor's search
  });

  it("has unique ids and no clashing combinations", () => {
    const ids = SHORTCUTS.map((s) => s.id);
    expect(new Set(ids).size).toBe(ids.length);
    const combos = SHORTCUTS.flatMap((s) => s.keys);
    expect(new Set(combos).size).toBe(combos.length);
  });

  it("prints keys per platform", () => {
    expect(keyLabel("Mod-Shift-s", false)).toEqual(["Ctrl", "Shift", "S"]);
    expect(keyLabel("Mod-Shift-s", true)).toEqual(["⇧", "⌘", "S"]);
    expect(keyLabel("Ctrl-ArrowRight", false)).toEqual(["Ctrl", "→"]);
    expect(keyLabel("Escape", false)).toEqual(["Esc"]);
  });

  it("lists the editor's suggestion keys for the help overlay", () => {
    expect(editorShortcuts(false).map((s) => s.keys[0])).toContain("Ctrl-ArrowRight");
    expect(editorShortcuts(true).map((s) => s.keys[0])).toContain("Alt-ArrowRight");
  });
});
