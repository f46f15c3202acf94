// The real phoenix.js (npm `phoenix`) against a running Agora, as a client app uses it:
// `node tests/js/phoenix_client.mjs <scenario>` with a JSON config on stdin
// ({"base_url", "users": [{"id", "token"}], ...}); prints one JSON result on stdout.
// Driven by tests/e2e/test_phoenix_client.py. Under Node 20 there is no global WebSocket:
// phoenix's `transport` option takes the `ws` package's.
import { Presence, Socket } from "phoenix"
import WebSocket from "ws"

const WAIT_MS = 10000

const config = JSON.parse(await new Promise((resolve) => {
  let text = ""
  process.stdin.on("data", (chunk) => { text += chunk })
  process.stdin.on("end", () => resolve(text))
}))
const socketUrl = config.base_url.replace(/^http/, "ws") + "/socket"

// --- what an app does ------------------------------------------------------------------------

// A one-time ticket for the socket (docs/social.md §1), traded for the access token.
async function fetchTicket(user) {
  const response = await fetch(`${config.base_url}/social/api/socials/connect-token`, {
    headers: { Authorization: `Bearer ${user.token}` },
  })
  if (!response.ok) throw new Error(`connect-token: ${response.status}`)
  return (await response.json()).token
}

// The reconnect pattern of docs/messaging.md §3.4: tickets are single use and live 10 s,
// and phoenix.js reads `params` synchronously on every (re)connect. So keep one ticket
// fetched in advance, and fetch the next one as soon as this one is spent (on open) or
// may have gone stale (on error or close).
async function connect(user, { vsn = "2.0.0", transport = WebSocket, log = null } = {}) {
  let ticket = await fetchTicket(user)
  const used = []
  let renewing = null
  const renew = () => {
    renewing ??= fetchTicket(user)
      .then((fresh) => { ticket = fresh })
      .catch(() => {})
      .finally(() => { renewing = null })
  }
  const options = {
    transport,
    params: () => { used.push(ticket); return { token: ticket } },
  }
  if (vsn === "1.0.0") {
    // phoenix.js's default encoder is 2.0.0's; 1.0.0 frames are plain JSON objects.
    Object.assign(options, {
      vsn,
      encode: (message, callback) => callback(JSON.stringify(message)),
      decode: (raw, callback) => callback(JSON.parse(raw)),
    })
  }
  const socket = new Socket(socketUrl, options)
  socket.onOpen(renew)
  socket.onError(renew)
  socket.onClose(renew)
  if (log) socket.onMessage((message) => log.push(message))
  socket.connect()
  socket.ticketsUsed = used
  return socket
}

function join(channel) {
  return new Promise((resolve, reject) => {
    channel.join()
      .receive("ok", resolve)
      .receive("error", (response) => reject(new Error(`join ${channel.topic}: ${JSON.stringify(response)}`)))
      .receive("timeout", () => reject(new Error(`join ${channel.topic}: timeout`)))
  })
}

function request(channel, event, payload) {
  return new Promise((resolve, reject) => {
    channel.push(event, payload)
      .receive("ok", resolve)
      .receive("error", (response) => reject(new Error(`${event}: ${JSON.stringify(response)}`)))
      .receive("timeout", () => reject(new Error(`${event}: timeout`)))
  })
}

