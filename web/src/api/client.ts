// The one HTTP client of the app: typed from Agora's OpenAPI document (schema.d.ts,
// generated), same-origin, the session riding in the HttpOnly cookie only. Writes carry
// X-CSRF-Token copied from the readable csrf_token cookie; a 401 anywhere but on the
// login form itself sends the user back to that form.
import createClient, { type Middleware } from "openapi-fetch"
import type { components, paths } from "./schema"

export type User = components["schemas"]["UserOut"]
export type Publication = components["schemas"]["PublicationOut"]
export type Conversation = components["schemas"]["ConversationOut"]
export type Message = components["schemas"]["MessageOut"]
export type UserCard = components["schemas"]["UserCard"]
export type Media = components["schemas"]["MediaOut"]

export const api = createClient<paths>({ baseUrl: "", credentials: "same-origin" })

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"])

export function csrfToken(): string | null {
  for (const pair of document.cookie.split("; ")) {
    const [name, value] = pair.split("=", 2)
    if (name === "csrf_token" && value) return decodeURIComponent(value)
  }
  return null
}

let unauthorized: () => void = () => {}
/** Called on every 401 but the login's own (wrong password stays on the form). */
export function onUnauthorized(handler: () => void): void {
  unauthorized = handler
}

const session: Middleware = {
  onRequest({ request }) {
    const token = csrfToken()
    if (!SAFE_METHODS.has(request.method) && token) request.headers.set("X-CSRF-Token", token)
    return request
  },
  onResponse({ request, response }) {
    const path = new URL(request.url).pathname
    if (response.status === 401 && path !== "/auth/api/login") unauthorized()
    return response
  },
}
api.use(session)

/** What to tell the user about a refused request: the server's reason, and when a
 * 403/429/503 comes with Retry-After, how long to wait. */
export function explain(response: Response | undefined, error: unknown): string {
  if (!response) return "The server cannot be reached. Check the connection and try again."
  const body = (error ?? {}) as { error?: unknown; fields?: Record<string, string> }
  let text = typeof body.error === "string" ? body.error : `Request failed (${response.status})`
  if (body.fields) text += ": " + Object.values(body.fields).join("; ")
  const retry = response.headers.get("Retry-After")
  if (retry && [403, 429, 503].includes(response.status)) {
    text += `. Try again in ${retry} s.`
  } else if (response.status === 403) {
    text += ". You are not allowed to do this."
  } else if (response.status === 429) {
    text += ". Too many attempts: wait a little and try again."
  }
  return text
}

/** User text (messages, titles, publications, chat) is stored with &, <, >, " and ' as
 * entities (the text policy, core/text.py): shown as the characters,
 * always through a text node, never as HTML. */
export function unescapeText(text: string): string {
  return text.replace(/&(lt|gt|quot|#39|#x27|amp);/g, (_, entity: string) =>
    ({ lt: "<", gt: ">", quot: '"', "#39": "'", "#x27": "'", amp: "&" })[entity] ?? "",
  )
}
