// The CodeMirror editor: Markdown, line wrapping, a quiet theme drawn from CSS variables, and
// the ghost-text autocomplete. `Editor` is the small surface the rest of the app uses.

import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { markdown, markdownLanguage } from "@codemirror/lang-markdown";
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { highlightSelectionMatches, search, searchKeymap } from "@codemirror/search";
import { EditorSelection, EditorState, Text, Transaction, type Extension } from "@codemirror/state";
import { EditorView, drawSelection, dropCursor, keymap, placeholder } from "@codemirror/view";
import { tags as t } from "@lezer/highlight";

import { ghostEvent, ghostText, requestSuggestion, setGhostEnabled, setGhostSubtle, type GhostOptions } from "./ghost/extension";

const markdownHighlight = HighlightStyle.define([
  { tag: t.heading1, class: "md-h md-h1" },
  { tag: t.heading2, class: "md-h md-h2" },
  { tag: [t.heading3, t.heading4, t.heading5, t.heading6], class: "md-h md-h3" },
  { tag: t.emphasis, class: "md-em" },
  { tag: t.strong, class: "md-strong" },
  { tag: t.strikethrough, class: "md-strike" },
  { tag: [t.link, t.url], class: "md-link" },
  { tag: t.monospace, class: "md-code" },
  { tag: t.quote, class: "md-quote" },
  { tag: [t.processingInstruction, t.meta, t.contentSeparator], class: "md-mark" },
  { tag: t.comment, class: "md-comment" },
]);

/** The editor's look, all from CSS variables (so the light/dark switch is pure CSS). */
const calmTheme = EditorView.theme({
  "&": { height: "100%", backgroundColor: "var(--bg)", color: "var(--text)" },
  "&.cm-focused": { outline: "none" },
  ".cm-scroller": {
    fontFamily: "var(--editor-font)",
    fontSize: "var(--editor-size)",
    lineHeight: "var(--editor-leading)",
  },
  ".cm-content": {
    maxWidth: "var(--measure)",
    width: "100%",
    margin: "0 auto",
    padding: "64px 40px 40vh",
    caretColor: "var(--cursor)",
  },
  ".cm-line": { padding: "0" },
  ".cm-cursor, .cm-dropCursor": { borderLeft: "2px solid var(--cursor)", marginLeft: "-1px" },
  "&.cm-focused > .cm-scroller > .cm-selectionLayer .cm-selectionBackground, .cm-selectionBackground, .cm-content ::selection": {
    backgroundColor: "var(--selection)",
  },
  ".cm-placeholder": { color: "var(--text-faint)", fontStyle: "italic" },
  ".cm-selectionMatch": { backgroundColor: "var(--accent-soft)" },
  ".cm-searchMatch": { backgroundColor: "var(--accent-soft)", outline: "1px solid var(--accent)" },
  ".cm-searchMatch.cm-searchMatch-selected": { backgroundColor: "var(--selection)" },
  ".cm-panels": { backgroundColor: "var(--panel)", color: "var(--text)", fontFamily: "var(--ui-font)", fontSize: "13px" },
  ".cm-panels.cm-panels-top": { borderBottom: "1px solid var(--border)" },
  ".cm-panel.cm-search": { padding: "8px 12px" },
  ".cm-panel.cm-search label": { fontSize: "12.5px", color: "var(--text-muted)" },
  ".cm-textfield": {
    border: "1px solid var(--border-strong)",
    borderRadius: "6px",
    backgroundColor: "var(--bg-elevated)",
    padding: "3px 6px",
  },
  ".cm-button": {
    border: "1px solid var(--border-strong)",
    borderRadius: "6px",
    backgroundColor: "var(--bg-elevated)",
    backgroundImage: "none",
    color: "var(--text)",
    padding: "3px 9px",
  },
  ".cm-panel button[name=close]": { color: "var(--text-muted)", fontSize: "18px" },
});

export interface EditorOptions {
  ghost: GhostOptions;
  /** The document changed (not on every keystroke-free update). */
  onDocChange(view: EditorView): void;
  onSelectionChange?(view: EditorView): void;
}

