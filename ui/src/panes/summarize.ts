// Summarize pane: the selection or the whole document, a length, bullets or prose; the summary
// streams in, with "chunk i of n" progress for long documents; then Insert below / Replace
// selection / Copy.

import * as api from "../api";
import { startBusy } from "../busy";
import type { AppContext } from "../context";
import { h, setChildren } from "../dom";
import { formatCount, formatDuration, wordCount } from "../format";
import { toast, toastError } from "../toast";
import type { Pane } from "./host";
import { button, copyText, countLabel, inlineError, progressBar, section, segmented, sourceChoice, toggleSwitch } from "./ui";

type LengthChoice = "short" | "medium" | "long" | "words";

/** The progress line for a summary: "Chunk 2 of 5", "Combining…", "Summarizing…". */
export function summaryProgressLabel(stage: string, done: number, total: number): string {
  if (stage === "combine") return "Combining the partial summaries…";
  if (total <= 1) return "Summarizing…";
  if (done >= total) return "Combining…";
  return countLabel("chunk", done, total);
}

export function summarizePane(ctx: AppContext): Pane {
  const source = sourceChoice("Summarize", "summarize-source", "document", () => {
    const sel = ctx.editor.selection();
    return sel.to > sel.from;
  });
  const sourceInfo = h("div", { class: "hint", "data-testid": "summarize-source-info" });

  const length = segmented<LengthChoice>(
    "Length",
    [
      { value: "short", label: "Short" },
      { value: "medium", label: "Medium" },
      { value: "long", label: "Long" },
      { value: "words", label: "Words" },
    ],
    "medium",
    "summarize-length",
  );
  const words = h("input", {
    type: "number",
    class: "input input-narrow",
    min: "10",
    max: "2000",
    step: "10",
    value: "150",
    "aria-label": "Number of words",
    "data-testid": "summarize-words",
    hidden: true,
  });
  length.onChange((v) => {
    words.hidden = v !== "words";
    if (v === "words") words.focus();
  });
  const bullets = toggleSwitch("Bullet points", false, "summarize-bullets");

  const run = button("Summarize", "summarize-run", () => void start(), "primary");
  const cancel = button("Cancel", "summarize-cancel", () => void api.cancelTask().catch(() => {}), "secondary");
  cancel.hidden = true;

  const progress = progressBar("summarize-progress");
  const error = inlineError("summarize-error");
  const output = h("div", { class: "output", "data-testid": "summarize-output", "aria-live": "polite", "aria-busy": "false" });
  const placeholder = h("div", { class: "output-empty" }, "The summary appears here as it is written.");
  const outputBox = h("div", { class: "output-box" }, placeholder, output);
  const stats = h("div", { class: "hint", "data-testid": "summarize-stats" });

  const insert = button("Insert below", "summarize-insert", () => {
    ctx.editor.insertBelow(result, target?.to ?? ctx.editor.doc.length);
    toast("Summary inserted", "success", 1800);
  });
  const replace = button("Replace selection", "summarize-replace", () => {
    if (target && target.to > target.from) ctx.editor.replace(result, target);
  });
  const copy = button("Copy", "summarize-copy", () => {
    void copyText(result).then((ok) => toast(ok ? "Copied" : "Could not copy", ok ? "success" : "error", 1500));
  }, "quiet");
  const actions = h("div", { class: "actions", "data-testid": "summarize-actions", hidden: true }, insert, replace, copy);

  let result = "";
  let running = false;
  /** The range the summary was made from. */
  let target: { from: number; to: number } | null = null;

  function refreshSource() {
    source.refresh();
    const sel = ctx.editor.selection();
    const text = source.value() === "selection" ? sel.text : ctx.editor.text();
    sourceInfo.textContent = `${formatCount(wordCount(text))} words`;
  }
  source.onChange(refreshSource);

  function setRunning(on: boolean) {
    running = on;
    run.hidden = on;
    cancel.hidden = !on;
    output.setAttribute("aria-busy", String(on));
  }

  async function start() {
    if (running) return;
    const sel = ctx.editor.selection();
    const useSelection = source.value() === "selection" && sel.to > sel.from;
    const text = useSelection ? sel.text : ctx.editor.text();
    target = useSelection ? { from: sel.from, to: sel.to } : null;
    replace.disabled = !useSelection;
    if (!text.trim()) {
      error.show("There is nothing to summarize yet: write something first.");
      return;
    }
    const len: api.SummaryLength = length.value() === "words" ? Math.max(10, Number(words.value) || 150) : (length.value() as api.SummaryLength);
    error.show(null);
    actions.hidden = true;
    result = "";
    output.textContent = "";
    placeholder.hidden = true;
    stats.textContent = "";
    progress.indeterminate("Starting…");
    setRunning(true);
    const done = startBusy("Summarizing");
    const started = performance.now();
    let tokens = 0;
    try {
      const reply = await api.summarize({ text, length: len, bullets: bullets.input.checked }, (e) => {
        if (e.event === "progress") {
          const label = summaryProgressLabel(e.data.stage, e.data.done, e.data.total);
          if (e.data.total > 1) progress.set(e.data.done, e.data.total, label);
          else progress.indeterminate(label);
        } else if (e.event === "token") {
          tokens++;
          output.append(e.data.text);
          output.scrollTop = output.scrollHeight;
        }
      });
      result = reply.summary.trim();
      setChildren(output, result);
      const secs = reply.seconds || (performance.now() - started) / 1000;
      stats.textContent = `${reply.chunks} chunk${reply.chunks === 1 ? "" : "s"} · ${formatCount(reply.inputTokens)} tokens read · ${formatDuration(secs)}`;
      if (tokens > 0 && secs > 0) ctx.reportSpeed(`${(tokens / secs).toFixed(1)} tok/s`);
      actions.hidden = !result;
    } catch (e) {
      if (api.isCancelled(e)) {
        stats.textContent = "Cancelled.";
        result = output.textContent ?? "";
        actions.hidden = !result.trim();
      } else {
        error.show(api.toApiError(e).message);
        if (!output.textContent) placeholder.hidden = false;
        if (api.toApiError(e).kind !== "unavailable") toastError(e, "Summary failed");
      }
    } finally {
      progress.hide();
      setRunning(false);
      done();
    }
  }

  const element = h(
    "div",
    {},
    section("Text", source.element, sourceInfo),
    section("Summary", length.element, words, bullets.element),
    h("div", { class: "run-row" }, run, cancel),
    progress.element,
    error.element,
    outputBox,
    stats,
    actions,
  );

  return {
    id: "summarize",
    title: "Summarize",
    element,
    onShow: () => {
      const sel = ctx.editor.selection();
      source.set(sel.to > sel.from ? "selection" : "document");
      refreshSource();
    },
    refresh: () => {
      if (!running) refreshSource();
    },
  };
}
