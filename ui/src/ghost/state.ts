// The ghost-text autocomplete as a pure state machine: no DOM, no CodeMirror, no timers.
//
// `step(state, event)` returns the next state and the side effects the editor extension must
// carry out (start the debounce timer, send or cancel a request, announce a suggestion). The
// extension feeds it what happens in the editor; everything about *when* a suggestion is shown,
// kept, or thrown away is decided here, so it can be tested without a browser.
//
// Rules:
// - After an edit or cursor move with an empty selection, a request is scheduled (debounced).
// - Typing characters that match the start of the suggestion keeps the rest (no new request).
// - Any other edit, or a cursor move, dismisses the suggestion and cancels the request in flight.
// - A response is shown only if it answers the latest request and the text before the cursor
//   is still exactly what was sent.
// - The suggestion is never part of the document: accepting it is an ordinary insertion.
// - Alt+] / Alt+[ ask once for alternatives for the same cursor (the suggestion stays up
//   meanwhile), then cycle through them; any edit or move drops them with the suggestion.
// - Automatic requests stay away where the context says suggestions are suppressed.

/** A suggestion on screen: `text` is shown at document position `at` (the cursor). */
export interface Suggestion {
  readonly text: string;
  readonly at: number;
  /** Every suggestion for this cursor, the one shown at `index` (`[text]` until alternatives come). */
  readonly options: readonly string[];
  readonly index: number;
  /** Alternatives were asked for (they are on their way, or here). */
  readonly asked: boolean;
}

/** The request in flight. */
export interface Pending {
  readonly id: number;
  /** The document text before the cursor when the request was sent. */
  readonly prefix: string;
  readonly at: number;
  /** A request for alternatives, and which way the writer was cycling. */
  readonly cycle?: 1 | -1;
}

export interface GhostState {
  /** Automatic suggestions while typing (an explicit request works either way). */
  readonly enabled: boolean;
  /** The id of the last request issued; responses to older ones are stale. */
  readonly lastId: number;
  readonly pending: Pending | null;
  readonly suggestion: Suggestion | null;
}

/** Where the cursor is and what surrounds it, read from the editor when an event happens. */
export interface Context {
  readonly prefix: string;
  readonly suffix: string;
  readonly cursor: number;
  /** True when the selection is a single empty cursor. */
  readonly empty: boolean;
  /** Automatic suggestions are not wanted here (a code block, a URL, mid-word…). */
  readonly suppressed?: boolean;
}

export type GhostEvent =
  /** `text` was inserted at `at` (nothing deleted) and the cursor now sits right after it. */
  | { readonly type: "typed"; readonly text: string; readonly at: number; readonly ctx: Context }
  /** Any other change to the document. */
  | { readonly type: "edited"; readonly ctx: Context }
  /** The selection changed, the document did not. */
  | { readonly type: "moved"; readonly ctx: Context }
  /** The debounce timer ran out. */
  | { readonly type: "timer"; readonly ctx: Context }
  /** The writer asked for a suggestion now (Ctrl+Space). */
  | { readonly type: "ask"; readonly ctx: Context }
  /** The backend answered request `id` (`null`: superseded / nothing to suggest). */
  | { readonly type: "response"; readonly id: number; readonly completion: string | null; readonly ctx: Context }
  /** Alt+] (1) or Alt+[ (-1): the next or previous alternative. */
  | { readonly type: "cycle"; readonly dir: 1 | -1; readonly ctx: Context }
  /** The backend answered the alternatives request `id` (`null`: superseded). */
  | { readonly type: "alternatives"; readonly id: number; readonly texts: readonly string[] | null; readonly ctx: Context }
  /** Request `id` failed. */
  | { readonly type: "failed"; readonly id: number }
  | { readonly type: "dismiss" }
  /** The suggestion (all of it, or its next word) was inserted into the document. */
  | { readonly type: "accept"; readonly part: AcceptPart }
  | { readonly type: "enable"; readonly enabled: boolean };

export type AcceptPart = "all" | "word";

export type Effect =
  /** (Re)start the debounce timer; when it fires, send a `timer` event. */
  | { readonly kind: "schedule" }
  /** Stop the debounce timer. */
  | { readonly kind: "unschedule" }
  | { readonly kind: "request"; readonly id: number; readonly prefix: string; readonly suffix: string }
  /** Ask for alternatives to the suggestions `shown` at this cursor. */
  | { readonly kind: "alternatives"; readonly id: number; readonly prefix: string; readonly suffix: string; readonly shown: readonly string[] }
  /** Cancel the request in flight. */
  | { readonly kind: "cancel" }
  /** Tell screen readers about a new suggestion. */
  | { readonly kind: "announce"; readonly text: string };

