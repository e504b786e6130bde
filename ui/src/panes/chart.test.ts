// @vitest-environment happy-dom
import { describe, expect, it } from "vitest";

import { alignSeries } from "./chart";

describe("fine-tune chart data", () => {
  it("aligns sparse loss and perplexity series on one step axis", () => {
    const loss = new Map([
      [1, 3.2],
      [2, 3.0],
      [3, 2.9],
    ]);
    const ppl = new Map([
      [2, 24.5],
      [4, 22.0],
    ]);
    expect(alignSeries({ loss, ppl })).toEqual([
      [1, 2, 3, 4],
      [3.2, 3.0, 2.9, null],
      [null, 24.5, null, 22.0],
    ]);
    expect(alignSeries({ loss: new Map(), ppl: new Map() })).toEqual([[], [], []]);
  });
});
