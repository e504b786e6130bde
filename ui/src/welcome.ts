// First run: the default model is not on this machine yet. A banner offers it (fetched and
// checksummed the way `make run` fetches it) or the Models pane for another; once it is
// installed the app works offline.

import * as api from "./api";
import { banner } from "./banner";
import { h } from "./dom";
import { formatBytes } from "./format";

export interface WelcomeActions {
  /** Loads the default model once it is installed. */
  load(): Promise<void>;
  /** Opens the Models pane. */
  chooseAnother(): void;
}

/** The banner that offers the default model, or null when the catalog has none. */
export async function defaultModelBanner(actions: WelcomeActions): Promise<HTMLElement | null> {
  const entry = (await api.catalog()).find((m) => m.isDefault);
  if (!entry) return null;
  const size = entry.sizeBytes ? ` (${formatBytes(entry.sizeBytes)})` : "";
  const text = h(
    "span",
    { class: "banner-text", "data-testid": "welcome-text" },
    `Penwright writes with a language model that runs on this computer. Its default model, ${entry.displayName}${size}, is not installed yet.`,
  );
  const download = h("button", { class: "btn btn-primary", "data-testid": "welcome-download" }, "Download it");
  const other = h("button", { class: "btn btn-quiet", "data-testid": "welcome-other", onclick: () => actions.chooseAnother() }, "Choose another model");
  const offer = banner("welcome-banner", text, [download, other]);
  download.addEventListener("click", () => {
    download.disabled = true;
    text.textContent = `Downloading ${entry.displayName}… it is checked against its checksum before use.`;
    api
      .downloadModel({ name: entry.name }, (e) => {
        if (e.data.total) text.textContent = `Downloading ${entry.displayName}: ${formatBytes(e.data.done)} of ${formatBytes(e.data.total)}`;
      })
      .then(() => actions.load())
      .then(
        () => offer.remove(),
        (e) => {
          download.disabled = false;
          download.textContent = "Try again";
          text.textContent = `The download failed: ${api.toApiError(e).message}`;
        },
      );
  });
  return offer;
}
