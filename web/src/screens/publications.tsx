// My publications: a page at a time (the API's cursor), create, edit in place, delete.
// Titles and bodies are shown as text, whatever they hold (stored with entities: the
// text policy of docs/security.md; unescaped into a text node, never parsed as HTML).
import { useEffect, useState } from "preact/hooks"
import { api, explain, unescapeText, type Publication } from "../api/client"

const PAGE = 10

export function Publications() {
  const [items, setItems] = useState<Publication[]>([])
  const [cursor, setCursor] = useState<string | null>(null)
  const [editing, setEditing] = useState<string | null>(null)
  const [error, setError] = useState("")

  async function load(after: string | null) {
    const query = after ? { limit: PAGE, cursor: after } : { limit: PAGE }
    const { data, response, error } = await api.GET("/api/publications", { params: { query } })
    if (!data) return setError(explain(response, error))
    setItems((old) => (after ? [...old, ...data.publications] : data.publications))
    setCursor(data.next_cursor)
  }
  useEffect(() => void load(null), [])

  async function create(event: Event) {
    event.preventDefault()
    const element = event.currentTarget as HTMLFormElement
    const form = new FormData(element)
    const body = { title: String(form.get("title")), body: String(form.get("body")) }
    const { data, response, error } = await api.POST("/api/publications", { body })
    if (!data) return setError(explain(response, error))
    setError("")
    element.reset()
    setItems((old) => [data, ...old])
  }

  async function save(id: string, event: Event) {
    event.preventDefault()
    const form = new FormData(event.currentTarget as HTMLFormElement)
    const body = { title: String(form.get("title")), body: String(form.get("body")) }
    const { data, response, error } = await api.PATCH("/api/publications/{publication_id}", {
      params: { path: { publication_id: id } },
      body,
    })
    if (!data) return setError(explain(response, error))
    setError("")
    setEditing(null)
    setItems((old) => old.map((item) => (item.id === id ? data : item)))
  }

  async function remove(id: string) {
    const { response, error } = await api.DELETE("/api/publications/{publication_id}", {
      params: { path: { publication_id: id } },
    })
    if (!response.ok) return setError(explain(response, error))
    setItems((old) => old.filter((item) => item.id !== id))
  }

  return (
    <section aria-labelledby="publications-title">
      <h2 id="publications-title">My publications</h2>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <form class="stack" onSubmit={create} aria-label="New publication">
        <label>
          Title <input data-testid="publication-title-input" name="title" required maxLength={200} />
        </label>
        <label>
          Text <textarea data-testid="publication-body-input" name="body" rows={3} />
        </label>
        <button data-testid="publication-submit">Publish</button>
      </form>
      <ul class="publications">
        {items.map((item) =>
          editing === item.id ? (
            <li data-testid="publication-item" key={item.id}>
              <form class="stack" onSubmit={(event) => save(item.id, event)} aria-label="Edit publication">
                <label>
                  Title <input name="title" defaultValue={unescapeText(item.title)} required />
                </label>
                <label>
                  Text <textarea name="body" defaultValue={unescapeText(item.body)} rows={3} />
                </label>
                <button>Save</button>
                <button type="button" onClick={() => setEditing(null)}>
                  Cancel
                </button>
              </form>
            </li>
          ) : (
            <li data-testid="publication-item" key={item.id}>
              <h3>{unescapeText(item.title)}</h3>
              <p class="body">{unescapeText(item.body)}</p>
              <button onClick={() => setEditing(item.id)}>Edit</button>
              <button onClick={() => remove(item.id)}>Delete</button>
            </li>
          ),
        )}
      </ul>
      {cursor && <button onClick={() => load(cursor)}>More publications</button>}
    </section>
  )
}
