"""The log formats (console and JSON), the redaction of secrets and the format's default."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from pydantic import ValidationError

from agora.core.logs import (
    ConsoleFormatter,
    RedactSecrets,
    configure_logging,
    json_formatter,
    redact,
    resolve_format,
    wants_colour,
)
from agora.core.settings import Settings

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(msg: str, *args: object, name: str = "test", **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args or None, None)
    made.__dict__.update(extra)
    return made


def filtered(made: logging.LogRecord) -> logging.LogRecord:
    assert RedactSecrets().filter(made)
    return made


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/social/ws?token=abc.def&x=1", "/social/ws?token=[redacted]&x=1"),
        ("?ticket=T1&access_token=A2", "?ticket=[redacted]&access_token=[redacted]"),
        ("?jwt_token=X&Token=Y", "?jwt_token=[redacted]&Token=[redacted]"),
        (f"got {JWT} here", "got [redacted] here"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [redacted]"),
        ("/api/publications/42?limit=5", "/api/publications/42?limit=5"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_filter_redacts_the_message_with_its_args_and_drops_color_message() -> None:
    # What uvicorn logs for a socket: the path with its query in the args.
    made = filtered(
        record(
            '%s - "WebSocket %s" [accepted]',
            "127.0.0.1:5",
            f"/ws?token={JWT}",
            color_message='\x1b[1m"WebSocket %s"\x1b[0m',
        )
    )
    assert made.getMessage() == '127.0.0.1:5 - "WebSocket /ws?token=[redacted]" [accepted]'
    assert "color_message" not in made.__dict__
    line = json_formatter().format(made)
    assert JWT not in line and "\x1b" not in line and json.loads(line)["logger"] == "test"


def test_uvicorn_lines_lose_their_query_string_whatever_it_holds() -> None:
    """A ticket under a name the redaction does not know, and not shaped like a JWT."""
    made = record(
        '%s - "WebSocket %s" 403', "127.0.0.1:5", "/ws?t=opaque&v=2", name="uvicorn.error"
    )
    assert filtered(made).getMessage() == '127.0.0.1:5 - "WebSocket /ws" 403'
    # Other loggers keep their text (only what looks like a secret goes).
    assert filtered(record("%s", "/ws?t=opaque&v=2")).getMessage() == "/ws?t=opaque&v=2"


def test_filter_leaves_a_clean_record_as_it_was() -> None:
    made = filtered(record("%s %d", "GET /x", 200))
    assert made.msg == "%s %d" and made.args == ("GET /x", 200)


def test_console_line_has_time_level_logger_message_and_extras() -> None:
    made = record("GET /a 200 1.0ms", name="agora.access", method="GET", path="/a", status=200,
                  duration_ms=1.0, route="/a", user_id="7", client=None)  # fmt: skip
    line = ConsoleFormatter(colour=False).format(made)
    time_part, rest = line[:23], line[24:]
    assert time_part[4] == "-" and time_part[19] == "."
    # the fields the message already shows are not repeated; None is left out
    assert rest == "INFO    agora.access  GET /a 200 1.0ms route=/a user_id=7"


def test_console_escapes_control_characters_and_keeps_one_line() -> None:
    made = record("path %s", "/x\x1b[31m\nINFO forged", note={"k": "a\nb"})
    line = ConsoleFormatter(colour=False).format(made)
    assert "\n" not in line and "\x1b" not in line
    assert "/x\\x1b[31m\\nINFO forged" in line and 'note={"k": "a\\nb"}' in line


def test_console_colours_only_when_asked() -> None:
    assert "\x1b[" not in ConsoleFormatter(colour=False).format(record("hello"))
    coloured = ConsoleFormatter(colour=True).format(record("hello"))
    assert "\x1b[32mINFO" in coloured and coloured.endswith("hello")


def test_colour_needs_a_terminal_and_no_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert wants_colour(Terminal()) and not wants_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour(Terminal())


def test_format_default_is_console_for_dev_on_a_terminal_only() -> None:
    assert resolve_format(None, dev=True, stream=Terminal()) == "console"
    assert resolve_format(None, dev=True, stream=io.StringIO()) == "json"
    assert resolve_format(None, dev=False, stream=Terminal()) == "json"
    assert resolve_format("json", dev=True, stream=Terminal()) == "json"
    assert resolve_format("console", dev=False, stream=io.StringIO()) == "console"


def test_a_bad_log_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGORA_LOG_FORMAT", "yaml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()
    monkeypatch.setenv("AGORA_LOG_FORMAT", "console")
    assert Settings().log_format == "console"


def test_configured_handler_redacts_every_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        logging.getLogger("uvicorn.error").info('"WebSocket %s" 403', f"/ws?ticket={JWT}")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    line = json.loads(stream.getvalue())
    assert line["logger"] == "uvicorn.error"
    assert line["message"] == '"WebSocket /ws" 403'  # uvicorn's lines lose their query


def test_uvicorns_loggers_are_ours_whatever_configured_them_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An in-process uvicorn (`Config(log_level=...)`) leaves its loggers at its own level:
    configuring ours takes them back, so their lines are neither lost nor double."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.setLevel(logging.WARNING)
    uvicorn_error.addHandler(logging.NullHandler())
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        uvicorn_error.info("Started server process [%d]", 42)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["Started server process [42]"]
    assert uvicorn_error.handlers == [] and uvicorn_error.propagate
