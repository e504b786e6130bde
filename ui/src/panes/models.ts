// Models pane: the device models run on (auto / GPU / CPU, and why), the installed models
// (size, architecture, quantization; Use), catalog suggestions to download (progress, Pause,
// Resume, Cancel), and importing a local GGUF file or Hugging Face folder.

import * as api from "../api";
import { startBusy } from "../busy";
import type { AppContext } from "../context";
import { confirmDialog, pickPaths } from "../dialogs";
import { h, setChildren } from "../dom";
import { baseName, fitLabel, formatBytes, memoryEstimate } from "../format";
import { currentModel, loadModel, modelChanged } from "../model";
import { settings, updateSettings } from "../settings";
import { toast, toastError } from "../toast";
import type { Pane } from "./host";
import { remoteSection } from "./remote";
import { serveSection } from "./serve";
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
  /** `catalog:<name>` or `repo:<owner/name>:<file>`. */
  key: string;
  /** Paused, but the transfer has not ended yet. */
  stopping?: boolean;
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
    const size = m.sizeBytes ? formatBytes(m.sizeBytes) : "";
    return [m.architecture, m.quantization, size, memoryEstimate(m.memoryBytes), languagesLabel(m.languages)].filter(Boolean).join(" · ");
  }

  /** "Fits this machine" / "Tight…" / "Too large…", with the numbers in its tooltip. */
  function fitChip(fit: api.FitReport | null | undefined): HTMLElement | null {
    const label = fitLabel(fit);
    if (!label) return null;
    return h("span", { class: `fit fit-${label.kind}`, "data-testid": "models-fit", "data-fits": label.kind, title: label.title }, label.text);
  }

  const ORIGIN_BADGE: Record<api.ModelEntry["origin"], string | null> = { catalog: null, imported: "Imported", hub: "Hugging Face" };

  function installedCard(m: api.ModelEntry): HTMLElement {
    const active = !!m.active;
    const useBtn = button(active ? "In use" : "Use", "models-use", () => void use(m.path, m.displayName), active ? "quiet" : "secondary");
    useBtn.disabled = active || !!m.problem;
    const actions: HTMLElement[] = [useBtn];
    if (!m.isDefault && !active) {
      const label = m.origin === "imported" ? "Remove from list" : "Delete";
      const rm = button(label, "models-remove", () => void remove(m), "quiet");
      rm.title = m.origin === "imported" ? "Forget this model; the file stays where it is" : "Delete the downloaded files";
      actions.push(rm);
    }
    const badge = ORIGIN_BADGE[m.origin];
    return h(
      "li",
      { class: `card${active ? " active" : ""}${m.problem ? " broken" : ""}`, "data-testid": "models-installed-item", "data-name": m.name, "data-origin": m.origin },
      h(
        "div",
        { class: "card-main" },
        h(
          "div",
          { class: "card-title" },
          m.displayName,
          m.isDefault ? h("span", { class: "badge muted" }, "Default") : null,
          badge ? h("span", { class: "badge muted" }, badge) : null,
          active ? h("span", { class: "badge" }, "Active") : null,
        ),
        h("div", { class: "card-meta" }, m.problem ? "" : meta(m), m.problem ? null : fitChip(m.fit)),
        m.repo && m.origin === "hub" ? h("div", { class: "card-desc mono" }, m.repo) : null,
        m.origin === "imported" ? h("div", { class: "card-desc mono", title: m.path }, m.path) : null,
        m.problem ? h("div", { class: "card-problem", "data-testid": "models-problem" }, m.problem) : null,
        m.description ? h("div", { class: "card-desc" }, m.description) : null,
      ),
      h("div", { class: "card-actions" }, actions),
    );
  }

  /** Download / Pause / Resume / Cancel for one target, with the progress bar under `body`. */
  function downloadControls(key: string, target: api.DownloadTarget, fit: api.FitReport | null, label = "Download"): { controls: HTMLElement[]; bar: HTMLElement | null } {
    const mine = download?.key === key ? download : null;
    const controls: HTMLElement[] = [];
    if (!mine) {
      const b = button(label, "models-download", () => {
        warnIfLarge(fit);
        void startDownload(key, target);
      });
      b.disabled = !!download;
      controls.push(b);
    } else if (mine.paused && mine.stopping) {
      const b = button("Pausing…", "models-pausing", () => {});
      b.disabled = true;
      controls.push(b);
    } else if (mine.paused) {
      controls.push(button("Resume", "models-resume", () => void startDownload(key, target), "primary"));
      controls.push(button("Cancel", "models-cancel", () => cancelDownload(), "quiet"));
    } else {
      controls.push(button("Pause", "models-pause", () => void pauseDownload()));
      controls.push(button("Cancel", "models-cancel", () => cancelDownload(), "quiet"));
    }
    return { controls, bar: mine ? downloadBar.element : null };
  }

  /** A warning (never a block) before downloading what will not run well here. */
  function warnIfLarge(fit: api.FitReport | null) {
    const label = fitLabel(fit);
    if (label && label.kind !== "yes") toast(`${label.text}: ${label.title}. Downloading anyway.`, "info", 7000);
  }

  function catalogCard(m: api.ModelEntry): HTMLElement {
    const { controls, bar } = downloadControls(`catalog:${m.name}`, { name: m.name }, m.fit);
    return h(
      "li",
      { class: "card", "data-testid": "models-catalog-item", "data-name": m.name },
      h(
        "div",
        { class: "card-main" },
        h("div", { class: "card-title" }, m.displayName),
        h("div", { class: "card-meta" }, meta(m), fitChip(m.fit)),
        m.description ? h("div", { class: "card-desc" }, m.description) : null,
        bar,
      ),
      h("div", { class: "card-actions" }, controls),
    );
  }

  let installedModels: api.ModelEntry[] = [];
  let catalogModels: api.ModelEntry[] = [];

  function render() {
    setChildren(installed, installedModels.length ? installedModels.map(installedCard) : h("li", { class: "empty" }, "No models installed yet."));
    setChildren(catalogList, catalogModels.length ? catalogModels.map(catalogCard) : h("li", { class: "empty" }, "Every catalog model is installed."));
    renderOffer();
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

  async function remove(m: api.ModelEntry) {
    const question = m.origin === "imported" ? `Remove ${m.displayName} from the list? The file stays where it is.` : `Delete ${m.displayName} (${formatBytes(m.sizeBytes)})?`;
    if (!(await confirmDialog(question, { title: "Remove model", okLabel: m.origin === "imported" ? "Remove" : "Delete" }))) return;
    try {
      await api.removeModel(m.path);
      toast(`${m.displayName} removed`, "success", 2000);
    } catch (e) {
      toastError(e, `Could not remove ${m.displayName}`);
    }
    await refresh();
  }

  // -- Hugging Face Hub by repository id -----------------------------------------------------
  const repoInput = h("input", {
    type: "text",
    class: "input",
    placeholder: "owner/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF",
    spellcheck: false,
    "aria-label": "Hugging Face repository id",
    "data-testid": "models-repo",
  });
  const findBtn = button("Find", "models-find", () => void findRepo());
  repoInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") void findRepo();
  });
  const offerBox = h("ul", { class: "card-list", "data-testid": "models-offer", hidden: true });
  let offer: api.RepoOffer | null = null;

  async function findRepo() {
    const repo = repoInput.value.trim();
    if (!repo) return;
    findBtn.disabled = true;
    error.show(null);
    try {
      offer = await api.hubRepo(repo);
    } catch (e) {
      offer = null;
      error.show(api.toApiError(e).message);
    } finally {
      findBtn.disabled = false;
    }
    renderOffer();
  }

  function offerRow(title: string, size: number | null, fit: api.FitReport | null, key: string, target: api.DownloadTarget): HTMLElement {
    const { controls, bar } = downloadControls(key, target, fit);
    return h(
      "li",
      { class: "card", "data-testid": "models-offer-item", "data-file": "file" in target ? (target.file ?? "") : "" },
      h("div", { class: "card-main" }, h("div", { class: "card-title mono" }, title), h("div", { class: "card-meta" }, size ? formatBytes(size) : "size unknown", fitChip(fit)), bar),
      h("div", { class: "card-actions" }, controls),
    );
  }

  function renderOffer() {
    if (!offer) {
      offerBox.hidden = true;
      return;
    }
    const o = offer;
    const rows: HTMLElement[] = [];
    if (o.safetensorsBytes !== null) rows.push(offerRow("Model folder (safetensors)", o.safetensorsBytes, o.safetensorsFit, `repo:${o.repo}:`, { repo: o.repo, file: null }));
    for (const f of o.gguf) rows.push(offerRow(f.path, f.sizeBytes, f.fit, `repo:${o.repo}:${f.path}`, { repo: o.repo, file: f.path }));
    setChildren(offerBox, rows);
    offerBox.hidden = false;
    // the offer lands at the foot of a long pane: bring it into view
    offerBox.scrollIntoView({ block: "nearest" });
  }

  // -- downloads -----------------------------------------------------------------------------
  let endBusy: (() => void) | null = null;
  /** Settles when the running download command has returned (done, failed or cancelled). */
  let inFlight: Promise<void> = Promise.resolve();

  async function startDownload(key: string, target: api.DownloadTarget) {
    const resuming = download?.key === key;
    download = { key, paused: false, done: resuming ? download!.done : 0, total: resuming ? download!.total : 0, file: "" };
    render();
    if (resuming && download.total) downloadBar.set(download.done, download.total, "Resuming…");
    else downloadBar.indeterminate("Connecting…");
    endBusy ??= startBusy("Downloading model");
    let settled = () => {};
    inFlight = new Promise<void>((resolve) => (settled = resolve));
    try {
      const entry = await api.downloadModel(target, (e) => {
        if (!download || download.key !== key) return;
        download.done = e.data.done;
        download.total = e.data.total;
        download.file = e.data.file;
        const of = e.data.total ? ` of ${formatBytes(e.data.total)}` : "";
        downloadBar.set(e.data.done, e.data.total, `${baseName(e.data.file)} · ${formatBytes(e.data.done)}${of}`);
      });
      download = null;
      toast(`${entry.displayName} is installed`, "success");
    } catch (e) {
      if (api.isCancelled(e)) {
        // paused or cancelled: the state was set by the button
      } else {
        download = null;
        toastError(e, "Download failed");
      }
    } finally {
      settled();
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
    download.stopping = true;
    render(); // no Resume yet: the transfer is still stopping
    // the backend keeps the partial file; downloading again resumes it once this one has ended
    await api.cancelDownload().catch((e) => toastError(e));
    await inFlight;
    if (download) download.stopping = false;
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
      toast(`Imported ${info.displayName}`, "success");
      // its own chat template failed its check: say so now, not at the first summary
      if (info.templateNote) toast(`${info.displayName}: ${info.templateNote}`, "info", 9000);
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
      "From the Hugging Face Hub",
      h("p", { class: "hint" }, "Any Llama, Qwen2 or GPT-2 model: a repository with .gguf files, or with config.json and safetensors. Downloads resume after a pause and are checked against the Hub's checksums."),
      h("div", { class: "actions repo-row" }, repoInput, findBtn),
      offerBox,
    ),
    remoteSection(),
    serveSection(),
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
