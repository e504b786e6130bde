// @vitest-environment happy-dom
import { EditorState } from "@codemirror/state";
import { EditorView } from "@codemirror/view";
import { undo, history, historyKeymap } from "@codemirror/commands";
import { keymap } from "@codemirror/view";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { acceptSuggestion, acceptWord, dismissSuggestion, ghostState, ghostText, requestSuggestion, setGhostEnabled } from "./extension";

interface Call {
  prefix: string;
  suffix: string;
  requestId: number;
  resolve(completion: string | null): void;
}

function setup(doc = "The quick brown fox jumps over the", enabled = true) {
  const calls: Call[] = [];
  const cancel = vi.fn();
  const extension = ghostText({
    complete: (req) =>
      new Promise((resolve) => {
        calls.push({ ...req, resolve: (completion) => resolve(completion === null ? null : { completion }) });
      }),
    cancel,
    debounceMs: () => 200,
    enabled: () => enabled,
  });
  const parent = document.createElement("div");
  document.body.append(parent);
  const view = new EditorView({
    parent,
    state: EditorState.create({ doc, selection: { anchor: doc.length }, extensions: [history(), keymap.of(historyKeymap), extension] }),
  });
  return { view, calls, cancel };
}

const ghostEl = (view: EditorView) => view.dom.querySelector<HTMLElement>("[data-testid=ghost-text]");
/** The suggestion's text (it lives in the widget's shadow root). */
const suggestionText = (view: EditorView) => ghostEl(view)?.shadowRoot?.textContent ?? null;
const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

/** Types `text` at the cursor as the keyboard would. */
function type(view: EditorView, text: string) {
  const at = view.state.selection.main.head;
  view.dispatch({ changes: { from: at, insert: text }, selection: { anchor: at + text.length }, userEvent: "input.type" });
}

describe("ghost text extension", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  });
  afterEach(() => {
    vi.useRealTimers();
    document.body.replaceChildren();
  });

  async function showSuggestion(view: EditorView, calls: Call[], completion = " lazy dog.") {
    type(view, "");
    view.dispatch({ selection: { anchor: view.state.doc.length } });
    requestSuggestion(view);
    const call = calls[calls.length - 1];
    call.resolve(completion);
    await vi.waitFor(() => expect(ghostEl(view)).not.toBeNull());
  }

  it("requests after the debounce with prefix and suffix around the cursor", async () => {
    const { view, calls } = setup("Hello world");
    view.dispatch({ selection: { anchor: 5 } });
    expect(calls).toHaveLength(0);
    vi.advanceTimersByTime(199);
    expect(calls).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(calls).toHaveLength(1);
    expect(calls[0].prefix).toBe("Hello");
    expect(calls[0].suffix).toBe(" world");
  });

  it("shows the suggestion as a widget, never as document text", async () => {
    const { view, calls } = setup();
    type(view, " ");
    vi.advanceTimersByTime(200);
    calls[0].resolve("lazy dog.");
    await vi.waitFor(() => expect(ghostEl(view)).not.toBeNull());
    expect(suggestionText(view)).toBe("lazy dog.");
    expect(ghostEl(view)!.classList.contains("cm-ghost")).toBe(true);
    // not part of the editor's own text
    expect(view.contentDOM.textContent).toBe("The quick brown fox jumps over the ");
    expect(view.state.doc.toString()).toBe("The quick brown fox jumps over the ");
    expect(view.dom.querySelector("[data-testid=ghost-announcer]")!.textContent).toBe("Suggestion: lazy dog.");
  });

  it("Tab accepts all of it as one undoable step", async () => {
    const { view, calls } = setup();
    await showSuggestion(view, calls);
    expect(acceptSuggestion(view)).toBe(true);
    expect(view.state.doc.toString()).toBe("The quick brown fox jumps over the lazy dog.");
    expect(view.state.selection.main.head).toBe(view.state.doc.length);
    expect(ghostEl(view)).toBeNull();
    undo(view);
    expect(view.state.doc.toString()).toBe("The quick brown fox jumps over the");
  });

  it("accepts word by word", async () => {
    const { view, calls } = setup();
    await showSuggestion(view, calls, " lazy old dog.");
    acceptWord(view);
    expect(view.state.doc.toString()).toBe("The quick brown fox jumps over the lazy");
    expect(suggestionText(view)).toBe(" old dog.");
    acceptWord(view);
    acceptWord(view);
    expect(view.state.doc.toString()).toBe("The quick brown fox jumps over the lazy old dog.");
    expect(ghostEl(view)).toBeNull();
  });

  it("typing through keeps the rest; a mismatch drops it and cancels nothing stale", async () => {
    const { view, calls } = setup();
    await showSuggestion(view, calls);
    const before = ghostEl(view);
    type(view, " la");
    expect(suggestionText(view)).toBe("zy dog.");
    expect(ghostEl(view)).toBe(before); // updated in place
    expect(calls).toHaveLength(1); // and no new request
    type(view, "x");
    expect(ghostEl(view)).toBeNull();
  });

  it("Esc dismisses; with nothing shown Esc is not consumed", async () => {
    const { view, calls } = setup();
    await showSuggestion(view, calls);
    expect(dismissSuggestion(view)).toBe(true);
    expect(ghostEl(view)).toBeNull();
    expect(dismissSuggestion(view)).toBe(false);
    expect(acceptSuggestion(view)).toBe(false);
  });

  it("an edit cancels the request in flight and its late answer is ignored", async () => {
    const { view, calls, cancel } = setup();
    requestSuggestion(view);
    expect(ghostState(view.state)!.pending).not.toBeNull();
    type(view, " ");
    expect(cancel).toHaveBeenCalledTimes(1);
    calls[0].resolve(" late");
    await flush();
    await flush();
    expect(ghostEl(view)).toBeNull();
  });

  it("a cursor move dismisses the suggestion", async () => {
    const { view, calls } = setup();
    await showSuggestion(view, calls);
    view.dispatch({ selection: { anchor: 3 } });
    expect(ghostEl(view)).toBeNull();
  });

  it("a stale response (older id) is never shown", async () => {
    const { view, calls } = setup();
    requestSuggestion(view);
    requestSuggestion(view);
    expect(calls).toHaveLength(2);
    calls[0].resolve(" old");
    await flush();
    await flush();
    expect(ghostEl(view)).toBeNull();
    calls[1].resolve(" new");
    await vi.waitFor(() => expect(suggestionText(view)).toBe(" new"));
  });

  it("disabled: no automatic requests, but Ctrl+Space still asks", async () => {
    const { view, calls } = setup("Some text", false);
    type(view, "!");
    vi.advanceTimersByTime(1000);
    expect(calls).toHaveLength(0);
    requestSuggestion(view);
    expect(calls).toHaveLength(1);
  });

  it("turning it off hides the suggestion", async () => {
    const { view, calls } = setup();
    await showSuggestion(view, calls);
    setGhostEnabled(view, false);
    expect(ghostEl(view)).toBeNull();
    type(view, " ");
    vi.advanceTimersByTime(1000);
    expect(calls).toHaveLength(1);
  });
});
