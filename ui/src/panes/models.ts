// Models pane: the device models run on (auto / GPU / CPU, and why), the installed models
// (size, architecture, quantization; Use), catalog suggestions to download (progress, Pause,
// Resume, Cancel), and importing a local GGUF file or Hugging Face folder.

import * as api from "../api";
import { startBusy } from "../busy";
import type { AppContext } from "../context";
import { pickPaths } from "../dialogs";
import { h, setChildren } from "../dom";
import { baseName, formatBytes, memoryEstimate } from "../format";
import { currentModel, loadModel, modelChanged } from "../model";
import { settings, updateSettings } from "../settings";
import { toast, toastError } from "../toast";
import type { Pane } from "./host";
import { button, inlineError, progressBar, section, segmented } from "./ui";

const LANGUAGE_NAMES: Record<string, string> = {
  en: "English", fr: "French", de: "German", es: "Spanish", it: "Italian", pt: "Portuguese", nl: "Dutch",
  ru: "Russian", ja: "Japanese", zh: "Chinese", ko: "Korean", ar: "Arabic", vi: "Vietnamese", th: "Thai",
};

/** "English only", "29 languages", "English, French". */
export function languagesLabel(languages: string[]): string {
  if (languages.length === 0) return "";
  if (languages.length === 1) return `${LANGUAGE_NAMES[languages[0]] ?? languages[0]} only`;
  if (languages.length <= 3) return languages.map((l) => LANGUAGE_NAMES[l] ?? l).join(", ");
  return `${languages.length} languages`;
}

interface DownloadState {
  name: string;
  paused: boolean;
  done: number;
  total: number;
  file: string;
}

