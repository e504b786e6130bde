// The right-hand side panel: holds one pane at a time next to the editor (which stays
// visible). Panes are built once and kept, so a running summary or download survives closing
// and reopening its pane.

import { h } from "../dom";
import { Emitter } from "../events";
import { icons } from "../icons";

export type PaneId = "summarize" | "translate" | "rewrite" | "finetune" | "models";

export interface Pane {
  id: PaneId;
  title: string;
  /** The pane's content (built once). */
  element: HTMLElement;
  /** Whether the panel should be wide right now (side-by-side translation). */
  wide?(): boolean;
  onShow?(): void;
  onHide?(): void;
  /** The document or selection changed while the pane is open. */
  refresh?(): void;
}

export class PaneHost {
  readonly element: HTMLElement;
  readonly changed = new Emitter<PaneId | null>();
  private readonly panes = new Map<PaneId, Pane>();
  private readonly title: HTMLElement;
  private readonly body: HTMLElement;
  private active: Pane | null = null;

  constructor() {
    this.title = h("h2", { class: "sidepanel-title", id: "sidepanel-title" });
    this.body = h("div", { class: "sidepanel-body" });
    this.element = h(
      "aside",
      { class: "sidepanel", "data-testid": "sidepanel", "aria-labelledby": "sidepanel-title", hidden: true },
      h(
        "div",
        { class: "sidepanel-head" },
        this.title,
        h("button", {
          class: "icon-btn",
          "data-testid": "pane-close",
          "aria-label": "Close panel",
          title: "Close panel",
          html: icons.close,
          onclick: () => this.hide(),
        }),
      ),
      this.body,
    );
  }

  add(pane: Pane): void {
    this.panes.set(pane.id, pane);
    pane.element.hidden = true;
    pane.element.classList.add("pane");
    pane.element.dataset.testid = `pane-${pane.id}`;
    this.body.append(pane.element);
  }

  current(): PaneId | null {
    return this.active?.id ?? null;
  }

  show(id: PaneId): void {
    const pane = this.panes.get(id);
    if (!pane) return;
    if (this.active && this.active !== pane) {
      this.active.element.hidden = true;
      this.active.onHide?.();
    }
    const wasActive = this.active === pane;
    this.active = pane;
    pane.element.hidden = false;
    this.title.textContent = pane.title;
    this.element.hidden = false;
    this.relayout();
    if (!wasActive) pane.onShow?.();
    this.changed.emit(id);
  }

  toggle(id: PaneId): void {
    if (this.active?.id === id) this.hide();
    else this.show(id);
  }

  hide(): void {
    if (!this.active) return;
    this.active.element.hidden = true;
    this.active.onHide?.();
    this.active = null;
    this.element.hidden = true;
    this.changed.emit(null);
  }

  /** Tells the open pane that the editor changed. */
  refreshActive(): void {
    this.active?.refresh?.();
  }

  /** Re-reads the active pane's width wish. */
  relayout(): void {
    this.element.classList.toggle("wide", !!this.active?.wide?.());
  }
}
