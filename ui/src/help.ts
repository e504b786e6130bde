// The keyboard shortcut overlay (F1 or Ctrl+/).

import { h } from "./dom";
import { icons } from "./icons";
import { SHORTCUTS, editorShortcuts, isMac, keyLabel, type Shortcut, type ShortcutGroup } from "./shortcuts";

export class HelpOverlay {
  readonly element: HTMLElement;
  private returnFocus: HTMLElement | null = null;

  constructor() {
    const mac = isMac();
    const all: Shortcut[] = [...SHORTCUTS, ...editorShortcuts(mac)];
    const groups: ShortcutGroup[] = ["File", "Writing", "Panes", "View"];
    const close = h("button", { class: "icon-btn", "data-testid": "help-close", "aria-label": "Close", title: "Close (Esc)", html: icons.close, onclick: () => this.close() });
    const dialog = h(
      "div",
      { class: "dialog", role: "dialog", "aria-modal": "true", "aria-labelledby": "help-title" },
      h("div", { class: "dialog-head" }, h("h2", { id: "help-title" }, "Keyboard shortcuts"), close),
      h(
        "div",
        { class: "help-grid" },
        groups.map((g) =>
          h(
            "section",
            { class: "help-group" },
            h("h3", {}, g === "Writing" ? "Writing & suggestions" : g),
            h(
              "dl",
              {},
              all
                .filter((s) => s.group === g)
                .map((s) => [
                  h("dt", {}, s.label),
                  h(
                    "dd",
                    {},
                    s.keys.map((k, i) => [i > 0 ? h("span", { class: "or" }, "or") : null, h("span", { class: "keys" }, keyLabel(k, mac).map((part) => h("kbd", {}, part)))]),
                  ),
                ]),
            ),
          ),
        ),
      ),
      h("p", { class: "dialog-foot" }, "Suggestions appear in grey after a short pause. They are never part of your document until you accept them. Everything runs on this computer."),
    );
    this.element = h("div", { class: "overlay", "data-testid": "help-overlay", hidden: true, onclick: (e: Event) => e.target === this.element && this.close() }, dialog);
  }

  isOpen(): boolean {
    return !this.element.hidden;
  }

  open(): void {
    this.returnFocus = document.activeElement as HTMLElement | null;
    this.element.hidden = false;
    this.element.querySelector<HTMLElement>("[data-testid=help-close]")?.focus();
  }

  toggle(): void {
    if (this.isOpen()) this.close();
    else this.open();
  }

  /** Closes the overlay; true when it was open. */
  close(): boolean {
    if (this.element.hidden) return false;
    this.element.hidden = true;
    this.returnFocus?.focus();
    return true;
  }
}
