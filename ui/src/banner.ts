// The banner above the editor: a line of text and its buttons (the recovery offer, the first
// run's model offer, a question such as which encoding to open a file in).

import { h } from "./dom";

export function banner(testid: string, text: HTMLElement | string, actions: HTMLElement[], role: "alert" | "alertdialog" = "alert"): HTMLElement {
  const line = typeof text === "string" ? h("span", { class: "banner-text" }, text) : text;
  return h("div", { class: "banner", role, "data-testid": testid }, line, h("span", { class: "banner-actions" }, actions));
}
