// The ghost-text autocomplete as a CodeMirror extension, driven by the pure state machine in
// ./state.ts.
//
// - A StateField runs the machine: every transaction becomes an event ("typed", "edited",
//   "moved", or an explicit ghostEvent effect), and the field keeps the machine's state plus the
//   side effects that transaction produced.
// - A ViewPlugin carries those effects out: the debounce timer, the backend request, its
//   cancellation and the screen-reader announcement. Responses come back as ghostEvent effects.
// - The suggestion is drawn as a widget decoration after the cursor. It is never document
//   text: accepting it inserts it with an ordinary transaction (one undo step).
//
// The grey text sits in the widget's shadow root, so it is never read back as part of the
// editor's text (innerText, copy, CodeMirror's DOM reading); the widget span carries
// data-testid="ghost-text" and WebDriver reads its text through the open shadow root.

import { Annotation, EditorState, Prec, StateEffect, StateField, type Extension, type Transaction } from "@codemirror/state";
import { Decoration, EditorView, ViewPlugin, WidgetType, keymap, type DecorationSet, type ViewUpdate } from "@codemirror/view";

import {
  acceptText,
  clipPrefix,
  clipSuffix,
  initialState,
  step,
  type AcceptPart,
  type Context,
  type Effect,
  type GhostEvent,
  type GhostState,
} from "./state";

/** What the extension needs from the outside world. */
export interface GhostOptions {
  /** Asks the backend for a completion; null = superseded or nothing to say. */
  complete(request: { prefix: string; suffix: string; requestId: number }): Promise<{ completion: string } | null>;
  /** Cancels the request in flight. */
  cancel(): void;
  /** Debounce in milliseconds, read each time a timer starts (so a setting applies at once). */
  debounceMs(): number;
  /** Whether automatic suggestions are on when an editor state is created. */
  enabled?(): boolean;
  /** A request failed (e.g. no model loaded). */
  onError?(error: unknown): void;
  /** A request finished (for the status bar). */
  onReply?(reply: unknown): void;
  /** Whether a request is in flight (for a busy indicator). */
  onBusy?(busy: boolean): void;
  /** Mac keyboard: word-accept is Alt+ArrowRight instead of Ctrl+ArrowRight. */
  mac?: boolean;
}

/** Events that do not come from editing: the timer, responses, Esc, the toggle. */
type ExternalEvent =
  | { type: "timer" }
  | { type: "ask" }
  | { type: "response"; id: number; completion: string | null }
  | { type: "failed"; id: number }
  | { type: "dismiss" }
  | { type: "enable"; enabled: boolean };

export const ghostEvent = StateEffect.define<ExternalEvent>();

/** Marks the transaction that inserts (part of) the suggestion. */
const ghostAccept = Annotation.define<AcceptPart>();

interface FieldValue {
  machine: GhostState;
  /** The side effects of the transaction that produced this value. */
  effects: readonly Effect[];
}

function context(state: EditorState): Context {
  const sel = state.selection;
  const cursor = sel.main.head;
  return {
    prefix: state.doc.sliceString(0, cursor),
    suffix: state.doc.sliceString(cursor),
    cursor,
    empty: sel.ranges.length === 1 && sel.main.empty,
  };
}

/** Turns an editing transaction into a machine event. */
function classify(tr: Transaction): GhostEvent {
  const ctx = context(tr.state);
  if (!tr.docChanged) return { type: "moved", ctx };
  let inserted: { at: number; text: string } | null = null;
  let count = 0;
  let deletes = false;
  tr.changes.iterChanges((fromA, toA, _fromB, _toB, text) => {
    count++;
    if (toA > fromA) deletes = true;
    inserted = { at: fromA, text: text.toString() };
  });
  const ins = inserted as { at: number; text: string } | null;
  if (count === 1 && !deletes && ins && ctx.empty && ctx.cursor === ins.at + ins.text.length) {
    return { type: "typed", text: ins.text, at: ins.at, ctx };
  }
  return { type: "edited", ctx };
}

const freshValue = (enabled: boolean): FieldValue => ({ machine: initialState({ enabled, firstId: Date.now() }), effects: [] });

const ghostField = StateField.define<FieldValue>({
  create: () => freshValue(true),
  update(value, tr) {
    let machine = value.machine;
    const effects: Effect[] = [];
    const run = (event: GhostEvent) => {
      const next = step(machine, event);
      machine = next.state;
      effects.push(...next.effects);
    };
    const accepted = tr.annotation(ghostAccept);
    if (accepted) run({ type: "accept", part: accepted });
    else if (tr.docChanged || tr.selection) run(classify(tr));
    for (const e of tr.effects) {
      if (!e.is(ghostEvent)) continue;
      const ev = e.value;
      if (ev.type === "timer" || ev.type === "ask") run({ type: ev.type, ctx: context(tr.state) });
      else if (ev.type === "response") run({ ...ev, ctx: context(tr.state) });
      else run(ev);
    }
    if (machine === value.machine && effects.length === 0) {
      return value.effects.length === 0 ? value : { machine, effects };
    }
    return { machine, effects };
  },
  provide: (f) =>
    EditorView.decorations.from(f, (v): DecorationSet => {
      const s = v.machine.suggestion;
      if (!s) return Decoration.none;
      return Decoration.set([Decoration.widget({ widget: new GhostWidget(s.text), side: 1 }).range(s.at)]);
    }),
});

class GhostWidget extends WidgetType {
  constructor(readonly text: string) {
    super();
  }

  override eq(other: GhostWidget): boolean {
    return other.text === this.text;
  }

