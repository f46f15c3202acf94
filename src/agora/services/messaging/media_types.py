"""Which file a client really sent: content types told by their first bytes.

An upload names its content type; the type must be allowed (settings.media_allowed_types)
*and* the file must start the way files of that type do, so a script renamed `.png`
is refused. A type with no known signature here cannot be checked and is refused too.
"""

from __future__ import annotations

from collections.abc import Callable

# Bytes needed to recognize every type below (the WebP one is the longest: 12).
SNIFF_BYTES = 16


def _mpeg_audio(head: bytes) -> bool:
    if head.startswith(b"ID3"):  # an ID3v2 tag before the first frame
        return True
    # A frame header: 11 set sync bits, then a version and a layer that are not "reserved".
    if len(head) < 2 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    return version != 0b01 and layer != 0b00


SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "image/jpeg": lambda head: head.startswith(b"\xff\xd8\xff"),
    "image/png": lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/gif": lambda head: head[:6] in (b"GIF87a", b"GIF89a"),
    "image/webp": lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP",
    "video/mp4": lambda head: head[4:8] == b"ftyp",
    "audio/mpeg": _mpeg_audio,
    "audio/ogg": lambda head: head.startswith(b"OggS"),
    "application/pdf": lambda head: head.startswith(b"%PDF-"),
}


def normalize(content_type: str) -> str:
    """`Image/PNG; charset=x` -> `image/png`."""
    return content_type.split(";", 1)[0].strip().lower()


def matches(content_type: str, head: bytes) -> bool:
    """True when `head` (the file's first SNIFF_BYTES bytes, or all of a shorter file)
    starts like a file of `content_type` (normalized)."""
    check = SIGNATURES.get(content_type)
    return check is not None and check(head)
