// Word-level differences between a text and its rewrite (jsdiff), as segments the rewrite
// pane marks up: kept words plain, removed ones struck through, added ones highlighted.

import { diffWordsWithSpace } from "diff";
import { h } from "./dom";

export type SegmentKind = "same" | "added" | "removed";

export interface Segment {
  kind: SegmentKind;
  text: string;
}

/** The word-level edit from `before` to `after`; a removal comes before the addition that replaces it. */
export function wordDiff(before: string, after: string): Segment[] {
  const out: Segment[] = [];
  for (const part of diffWordsWithSpace(before, after)) {
    const kind: SegmentKind = part.added ? "added" : part.removed ? "removed" : "same";
    const last = out[out.length - 1];
    if (last && last.kind === kind) last.text += part.value;
    else out.push({ kind, text: part.value });
  }
  return out;
}

/** The text on one side of a diff: the original (`before`) or the rewrite (`after`). */
export function side(segments: readonly Segment[], which: "before" | "after"): string {
  const skip: SegmentKind = which === "before" ? "added" : "removed";
  return segments
    .filter((s) => s.kind !== skip)
    .map((s) => s.text)
    .join("");
}

const words = (text: string) => text.split(/\s+/).filter((w) => w.length > 0).length;

/** Words added and removed. */
export function diffCounts(segments: readonly Segment[]): { added: number; removed: number } {
  let added = 0;
  let removed = 0;
  for (const s of segments) {
    if (s.kind === "added") added += words(s.text);
    else if (s.kind === "removed") removed += words(s.text);
  }
  return { added, removed };
}

/** The diff as marked-up text: `<del>` for removed words, `<ins>` for added ones. */
export function renderDiff(segments: readonly Segment[]): Node[] {
  return segments.map((s) => {
    if (s.kind === "same") return document.createTextNode(s.text);
    return h(s.kind === "added" ? "ins" : "del", { class: `diff-${s.kind}` }, s.text);
  });
}
