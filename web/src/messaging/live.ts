// The messaging socket through the official phoenix.js client (docs/messaging.md §3.4):
// a fresh one-time ticket for every (re)connect, the `user:<id>` topic carrying every
// conversation's pushes, the cursors (last seq and version per conversation) sent on
// every rejoin so the reply is exactly what this tab missed, messages applied by
// version so a push and a catch-up that overlap show nothing twice.
import { Presence, Socket, type Channel } from "phoenix"
import { api, type Conversation, type Message } from "../api/client"

export type ConnectionState = "online" | "reconnecting" | "offline"

interface Receipt {
  conversation_id: string
  user_id: string
  read_seq: number
  unread: number
}

interface CatchUp {
  messages?: Message[]
  last_seq?: number
  unread?: number
}

export class Live {
  readonly messages = new Map<string, Map<number, Message>>() // conversation → seq → message
  readonly cursors: Record<string, { last_seq: number; last_version: number }> = {}
  readonly unread = new Map<string, number>()
  readonly readCursors = new Map<string, Map<string, number>>() // conversation → user → read_seq
  readonly typing = new Map<string, Map<string, number>>() // conversation → user → timer
  online = new Set<string>() // contacts with a live messaging socket (user: topic)
  here = new Set<string>() // users in the open conversation now (conversation: topic)
  state: ConnectionState = "reconnecting"
  private socket: Socket
  private userChannel: Channel
  private roomChannel: Channel | null = null
  private ticket = ""
  private renewing: Promise<void> | null = null
  private listeners = new Set<() => void>()
  private stopped = false

  constructor(
    private readonly me: string,
    private readonly onConversationChange: () => void,
    private readonly onTicketRefused: () => void,
  ) {
    this.socket = new Socket("/socket", { params: () => ({ token: this.ticket }) })
    this.socket.onOpen(() => this.setState("online", true))
    this.socket.onError(() => this.setState(navigator.onLine ? "reconnecting" : "offline", true))
    this.socket.onClose(() => this.setState(navigator.onLine ? "reconnecting" : "offline", true))
    this.userChannel = this.socket.channel(`user:${me}`, () => ({ conversations: this.cursors, stream: true }))
    // Catch-ups too large for the join reply follow it (docs/messaging.md §3.4).
    this.userChannel.on("sync:batch", (batch: { messages: Message[] }) => {
      for (const message of batch.messages) this.apply(message, false)
    })
    this.userChannel.on("message:new", (message: Message) => this.apply(message, true))
    this.userChannel.on("message:updated", (message: Message) => this.apply(message, false))
    this.userChannel.on("message:deleted", (message: Message) => this.apply(message, false))
    this.userChannel.on("receipt", (receipt: Receipt) => {
      if (receipt.user_id === this.me) return this.setUnread(receipt.conversation_id, receipt.unread)
      const cursors = this.readCursors.get(receipt.conversation_id) ?? new Map<string, number>()
      this.readCursors.set(receipt.conversation_id, cursors)
      cursors.set(receipt.user_id, Math.max(cursors.get(receipt.user_id) ?? 0, receipt.read_seq))
      this.changed()
    })
    this.userChannel.on("conversation:updated", () => this.onConversationChange())
    const presence = new Presence(this.userChannel)
    presence.onSync(() => {
      this.online = new Set(presence.list((id: string) => id))
      this.changed()
    })
    window.addEventListener("offline", this.wentOffline)
    window.addEventListener("online", this.cameOnline)
  }

  async start(): Promise<void> {
    await this.renew()
    if (this.stopped) return
    this.userChannel.join().receive("ok", (reply: { conversations?: Record<string, CatchUp>; unread?: Record<string, number> }) => {
      for (const catchUp of Object.values(reply.conversations ?? {})) {
        for (const message of catchUp.messages ?? []) this.apply(message, false)
      }
      for (const [id, count] of Object.entries(reply.unread ?? {})) this.unread.set(id, count)
      this.onConversationChange()
      this.changed()
    })
    this.socket.connect()
  }