async function waitFor(what, predicate, ms = WAIT_MS) {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function rest(user, method, path, body) {
  const response = await fetch(`${config.base_url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${user.token}`, "Content-Type": "application/json" },
    body: body && JSON.stringify(body),
  })
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`)
  return response.json()
}

// --- scenarios -------------------------------------------------------------------------------

// Alice sends on `conversation:<id>`; Bob's `user:<id>` channel gets `message:new`.
// Every frame each client decoded is kept, to check join_refs.
async function chat({ vsn }) {
  const [alice, bob] = config.users
  const logs = { alice: [], bob: [] }
  const aliceSocket = await connect(alice, { vsn, log: logs.alice })
  const bobSocket = await connect(bob, { vsn, log: logs.bob })
  const bobUser = bobSocket.channel(`user:${bob.id}`, {})
  const received = []
  bobUser.on("message:new", (message) => received.push(message))
  await join(bobUser)
  const conversation = aliceSocket.channel(`conversation:${config.conversation_id}`, {})
  await join(conversation)
  const sent = await request(conversation, "message:send", { client_id: `js-${vsn}`, text: `hello over ${vsn}` })
  await waitFor("bob's message:new", () => received.length > 0)
  const heartbeat = await new Promise((resolve) => {
    const ref = aliceSocket.makeRef()
    aliceSocket.push({ topic: "phoenix", event: "heartbeat", payload: {}, ref })
    aliceSocket.onMessage((message) => { if (message.ref === ref) resolve(message) })
  })
  aliceSocket.disconnect()
  bobSocket.disconnect()
  return {
    sent: sent.message,
    received,
    heartbeat,
    bob_join_ref: bobUser.joinRef(),
    alice_join_ref: conversation.joinRef(),
    frames: logs,
  }
}

// Two devices per user, each with phoenix.js Presence on its `user:<id>` channel and on
// the conversation's channel; what each device's Presence lists, step by step.
async function presence() {
  const [alice, bob] = config.users
  const topicOf = { user: (u) => `user:${u.id}`, conversation: () => `conversation:${config.conversation_id}` }
  const devices = {}
  const steps = []
  async function open(name, user) {
    const socket = await connect(user)
    const device = { socket, seen: {} }
    for (const kind of ["user", "conversation"]) {
      const channel = socket.channel(topicOf[kind](user), {})
      const tracker = new Presence(channel)
      const seen = { joins: [], leaves: [], synced: 0, tracker }
      tracker.onJoin((id, current) => { if (!current) seen.joins.push(id) })
      tracker.onLeave((id, current) => { if (current.metas.length === 0) seen.leaves.push(id) })
      tracker.onSync(() => { seen.synced += 1 })
      await join(channel)
      await waitFor(`${name}'s ${kind} presence_state`, () => seen.synced > 0)
      device.seen[kind] = seen
    }
    devices[name] = device
  }
  const listed = (name, kind) =>
    devices[name].seen[kind].tracker.list((id, { metas }) => `${id}:${metas.length}`).sort()
  const snapshot = async (label, expect) => {
    // Wait until every open device's lists are what `expect` says, then record them.
    const want = (name, kind) => expect(name, kind).map((id) => `${id}:1`).sort()
    for (const name of Object.keys(devices)) {
      for (const kind of ["user", "conversation"]) {
        await waitFor(`${label}: ${name} ${kind}`, () =>
          JSON.stringify(listed(name, kind)) === JSON.stringify(want(name, kind)))
      }
    }
    steps.push({ label, lists: Object.fromEntries(Object.keys(devices).map((name) =>
      [name, { user: listed(name, "user"), conversation: listed(name, "conversation") }])) })
  }
  const close = (name) => { devices[name].socket.disconnect(); delete devices[name] }
  const others = (name) => (name.startsWith("alice") ? bob.id : alice.id)

  await open("alice_phone", alice)
  await open("alice_laptop", alice)
  await snapshot("alice alone", (name, kind) => (kind === "user" ? [] : [alice.id]))
  await open("bob_phone", bob)
  await snapshot("bob's phone", (name, kind) => (kind === "user" ? [others(name)] : [alice.id, bob.id]))
  await open("bob_laptop", bob)
  await snapshot("bob's laptop too", (name, kind) => (kind === "user" ? [others(name)] : [alice.id, bob.id]))
  close("bob_phone")
  await sleep(500)  // a diff would have come by now: there must be none
  await snapshot("bob's phone gone", (name, kind) => (kind === "user" ? [others(name)] : [alice.id, bob.id]))
  close("bob_laptop")
  await snapshot("bob gone", (name, kind) => (kind === "user" ? [] : [alice.id]))
  const events = Object.fromEntries(["alice_phone", "alice_laptop"].map((name) => [name,
    Object.fromEntries(["user", "conversation"].map((kind) => {
      const { joins, leaves } = devices[name].seen[kind]
      return [kind, { joins, leaves }]
    }))]))
  close("alice_phone")
  close("alice_laptop")
  return { steps, events }
}

// Alice's connection drops (the TCP connection dies, and the network stays down while
// Bob sends three messages over REST); phoenix.js reconnects by itself, her `user:`
// channel rejoins with the cursor it kept, and the join reply holds exactly what she missed.
async function reconnect() {
  const [alice, bob] = config.users
  const conversationId = config.conversation_id
  let offline = false
  class FlakyNetwork extends WebSocket {
    // While "offline", every attempt goes nowhere (a closed port): phoenix.js backs off.
    constructor(url, ...rest) { super(offline ? "ws://127.0.0.1:9/down" : url, ...rest) }
  }
  const socket = await connect(alice, { transport: FlakyNetwork })
  const seqs = new Set()
  let lastSeq = 0
  const keep = (message) => { seqs.add(message.seq); lastSeq = Math.max(lastSeq, message.seq) }
  const joins = []
  const channel = socket.channel(`user:${alice.id}`, () => ({
    conversations: { [conversationId]: { last_seq: lastSeq } },
  }))
  channel.on("message:new", keep)
  let opens = 0
  socket.onOpen(() => { opens += 1 })
  await join(channel)
  // Every "ok" of this channel's join, the first included (phoenix.js calls a hook added
  // after a reply at once, and again on each rejoin).
  channel.joinPush.receive("ok", (response) => joins.push(response))
  await rest(bob, "POST", `/api/v1/conversations/${conversationId}/messages`, { client_id: "r-1", text: "one" })
  await waitFor("the live push of seq 1", () => seqs.has(1))

  // The connection dies under the client; phoenix.js sees an abnormal close.
  offline = true
  socket.conn.terminate()
  await waitFor("the socket to be down", () => !socket.isConnected())
  for (const n of [2, 3, 4]) {
    await rest(bob, "POST", `/api/v1/conversations/${conversationId}/messages`, { client_id: `r-${n}`, text: `n${n}` })
  }
  offline = false
  await waitFor("the rejoin's reply", () => joins.length >= 2)
  const catchUp = joins[1]
  for (const message of catchUp.conversations[conversationId].messages) keep(message)
  await waitFor("a second open", () => opens >= 2)
  await rest(bob, "POST", `/api/v1/conversations/${conversationId}/messages`, { client_id: "r-5", text: "live again" })
  await waitFor("the live push of seq 5", () => seqs.has(5))
  socket.disconnect()
  return {
    opens,
    tickets: socket.ticketsUsed,
    caught_up: catchUp.conversations[conversationId].messages.map((m) => m.seq),
    recovered: catchUp.conversations[conversationId].recovered,
    seqs: [...seqs].sort((a, b) => a - b),
  }
}

