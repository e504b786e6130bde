// Rewrite pane: the selection (or the whole document) rewritten with a preset or the writer's
// own instruction, streamed block by block, then shown as a word-level diff against the
// original with Accept, Retry and Reject. Nothing in the document changes before Accept, and
// Accept is one undo step.

import * as api from "../api";
import { startBusy } from "../busy";
import type { AppContext } from "../context";
import { diffCounts, renderDiff, wordDiff } from "../diff";
import { h, setChildren } from "../dom";
import { formatDuration } from "../format";
import { toast, toastError } from "../toast";
import type { Pane } from "./host";
import { button, countLabel, inlineError, progressBar, section, sourceChoice } from "./ui";
import { joinBlocks } from "./translate";

export const PRESETS: readonly { value: api.RewritePreset; label: string }[] = [
  { value: "shorter", label: "Shorter" },
  { value: "longer", label: "Longer" },
  { value: "formal", label: "More formal" },
  { value: "casual", label: "More casual" },
  { value: "simpler", label: "Simpler" },
  { value: "grammar", label: "Fix grammar & spelling" },
  { value: "active", label: "Active voice" },
];

/** How a rewrite was asked for: a preset or free words. */
export type RewriteAsk = { preset: api.RewritePreset } | { instruction: string };

/** What the stats line says of a finished rewrite. */
export function rewriteSummary(reply: api.RewriteReply, counts: { added: number; removed: number }): string {
  const parts = [`${reply.blocks} block${reply.blocks === 1 ? "" : "s"}`, formatDuration(reply.seconds)];
  if (counts.added || counts.removed) parts.push(`+${counts.added} −${counts.removed} words`);
  else parts.push("no change");
  if (reply.kept > 0) parts.push(`${reply.kept} kept as ${reply.kept === 1 ? "it was" : "they were"} (the model's answer was no usable rewrite)`);
  return parts.join(" · ");
}

