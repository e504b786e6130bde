import { describe, expect, it } from "vitest";

import { withDocumentExtension } from "./documents";
import { isEnglishOnlyDefault, type ModelSnapshot } from "./model";
import { deviceLabel, readSettings } from "./panes/finetune";
import { languagesLabel } from "./panes/models";
import { summaryProgressLabel } from "./panes/summarize";
import { joinBlocks } from "./panes/translate";
import { countLabel } from "./panes/ui";
import { DEFAULTS, parseSettings } from "./settings";
import { modelLabel } from "./statusbar";

const smol = { name: "SmolLM2 135M Instruct", architecture: "llama", quantization: "Q4_1", path: "/m/smollm2-135m-instruct-q4_1/model.gguf", parameters: 134e6, contextLength: 8192 };

describe("settings", () => {
  it("falls back to defaults for missing or invalid values", () => {
    expect(parseSettings(null)).toEqual(DEFAULTS);
    expect(parseSettings("not json")).toEqual(DEFAULTS);
    expect(parseSettings('{"theme":"neon","debounceMs":-5,"font":"comic"}')).toEqual(DEFAULTS);
    expect(parseSettings('{"theme":"dark","autocomplete":false,"debounceMs":350,"font":"sans","device":"cpu"}')).toEqual({
      theme: "dark",
      autocomplete: false,
      debounceMs: 350,
      font: "sans",
      device: "cpu",
      remote: null,
      suggestionLength: "sentence",
      textAfterCursor: "auto",
      suppress: { codeBlock: true, frontMatter: true, url: true, emptyListItem: true, midWord: true },
      subtle: false,
    });
    // suggestion settings: valid ones kept, rule by rule
    const tuned = parseSettings('{"suggestionLength":"paragraph","textAfterCursor":"on","subtle":true,"suppress":{"url":false,"midWord":"no"}}');
    expect(tuned.suggestionLength).toBe("paragraph");
    expect(tuned.textAfterCursor).toBe("on");
    expect(tuned.subtle).toBe(true);
    expect(tuned.suppress).toEqual({ codeBlock: true, frontMatter: true, url: false, emptyListItem: true, midWord: true });
    expect(parseSettings('{"suggestionLength":"novel"}').suggestionLength).toBe("sentence");
    // a remembered remote engine: its address and model, never a key
    const withRemote = parseSettings('{"remote":{"baseUrl":"http://h:8080/v1","model":"m","apiKey":"secret"}}');
    expect(withRemote.remote).toEqual({ baseUrl: "http://h:8080/v1", model: "m" });
    expect(parseSettings('{"remote":{"baseUrl":3}}').remote).toBeNull();
  });
});

describe("documents", () => {
  it("adds .md when the chosen name has no document extension", () => {
    expect(withDocumentExtension("/a/notes")).toBe("/a/notes.md");
    expect(withDocumentExtension("/a/notes.md")).toBe("/a/notes.md");
    expect(withDocumentExtension("/a/notes.TXT")).toBe("/a/notes.TXT");
    expect(withDocumentExtension("/a/v1.2")).toBe("/a/v1.2.md");
  });
});

describe("model", () => {
  it("recognises the English-only default model", () => {
    expect(isEnglishOnlyDefault(smol)).toBe(true);
    expect(isEnglishOnlyDefault({ ...smol, name: "Qwen2.5 0.5B Instruct", path: "/m/qwen/model.safetensors" })).toBe(false);
    expect(isEnglishOnlyDefault(null)).toBe(false);
  });

  it("status bar label: loading says so, ready names the model", () => {
    const status = { model: null, device: null, adapter: null };
    const snap = (phase: ModelSnapshot["phase"], model = status.model as typeof smol | null): ModelSnapshot => ({ status: { ...status, model }, phase });
    expect(modelLabel(snap({ kind: "unavailable" }))).toBe("Backend unavailable");
    expect(modelLabel(snap({ kind: "loading", progress: null, spec: null }))).toMatch(/loading/i);
    expect(modelLabel(snap({ kind: "loading", progress: { stage: "layers", done: 15, total: 30 }, spec: null }))).toBe("Loading model… 50%");
    const ready = modelLabel(snap({ kind: "ready" }, smol));
    expect(ready).toMatch(/smol/i);
    expect(ready).not.toMatch(/loading/i);
    expect(modelLabel(snap({ kind: "none", error: "no such file" }))).toBe("No model loaded");
  });
});

describe("panes", () => {
  it("summary progress", () => {
    expect(summaryProgressLabel("summarize", 0, 1)).toBe("Summarizing…");
    expect(summaryProgressLabel("summarize", 1, 4)).toBe("Chunk 2 of 4");
    expect(summaryProgressLabel("summarize", 4, 4)).toBe("Combining…");
    expect(summaryProgressLabel("combine", 0, 1)).toMatch(/Combining/);
    expect(countLabel("block", 0, 3)).toBe("Block 1 of 3");
  });

  it("translation blocks join in order, skipping the missing", () => {
    const blocks: string[] = [];
    blocks[0] = "# Titre";
    blocks[2] = "Fin.";
    expect(joinBlocks(blocks)).toBe("# Titre\n\nFin.");
  });

  it("fine-tune settings read from the inputs with preset fallbacks", () => {
    const quick = { rank: 8, alpha: 16, steps: 200, learningRate: 2e-4, seqLen: 256, batch: 4, evalEvery: 25, dropout: 0.05 };
    const thorough = { ...quick, rank: 16, steps: 800, batch: 8 };
    expect(readSettings({}, quick)).toEqual(quick);
    const s = readSettings({ rank: "32", steps: "abc", learningRate: "0.0003", batch: "0" }, thorough);
    expect(s.rank).toBe(32);
    expect(s.steps).toBe(thorough.steps);
    expect(s.learningRate).toBe(0.0003);
    expect(s.batch).toBe(thorough.batch);
    // a fraction stays a fraction; out of range falls back to the preset
    expect(readSettings({ dropout: "0.15" }, quick).dropout).toBe(0.15);
    expect(readSettings({ dropout: "1.5" }, quick).dropout).toBe(quick.dropout);
    expect(deviceLabel("CPU (flex)", "f32")).toBe("CPU (flex)");
    expect(deviceLabel("CPU (flex)", "f16")).toBe("CPU (flex) · base model in f16");
  });

  it("model languages", () => {
    expect(languagesLabel(["en"])).toBe("English only");
    expect(languagesLabel(["en", "fr"])).toBe("English, French");
    expect(languagesLabel(["en", "fr", "de", "es", "zh"])).toBe("5 languages");
    expect(languagesLabel([])).toBe("");
  });
});