export interface Range {
  from: number;
  to: number;
  text: string;
}

export class Editor {
  readonly view: EditorView;
  private extensions: Extension;

  constructor(parent: HTMLElement, private readonly options: EditorOptions) {
    this.extensions = [
      history(),
      drawSelection(),
      dropCursor(),
      EditorState.allowMultipleSelections.of(true),
      EditorView.lineWrapping,
      calmTheme,
      markdown({ base: markdownLanguage }),
      syntaxHighlighting(markdownHighlight),
      search({ top: true }),
      highlightSelectionMatches(),
      placeholder("Start writing…"),
      ghostText(options.ghost),
      keymap.of([...defaultKeymap, ...historyKeymap, ...searchKeymap, indentWithTab]),
      EditorView.contentAttributes.of({
        "data-testid": "editor",
        "aria-label": "Document",
        spellcheck: "true",
        autocorrect: "off",
        autocapitalize: "sentences",
      }),
      EditorView.updateListener.of((u) => {
        if (u.docChanged) this.options.onDocChange(u.view);
        if (u.selectionSet) this.options.onSelectionChange?.(u.view);
      }),
    ];
    // Tauri nonces every <style> in index.html and then adds the nonce to style-src, which voids
    // 'unsafe-inline' for CodeMirror's own runtime <style>. index.html has none, but should one
    // appear, CodeMirror stamps its styles with the same nonce.
    const nonce = document.querySelector<HTMLStyleElement>("style[nonce]")?.nonce;
    if (nonce) this.extensions = [this.extensions, EditorView.cspNonce.of(nonce)];
    this.view = new EditorView({ parent, state: this.freshState("") });
  }

  private freshState(doc: string): EditorState {
    return EditorState.create({ doc, extensions: this.extensions });
  }

  get doc(): Text {
    return this.view.state.doc;
  }

  text(): string {
    return this.view.state.doc.toString();
  }

  /** Replaces the whole document with a fresh history (open, new, restore). */
  load(text: string): void {
    this.view.setState(this.freshState(text));
    this.options.onDocChange(this.view);
    this.options.onSelectionChange?.(this.view);
  }

  /** The main selection (empty text when nothing is selected). */
  selection(): Range {
    const { from, to } = this.view.state.selection.main;
    return { from, to, text: this.view.state.sliceDoc(from, to) };
  }

  /** Replaces `range` (by default the selection) with `text`, as one undoable step. */
  replace(text: string, range: { from: number; to: number } = this.view.state.selection.main): void {
    const to = Math.min(range.to, this.doc.length);
    const from = Math.min(range.from, to);
    this.view.dispatch({
      changes: { from, to, insert: text },
      selection: EditorSelection.range(from, from + text.length),
      userEvent: "input.replace",
      scrollIntoView: true,
    });
    this.view.focus();
  }

  /** Inserts `text` as a new paragraph after the line holding `pos` (default: selection end). */
  insertBelow(text: string, pos: number = this.view.state.selection.main.to): void {
    const line = this.doc.lineAt(Math.min(pos, this.doc.length));
    const before = line.to === 0 && this.doc.length === 0 ? "" : "\n\n";
    const insert = `${before}${text.trim()}\n`;
    this.view.dispatch({
      changes: { from: line.to, insert },
      selection: EditorSelection.cursor(line.to + insert.length),
      userEvent: "input.paste",
      scrollIntoView: true,
    });
    this.view.focus();
  }

  focus(): void {
    this.view.focus();
  }

  setAutocomplete(enabled: boolean): void {
    setGhostEnabled(this.view, enabled);
  }

  /** Subtle mode: suggestions show only while Alt is held. */
  setSubtle(subtle: boolean): void {
    setGhostSubtle(this.view, subtle);
  }

  requestSuggestion(): void {
    this.view.focus();
    requestSuggestion(this.view);
  }

  /** Drops any suggestion, e.g. before a document replaces this one. */
  dismissSuggestion(): void {
    this.view.dispatch({ effects: ghostEvent.of({ type: "dismiss" }), annotations: Transaction.addToHistory.of(false) });
  }
}
