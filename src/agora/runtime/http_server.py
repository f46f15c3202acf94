"""How uvicorn serves a process: the options of `agora serve`, and request heads bounded.

Behind nginx, `large_client_header_buffers` bounds request heads; a service reached
directly (`agora serve` alone, a health check port, a misrouted load balancer) had no
bound at all with uvicorn's httptools parser: three 64 MB headers took the process from
279 to 521 MB (issue 11). `BoundedHeadersProtocol` is uvicorn's own httptools protocol
with two limits, answered like nginx does, `431 Request Header Fields Too Large`:
- the bytes of the request line and headers: `AGORA_MAX_HEADER_BYTES` (passed as
  uvicorn's `h11_max_incomplete_event_size`, the same limit for its h11 parser);
- the number of header fields: `MAX_HEADER_COUNT` (Apache's `LimitRequestFields`).
Counting happens twice: the pieces the parser hands over (the URL, each header), and
the bytes that arrive while the head is not complete, so what one request head can
hold in memory is the limit plus one read.

`server_header=False`: no `server: uvicorn` (what runs is nobody's business).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agora.core.settings import Settings
from agora.runtime.nginx import APP_KEEP_ALIVE_SECONDS
from agora.runtime.websocket_protocol import websocket_protocol

MAX_HEADER_COUNT = 100
DEFAULT_MAX_HEADER_BYTES = 32_768
_TOO_LARGE = b"Request header fields too large"


class _HeadRefused(Exception):
    """Raised in a parser callback to stop parsing; answered with 431."""


class BoundedHeadersProtocol(HttpToolsProtocol):
    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_head_bytes: int = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_BYTES
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._parsed_head = 0
        self._too_large = False
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still in the head once this read is parsed, and already past the limit.
        if self._in_head and self._head_bytes > self.max_head_bytes and not self._refused:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0
        self._parsed_head = 0

    # Within one read, the parser hands over whole pieces: counted exactly here.
    def on_url(self, url: bytes) -> None:
        self._parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._parsed(len(name) + len(value) + 4)
        if self._header_count > MAX_HEADER_COUNT:
            self._too_large = True
            raise _HeadRefused  # httptools reports it as a parser error: see send_400_response
        super().on_header(name, value)

    def _parsed(self, size: int) -> None:
        self._parsed_head += size
        if self._parsed_head > self.max_head_bytes:
            self._too_large = True
            raise _HeadRefused

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._refused = True
        self.logger.warning("Request header fields too large: refused with 431.")
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + _TOO_LARGE
        )
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run`/`uvicorn.Config` every process serves with
    (besides the app, host, port and workers)."""
    return {
        "http": BoundedHeadersProtocol,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "server_header": False,
        # uvicorn's loggers keep ours (agora.core.logs); agora.access replaces its access log.
        "log_config": None,
        "access_log": False,
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_ping_interval": settings.ws_ping_interval,
        "ws_ping_timeout": settings.ws_ping_timeout,
        # Frames are small JSON; permessage-deflate would keep a zlib context per
        # socket (about 35 KiB each, measured in bench.social_bench --deflate).
        "ws_per_message_deflate": False,
        # A socket we end is gone within the grace whatever the peer does (issue 15 §1).
        "ws": websocket_protocol(
            abort_after=settings.ws_close_grace,
            user_timeout=settings.ws_ping_interval + settings.ws_ping_timeout,
        ),
        # Longer than nginx's upstream keepalive_timeout: nginx, not us, closes an idle
        # upstream connection, so it never sends a request on one we are closing.
        "timeout_keep_alive": APP_KEEP_ALIVE_SECONDS,
    }
