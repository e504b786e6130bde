import { describe, expect, it } from "vitest";
import { ALL_RULES_ON, afterEmptyListMarker, inCodeBlock, inFrontMatter, inUrl, midWord, suppressedBy } from "./suppress";

describe("where suggestions stay away", () => {
  it("knows an open fenced code block from a closed one", () => {
    expect(inCodeBlock("Text\n\n```rust\nfn main() {")).toBe(true);
    expect(inCodeBlock("```rust\nfn main() {}\n```\n\nProse again and")).toBe(false);
    expect(inCodeBlock("~~~\ncode\n```\nstill code")).toBe(true);
    expect(inCodeBlock("````\n```\nstill inside\n````\nout")).toBe(false);
    expect(inCodeBlock("Inline `code` is not a block and")).toBe(false);
  });

  it("knows front matter until it closes", () => {
    expect(inFrontMatter("---\ntitle: My ess")).toBe(true);
    expect(inFrontMatter("---\ntitle: x\n---\n\nThe essay starts")).toBe(false);
    expect(inFrontMatter("+++\ntitle = 'x'\n")).toBe(true);
    expect(inFrontMatter("Text\n---\ntitle")).toBe(false);
  });

  it("knows URLs and link targets", () => {
    expect(inUrl("See https://example.com/pa")).toBe(true);
    expect(inUrl("See (www.example")).toBe(true);
    expect(inUrl("Read [the plan](docs/pl")).toBe(true);
    expect(inUrl("[plan]: https://exa")).toBe(true);
    expect(inUrl("Read [the plan](docs/plan.md) and then")).toBe(false);
    expect(inUrl("The http protocol is")).toBe(false);
  });

  it("knows an empty list item", () => {
    expect(afterEmptyListMarker("Items:\n- ")).toBe(true);
    expect(afterEmptyListMarker("  12. ")).toBe(true);
    expect(afterEmptyListMarker("- [ ] ")).toBe(true);
    expect(afterEmptyListMarker("- Buy ")).toBe(false);
    expect(afterEmptyListMarker("-")).toBe(false);
  });

  it("knows the middle of a word", () => {
    expect(midWord("The qu", "ick fox")).toBe(true);
    expect(midWord("The quick", " fox")).toBe(false);
    expect(midWord("The quick ", "fox")).toBe(false);
    expect(midWord("Straße", "n")).toBe(true);
    expect(midWord("end", "")).toBe(false);
  });

  it("applies only the rules that are on", () => {
    const prefix = "```\nlet x = ";
    expect(suppressedBy(prefix, "", ALL_RULES_ON)).toBe("codeBlock");
    expect(suppressedBy(prefix, "", { ...ALL_RULES_ON, codeBlock: false })).toBeNull();
    expect(suppressedBy("The quick brown fox jumps over the", "", ALL_RULES_ON)).toBeNull();
  });
});
