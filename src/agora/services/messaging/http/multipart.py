"""The `file` part of a multipart upload, as a stream.

Starlette's `request.form()` spools every file to a temporary file before the route
runs; an upload would then be written twice (spool, then media store) and held whole
before any check. Here python-multipart's push parser is fed the request body as it
arrives and the part's bytes are handed on as they come: the media service checks the
first bytes (type) and counts the size (413) while the store writes, and nothing but one
network chunk is ever in memory.

Only one part is read: the first named `file` that carries a filename. Other parts
before it (form fields a client may add) are skipped, within a small budget; whatever
follows the file is never read.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from agora.core.errors import Invalid, RequestTimeout, UnsupportedMediaType

FIELD = "file"
# Bytes of parts before the file that are read and dropped; past this the upload is refused.
SKIPPED_PART_BUDGET = 64 * 1024
# What a multipart envelope adds around the file (boundaries, part headers): the request
# body limit of the upload route is media_max_bytes plus this.
MULTIPART_OVERHEAD = 64 * 1024
MAX_FILENAME_CHARS = 255
_UNSAFE_IN_FILENAME = re.compile(r"[\x00-\x1f\x7f]")

# Parser events, in order: ("headers", disposition, content type), ("data", bytes),
# ("end", b"") at the end of each part.
Event = tuple[str, bytes, bytes]


@dataclass(frozen=True, slots=True)
class FilePart:
    content_type: str  # as the client declared it (the service checks it against the bytes)
    filename: str
    chunks: AsyncGenerator[bytes, None]  # raises Invalid if the body ends before the part does
    _events: AsyncGenerator[Event, None]

    async def aclose(self) -> None:
        """Stop reading the body (also when `chunks` was never started)."""
        await self.chunks.aclose()
        await self._events.aclose()


def safe_filename(raw: str) -> str:
    """The last path component, without control characters, at most 255 characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_IN_FILENAME.sub("", name).strip()
    return name[:MAX_FILENAME_CHARS] or "upload"


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType("Send the file as multipart/form-data, in a part named 'file'")
    return boundary


class _Collector:
    """python-multipart's callbacks, turned into a list of events per body chunk."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._name = b""
        self._value = b""
        self._disposition = b""
        self._content_type = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._disposition = self._content_type = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._name.lower()
        if name == b"content-disposition":
            self._disposition = self._value
        elif name == b"content-type":
            self._content_type = self._value
        self._name = self._value = b""

    def _headers_done(self) -> None:
        self.events.append(("headers", self._disposition, self._content_type))

    def _data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.events.append(("data", data[start:end], b""))

    def _end(self) -> None:
        self.events.append(("end", b"", b""))


async def _events(
    request: Request, boundary: bytes, idle_timeout: float
) -> AsyncGenerator[Event, None]:
    collector = _Collector()
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    stream = request.stream()
    try:
        while True:
            # A client that stops sending would hold the request, its connection and its
            # partial file for as long as it stays connected (issue 15 §9).
            try:
                async with asyncio.timeout(idle_timeout):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise RequestTimeout(f"No upload data for {idle_timeout:g} s") from None
            parser.write(chunk)
            events, collector.events = collector.events, []
            for event in events:
                yield event
        parser.finalize()
    except FormParserError:
        raise Invalid(FIELD, "Malformed multipart body") from None
    except ClientDisconnect:
        raise Invalid(FIELD, "Upload interrupted") from None
    for event in collector.events:
        yield event


async def read_file_part(request: Request, idle_timeout: float) -> FilePart:
    """Read the body up to the headers of the `file` part; its bytes are then streamed
    by `FilePart.chunks`, and the caller closes it (`aclose`). Raises 415 for a body
    that is not multipart, 422 (`file`) when there is no such part or it is malformed,
    408 when the body sends nothing for `idle_timeout` seconds."""
    events = _events(request, _boundary(request), idle_timeout)
    skipped = 0
    async for kind, first, second in events:
        if kind == "headers":
            _, options = parse_options_header(first)
            if options.get(b"name") == FIELD.encode() and b"filename" in options:
                content_type = parse_options_header(second)[0].decode("latin-1").lower()
                filename = options[b"filename"].decode("utf-8", errors="replace")
                return FilePart(
                    content_type=content_type or "application/octet-stream",
                    filename=safe_filename(filename),
                    chunks=_part_data(events),
                    _events=events,
                )
        elif kind == "data":
            skipped += len(first)
            if skipped > SKIPPED_PART_BUDGET:
                raise Invalid(FIELD, "Send the file part first, or alone")
    raise Invalid(FIELD, "A file part named 'file' is required")


async def _part_data(events: AsyncGenerator[Event, None]) -> AsyncGenerator[bytes, None]:
    async for kind, data, _ in events:
        if kind == "data":
            yield data
        elif kind == "end":
            return
    raise Invalid(FIELD, "The upload ended before the file did")
