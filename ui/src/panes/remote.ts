// The Models pane's "Remote engine" section: an OpenAI-compatible server (vLLM, Ollama,
// llama-server, LM Studio, another Penwright) in place of the local model, for every task or
// for some (ghost text on the laptop's model, summaries on the workstation's).
// The key goes to the OS keyring through the backend; the address and model are remembered
// in the settings, the key never is. Requests are made by the Rust side: the webview's CSP
// stays closed to the network.

import * as api from "../api";
import { h, setChildren } from "../dom";
import { currentModel, modelChanged, remoteFor, useLocal, useRemote } from "../model";
import { settings, updateSettings, type RemoteSettings } from "../settings";
import { toast, toastError } from "../toast";
import { button, inlineError, section } from "./ui";

const TASK_LABELS: Record<api.TaskKind, string> = {
  autocomplete: "Autocomplete",
  summarize: "Summarize",
  translate: "Translate",
  rewrite: "Rewrite",
};

export function remoteSection(): HTMLElement {
  const url = h("input", {
    type: "url",
    class: "input",
    placeholder: "http://localhost:11434/v1",
    spellcheck: false,
    "aria-label": "Server address (with /v1)",
    "data-testid": "remote-url",
  });
  const key = h("input", {
    type: "password",
    class: "input",
    placeholder: "API key (if the server wants one)",
    autocomplete: "off",
    "aria-label": "API key",
    "data-testid": "remote-key",
  });
  const models = h("select", { class: "input", "aria-label": "Server model", "data-testid": "remote-model", hidden: true });
  // which tasks the buttons act on: every task, or one
  const scope = h("select", { class: "input", "aria-label": "For which tasks", "data-testid": "remote-tasks" });
  scope.append(h("option", { value: "all" }, "For every task"));
  for (const t of api.TASK_KINDS) scope.append(h("option", { value: t }, `For ${TASK_LABELS[t].toLowerCase()} only`));
  const scoped = (): api.TaskKind[] => (scope.value === "all" ? [...api.TASK_KINDS] : [scope.value as api.TaskKind]);
  const error = inlineError("remote-error");
  const now = h("div", { class: "hint", "data-testid": "remote-now" });
  const connect = button("Connect", "remote-connect", () => void listModels());
  const use = button("Use this model", "remote-use", () => void choose(), "primary");
  const local = button("Use the local model", "remote-local", () => void backToLocal());
  use.hidden = true;

  const saved = api.TASK_KINDS.map((t) => settings().remotes[t]).find((r) => !!r);
  if (saved) url.value = saved.baseUrl;

  function keyValue(): string | null {
    return key.value.trim() || null;
  }

  async function listModels() {
    error.show(null);
    connect.disabled = true;
    try {
      const found = await api.remoteModels(url.value.trim(), keyValue());
      if (found.length === 0) {
        error.show("The server answers but lists no models.");
        return;
      }
      setChildren(
        models,
        ...found.map((m) => h("option", { value: m.id }, m.context ? `${m.id} · context ${m.context}` : m.id)),
      );
      const remembered = saved?.model;
      if (remembered && found.some((m) => m.id === remembered)) models.value = remembered;
      models.hidden = false;
      use.hidden = false;
    } catch (e) {
      error.show(api.toApiError(e).message);
    } finally {
      connect.disabled = false;
    }
  }

  async function choose() {
    error.show(null);
    use.disabled = true;
    const tasks = scoped();
    try {
      const remote = await useRemote(url.value.trim(), models.value, keyValue(), tasks);
      const remotes: RemoteSettings = { ...settings().remotes };
      for (const t of tasks) remotes[t] = { baseUrl: remote.baseUrl, model: remote.model };
      updateSettings({ remotes });
      key.value = "";
      const which = tasks.length === api.TASK_KINDS.length ? "Every task now uses" : `${TASK_LABELS[tasks[0]]} now uses`;
      toast(`${which} ${remote.model} on ${remote.baseUrl}`, "success");
    } catch (e) {
      error.show(api.toApiError(e).message);
    } finally {
      use.disabled = false;
    }
  }

  async function backToLocal() {
    const tasks = scoped();
    try {
      await useLocal(tasks);
      const remotes: RemoteSettings = { ...settings().remotes };
      for (const t of tasks) delete remotes[t];
      updateSettings({ remotes });
    } catch (e) {
      toastError(e, "Could not switch back");
    }
  }

  function show() {
    const status = currentModel().status;
    const remotes = api.TASK_KINDS.map((t) => [t, remoteFor(status, t)] as const);
    local.hidden = remotes.every(([, r]) => !r);
    if (local.hidden) {
      setChildren(now, "Not in use: the local model answers every task.");
      return;
    }
    const keys = new Set(remotes.map(([, r]) => r?.key));
    const keyNote = keys.has("memory")
      ? "No system keyring answered: a server's key is kept until Penwright quits."
      : keys.has("keyring")
        ? "Server keys are in the system keyring."
        : "";
    setChildren(
      now,
      h(
        "ul",
        { class: "remote-tasks" },
        ...remotes.map(([t, r]) => h("li", { "data-testid": `remote-now-${t}` }, `${TASK_LABELS[t]}: `, r ? `${r.model} on ${r.baseUrl}` : "the local model")),
      ),
      keyNote ? h("p", { class: "hint" }, keyNote) : null,
    );
  }
  modelChanged.on(show);
  show();

  return section(
    "Remote engine",
    h(
      "p",
      { class: "hint" },
      "A bigger model on a workstation or a team server: any OpenAI-compatible server (vLLM, Ollama, llama-server, LM Studio, penwright serve). Your text goes to that server.",
    ),
    h("div", { class: "actions repo-row" }, url),
    h("div", { class: "actions repo-row" }, key, connect),
    h("div", { class: "actions repo-row" }, models),
    h("div", { class: "actions repo-row" }, scope, use),
    error.element,
    now,
    h("div", { class: "actions" }, local),
  );
}
