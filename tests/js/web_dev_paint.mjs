// First meaningful paint of the web client on Vite's dev server (issue 14's budget:
// under 1 s on this machine), in Debian's Chromium: the time from navigation start to
// the login form in the page (the first screen with content), read in the page itself.
// The first load after the dev server starts is reported apart (Vite transforms the
// modules on demand then); the budget is checked on the loads after it.
//
// argv[2]: JSON {"url": dev server url, "loads": n}
import { chromium } from "playwright-core"

const { url, loads } = JSON.parse(process.argv[2])
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
})
const timings = []
try {
  for (let n = 0; n < loads; n++) {
    const context = await browser.newContext() // a new visitor: no cache, no cookie
    const page = await context.newPage()
    await page.addInitScript(() => {
      new MutationObserver((_, observer) => {
        if (document.querySelector('[data-testid="login-form"]')) {
          window.__meaningful = performance.now()
          observer.disconnect()
        }
      }).observe(document, { subtree: true, childList: true })
    })
    await page.goto(url)
    await page.getByTestId("login-form").waitFor({ timeout: 30_000 })
    await page.waitForFunction(() => window.__meaningful !== undefined)
    timings.push(Math.round(await page.evaluate(() => window.__meaningful)))
    await context.close()
  }
} finally {
  await browser.close()
}
console.log(JSON.stringify({ first_load_ms: timings[0], warm_loads_ms: timings.slice(1) }))
