"""Seed 002's protected routes, written with Agora's Flask adapter (docs/flask.md).

The Flask service issues no token of its own: users log in at Agora, and every route
here accepts Agora's tokens (or a trusted peer's), refused within seconds of a logout.

Run: AGORA_JWT_SECRET=... AGORA_AUTH_URL=http://127.0.0.1:8080 python flask_seed002.py
"""

import asyncio
import os

from flask import Flask, g

from agora.contrib.flask import init_app, token_required

app = Flask("articles")
# Every AGORA_* variable of the environment, named as Agora's own settings.
app.config.update({k: v for k, v in os.environ.items() if k.startswith("AGORA_")})
init_app(app)  # refuses to start without a key or a revocation source


@app.get("/api/articles")
@token_required
def articles() -> dict[str, object]:
    user = g.current_user  # agora.security.tokens.Identity
    return {"owner": user.user_id, "login": user.login, "articles": []}


@app.get("/api/balance")
@token_required
async def balance() -> dict[str, object]:
    await asyncio.sleep(0)  # an async view: a database or HTTP call would go here
    return {"owner": g.current_user.user_id, "balance": 0}


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), threaded=True)
