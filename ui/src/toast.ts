// Non-blocking notices in the corner: errors from the backend, confirmations.

import { h } from "./dom";
import { isCancelled, toApiError } from "./api";

let host: HTMLElement | null = null;

function container(): HTMLElement {
  if (!host) {
    host = h("div", { class: "toasts", "data-testid": "toasts", role: "status", "aria-live": "polite" });
    document.body.append(host);
  }
  return host;
}

export type ToastKind = "info" | "error" | "success";

export function toast(message: string, kind: ToastKind = "info", ms = kind === "error" ? 7000 : 3500): void {
  const close = () => {
    el.classList.add("leaving");
    setTimeout(() => el.remove(), 180);
  };
  const el = h(
    "div",
    { class: `toast toast-${kind}`, "data-testid": `toast-${kind}` },
    h("span", { class: "toast-text" }, message),
    h("button", { class: "toast-close", "aria-label": "Dismiss", title: "Dismiss", onclick: close }, "×"),
  );
  container().append(el);
  setTimeout(close, ms);
}

/** Shows a backend error's message (a cancellation is not an error). */
export function toastError(e: unknown, context?: string): void {
  if (isCancelled(e)) return;
  const err = toApiError(e);
  toast(context ? `${context}: ${err.message}` : err.message, "error");
}
