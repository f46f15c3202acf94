// The social room of seed 003: fetch a one-time connect ticket, open the social socket
// with it, the welcome line, live chat with a user (found by exact login), and who of
// one's contacts is online (presence.watch). Live only: nothing is stored.
import { useEffect, useRef, useState } from "preact/hooks"
import { api, explain, unescapeText, type UserCard } from "../api/client"

interface Line {
  key: number
  text: string
}

type Frame = Record<string, unknown> & { type: string }

export function SocialRoom() {
  const [lines, setLines] = useState<Line[]>([])
  const [state, setState] = useState<"connecting" | "online" | "offline">("connecting")
  const [contacts, setContacts] = useState<UserCard[]>([])
  const [online, setOnline] = useState<Set<string>>(new Set())
  const [to, setTo] = useState<string>("")
  const [error, setError] = useState("")
  const socket = useRef<WebSocket | null>(null)
  const counter = useRef(0)
  const say = (text: string) => setLines((old) => [...old.slice(-199), { key: counter.current++, text }])

  useEffect(() => {
    let closed = false
    async function connect() {
      // 1. the ticket (GET: the cookie is enough, no CSRF header needed)
      const { data, response, error } = await api.GET("/social/api/socials/connect-token")
      if (!data) return setError(explain(response, error))
      // 2. the socket, with the ticket as seed 003 shows
      const scheme = location.protocol === "https:" ? "wss" : "ws"
      const ws = new WebSocket(`${scheme}://${location.host}/social/api/socials/ws?token=${encodeURIComponent(String((data as { token?: string }).token))}`)
      socket.current = ws
      ws.onopen = () => setState("online")
      ws.onclose = () => {
        setState("offline")
        if (!closed) window.setTimeout(connect, 2000) // a fresh ticket each time
      }
      ws.onmessage = (event) => receive(JSON.parse(String(event.data)) as Frame)
    }
    void connect()
    return () => {
      closed = true
      socket.current?.close()
    }
  }, [])

  function receive(frame: Frame) {
    switch (frame.type) {
      case "connected":
        return say(String(frame.message))
      case "chat":
        return say(`${String(frame.fromLogin)}: ${unescapeText(String(frame.content))}`)
      case "echo":
        return say(`(echo) ${unescapeText(String(frame.content))}`)
      case "presence":
        return setOnline(new Set(frame.online as string[]))
      case "presence.join":
        return setOnline((old) => new Set([...old, String(frame.userId)]))
      case "presence.leave":
        return setOnline((old) => new Set([...old].filter((id) => id !== String(frame.userId))))
      case "error":
        return setError(String(frame.message))
    }
  }

  function send(frame: Frame) {
    if (socket.current?.readyState === WebSocket.OPEN) socket.current.send(JSON.stringify(frame))
  }

  async function addContact(event: Event) {
    event.preventDefault()
    const input = (event.currentTarget as HTMLFormElement).elements.namedItem("login") as HTMLInputElement
    const login = input.value.trim()
    const { data, response, error } = await api.GET("/auth/api/users/by-login/{login}", { params: { path: { login } } })
    if (!data) return setError(response.status === 404 ? `No user has the login ${login}.` : explain(response, error))
    setError("")
    input.value = ""
    setContacts((old) => (old.some((c) => c.id === data.id) ? old : [...old, data]))
    setTo(data.id)
    send({ type: "presence.watch", users: [...contacts.map((c) => c.id), data.id] })
  }

  function chat(event: Event) {
    event.preventDefault()
    const input = (event.currentTarget as HTMLFormElement).elements.namedItem("content") as HTMLInputElement
    const content = input.value.trim()
    if (!content) return
    send(to ? { type: "chat", to, content } : { type: "chat", content })
    const name = contacts.find((c) => c.id === to)?.login
    say(name ? `You → ${name}: ${content}` : `You: ${content}`)
    input.value = ""
  }

  return (
    <section class="social" aria-labelledby="social-title">
      <h2 id="social-title">Social room</h2>
      <p class="connection" data-state={state === "connecting" ? "reconnecting" : state} role="status">
        {{ connecting: "Connecting…", online: "Connected", offline: "Offline" }[state]}
      </p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <form onSubmit={addContact}>
        <label>
          Add a contact (login) <input name="login" data-testid="social-contact-input" required />
        </label>
      </form>
      <ul class="contacts" aria-label="Contacts">
        {contacts.map((c) => (
          <li key={c.id}>
            <label>
              <input type="radio" name="to" checked={to === c.id} onChange={() => setTo(c.id)} /> {c.login}{" "}
              <span class="presence" data-testid="social-presence" data-online={String(online.has(c.id))}>
                {online.has(c.id) ? "online" : "offline"}
              </span>
            </label>
          </li>
        ))}
      </ul>
      <ol class="messages" aria-live="polite">
        {lines.map((line) => (
          <li key={line.key} data-testid="social-line">
            {line.text}
          </li>
        ))}
      </ol>
      <form onSubmit={chat}>
        <label>
          Say something {to ? "to the chosen contact" : "(echoed back: choose a contact to chat)"}{" "}
          <input name="content" data-testid="social-input" maxLength={4000} />
        </label>
      </form>
    </section>
  )
}
