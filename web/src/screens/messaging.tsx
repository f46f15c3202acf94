// Messaging: the conversation list (unread counts, last message), a direct
// conversation started by a user's exact login, the open conversation's messages,
// typing, presence and the socket's state. Every text shown is a text node.
import { useEffect, useMemo, useRef, useState } from "preact/hooks"
import { api, explain, unescapeText, type Conversation, type User } from "../api/client"
import { Live, latestMessages } from "../messaging/live"
import { idsOfLogins } from "./group"
import { preview, Room } from "./room"

export function Messaging({ me }: { me: User }) {
  const [conversations, setConversations] = useState<Conversation[]>([])
  const [names, setNames] = useState<Record<string, string>>({})
  const [openId, setOpenId] = useState<string | null>(null)
  const [error, setError] = useState("")
  const [, setTick] = useState(0)
  const openRef = useRef<string | null>(null)

  async function refresh() {
    const { data } = await api.GET("/api/v1/conversations", { params: { query: { limit: 50 } } })
    if (!data) return
    setConversations(data.conversations)
    for (const conversation of data.conversations) {
      if (conversation.members.some((id) => !(id in names))) void learnNames(conversation.id)
    }
  }

  async function learnNames(id: string) {
    const { data } = await api.GET("/api/v1/conversations/{conversation_id}", {
      params: { path: { conversation_id: id } },
    })
    if (data) setNames((old) => ({ ...old, ...Object.fromEntries(data.users.map((u) => [u.id, u.login])) }))
  }

  const live = useMemo(
    () => new Live(me.id, () => void refresh(), () => location.reload()),
    [me.id],
  )
  useEffect(() => {
    const unsubscribe = live.subscribe(() => {
      setTick((n) => n + 1)
      markRead(openRef.current)
    })
    void live.start()
    void refresh()
    return () => {
      unsubscribe()
      live.stop()
    }
  }, [live])

  /** The open conversation, in a visible tab, is read up to its last message. */
  function markRead(id: string | null) {
    if (!id || document.hidden || !live.unread.get(id)) return
    const last = live.list(id).at(-1)
    if (!last) return
    live.setUnread(id, 0, false)
    void api.POST("/api/v1/conversations/{conversation_id}/read", {
      params: { path: { conversation_id: id } },
      body: { seq: last.seq },
    })
  }

  async function open(id: string) {
    openRef.current = id
    setOpenId(id)
    live.enter(id)
    for (const message of await latestMessages(id)) live.apply(message, false)
    live.setUnread(id, live.unread.get(id) ?? conversations.find((c) => c.id === id)?.unread ?? 0)
    markRead(id)
  }

  async function startDirect(event: Event) {
    event.preventDefault()
    const input = (event.currentTarget as HTMLFormElement).elements.namedItem("login") as HTMLInputElement
    const login = input.value.trim()
    const found = await api.GET("/auth/api/users/by-login/{login}", { params: { path: { login } } })
    if (!found.data) {
      return setError(found.response.status === 404 ? `No user has the login ${login}.` : explain(found.response, found.error))
    }
    const created = await api.POST("/api/v1/conversations", { body: { kind: "direct", user_id: found.data.id } })
    if (!created.data) return setError(explain(created.response, created.error))
    setError("")
    input.value = ""
    setNames((old) => ({ ...old, [found.data.id]: found.data.login }))
    await refresh()
    await open(created.data.id)
  }

  async function startGroup(event: Event) {
    event.preventDefault()
    const element = event.currentTarget as HTMLFormElement
    const form = new FormData(element)
    const logins = String(form.get("logins")).split(",").map((l) => l.trim()).filter(Boolean)
    const members = await idsOfLogins(logins)
    if (typeof members === "string") return setError(members)
    const title = String(form.get("title"))
    const created = await api.POST("/api/v1/conversations", { body: { kind: "group", title, members } })
    if (!created.data) return setError(explain(created.response, created.error))
    setError("")
    element.reset()
    await refresh()
    await open(created.data.id)
  }

  const shown = conversations
    .map((conversation) => live.merge(conversation))
    .sort((a, b) => (b.last_message?.created_at ?? b.created_at).localeCompare(a.last_message?.created_at ?? a.created_at))
  const current = shown.find((c) => c.id === openId) ?? null
  const title = (c: Conversation) =>
    (c.title != null ? unescapeText(c.title) : null) ?? c.members.filter((id) => id !== me.id).map((id) => names[id] ?? `user ${id}`).join(", ")

  return (
    <div class="messaging">
      <aside aria-label="Conversations">
        <p class="connection" data-testid="connection-status" data-state={live.state} role="status">
          {{ online: "Connected", reconnecting: "Reconnecting…", offline: "Offline" }[live.state]}
        </p>
        <form onSubmit={startDirect}>
          <label>
            New conversation with (login){" "}
            <input data-testid="new-conversation-input" name="login" required pattern="[A-Za-z0-9_.\-]{3,64}" />
          </label>
        </form>
        <details>
          <summary>New group</summary>
          <form onSubmit={startGroup}>
            <label>
              Title <input name="title" required maxLength={100} />
            </label>
            <label>
              Members (logins, comma-separated) <input name="logins" required />
            </label>
            <button>Create the group</button>
          </form>
        </details>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <ul class="conversations">
          {shown.map((c) => (
            <li key={c.id}>
              <button
                data-testid="conversation-item"
                data-unread={String(c.unread)}
                aria-current={c.id === openId}
                onClick={() => void open(c.id)}
              >
                <span class="title">{title(c)}</span>
                {c.unread > 0 && <span class="badge" aria-label={`${c.unread} unread`}>{c.unread}</span>}
                <span class="last">{c.last_message ? preview(c.last_message) : "No message yet"}</span>
              </button>
            </li>
          ))}
        </ul>
      </aside>
      {current ? (
        <Room conversation={current} me={me} live={live} names={names} title={title(current)} />
      ) : (
        <section class="room empty">
          <p>Pick a conversation, or start one with a login.</p>
        </section>
      )}
    </div>
  )
}

