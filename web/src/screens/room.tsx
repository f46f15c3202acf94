// One open conversation: its messages (own ones editable and deletable), who has seen
// them, typing, presence, the composer (Enter sends) and file upload with progress.
import { useEffect, useRef, useState } from "preact/hooks"
import { api, explain, unescapeText, type Conversation, type Message, type User } from "../api/client"
import type { Live } from "../messaging/live"
import { GroupMembers } from "./group"
import { ALLOWED as ALLOWED_TYPES, refusal, RULES, upload } from "../messaging/upload"

const TYPING_EVERY_MS = 2000

export function preview(message: Message): string {
  if (message.deleted) return "(deleted)"
  if (message.text) return unescapeText(message.text)
  return message.media ? `(file: ${message.media.filename})` : "(file)"
}

interface RoomProps {
  conversation: Conversation
  me: User
  live: Live
  names: Record<string, string>
  title: string
}

export function Room({ conversation, me, live, names, title }: RoomProps) {
  const [error, setError] = useState("")
  const [editing, setEditing] = useState<string | null>(null)
  const [progress, setProgress] = useState<number | null>(null)
  const lastTyping = useRef(0)
  const messages = live.list(conversation.id)
  const others = conversation.members.filter((id) => id !== me.id)
  const typers = [...(live.typing.get(conversation.id)?.keys() ?? [])]
  const seenUpTo = Math.min(...others.map((id) => live.readBy(conversation.id, id)))
  const bottom = useRef<HTMLLIElement>(null)
  useEffect(() => bottom.current?.scrollIntoView({ block: "end" }), [messages.length])
  const path = { conversation_id: conversation.id }

  function typed() {
    const now = Date.now()
    if (now - lastTyping.current > TYPING_EVERY_MS) {
      lastTyping.current = now
      live.typingStart()
    }
  }

  async function send(body: { text: string } | { media_id: string }): Promise<boolean> {
    const { data, response, error } = await api.POST("/api/v1/conversations/{conversation_id}/messages", {
      params: { path },
      body: { client_id: crypto.randomUUID(), ...body },
    })
    if (!data) {
      setError(explain(response, error))
      return false
    }
    live.apply(data.message, false)
    setError("")
    return true
  }

  async function compose(event: KeyboardEvent) {
    if (event.key !== "Enter" || event.shiftKey) return
    event.preventDefault()
    const input = event.currentTarget as HTMLTextAreaElement
    const text = input.value.trim()
    if (!text) return
    input.value = ""
    lastTyping.current = 0
    live.typingStop()
    if (!(await send({ text }))) input.value = text
  }

  async function edit(message: Message, event: KeyboardEvent) {
    if (event.key === "Escape") return setEditing(null)
    if (event.key !== "Enter") return
    event.preventDefault()
    const text = (event.currentTarget as HTMLInputElement).value.trim()
    const { data, response, error } = await api.PATCH("/api/v1/conversations/{conversation_id}/messages/{message_id}", {
      params: { path: { ...path, message_id: message.id } },
      body: { text },
    })
    if (!data) return setError(explain(response, error))
    live.apply(data, false)
    setEditing(null)
  }

  async function remove(message: Message) {
    const { data, response, error } = await api.DELETE("/api/v1/conversations/{conversation_id}/messages/{message_id}", {
      params: { path: { ...path, message_id: message.id } },
    })
    if (!data) return setError(explain(response, error))
    live.apply(data, false)
  }

  async function attach(event: Event) {
    const input = event.currentTarget as HTMLInputElement
    const file = input.files?.[0]
    input.value = ""
    if (!file) return
    const refused = refusal(file)
    if (refused) return setError(refused)
    setError("")
    setProgress(0)
    try {
      const media = await upload(file, setProgress)
      await send({ media_id: media.id })
    } catch (failure) {
      setError((failure as Error).message)
    } finally {
      setProgress(null)
    }
  }

  return (
    <section class="room" aria-label={`Conversation with ${title}`}>
      <header>
        <h2>{title}</h2>
        {others.map((id) => (
          <span key={id} class="presence" data-testid="presence" data-user={id} data-online={String(live.online.has(id))}>
            {names[id] ?? `user ${id}`}: {live.online.has(id) ? "online" : "offline"}
          </span>
        ))}
        <span class="here" data-testid="conversation-presence">
          In this conversation now: {[...live.here].filter((id) => id !== me.id).map((id) => names[id] ?? id).join(", ") || "nobody else"}
        </span>
      </header>
      {conversation.kind === "group" && <GroupMembers conversation={conversation} me={me} names={names} />}
      <ol class="messages" aria-live="polite">
        {messages.map((m) => {
          const mine = m.author_id === me.id
          return (
            <li key={m.seq} data-testid="message-item" data-seq={m.seq} class={mine ? "mine" : ""}>
              <span class="author">{mine ? "You" : (names[m.author_id] ?? m.author_id)}</span>{" "}
              {editing === m.id ? (
                <input
                  aria-label="Edit message (Enter saves, Escape cancels)"
                  defaultValue={unescapeText(m.text ?? "")}
                  onKeyDown={(event) => void edit(m, event)}
                  autoFocus
                />
              ) : (
                <span class="text">{preview(m)}</span>
              )}
              {m.media && !m.deleted && <Attachment message={m} />}
              {m.edited_at && !m.deleted && <span class="meta"> (edited)</span>}
              {mine && m.seq <= seenUpTo && <span class="meta" data-testid="read-receipt"> · seen</span>}
              {mine && !m.deleted && (
                <span class="actions">
                  {m.text !== null && (
                    <button onClick={() => setEditing(m.id)} aria-label={`Edit message ${m.seq}`}>
                      Edit
                    </button>
                  )}
                  <button onClick={() => void remove(m)} aria-label={`Delete message ${m.seq}`}>
                    Delete
                  </button>
                </span>
              )}
            </li>
          )
        })}
        <li ref={bottom} aria-hidden="true" class="end" />
      </ol>
      {typers.length > 0 && (
        <p data-testid="typing-indicator" class="typing">
          {typers.map((id) => names[id] ?? id).join(", ")} typing…
        </p>
      )}
      {error && (
        <p role="alert" class="error" data-testid="room-error">
          {error}
        </p>
      )}
      <label class="compose">
        Message (Enter sends)
        <textarea data-testid="message-input" rows={2} onKeyDown={compose} onInput={typed} maxLength={4000} />
      </label>
      <label class="attach">
        Send a file <span class="hint">({RULES})</span>
        <input data-testid="media-input" type="file" accept={Object.keys(ALLOWED_TYPES).join(",")} onChange={attach} />
      </label>
      {progress !== null && (
        <progress data-testid="upload-progress" max={1} value={progress} aria-label="Upload progress">
          {Math.round(progress * 100)} %
        </progress>
      )}
    </section>
  )
}

function Attachment({ message }: { message: Message }) {
  const media = message.media!
  if (media.content_type.startsWith("image/")) {
    return <img class="media" src={media.url} alt={media.filename} loading="lazy" />
  }
  return (
    <a class="media" href={media.url} download={media.filename}>
      {media.filename}
    </a>
  )
}
