// The top bar: file buttons on the left, the document's name (with the unsaved dot and the
// recent files menu) in the middle, the pane toggles, theme and help on the right.

import type { DocState } from "./documents";
import { h, setChildren } from "./dom";
import { baseName, dirName } from "./format";
import { icons, type IconName } from "./icons";
import type { PaneId } from "./panes/host";
import { keyLabel } from "./shortcuts";

export interface TopBarActions {
  newDocument(): void;
  open(path?: string): void;
  save(): void;
  saveAs(): void;
  togglePane(id: PaneId): void;
  toggleTheme(): void;
  help(): void;
  recentFiles(): Promise<string[]>;
}

const PANES: { id: PaneId; label: string; icon: IconName; keys: string }[] = [
  { id: "summarize", label: "Summarize", icon: "summarize", keys: "Mod-Shift-m" },
  { id: "translate", label: "Translate", icon: "translate", keys: "Mod-Shift-t" },
  { id: "rewrite", label: "Rewrite", icon: "rewrite", keys: "Mod-Shift-e" },
  { id: "finetune", label: "Fine-tune", icon: "finetune", keys: "Mod-Shift-f" },
  { id: "models", label: "Models", icon: "models", keys: "Mod-Shift-l" },
];

const shortcut = (spec: string) => keyLabel(spec).join("+");

function iconButton(icon: IconName, label: string, testid: string, onclick: () => void, keys?: string): HTMLButtonElement {
  return h("button", {
    class: "icon-btn",
    "data-testid": testid,
    "aria-label": label,
    title: keys ? `${label} (${shortcut(keys)})` : label,
    html: icons[icon],
    onclick,
  });
}

export class TopBar {
  readonly element: HTMLElement;
  private readonly name = h("span", { class: "doc-name", "data-testid": "doc-name" }, "Untitled");
  private readonly encodingBadge = h("span", { class: "badge muted", "data-testid": "doc-encoding", title: "Opened and saved in this encoding", hidden: true });
  private readonly dot = h("span", { class: "dirty-dot", "data-testid": "dirty-indicator", title: "Unsaved changes", hidden: true });
  private readonly menu = h("div", { class: "menu", role: "menu", "data-testid": "recent-menu", hidden: true });
  private readonly titleButton: HTMLButtonElement;
  private readonly themeButton: HTMLButtonElement;
  private readonly paneButtons = new Map<PaneId, HTMLButtonElement>();

  constructor(private readonly actions: TopBarActions) {
    this.titleButton = h(
      "button",
      {
        class: "doc-title",
        "data-testid": "btn-recent",
        "aria-haspopup": "menu",
        "aria-expanded": "false",
        title: "Recent files",
        onclick: (e: Event) => {
          e.stopPropagation();
          void this.toggleMenu();
        },
      },
      this.name,
      this.encodingBadge,
      this.dot,
      h("span", { class: "chevron", html: icons.chevronDown }),
    );
    this.themeButton = iconButton("moon", "Toggle dark mode", "btn-theme", () => actions.toggleTheme());
    for (const p of PANES) {
      this.paneButtons.set(
        p.id,
        h(
          "button",
          {
            class: "pane-toggle",
            "data-testid": `open-${p.id}`,
            "aria-pressed": "false",
            title: `${p.label} (${shortcut(p.keys)})`,
            onclick: () => actions.togglePane(p.id),
          },
          h("span", { html: icons[p.icon], class: "pane-toggle-icon" }),
          h("span", { class: "pane-toggle-label" }, p.label),
        ),
      );
    }

    this.element = h(
      "header",
      { class: "topbar", "data-testid": "topbar" },
      h(
        "div",
        { class: "topbar-left" },
        iconButton("newFile", "New document", "btn-new", () => actions.newDocument(), "Mod-n"),
        iconButton("open", "Open…", "btn-open", () => actions.open(), "Mod-o"),
        iconButton("save", "Save", "btn-save", () => actions.save(), "Mod-s"),
      ),
      h("div", { class: "topbar-center" }, h("div", { class: "doc-title-wrap" }, this.titleButton, this.menu)),
      h(
        "div",
        { class: "topbar-right" },
        h("div", { class: "pane-toggles", role: "group", "aria-label": "Panels" }, [...this.paneButtons.values()]),
        h("span", { class: "divider", "aria-hidden": "true" }),
        this.themeButton,
        iconButton("help", "Keyboard shortcuts", "btn-help", () => actions.help(), "F1"),
      ),
    );
    document.addEventListener("click", (e) => {
      if (!this.menu.hidden && !this.menu.contains(e.target as Node)) this.closeMenu();
    });
  }

