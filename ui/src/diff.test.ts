// @vitest-environment happy-dom
import { describe, expect, it } from "vitest";
import { diffCounts, renderDiff, side, wordDiff } from "./diff";

describe("wordDiff", () => {
  it("marks the words that changed and keeps the rest", () => {
    const d = wordDiff("The cat sat on the mat.", "The dog sat on the mat.");
    expect(d).toEqual([
      { kind: "same", text: "The " },
      { kind: "removed", text: "cat" },
      { kind: "added", text: "dog" },
      { kind: "same", text: " sat on the mat." },
    ]);
    expect(diffCounts(d)).toEqual({ added: 1, removed: 1 });
  });

  it("gives back both texts exactly, Markdown and line breaks included", () => {
    const pairs: [string, string][] = [
      ["# Notes\n\nThe report was written by **Anna**.\n", "# Notes\n\nAnna wrote the **report**.\n"],
      ["- one\n- two", "- one\n- two\n- three"],
      ["", "All new."],
      ["Gone.", ""],
      ["same", "same"],
    ];
    for (const [a, b] of pairs) {
      const d = wordDiff(a, b);
      expect(side(d, "before")).toBe(a);
      expect(side(d, "after")).toBe(b);
    }
    expect(wordDiff("same", "same").every((s) => s.kind === "same")).toBe(true);
  });

  it("renders removals as del and additions as ins", () => {
    const nodes = renderDiff(wordDiff("a big cat", "a cat"));
    const box = document.createElement("div");
    box.append(...nodes);
    expect(box.querySelector("del")?.textContent).toBe("big ");
    expect(box.querySelector("ins")).toBeNull();
    expect(box.textContent).toBe("a big cat");
  });
});
