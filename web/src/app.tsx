// The shell: who is logged in (asked of the server: the session is the HttpOnly cookie,
// which this code never sees), the login/register forms otherwise, and the two screens.
import { useEffect, useState } from "preact/hooks"
import { api, explain, onUnauthorized, type User } from "./api/client"
import { AuthForms } from "./screens/auth"
import { Messaging } from "./screens/messaging"
import { Publications } from "./screens/publications"
import { SocialRoom } from "./screens/social"

type Screen = "messages" | "publications" | "social"

export function App() {
  const [user, setUser] = useState<User | null | undefined>(undefined)
  const [screen, setScreen] = useState<Screen>("messages")
  const [notice, setNotice] = useState("")

  useEffect(() => {
    onUnauthorized(() => {
      setUser(null)
      setNotice("Your session has ended: please log in again.")
    })
    api.GET("/auth/api/me").then(({ data }) => setUser(data ?? null), () => setUser(null))
  }, [])

  async function logout() {
    const { response, error } = await api.POST("/auth/api/logout")
    if (response.ok || response.status === 401) {
      setUser(null)
      setNotice("You are logged out.")
    } else {
      setNotice(explain(response, error))
    }
  }

  if (user === undefined) return <p role="status">Loading…</p>
  if (user === null) {
    return (
      <AuthForms
        notice={notice}
        onLoggedIn={(me) => {
          setNotice("")
          setUser(me)
        }}
      />
    )
  }
  return (
    <div class="shell">
      <header class="bar">
        <h1>Agora</h1>
        <nav aria-label="Screens">
          <button aria-pressed={screen === "messages"} onClick={() => setScreen("messages")}>
            Messages
          </button>
          <button aria-pressed={screen === "publications"} onClick={() => setScreen("publications")}>
            My publications
          </button>
          <button aria-pressed={screen === "social"} onClick={() => setScreen("social")}>
            Social room
          </button>
        </nav>
        <span class="me">
          Logged in as <strong data-testid="current-user">{user.login}</strong>
        </span>
        <button data-testid="logout-button" onClick={logout}>
          Log out
        </button>
      </header>
      {notice && <p role="status">{notice}</p>}
      <main>
        {screen === "messages" && <Messaging me={user} />}
        {screen === "publications" && <Publications />}
        {screen === "social" && <SocialRoom />}
      </main>
    </div>
  )
}
