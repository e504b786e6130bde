import { describe, expect, it } from "vitest";

import {
  acceptText,
  clipPrefix,
  clipSuffix,
  initialState,
  isShowable,
  nextWord,
  optionsLabel,
  single,
  step,
  type Context,
  type Effect,
  type GhostEvent,
  type GhostState,
} from "./state";

/** The editor context for a document with the cursor at `cursor` (default: the end). */
function ctx(doc: string, cursor = doc.length, empty = true): Context {
  return { prefix: doc.slice(0, cursor), suffix: doc.slice(cursor), cursor, empty };
}

/** Runs events in order, collecting every effect. */
function run(state: GhostState, ...events: GhostEvent[]): { state: GhostState; effects: Effect[] } {
  const effects: Effect[] = [];
  for (const e of events) {
    const r = step(state, e);
    state = r.state;
    effects.push(...r.effects);
  }
  return { state, effects };
}

const kinds = (effects: readonly Effect[]) => effects.map((e) => e.kind);

/** A state showing `completion` after `doc`, reached the ordinary way (timer → response). */
function showing(doc: string, completion: string, base = initialState()): GhostState {
  const { state } = run(base, { type: "timer", ctx: ctx(doc) });
  const id = state.pending!.id;
  return run(state, { type: "response", id, completion, ctx: ctx(doc) }).state;
}

describe("requests", () => {
  it("schedules a request after typing, and sends it when the timer fires", () => {
    let r = step(initialState(), { type: "typed", text: "e", at: 2, ctx: ctx("The") });
    expect(kinds(r.effects)).toEqual(["schedule"]);
    expect(r.state.pending).toBeNull();

    r = step(r.state, { type: "timer", ctx: ctx("The") });
    expect(r.effects).toEqual([{ kind: "request", id: 1, prefix: "The", suffix: "" }]);
    expect(r.state.pending).toEqual({ id: 1, prefix: "The", at: 3 });
  });

  it("sends prefix and suffix around the cursor", () => {
    const r = step(initialState(), { type: "timer", ctx: ctx("Hello world", 5) });
    expect(r.effects).toEqual([{ kind: "request", id: 1, prefix: "Hello", suffix: " world" }]);
  });

  it("numbers requests from firstId upward", () => {
    let s = initialState({ firstId: 1000 });
    s = step(s, { type: "timer", ctx: ctx("a") }).state;
    expect(s.pending!.id).toBe(1001);
    s = step(s, { type: "ask", ctx: ctx("ab") }).state;
    expect(s.pending!.id).toBe(1002);
    expect(s.lastId).toBe(1002);
  });

  it("does not request at the very start of an empty document", () => {
    const r = step(initialState(), { type: "timer", ctx: ctx("  \n") });
    expect(r.effects).toEqual([]);
    expect(r.state.pending).toBeNull();
  });

  it("does not request with a non-empty selection", () => {
    const r = step(initialState(), { type: "timer", ctx: ctx("Hello", 5, false) });
    expect(r.effects).toEqual([]);
    const m = step(initialState(), { type: "moved", ctx: ctx("Hello", 5, false) });
    expect(kinds(m.effects)).toEqual(["unschedule"]);
  });

  it("schedules again after a cursor move", () => {
    const r = step(initialState(), { type: "moved", ctx: ctx("Hello there", 5) });
    expect(kinds(r.effects)).toEqual(["schedule"]);
  });

  it("asking now sends a request at once and stops the timer", () => {
    const r = step(initialState(), { type: "ask", ctx: ctx("Once upon") });
    expect(kinds(r.effects)).toEqual(["unschedule", "request"]);
  });

  it("a newer request cancels the one in flight", () => {
    let s = step(initialState(), { type: "timer", ctx: ctx("a b") }).state;
    const r = step(s, { type: "ask", ctx: ctx("a b") });
    expect(kinds(r.effects)).toEqual(["unschedule", "cancel", "request"]);
    s = r.state;
    expect(s.pending!.id).toBe(2);
  });
});

