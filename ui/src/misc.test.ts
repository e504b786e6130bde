import { describe, expect, it } from "vitest";

import { withDocumentExtension } from "./documents";
import type { RemoteChoice } from "./api";
import { isEnglishOnlyDefault, remoteForAll, remoteTasks, type ModelSnapshot } from "./model";
import { deviceLabel, readSettings } from "./panes/finetune";
import { languagesLabel } from "./panes/models";
import { summaryProgressLabel } from "./panes/summarize";
import { joinBlocks } from "./panes/translate";
import { countLabel } from "./panes/ui";
import { DEFAULTS, parseSettings, remoteGroups } from "./settings";
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
      remotes: {},
      suggestionLength: "sentence",
      textAfterCursor: "auto",
      suppress: { codeBlock: true, frontMatter: true, url: true, emptyListItem: true, midWord: true },
      subtle: false,
      serve: { on: false, port: 8080, network: false },
    });
    // the app's server: off unless turned on, a real port, loopback unless asked
    expect(parseSettings('{"serve":{"on":true,"port":9000}}').serve).toEqual({ on: true, port: 9000, network: false });
    expect(parseSettings('{"serve":{"on":"yes","port":70000,"network":1}}').serve).toEqual({ on: false, port: 8080, network: false });
    // suggestion settings: valid ones kept, rule by rule
    const tuned = parseSettings('{"suggestionLength":"paragraph","textAfterCursor":"on","subtle":true,"suppress":{"url":false,"midWord":"no"}}');
    expect(tuned.suggestionLength).toBe("paragraph");
    expect(tuned.textAfterCursor).toBe("on");
    expect(tuned.subtle).toBe(true);
    expect(tuned.suppress).toEqual({ codeBlock: true, frontMatter: true, url: false, emptyListItem: true, midWord: true });
    expect(parseSettings('{"suggestionLength":"novel"}').suggestionLength).toBe("sentence");
    // remembered remote engines, task by task: their address and model, never a key
    const perTask = parseSettings(
      '{"remotes":{"summarize":{"baseUrl":"http://big:8000/v1","model":"qwen","apiKey":"secret"},"autocomplete":{"baseUrl":3},"poetry":{"baseUrl":"http://x/v1","model":"m"}}}',
    );
    expect(perTask.remotes).toEqual({ summarize: { baseUrl: "http://big:8000/v1", model: "qwen" } });
    // the single remote of earlier versions answers every task
    const legacy = parseSettings('{"remote":{"baseUrl":"http://h:8080/v1","model":"m","apiKey":"secret"}}');
    for (const task of ["autocomplete", "summarize", "translate", "rewrite"] as const) {
      expect(legacy.remotes[task]).toEqual({ baseUrl: "http://h:8080/v1", model: "m" });
    }
    expect(parseSettings('{"remote":{"baseUrl":3}}').remotes).toEqual({});
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

  it("names the engine of each task: every task remote, some, none", () => {
    const big = { baseUrl: "http://big:8000/v1", model: "qwen-7b", context: 32768, key: "keyring" as const };
    const other = { ...big, model: "llama-70b" };
    const ready = (remotes: RemoteChoice): ModelSnapshot => ({ status: { model: smol, device: null, adapter: null, remotes }, phase: { kind: "ready" } });
    const all = { autocomplete: big, summarize: big, translate: big, rewrite: big };
    expect(modelLabel(ready(all))).toBe("Remote · qwen-7b");
    expect(remoteForAll(ready(all).status)).toEqual(big);
    // one server for all but one task, which has another: not "every task"
    expect(remoteForAll(ready({ ...all, rewrite: other }).status)).toBeNull();
    expect(modelLabel(ready({ summarize: big, translate: big }))).toBe("SmolLM2 135M Instruct + remote: summarize, translate");
    expect(remoteTasks(ready({ rewrite: big, autocomplete: big }).status)).toEqual(["autocomplete", "rewrite"]);
    expect(modelLabel(ready({}))).toBe("SmolLM2 135M Instruct");
  });

  it("groups remembered remotes by server and model, for reconnecting at start", () => {
    const a = { baseUrl: "http://a/v1", model: "m" };
    const b = { baseUrl: "http://b/v1", model: "m" };
    expect(remoteGroups({ autocomplete: a, summarize: b, rewrite: a })).toEqual([
      { ...a, tasks: ["autocomplete", "rewrite"] },
      { ...b, tasks: ["summarize"] },
    ]);
    expect(remoteGroups({})).toEqual([]);
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
