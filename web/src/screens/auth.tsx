// Log in and register. The login answer's body also holds the token (for curl and
// API clients): it is never read; the browser keeps only the HttpOnly cookie.
import { useState } from "preact/hooks"
import { api, explain, type User } from "../api/client"

interface Props {
  notice: string
  onLoggedIn: (user: User) => void
}

export function AuthForms({ notice, onLoggedIn }: Props) {
  const [error, setError] = useState("")
  const [info, setInfo] = useState("")
  const [busy, setBusy] = useState(false)

  async function login(event: Event) {
    event.preventDefault()
    const form = new FormData(event.currentTarget as HTMLFormElement)
    setBusy(true)
    setError("")
    const body = { login: String(form.get("login")), password: String(form.get("password")) }
    // parseAs "stream": the answer's body (it holds the token) is never read into JS;
    // the cookies it came with are the session.
    const { data, response, error } = await api.POST("/auth/api/login", { body, parseAs: "stream" })
    await data?.cancel()
    if (response.ok) {
      const me = await api.GET("/auth/api/me")
      if (me.data) onLoggedIn(me.data)
      else setError(explain(me.response, me.error))
    } else {
      setError(explain(response, error))
    }
    setBusy(false)
  }

  async function register(event: Event) {
    event.preventDefault()
    const element = event.currentTarget as HTMLFormElement
    const form = new FormData(element)
    setBusy(true)
    setError("")
    const body = {
      login: String(form.get("login")),
      email: String(form.get("email")),
      name: String(form.get("name")),
      password: String(form.get("password")),
    }
    const { response, error } = await api.POST("/auth/api/register", { body })
    if (response.ok) {
      setInfo(`Account ${body.login} created: you can log in.`)
      element.reset()
    } else {
      setError(explain(response, error))
    }
    setBusy(false)
  }

  return (
    <main class="auth">
      <h1>Agora</h1>
      {notice && <p role="status">{notice}</p>}
      {info && <p role="status">{info}</p>}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <form data-testid="login-form" onSubmit={login} aria-labelledby="login-title">
        <h2 id="login-title">Log in</h2>
        <label>
          Login <input data-testid="login-input" name="login" autocomplete="username" required />
        </label>
        <label>
          Password{" "}
          <input data-testid="password-input" name="password" type="password" autocomplete="current-password" required />
        </label>
        <button data-testid="login-submit" disabled={busy}>
          Log in
        </button>
      </form>
      <form data-testid="register-form" onSubmit={register} aria-labelledby="register-title">
        <h2 id="register-title">Create an account</h2>
        <label>
          Login <input data-testid="register-login" name="login" autocomplete="username" required minLength={3} maxLength={64} />
        </label>
        <label>
          Email <input data-testid="register-email" name="email" type="email" autocomplete="email" required />
        </label>
        <label>
          Name <input data-testid="register-name" name="name" autocomplete="name" required />
        </label>
        <label>
          Password{" "}
          <input data-testid="register-password" name="password" type="password" autocomplete="new-password" required />
        </label>
        <button data-testid="register-submit" disabled={busy}>
          Register
        </button>
      </form>
    </main>
  )
}
