import { describe, expect, it } from "vitest";

import { baseName, dirName, fitLabel, formatBytes, formatCount, formatDuration, formatParameters, formatTime, memoryEstimate, relativeChange, toDate, wordCount, windowTitle } from "./format";

describe("format", () => {
  it("counts words in prose, Markdown and other scripts", () => {
    expect(wordCount("")).toBe(0);
    expect(wordCount("   \n ")).toBe(0);
    expect(wordCount("One two  three")).toBe(3);
    expect(wordCount("# Heading\n\n- a list item, with *emphasis*.")).toBe(6);
    expect(wordCount("don't well-known it's")).toBe(3);
    expect(wordCount("Ça va très bien")).toBe(4);
    expect(wordCount("日本語 text")).toBe(4);
  });

  it("window title marks unsaved changes", () => {
    expect(windowTitle(null, false)).toBe("Untitled — Penwright");
    expect(windowTitle("/home/a/notes/name.md", true)).toBe("name.md • — Penwright");
    expect(windowTitle("C:\\docs\\draft.txt", false)).toBe("draft.txt — Penwright");
  });

  it("paths", () => {
    expect(baseName("/a/b/c.md")).toBe("c.md");
    expect(baseName("c.md")).toBe("c.md");
    expect(dirName("/home/ana/notes/c.md")).toBe("~/notes");
    expect(dirName("/Users/bo/c.md")).toBe("~");
    expect(dirName("c.md")).toBe("");
  });

  it("bytes, counts, durations", () => {
    expect(formatBytes(0)).toBe("—");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(98_000_000)).toBe("98.0 MB");
    expect(formatBytes(3_090_000_000)).toBe("3.1 GB");
    expect(formatCount(1234)).toBe("1,234");
    expect(formatCount(118_400)).toBe("118k");
    expect(formatCount(2_500_000)).toBe("2.5M");
    expect(formatDuration(42)).toBe("42 s");
    expect(formatDuration(185)).toBe("3 min 05 s");
    expect(formatDuration(3720)).toBe("1 h 02 min");
    expect(formatDuration(-1)).toBe("—");
    expect(formatParameters(134_515_008)).toBe("135M");
    expect(formatParameters(1_540_000_000)).toBe("1.5B");
    expect(memoryEstimate(0)).toBe("");
    expect(memoryEstimate(790_000_000)).toBe("≈ 790 MB to run");
  });

  it("relative change of perplexity", () => {
    expect(relativeChange(24.1, 19.7)).toBe("−18.3%");
    expect(relativeChange(10, 11)).toBe("+10.0%");
    expect(relativeChange(10, 10)).toBe("±0.0%");
    expect(relativeChange(0, 1)).toBe("—");
  });

  it("times: seconds or milliseconds since the epoch", () => {
    const now = new Date(2025, 2, 12, 15, 30);
    expect(toDate(1_700_000_000).getTime()).toBe(1_700_000_000_000);
    expect(toDate(1_700_000_000_000).getTime()).toBe(1_700_000_000_000);
    expect(formatTime(new Date(2025, 2, 12, 14, 5).getTime() / 1000, now)).toBe("today 14:05");
    expect(formatTime(new Date(2025, 2, 10, 9, 0).getTime(), now)).toMatch(/^Mon 09:00$/);
    expect(formatTime(new Date(2024, 0, 2, 8, 0).getTime(), now)).toMatch(/2 Jan 2024, 08:00/);
  });

  it("labels whether a model runs here, with the numbers", () => {
    expect(fitLabel(null)).toBeNull();
    const machine = { totalBytes: 16e9, availableBytes: 6e9 };
    const yes = fitLabel({ fits: "yes", memoryEstimateBytes: 1.2e9, ...machine })!;
    expect(yes.text).toBe("Fits this machine");
    expect(yes.title).toBe("≈ 1.2 GB to run; this machine has 16.0 GB of memory, 6.0 GB free now");
    expect(fitLabel({ fits: "tight", memoryEstimateBytes: 5e9, ...machine })!.kind).toBe("tight");
    expect(fitLabel({ fits: "no", memoryEstimateBytes: 40e9, ...machine })!.text).toBe("Too large for this machine");
  });
});
