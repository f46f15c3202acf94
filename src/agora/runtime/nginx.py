"""Render deploy/nginx/agora.conf with other instance addresses and another listen port.

The one renderer of that file: `agora cluster` (runtime/cluster.py), the gateway tests
and operators (`python -m agora.runtime.nginx`) all go through it.

agora.conf is the production configuration, usable as is. Rendering changes exactly
three things in it: the `server` lines of each `upstream` block (where the instances of
a service listen), the `listen` lines of the plain-http server (where nginx listens) and,
if asked, the access log's path. Everything else (locations, headers, timeouts, limits,
error pages) stays the file's own, so what the gateway tests run is what production runs.

`standalone` wraps the rendered file in a complete nginx.conf whose pid file, logs and
temporary files live in one directory, for an nginx started by a user or a test:

    python -m agora.runtime.nginx --listen 127.0.0.1:8080 --prefix /tmp/agora-nginx \
        --upstream auth=127.0.0.1:8001 --upstream publications=127.0.0.1:8002 \
        --upstream social=127.0.0.1:8003,127.0.0.1:8004 --upstream messaging=127.0.0.1:8005 \
        > /tmp/agora-nginx/nginx.conf
    nginx -p /tmp/agora-nginx -c /tmp/agora-nginx/nginx.conf -g 'daemon off;'
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# A wheel carries the file beside this module (setup.py copies it there); a checkout
# reads it where operators find it, deploy/nginx/agora.conf.
_PACKAGED = Path(__file__).with_name("agora.conf")
_CHECKOUT = Path(__file__).resolve().parents[3] / "deploy" / "nginx" / "agora.conf"
CONFIG = _PACKAGED if _PACKAGED.exists() else _CHECKOUT
# An upstream without instances: nginx answers its paths 502 (no live upstream).
NO_INSTANCE = "127.0.0.1:9 down"
UPSTREAM_PREFIX = "agora_"  # upstream agora_auth {...} is the service "auth"
# uvicorn's keep-alive (`agora serve`'s timeout_keep_alive): agora.conf's upstream
# `keepalive_timeout` stays below it, so an idle upstream connection is always closed
# by nginx, never by the instance while nginx sends it a request (a 502: issue 15 §7).
APP_KEEP_ALIVE_SECONDS = 5

_UPSTREAM = re.compile(r"^upstream\s+(\w+)\s*\{(.*?)^\}", re.MULTILINE | re.DOTALL)
# Uncommented directives only: `# listen 443 ssl;` stays as it is.
_SERVER_LINE = re.compile(r"^([ \t]*)server\s+[^;]+;[^\n]*\n", re.MULTILINE)
_LISTEN_LINE = re.compile(r"^([ \t]*)listen\s+[^;]+;[^\n]*\n", re.MULTILINE)
_ACCESS_LOG = re.compile(r"^([ \t]*access_log\s+)(\S+)", re.MULTILINE)


def render(
    listen: str | None = None,
    upstreams: Mapping[str, Sequence[str]] | None = None,
    *,
    access_log: Path | None = None,
    template: str | None = None,
) -> str:
    """agora.conf with `listen` (e.g. "127.0.0.1:8080"), each service's instances and
    the `access_log` path (its format stays the file's); None keeps the file's own.

    `upstreams` maps every service of the file (auth, publications, ...) to its instance
    addresses; a service missing or unknown is an error, so the file and its callers
    cannot drift apart unnoticed. A service given no address answers 502.
    """
    text = CONFIG.read_text() if template is None else template
    if upstreams is not None:
        text = _replace_upstreams(text, upstreams)
    if listen is not None:
        text = _replace_listen(text, listen)
    if access_log is not None:
        text = _ACCESS_LOG.sub(lambda match: f"{match.group(1)}{access_log}", text)
    return text


def _replace_upstreams(text: str, upstreams: Mapping[str, Sequence[str]]) -> str:
    found = [match.group(1).removeprefix(UPSTREAM_PREFIX) for match in _UPSTREAM.finditer(text)]
    if sorted(found) != sorted(upstreams):
        raise ValueError(f"agora.conf has upstreams {sorted(found)}, given {sorted(upstreams)}")

    def one_upstream(match: re.Match[str]) -> str:
        name, body = match.group(1), match.group(2)
        addresses = upstreams[name.removeprefix(UPSTREAM_PREFIX)] or [NO_INSTANCE]
        first = _SERVER_LINE.search(body)
        if first is None:
            raise ValueError(f"upstream {name}: no server line")
        # The instances take the place of the first `server` line; the others go.
        servers = "".join(f"{first.group(1)}server {address};\n" for address in addresses)
        body = body[: first.start()] + servers + _SERVER_LINE.sub("", body[first.end() :])
        return f"upstream {name} {{{body}}}"

    return _UPSTREAM.sub(one_upstream, text)


def _replace_listen(text: str, listen: str) -> str:
    """The uncommented `listen` lines of the file's one server block become one line."""
    lines = list(_LISTEN_LINE.finditer(text))
    if not lines:
        raise ValueError("agora.conf has no listen line")
    first = lines[0]
    head = text[: first.start()] + f"{first.group(1)}listen {listen};\n"
    return head + _LISTEN_LINE.sub("", text[first.end() :])


def standalone(http_config: str, prefix: Path, *, user: str | None = None) -> str:
    """A complete nginx.conf around `http_config`, writing only under `prefix`.

    Debian's nginx keeps its pid, logs and temporary files under /run, /var/log and
    /var/lib/nginx; here they all go under `prefix` (render `http_config` with
    `access_log=prefix / "logs" / "access.log"` for the server's own log). Started by
    root, nginx would run its workers as nobody, who cannot write under a private
    prefix: then they run as `user`, root unless told otherwise.
    """
    if user is None and os.geteuid() == 0:
        user = "root"
    temp = {
        "client_body_temp_path": "client_body",
        "proxy_temp_path": "proxy",
        "fastcgi_temp_path": "fastcgi",
        "uwsgi_temp_path": "uwsgi",
        "scgi_temp_path": "scgi",
    }
    for directory in temp.values():
        (prefix / "temp" / directory).mkdir(parents=True, exist_ok=True)
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    temp_lines = "".join(
        f"    {directive} {prefix / 'temp' / directory};\n" for directive, directory in temp.items()
    )
    body = "".join(f"    {line}\n" if line.strip() else "\n" for line in http_config.splitlines())
    return (
        (f"user {user};\n" if user else "")
        + "worker_processes 1;\n"
        + f"pid {prefix / 'nginx.pid'};\n"
        + f"error_log {prefix / 'logs' / 'error.log'} warn;\n"
        + "events {\n    worker_connections 1024;\n}\n"
        + "http {\n"
        + "    default_type application/octet-stream;\n"
        + temp_lines
        + body
        + "}\n"
    )


def find_nginx() -> str | None:
    """nginx on PATH, or Debian's /usr/sbin/nginx (not on a user's PATH)."""
    found = shutil.which("nginx")
    if found is not None:
        return found
    candidates = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
    return next((path for path in candidates if Path(path).exists()), None)


def check(binary: str, config: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t`: parse the configuration and open its files, without serving."""
    command = [binary, "-t", "-p", str(prefix), "-c", str(config)]
    return subprocess.run(  # noqa: S603 (the nginx binary, on our own config)
        command, capture_output=True, text=True, timeout=30, check=False
    )


def _upstream_arg(value: str) -> tuple[str, list[str]]:
    service, _, addresses = value.partition("=")
    if not service or not addresses:
        raise argparse.ArgumentTypeError("expected SERVICE=HOST:PORT[,HOST:PORT...]")
    return service, [address for address in addresses.split(",") if address]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", help="HOST:PORT (or PORT) nginx listens on")
    parser.add_argument(
        "--upstream",
        action="append",
        type=_upstream_arg,
        metavar="SERVICE=ADDR[,ADDR...]",
        help="instances of one service; give every service of agora.conf",
    )
    parser.add_argument(
        "--prefix",
        type=Path,
        help="write a complete nginx.conf keeping pid, logs and temp files in this directory",
    )
    args = parser.parse_args(argv)
    prefix = args.prefix.resolve() if args.prefix is not None else None
    log = prefix / "logs" / "access.log" if prefix is not None else None
    try:
        upstreams = dict(args.upstream) if args.upstream else None
        config = render(args.listen, upstreams, access_log=log)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    sys.stdout.write(config if prefix is None else standalone(config, prefix))


if __name__ == "__main__":
    main()
