import { describe, expect, it } from "vitest";

import { ensureUsableLanguage } from "./locale";

describe("ensureUsableLanguage", () => {
  it("keeps a valid language and replaces one Intl rejects", () => {
    const nav = { language: "fr-FR" } as Navigator;
    expect(ensureUsableLanguage(nav)).toBe("fr-FR");
    const broken = { language: "c" } as unknown as Navigator;
    // what WebKitGTK reports under LANG=C: Intl throws on it
    expect(() => new Intl.NumberFormat("c")).toThrow();
    expect(ensureUsableLanguage(broken)).toBe("en-US");
    expect(() => new Intl.NumberFormat(broken.language)).not.toThrow();
  });
});