describe("responses", () => {
  it("shows the answer to the latest request and announces it", () => {
    let s = step(initialState(), { type: "timer", ctx: ctx("The quick brown") }).state;
    const r = step(s, { type: "response", id: 1, completion: " fox jumps", ctx: ctx("The quick brown") });
    s = r.state;
    expect(s.suggestion).toEqual(single(" fox jumps", 15));
    expect(s.pending).toBeNull();
    expect(r.effects).toEqual([{ kind: "announce", text: "Suggestion: fox jumps" }]);
  });

  it("ignores a stale response (older request id)", () => {
    let s = step(initialState(), { type: "timer", ctx: ctx("The") }).state; // id 1
    s = step(s, { type: "ask", ctx: ctx("The") }).state; // id 2
    const stale = step(s, { type: "response", id: 1, completion: " old", ctx: ctx("The") });
    expect(stale.state.suggestion).toBeNull();
    expect(stale.state.pending!.id).toBe(2);
    expect(stale.effects).toEqual([]);
    const fresh = step(stale.state, { type: "response", id: 2, completion: " new", ctx: ctx("The") });
    expect(fresh.state.suggestion!.text).toBe(" new");
  });

  it("ignores a response when the text before the cursor no longer matches", () => {
    const s = step(initialState(), { type: "timer", ctx: ctx("The cat") }).state;
    // the document changed without the machine hearing about it (e.g. an undo in between)
    const r = step(s, { type: "response", id: 1, completion: " sat", ctx: ctx("The cab") });
    expect(r.state.suggestion).toBeNull();
    expect(r.state.pending).toBeNull();
  });

  it("ignores a response when the cursor moved or the selection is not empty", () => {
    const s = step(initialState(), { type: "timer", ctx: ctx("The cat sat") }).state;
    expect(step(s, { type: "response", id: 1, completion: " on", ctx: ctx("The cat sat", 3) }).state.suggestion).toBeNull();
    expect(step(s, { type: "response", id: 1, completion: " on", ctx: ctx("The cat sat", 11, false) }).state.suggestion).toBeNull();
  });

  it("ignores a response after the request was cancelled", () => {
    let s = step(initialState(), { type: "timer", ctx: ctx("The") }).state;
    s = step(s, { type: "dismiss" }).state;
    const r = step(s, { type: "response", id: 1, completion: " end", ctx: ctx("The") });
    expect(r.state.suggestion).toBeNull();
  });

  it("shows nothing for a superseded (null) or blank completion", () => {
    const s = step(initialState(), { type: "timer", ctx: ctx("Hi") }).state;
    for (const completion of [null, "", "   ", "\n"]) {
      const r = step(s, { type: "response", id: 1, completion, ctx: ctx("Hi") });
      expect(r.state.suggestion).toBeNull();
      expect(r.state.pending).toBeNull();
      expect(r.effects).toEqual([]);
    }
  });

  it("a failed request clears the pending one, and only that one", () => {
    let s = step(initialState(), { type: "timer", ctx: ctx("Hi") }).state;
    expect(step(s, { type: "failed", id: 7 }).state.pending).not.toBeNull();
    s = step(s, { type: "failed", id: 1 }).state;
    expect(s.pending).toBeNull();
  });
});

describe("typing through the suggestion", () => {
  it("keeps the rest while typed characters match, without a new request", () => {
    let s = showing("The quick brown", " fox jumps");
    let r = step(s, { type: "typed", text: " ", at: 15, ctx: ctx("The quick brown ") });
    expect(r.state.suggestion).toEqual(single("fox jumps", 16));
    expect(r.effects).toEqual([]);
    s = r.state;
    r = step(s, { type: "typed", text: "f", at: 16, ctx: ctx("The quick brown f") });
    r = step(r.state, { type: "typed", text: "o", at: 17, ctx: ctx("The quick brown fo") });
    expect(r.state.suggestion).toEqual(single("x jumps", 18));
    expect(r.effects).toEqual([]);
  });

  it("a pasted run of matching characters also types through", () => {
    const s = showing("The quick brown", " fox jumps");
    const r = step(s, { type: "typed", text: " fox", at: 15, ctx: ctx("The quick brown fox") });
    expect(r.state.suggestion).toEqual(single(" jumps", 19));
  });

  it("typing the last characters ends the suggestion and schedules the next", () => {
    const s = showing("Hello", " world");
    const r = step(s, { type: "typed", text: " world", at: 5, ctx: ctx("Hello world") });
    expect(r.state.suggestion).toBeNull();
    expect(kinds(r.effects)).toEqual(["schedule"]);
  });

  it("a mismatching character dismisses it and schedules a fresh request", () => {
    const s = showing("The quick brown", " fox jumps");
    const r = step(s, { type: "typed", text: "d", at: 15, ctx: ctx("The quick brownd") });
    expect(r.state.suggestion).toBeNull();
    expect(kinds(r.effects)).toEqual(["schedule"]);
  });

  it("typing elsewhere in the document dismisses it", () => {
    const s = showing("The quick brown", " fox");
    const r = step(s, { type: "typed", text: " ", at: 3, ctx: ctx("The  quick brown", 4) });
    expect(r.state.suggestion).toBeNull();
  });
});

