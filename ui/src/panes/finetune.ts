// Fine-tune pane: pick the writer's own files or folders, see what the data set holds, choose
// a preset (or tune the advanced settings), then Start / Stop / Resume a LoRA run with a live
// loss and held-out perplexity chart, speed and ETA; before/after perplexity when done; and the
// adapters on disk, each to activate or deactivate.
//
// The job runs in the backend and outlives the window: opening the pane re-attaches to it.

import * as api from "../api";
import { startBusy } from "../busy";
import type { AppContext } from "../context";
import { pickPaths } from "../dialogs";
import { h, setChildren } from "../dom";
import { baseName, dirName, formatCount, formatDuration, formatTime, relativeChange } from "../format";
import { setAdapterName } from "../model";
import { onSettings, settings } from "../settings";
import { toast, toastError } from "../toast";
import type { TrainingChart } from "./chart";
import type { Pane } from "./host";
import { button, inlineError, progressBar, section, segmented, toggleSwitch } from "./ui";

type Settings = api.PresetSettings;

const FIELDS: { key: keyof Settings; label: string; min: number; max: number; step: number; hint: string }[] = [
  { key: "rank", label: "LoRA rank", min: 1, max: 256, step: 1, hint: "Adapter size; higher learns more, risks overfitting" },
  { key: "alpha", label: "LoRA alpha", min: 1, max: 512, step: 1, hint: "Scale of the adapter's update (often 2 × rank)" },
  { key: "steps", label: "Steps", min: 1, max: 100000, step: 10, hint: "Training steps" },
  { key: "learningRate", label: "Learning rate", min: 0.000001, max: 0.1, step: 0.00001, hint: "Peak learning rate" },
  { key: "seqLen", label: "Sequence length", min: 32, max: 8192, step: 32, hint: "Tokens per training example" },
  { key: "batch", label: "Batch size", min: 1, max: 256, step: 1, hint: "Examples per step" },
  { key: "evalEvery", label: "Evaluate every", min: 1, max: 10000, step: 1, hint: "Steps between held-out perplexity checks" },
  { key: "dropout", label: "LoRA dropout", min: 0, max: 0.9, step: 0.01, hint: "Share of the adapter's input dropped while training; guards small datasets against overfitting" },
];

/** Settings that are fractions, not counts. */
const FRACTIONAL: ReadonlySet<keyof Settings> = new Set(["learningRate", "dropout"]);

/** Where a job trains: the device, and the base model's precision when it is not f32. */
export function deviceLabel(name: string, precision: string): string {
  return precision && precision !== "f32" ? `${name} · base model in ${precision}` : name;
}

/** Reads the advanced inputs, falling back to the preset's value for anything invalid. */
export function readSettings(values: Partial<Record<keyof Settings, string>>, base: Settings): Settings {
  const out = { ...base };
  for (const f of FIELDS) {
    const raw = values[f.key];
    const n = raw === undefined || raw.trim() === "" ? NaN : Number(raw);
    if (Number.isFinite(n) && n >= f.min && n <= f.max) out[f.key] = FRACTIONAL.has(f.key) ? n : Math.round(n);
  }
  return out;
}

