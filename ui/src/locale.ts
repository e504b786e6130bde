// WebKitGTK gives the page the process locale as its language; under LANG=C (a service, a
// minimal desktop) that is "c", which is not a BCP 47 tag, and Intl's constructors throw on
// it: uPlot, which formats its axes with Intl.NumberFormat(navigator.language), would fail to
// load and the fine-tune chart would stay empty.

/** Replaces an unusable `navigator.language` with "en-US"; returns the language in effect. */
export function ensureUsableLanguage(nav: Navigator = navigator): string {
  try {
    new Intl.NumberFormat(nav.language);
  } catch {
    Object.defineProperty(nav, "language", { value: "en-US", configurable: true });
  }
  return nav.language;
}