export function modelsPane(_ctx: AppContext): Pane {
  // -- device --------------------------------------------------------------------------------
  const device = segmented<api.DeviceChoice>(
    "Device",
    [
      { value: "auto", label: "Automatic" },
      { value: "gpu", label: "GPU" },
      { value: "cpu", label: "CPU" },
    ],
    settings().device,
    "models-device",
  );
  const deviceReason = h("p", { class: "hint", "data-testid": "models-device-reason" });
  const deviceNow = h("p", { class: "hint", "data-testid": "models-device-now" });
  device.onChange((choice) => {
    updateSettings({ device: choice });
    const active = currentModel().status.model;
    if (active) void use(active.path, active.name);
  });

  async function refreshDevices() {
    try {
      const d = await api.devices();
      const gpuBtn = device.element.querySelector<HTMLButtonElement>('[data-value="gpu"]');
      if (gpuBtn) {
        gpuBtn.disabled = !d.gpu;
        gpuBtn.title = d.gpu ? `${d.gpu.name} (${d.gpu.backend})` : "No usable GPU";
      }
      setChildren(
        deviceReason,
        d.gpu ? `GPU: ${d.gpu.name} (${d.gpu.backend}) · CPU: ${d.cpuThreads} threads. ` : `CPU: ${d.cpuThreads} threads. `,
        h("span", { class: "reason" }, d.reason),
      );
    } catch (e) {
      const err = api.toApiError(e);
      deviceReason.textContent = err.kind === "unavailable" ? "Device information appears in the app." : err.message;
    }
  }

  function showDeviceNow() {
    const d = currentModel().status.device;
    deviceNow.textContent = d ? `Running on ${d.kind === "gpu" ? "the GPU" : "the CPU"}: ${d.name}. ${d.reason}` : "";
    deviceNow.hidden = !d;
  }
  modelChanged.on(showDeviceNow);

  // -- installed and catalog -----------------------------------------------------------------
  const installed = h("ul", { class: "card-list", "data-testid": "models-installed" });
  const catalogList = h("ul", { class: "card-list", "data-testid": "models-catalog" });
  const error = inlineError("models-error");
  let download: DownloadState | null = null;
  const downloadBar = progressBar("models-progress");

  function meta(m: api.ModelEntry): string {
    return [m.architecture, m.quantization, formatBytes(m.sizeBytes), memoryEstimate(m.sizeBytes), languagesLabel(m.languages)].filter(Boolean).join(" · ");
  }

  function installedCard(m: api.ModelEntry): HTMLElement {
    const useBtn = button(m.active ? "In use" : "Use", "models-use", () => void use(m.path, m.displayName), m.active ? "quiet" : "secondary");
    useBtn.disabled = m.active;
    return h(
      "li",
      { class: `card${m.active ? " active" : ""}`, "data-testid": "models-installed-item", "data-name": m.name },
      h(
        "div",
        { class: "card-main" },
        h("div", { class: "card-title" }, m.displayName, m.isDefault ? h("span", { class: "badge muted" }, "Default") : null, m.active ? h("span", { class: "badge" }, "Active") : null),
        h("div", { class: "card-meta" }, meta(m)),
        m.description ? h("div", { class: "card-desc" }, m.description) : null,
      ),
      useBtn,
    );
  }

  function catalogCard(m: api.ModelEntry): HTMLElement {
    const mine = download?.name === m.name ? download : null;
    const controls: HTMLElement[] = [];
    if (!mine) {
      const b = button("Download", "models-download", () => void startDownload(m.name));
      b.disabled = !!download;
      controls.push(b);
    } else if (mine.paused) {
      controls.push(button("Resume", "models-resume", () => void startDownload(m.name), "primary"));
      controls.push(button("Cancel", "models-cancel", () => cancelDownload(), "quiet"));
    } else {
      controls.push(button("Pause", "models-pause", () => void pauseDownload()));
      controls.push(button("Cancel", "models-cancel", () => cancelDownload(), "quiet"));
    }
    return h(
      "li",
      { class: "card", "data-testid": "models-catalog-item", "data-name": m.name },
      h(
        "div",
        { class: "card-main" },
        h("div", { class: "card-title" }, m.displayName),
        h("div", { class: "card-meta" }, meta(m)),
        m.description ? h("div", { class: "card-desc" }, m.description) : null,
        mine ? downloadBar.element : null,
      ),
      h("div", { class: "card-actions" }, controls),
    );
  }

  let installedModels: api.ModelEntry[] = [];
  let catalogModels: api.ModelEntry[] = [];

  function render() {
    setChildren(installed, installedModels.length ? installedModels.map(installedCard) : h("li", { class: "empty" }, "No models installed yet."));
    setChildren(catalogList, catalogModels.length ? catalogModels.map(catalogCard) : h("li", { class: "empty" }, "Every catalog model is installed."));
  }

  async function refresh() {
    try {
      [installedModels, catalogModels] = await Promise.all([api.listModels(), api.catalog()]);
      error.show(null);
    } catch (e) {
      const err = api.toApiError(e);
      error.show(err.kind === "unavailable" ? "Models are listed here in the app (backend unavailable)." : err.message);
    }
    render();
  }

  async function use(spec: string, label: string) {
    try {
      await loadModel(spec, device.value());
      toast(`${label} loaded`, "success", 2000);
    } catch (e) {
      toastError(e, `Could not load ${label}`);
    }
    await refresh();
  }

  // -- downloads -----------------------------------------------------------------------------
  let endBusy: (() => void) | null = null;

  async function startDownload(name: string) {
    download = { name, paused: false, done: download?.name === name ? download.done : 0, total: download?.total ?? 0, file: "" };
    render();
    downloadBar.indeterminate("Connecting…");
    endBusy ??= startBusy("Downloading model");
    try {
      await api.downloadModel(name, (e) => {
        if (!download || download.name !== name) return;
        download.done = e.data.done;
        download.total = e.data.total;
        download.file = e.data.file;
        downloadBar.set(e.data.done, e.data.total, `${baseName(e.data.file)} · ${formatBytes(e.data.done)} of ${formatBytes(e.data.total)}`);
      });
      download = null;
      toast("Download complete", "success");
    } catch (e) {
      if (api.isCancelled(e)) {
        // paused or cancelled: the state was set by the button
      } else {
        download = null;
        toastError(e, "Download failed");
      }
    } finally {
      if (!download || download.paused) {
        endBusy?.();
        endBusy = null;
      }
    }
    await refresh();
  }

  async function pauseDownload() {
    if (!download) return;
    download.paused = true;
    // the backend keeps the partial file; downloading again resumes it
    await api.cancelDownload().catch((e) => toastError(e));
    downloadBar.set(download.done, download.total, `Paused · ${formatBytes(download.done)} of ${formatBytes(download.total)}`);
    render();
  }

  function cancelDownload() {
    const wasRunning = download && !download.paused;
    download = null;
    if (wasRunning) api.cancelDownload().catch((e) => toastError(e));
    endBusy?.();
    endBusy = null;
    render();
  }

  // -- import --------------------------------------------------------------------------------
  async function importFrom(directory: boolean) {
    const picked = await pickPaths({
      directory,
      multiple: false,
      title: directory ? "Import a Hugging Face model folder" : "Import a GGUF model file",
      filters: directory ? undefined : [{ name: "GGUF model", extensions: ["gguf"] }],
    }).catch(() => []);
    if (!picked.length) {
      if (!api.backendAvailable()) toast("Importing needs the Penwright app (backend unavailable).", "error");
      return;
    }
    const done = startBusy("Importing model");
    try {
      const info = await api.importModel(picked[0]);
      toast(`Imported ${info.name}`, "success");
      await refresh();
    } catch (e) {
      toastError(e, "Import failed");
    } finally {
      done();
    }
  }

  const element = h(
    "div",
    {},
    section("Device", device.element, deviceReason, deviceNow),
    error.element,
    section("Installed", installed),
    section("Get more models", h("p", { class: "hint" }, "Multilingual models such as Qwen2.5-Instruct translate far better than the small default."), catalogList),
    section(
      "Import",
      h("p", { class: "hint" }, "A .gguf file, or a Hugging Face folder (config.json, *.safetensors, tokenizer.json)."),
      h(
        "div",
        { class: "actions" },
        button("Import GGUF file…", "models-import-file", () => void importFrom(false)),
        button("Import folder…", "models-import-folder", () => void importFrom(true)),
      ),
    ),
  );

  let lastModelPath: string | null = null;
  modelChanged.on((s) => {
    // a model finished loading (from here or from start-up): the "active" marks moved
    const path = s.status.model?.path ?? null;
    if (s.phase.kind === "ready" && path !== lastModelPath && !element.hidden) void refresh();
    lastModelPath = path;
  });

  return {
    id: "models",
    title: "Models",
    element,
    onShow: () => {
      device.set(settings().device);
      showDeviceNow();
      void refreshDevices();
      void refresh();
    },
  };
}