export function rewritePane(ctx: AppContext): Pane {
  const source = sourceChoice("Rewrite", "rewrite-source", "selection", () => {
    const sel = ctx.editor.selection();
    return sel.to > sel.from;
  });

  const presetButtons = PRESETS.map((p) =>
    h(
      "button",
      { type: "button", class: "chip", "data-testid": `rewrite-preset-${p.value}`, onclick: () => void start({ preset: p.value }, 0) },
      p.label,
    ),
  );
  const instruction = h("input", {
    class: "input",
    type: "text",
    maxlength: 2000,
    placeholder: "Or say how: “make it sound friendlier”",
    "aria-label": "Rewrite instruction",
    "data-testid": "rewrite-instruction",
  });
  instruction.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      askFree();
    }
  });
  const run = button("Rewrite", "rewrite-run", () => askFree(), "primary");
  const cancel = button("Cancel", "rewrite-cancel", () => void api.cancelTask().catch(() => {}));
  cancel.hidden = true;
  const progress = progressBar("rewrite-progress");
  const error = inlineError("rewrite-error");

  const output = h("div", { class: "output diff", "data-testid": "rewrite-output", "aria-live": "polite", hidden: true });
  const stats = h("div", { class: "hint", "data-testid": "rewrite-stats" });
  const accept = button("Accept", "rewrite-accept", () => acceptRewrite(), "primary");
  const retry = button("Retry", "rewrite-retry", () => void (lastAsk && start(lastAsk, attempt + 1)));
  const reject = button("Reject", "rewrite-reject", () => clear(), "quiet");
  const actions = h("div", { class: "actions", "data-testid": "rewrite-actions", hidden: true }, accept, retry, reject);

  let running = false;
  let lastAsk: RewriteAsk | null = null;
  let attempt = 0;
  // what the rewrite stands in for, and what it said
  let target: { from: number; to: number; text: string } | null = null;
  let result = "";

  function askFree() {
    const words = instruction.value.trim();
    if (!words) {
      error.show("Pick a preset, or say how the text should be rewritten.");
      instruction.focus();
      return;
    }
    void start({ instruction: words }, 0);
  }

  const refreshSource = () => source.refresh();

  function setRunning(on: boolean) {
    running = on;
    run.hidden = on;
    cancel.hidden = !on;
    for (const b of presetButtons) b.disabled = on;
    accept.disabled = on;
    retry.disabled = on;
  }

  function clear() {
    target = null;
    result = "";
    output.hidden = true;
    output.textContent = "";
    actions.hidden = true;
    stats.textContent = "";
  }

  function acceptRewrite() {
    if (!target) return;
    const now = ctx.editor.doc.sliceString(target.from, target.to);
    if (now !== target.text) {
      error.show("The text changed since it was rewritten. Retry to rewrite it as it is now.");
      return;
    }
    ctx.editor.replace(result, target);
    clear();
    toast("Rewrite accepted (undo with Ctrl+Z)", "success", 2000);
  }

  async function start(ask: RewriteAsk, nextAttempt: number) {
    if (running) return;
    let range: { from: number; to: number; text: string };
    if (nextAttempt > 0 && target) {
      range = target; // a retry rewrites the same original again
    } else {
      const sel = ctx.editor.selection();
      const useSelection = source.value() === "selection" && sel.to > sel.from;
      range = useSelection ? sel : { from: 0, to: ctx.editor.doc.length, text: ctx.editor.text() };
    }
    if (!range.text.trim()) {
      error.show("Select the text to rewrite first (or choose Whole document).");
      return;
    }
    error.show(null);
    lastAsk = ask;
    attempt = nextAttempt;
    target = range;
    result = "";
    actions.hidden = true;
    stats.textContent = "";
    output.hidden = false;
    output.classList.add("streaming");
    output.textContent = "";
    const blocks: string[] = [];
    let current = "";
    progress.indeterminate(attempt > 0 ? "Trying again…" : "Rewriting…");
    setRunning(true);
    const done = startBusy("Rewriting");
    try {
      const reply = await api.rewrite(
        {
          text: range.text,
          preset: "preset" in ask ? ask.preset : null,
          instruction: "instruction" in ask ? ask.instruction : null,
          attempt,
        },
        (e) => {
          if (e.event === "progress") {
            if (e.data.total > 1 && e.data.done < e.data.total) progress.set(e.data.done, e.data.total, countLabel("paragraph", e.data.done, e.data.total));
          } else if (e.event === "block") {
            blocks[e.data.index] = e.data.text;
            current = "";
            setChildren(output, joinBlocks(blocks));
          } else if (e.event === "token") {
            current += e.data.text;
            setChildren(output, joinBlocks([...blocks, current]));
          }
        },
      );
      result = reply.text;
      const segments = wordDiff(range.text, result);
      output.classList.remove("streaming");
      setChildren(output, ...renderDiff(segments));
      stats.textContent = rewriteSummary(reply, diffCounts(segments));
      actions.hidden = false;
      accept.disabled = result === range.text;
    } catch (e) {
      output.classList.remove("streaming");
      if (api.isCancelled(e)) {
        clear();
        stats.textContent = "Cancelled. The document is unchanged.";
      } else {
        clear();
        error.show(api.toApiError(e).message);
        if (api.toApiError(e).kind !== "unavailable") toastError(e, "Rewrite failed");
      }
    } finally {
      progress.hide();
      setRunning(false);
      done();
    }
  }

  const pane: Pane = {
    id: "rewrite",
    title: "Rewrite",
    element: h(
      "div",
      {},
      section("Text", source.element),
      section("How", h("div", { class: "chips", "data-testid": "rewrite-presets" }, presetButtons), h("div", { class: "run-row" }, instruction, run, cancel)),
      progress.element,
      error.element,
      output,
      stats,
      actions,
    ),
    onShow: () => {
      const sel = ctx.editor.selection();
      source.set(sel.to > sel.from ? "selection" : "document");
      refreshSource();
    },
    refresh: () => {
      if (!running) refreshSource();
    },
  };
  return pane;
}
