// The status bar: model (with loading progress), adapter, device, the latest speed, word count,
// a busy spinner, the autocomplete switch and the settings popover.

import { busyChanged } from "./busy";
import { h } from "./dom";
import { formatCount, formatParameters } from "./format";
import { icons } from "./icons";
import { modelChanged, remoteFor, remoteForAll, remoteTasks, type ModelSnapshot } from "./model";
import { SUPPRESS_RULES } from "./ghost/suppress";
import { toggleSwitch } from "./panes/ui";
import { onSettings, settings, updateSettings, type EditorFont, type SuggestionLength, type TextAfterCursor, type Theme } from "./settings";

/** A settings drop-down: its choices, the current one, what a change does. */
function select<T extends string>(testid: string, label: string, options: readonly (readonly [T, string])[], value: T, onChange: (value: T) => void): HTMLSelectElement {
  const el = h("select", { class: "input", "data-testid": testid, "aria-label": label });
  for (const [v, text] of options) el.append(h("option", { value: v }, text));
  el.value = value;
  el.addEventListener("change", () => onChange(el.value as T));
  return el;
}

/** What the text-after-cursor setting does with the loaded model. */
export function fimNote(snapshot: ModelSnapshot): string {
  const s = snapshot.status;
  if (remoteFor(s, "autocomplete")) return "Auto is off for a remote engine; On sends the text after the cursor as the suffix.";
  if (!s.model) return "";
  return s.model.fillInTheMiddle
    ? `${s.model.name} has fill-in-the-middle tokens: Auto uses the text after the cursor.`
    : `${s.model.name} has no fill-in-the-middle tokens: Auto leaves it off (the text after the cursor still stops repeats).`;
}

/** The model item's text for a snapshot. */
export function modelLabel(s: ModelSnapshot): string {
  switch (s.phase.kind) {
    case "unknown":
      return "Starting…";
    case "unavailable":
      return "Backend unavailable";
    case "loading": {
      const p = s.phase.progress;
      if (p && p.total > 0) return `Loading model… ${Math.round((p.done / p.total) * 100)}%`;
      return "Loading model…";
    }
    case "none":
      return s.phase.error ? "No model loaded" : "No model";
    case "ready": {
      const all = remoteForAll(s.status);
      if (all) return `Remote · ${all.model}`;
      const local = s.status.model ? s.status.model.name : "No model";
      const remote = remoteTasks(s.status);
      return remote.length > 0 ? `${local} + remote: ${remote.join(", ")}` : local;
    }
  }
}

export class StatusBar {
  readonly element: HTMLElement;
  private readonly model = h("span", { class: "status-item status-model", "data-testid": "status-model" });
  private readonly adapter = h("span", { class: "status-item", "data-testid": "status-adapter", hidden: true });
  private readonly device = h("span", { class: "status-item", "data-testid": "status-device" });
  private readonly speed = h("span", { class: "status-item", "data-testid": "status-speed", title: "Speed of the last generation" });
  private suggestEngine = "";
  private readonly suggestProblem = h("span", { class: "status-item status-problem", "data-testid": "status-suggest", role: "status" });
  private readonly words = h("span", { class: "status-item", "data-testid": "status-words" });
  private readonly busy = h("span", { class: "spinner", "data-testid": "status-busy", role: "img", "aria-label": "Working", hidden: true });
  private readonly autocomplete: HTMLButtonElement;
  private readonly settingsButton: HTMLButtonElement;
  private readonly popover: HTMLElement;

  constructor(private readonly onToggleAutocomplete: () => void) {
    this.autocomplete = h(
      "button",
      {
        class: "status-toggle",
        "data-testid": "status-autocomplete",
        role: "switch",
        title: "Autocomplete (Ctrl+Shift+Space)",
        onclick: () => this.onToggleAutocomplete(),
      },
      h("span", { class: "mini-switch", "aria-hidden": "true" }),
      h("span", { class: "status-toggle-label" }, "Autocomplete"),
    );
    this.settingsButton = h("button", {
      class: "icon-btn small",
      "data-testid": "status-settings",
      "aria-label": "Settings",
      title: "Settings",
      "aria-haspopup": "dialog",
      "aria-expanded": "false",
      html: icons.settings,
      onclick: (e: Event) => {
        e.stopPropagation();
        this.togglePopover();
      },
    });
    this.popover = this.buildPopover();

    this.element = h(
      "footer",
      { class: "statusbar", "data-testid": "statusbar" },
      h("div", { class: "status-left" }, this.busy, this.model, this.adapter, this.device, this.speed, this.suggestProblem),
      h("div", { class: "status-right" }, this.words, this.autocomplete, this.settingsButton, this.popover),
    );

    modelChanged.on((s) => this.showModel(s));
    busyChanged.on((labels) => {
      this.busy.hidden = labels.length === 0;
      this.busy.title = labels.join(", ");
    });
    onSettings((s) => this.showAutocomplete(s.autocomplete));
    this.showAutocomplete(settings().autocomplete);
    document.addEventListener("click", (e) => {
      if (!this.popover.hidden && !this.popover.contains(e.target as Node)) this.closePopover();
    });
  }

