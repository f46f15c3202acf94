#!/usr/bin/env bash
# Run the Postman collection with newman against a real, freshly started `agora serve`.
#
#   bash docs/postman/run-newman.sh            # from anywhere; CI calls it from .ci/run
#
# The server gets a free port and a throw-away data directory (its own SQLite database
# and dev secret), so it never touches ./var or a server already running on 8080. It is
# stopped whatever happens. Exit code: newman's (non-zero when any assertion fails).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
COLLECTION="docs/postman/agora.postman_collection.json"
AGORA="$ROOT/.venv/bin/agora"
NEWMAN="$ROOT/node_modules/.bin/newman"

LOGIN="postman_user"
PASSWORD="postman-password-$RANDOM$RANDOM"
EMAIL="postman_user@example.com"
NAME="Postman User"

say() { printf '==> %s\n' "$*"; }

[ -x "$AGORA" ] || { say "installing the Python environment (make install)"; make install; }
if [ ! -x "$NEWMAN" ]; then
    say "installing newman from package-lock.json (npm ci)"
    npm ci --no-audit --no-fund
fi

DATA_DIR="$(mktemp -d -t agora-newman.XXXXXX)"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE_URL="http://127.0.0.1:$PORT"
SERVER_PID=""

cleanup() {
    local status=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        say "stopping agora serve (pid $SERVER_PID)"
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -f "$DATA_DIR/server.log" ]; then
        say "server log (last 40 lines):"
        tail -n 40 "$DATA_DIR/server.log" || true
    fi
    rm -rf "$DATA_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private server: own data dir, cheap argon2 so the run stays fast, dev mode (HTTP).
export AGORA_DATA_DIR="$DATA_DIR"
export AGORA_ARGON2_TIME_COST=1 AGORA_ARGON2_MEMORY_COST=64 AGORA_ARGON2_PARALLELISM=1
export AGORA_LOG_LEVEL=WARNING
# No gRPC server: the collection is HTTP only, and 50051 may be taken by a dev server.
export AGORA_GRPC_PORT=0
unset AGORA_DATABASE_URL AGORA_REDIS_URL AGORA_AMQP_URL AGORA_ENV AGORA_PORT AGORA_HOST

say "migrating the database (agora db upgrade)"
"$AGORA" db upgrade

say "creating the account '$LOGIN' with agora users create"
printf '%s\n' "$PASSWORD" | "$AGORA" users create --login "$LOGIN" --email "$EMAIL" --name "$NAME"

say "starting agora serve on $BASE_URL (data in $DATA_DIR)"
"$AGORA" serve --host 127.0.0.1 --port "$PORT" >"$DATA_DIR/server.log" 2>&1 &
SERVER_PID=$!

# Ready when it answers HTTP at all (the protected route answers 401 without a token).
for attempt in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || { say "agora serve exited early"; exit 1; }
    code="$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/auth/api/me" || true)"
    [ "$code" = "401" ] && break
    [ "$attempt" -eq 100 ] && { say "agora serve not ready after 20 s (last status: $code)"; exit 1; }
    sleep 0.2
done
say "server is up"

say "newman run $COLLECTION"
"$NEWMAN" run "$COLLECTION" \
    --env-var "baseUrl=$BASE_URL" \
    --env-var "login=$LOGIN" \
    --env-var "password=$PASSWORD" \
    --env-var "email=$EMAIL" \
    --env-var "name=$NAME" \
    --color off
