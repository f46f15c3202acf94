// The web client (web/) in Debian's Chromium through playwright-core, against a live
// `agora serve` (tests/e2e/test_web_client.py drives this script). Two users in two
// browser contexts, as two people on two machines. Each check throws with what it saw;
// stdout is one JSON object of measurements the Python test checks again.
//
// argv[2]: JSON {"base": url, "alice": login, "bob": login, "password": str,
//                "screenshots": dir or null}
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { chromium } from "playwright-core"

const input = JSON.parse(process.argv[2])
const { base, alice, bob, password } = input
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8")
const WAIT = 15_000 // a condition on a loaded machine; latencies are measured separately
const result = { latency_ms: {}, axe: {}, checks: [] }
const ok = (name) => result.checks.push(name)
function expect(condition, message) {
  if (!condition) throw new Error(message)
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
})
const id = (page, testid) => page.getByTestId(testid)

async function screenshot(page, name) {
  if (input.screenshots) await page.screenshot({ path: `${input.screenshots}/${name}.png` })
}

async function axe(page, screen) {
  await page.evaluate(axeSource)
  const found = await page.evaluate(async () => {
    const report = await window.axe.run(document, { resultTypes: ["violations"] })
    return report.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)
  })
  result.axe[screen] = found
}

async function login(page, user) {
  await page.goto(base + "/")
  await id(page, "login-input").fill(user)
  await id(page, "password-input").fill(password)
  await id(page, "login-submit").click()
  await id(page, "current-user").filter({ hasText: user }).waitFor({ timeout: WAIT })
}

async function sessionCookieReadable(page) {
  return page.evaluate(() => document.cookie.includes("auth_token"))
}

// Measured from the moment of sending: the time until `condition` holds on `page`.
async function timeUntil(page, condition, arg) {
  const start = Date.now()
  await page.waitForFunction(condition, arg, { timeout: WAIT, polling: "raf" })
  return Date.now() - start
}

