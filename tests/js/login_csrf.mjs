// Login CSRF in a real browser (tests/security/test_login_csrf.py drives this script).
//
// The victim logs in on the Agora origin (a same-origin fetch, as the web app does),
// then visits each attack page: a page on another origin whose form auto-posts the
// attacker's credentials to the login route. Printed on stdout, one JSON object: for
// each page, the status of the login answer and whether the victim's auth_token cookie
// was replaced.
//
// argv[2]: JSON {"victim": origin, "credentials": {login, password}, "pages": {name: url}}
// (each page posts to a route of the victim origin).
// Chromium: CHROMIUM_PATH, else /usr/bin/chromium (Debian's package; no download).
import { chromium } from "playwright-core";

const input = JSON.parse(process.argv[2]);
const loginUrl = `${input.victim}/auth/api/login`;
// The attack's answer: the form's POST to the Agora origin.
const isAttack = (r) => r.url().startsWith(input.victim) && r.request().method() === "POST";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  headless: true,
  // root in CI containers: Chromium's sandbox needs user namespaces it may not have.
  args: ["--no-sandbox"],
});

async function authCookie(context) {
  const cookies = await context.cookies(input.victim);
  const found = cookies.find((c) => c.name === "auth_token");
  return found ? found.value : null;
}

async function victimLogsIn(page) {
  // The web app's page on the Agora origin. The API's own answers forbid scripts any
  // connection (CSP default-src 'none'), so this page is served by the browser itself;
  // the login below is a real same-origin request to the real server.
  const appUrl = `${input.victim}/app-page`;
  await page.route(appUrl, (route) =>
    route.fulfill({ contentType: "text/html", body: "<!doctype html><title>app</title>" }),
  );
  await page.goto(appUrl);
  return page.evaluate(
    async ([url, credentials]) => {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(credentials),
      });
      return response.status;
    },
    [loginUrl, input.credentials],
  );
}

const results = {};
try {
  for (const [name, url] of Object.entries(input.pages)) {
    // A fresh browser profile per page: each attack meets a freshly logged-in victim.
    const context = await browser.newContext();
    const page = await context.newPage();
    const victimStatus = await victimLogsIn(page);
    const before = await authCookie(context);
    const answered = page.waitForResponse(isAttack, { timeout: 30000 });
    await page.goto(url);
    const response = await answered;
    await page.waitForLoadState("load");
    const after = await authCookie(context);
    results[name] = {
      victim_login_status: victimStatus,
      victim_had_cookie: before !== null,
      status: response.status(),
      body: await response.text().catch(() => null),
      request_headers: await response.request().allHeaders(),
      cookie_replaced: after !== before,
    };
    await context.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results));
