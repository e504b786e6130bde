// Penwright's front end: builds the window's layout and wires the editor, the documents, the
// panes, the status bar and the shortcuts together.

import "@fontsource-variable/literata/wght.css";
import "@fontsource-variable/literata/wght-italic.css";
import "@fontsource-variable/inter/wght.css";
import "./styles.css";

import * as api from "./api";
import { banner } from "./banner";
import { startBusy } from "./busy";
import type { AppContext } from "./context";
import { h } from "./dom";
import { Documents } from "./documents";
import { Editor } from "./editor";
import { baseName, formatTime, wordCount } from "./format";
import { HelpOverlay } from "./help";
import { ensureUsableLanguage } from "./locale";
import { currentModel, loadModel, refreshStatus, remoteFor, remoteTasks, useRemote } from "./model";
import { finetunePane } from "./panes/finetune";
import { PaneHost } from "./panes/host";
import { modelsPane } from "./panes/models";
import { resumeServing } from "./panes/serve";
import { summarizePane } from "./panes/summarize";
import { rewritePane } from "./panes/rewrite";
import { translatePane } from "./panes/translate";
import { suppressedBy } from "./ghost/suppress";
import { onSettings, remoteGroups, settings, updateSettings, useTextAfterCursor } from "./settings";
import { installShortcuts, isMac } from "./shortcuts";
import { StatusBar } from "./statusbar";
import { currentTheme, installTheme, toggleTheme } from "./theme";
import { toast, toastError } from "./toast";
import { TopBar } from "./topbar";
import { defaultModelBanner } from "./welcome";

ensureUsableLanguage();

/** A failed suggestion: ghost text shows nothing and the status bar says why (until the next
 *  suggestion arrives). A cancelled request or a page outside the app is no failure. */
function suggestionErrorReporter(showReason: (reason: string) => void): (e: unknown) => void {
  return (e) => {
    const err = api.toApiError(e);
    if (err.kind === "unavailable" || err.kind === "cancelled") return;
    showReason(err.message);
  };
}

function recoveryBanner(recovery: api.Recovery, documents: Documents, onDone: () => void): HTMLElement {
  const where = recovery.path ? ` (${baseName(recovery.path)})` : "";
  const box = banner("recovery-banner", `Recovered unsaved text${where} from ${formatTime(recovery.savedAt)}.`, [
    h("button", { class: "btn btn-primary", "data-testid": "recovery-restore", onclick: () => finish(true) }, "Restore"),
    h("button", { class: "btn btn-quiet", "data-testid": "recovery-discard", onclick: () => finish(false) }, "Discard"),
  ]);
  function finish(restore: boolean) {
    if (restore) documents.restore(recovery);
    else documents.discardRecovery();
    box.remove();
    onDone();
  }
  return box;
}

