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
// - Alt+] / Alt+[ fetch alternatives for the same cursor and cycle through them; a small
//   "2/3" badge (data-testid="ghost-count") follows the suggestion.
// - Subtle mode hides the suggestion behind a dot (data-testid="ghost-hint") until Alt is
//   held; Tab or Alt+Enter then accepts it.
//
// The grey text sits in the widget's shadow root, so it is never read back as part of the
// editor's text (innerText, copy, CodeMirror's DOM reading); the widget span carries
// data-testid="ghost-text" and WebDriver reads its text through the open shadow root.

import { Annotation, EditorState, Facet, Prec, StateEffect, StateField, type Extension, type Transaction } from "@codemirror/state";
import { Decoration, EditorView, ViewPlugin, WidgetType, keymap, type DecorationSet, type ViewUpdate } from "@codemirror/view";

import {
  acceptText,
  clipPrefix,
  clipSuffix,
  initialState,
  optionsLabel,
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
  /** Asks for other suggestions than `shown` at the same cursor; null = superseded. */
  alternatives?(request: { prefix: string; suffix: string; requestId: number; shown: readonly string[] }): Promise<{ alternatives: string[] } | null>;
  /** Whether automatic suggestions stay away from this cursor (code blocks, URLs, …). */
  suppressed?(prefix: string, suffix: string): boolean;
  /** Subtle mode when an editor state is created (see `setGhostSubtle`). */
  subtle?(): boolean;
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
  | { type: "cycle"; dir: 1 | -1 }
  | { type: "alternatives"; id: number; texts: readonly string[] | null }
  | { type: "failed"; id: number }
  | { type: "dismiss" }
  | { type: "enable"; enabled: boolean };

export const ghostEvent = StateEffect.define<ExternalEvent>();

/** How the suggestion is shown: subtle mode on or off, and whether Alt is held. */
const ghostLook = StateEffect.define<{ subtle?: boolean; revealed?: boolean }>();

/** Marks the transaction that inserts (part of) the suggestion. */
const ghostAccept = Annotation.define<AcceptPart>();

interface FieldValue {
  machine: GhostState;
  /** The side effects of the transaction that produced this value. */
  effects: readonly Effect[];
  /** Subtle mode: the suggestion shows only while `revealed` (Alt held). */
  subtle: boolean;
  revealed: boolean;
}

/** Where automatic suggestions stay away (from `GhostOptions.suppressed`). */
const suppressedAt = Facet.define<(prefix: string, suffix: string) => boolean, (prefix: string, suffix: string) => boolean>({
  combine: (values) => values[0] ?? (() => false),
});

function context(state: EditorState): Context {
  const sel = state.selection;
  const cursor = sel.main.head;
  const prefix = state.doc.sliceString(0, cursor);
  const suffix = state.doc.sliceString(cursor);
  return {
    prefix,
    suffix,
    cursor,
    empty: sel.ranges.length === 1 && sel.main.empty,
    suppressed: state.facet(suppressedAt)(prefix, suffix),
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

const freshValue = (enabled: boolean, subtle = false): FieldValue => ({
  machine: initialState({ enabled, firstId: Date.now() }),
  effects: [],
  subtle,
  revealed: false,
});

const ghostField = StateField.define<FieldValue>({
  create: () => freshValue(true),
  update(value, tr) {
    let machine = value.machine;
    let { subtle, revealed } = value;
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
      if (e.is(ghostLook)) {
        subtle = e.value.subtle ?? subtle;
        revealed = e.value.revealed ?? revealed;
        continue;
      }
      if (!e.is(ghostEvent)) continue;
      const ev = e.value;
      if (ev.type === "timer" || ev.type === "ask") run({ type: ev.type, ctx: context(tr.state) });
      else if (ev.type === "response" || ev.type === "cycle" || ev.type === "alternatives") run({ ...ev, ctx: context(tr.state) });
      else run(ev);
    }
    const look = subtle === value.subtle && revealed === value.revealed;
    if (machine === value.machine && effects.length === 0 && look) {
      return value.effects.length === 0 ? value : { ...value, effects };
    }
    return { machine, effects, subtle, revealed };
  },
  provide: (f) =>
    EditorView.decorations.from(f, (v): DecorationSet => {
      const s = v.machine.suggestion;
      if (!s) return Decoration.none;
      if (v.subtle && !v.revealed) return Decoration.set([Decoration.widget({ widget: new HintWidget(), side: 1 }).range(s.at)]);
      const widgets = [Decoration.widget({ widget: new GhostWidget(s.text), side: 1 }).range(s.at)];
      const label = optionsLabel(v.machine);
      if (label) widgets.push(Decoration.widget({ widget: new CountWidget(label), side: 2 }).range(s.at));
      return Decoration.set(widgets);
    }),
});

/** A widget's span: not part of the document's text (aria-hidden; any text in its shadow root). */
function widgetSpan(className: string, testid: string, text?: string): HTMLElement {
  const el = document.createElement("span");
  el.className = className;
  el.dataset.testid = testid;
  el.setAttribute("aria-hidden", "true");
  if (text !== undefined) el.attachShadow({ mode: "open" }).textContent = text;
  return el;
}

/** "2/3" after the suggestion: which of the alternatives is shown. */
class CountWidget extends WidgetType {
  constructor(readonly label: string) {
    super();
  }

  override eq(other: CountWidget): boolean {
    return other.label === this.label;
  }

  toDOM(): HTMLElement {
    return widgetSpan("cm-ghost-count", "ghost-count", this.label);
  }
}

/** Subtle mode: a dot says a suggestion is ready; holding Alt shows it. */
class HintWidget extends WidgetType {
  override eq(): boolean {
    return true;
  }

  toDOM(): HTMLElement {
    const el = widgetSpan("cm-ghost-hint", "ghost-hint");
    el.title = "A suggestion is ready: hold Alt to see it";
    return el;
  }
}

class GhostWidget extends WidgetType {
  constructor(readonly text: string) {
    super();
  }

  override eq(other: GhostWidget): boolean {
    return other.text === this.text;
  }

  toDOM(): HTMLElement {
    // The text lives in the span's (open) shadow root: it renders inline, in the editor's font
    // and the ghost colour (inherited), but it is not part of .cm-content's text (innerText,
    // copy) – only the document is.
    return widgetSpan("cm-ghost", "ghost-text", this.text);
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
  const value = view.state.field(ghostField, false);
  // in subtle mode only a suggestion the writer can see is accepted
  if (value?.subtle && !value.revealed) return false;
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

/** Subtle mode on or off: suggestions only while Alt is held. */
export function setGhostSubtle(view: EditorView, subtle: boolean): void {
  view.dispatch({ effects: ghostLook.of({ subtle, revealed: false }) });
}

/** Alt+] / Alt+[: the next or previous alternative (fetched the first time). */
function cycleSuggestion(dir: 1 | -1) {
  return (view: EditorView): boolean => {
    const m = ghostState(view.state);
    if (!m?.suggestion) return false;
    view.dispatch({ effects: ghostEvent.of({ type: "cycle", dir }) });
    return true;
  };
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
            case "alternatives":
              this.sendAlternatives(effect.id, effect.prefix, effect.suffix, effect.shown);
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

      sendAlternatives(id: number, prefix: string, suffix: string, shown: readonly string[]) {
        const ask = options.alternatives;
        const reply = ask ? ask({ prefix: clipPrefix(prefix), suffix: clipSuffix(suffix), requestId: id, shown }) : Promise.resolve(null);
        reply
          .then(
            (r) => ({ type: "alternatives", id, texts: r ? r.alternatives : null }) as const,
            (error) => {
              options.onError?.(error);
              return { type: "failed", id } as const;
            },
          )
          .then((event) => {
            if (!this.destroyed) this.view.dispatch({ effects: ghostEvent.of(event) });
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
      { key: "Alt-Enter", run: acceptSuggestion },
      { key: "Alt-]", run: cycleSuggestion(1), preventDefault: true },
      { key: "Alt-[", run: cycleSuggestion(-1), preventDefault: true },
      { key: mac ? "Alt-ArrowRight" : "Ctrl-ArrowRight", run: acceptWord },
      { key: "Escape", run: dismissSuggestion },
      { key: "Ctrl-Space", run: requestSuggestion, preventDefault: true },
    ]),
  );

  // Focus moving elsewhere in the window (a pane, a menu) drops the suggestion; the whole
  // window losing focus does not (the writer comes back to it as it was).
  // Subtle mode: holding Alt shows the suggestion, letting go hides it again.
  const reveal = (view: EditorView, revealed: boolean) => {
    const v = view.state.field(field, false);
    if (v?.subtle && v.revealed !== revealed) view.dispatch({ effects: ghostLook.of({ revealed }) });
  };
  const blur = EditorView.domEventHandlers({
    blur: (_event, view) => {
      reveal(view, false);
      setTimeout(() => {
        if (document.hasFocus() && !view.hasFocus) dismissSuggestion(view);
      }, 0);
    },
    keydown: (event, view) => {
      if (event.key === "Alt") reveal(view, true);
      return false;
    },
    keyup: (event, view) => {
      if (event.key === "Alt") reveal(view, false);
      return false;
    },
  });

  const suppressed = options.suppressed ? [suppressedAt.of(options.suppressed)] : [];
  return [field.init(() => freshValue(options.enabled?.() ?? true, options.subtle?.() ?? false)), plugin, keys, blur, suppressed];
}