// Alice was away while Bob sent `config.missed` long messages: her `user:` channel joins
// with `stream: true` and her cursor; the reply says how many follow, `sync:batch` pushes
// bring them in order, `sync:done` ends them, and a live message comes after.
async function stream() {
  const [alice] = config.users
  const conversationId = config.conversation_id
  const socket = await connect(alice)
  const events = []
  const seqs = []
  const keep = (message) => { seqs.push(message.seq) }
  const channel = socket.channel(`user:${alice.id}`, () => ({
    stream: true,
    conversations: { [conversationId]: { last_seq: 0 } },
  }))
  let done = null
  channel.on("sync:batch", (batch) => { events.push("sync:batch"); batch.messages.forEach(keep) })
  channel.on("sync:done", (marker) => { events.push("sync:done"); done = marker })
  channel.on("message:new", (message) => { events.push("message:new"); keep(message) })
  const reply = await join(channel)
  const catchUp = reply.conversations[conversationId]
  catchUp.messages.forEach(keep)
  await waitFor("sync:done", () => done !== null, 60000)
  await rest(alice, "POST", `/api/v1/conversations/${conversationId}/messages`, { client_id: "live-1", text: "live" })
  await waitFor("the live push", () => events.includes("message:new"))
  socket.disconnect()
  return {
    recovered: catchUp.recovered,
    streamed: catchUp.streamed,
    in_reply: catchUp.messages.length,
    done,
    batches: events.filter((e) => e === "sync:batch").length,
    events_after_batches: events.filter((e) => e !== "sync:batch"),
    seqs,
  }
}

// A client stuck with a spent ticket: phoenix.js retries with its own backoff; count its
// connection attempts over 10 s, then a fresh ticket from the same address must connect.
async function stale() {
  const [alice] = config.users
  let attempts = 0
  class CountingWebSocket extends WebSocket {
    constructor(...args) { super(...args); attempts += 1 }
  }
  const burned = await fetchTicket(alice)
  const first = new Socket(socketUrl, { transport: WebSocket, params: { token: burned } })
  first.connect()
  await waitFor("the first socket to open", () => first.isConnected())
  first.disconnect()
  const stuck = new Socket(socketUrl, { transport: CountingWebSocket, params: { token: burned } })
  let errors = 0
  stuck.onError(() => { errors += 1 })
  stuck.connect()
  await sleep(config.seconds * 1000)
  stuck.disconnect()
  const fresh = await connect(alice)
  await waitFor("a fresh ticket's socket to open", () => fresh.isConnected())
  const channel = fresh.channel(`user:${alice.id}`, {})
  await join(channel)
  fresh.disconnect()
  return { attempts, errors, fresh_connected: true }
}

// Alice pushes `count` messages at once, as an app flushing its outbox does, then marks
// the conversation read up to the last: each reply's seq, the read reply, and the order
// the replies came in (docs/messaging.md §3.3: a socket's sends run side by side, stored
// in the order they were pushed, and the next request is handled after them).
async function burst({ count }) {
  const [alice] = config.users
  const socket = await connect(alice)
  const conversation = socket.channel(`conversation:${config.conversation_id}`, {})
  await join(conversation)
  const answered = []
  const sends = Array.from({ length: count }, (_, i) =>
    request(conversation, "message:send", { client_id: `burst-${i}`, text: `burst ${i}` })
      .then((response) => { answered.push(`send ${i}`); return response.message.seq }))
  const read = request(conversation, "read", { seq: count })
    .then((receipt) => { answered.push("read"); return receipt })
  const seqs = await Promise.all(sends)
  const receipt = await read
  socket.disconnect()
  return { seqs, receipt, answered }
}

const scenarios = { burst, chat, presence, reconnect, stream, stale }
const scenario = scenarios[process.argv[2]]
if (!scenario) {
  console.error(`unknown scenario ${process.argv[2]}`)
  process.exit(2)
}
try {
  const result = await scenario(config)
  process.stdout.write(JSON.stringify(result) + "\n")
  process.exit(0)
} catch (error) {
  console.error(error.stack || String(error))
  process.exit(1)
}