describe("accepting", () => {
  it("accepts all of it", () => {
    const s = showing("The quick brown", " fox jumps over");
    expect(acceptText(s, "all")).toEqual({ text: " fox jumps over", at: 15 });
    const r = step(s, { type: "accept", part: "all" });
    expect(r.state.suggestion).toBeNull();
    // accepting ends the cycle: no new request until the writer types again
    expect(kinds(r.effects)).toEqual(["unschedule"]);
  });

  it("accepts the next word with its leading space, keeping the rest", () => {
    let s = showing("The quick brown", " fox jumps over");
    expect(acceptText(s, "word")).toEqual({ text: " fox", at: 15 });
    s = step(s, { type: "accept", part: "word" }).state;
    expect(s.suggestion).toEqual(single(" jumps over", 19));
    expect(acceptText(s, "word")).toEqual({ text: " jumps", at: 19 });
    s = step(s, { type: "accept", part: "word" }).state;
    expect(s.suggestion).toEqual(single(" over", 25));
    const last = step(s, { type: "accept", part: "word" });
    expect(last.state.suggestion).toBeNull();
  });

  it("a word followed only by whitespace ends the suggestion", () => {
    const s = showing("End", " here. ");
    expect(step(s, { type: "accept", part: "word" }).state.suggestion).toBeNull();
  });

  it("accepting with nothing shown does nothing", () => {
    const s = initialState();
    expect(acceptText(s, "all")).toBeNull();
    expect(step(s, { type: "accept", part: "all" })).toEqual({ state: s, effects: [] });
  });

  it("nextWord handles leading whitespace, newlines and punctuation", () => {
    expect(nextWord(" fox jumps")).toBe(" fox");
    expect(nextWord("fox jumps")).toBe("fox");
    expect(nextWord("\n\nNext paragraph")).toBe("\n\nNext");
    expect(nextWord(", and then")).toBe(",");
    expect(nextWord("   ")).toBe("   ");
  });
});

describe("dismissing and cancelling", () => {
  it("Esc dismisses the suggestion", () => {
    const s = showing("Hi", " there");
    const r = step(s, { type: "dismiss" });
    expect(r.state.suggestion).toBeNull();
    expect(kinds(r.effects)).toEqual(["unschedule"]);
  });

  it("Esc cancels the request in flight", () => {
    const s = step(initialState(), { type: "timer", ctx: ctx("Hi") }).state;
    const r = step(s, { type: "dismiss" });
    expect(r.state.pending).toBeNull();
    expect(kinds(r.effects)).toEqual(["cancel", "unschedule"]);
  });

  it("an edit cancels the request in flight and dismisses the suggestion", () => {
    const s = step(initialState(), { type: "timer", ctx: ctx("Hello") }).state;
    const r = step(s, { type: "edited", ctx: ctx("Hell") });
    expect(r.state.pending).toBeNull();
    expect(kinds(r.effects)).toEqual(["cancel", "schedule"]);

    const shown = showing("Hello", " there");
    const e = step(shown, { type: "edited", ctx: ctx("Hell") });
    expect(e.state.suggestion).toBeNull();
    expect(kinds(e.effects)).toEqual(["schedule"]);
  });

  it("typing while a request is in flight cancels it", () => {
    const s = step(initialState(), { type: "timer", ctx: ctx("Hello") }).state;
    const r = step(s, { type: "typed", text: " ", at: 5, ctx: ctx("Hello ") });
    expect(kinds(r.effects)).toEqual(["cancel", "schedule"]);
    // and its late answer is ignored
    const late = step(r.state, { type: "response", id: 1, completion: "world", ctx: ctx("Hello ") });
    expect(late.state.suggestion).toBeNull();
  });

  it("a cursor move dismisses the suggestion", () => {
    const s = showing("Hello there", " friend");
    const r = step(s, { type: "moved", ctx: ctx("Hello there", 5) });
    expect(r.state.suggestion).toBeNull();
    expect(kinds(r.effects)).toEqual(["schedule"]);
  });

  it("a selection update that leaves the cursor in place keeps it (and the pending request)", () => {
    const s = showing("Hello there", " friend");
    expect(step(s, { type: "moved", ctx: ctx("Hello there") }).state).toBe(s);
    const p = step(initialState(), { type: "timer", ctx: ctx("Hello") }).state;
    expect(step(p, { type: "moved", ctx: ctx("Hello") }).state).toBe(p);
  });
});

