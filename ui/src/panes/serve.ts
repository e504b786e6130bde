// The Models pane's "Serve this model" section: the app as an OpenAI-compatible server, so
// an editor plugin, a script or Penwright on another computer can use the model loaded here.
// Off by default; it always wants its key, and listens on this computer only unless the
// writer lets the network in.

import * as api from "../api";
import { h } from "../dom";
import { Emitter } from "../events";
import { modelChanged } from "../model";
import { settings, updateSettings } from "../settings";
import { toast } from "../toast";
import { button, copyText, inlineError, section, toggleSwitch } from "./ui";

/** The server started or stopped outside the section (at start-up). */
const serveChanged = new Emitter<api.ServeStatus | null>();

export function serveSection(): HTMLElement {
  const saved = settings().serve;
  const port = h("input", {
    type: "number",
    class: "input port-input",
    min: "0",
    max: "65535",
    value: String(saved.port),
    "aria-label": "Port (0: any free port)",
    "data-testid": "serve-port",
  });
  const network = toggleSwitch("Let other computers on the network connect", saved.network, "serve-network", () => void restartIfOn());
  const onOff = toggleSwitch("Serve this model to other apps", false, "serve-on", (on) => void (on ? start() : stop()));
  const error = inlineError("serve-error");
  const address = h("code", { "data-testid": "serve-address" });
  const key = h("code", { "data-testid": "serve-key" });
  const keyNote = h("span", { class: "hint" });
  const copyUrl = button("Copy address", "serve-copy-address", () => void copy(address.textContent ?? "", "Address"), "quiet");
  const copyKey = button("Copy key", "serve-copy-key", () => void copy(key.textContent ?? "", "Key"), "quiet");
  const details = h(
    "div",
    { class: "serve-details", "data-testid": "serve-details", hidden: true },
    h("p", { class: "hint" }, "Address: ", address, " ", copyUrl),
    h("p", { class: "hint" }, "Key: ", key, " ", copyKey, " ", keyNote),
    h("p", { class: "hint", "data-testid": "serve-model" }),
  );

  async function copy(text: string, what: string) {
    const ok = await copyText(text);
    toast(ok ? `${what} copied` : "Could not copy", ok ? "success" : "error", 1500);
  }

  function portValue(): number | null {
    const n = Number(port.value);
    return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : null;
  }

  function show(status: api.ServeStatus | null) {
    onOff.input.checked = !!status;
    details.hidden = !status;
    if (!status) return;
    address.textContent = status.baseUrl;
    key.textContent = status.apiKey;
    keyNote.textContent = status.keyKept === "keyring" ? "(kept in the system keyring)" : "(no system keyring answered: a new key next time Penwright starts)";
    const model = details.querySelector<HTMLElement>("[data-testid=serve-model]");
    if (model)
      model.textContent = status.network
        ? `Serving ${status.model}. Other computers use this computer's network address with port ${new URL(status.baseUrl).port}, and the key.`
        : `Serving ${status.model} to programs on this computer.`;
  }

  async function start() {
    error.show(null);
    const p = portValue();
    if (p === null) {
      error.show("The port is a number from 0 to 65535 (0: any free port).");
      onOff.input.checked = false;
      return;
    }
    try {
      const status = await api.serveStart(p, network.input.checked);
      updateSettings({ serve: { on: true, port: p, network: network.input.checked } });
      show(status);
    } catch (e) {
      error.show(api.toApiError(e).message);
      show(null);
    }
  }

  async function stop() {
    error.show(null);
    try {
      await api.serveStop();
    } finally {
      updateSettings({ serve: { ...settings().serve, on: false, network: network.input.checked } });
      show(null);
    }
  }

  async function restartIfOn() {
    if (onOff.input.checked) await start();
    else updateSettings({ serve: { ...settings().serve, network: network.input.checked } });
  }

  // the backend restarts the server with a newly loaded model: read back what it serves
  const refresh = () => void api.serveStatus().then(show, () => show(null));
  modelChanged.on((s) => {
    if (s.phase.kind === "ready") refresh();
  });
  serveChanged.on(show);
  refresh();

  return section(
    "Serve this model",
    h(
      "p",
      { class: "hint" },
      "Other apps that speak the OpenAI API (editor plugins, scripts, Penwright on another computer) can use the model loaded here. They need the address and the key.",
    ),
    onOff.element,
    h("div", { class: "actions repo-row" }, h("label", { class: "hint" }, "Port ", port)),
    network.element,
    error.element,
    details,
  );
}

/** Turns the server on at start when the writer left it on (after the model loaded). */
export async function resumeServing(): Promise<void> {
  const s = settings().serve;
  if (!s.on) return;
  try {
    serveChanged.emit(await api.serveStart(s.port, s.network));
  } catch (e) {
    toast(`Could not serve the model on port ${s.port}: ${api.toApiError(e).message}`, "error", 8000);
  }
}