export interface Step {
  readonly state: GhostState;
  readonly effects: readonly Effect[];
}

export function initialState(options: { enabled?: boolean; firstId?: number } = {}): GhostState {
  return {
    enabled: options.enabled ?? true,
    // Request ids must grow across reloads of the page (the backend keeps the newest it saw),
    // so the extension starts them from the clock.
    lastId: options.firstId ?? 0,
    pending: null,
    suggestion: null,
  };
}

/** The text `part` would insert, and where; null when nothing is suggested. */
export function acceptText(state: GhostState, part: AcceptPart): { text: string; at: number } | null {
  const s = state.suggestion;
  if (!s) return null;
  return { text: part === "all" ? s.text : nextWord(s.text), at: s.at };
}

/** The next word of a suggestion, with the whitespace before it ("  lazy dog" → "  lazy"). */
export function nextWord(text: string): string {
  const m = /^\s*[^\s]+/.exec(text);
  return m ? m[0] : text;
}

/** A fresh suggestion: one option, no alternatives asked for yet. */
export function single(text: string, at: number): Suggestion {
  return { text, at, options: [text], index: 0, asked: false };
}

/** "2/3" when there are alternatives to cycle through, "1/…" while they are on their way. */
export function optionsLabel(state: GhostState): string | null {
  const s = state.suggestion;
  if (!s) return null;
  if (s.options.length > 1) return `${s.index + 1}/${s.options.length}`;
  if (s.asked && state.pending?.cycle) return "1/…";
  return null;
}

/** Whether a completion is worth showing. */
export function isShowable(completion: string | null | undefined): completion is string {
  return typeof completion === "string" && completion.trim().length > 0;
}

export function step(state: GhostState, event: GhostEvent): Step {
  switch (event.type) {
    case "typed":
      return typed(state, event.text, event.at, event.ctx);
    case "edited":
      return restart(state, event.ctx);
    case "moved": {
      const s = state.suggestion;
      // A selection update that leaves the cursor where the suggestion is keeps it.
      if (s && event.ctx.empty && event.ctx.cursor === s.at) return { state, effects: [] };
      const p = state.pending;
      if (!s && p && event.ctx.empty && event.ctx.cursor === p.at) return { state, effects: [] };
      return restart(state, event.ctx);
    }
    case "timer":
      // nothing to continue at the very start of a document
      if (!state.enabled || !event.ctx.empty || event.ctx.suppressed || event.ctx.prefix.trim() === "") return { state, effects: [] };
      return request(state, event.ctx);
    case "ask":
      if (!event.ctx.empty) return { state, effects: [] };
      return request(state, event.ctx, [{ kind: "unschedule" }]);
    case "response":
      return response(state, event.id, event.completion, event.ctx);
    case "cycle":
      return cycle(state, event.dir, event.ctx);
    case "alternatives":
      return alternatives(state, event.id, event.texts, event.ctx);
    case "failed":
      if (state.pending?.id !== event.id) return { state, effects: [] };
      return { state: { ...state, pending: null }, effects: [] };
    case "dismiss":
      return clear(state, [{ kind: "unschedule" }]);
    case "accept":
      return accept(state, event.part);
    case "enable":
      if (event.enabled === state.enabled) return { state, effects: [] };
      if (event.enabled) return { state: { ...state, enabled: true }, effects: [] };
      return clear({ ...state, enabled: false }, [{ kind: "unschedule" }]);
  }
}

/** Drops the suggestion and cancels the request in flight, adding `extra` effects. */
function clear(state: GhostState, extra: Effect[] = []): Step {
  const effects: Effect[] = [];
  if (state.pending) effects.push({ kind: "cancel" });
  effects.push(...extra);
  if (!state.pending && !state.suggestion) return { state, effects: extra };
  return { state: { ...state, pending: null, suggestion: null }, effects };
}

/** After an edit or move: drop what is shown or pending, and schedule a fresh request. */
function restart(state: GhostState, ctx: Context): Step {
  const schedule: Effect = state.enabled && ctx.empty ? { kind: "schedule" } : { kind: "unschedule" };
  return clear(state, [schedule]);
}

function typed(state: GhostState, text: string, at: number, ctx: Context): Step {
  const s = state.suggestion;
  if (s && at === s.at && text.length > 0 && s.text.startsWith(text) && ctx.empty) {
    const rest = s.text.slice(text.length);
    if (isShowable(rest)) {
      // typing through: keep the rest (alternatives no longer fit), no new request
      return { state: { ...state, suggestion: single(rest, at + text.length) }, effects: [] };
    }
    // typed the whole suggestion: carry on as after any other keystroke
    return restart({ ...state, suggestion: null }, ctx);
  }
  return restart(state, ctx);
}

