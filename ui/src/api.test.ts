// @vitest-environment happy-dom
import { afterEach, describe, expect, it, vi } from "vitest";

import * as api from "./api";

type Internals = { invoke: (cmd: string, args?: unknown) => Promise<unknown>; transformCallback: (cb: (m: unknown) => void) => number };

function installBackend(invoke: Internals["invoke"]) {
  const callbacks = new Map<number, (m: unknown) => void>();
  let next = 1;
  (window as unknown as { __TAURI_INTERNALS__: Internals & { unregisterCallback(id: number): void } }).__TAURI_INTERNALS__ = {
    invoke,
    transformCallback: (cb) => {
      callbacks.set(next, cb);
      return next++;
    },
    unregisterCallback: (id: number) => callbacks.delete(id),
  };
  return callbacks;
}

afterEach(() => {
  delete (window as unknown as Record<string, unknown>).__TAURI_INTERNALS__;
});

describe("api", () => {
  it("without Tauri every call rejects with kind 'unavailable' (never throws synchronously)", async () => {
    expect(api.backendAvailable()).toBe(false);
    await expect(api.appStatus()).rejects.toMatchObject({ kind: "unavailable" });
    await expect(api.loadModel(null, "auto", () => {})).rejects.toMatchObject({ kind: "unavailable" });
    await expect(api.summarize({ text: "x", length: "short", bullets: false }, () => {})).rejects.toMatchObject({ kind: "unavailable" });
  });

  it("sends camelCase arguments to the right command", async () => {
    const invoke = vi.fn(async () => null);
    installBackend(invoke);
    await api.complete({ prefix: "a", suffix: "b", requestId: 7 });
    expect(invoke).toHaveBeenCalledWith("complete", { prefix: "a", suffix: "b", requestId: 7, options: null }, undefined);
    await api.completeAlternatives({ prefix: "a", suffix: "", requestId: 8, shown: ["x"], count: 2, options: { length: "words", textAfterCursor: false } });
    expect(invoke).toHaveBeenCalledWith(
      "complete_alternatives",
      { prefix: "a", suffix: "", requestId: 8, shown: ["x"], count: 2, options: { length: "words", textAfterCursor: false } },
      undefined,
    );
    await api.saveDocument("/x.md", "text");
    expect(invoke).toHaveBeenLastCalledWith("save_document", { path: "/x.md", text: "text", encoding: null }, undefined);
    await api.openDocument("/old.txt", "windows-1252");
    expect(invoke).toHaveBeenLastCalledWith("open_document", { path: "/old.txt", encoding: "windows-1252" }, undefined);
    await api.writeRecovery("t", null);
    expect(invoke).toHaveBeenLastCalledWith("write_recovery", { text: "t", path: null }, undefined);
    await api.finetuneStart({ paths: ["/a"], preset: "quick", rank: 8, alpha: 16, steps: 10, learningRate: 1e-4, seqLen: 64, batch: 1, evalEvery: 5, dropout: 0.1, precision: "f16" });
    expect(invoke).toHaveBeenLastCalledWith("finetune_start", { config: expect.objectContaining({ paths: ["/a"], learningRate: 1e-4, dropout: 0.1, precision: "f16" }) }, undefined);
  });

  it("normalizes errors to {kind, message}", async () => {
    installBackend(async () => {
      throw { kind: "io", message: "disk full" };
    });
    await expect(api.saveDocument("/x.md", "")).rejects.toEqual({ kind: "io", message: "disk full" });
    installBackend(async () => {
      throw "Command finetune_attach not found";
    });
    await expect(api.finetuneAttach(() => {})).rejects.toEqual({ kind: "backend", message: "Command finetune_attach not found" });
    expect(api.toApiError(new Error("boom"))).toEqual({ kind: "error", message: "boom" });
    expect(api.isCancelled({ kind: "cancelled", message: "" })).toBe(true);
    expect(api.isCancelled("cancelled")).toBe(false);
  });

  it("streams channel events to the handler", async () => {
    let channelId = -1;
    const callbacks = installBackend(async (_cmd, args) => {
      channelId = (args as { onEvent: { id: number } }).onEvent.id;
      return { summary: "s", chunks: 1, inputTokens: 3, seconds: 0.1 };
    });
    const events: api.TaskEvent[] = [];
    await api.summarize({ text: "x", length: 120, bullets: true }, (e) => events.push(e));
    callbacks.get(channelId)!({ index: 0, message: { event: "token", data: { text: "Hi" } } });
    callbacks.get(channelId)!({ index: 1, message: { event: "progress", data: { stage: "summarize", done: 1, total: 1 } } });
    expect(events.map((e) => e.event)).toEqual(["token", "progress"]);
  });
});
