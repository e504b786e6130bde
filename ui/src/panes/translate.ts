// Translate pane: target (and optional source) language, the selection or the whole document;
// translated Markdown blocks stream in beside the source (the panel widens); then Replace /
// Insert / Open as a new document. An honest notice when the model is the English-only default.

import * as api from "../api";
import { startBusy } from "../busy";
import type { AppContext } from "../context";
import { h, setChildren } from "../dom";
import { formatDuration } from "../format";
import { currentModel, isEnglishOnlyDefault, modelChanged, remoteFor } from "../model";
import { toast, toastError } from "../toast";
import type { Pane } from "./host";
import { button, countLabel, inlineError, progressBar, section, sourceChoice } from "./ui";

export const LANGUAGES: readonly { code: string; name: string }[] = [
  { code: "fr", name: "French" },
  { code: "de", name: "German" },
  { code: "es", name: "Spanish" },
  { code: "it", name: "Italian" },
  { code: "pt", name: "Portuguese" },
  { code: "nl", name: "Dutch" },
  { code: "sv", name: "Swedish" },
  { code: "da", name: "Danish" },
  { code: "pl", name: "Polish" },
  { code: "cs", name: "Czech" },
  { code: "ru", name: "Russian" },
  { code: "uk", name: "Ukrainian" },
  { code: "tr", name: "Turkish" },
  { code: "el", name: "Greek" },
  { code: "ar", name: "Arabic" },
  { code: "hi", name: "Hindi" },
  { code: "ja", name: "Japanese" },
  { code: "ko", name: "Korean" },
  { code: "zh", name: "Chinese" },
  { code: "vi", name: "Vietnamese" },
  { code: "id", name: "Indonesian" },
  { code: "en", name: "English" },
];

const LAST_TARGET = "penwright.translate.to";


/** The text shown while blocks stream in: finished blocks in order, blank-line separated. */
export function joinBlocks(blocks: readonly (string | undefined)[]): string {
  return blocks.filter((b): b is string => typeof b === "string" && b.length > 0).join("\n\n");
}

function languageSelect(testid: string, label: string, withAuto: boolean, initial: string): HTMLSelectElement {
  const select = h("select", { class: "input", "data-testid": testid, "aria-label": label });
  if (withAuto) select.append(h("option", { value: "" }, "Detect automatically"));
  for (const l of LANGUAGES) select.append(h("option", { value: l.code }, `${l.name} (${l.code})`));
  select.value = initial;
  return select;
}

function storedTarget(): string {
  try {
    const v = localStorage.getItem(LAST_TARGET);
    if (v && LANGUAGES.some((l) => l.code === v)) return v;
  } catch {
    // no storage
  }
  return "fr";
}

