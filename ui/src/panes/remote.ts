// The Models pane's "Remote engine" section: an OpenAI-compatible server (vLLM, Ollama,
// llama-server, LM Studio, another Penwright) in place of the local model for every task.
// The key goes to the OS keyring through the backend; the address and model are remembered
// in the settings, the key never is. Requests are made by the Rust side: the webview's CSP
// stays closed to the network.

import * as api from "../api";
import { h, setChildren } from "../dom";
import { currentModel, modelChanged, useLocal, useRemote } from "../model";
import { settings, updateSettings } from "../settings";
import { toast, toastError } from "../toast";
import { button, inlineError, section } from "./ui";

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
  const error = inlineError("remote-error");
  const now = h("p", { class: "hint", "data-testid": "remote-now" });
  const connect = button("Connect", "remote-connect", () => void listModels());
  const use = button("Use this model", "remote-use", () => void choose(), "primary");
  const local = button("Use the local model", "remote-local", () => void backToLocal());
  use.hidden = true;

  const saved = settings().remote;
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
      const remembered = settings().remote?.model;
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
    try {
      const remote = await useRemote(url.value.trim(), models.value, keyValue());
      updateSettings({ remote: { baseUrl: remote.baseUrl, model: remote.model } });
      key.value = "";
      toast(`Every task now uses ${remote.model} on ${remote.baseUrl}`, "success");
    } catch (e) {
      error.show(api.toApiError(e).message);
    } finally {
      use.disabled = false;
    }
  }

  async function backToLocal() {
    try {
      await useLocal();
      updateSettings({ remote: null });
    } catch (e) {
      toastError(e, "Could not switch back");
    }
  }

  function show() {
    const r = currentModel().status.remote;
    local.hidden = !r;
    now.textContent = r
      ? `In use: ${r.model} on ${r.baseUrl}. ${
          r.key === "keyring" ? "Its key is in the system keyring." : r.key === "memory" ? "No system keyring answered: its key is kept until Penwright quits." : ""
        }`
      : "Not in use: the local model answers.";
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
    h("div", { class: "actions repo-row" }, models, use),
    error.element,
    now,
    h("div", { class: "actions" }, local),
  );
}