describe("the autocomplete toggle", () => {
  it("disabled: no automatic requests", () => {
    const off = initialState({ enabled: false });
    const t = step(off, { type: "typed", text: "a", at: 0, ctx: ctx("a") });
    expect(kinds(t.effects)).toEqual(["unschedule"]);
    expect(step(off, { type: "timer", ctx: ctx("Hello") }).effects).toEqual([]);
  });

  it("disabled: an explicit request still works", () => {
    const off = initialState({ enabled: false });
    const r = step(off, { type: "ask", ctx: ctx("Hello") });
    expect(kinds(r.effects)).toContain("request");
  });

  it("turning it off dismisses what is shown and cancels what is pending", () => {
    const shown = showing("Hi", " there");
    const r = step(shown, { type: "enable", enabled: false });
    expect(r.state.enabled).toBe(false);
    expect(r.state.suggestion).toBeNull();
    const pending = step(initialState(), { type: "timer", ctx: ctx("Hi") }).state;
    expect(kinds(step(pending, { type: "enable", enabled: false }).effects)).toEqual(["cancel", "unschedule"]);
  });

  it("turning it on again resumes requests", () => {
    let s = step(initialState(), { type: "enable", enabled: false }).state;
    s = step(s, { type: "enable", enabled: true }).state;
    expect(s.enabled).toBe(true);
    expect(kinds(step(s, { type: "typed", text: "a", at: 0, ctx: ctx("a") }).effects)).toEqual(["schedule"]);
  });

  it("setting the same value is a no-op", () => {
    const s = initialState();
    expect(step(s, { type: "enable", enabled: true }).state).toBe(s);
  });
});

describe("a full typing session", () => {
  it("type, wait, see, type through, mismatch, wait, accept", () => {
    let doc = "";
    let s = initialState();
    const type = (ch: string) => {
      const at = doc.length;
      doc += ch;
      return run(s, { type: "typed", text: ch, at, ctx: ctx(doc) });
    };
    for (const ch of "The cat") s = type(ch).state;
    let r = run(s, { type: "timer", ctx: ctx(doc) });
    s = r.state;
    expect(r.effects[0]).toMatchObject({ kind: "request", prefix: "The cat" });
    s = run(s, { type: "response", id: s.pending!.id, completion: " sat on the mat.", ctx: ctx(doc) }).state;
    s = type(" ").state;
    s = type("s").state;
    expect(s.suggestion).toEqual(single("at on the mat.", 9));
    r = type("l"); // "The cat sl" – diverges
    s = r.state;
    expect(s.suggestion).toBeNull();
    expect(kinds(r.effects)).toEqual(["schedule"]);
    r = run(s, { type: "timer", ctx: ctx(doc) });
    s = r.state;
    s = run(s, { type: "response", id: s.pending!.id, completion: "ept all day.", ctx: ctx(doc) }).state;
    const plan = acceptText(s, "all")!;
    doc = doc.slice(0, plan.at) + plan.text + doc.slice(plan.at);
    s = run(s, { type: "accept", part: "all" }).state;
    expect(doc).toBe("The cat slept all day.");
    expect(s.suggestion).toBeNull();
    expect(s.pending).toBeNull();
  });
});

describe("helpers", () => {
  it("isShowable", () => {
    expect(isShowable(" word")).toBe(true);
    expect(isShowable(" ")).toBe(false);
    expect(isShowable(null)).toBe(false);
    expect(isShowable(undefined)).toBe(false);
  });

  it("clipPrefix keeps short text and cuts long text at a paragraph boundary", () => {
    expect(clipPrefix("short")).toBe("short");
    const long = "a".repeat(50) + "\n\n" + "b".repeat(30) + "\n\n" + "c".repeat(10);
    expect(clipPrefix(long, 60)).toBe("b".repeat(30) + "\n\n" + "c".repeat(10));
    expect(clipPrefix(long, 40)).toBe("c".repeat(10));
    // no paragraph break: a line break, else a hard cut
    expect(clipPrefix("x".repeat(20) + "\n" + "y".repeat(5), 10)).toBe("yyyyy");
    expect(clipPrefix("z".repeat(20), 8)).toBe("z".repeat(8));
  });

  it("clipPrefix's start stays put while typing", () => {
    const base = "p".repeat(100) + "\n\n" + "q".repeat(20) + "\n\n" + "r".repeat(20);
    const a = clipPrefix(base, 60);
    const b = clipPrefix(base + "s", 60);
    expect(b.startsWith(a)).toBe(true);
  });

  it("clipSuffix ends at a paragraph boundary", () => {
    expect(clipSuffix("tail")).toBe("tail");
    expect(clipSuffix("aaaa\n\nbbbbbbbb", 8)).toBe("aaaa");
    expect(clipSuffix("abcdefghijkl", 5)).toBe("abcde");
  });
});