  toDOM(): HTMLElement {
    const el = document.createElement("span");
    el.className = "cm-ghost";
    el.dataset.testid = "ghost-text";
    el.setAttribute("aria-hidden", "true");
    // The text lives in the span's (open) shadow root: it renders inline, in the editor's font
    // and the ghost colour (inherited), but it is not part of .cm-content's text (innerText,
    // copy) – only the document is.
    el.attachShadow({ mode: "open" }).textContent = this.text;
    return el;
  }

  /** Typing through a suggestion updates the text in place (no flicker, no re-animation). */
  override updateDOM(dom: HTMLElement): boolean {
    if (!dom.shadowRoot) return false;
    dom.shadowRoot.textContent = this.text;
    return true;
  }

  override ignoreEvent(): boolean {
    return false;
  }
}

/** The machine's state in `view`, or null when the extension is not installed. */
export function ghostState(state: EditorState): GhostState | null {
  return state.field(ghostField, false)?.machine ?? null;
}

function accept(view: EditorView, part: AcceptPart): boolean {
  const machine = ghostState(view.state);
  if (!machine) return false;
  const plan = acceptText(machine, part);
  if (!plan || !plan.text) return false;
  const end = plan.at + plan.text.length;
  view.dispatch({
    changes: { from: plan.at, insert: plan.text },
    selection: { anchor: end },
    annotations: ghostAccept.of(part),
    userEvent: "input.complete",
    scrollIntoView: true,
  });
  return true;
}

/** Tab: accept the whole suggestion. */
export const acceptSuggestion = (view: EditorView) => accept(view, "all");
/** Ctrl+ArrowRight (Alt on macOS): accept the next word. */
export const acceptWord = (view: EditorView) => accept(view, "word");

/** Esc: dismiss the suggestion (or the request in flight). */
export function dismissSuggestion(view: EditorView): boolean {
  const m = ghostState(view.state);
  if (!m || (!m.suggestion && !m.pending)) return false;
  view.dispatch({ effects: ghostEvent.of({ type: "dismiss" }) });
  return true;
}

/** Ctrl+Space: ask for a suggestion now. */
export function requestSuggestion(view: EditorView): boolean {
  if (!ghostState(view.state)) return false;
  view.dispatch({ effects: ghostEvent.of({ type: "ask" }) });
  return true;
}

export function setGhostEnabled(view: EditorView, enabled: boolean): void {
  view.dispatch({ effects: ghostEvent.of({ type: "enable", enabled }) });
}

export function ghostText(options: GhostOptions): Extension {
  const field = ghostField;

  const plugin = ViewPlugin.fromClass(
    class {
      timer: ReturnType<typeof setTimeout> | null = null;
      live: HTMLElement;
      destroyed = false;
      busy = false;

      constructor(readonly view: EditorView) {
        // Screen readers hear "Suggestion: …" (polite), from a visually hidden live region
        // outside the editable content.
        this.live = document.createElement("div");
        this.live.className = "cm-ghost-live";
        this.live.setAttribute("aria-live", "polite");
        this.live.setAttribute("role", "status");
        this.live.dataset.testid = "ghost-announcer";
        view.dom.append(this.live);
      }

      update(update: ViewUpdate) {
        for (const tr of update.transactions) {
          const value = tr.state.field(field, false);
          if (value && value.effects.length) this.perform(value.effects);
        }
        const busy = !!ghostState(update.state)?.pending;
        if (busy !== this.busy) {
          this.busy = busy;
          options.onBusy?.(busy);
        }
      }

      perform(effects: readonly Effect[]) {
        for (const effect of effects) {
          switch (effect.kind) {
            case "schedule":
              this.clearTimer();
              this.timer = setTimeout(() => {
                this.timer = null;
                if (!this.destroyed) this.view.dispatch({ effects: ghostEvent.of({ type: "timer" }) });
              }, Math.max(0, options.debounceMs()));
              break;
            case "unschedule":
              this.clearTimer();
              break;
            case "request":
              this.send(effect.id, effect.prefix, effect.suffix);
              break;
            case "cancel":
              options.cancel();
              break;
            case "announce":
              this.live.textContent = effect.text;
              break;
          }
        }
      }

      send(id: number, prefix: string, suffix: string) {
        options
          .complete({ prefix: clipPrefix(prefix), suffix: clipSuffix(suffix), requestId: id })
          .then(
            (reply) => {
              if (reply) options.onReply?.(reply);
              return { type: "response", id, completion: reply ? reply.completion : null } as const;
            },
            (error) => {
              options.onError?.(error);
              return { type: "failed", id } as const;
            },
          )
          .then((event) => {
            if (this.destroyed) return;
            // dispatching from a promise callback is never inside an update
            this.view.dispatch({ effects: ghostEvent.of(event) });
          });
      }

      clearTimer() {
        if (this.timer !== null) clearTimeout(this.timer);
        this.timer = null;
      }

      destroy() {
        this.destroyed = true;
        this.clearTimer();
        this.live.remove();
      }
    },
  );

  const mac = options.mac ?? false;
  const keys = Prec.highest(
    keymap.of([
      { key: "Tab", run: acceptSuggestion },
      { key: mac ? "Alt-ArrowRight" : "Ctrl-ArrowRight", run: acceptWord },
      { key: "Escape", run: dismissSuggestion },
      { key: "Ctrl-Space", run: requestSuggestion, preventDefault: true },
    ]),
  );

  // Focus moving elsewhere in the window (a pane, a menu) drops the suggestion; the whole
  // window losing focus does not (the writer comes back to it as it was).
  const blur = EditorView.domEventHandlers({
    blur: (_event, view) => {
      setTimeout(() => {
        if (document.hasFocus() && !view.hasFocus) dismissSuggestion(view);
      }, 0);
    },
  });

  return [field.init(() => freshValue(options.enabled?.() ?? true)), plugin, keys, blur];
}
