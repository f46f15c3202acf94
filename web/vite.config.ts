// The web client's build: Preact through esbuild's automatic JSX runtime (no plugin),
// everything bundled into web/dist (served by `agora serve` and by nginx).
import { defineConfig } from "vite"

const api = process.env.AGORA_DEV_API ?? "http://127.0.0.1:8080"

export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", sourcemap: false },
  // `npm run web:dev`: the API of a local `agora serve` (make run, or AGORA_DEV_API)
  // behind the dev server, so the app and the API share one origin as in production.
  server: {
    port: 5173,
    proxy: {
      "/auth": api,
      "/api": api,
      "/social": { target: api, ws: true },
      "/socket": { target: api, ws: true },
    },
  },
})