export function translatePane(ctx: AppContext): Pane {
  const to = languageSelect("translate-to", "Translate into", false, storedTarget());
  to.addEventListener("change", () => {
    try {
      localStorage.setItem(LAST_TARGET, to.value);
    } catch {
      // no storage
    }
  });
  const from = languageSelect("translate-from", "Source language", true, "");

  const notice = h(
    "div",
    { class: "notice", "data-testid": "translate-notice", hidden: true },
    h("strong", {}, "The active model is English-only. "),
    "SmolLM2-135M, the small default model, translates poorly. For real translations, install a multilingual model such as Qwen2.5-Instruct from the Models pane. ",
    h("button", { type: "button", class: "link-btn", "data-testid": "translate-open-models", onclick: () => ctx.panes.show("models") }, "Open Models"),
  );
  const updateNotice = () => {
    const status = currentModel().status;
    notice.hidden = !!remoteFor(status, "translate") || !isEnglishOnlyDefault(status.model);
  };
  modelChanged.on(updateNotice);
  updateNotice();

  const source = sourceChoice("Translate", "translate-source", "document", () => {
    const sel = ctx.editor.selection();
    return sel.to > sel.from;
  });

  const run = button("Translate", "translate-run", () => void start(), "primary");
  const cancel = button("Cancel", "translate-cancel", () => void api.cancelTask().catch(() => {}));
  cancel.hidden = true;
  const progress = progressBar("translate-progress");
  const error = inlineError("translate-error");

  const sourceView = h("div", { class: "output output-source", "data-testid": "translate-source-text" });
  const output = h("div", { class: "output", "data-testid": "translate-output", "aria-live": "polite" });
  const outputHead = h("div", { class: "compare-head", "data-testid": "translate-output-head" }, "Translation");
  const compare = h(
    "div",
    { class: "compare", "data-testid": "translate-compare", hidden: true },
    h("div", { class: "compare-col" }, h("div", { class: "compare-head" }, "Original"), sourceView),
    h("div", { class: "compare-col" }, outputHead, output),
  );
  const stats = h("div", { class: "hint", "data-testid": "translate-stats" });

  let result = "";
  let running = false;
  let target: { from: number; to: number } | null = null;

  const replaceBtn = button("Replace", "translate-replace", () => {
    if (target) ctx.editor.replace(result, target);
    else ctx.editor.replace(result, { from: 0, to: ctx.editor.doc.length });
    toast("Replaced with the translation", "success", 1800);
  });
  const insertBtn = button("Insert below", "translate-insert", () => {
    ctx.editor.insertBelow(result, target?.to ?? ctx.editor.doc.length);
  });
  const newDocBtn = button("Open as new document", "translate-new", () => void ctx.documents.openAsNew(result), "quiet");
  const actions = h("div", { class: "actions", "data-testid": "translate-actions", hidden: true }, replaceBtn, insertBtn, newDocBtn);

  const refreshSource = () => source.refresh();

  const pane: Pane = {
    id: "translate",
    title: "Translate",
    element: h(
      "div",
      {},
      notice,
      section(
        "Languages",
        h(
          "div",
          { class: "field-row" },
          h("label", { class: "field" }, h("span", { class: "field-label" }, "Into"), to),
          h("label", { class: "field" }, h("span", { class: "field-label" }, "From"), from),
        ),
      ),
      section("Text", source.element),
      h("div", { class: "run-row" }, run, cancel),
      progress.element,
      error.element,
      compare,
      stats,
      actions,
    ),
    // side by side needs room: the panel widens once there is something to compare
    wide: () => !compare.hidden,
    onShow: () => {
      const sel = ctx.editor.selection();
      source.set(sel.to > sel.from ? "selection" : "document");
      refreshSource();
      updateNotice();
    },
    refresh: () => {
      if (!running) refreshSource();
    },
  };

  function setRunning(on: boolean) {
    running = on;
    run.hidden = on;
    cancel.hidden = !on;
  }

  async function start() {
    if (running) return;
    const sel = ctx.editor.selection();
    const useSelection = source.value() === "selection" && sel.to > sel.from;
    const text = useSelection ? sel.text : ctx.editor.text();
    target = useSelection ? { from: sel.from, to: sel.to } : null;
    if (!text.trim()) {
      error.show("There is nothing to translate yet.");
      return;
    }
    error.show(null);
    actions.hidden = true;
    result = "";
    const blocks: string[] = [];
    sourceView.textContent = text;
    output.textContent = "";
    const lang = LANGUAGES.find((l) => l.code === to.value);
    outputHead.textContent = lang ? lang.name : "Translation";
    compare.hidden = false;
    ctx.panes.relayout();
    stats.textContent = "";
    progress.indeterminate("Starting…");
    setRunning(true);
    const done = startBusy("Translating");
    try {
      const reply = await api.translate({ text, to: to.value, from: from.value || null }, (e) => {
        if (e.event === "progress") {
          if (e.data.total > 1 && e.data.done < e.data.total) progress.set(e.data.done, e.data.total, countLabel("block", e.data.done, e.data.total));
          else progress.indeterminate("Translating…");
        } else if (e.event === "block") {
          blocks[e.data.index] = e.data.text;
          setChildren(output, joinBlocks(blocks));
          output.scrollTop = output.scrollHeight;
        } else if (e.event === "token") {
          output.append(e.data.text);
        }
      });
      result = reply.text;
      setChildren(output, result);
      stats.textContent = `${reply.blocks} block${reply.blocks === 1 ? "" : "s"} · ${formatDuration(reply.seconds)}`;
      actions.hidden = !result.trim();
    } catch (e) {
      if (api.isCancelled(e)) {
        stats.textContent = "Cancelled.";
      } else {
        error.show(api.toApiError(e).message);
        if (api.toApiError(e).kind !== "unavailable") toastError(e, "Translation failed");
      }
      if (!output.textContent) {
        compare.hidden = true;
        ctx.panes.relayout();
      }
    } finally {
      progress.hide();
      setRunning(false);
      done();
    }
  }

  return pane;
}