describe("alternatives", () => {
  const doc = "The cat sat";
  const cycle = (dir: 1 | -1, d = doc) => ({ type: "cycle", dir, ctx: ctx(d) }) as const;

  it("Alt+] asks once for alternatives, keeping the suggestion up meanwhile", () => {
    const s = showing(doc, " on the mat.");
    const r = step(s, cycle(1));
    expect(r.effects).toEqual([{ kind: "alternatives", id: s.lastId + 1, prefix: doc, suffix: "", shown: [" on the mat."] }]);
    expect(r.state.suggestion?.text).toBe(" on the mat.");
    expect(optionsLabel(r.state)).toBe("1/…");
    // pressing again while they are on their way asks nothing more
    expect(step(r.state, cycle(1)).effects).toEqual([]);
  });

  it("shows the first new one, then cycles both ways and wraps", () => {
    const asked = step(showing(doc, " on the mat."), cycle(1)).state;
    const id = asked.pending!.id;
    let r = step(asked, { type: "alternatives", id, texts: [" on a rug.", " on the mat.", " down.", " down."], ctx: ctx(doc) });
    expect(r.state.suggestion?.options).toEqual([" on the mat.", " on a rug.", " down."]);
    expect(r.state.suggestion?.text).toBe(" on a rug.");
    expect(optionsLabel(r.state)).toBe("2/3");
    expect(kinds(r.effects)).toEqual(["announce"]);
    r = step(r.state, cycle(1));
    expect(optionsLabel(r.state)).toBe("3/3");
    r = step(r.state, cycle(1));
    expect(r.state.suggestion?.text).toBe(" on the mat.");
    r = step(r.state, cycle(-1));
    expect(r.state.suggestion?.text).toBe(" down.");
    // accepting takes the one shown
    expect(acceptText(r.state, "all")).toEqual({ text: " down.", at: doc.length });
  });

  it("Alt+[ first goes to the last alternative", () => {
    const asked = step(showing(doc, " on the mat."), cycle(-1)).state;
    const r = step(asked, { type: "alternatives", id: asked.pending!.id, texts: [" a.", " b."], ctx: ctx(doc) });
    expect(r.state.suggestion?.text).toBe(" b.");
  });

  it("drops answers that come after the writer moved on", () => {
    const asked = step(showing(doc, " on the mat."), cycle(1)).state;
    const id = asked.pending!.id;
    // typing through the suggestion changes the text before the cursor
    const typed = step(asked, { type: "typed", text: " ", at: doc.length, ctx: ctx(doc + " ") }).state;
    expect(typed.suggestion).toEqual(single("on the mat.", doc.length + 1));
    const r = step(typed, { type: "alternatives", id, texts: [" a."], ctx: ctx(doc + " ") });
    expect(r.state.suggestion?.options).toEqual(["on the mat."]);
    expect(r.state.pending).toBeNull();
  });

  it("no new alternatives leaves the one suggestion and says so", () => {
    const asked = step(showing(doc, " on the mat."), cycle(1)).state;
    const r = step(asked, { type: "alternatives", id: asked.pending!.id, texts: [" on the mat.", "  "], ctx: ctx(doc) });
    expect(r.state.suggestion?.options).toEqual([" on the mat."]);
    expect(optionsLabel(r.state)).toBeNull();
    expect(r.effects).toEqual([{ kind: "announce", text: "No other suggestions" }]);
  });

  it("does nothing without a suggestion", () => {
    expect(step(initialState(), cycle(1)).effects).toEqual([]);
  });
});

describe("suppression", () => {
  it("keeps automatic requests away where the context says so, but not an explicit ask", () => {
    const here: Context = { ...ctx("```\nlet x = "), suppressed: true };
    expect(step(initialState(), { type: "timer", ctx: here }).effects).toEqual([]);
    expect(kinds(step(initialState(), { type: "ask", ctx: here }).effects)).toEqual(["unschedule", "request"]);
  });
});
