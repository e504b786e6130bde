// Light and dark themes: CSS variables switched by <html data-theme>. Follows the system until
// the writer picks one (kept in localStorage with the other settings).

import { onSettings, settings, updateSettings, type Theme } from "./settings";

function systemTheme(): Theme {
  return typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function currentTheme(): Theme {
  return settings().theme ?? systemTheme();
}

function apply(): void {
  document.documentElement.dataset.theme = currentTheme();
  document.documentElement.dataset.font = settings().font;
}

export function installTheme(): void {
  apply();
  onSettings(apply);
  if (typeof matchMedia === "function") {
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
      if (settings().theme === null) apply();
    });
  }
}

export function toggleTheme(): void {
  updateSettings({ theme: currentTheme() === "dark" ? "light" : "dark" });
}
