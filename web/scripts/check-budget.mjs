// Fails the build when the JavaScript loaded by index.html, gzipped, is over the budget
// (issue 14: 150 KB on first load). Reads the built index.html for its scripts and
// module preloads, so a lazy chunk does not count and a new eager one does.
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { gzipSync } from "node:zlib"

const BUDGET = Number(process.env.WEB_JS_BUDGET_BYTES ?? 150 * 1024)
const dist = join(import.meta.dirname, "..", "dist")
const html = readFileSync(join(dist, "index.html"), "utf8")
const scripts = [...html.matchAll(/<(?:script[^>]*\ssrc|link[^>]*rel="modulepreload"[^>]*\shref)="\/([^"]+\.js)"/g)]
  .map((match) => match[1])
if (scripts.length === 0) {
  console.error("check-budget: no script found in dist/index.html")
  process.exit(1)
}
let total = 0
for (const script of scripts) {
  const size = gzipSync(readFileSync(join(dist, script))).length
  total += size
  console.log(`  ${script}: ${(size / 1024).toFixed(1)} KB gzipped`)
}
const verdict = total <= BUDGET ? "within" : "OVER"
console.log(`first-load JavaScript: ${(total / 1024).toFixed(1)} KB gzipped, ${verdict} the budget of ${(BUDGET / 1024).toFixed(0)} KB`)
if (total > BUDGET) process.exit(1)