export function finetunePane(ctx: AppContext): Pane {
  let paths: string[] = [];
  let jobState: api.JobStatus["state"] | "idle" = "idle";
  let attachGeneration = 0;
  let attached = false;
  let endBusy: (() => void) | null = null;

  // -- data ----------------------------------------------------------------------------------
  const pathList = h("ul", { class: "path-list", "data-testid": "finetune-paths" });
  const reportBox = h("div", { class: "report", "data-testid": "finetune-report", hidden: true });
  const addFiles = button("Add files…", "finetune-add-files", () => void add(false));
  const addFolder = button("Add folder…", "finetune-add-folder", () => void add(true));
  const dataHint = h("p", { class: "hint" }, "Your own writing: Markdown, text, Word (.docx), PDF or HTML files, or folders of them. A tenth of the documents is held out to measure the result.");

  async function add(directory: boolean) {
    try {
      const picked = await pickPaths({
        directory,
        multiple: true,
        title: directory ? "Add folders of your writing" : "Add files of your writing",
        filters: directory ? undefined : [{ name: "Documents", extensions: ["md", "markdown", "txt", "docx", "pdf", "html", "htm"] }],
      });
      if (!picked.length) {
        if (!api.backendAvailable()) toast("Choosing files needs the Penwright app (backend unavailable).", "error");
        return;
      }
      paths = [...new Set([...paths, ...picked])];
      renderPaths();
      await report();
    } catch (e) {
      toastError(e);
    }
  }

  function renderPaths() {
    setChildren(
      pathList,
      paths.length === 0
        ? h("li", { class: "empty" }, "No files chosen yet.")
        : paths.map((p) =>
            h(
              "li",
              { class: "path-item", title: p },
              h("span", { class: "path-name" }, baseName(p)),
              h("span", { class: "path-dir" }, dirName(p)),
              h(
                "button",
                {
                  class: "icon-btn small",
                  "aria-label": `Remove ${baseName(p)}`,
                  title: "Remove",
                  "data-testid": "finetune-remove-path",
                  onclick: () => {
                    paths = paths.filter((x) => x !== p);
                    renderPaths();
                    void report();
                  },
                },
                "×",
              ),
            ),
          ),
    );
    updateButtons();
  }

  let reportSeq = 0;
  async function report() {
    const seq = ++reportSeq;
    if (!paths.length) {
      reportBox.hidden = true;
      return;
    }
    setChildren(reportBox, h("div", { class: "hint" }, "Reading the files…"));
    reportBox.hidden = false;
    try {
      const r = await api.datasetReport(paths);
      if (seq !== reportSeq) return;
      setChildren(
        reportBox,
        h(
          "table",
          { class: "table" },
          h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "Documents"), h("th", {}, "Tokens"))),
          h(
            "tbody",
            {},
            h("tr", {}, h("th", {}, "Training"), h("td", {}, formatCount(r.trainDocuments)), h("td", {}, formatCount(r.trainTokens))),
            h("tr", {}, h("th", {}, "Held out"), h("td", {}, formatCount(r.heldoutDocuments)), h("td", {}, formatCount(r.heldoutTokens))),
            h("tr", { class: "total" }, h("th", {}, "Total"), h("td", {}, formatCount(r.documents)), h("td", {}, formatCount(r.tokens))),
          ),
        ),
        r.evaluatedTokens > 0 && r.evaluatedTokens < r.heldoutTokens
          ? h("p", { class: "hint", "data-testid": "finetune-evaluated" }, `Perplexity is measured on ${formatCount(r.evaluatedTokens)} of the ${formatCount(r.heldoutTokens)} held-out tokens, taken evenly from every held-out document, the same before and after training.`)
          : null,
        r.note ? h("p", { class: "hint", "data-testid": "finetune-note" }, r.note) : null,
        r.samples.length
          ? h(
              "details",
              { class: "samples", "data-testid": "finetune-samples" },
              h("summary", {}, "What the model learns from"),
              h("p", { class: "hint" }, `The first ${r.samples.length === 1 ? "training sequence" : `${r.samples.length} training sequences`}, exactly as the model sees them:`),
              r.samples.map((t) => h("pre", { class: "sample", "data-testid": "finetune-sample" }, t)),
              r.heldoutNames.length ? h("p", { class: "hint", "data-testid": "finetune-heldout" }, `Held out (measured, never trained on): ${r.heldoutNames.join(", ")}`) : null,
            )
          : null,
        r.skipped.length
          ? h(
              "details",
              { class: "skipped", "data-testid": "finetune-skipped" },
              h("summary", {}, `${r.skipped.length} file${r.skipped.length === 1 ? "" : "s"} skipped`),
              h("ul", {}, r.skipped.map((s) => h("li", {}, h("span", { class: "path-name" }, baseName(s.path)), ` — ${s.reason}`))),
            )
          : null,
      );
    } catch (e) {
      if (seq !== reportSeq) return;
      setChildren(reportBox, h("div", { class: "inline-error" }, api.toApiError(e).message));
    }
  }

  // -- settings ------------------------------------------------------------------------------
  const preset = segmented<api.Preset>(
    "Preset",
    [
      { value: "quick", label: "Quick" },
      { value: "thorough", label: "Thorough" },
    ],
    "quick",
    "finetune-preset",
  );
  const presetHint = h("p", { class: "hint", "data-testid": "finetune-preset-hint" });
  const inputs = {} as Record<keyof Settings, HTMLInputElement>;
  const advancedGrid = h("div", { class: "grid-fields" });
  for (const f of FIELDS) {
    const input = h("input", {
      type: "number",
      class: "input",
      min: String(f.min),
      max: String(f.max),
      step: String(f.step),
      title: f.hint,
      "data-testid": `finetune-${f.key}`,
    });
    inputs[f.key] = input;
    advancedGrid.append(h("label", { class: "field" }, h("span", { class: "field-label" }, f.label), input));
  }
  const saveMemory = toggleSwitch("Save memory (gradient checkpointing: slower steps)", false, "finetune-checkpointing");
  const precision = segmented<api.Precision>(
    "Base model precision",
    [
      { value: "f32", label: "f32" },
      { value: "f16", label: "f16" },
      { value: "bf16", label: "bf16" },
    ],
    "f32",
    "finetune-precision",
  );
  const precisionField = h(
    "div",
    { class: "field" },
    h("span", { class: "field-label" }, "Base model precision"),
    precision.element,
    h("p", { class: "hint" }, "f16 or bf16 keep the frozen base model in half the memory while training and speed up GPUs built for them; the adapter still learns in f32. A device that computes them wrong is refused before training starts."),
  );
  const advanced = h("details", { class: "advanced", "data-testid": "finetune-advanced" }, h("summary", {}, "Advanced settings"), advancedGrid, saveMemory.element, precisionField);

  // the presets' settings come from the engine; the fields stay empty until they do
  let presets: Record<api.Preset, Settings> | null = null;
  function applyPreset(p: api.Preset) {
    if (!presets) return;
    const s = presets[p];
    for (const f of FIELDS) inputs[f.key].value = String(s[f.key]);
    presetHint.textContent =
      p === "quick"
        ? `About ${s.steps} steps: a first taste of your style in minutes.`
        : `About ${s.steps} steps with a larger adapter: closer to your style, takes much longer.`;
  }
  preset.onChange(applyPreset);
  void api
    .finetunePresets()
    .then((p) => {
      presets = p;
      applyPreset(preset.value());
    })
    .catch((e) => toastError(e));

  function config(): api.FinetuneConfig {
    const values: Partial<Record<keyof Settings, string>> = {};
    for (const f of FIELDS) values[f.key] = inputs[f.key].value;
    // before the presets arrive, only the preset's name goes: the engine fills in the rest
    const chosen = presets ? readSettings(values, presets[preset.value()]) : {};
    return { paths, preset: preset.value(), device: settings().device, gradientCheckpointing: saveMemory.input.checked, precision: precision.value(), ...chosen };
  }

  // -- run -----------------------------------------------------------------------------------
  const start = button("Start training", "finetune-start", () => void startJob(), "primary");
  const stop = button("Stop", "finetune-stop", () => void api.finetuneStop().catch((e) => toastError(e)));
  const resume = button("Resume", "finetune-resume", () => void resumeJob(), "primary");
  const progress = progressBar("finetune-progress");
  const speed = h("span", { "data-testid": "finetune-speed" });
  const eta = h("span", { "data-testid": "finetune-eta" });
  const where = h("span", { "data-testid": "finetune-device" });
  const liveStats = h("div", { class: "hint stats-row", hidden: true }, speed, eta, where);
  const error = inlineError("finetune-error");
  const chartHost = h("div", { class: "chart", "data-testid": "finetune-chart" });
  const chartBox = h("div", { class: "chart-box", hidden: true }, chartHost);
  // uPlot loads with the chart, the first time there is something to draw
  let chartLoading: Promise<TrainingChart> | null = null;
  const withChart = (f: (chart: TrainingChart) => void) => {
    chartLoading ??= import("./chart").then((m) => new m.TrainingChart(chartHost));
    void chartLoading.then(f);
  };
  onSettings((_s, changed) => {
    if ("theme" in changed && chartLoading) withChart((c) => c.rebuild());
  });
  const result = h("div", { class: "result", "data-testid": "finetune-result", hidden: true });

  function updateButtons() {
    const running = jobState === "running";
    start.hidden = running;
    start.disabled = paths.length === 0;
    start.title = paths.length === 0 ? "Add some of your writing first" : "";
    stop.hidden = !running;
    resume.hidden = jobState !== "stopped";
    if (running && !endBusy) endBusy = startBusy("Fine-tuning");
    if (!running && endBusy) {
      endBusy();
      endBusy = null;
    }
  }

  function onEvent(generation: number, e: api.FinetuneEvent) {
    if (generation !== attachGeneration) return; // a superseded attachment
    switch (e.event) {
      case "step": {
        const d = e.data;
        jobState = "running";
        withChart((c) => c.addLoss(d.step, d.loss));
        chartBox.hidden = false;
        progress.set(d.step, d.totalSteps, `Step ${formatCount(d.step)} of ${formatCount(d.totalSteps)} · loss ${d.loss.toFixed(3)}`);
        liveStats.hidden = false;
        speed.textContent = `${formatCount(Math.round(d.tokensPerS))} tokens/s`;
        eta.textContent = `${formatDuration(d.etaS)} left`;
        ctx.reportSpeed(`${formatCount(Math.round(d.tokensPerS))} tok/s (training)`);
        updateButtons();
        break;
      }
      case "eval":
        withChart((c) => c.addPerplexity(e.data.step, e.data.heldoutPpl));
        chartBox.hidden = false;
        break;
      case "done":
        jobState = "done";
        progress.hide();
        liveStats.hidden = true;
        showResult(e.data);
        toast("Fine-tuning finished", "success");
        void refreshAdapters();
        updateButtons();
        break;
      case "device":
        where.textContent = `on ${deviceLabel(e.data.name, e.data.precision)}`;
        break;
      case "error":
        jobState = "failed";
        progress.hide();
        liveStats.hidden = true;
        error.show(e.data.message);
        updateButtons();
        break;
    }
  }

  function showResult(summary: api.FinetuneSummary) {
    const { base_ppl: base, tuned_ppl: tuned, adapter, comparison } = summary;
    const change = relativeChange(base, tuned);
    const better = tuned < base;
    result.hidden = false;
    setChildren(
      result,
      h("div", { class: "result-title" }, "Held-out perplexity"),
      h(
        "div",
        { class: "result-numbers" },
        h("span", { class: "ppl", "data-testid": "finetune-ppl-before" }, base.toFixed(2)),
        h("span", { class: "arrow" }, "→"),
        h("span", { class: "ppl", "data-testid": "finetune-ppl-after" }, tuned.toFixed(2)),
        h("span", { class: `change ${better ? "good" : "bad"}`, "data-testid": "finetune-ppl-change" }, change),
      ),
      h("div", { class: "hint" }, better ? `Lower is better: the model now predicts your held-out writing better. Adapter: ${baseName(adapter)}` : `No improvement on the held-out text. Adapter: ${baseName(adapter)}`),
      comparison
        ? h(
            "div",
            { class: "before-after", "data-testid": "finetune-comparison" },
            h("div", { class: "result-title" }, "The same held-out passage, continued"),
            h("div", { class: "output output-source", "data-testid": "finetune-comparison-prompt" }, comparison.prompt.trim()),
            h(
              "div",
              { class: "compare" },
              h("div", { class: "compare-col" }, h("div", { class: "compare-head" }, "Before (base model)"), h("div", { class: "output", "data-testid": "finetune-comparison-base" }, `…${comparison.base}`)),
              h("div", { class: "compare-col" }, h("div", { class: "compare-head" }, "After (tuned)"), h("div", { class: "output", "data-testid": "finetune-comparison-tuned" }, `…${comparison.tuned}`)),
            ),
          )
        : null,
    );
    if (comparison) {
      ctx.panes.relayout();
      if (chartLoading) withChart((c) => c.refit());
    }
  }

  async function attach(): Promise<void> {
    const generation = ++attachGeneration;
    try {
      const status = await api.finetuneAttach((e) => onEvent(generation, e));
      attached = true;
      error.show(null);
      if (!status) {
        jobState = "idle";
      } else {
        jobState = status.state;
        const empty = status.history.length === 0 && status.evals.length === 0;
        chartBox.hidden = empty;
        if (!empty) withChart((c) => c.reset(status.history, status.evals));
        if (status.state === "done" && status.summary) {
          showResult(status.summary);
        }
        where.textContent = status.device ? `on ${deviceLabel(status.device.name, status.device.precision)}` : "";
        if (status.state === "running" || status.state === "stopped") {
          progress.set(status.step, status.totalSteps, `Step ${formatCount(status.step)} of ${formatCount(status.totalSteps)}${status.state === "stopped" ? " · stopped" : ""}`);
        }
      }
    } catch (e) {
      const err = api.toApiError(e);
      error.show(err.kind === "unavailable" ? "Fine-tuning needs the Penwright app (backend unavailable)." : `Fine-tuning is unavailable: ${err.message}`);
    }
    updateButtons();
  }

  async function startJob() {
    if (!paths.length) return;
    error.show(null);
    result.hidden = true;
    try {
      await api.finetuneStart(config());
      jobState = "running";
      withChart((c) => c.reset());
      chartBox.hidden = false;
      progress.indeterminate("Preparing the data…");
      updateButtons();
      await attach();
    } catch (e) {
      error.show(api.toApiError(e).message);
    }
  }

  async function resumeJob() {
    error.show(null);
    try {
      await api.finetuneResume();
      jobState = "running";
      updateButtons();
      await attach();
    } catch (e) {
      error.show(api.toApiError(e).message);
    }
  }

  // -- adapters ------------------------------------------------------------------------------
  const adapterList = h("ul", { class: "card-list", "data-testid": "finetune-adapters" });

  async function refreshAdapters() {
    try {
      const adapters = await api.listAdapters();
      const active = adapters.find((a) => a.active);
      setAdapterName(active ? active.name : null);
      setChildren(
        adapterList,
        adapters.length === 0
          ? h("li", { class: "empty" }, "No adapters yet. Each finished run adds one here.")
          : adapters.map((a) =>
              h(
                "li",
                { class: `card${a.active ? " active" : ""}`, "data-testid": "finetune-adapter" },
                h(
                  "div",
                  { class: "card-main" },
                  h("div", { class: "card-title" }, a.name, a.active ? h("span", { class: "badge" }, "Active") : null),
                  h(
                    "div",
                    { class: "card-meta" },
                    formatTime(a.createdAt),
                    a.basePpl !== null && a.tunedPpl !== null ? ` · ppl ${a.basePpl.toFixed(1)} → ${a.tunedPpl.toFixed(1)} (${relativeChange(a.basePpl, a.tunedPpl)})` : "",
                  ),
                ),
                a.basePpl === null || a.tunedPpl === null
                  ? button("Measure…", "finetune-measure", () => void measure(a), "quiet")
                  : null,
                button(a.active ? "Deactivate" : "Activate", a.active ? "finetune-deactivate" : "finetune-activate", () => void activate(a.active ? null : a.path), a.active ? "quiet" : "secondary"),
              ),
            ),
      );
    } catch (e) {
      const err = api.toApiError(e);
      setChildren(adapterList, h("li", { class: "empty" }, err.kind === "unavailable" ? "Adapters appear here in the app." : err.message));
    }
  }

  /** A PEFT adapter trained elsewhere (`penwright finetune export` → a cluster trainer). */
  const importButton = button("Add an adapter trained elsewhere…", "finetune-import-adapter", () => void importAdapter(), "quiet");
  async function importAdapter() {
    const [dir] = await pickPaths({ directory: true, multiple: false, title: "A PEFT adapter folder (adapter_config.json + adapter_model.safetensors)" });
    if (!dir) return;
    try {
      const added = await api.importAdapter(dir);
      toast(`Adapter ${added.name} added: Measure it on held-out text, or activate it to use it`, "success", 4000);
      await refreshAdapters();
    } catch (e) {
      toastError(e, "Not an adapter Penwright can use");
    }
  }

  /** Base → tuned held-out perplexity of an adapter trained elsewhere (it has no run of its own to say). */
  const measureCancel = button("Cancel", "finetune-measure-cancel", () => void api.cancelTask().catch(() => {}), "quiet");
  measureCancel.hidden = true;
  async function measure(a: api.Adapter) {
    const paths = await pickPaths({
      directory: false,
      multiple: true,
      title: "Held-out text for this adapter: the export's heldout.jsonl, or documents it was not trained on",
      filters: [{ name: "Held-out text", extensions: ["jsonl", "txt", "md", "markdown", "html", "htm", "docx", "pdf"] }],
    });
    if (paths.length === 0) return;
    await measureOn(a, paths);
  }
  async function measureOn(a: api.Adapter, paths: string[]) {
    const done = startBusy("Measuring the adapter");
    error.show(null);
    progress.indeterminate("Loading the model…");
    measureCancel.hidden = false;
    try {
      const m = await api.measureAdapter(a.path, paths, (p) =>
        progress.set(p.done + (p.model === "tuned" ? p.total : 0), p.total * 2, `${p.model === "base" ? "Base model" : "With the adapter"}: window ${p.done} of ${p.total}`),
      );
      toast(`${a.name}: held-out perplexity ${m.basePpl.toFixed(1)} → ${m.tunedPpl.toFixed(1)} on ${formatCount(m.tokens)} tokens`, "success", 5000);
      await refreshAdapters();
    } catch (e) {
      if (!api.isCancelled(e)) error.show(`Could not measure ${a.name}: ${api.toApiError(e).message}`);
    } finally {
      progress.hide();
      measureCancel.hidden = true;
      done();
    }
  }

  async function activate(path: string | null) {
    const done = startBusy(path ? "Activating adapter" : "Deactivating adapter");
    try {
      await api.setAdapter(path);
      toast(path ? `Adapter ${baseName(path)} active` : "Adapter deactivated", "success", 2000);
      await refreshAdapters();
    } catch (e) {
      toastError(e);
    } finally {
      done();
    }
  }

  renderPaths();
  updateButtons();

  const element = h(
    "div",
    {},
    section("Your writing", dataHint, pathList, h("div", { class: "actions" }, addFiles, addFolder), reportBox),
    section("Training", preset.element, presetHint, advanced),
    h("div", { class: "run-row" }, start, stop, resume),
    progress.element,
    liveStats,
    error.element,
    chartBox,
    result,
    section("Adapters", adapterList, h("div", { class: "actions" }, importButton, measureCancel)),
  );

  return {
    id: "finetune",
    title: "Fine-tune",
    element,
    // the before/after continuations side by side need room
    wide: () => !result.hidden && result.querySelector("[data-testid=finetune-comparison]") !== null,
    onShow: () => {
      if (!attached) void attach();
      void refreshAdapters();
      if (chartLoading) withChart((c) => c.refit());
    },
  };
}
