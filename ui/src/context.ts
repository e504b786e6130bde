// What the panes get from the app.

import type { Documents } from "./documents";
import type { Editor } from "./editor";
import type { PaneHost } from "./panes/host";

export interface AppContext {
  editor: Editor;
  documents: Documents;
  panes: PaneHost;
  /** Shows the latest generation speed in the status bar. */
  reportSpeed(text: string): void;
}