  stop(): void {
    this.stopped = true
    window.removeEventListener("offline", this.wentOffline)
    window.removeEventListener("online", this.cameOnline)
    this.socket.disconnect()
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** How far `user` has read `conversation`, as receipts told this tab (0: unknown). */
  readBy(conversation: string, user: string): number {
    return this.readCursors.get(conversation)?.get(user) ?? 0
  }

  list(conversation: string): Message[] {
    return [...(this.messages.get(conversation)?.values() ?? [])].sort((a, b) => a.seq - b.seq)
  }

  /** The conversations of the list, with their counts and last messages as this tab
   * knows them (the REST list, then every push). */
  merge(conversation: Conversation): Conversation {
    const last = this.list(conversation.id).at(-1)
    const known = conversation.last_message
    return {
      ...conversation,
      last_message: last && (!known || last.seq >= known.seq) ? last : known,
      unread: this.unread.get(conversation.id) ?? conversation.unread,
    }
  }

  /** The open conversation's own topic: typing indicators both ways. */
  enter(conversation: string | null): void {
    this.roomChannel?.leave()
    this.roomChannel = null
    if (!conversation) return
    const channel = this.socket.channel(`conversation:${conversation}`, {})
    channel.on("typing", (event: { user_id: string; typing: boolean }) => {
      this.setTyping(conversation, event.user_id, event.typing)
    })
    const presence = new Presence(channel)
    presence.onSync(() => {
      this.here = new Set(presence.list((id: string) => id))
      this.changed()
    })
    this.here = new Set()
    channel.join()
    this.roomChannel = channel
  }

  typingStart(): void {
    this.roomChannel?.push("typing:start", {})
  }

  typingStop(): void {
    this.roomChannel?.push("typing:stop", {})
  }

  apply(message: Message, live: boolean): void {
    const byseq = this.messages.get(message.conversation_id) ?? new Map<number, Message>()
    this.messages.set(message.conversation_id, byseq)
    const had = byseq.get(message.seq)
    if (had && had.version >= message.version) return // a duplicate: seen already
    byseq.set(message.seq, message)
    const cursor = (this.cursors[message.conversation_id] ??= { last_seq: 0, last_version: 0 })
    cursor.last_seq = Math.max(cursor.last_seq, message.seq)
    cursor.last_version = Math.max(cursor.last_version, message.version)
    if (live && !had && message.author_id !== this.me) {
      this.setUnread(message.conversation_id, (this.unread.get(message.conversation_id) ?? 0) + 1, false)
    }
    this.setTyping(message.conversation_id, message.author_id, false)
    this.changed()
  }

  setUnread(conversation: string, count: number, notify = true): void {
    this.unread.set(conversation, count)
    if (notify) this.changed()
  }

  private setTyping(conversation: string, user: string, typing: boolean): void {
    const typers = this.typing.get(conversation) ?? new Map<string, number>()
    this.typing.set(conversation, typers)
    window.clearTimeout(typers.get(user))
    if (typing) {
      // The server says "stopped" by itself after its TTL; this is only a backstop.
      typers.set(user, window.setTimeout(() => this.setTyping(conversation, user, false), 7000))
    } else if (!typers.delete(user)) {
      return
    }
    this.changed()
  }

  private setState(state: ConnectionState, renew: boolean): void {
    if (renew) void this.renew()
    if (this.state === state) return
    this.state = state
    this.changed()
  }

  /** A ticket opens one socket and lives 10 s: fetch the next one as soon as this one
   * is spent or may be stale. A 401 means the session ended (logout elsewhere). */
  private renew(): Promise<void> {
    this.renewing ??= fetch("/social/api/socials/connect-token", { credentials: "same-origin" })
      .then(async (response) => {
        if (response.status === 401) {
          this.stop()
          this.onTicketRefused()
        } else if (response.ok) {
          this.ticket = ((await response.json()) as { token: string }).token
        }
      })
      .catch(() => {})
      .finally(() => {
        this.renewing = null
      })
    return this.renewing
  }

  // A tab that goes offline drops its socket at once (it would only notice at the next
  // heartbeat) and reconnects when the network is back: the rejoin's reply is the gap.
  private wentOffline = () => {
    this.socket.disconnect()
    this.setState("offline", false)
  }

  private cameOnline = () => {
    this.setState("reconnecting", false)
    void this.renew().then(() => {
      if (!this.stopped) this.socket.connect()
    })
  }

  private changed(): void {
    for (const listener of this.listeners) listener()
  }
}

/** The latest page of a conversation, over REST (when it is opened). */
export async function latestMessages(conversation: string): Promise<Message[]> {
  const { data } = await api.GET("/api/v1/conversations/{conversation_id}/messages", {
    params: { path: { conversation_id: conversation }, query: { limit: 50 } },
  })
  return data?.messages ?? []
}
