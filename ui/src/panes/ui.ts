// Small building blocks the panes share: sections, segmented choices, progress bars, errors.

import { h, setChildren } from "../dom";

export function section(title: string, ...children: (Node | null)[]): HTMLElement {
  return h("section", { class: "pane-section" }, h("h3", { class: "pane-section-title" }, title), ...children);
}

export interface Segmented<T extends string> {
  element: HTMLElement;
  value(): T;
  set(value: T): void;
  onChange(listener: (value: T) => void): void;
}

/** A row of mutually exclusive buttons (radio semantics). */
export function segmented<T extends string>(name: string, options: { value: T; label: string }[], initial: T, testid: string): Segmented<T> {
  let current = initial;
  const listeners: ((v: T) => void)[] = [];
  const buttons = options.map((o) =>
    h(
      "button",
      {
        type: "button",
        class: "seg-btn",
        role: "radio",
        "data-testid": `${testid}-${o.value}`,
        "data-value": o.value,
        onclick: () => {
          set(o.value);
          for (const l of listeners) l(o.value);
        },
      },
      o.label,
    ),
  );
  const element = h("div", { class: "segmented", role: "radiogroup", "aria-label": name, "data-testid": testid }, buttons);
  function set(v: T) {
    current = v;
    for (const b of buttons) {
      const on = b.dataset.value === v;
      b.classList.toggle("on", on);
      b.setAttribute("aria-checked", String(on));
    }
  }
  set(initial);
  return { element, value: () => current, set, onChange: (l) => listeners.push(l) };
}

export type Source = "selection" | "document";

/** What a task works on: the selection or the whole document. Selection is disabled (and
 * left) while nothing is selected; `refresh` follows the editor's selection. */
export function sourceChoice(name: string, testid: string, initial: Source, hasSelection: () => boolean): Segmented<Source> & { refresh(): void } {
  const choice = segmented<Source>(
    name,
    [
      { value: "selection", label: "Selection" },
      { value: "document", label: "Whole document" },
    ],
    initial,
    testid,
  );
  return {
    ...choice,
    refresh() {
      const selected = hasSelection();
      const selBtn = choice.element.querySelector<HTMLButtonElement>('[data-value="selection"]');
      if (selBtn) selBtn.disabled = !selected;
      if (!selected && choice.value() === "selection") choice.set("document");
    },
  };
}

export function toggleSwitch(label: string, initial: boolean, testid: string, onChange?: (on: boolean) => void): { element: HTMLElement; input: HTMLInputElement } {
  const input = h("input", { type: "checkbox", class: "switch-input", "data-testid": testid, checked: initial, role: "switch" });
  input.addEventListener("change", () => onChange?.(input.checked));
  const element = h("label", { class: "switch" }, input, h("span", { class: "switch-track", "aria-hidden": "true" }), h("span", { class: "switch-label" }, label));
  return { element, input };
}

export interface ProgressBar {
  element: HTMLElement;
  set(done: number, total: number, label: string): void;
  indeterminate(label: string): void;
  hide(): void;
}

export function progressBar(testid: string): ProgressBar {
  const fill = h("div", { class: "progress-fill" });
  const text = h("div", { class: "progress-label", "data-testid": `${testid}-label` });
  const track = h("div", { class: "progress-track", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, fill);
  const element = h("div", { class: "progress", "data-testid": testid, hidden: true }, text, track);
  return {
    element,
    set(done, total, label) {
      element.hidden = false;
      element.classList.remove("indeterminate");
      const pct = total > 0 ? Math.max(0, Math.min(100, (done / total) * 100)) : 0;
      fill.style.width = `${pct}%`;
      track.setAttribute("aria-valuenow", String(Math.round(pct)));
      text.textContent = label;
    },
    indeterminate(label) {
      element.hidden = false;
      element.classList.add("indeterminate");
      fill.style.width = "";
      track.removeAttribute("aria-valuenow");
      text.textContent = label;
    },
    hide() {
      element.hidden = true;
    },
  };
}

/** An inline error line that shows a message, or hides when given null. */
export function inlineError(testid: string): { element: HTMLElement; show(message: string | null): void } {
  const element = h("div", { class: "inline-error", role: "alert", "data-testid": testid, hidden: true });
  return {
    element,
    show(message) {
      element.hidden = !message;
      setChildren(element, message ?? "");
    },
  };
}

export function button(label: string, testid: string, onclick: () => void, kind: "primary" | "secondary" | "quiet" | "danger" = "secondary"): HTMLButtonElement {
  return h("button", { type: "button", class: `btn btn-${kind}`, "data-testid": testid, onclick }, label);
}

/** "Chunk 2 of 5": the item being worked on, from how many are done. */
export function countLabel(unit: string, done: number, total: number): string {
  const n = Math.min(done + 1, total);
  return `${unit[0].toUpperCase()}${unit.slice(1)} ${n} of ${total}`;
}

/** Writes text to the clipboard; false when the webview refuses. */
export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // older webviews: a hidden textarea and execCommand
    const ta = h("textarea", { class: "visually-hidden" });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand("copy");
    ta.remove();
    return ok;
  }
}
