// The open document: its path, whether it has unsaved changes, the window title, New / Open /
// Save / Save As, recent files, autosave to the recovery copy and the guard on closing.

import { Text } from "@codemirror/state";
import { getCurrentWindow } from "@tauri-apps/api/window";

import * as api from "./api";
import { confirmDialog, pickDocument, pickSavePath } from "./dialogs";
import type { Editor } from "./editor";
import { Emitter } from "./events";
import { baseName, windowTitle } from "./format";
import { toast, toastError } from "./toast";

export const AUTOSAVE_MS = 3000;

export interface DocState {
  path: string | null;
  dirty: boolean;
  /** What the file is read and saved in. */
  encoding: api.TextEncoding;
}

/** Asks the writer a yes/no question in the window (the encoding choices). */
export type Ask = (message: string, yes: string, testid: string) => Promise<boolean>;

/** Adds ".md" to a path that has no extension Penwright saves. */
export function withDocumentExtension(path: string): string {
  return /\.(md|markdown|txt)$/i.test(path) ? path : `${path}.md`;
}

export class Documents {
  readonly changed = new Emitter<DocState>();
  private path: string | null = null;
  private encoding: api.TextEncoding = "utf-8";
  private saved: Text = Text.empty;
  private dirty = false;
  /** The text last written to the recovery copy (null: none written). */
  private recovered: Text | null = null;
  /** While the recovery banner waits for an answer, autosave must not overwrite the copy. */
  private holdAutosave = false;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly editor: Editor,
    private readonly ask: Ask = (message, yes) => confirmDialog(message, { okLabel: yes, cancelLabel: "Cancel" }),
  ) {}

  state(): DocState {
    return { path: this.path, dirty: this.dirty, encoding: this.encoding };
  }

  /** Call on every document change. */
  docChanged(): void {
    const dirty = !this.editor.doc.eq(this.saved);
    if (dirty !== this.dirty) {
      this.dirty = dirty;
      this.publish();
    }
  }

  private publish(): void {
    const title = windowTitle(this.path, this.dirty);
    document.title = title;
    if (api.backendAvailable()) getCurrentWindow().setTitle(title).catch(() => {});
    this.changed.emit(this.state());
  }

  private setLoaded(text: string, path: string | null, dirty = false, encoding: api.TextEncoding = "utf-8"): void {
    this.editor.load(text);
    this.path = path;
    this.encoding = encoding;
    this.saved = dirty ? Text.empty : this.editor.doc;
    this.dirty = dirty && text.length > 0;
    this.publish();
  }

  /** Asks before throwing away unsaved changes; true when it is fine to go on. */
  async confirmDiscard(action: string): Promise<boolean> {
    if (!this.dirty) return true;
    const name = this.path ? baseName(this.path) : "Untitled";
    return confirmDialog(`“${name}” has unsaved changes. ${action} without saving?`, {
      title: "Unsaved changes",
      okLabel: "Discard changes",
      cancelLabel: "Cancel",
    });
  }

  async newDocument(): Promise<void> {
    if (!(await this.confirmDiscard("Start a new document"))) return;
    this.setLoaded("", null);
    this.clearRecoveryCopy();
    this.editor.focus();
  }

  /** Opens `path`, or asks for one. */
  async open(path?: string): Promise<void> {
    if (!api.backendAvailable()) {
      toast("Opening files needs the Penwright app (backend unavailable).", "error");
      return;
    }
    if (!(await this.confirmDiscard("Open another document"))) return;
    try {
      const chosen = path ?? (await pickDocument());
      if (!chosen) return;
      const doc = await this.read(chosen);
      if (!doc) return;
      this.setLoaded(doc.text, doc.path, false, doc.encoding);
      this.clearRecoveryCopy();
      this.editor.focus();
    } catch (e) {
      toastError(e, "Could not open");
    }
  }

  /** Reads `path` as UTF-8; a file that is not may be opened as Windows-1252 if the writer
   * says so (never silently). Null when they decline. */
  private async read(path: string): Promise<api.OpenedDocument | null> {
    try {
      return await api.openDocument(path);
    } catch (e) {
      if (api.toApiError(e).kind !== "not_utf8") throw e;
      const yes = await this.ask(
        `“${baseName(path)}” is not UTF-8 text. If it is an older Latin-1 / Windows-1252 file, Penwright can open it as one and save it back the same way.`,
        "Open as Windows-1252",
        "encoding-open",
      );
      return yes ? api.openDocument(path, "windows-1252") : null;
    }
  }

  /** Opens `text` as a new, unsaved document (e.g. a translation). */
  async openAsNew(text: string): Promise<void> {
    if (!(await this.confirmDiscard("Open a new document"))) return;
    this.setLoaded(text, null, true);
    this.editor.focus();
  }

  async save(): Promise<boolean> {
    if (!this.path) return this.saveAs();
    return this.writeTo(this.path);
  }

  async saveAs(): Promise<boolean> {
    if (!api.backendAvailable()) {
      toast("Saving needs the Penwright app (backend unavailable).", "error");
      return false;
    }
    try {
      const chosen = await pickSavePath(this.path ?? "Untitled.md");
      if (!chosen) return false;
      return this.writeTo(withDocumentExtension(chosen));
    } catch (e) {
      toastError(e, "Could not save");
      return false;
    }
  }

  private async writeTo(path: string): Promise<boolean> {
    const snapshot = this.editor.doc;
    try {
      let saved: api.SavedDocument;
      try {
        saved = await api.saveDocument(path, snapshot.toString(), this.encoding);
      } catch (e) {
        const err = api.toApiError(e);
        if (err.kind !== "unencodable") throw e;
        const yes = await this.ask(`${err.message}. Save “${baseName(path)}” as UTF-8 from now on?`, "Save as UTF-8", "encoding-utf8");
        if (!yes) return false;
        saved = await api.saveDocument(path, snapshot.toString(), "utf-8");
        this.encoding = "utf-8";
      }
      this.path = saved.path;
      this.saved = snapshot;
      this.recovered = null; // the backend clears the recovery copy on save
      this.dirty = !this.editor.doc.eq(snapshot);
      this.publish();
      toast(`Saved ${baseName(saved.path)}`, "success", 2000);
      return true;
    } catch (e) {
      toastError(e, "Could not save");
      return false;
    }
  }

  async recentFiles(): Promise<string[]> {
    try {
      return await api.recentFiles();
    } catch {
      return [];
    }
  }

  // -- autosave and recovery ----------------------------------------------------------------

  startAutosave(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.autosave(), AUTOSAVE_MS);
  }

  async autosave(): Promise<void> {
    if (this.holdAutosave || !api.backendAvailable()) return;
    const doc = this.editor.doc;
    if (this.dirty) {
      if (this.recovered && this.recovered.eq(doc)) return;
      try {
        await api.writeRecovery(doc.toString(), this.path);
        this.recovered = doc;
      } catch {
        // autosave is best effort; the next tick tries again
      }
    } else if (this.recovered) {
      this.clearRecoveryCopy();
    }
  }

  private clearRecoveryCopy(): void {
    this.recovered = null;
    api.clearRecovery().catch(() => {});
  }

  /** The recovery copy a crash left behind, if any (autosave waits until it is answered). */
  async takeRecovery(): Promise<api.Recovery | null> {
    try {
      const r = await api.takeRecovery();
      if (r && r.text.trim()) {
        this.holdAutosave = true;
        return r;
      }
    } catch {
      // no backend: nothing to recover
    }
    return null;
  }

  restore(recovery: api.Recovery): void {
    this.holdAutosave = false;
    this.setLoaded(recovery.text, recovery.path, true);
    this.editor.focus();
  }

  discardRecovery(): void {
    this.holdAutosave = false;
    this.clearRecoveryCopy();
  }

  /** Asks before the window closes with unsaved changes. */
  async guardClose(): Promise<void> {
    if (!api.backendAvailable()) {
      window.addEventListener("beforeunload", (e) => {
        if (this.dirty) e.preventDefault();
      });
      return;
    }
    await getCurrentWindow().onCloseRequested(async (event) => {
      if (!this.dirty) return;
      const ok = await this.confirmDiscard("Close");
      if (!ok) {
        event.preventDefault();
        return;
      }
      // the writer chose to discard: do not offer it again next time
      await api.clearRecovery().catch(() => {});
    });
  }
}