  showModel(s: ModelSnapshot): void {
    const m = s.status.model;
    // a failure reason belongs to the engine that failed: another one starts with a clean slate
    const r = remoteFor(s.status, "autocomplete");
    const engine = r ? `${r.baseUrl} ${r.model}` : `local ${m?.path ?? ""}`;
    if (engine !== this.suggestEngine) this.setSuggestionProblem(null);
    this.suggestEngine = engine;
    this.model.textContent = modelLabel(s);
    this.model.classList.toggle("muted", s.phase.kind !== "ready");
    this.model.classList.toggle("error", s.phase.kind === "unavailable" || (s.phase.kind === "none" && !!s.phase.error));
    const all = remoteForAll(s.status);
    const served = (r: { model: string; baseUrl: string; context: number | null }) => `${r.model}, served by ${r.baseUrl}${r.context ? ` · context ${formatCount(r.context)}` : ""}`;
    const local = m
      ? [m.name, formatParameters(m.parameters) && `${formatParameters(m.parameters)} parameters`, m.architecture, m.quantization, `context ${formatCount(m.contextLength)}`].filter(Boolean).join(" · ")
      : "";
    const remote = remoteTasks(s.status).map((t) => `${t}: ${served(remoteFor(s.status, t)!)}`);
    this.model.title =
      s.phase.kind === "none" && s.phase.error ? s.phase.error : all ? served(all) : [local, ...remote].filter(Boolean).join("\n");
    const a = s.status.adapter;
    this.adapter.hidden = !a;
    this.adapter.textContent = a ? `+ ${a}` : "";
    this.adapter.title = a ? `Fine-tuned adapter: ${a}` : "";
    const d = all ? null : s.status.device;
    this.device.hidden = !d;
    this.device.textContent = d ? (d.kind === "gpu" ? `GPU · ${d.name}` : "CPU") : "";
    this.device.title = d ? `${d.name}\n${d.reason}` : "";
  }

  setWords(n: number, selected?: number): void {
    const w = `${formatCount(n)} word${n === 1 ? "" : "s"}`;
    this.words.textContent = selected ? `${formatCount(selected)} of ${w}` : w;
  }

  setSpeed(text: string): void {
    this.speed.textContent = text;
  }

  /** Why ghost text shows nothing (a failed suggestion), or null once suggestions work again. */
  setSuggestionProblem(reason: string | null): void {
    this.suggestProblem.textContent = reason ? `No suggestions: ${reason}` : "";
    this.suggestProblem.title = reason ?? "";
  }

  private showAutocomplete(on: boolean): void {
    this.autocomplete.setAttribute("aria-checked", String(on));
    this.autocomplete.classList.toggle("on", on);
  }

  // -- settings popover ----------------------------------------------------------------------

  private buildPopover(): HTMLElement {
    const delay = h("input", {
      type: "range",
      min: "50",
      max: "1500",
      step: "50",
      value: String(settings().debounceMs),
      "data-testid": "settings-debounce",
      "aria-label": "Suggestion delay",
    });
    const delayValue = h("span", { class: "hint" }, `${settings().debounceMs} ms`);
    delay.addEventListener("input", () => {
      delayValue.textContent = `${delay.value} ms`;
      updateSettings({ debounceMs: Number(delay.value) });
    });

    const font = select<EditorFont>(
      "settings-font",
      "Editor font",
      [
        ["serif", "Serif (Literata)"],
        ["sans", "Sans (Inter)"],
        ["mono", "Monospace"],
      ],
      settings().font,
      (font) => updateSettings({ font }),
    );

    const theme = select<Theme | "system">(
      "settings-theme",
      "Theme",
      [
        ["system", "Follow the system"],
        ["light", "Light"],
        ["dark", "Dark"],
      ],
      settings().theme ?? "system",
      (t) => updateSettings({ theme: t === "system" ? null : t }),
    );
    onSettings((s) => {
      theme.value = s.theme ?? "system";
    });

    const length = select<SuggestionLength>(
      "settings-length",
      "Suggestion length",
      [
        ["words", "A few words"],
        ["sentence", "To the end of the sentence"],
        ["paragraph", "Up to a paragraph"],
      ],
      settings().suggestionLength,
      (suggestionLength) => updateSettings({ suggestionLength }),
    );

    const fim = select<TextAfterCursor>(
      "settings-fim",
      "Text after the cursor",
      [
        ["auto", "Auto (where the model supports it)"],
        ["on", "On"],
        ["off", "Off"],
      ],
      settings().textAfterCursor,
      (textAfterCursor) => updateSettings({ textAfterCursor }),
    );
    const fimHint = h("div", { class: "hint", "data-testid": "settings-fim-note" });
    modelChanged.on((snap) => {
      fimHint.textContent = fimNote(snap);
    });

    const subtle = toggleSwitch("Subtle: show suggestions only while Alt is held", settings().subtle, "settings-subtle", (on) => updateSettings({ subtle: on }));
    const rules = SUPPRESS_RULES.map(({ rule, label }) =>
      toggleSwitch(label, settings().suppress[rule], `settings-suppress-${rule}`, (on) => updateSettings({ suppress: { ...settings().suppress, [rule]: on } })),
    );

    const pop = h(
      "div",
      { class: "popover", role: "dialog", "aria-label": "Settings", "data-testid": "settings-popover", hidden: true },
      h("div", { class: "popover-title" }, "Settings"),
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Suggestion delay"), h("div", { class: "range-row" }, delay, delayValue)),
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Suggestion length"), length),
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Text after the cursor"), fim, fimHint),
      h("div", { class: "field" }, subtle.element),
      h("div", { class: "field" }, h("span", { class: "field-label" }, "Don't suggest"), h("div", { class: "switch-list" }, rules.map((r) => r.element))),
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Editor font"), font),
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Theme"), theme),
    );
    return pop;
  }

  togglePopover(): void {
    if (this.popover.hidden) {
      this.popover.hidden = false;
      this.settingsButton.setAttribute("aria-expanded", "true");
    } else this.closePopover();
  }

  /** Closes the popover; true when it was open. */
  closePopover(): boolean {
    if (this.popover.hidden) return false;
    this.popover.hidden = true;
    this.settingsButton.setAttribute("aria-expanded", "false");
    return true;
  }
}
