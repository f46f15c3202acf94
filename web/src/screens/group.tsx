// A group's members: the owner adds (by exact login) and removes; a member leaves.
// The list and the room follow from the `conversation:updated` push every member gets.
import { useState } from "preact/hooks"
import { api, explain, type Conversation, type User } from "../api/client"

interface Props {
  conversation: Conversation
  me: User
  names: Record<string, string>
}

export async function idsOfLogins(logins: string[]): Promise<string[] | string> {
  const ids: string[] = []
  for (const login of logins) {
    const { data, response, error } = await api.GET("/auth/api/users/by-login/{login}", { params: { path: { login } } })
    if (!data) return response.status === 404 ? `No user has the login ${login}.` : explain(response, error)
    ids.push(data.id)
  }
  return ids
}

export function GroupMembers({ conversation, me, names }: Props) {
  const [error, setError] = useState("")
  const owner = conversation.owner_id === me.id
  const path = { conversation_id: conversation.id }

  async function add(event: Event) {
    event.preventDefault()
    const input = (event.currentTarget as HTMLFormElement).elements.namedItem("login") as HTMLInputElement
    const ids = await idsOfLogins([input.value.trim()])
    if (typeof ids === "string") return setError(ids)
    const { response, error } = await api.POST("/api/v1/conversations/{conversation_id}/members", {
      params: { path },
      body: { user_ids: ids },
    })
    if (!response.ok) return setError(explain(response, error))
    setError("")
    input.value = ""
  }

  async function remove(user: string) {
    const { response, error } = await api.DELETE("/api/v1/conversations/{conversation_id}/members/{user_id}", {
      params: { path: { ...path, user_id: user } },
    })
    setError(response.ok ? "" : explain(response, error))
  }

  return (
    <div class="group">
      <ul aria-label="Members">
        {conversation.members.map((id) => (
          <li key={id}>
            {names[id] ?? `user ${id}`}
            {id === conversation.owner_id && " (owner)"}
            {owner && id !== me.id && <button onClick={() => void remove(id)}>Remove</button>}
            {!owner && id === me.id && <button onClick={() => void remove(id)}>Leave the group</button>}
          </li>
        ))}
      </ul>
      {owner && (
        <form onSubmit={add}>
          <label>
            Add a member (login) <input name="login" required />
          </label>
        </form>
      )}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </div>
  )
}