function request(state: GhostState, ctx: Context, extra: Effect[] = []): Step {
  const id = state.lastId + 1;
  const effects: Effect[] = [...extra];
  if (state.pending) effects.push({ kind: "cancel" });
  effects.push({ kind: "request", id, prefix: ctx.prefix, suffix: ctx.suffix });
  return {
    state: { ...state, lastId: id, pending: { id, prefix: ctx.prefix, at: ctx.cursor }, suggestion: null },
    effects,
  };
}

function response(state: GhostState, id: number, completion: string | null, ctx: Context): Step {
  const p = state.pending;
  // an answer to anything but the latest request is stale
  if (!p || id !== p.id || id !== state.lastId) return { state, effects: [] };
  const settled = { ...state, pending: null };
  // the text before the cursor changed since the request was sent: stale too
  if (!ctx.empty || ctx.cursor !== p.at || ctx.prefix !== p.prefix) return { state: settled, effects: [] };
  if (!isShowable(completion)) return { state: settled, effects: [] };
  return {
    state: { ...settled, suggestion: single(completion, p.at) },
    effects: [{ kind: "announce", text: `Suggestion: ${completion.trim()}` }],
  };
}

function cycle(state: GhostState, dir: 1 | -1, ctx: Context): Step {
  const s = state.suggestion;
  if (!s || !ctx.empty || ctx.cursor !== s.at) return { state, effects: [] };
  if (!s.asked) {
    const id = state.lastId + 1;
    const effects: Effect[] = [];
    if (state.pending) effects.push({ kind: "cancel" });
    effects.push({ kind: "alternatives", id, prefix: ctx.prefix, suffix: ctx.suffix, shown: s.options });
    return {
      state: { ...state, lastId: id, pending: { id, prefix: ctx.prefix, at: ctx.cursor, cycle: dir }, suggestion: { ...s, asked: true } },
      effects,
    };
  }
  if (s.options.length < 2) return { state, effects: [] };
  return show(state, s, (s.index + dir + s.options.length) % s.options.length);
}

/** Shows option `index` of `s`, announced with its place ("2 of 3"). */
function show(state: GhostState, s: Suggestion, index: number): Step {
  const text = s.options[index];
  return {
    state: { ...state, suggestion: { ...s, index, text } },
    effects: [{ kind: "announce", text: `Suggestion ${index + 1} of ${s.options.length}: ${text.trim()}` }],
  };
}

function alternatives(state: GhostState, id: number, texts: readonly string[] | null, ctx: Context): Step {
  const p = state.pending;
  if (!p || id !== p.id || id !== state.lastId) return { state, effects: [] };
  const settled = { ...state, pending: null };
  const s = state.suggestion;
  if (!s || !ctx.empty || ctx.cursor !== p.at || ctx.prefix !== p.prefix || s.at !== p.at) return { state: settled, effects: [] };
  const fresh = (texts ?? []).filter((t, i, all) => isShowable(t) && !s.options.includes(t) && all.indexOf(t) === i);
  if (fresh.length === 0) return { state: settled, effects: [{ kind: "announce", text: "No other suggestions" }] };
  const options = [...s.options, ...fresh];
  const grown = { ...s, options };
  return show(settled, grown, p.cycle === -1 ? options.length - 1 : s.options.length);
}

function accept(state: GhostState, part: AcceptPart): Step {
  const s = state.suggestion;
  if (!s) return { state, effects: [] };
  if (part === "all") return { state: { ...state, suggestion: null }, effects: [{ kind: "unschedule" }] };
  const word = nextWord(s.text);
  const rest = s.text.slice(word.length);
  if (!isShowable(rest)) return { state: { ...state, suggestion: null }, effects: [{ kind: "unschedule" }] };
  return { state: { ...state, suggestion: single(rest, s.at + word.length) }, effects: [] };
}

/**
 * How much context to send: the last `max` characters before the cursor, starting at a
 * paragraph (else line) boundary so the start stays put while the writer types and the
 * backend's cached prefix stays reusable.
 */
export function clipPrefix(prefix: string, max = 16_000): string {
  if (prefix.length <= max) return prefix;
  const min = prefix.length - max;
  const para = prefix.indexOf("\n\n", min);
  if (para >= 0) return prefix.slice(para + 2);
  const line = prefix.indexOf("\n", min);
  if (line >= 0) return prefix.slice(line + 1);
  return prefix.slice(min);
}

/** The first `max` characters after the cursor, ending at a paragraph boundary when there is one. */
export function clipSuffix(suffix: string, max = 4_000): string {
  if (suffix.length <= max) return suffix;
  const para = suffix.lastIndexOf("\n\n", max);
  return para > 0 ? suffix.slice(0, para) : suffix.slice(0, max);
}
