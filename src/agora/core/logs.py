"""Logging: one record per line on stderr, as JSON or as a readable console line.

`AGORA_LOG_FORMAT` picks the format; unset, a developer on a terminal gets console lines
(coloured, unless NO_COLOR is set) and everything else (a pipe, a file, prod) gets JSON.
uvicorn's loggers go through the same handler, so its lines come out in the same format.
Every record passes `RedactSecrets` first: no token, ticket or JWT reaches a line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO, cast

import orjson

LogFormat = Literal["console", "json"]

# ASGI scope keys the access log reads: who the caller is (noted by the socket endpoint
# once its ticket is redeemed) and the socket route that answered (web.service_app).
SCOPE_USER_ID = "agora.user_id"
SCOPE_ROUTE = "agora.route"

REDACTED = "[redacted]"
# `token=...`, `access_token=...`, `ticket=...` (in a query string or anywhere in a text),
# any JWT (a JSON header in base64url starts with "eyJ"), `Bearer <credentials>`.
_SECRETS = re.compile(
    r"(?P<key>\b\w*(?i:token|ticket))=(?P<value>[^&\s\"'#]+)"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?P<scheme>\b[Bb]earer\s+)[A-Za-z0-9._~+/=-]+"
)


def _redaction(match: re.Match[str]) -> str:
    if match["key"] is not None:
        return f"{match['key']}={REDACTED}"
    if match["scheme"] is not None:
        return f"{match['scheme']}{REDACTED}"
    return REDACTED


def redact(text: str) -> str:
    """`text` with every secret-shaped part replaced by [redacted]."""
    return _SECRETS.sub(_redaction, text)


def _without_query(arg: object) -> object:
    """A path argument of uvicorn's (`/social/ws?token=...`) without its query string."""
    if isinstance(arg, str) and arg.startswith("/") and "?" in arg:
        return arg.partition("?")[0]
    return arg


class RedactSecrets(logging.Filter):
    """On the root handler: every record's message, whoever logged it, leaves without
    secrets. uvicorn's lines lose their query strings altogether (it logs a socket's
    path with `?token=<ticket>`); other lines lose what looks like a token.

    uvicorn's `color_message` extra (the same text with ANSI escapes) is dropped too."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        if record.name.startswith("uvicorn") and isinstance(record.args, tuple):
            # uvicorn writes a socket's (and a request's) path with its query string:
            # a socket's query is its ticket, whatever the parameter is called.
            record.args = tuple(_without_query(arg) for arg in record.args)
        message = record.getMessage()
        # Every secret the pattern knows has "=", a JWT header or a Bearer scheme in it:
        # most records skip the regex.
        if "=" not in message and "eyJ" not in message and "earer" not in message:
            return True
        clean, count = _SECRETS.subn(_redaction, message)
        if count:
            record.msg, record.args = clean, None
        return True


# The attributes every LogRecord has; anything else was passed as `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# Control characters (newlines, ANSI escapes from a crafted path, ...) would let a value
# forge a line or repaint a terminal: the console shows them escaped.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {10: "\\n", 13: "\\r", 9: "\\t"}

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_LEVEL_COLOURS = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;31m",
}
# Fields an access line already shows in its message.
_ACCESS_INLINE = frozenset({"method", "path", "status", "duration_ms"})


def printable(text: str) -> str:
    """`text` with its control characters written as escapes (\\n, \\x1b)."""
    return text if text.isprintable() else text.translate(_CONTROL)


def _text(value: Any) -> str:
    return printable(value if isinstance(value, str) else json.dumps(value, default=str))


class ConsoleFormatter(logging.Formatter):
    """`2026-01-02 10:11:12.345 INFO    agora.access  GET /auth/api/me 200 1.2ms
    route=/auth/api/me user_id=1 client=127.0.0.1`: time, level, logger, message, then
    the record's extra fields as key=value. A traceback follows on its own lines."""

    default_msec_format = "%s.%03d"

    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        hidden = _ACCESS_INLINE if record.name == "agora.access" else ()
        extras = " ".join(
            f"{self._dim(key + '=')}{_text(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and key not in hidden and value is not None
        )
        level = f"{record.levelname:<7}"
        if self.colour:
            level = f"{_LEVEL_COLOURS.get(record.levelname, '')}{level}{_RESET}"
        line = f"{self.formatTime(record)} {level} {self._dim(record.name)}  "
        line += _text(record.getMessage())
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line

    def _dim(self, text: str) -> str:
        return f"{_DIM}{text}{_RESET}" if self.colour else text


class JsonFormatter(logging.Formatter):
    """`{"ts": ..., "level": ..., "logger": ..., "message": ..., <extra fields>}` on one
    line; a traceback goes in `exc_info`. orjson: an access line per request must cost
    little (python-json-logger took several times as long per record)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def json_formatter() -> logging.Formatter:
    return JsonFormatter()


def wants_colour(stream: TextIO) -> bool:
    """A terminal, and no NO_COLOR (https://no-color.org: set and not empty)."""
    return not os.environ.get("NO_COLOR") and stream.isatty()


def resolve_format(log_format: LogFormat | None, *, dev: bool, stream: TextIO) -> LogFormat:
    """The format asked for; unset, console for a developer on a terminal, else JSON."""
    if log_format is not None:
        return log_format
    return "console" if dev and stream.isatty() else "json"


def configure_logging(
    level: str = "INFO", log_format: LogFormat | None = "json", *, dev: bool = False
) -> None:
    stream = sys.stderr
    handler = logging.StreamHandler(stream)
    if resolve_format(log_format, dev=dev, stream=stream) == "console":
        handler.setFormatter(ConsoleFormatter(colour=wants_colour(stream)))
    else:
        handler.setFormatter(json_formatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own loggers have no handler of their own (`log_config=None`): they
    # propagate here. Its access log is replaced by `agora.access` (web.access_log).
    # Ours whatever configured them before (uvicorn's default dictConfig sets their
    # levels and handlers and disables loggers it does not name).
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.disabled = False
        logger.setLevel(logging.NOTSET)
    logging.getLogger("uvicorn.access").disabled = True


def configure_early_logging(environ: Mapping[str, str]) -> None:
    """Before the settings are loaded (loading them may log, e.g. a generated dev secret):
    the format and level the variables ask for, read leniently; `configure_logging` runs
    again with the validated settings."""
    log_format = environ.get("AGORA_LOG_FORMAT")
    level = environ.get("AGORA_LOG_LEVEL", "INFO").upper()
    configure_logging(
        level if isinstance(logging.getLevelName(level), int) else "INFO",
        cast(LogFormat | None, log_format if log_format in ("console", "json") else None),
        dev=environ.get("AGORA_ENV", "dev") == "dev",
    )
