// The web client's build: Preact through esbuild's automatic JSX runtime (no plugin),
// everything bundled into web/dist (served by `agora serve` and by nginx).
import { defineConfig } from "vite"

export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", sourcemap: false },
  // `npm run web:dev`: the API of a local `agora serve` (make run) behind the dev server.
  server: {
    port: 5173,
    proxy: {
      "/auth": "http://127.0.0.1:8080",
      "/api": "http://127.0.0.1:8080",
      "/social": "http://127.0.0.1:8080",
      "/socket": { target: "ws://127.0.0.1:8080", ws: true },
    },
  },
})
