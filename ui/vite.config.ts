import { defineConfig } from "vitest/config";

// The app is served from the Tauri bundle (relative paths), talks to nothing remote, and ships
// no source maps. `npm run dev` serves on the port tauri.conf.json's devUrl names.
export default defineConfig({
  base: "./",
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    // WebKitGTK / WKWebView (Safari 15 level) and WebView2 (Chromium)
    target: ["safari15", "chrome105"],
    chunkSizeWarningLimit: 1024,
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