async function start(): Promise<void> {
  installTheme();
  const root = document.getElementById("app") ?? document.body.appendChild(h("div", { id: "app" }));
  root.classList.add("app");

  const panes = new PaneHost();
  const help = new HelpOverlay();
  const editorHost = h("div", { class: "editor-host" });

  const toggleAutocomplete = () => updateSettings({ autocomplete: !settings().autocomplete });
  const status = new StatusBar(toggleAutocomplete);

  let wordTimer: ReturnType<typeof setTimeout> | null = null;
  const countWords = () => {
    if (wordTimer) clearTimeout(wordTimer);
    wordTimer = setTimeout(() => {
      const sel = editor.selection();
      status.setWords(wordCount(editor.text()), sel.to > sel.from ? wordCount(sel.text) : undefined);
    }, 120);
  };

  // how suggestions run: the length setting, and the text after the cursor where the model can
  // use it (a remote engine's abilities are unknown: "auto" leaves it off there)
  const suggestionOptions = (): api.SuggestionOptions => {
    const s = settings();
    const status = currentModel().status;
    const hasFim = !remoteFor(status, "autocomplete") && !!status.model?.fillInTheMiddle;
    return { length: s.suggestionLength, textAfterCursor: useTextAfterCursor(s.textAfterCursor, hasFim) };
  };
  let endSuggesting: (() => void) | null = null;
  const editor: Editor = new Editor(editorHost, {
    ghost: {
      complete: async (request) => {
        if (currentModel().phase.kind !== "ready") return null;
        return api.complete({ ...request, options: suggestionOptions() });
      },
      alternatives: async (request) => {
        if (currentModel().phase.kind !== "ready") return null;
        const reply = await api.completeAlternatives({ ...request, options: suggestionOptions(), count: 2 });
        if (reply) status.setSpeed(`alternatives in ${Math.round(reply.ms)} ms`);
        return reply;
      },
      suppressed: (prefix, suffix) => suppressedBy(prefix, suffix, settings().suppress) !== null,
      subtle: () => settings().subtle,
      cancel: () => void api.cancelComplete().catch(() => {}),
      debounceMs: () => settings().debounceMs,
      enabled: () => settings().autocomplete,
      onError: suggestionErrorReporter((reason) => status.setSuggestionProblem(reason)),
      onReply: (reply) => {
        status.setSuggestionProblem(null);
        const r = reply as api.CompletionReply;
        if (typeof r.totalMs === "number") status.setSpeed(`suggestion in ${Math.round(r.totalMs)} ms`);
      },
      onBusy: (busy) => {
        if (busy) endSuggesting ??= startBusy("Suggesting");
        else {
          endSuggesting?.();
          endSuggesting = null;
        }
      },
      mac: isMac(),
    },
    onDocChange: () => {
      documents.docChanged();
      countWords();
      panes.refreshActive();
    },
    onSelectionChange: () => {
      countWords();
      panes.refreshActive();
    },
  });
  // the encoding questions are asked in the window (a banner), not in a native dialog
  const ask = (message: string, yes: string, testid: string) =>
    new Promise<boolean>((resolve) => {
      const done = (answer: boolean) => {
        question.remove();
        resolve(answer);
      };
      const question = banner(
        "question-banner",
        message,
        [
          h("button", { class: "btn btn-primary", "data-testid": testid, onclick: () => done(true) }, yes),
          h("button", { class: "btn btn-quiet", "data-testid": "question-cancel", onclick: () => done(false) }, "Cancel"),
        ],
        "alertdialog",
      );
      bannerSlot.append(question);
    });
  const documents = new Documents(editor, ask);

  const ctx: AppContext = { editor, documents, panes, reportSpeed: (t) => status.setSpeed(t) };
  panes.add(summarizePane(ctx));
  panes.add(translatePane(ctx));
  panes.add(rewritePane(ctx));
  panes.add(finetunePane(ctx));
  panes.add(modelsPane(ctx));

  const topbar = new TopBar({
    newDocument: () => void documents.newDocument(),
    open: (path) => void documents.open(path),
    save: () => void documents.save(),
    saveAs: () => void documents.saveAs(),
    togglePane: (id) => panes.toggle(id),
    toggleTheme,
    help: () => help.toggle(),
    recentFiles: () => documents.recentFiles(),
  });

  const bannerSlot = h("div", { class: "banner-slot" });
  root.replaceChildren(
    topbar.element,
    bannerSlot,
    h("main", { class: "workspace" }, h("div", { class: "editor-column" }, editorHost), panes.element),
    status.element,
    help.element,
  );

  documents.changed.on((s) => topbar.showDocument(s));
  topbar.showDocument(documents.state());
  document.title = "Untitled — Penwright";
  panes.changed.on((id) => {
    topbar.showPane(id);
    if (id === null) editor.focus();
  });
  topbar.showTheme(currentTheme());
  onSettings((s, changed) => {
    if ("theme" in changed) topbar.showTheme(currentTheme());
    if ("autocomplete" in changed) {
      editor.setAutocomplete(s.autocomplete);
      toast(s.autocomplete ? "Autocomplete on" : "Autocomplete off", "info", 1500);
    }
    if ("subtle" in changed) editor.setSubtle(s.subtle);
    if ("suggestionLength" in changed || "textAfterCursor" in changed || "suppress" in changed) editor.dismissSuggestion();
  });
  matchMedia?.("(prefers-color-scheme: dark)").addEventListener?.("change", () => topbar.showTheme(currentTheme()));
  status.setWords(0);

  installShortcuts({
    new: () => void documents.newDocument(),
    open: () => void documents.open(),
    save: () => void documents.save(),
    saveAs: () => void documents.saveAs(),
    summarize: () => panes.toggle("summarize"),
    translate: () => panes.toggle("translate"),
    rewrite: () => panes.toggle("rewrite"),
    finetune: () => panes.toggle("finetune"),
    models: () => panes.toggle("models"),
    suggest: () => editor.requestSuggestion(),
    toggleAutocomplete,
    help: () => help.toggle(),
    // Escape closes overlays and menus; otherwise the editor gets it (dismisses a suggestion)
    escape: () => help.close() || topbar.closeMenu() || status.closePopover(),
  });

  editor.focus();

  // -- documents: close guard, autosave, recovery ----------------------------------------------
  void documents.guardClose().catch(() => {});
  const recovery = await documents.takeRecovery();
  if (recovery) {
    bannerSlot.append(recoveryBanner(recovery, documents, () => editor.focus()));
  }
  documents.startAutosave();

  // -- the model ---------------------------------------------------------------------------------
  const appStatus = await refreshStatus();
  if (appStatus && !appStatus.model) {
    try {
      await loadModel(null, settings().device);
    } catch (e) {
      // first run: the default model is not here yet; offer it
      const offer = api.toApiError(e).kind === "not_installed" ? await defaultModelBanner({ load: () => loadModel(null, settings().device).then(() => {}), chooseAnother: () => panes.show("models") }).catch(() => null) : null;
      if (offer) bannerSlot.append(offer);
      else toastError(e, "Could not load the model");
    }
  }
  // the app's own server, when the writer left it on
  if (currentModel().status.model) await resumeServing();
  // the remote engines chosen last time, task by task (their keys from the keyring); the
  // local model stays loaded to answer if a server is gone
  if (appStatus && remoteTasks(appStatus).length === 0) {
    for (const group of remoteGroups(settings().remotes)) {
      try {
        await useRemote(group.baseUrl, group.model, null, group.tasks);
      } catch (e) {
        toastError(e, `The remote engine at ${group.baseUrl} did not answer; the local model does ${group.tasks.join(", ")}`);
      }
    }
  }
}

start().catch((e) => {
  // never leave a blank window: say what happened
  console.error(e);
  toast(`Penwright could not start cleanly: ${api.toApiError(e).message}`, "error", 15_000);
});