const contextA = await browser.newContext()
const contextB = await browser.newContext()
try {
  const a = await contextA.newPage()
  const b = await contextB.newPage()

  // Register through the form (Alice); Bob was registered over the API by the test.
  await a.goto(base + "/")
  await id(a, "login-form").waitFor({ timeout: WAIT })
  await screenshot(a, "login")
  await axe(a, "login")
  await id(a, "register-login").fill(alice)
  await id(a, "register-email").fill(`${alice}@example.com`)
  await id(a, "register-name").fill(`Alice ${alice}`)
  await id(a, "register-password").fill(password)
  await id(a, "register-submit").click()
  await a.getByText(`Account ${alice} created`).waitFor({ timeout: WAIT })
  ok("register")
  await login(a, alice)
  await login(b, bob)
  expect(!(await sessionCookieReadable(a)) && !(await sessionCookieReadable(b)), "document.cookie shows auth_token")
  const cookies = await contextA.cookies(base)
  expect(cookies.some((c) => c.name === "auth_token" && c.httpOnly), "no HttpOnly auth_token cookie")
  ok("login; the session cookie is HttpOnly, invisible to document.cookie")

  // Both sockets up.
  await a.locator('[data-testid="connection-status"][data-state="online"]').waitFor({ timeout: WAIT })
  await b.locator('[data-testid="connection-status"][data-state="online"]').waitFor({ timeout: WAIT })

  // Alice starts a direct conversation with Bob by his login.
  await id(a, "new-conversation-input").fill(bob)
  await id(a, "new-conversation-input").press("Enter")
  await id(a, "message-input").waitFor({ timeout: WAIT })
  await id(b, "conversation-item").waitFor({ timeout: WAIT })
  ok("a direct conversation started by login, seen by the other side")

  // Presence: Bob is online for Alice.
  await a.locator('[data-testid="presence"][data-online="true"]').waitFor({ timeout: WAIT })
  ok("presence seen")

  // Alice → Bob while Bob's conversation is closed: his list shows it, unread 1.
  await id(a, "message-input").fill("hello <b>bob</b> & co")
  const sentA = id(a, "message-input").press("Enter")
  result.latency_ms.a_to_b = await timeUntil(
    b,
    () => [...document.querySelectorAll('[data-testid="conversation-item"]')].some((e) => e.textContent.includes("hello bob & co")),
  )
  await sentA
  await b.locator('[data-testid="conversation-item"][data-unread="1"]').waitFor({ timeout: WAIT })
  await a.locator('[data-testid="conversation-item"][data-unread="0"]').waitFor({ timeout: WAIT })
  ok("unread counts right on both sides after a message")

  // Bob opens it: read, unread back to 0, the message shown as text.
  await id(b, "conversation-item").click()
  await id(b, "message-item").filter({ hasText: "hello bob & co" }).waitFor({ timeout: WAIT })
  await b.locator('[data-testid="conversation-item"][data-unread="0"]').waitFor({ timeout: WAIT })
  ok("opening a conversation reads it")

  // Per-conversation presence: both have it open now.
  await id(a, "conversation-presence").filter({ hasText: bob }).waitFor({ timeout: WAIT })
  ok("presence in the conversation seen")

  // Typing: Bob types, Alice sees it.
  await id(b, "message-input").click()
  const typingStart = Date.now()
  await id(b, "message-input").pressSequentially("hi", { delay: 20 })
  await id(a, "typing-indicator").waitFor({ timeout: WAIT })
  result.latency_ms.typing = Date.now() - typingStart
  ok("typing seen")

  // Bob → Alice, Alice's conversation open: the message within a second.
  await id(b, "message-input").fill("hi alice")
  const sentB = id(b, "message-input").press("Enter")
  result.latency_ms.b_to_a = await timeUntil(a, () =>
    [...document.querySelectorAll('[data-testid="message-item"]')].some((e) => e.textContent.includes("hi alice")),
  )
  await sentB
  await id(a, "typing-indicator").waitFor({ state: "detached", timeout: WAIT })
  await a.locator('[data-testid="conversation-item"][data-unread="0"]').waitFor({ timeout: WAIT })
  ok("a message each way; the typing indicator gone once the message came")
  await screenshot(a, "messaging")
  await axe(a, "messaging")

  // Bob's tab goes offline while Alice sends 5 messages; back online, all 5, in order, once.
  await contextB.setOffline(true)
  await b.locator('[data-testid="connection-status"][data-state="offline"]').waitFor({ timeout: WAIT })
  for (let n = 1; n <= 5; n++) {
    await id(a, "message-input").fill(`offline ${n}`)
    await id(a, "message-input").press("Enter")
    await id(a, "message-item").filter({ hasText: `offline ${n}` }).waitFor({ timeout: WAIT })
  }
  await contextB.setOffline(false)
  await b.locator('[data-testid="connection-status"][data-state="online"]').waitFor({ timeout: WAIT })
  await id(b, "message-item").filter({ hasText: "offline 5" }).waitFor({ timeout: WAIT })
  const seen = await id(b, "message-item").locator(".text").allTextContents()
  result.after_offline = seen
  const expected = ["hello bob & co", "hi alice", ...[1, 2, 3, 4, 5].map((n) => `offline ${n}`)]
  expect(JSON.stringify(seen) === JSON.stringify(expected), `after offline: ${JSON.stringify(seen)}`)
  ok("offline then online: every message once, in order")

  // Alice's own messages: edit one, delete another; Bob sees both changes.
  await id(a, "message-item").filter({ hasText: "offline 5" }).getByRole("button", { name: "Edit" }).click()
  await a.getByRole("textbox", { name: /^Edit message/ }).fill("offline 5, edited")
  await a.getByRole("textbox", { name: /^Edit message/ }).press("Enter")
  await id(b, "message-item").filter({ hasText: "offline 5, edited" }).waitFor({ timeout: WAIT })
  await id(a, "message-item").filter({ hasText: "offline 4" }).getByRole("button", { name: "Delete" }).click()
  await b.locator('[data-testid="message-item"][data-seq="6"]').filter({ hasText: "(deleted)" }).waitFor({ timeout: WAIT })
  ok("own messages edited and deleted, seen by the other side")

  // Read receipts: Bob has the conversation open, so Alice's messages show as seen.
  await id(a, "read-receipt").first().waitFor({ timeout: WAIT })
  ok("read receipts")

  // A file: its progress shown while it goes, then the message on both sides; a file
  // over 10 MB refused before upload, with the reason.
  await a.evaluate(() => {
    window.__progress = []
    new MutationObserver(() => {
      const bar = document.querySelector('[data-testid="upload-progress"]')
      if (bar) window.__progress.push(Number(bar.getAttribute("value") ?? bar.value))
    }).observe(document.body, { subtree: true, childList: true, attributes: true })
  })
  const png = Buffer.alloc(4 * 1024 * 1024)
  Buffer.from("89504e470d0a1a0a0000000d49484452", "hex").copy(png)
  await id(a, "media-input").setInputFiles({ name: "picture.png", mimeType: "image/png", buffer: png })
  await id(b, "message-item").filter({ hasText: "(file: picture.png)" }).waitFor({ timeout: WAIT })
  result.upload_progress = await a.evaluate(() => window.__progress)
  expect(result.upload_progress.length > 0, "no upload progress shown")
  const big = Buffer.alloc(10 * 1024 * 1024 + 1)
  await id(a, "media-input").setInputFiles({ name: "big.png", mimeType: "image/png", buffer: big })
  await id(a, "room-error").filter({ hasText: "limited to 10 MB" }).waitFor({ timeout: WAIT })
  ok("an upload with its progress; the 10 MB refusal shown")

  // A page on another site cannot write on Bob's behalf nor log him out: his cookies
  // are SameSite=Strict, and the cookie routes refuse cross-site posts.
  const evil = new URL(base)
  evil.hostname = "localhost"
  const attacker = await contextB.newPage()
  await attacker.route(`${evil.origin}/evil`, (route) =>
    route.fulfill({ contentType: "text/html", body: "<!doctype html><title>evil</title>" }),
  )
  await attacker.goto(`${evil.origin}/evil`)
  await attacker.evaluate(async (target) => {
    const post = (path, body) =>
      fetch(target + path, { method: "POST", mode: "no-cors", credentials: "include", body }).catch(() => null)
    await post("/api/publications", JSON.stringify({ title: "forged", body: "x" }))
    await post("/api/v1/conversations", JSON.stringify({ kind: "direct", user_id: "1" }))
    await post("/auth/api/logout", "")
  }, base)
  await attacker.close()
  const after = await b.evaluate(async () => {
    const me = await fetch("/auth/api/me")
    const page = await (await fetch("/api/publications")).json()
    return { me: me.status, titles: page.publications.map((p) => p.title) }
  })
  expect(after.me === 200 && !after.titles.includes("forged"), `after the other site's posts: ${JSON.stringify(after)}`)
  ok("another site can neither write for the user nor log them out")

  // A group: Alice creates it with Bob, Bob sees it; Alice removes Bob, it leaves his list.
  await a.getByText("New group").click()
  await a.getByLabel("Title").fill("Team room")
  await a.getByLabel("Members (logins, comma-separated)").fill(bob)
  await a.getByRole("button", { name: "Create the group" }).click()
  await id(b, "conversation-item").filter({ hasText: "Team room" }).waitFor({ timeout: WAIT })
  await a.getByRole("button", { name: "Remove" }).click()
  await id(b, "conversation-item").filter({ hasText: "Team room" }).waitFor({ state: "detached", timeout: WAIT })
  ok("a group created with a member, who is then removed")

  // The social room of seed 003: ticket, socket, welcome line, chat, presence.
  await a.getByRole("button", { name: "Social room" }).click()
  await b.getByRole("button", { name: "Social room" }).click()
  for (const page of [a, b]) {
    await id(page, "social-line").filter({ hasText: "Welcome to Social WebSocket!" }).waitFor({ timeout: WAIT })
  }
  await id(a, "social-contact-input").fill(bob)
  await id(a, "social-contact-input").press("Enter")
  await a.locator('[data-testid="social-presence"][data-online="true"]').waitFor({ timeout: WAIT })
  await id(a, "social-input").fill("salut")
  await id(a, "social-input").press("Enter")
  await id(b, "social-line").filter({ hasText: `${alice}: salut` }).waitFor({ timeout: WAIT })
  await screenshot(a, "social")
  await axe(a, "social")
  await a.getByRole("button", { name: "Messages" }).click()
  ok("the social room: welcome line, presence, a chat delivered")

  // A reload keeps the session (the cookie), and the conversation's count.
  await b.reload()
  await id(b, "current-user").filter({ hasText: bob }).waitFor({ timeout: WAIT })
  expect(!(await sessionCookieReadable(b)), "document.cookie shows auth_token after reload")
  ok("reload keeps the session")

  // Publications: create, edit, delete.
  await b.getByRole("button", { name: "My publications" }).click()
  await id(b, "publication-title-input").fill("First post")
  await id(b, "publication-body-input").fill("Some text")
  await id(b, "publication-submit").click()
  await id(b, "publication-item").filter({ hasText: "First post" }).waitFor({ timeout: WAIT })
  await screenshot(b, "publications")
  await axe(b, "publications")
  await id(b, "publication-item").getByRole("button", { name: "Edit" }).click()
  await b.getByLabel("Title").last().fill("Edited")
  await b.getByRole("button", { name: "Save" }).click()
  await id(b, "publication-item").filter({ hasText: "Edited" }).waitFor({ timeout: WAIT })
  await id(b, "publication-item").getByRole("button", { name: "Delete" }).click()
  await id(b, "publication-item").waitFor({ state: "detached", timeout: WAIT })
  ok("publications: create (shown as text), edit, delete")

  // Paging: 12 publications, a page of 10, then the rest.
  await b.evaluate(async () => {
    const csrf = decodeURIComponent(document.cookie.match(/(?:^|; )csrf_token=([^;]+)/)[1])
    for (let n = 1; n <= 12; n++) {
      const headers = { "Content-Type": "application/json", "X-CSRF-Token": csrf }
      const answer = await fetch("/api/publications", { method: "POST", headers, body: JSON.stringify({ title: `Post ${n}`, body: "" }) })
      if (answer.status !== 201) throw new Error(`publication ${n}: ${answer.status}`)
    }
  })
  await b.getByRole("button", { name: "Messages" }).click()
  await b.getByRole("button", { name: "My publications" }).click()
  await id(b, "publication-item").nth(9).waitFor({ timeout: WAIT })
  expect((await id(b, "publication-item").count()) === 10, "the first page is not 10 publications")
  await b.getByRole("button", { name: "More publications" }).click()
  await id(b, "publication-item").nth(11).waitFor({ timeout: WAIT })
  expect((await id(b, "publication-item").count()) === 12, "paging lost or repeated publications")
  ok("publications paged")

  // Logout in one tab ends the other tab's session and socket.
  const a2 = await contextA.newPage()
  await a2.goto(base + "/")
  await a2.locator('[data-testid="connection-status"][data-state="online"]').waitFor({ timeout: WAIT })
  // Two tabs of one user stay in sync: Bob writes; Alice reads it in one tab; the
  // other tab shows the message and, from the read receipt, no unread left.
  await id(a, "conversation-item").filter({ hasText: bob }).click()
  await b.getByRole("button", { name: "Messages" }).click()
  await id(b, "conversation-item").filter({ hasText: alice }).click()
  await id(b, "message-input").fill("for both tabs")
  await id(b, "message-input").press("Enter")
  await id(a, "message-item").filter({ hasText: "for both tabs" }).waitFor({ timeout: WAIT })
  await a2
    .locator('[data-testid="conversation-item"][data-unread="0"]')
    .filter({ hasText: "for both tabs" })
    .waitFor({ timeout: WAIT })
  ok("two tabs of a user in sync: the message, and the read state from the other tab")
  await id(a, "logout-button").click()
  await id(a, "login-form").waitFor({ timeout: WAIT })
  await id(a2, "login-form").waitFor({ timeout: WAIT })
  const me = await a2.evaluate(async () => (await fetch("/auth/api/me")).status)
  expect(me === 401, `after logout /auth/api/me answered ${me}`)
  ok("logout in one tab ends the other tab's socket and session")

  // Refusals are explained: after repeated wrong passwords, the 429 and its Retry-After.
  for (let attempt = 0; attempt < 8; attempt++) {
    await id(a, "login-input").fill(alice)
    await id(a, "password-input").fill("wrong password, surely")
    await id(a, "login-submit").click()
    await a.getByRole("alert").waitFor({ timeout: WAIT })
    result.refusal = await a.getByRole("alert").textContent()
    if (/Try again in \d+ s/.test(result.refusal)) break
    await expect(/Invalid/i.test(result.refusal), `unexpected refusal: ${result.refusal}`)
  }
  expect(/Try again in \d+ s/.test(result.refusal), `no Retry-After explained: ${result.refusal}`)
  ok("a 429 explained with its Retry-After")
} finally {
  await browser.close()
}
console.log(JSON.stringify(result))
