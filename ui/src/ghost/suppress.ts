// Where automatic suggestions stay away: places in a Markdown document where a continuation
// of prose would only get in the way. Each rule can be switched off in the settings; asking
// for a suggestion explicitly (Ctrl+Space) works everywhere.

export type SuppressRule = "codeBlock" | "frontMatter" | "url" | "emptyListItem" | "midWord";

export const SUPPRESS_RULES: readonly { rule: SuppressRule; label: string }[] = [
  { rule: "codeBlock", label: "Inside fenced code blocks" },
  { rule: "frontMatter", label: "In front matter" },
  { rule: "url", label: "In URLs and link targets" },
  { rule: "emptyListItem", label: "Right after an empty list marker" },
  { rule: "midWord", label: "In the middle of a word" },
];

export type SuppressRules = Record<SuppressRule, boolean>;

export const ALL_RULES_ON: SuppressRules = { codeBlock: true, frontMatter: true, url: true, emptyListItem: true, midWord: true };

/** Whether the text before the cursor ends inside an open fenced code block (``` or ~~~). */
export function inCodeBlock(prefix: string): boolean {
  let open: string | null = null;
  for (const line of prefix.split("\n")) {
    const m = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (!m) continue;
    const fence = m[1];
    if (open === null) open = fence;
    // a closing fence: the same character, at least as long, nothing after it
    else if (fence[0] === open[0] && fence.length >= open.length && line.trim() === fence) open = null;
  }
  return open !== null;
}

/** Whether the cursor is inside YAML (---) or TOML (+++) front matter at the top of the document. */
export function inFrontMatter(prefix: string): boolean {
  const m = /^(---|\+\+\+)[ \t]*\n/.exec(prefix);
  if (!m) return false;
  const rest = prefix.slice(m[0].length).split("\n");
  // every line but the one being typed is a complete line; a closing marker ends it
  return !rest.slice(0, -1).some((l) => l.trim() === m[1]);
}

/** Whether the cursor is in a URL, an e-mail-like address or a Markdown link target. */
export function inUrl(prefix: string): boolean {
  const word = /\S*$/.exec(prefix)?.[0] ?? "";
  if (/(^|[(<\[])(https?|ftp|file|mailto):/i.test(word) || /(^|[(<\[])www\./i.test(word)) return true;
  // [text](target… or [text]: target… (a reference definition)
  const line = prefix.slice(prefix.lastIndexOf("\n") + 1);
  if (/\]\([^)\s]*$/.test(line)) return true;
  return /^ {0,3}\[[^\]]+\]:\s*\S*$/.test(line);
}

/** Whether the line so far is only a list marker ("- ", "* ", "1. ", "- [ ] "). */
export function afterEmptyListMarker(prefix: string): boolean {
  const line = prefix.slice(prefix.lastIndexOf("\n") + 1);
  return /^\s*([-*+]|\d{1,9}[.)])(\s+\[[ xX]\])?\s*$/.test(line) && /\s$/.test(line);
}

/** Whether the cursor sits between two letters or digits (editing inside a word). */
export function midWord(prefix: string, suffix: string): boolean {
  const before = prefix.slice(-1);
  const after = suffix.slice(0, 1);
  const wordChar = /[\p{L}\p{N}_]/u;
  return before !== "" && after !== "" && wordChar.test(before) && wordChar.test(after);
}

/** The first switched-on rule that keeps automatic suggestions away here, or null. */
export function suppressedBy(prefix: string, suffix: string, rules: SuppressRules): SuppressRule | null {
  if (rules.midWord && midWord(prefix, suffix)) return "midWord";
  if (rules.emptyListItem && afterEmptyListMarker(prefix)) return "emptyListItem";
  if (rules.url && inUrl(prefix)) return "url";
  if (rules.frontMatter && inFrontMatter(prefix)) return "frontMatter";
  if (rules.codeBlock && inCodeBlock(prefix)) return "codeBlock";
  return null;
}