  showDocument(state: DocState): void {
    this.name.textContent = state.path ? baseName(state.path) : "Untitled";
    this.encodingBadge.hidden = state.encoding === "utf-8";
    this.encodingBadge.textContent = state.encoding === "windows-1252" ? "Windows-1252" : "";
    this.titleButton.title = state.path ? `${state.path}\nRecent files` : "Recent files";
    this.dot.hidden = !state.dirty;
  }

  showPane(active: PaneId | null): void {
    for (const [id, b] of this.paneButtons) {
      b.classList.toggle("on", id === active);
      b.setAttribute("aria-pressed", String(id === active));
    }
  }

  showTheme(theme: "light" | "dark"): void {
    this.themeButton.innerHTML = theme === "dark" ? icons.sun : icons.moon;
    const label = theme === "dark" ? "Switch to light mode" : "Switch to dark mode";
    this.themeButton.setAttribute("aria-label", label);
    this.themeButton.title = label;
  }

  private async toggleMenu(): Promise<void> {
    if (!this.menu.hidden) {
      this.closeMenu();
      return;
    }
    this.menu.hidden = false;
    this.titleButton.setAttribute("aria-expanded", "true");
    setChildren(this.menu, h("div", { class: "menu-head" }, "Recent files"), h("div", { class: "menu-empty" }, "Loading…"));
    const files = await this.actions.recentFiles();
    setChildren(
      this.menu,
      h("div", { class: "menu-head" }, "Recent files"),
      files.length === 0
        ? h("div", { class: "menu-empty" }, "No recent files yet.")
        : files.slice(0, 12).map((f) =>
            h(
              "button",
              {
                class: "menu-item",
                role: "menuitem",
                "data-testid": "recent-item",
                title: f,
                onclick: () => {
                  this.closeMenu();
                  this.actions.open(f);
                },
              },
              h("span", { class: "menu-item-name" }, baseName(f)),
              h("span", { class: "menu-item-dir" }, dirName(f)),
            ),
          ),
      h("div", { class: "menu-sep" }),
      h(
        "button",
        {
          class: "menu-item",
          role: "menuitem",
          "data-testid": "recent-open",
          onclick: () => {
            this.closeMenu();
            this.actions.open();
          },
        },
        h("span", { class: "menu-item-name" }, "Open…"),
        h("span", { class: "menu-item-dir" }, shortcut("Mod-o")),
      ),
      h(
        "button",
        {
          class: "menu-item",
          role: "menuitem",
          "data-testid": "btn-save-as",
          onclick: () => {
            this.closeMenu();
            this.actions.saveAs();
          },
        },
        h("span", { class: "menu-item-name" }, "Save as…"),
        h("span", { class: "menu-item-dir" }, shortcut("Mod-Shift-s")),
      ),
    );
    this.menu.querySelector<HTMLElement>(".menu-item")?.focus();
  }

  /** Closes the recent files menu; true when it was open. */
  closeMenu(): boolean {
    if (this.menu.hidden) return false;
    this.menu.hidden = true;
    this.titleButton.setAttribute("aria-expanded", "false");
    return true;
  }
}
